//! `run`: the daemon until SIGTERM, with its named tasks — the rules directory's watcher, the
//! signals, `/metrics` — under one cancellation token. It must not decide or route anything
//! itself (`daemon` does).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::CommandError;
use crate::config::Config;
use crate::{daemon, load_rules};

/// The daemon until SIGTERM (0), a config or mapping a person must fix (78), or a last batch
/// that outlived `router.shutdown_timeout` (1).
pub async fn run(inv: &super::Invocation) -> Result<(), CommandError> {
    let cfg = Arc::new(super::load_config(inv)?);
    super::init_tracing(cfg.log_format, &cfg.log_level);
    run_daemon(cfg).await
}

async fn run_daemon(cfg: Arc<Config>) -> Result<(), CommandError> {
    let engine = load_rules(&cfg).map_err(|e| CommandError::Config(e.to_string()))?;
    tracing::info!(config = %cfg.path.display(), database = %cfg.redacted_url(), rules = %engine.version, "starting");
    let rules = Arc::new(ArcSwap::from_pointee(engine));
    let directory = Arc::new(ArcSwap::from_pointee(crate::directory_flags(&cfg)));
    let reloader = Arc::new(crate::reload::Reloader::new(cfg.clone(), rules.clone(), directory.clone()));
    let shutdown = CancellationToken::new();
    let watcher = spawn_watcher(&cfg, reloader.clone(), shutdown.clone());
    let signals = spawn_signals(reloader.clone(), shutdown.clone());
    let health = serve_telemetry(&cfg, &shutdown).await?;
    let run = daemon::run(
        cfg.clone(),
        rules,
        shutdown.clone(),
        daemon::RunOptions { notify_systemd: true, directory, reloader: Some(reloader), health, ..Default::default() },
    );
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(cfg.router.shutdown_timeout).await;
        } => {
            tracing::error!("the last batch did not finish within router.shutdown_timeout; exiting (its events stay queued)");
            signals.abort();
            return Err(CommandError::Failure(String::new()));
        }
    };
    signals.abort();
    watcher.abort();
    result.map_err(|e| {
        match &e {
            daemon::DaemonError::Mapping(_) => {
                tracing::error!(error = %e, "stopping: the mapping does not match the database")
            }
            daemon::DaemonError::Refused(_) => {
                tracing::error!(error = %e, "stopping: the database refuses the daemon, and retrying will not help")
            }
        }
        CommandError::Config(format!("{}: {e}", cfg.path.display()))
    })
}

/// `/metrics`, `/livez` and `/readyz`, when `[metrics]` says where. A port taken is 69: a
/// restart may find it free.
async fn serve_telemetry(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<crate::telemetry::Health>>, CommandError> {
    let Some(m) = &cfg.metrics else { return Ok(None) };
    let health = Arc::new(crate::telemetry::Health::new(m.ready_max_lag));
    // The rules were compiled before anything is served: `/readyz` never says otherwise.
    health.set_rules_loaded(true);
    let bound = crate::telemetry::serve(m.listen, health.clone(), shutdown.clone())
        .await
        .map_err(|e| CommandError::Unavailable(format!("{}: {e}", cfg.path.display())))?;
    tracing::info!(listen = %bound, "serving /metrics, /livez and /readyz");
    Ok(Some(health))
}

/// The rules directory's watcher, on a task of its own.
fn spawn_watcher(
    cfg: &Config,
    reloader: Arc<crate::reload::Reloader>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (dir, debounce) = (cfg.router.rules_dir.clone(), cfg.router.reload_debounce);
    tokio::spawn(async move {
        if let Err(e) = crate::reload::watch(reloader, dir.clone(), debounce, shutdown).await {
            tracing::error!(dir = %dir.display(), error = %e, "cannot watch the rules directory; edits load on SIGHUP only");
        }
    })
}

/// Signals: SIGTERM/SIGINT stop (finish the batch, commit, exit 0); SIGHUP reloads the rules.
fn spawn_signals(reloader: Arc<crate::reload::Reloader>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
        else {
            tracing::error!("cannot install signal handlers");
            shutdown.cancel();
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: finishing the batch, then exiting"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: finishing the batch, then exiting"); break; }
                // Not awaited here, so a SIGTERM is heard at once.
                _ = hup.recv() => { tokio::spawn(reload_on_sighup(reloader.clone())); }
            }
        }
        crate::systemd::stopping();
        shutdown.cancel();
    })
}

/// A SIGHUP's reload, told to systemd; logged by the reloader, with what changed or every problem.
async fn reload_on_sighup(reloader: Arc<crate::reload::Reloader>) {
    crate::systemd::reloading();
    let r = reloader.reload_in_background(crate::reload::SIGHUP).await;
    let version = reloader.status.load().version.clone();
    crate::systemd::reloaded(&match r {
        Ok(_) => format!("routing with rules {version}"),
        Err(_) => format!("routing with rules {version}; the last edit was refused (see the log)"),
    });
}
