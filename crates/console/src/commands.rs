//! The console's commands: `oppty-router console` (serve until SIGTERM) and `oppty-router console
//! user add` (an account). The binary parses the command line and calls one of these. It must not
//! serve anything itself (`server` does) nor keep a password once it is hashed.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;

use oppty_router::commands::{self, CommandError, Invocation};
use tokio_util::sync::CancellationToken;

use crate::accounts::{self, AccountsError, Role};
use crate::{serve, Console, ConsoleError};

/// Serve the console until SIGTERM or SIGINT (0); accounts a person must fix (78); an address
/// that cannot be listened on (69: a restart may find it free).
pub async fn console(inv: &Invocation) -> Result<(), CommandError> {
    let cfg = Arc::new(commands::load_config(inv)?);
    commands::init_tracing(cfg.log_format, &cfg.log_level);
    let console = Arc::new(Console::new(cfg.clone()).map_err(error)?);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("console stopping");
        stop.cancel();
    });
    serve(console, shutdown).await.map_err(error)
}

fn error(e: ConsoleError) -> CommandError {
    match e {
        ConsoleError::Accounts(a) => CommandError::Config(a.to_string()),
        ConsoleError::Tls(t) => CommandError::Config(t),
        ConsoleError::Listen { .. } => CommandError::Unavailable(e.to_string()),
        ConsoleError::Serve(_) => CommandError::Failure(e.to_string()),
    }
}

/// Add an account (or change one's role and password) in the config's `console.users` file; the
/// password is read from the terminal without echo, or as the first line of stdin.
pub fn add_user(inv: &Invocation, name: &str, role: &str) -> Result<(), CommandError> {
    let cfg = commands::load_config(inv)?;
    let role = Role::parse(role).ok_or_else(|| {
        CommandError::Config(format!("--role: `{role}` is not a role; use one of {}", Role::WORDS.join(", ")))
    })?;
    let password = read_password(name).map_err(CommandError::Failure)?;
    accounts::add_user(&cfg.console.users, name, role, &password).map_err(|e| match e {
        AccountsError::Refused(m) => CommandError::Config(m),
        other => CommandError::Failure(other.to_string()),
    })?;
    println!("{name} can log in to the console as {} ({})", role.as_str(), cfg.console.users.display());
    Ok(())
}

fn read_password(name: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let restore = if terminal { hide_typing() } else { None };
    if terminal {
        eprint!("password for {name}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = restore {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Stop the terminal echoing what is typed; returns how to put it back.
fn hide_typing() -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(std::io::stdin()).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(std::io::stdin(), SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}
