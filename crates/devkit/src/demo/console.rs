//! `demo --console`: after the demo's run, the daemon routes on and the web console serves the
//! throwaway CRM, with an editor account made for the occasion, until Ctrl-C (or SIGTERM). It
//! prints the console's address and the login. It must not touch anything outside the demo's
//! throwaway cluster directory.

use std::sync::Arc;

use anyhow::Context as _;
use rand::RngExt;
use tokio_util::sync::CancellationToken;

use super::{run_options, Stage};
use oppty_router::daemon;

/// The console's preferred address; another free port when it is taken.
const LISTEN: &str = "127.0.0.1:9188";

/// Serve the console and route on until a signal.
pub(super) async fn serve_until_stopped(stage: &Stage) -> anyhow::Result<()> {
    let users = stage.cluster.dir.join("console-users.toml");
    let password: String = {
        let mut rng = rand::rng();
        (0..16).map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)])).collect()
    };
    console::accounts::add_user(&users, "demo", console::accounts::Role::Editor, &password)
        .context("making the demo's console account")?;
    let mut cfg = (*stage.cfg).clone();
    cfg.console.users = users;
    cfg.console.journal = stage.cluster.dir.join("console-journal.jsonl");
    let console = Arc::new(console::Console::new(Arc::new(cfg)).context("starting the console")?);
    let listener = match tokio::net::TcpListener::bind(LISTEN).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the console")?,
    };
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let routing =
        tokio::spawn(daemon::run(stage.cfg.clone(), stage.rules.clone(), shutdown.clone(), run_options(stage, tx)));
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let serving = tokio::spawn(console::serve_on(console, listener, shutdown.clone()));
    println!("\n  the console: http://{address}/  (log in as demo, password {password})");
    println!("  the rules it edits: {}", stage.cfg.router.rules_dir.display());
    println!("  the daemon routes on; Ctrl-C stops the console, the daemon and the database\n");
    stopped().await;
    shutdown.cancel();
    let _ = routing.await;
    let _ = serving.await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
