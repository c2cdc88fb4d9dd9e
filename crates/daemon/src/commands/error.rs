//! Why a command failed: what is printed, and the exit code it becomes (sysexits, as the README
//! lists them). The one place an error becomes an exit code; it must not print anything else.

use crate::config::Config;
use crate::{db, exit, install};

/// Why a command failed: what is printed, and the exit code (sysexits, as the README lists them).
#[derive(Debug)]
pub enum CommandError {
    /// The config, the rules or the mapping are wrong: a person must fix them (78).
    Config(String),
    /// The database cannot be reached (69).
    Unavailable(String),
    /// A statement failed: the server's words, and the code by its kind.
    Db { error: tokio_postgres::Error, schema: String },
    /// Anything else (1); an empty message when the command printed its own report.
    Failure(String),
}

impl CommandError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Config(_) => exit::CONFIG,
            CommandError::Unavailable(_) => exit::UNAVAILABLE,
            CommandError::Failure(_) => exit::FAILURE,
            // 78 for a refusal (a missing router schema or grant) or a mapping that does not fit,
            // 69 for a lost connection, 75 for a deadlock, a lock or a timeout, 1 for a row's data.
            CommandError::Db { error, .. } => match db::kind_of(error) {
                db::ErrorKind::Refused | db::ErrorKind::Mapping => exit::CONFIG,
                db::ErrorKind::Connection => exit::UNAVAILABLE,
                db::ErrorKind::Contention | db::ErrorKind::Timeout => exit::TEMPFAIL,
                db::ErrorKind::Row => exit::FAILURE,
            },
        }
    }

    pub fn print(&self) {
        match self {
            CommandError::Config(m) | CommandError::Unavailable(m) | CommandError::Failure(m) if !m.is_empty() => {
                eprintln!("{m}")
            }
            CommandError::Db { error, schema } => {
                eprintln!("{}", db::describe(error));
                if db::kind_of(error) == db::ErrorKind::Refused {
                    eprintln!(
                        "hint: is the router installed in this database (`oppty-router install`), and does this role \
                         have its grants (`oppty-router grants ROLE`)? schema: {schema}"
                    );
                }
            }
            _ => {}
        }
    }

    /// A statement that failed under this config.
    pub fn db(error: tokio_postgres::Error, cfg: &Config) -> CommandError {
        CommandError::Db { error, schema: cfg.router.schema.as_str().to_string() }
    }

    /// `install` or `uninstall` failed: the words said, the exit code by the error's kind.
    pub fn install(e: install::InstallError) -> CommandError {
        let m = e.to_string();
        match e.kind() {
            db::ErrorKind::Refused | db::ErrorKind::Mapping => CommandError::Config(m),
            db::ErrorKind::Connection => CommandError::Unavailable(m),
            _ => CommandError::Failure(m),
        }
    }

    /// A connection that failed: 78 when the server refuses us for a reason a retry will not fix,
    /// 69 when it cannot be reached.
    pub fn connect(e: db::DbError) -> CommandError {
        match e.kind() {
            db::ErrorKind::Refused => CommandError::Config(e.to_string()),
            _ => CommandError::Unavailable(e.to_string()),
        }
    }
}
