//! The `oppty-router` binary: parse the command line, build the runtime, and call the command of
//! the library (`oppty_router::commands`) or the demo (`devkit`). It dispatches only; exit codes
//! are `CommandError::exit_code`'s, documented in the README (sysexits).

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use oppty_router::commands::{self, since, since_arg, CommandError, Invocation, Replay};
use oppty_router::config::LogFormat;
use oppty_router::exit;

#[derive(Parser)]
#[command(
    name = "oppty-router",
    version,
    about = "Routes a legacy CRM's sales opportunities to the right team and member",
    after_long_help = "Exit status: 0 success; 1 a failure at run time (see the message); 69 the database \
        cannot be reached, or the metrics port is taken; 75 the database was busy (run again); 78 the config, \
        the rules or the mapping are wrong (systemd does not restart on it).\n\nFiles: \
        /etc/oppty-router/oppty-router.toml (the config), /etc/oppty-router/rules (the rule files). \
        Documentation: /usr/share/doc/oppty-router (README, ARCHITECTURE, rules)."
)]
struct Cli {
    /// The daemon config.
    #[arg(
        short,
        long,
        global = true,
        env = "OPPTY_ROUTER_CONFIG",
        default_value = "/etc/oppty-router/oppty-router.toml"
    )]
    config: PathBuf,
    /// Connect with this connection string instead of the config's `database.url` (and without its
    /// `database.password_file`): for a DBA running `install` or `grants` as the database owner.
    #[arg(long, global = true, env = "OPPTY_ROUTER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: drain captured changes, route, write owners back.
    Run,
    /// Validate the config and the rules (and the mapping against the database when reachable).
    Check {
        /// Do not connect to the database.
        #[arg(long)]
        offline: bool,
        /// Check this rules directory instead of the config's `router.rules_dir`.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Create the router's schema and the capture triggers (idempotent).
    Install {
        /// Print the SQL instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// Do not queue the open, unowned opportunities already in the CRM (see `backfill`).
        #[arg(long)]
        no_backfill: bool,
    },
    /// Queue every open, unowned opportunity for routing (those from before `install`, or left
    /// behind); prints how many. Nothing already queued is queued twice.
    Backfill {
        /// Only those created this recently (`2h`, `7d`; needs opportunity.created_at).
        #[arg(long, value_parser = since_arg)]
        since: Option<humantime::Duration>,
        /// Count them, queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove the capture triggers and the router's schema; the CRM's tables are untouched.
    Uninstall {
        /// Print the SQL instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Everything on a throwaway database: sample CRM, live routing, summary, latency.
    Demo {
        /// Leave the database running and print how to connect.
        #[arg(long)]
        keep: bool,
        /// How long to stream opportunities.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Opportunities per second in the stream.
        #[arg(long, default_value_t = 300)]
        rate: u32,
        /// Opportunities queued while the daemon is stopped, to measure the drain rate.
        #[arg(long, default_value_t = 20_000)]
        backlog: u32,
        /// Rules directory (default: config/rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// After the run, serve the web console on the demo's CRM (its address and a login are
        /// printed) and route on until Ctrl-C.
        #[arg(long)]
        console: bool,
    },
    /// Put opportunities left behind back in the queue: those the router left unassigned, or
    /// whose events were dead-lettered (after fixing the cause: see `status`).
    Requeue {
        /// The opportunities left unassigned (no rule yielded anybody, no fallback owner).
        #[arg(long, required_unless_present = "dead_letter")]
        unassigned: bool,
        /// The dead-lettered events.
        #[arg(long)]
        dead_letter: bool,
        /// Only those left (or failed) this recently (`2h`, `7d`).
        #[arg(long, value_parser = since_arg)]
        since: Option<humantime::Duration>,
        /// Only these opportunities (repeat it, or separate ids with commas).
        #[arg(long = "id", value_name = "OPPORTUNITY", value_delimiter = ',')]
        ids: Vec<String>,
    },
    /// Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them
    /// (the owners of the CRM's tables and of the router's schema, the database owner).
    Grants {
        /// The daemon's role (as it will log in: `user=` in database.url).
        role: String,
        /// Print the REVOKE statements withdrawing them instead (before or after `uninstall`).
        #[arg(long)]
        revoke: bool,
    },
    /// Show the daemon's state: rules in force, the latest refusal of new rules, the queue.
    Status {
        /// Print the report as JSON (for scripts and monitoring).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of rule files (committed as config/rules.schema.json).
    Schema,
    /// Lift a member's pause for letting opportunities lapse (see `status`); the daemon gives them
    /// work again from its next sweep.
    Unpause {
        /// The member's CRM user id.
        member: String,
        /// Who lifts it, recorded with the pause (default: the login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Give the rules directory back the files of a version that was in force (as the router kept
    /// it), checked first as the daemon will check them; the daemon reloads them.
    Revert {
        /// The version (`14-3fa9…`, or its number `14`); `--list` shows those kept.
        #[arg(long, required_unless_present = "list")]
        to: Option<String>,
        /// Print what would be written and set aside, and the diff; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// List the versions kept, the latest first, each with what changed from the one before.
        #[arg(long, conflicts_with_all = ["to", "dry_run"])]
        list: bool,
    },
    /// Show why the router assigned an opportunity the way it did.
    Explain {
        /// The opportunity's id, as text.
        opportunity_id: String,
        /// Print the decisions as JSON (each with its stored explanation).
        #[arg(long)]
        json: bool,
    },
    /// Replay past opportunities through a candidate rules directory, writing nothing: what each
    /// team and member would have received, fairness, fallbacks, and every owner that would change.
    Simulate {
        /// The candidate rules directory (a copy of the rules, with your edits).
        #[arg(long, required_unless_present = "in_force")]
        rules: Option<PathBuf>,
        /// Replay each decision with the rule set that made it (as the router kept it), from what
        /// it saw: what the router did, decided again; anything that would change is a fault.
        #[arg(long, conflicts_with = "rules")]
        in_force: bool,
        /// Replay the opportunities first decided this recently (`7d`, `36h`).
        #[arg(long, default_value = "7d", conflicts_with = "opportunities", value_parser = since_arg)]
        since: humantime::Duration,
        /// Replay exactly these opportunities: a file with one id a line (or a CSV, id first).
        #[arg(long, value_name = "FILE")]
        opportunities: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page (charts inline, no network).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// The replay's randomness (random picks, ties): the same seed gives the same replay.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// What the router did: assignments per team, member and rule, fairness, fallbacks, reclaims.
    Report {
        /// The opportunities first decided this recently (`30d`, `12h`).
        #[arg(long, default_value = "30d", value_parser = since_arg)]
        since: humantime::Duration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page (charts inline, no network).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Serve the web console (a process of its own; `[console] listen`, localhost by default), or
    /// manage its accounts.
    Console {
        #[command(subcommand)]
        action: Option<ConsoleAction>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout, or write one page per command into a directory.
    Manpage {
        /// Write `oppty-router.1` and `oppty-router-<command>.1` here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConsoleAction {
    /// The console's accounts (`console.users`).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add an account, or change one's role and password: the password is asked for on the
    /// terminal (or read as the first line of stdin).
    Add {
        /// The name to log in with.
        name: String,
        /// viewer (sees everything) or editor (also saves and reverts rules).
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "editor"])]
        role: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("oppty-router").build() {
        Ok(rt) => {
            let done = rt.block_on(dispatch(cli));
            // A reload compiling on a blocking thread never holds up the exit.
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            match done {
                Ok(()) => exit::OK,
                Err(e) => {
                    e.print();
                    e.exit_code()
                }
            }
        }
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            exit::FAILURE
        }
    };
    std::process::exit(code);
}

/// One command line, one call.
async fn dispatch(cli: Cli) -> Result<(), CommandError> {
    let inv = Invocation { config: cli.config.clone(), database_url: cli.database_url.clone() };
    match cli.command {
        Command::Demo { keep, seconds, rate, backlog, rules, seed, console } => {
            commands::init_tracing(LogFormat::Text, "warn");
            let options = devkit::demo::DemoOptions { seconds, rate, backlog, keep, rules_dir: rules, seed, console };
            devkit::demo::run(options).await.map_err(|e| CommandError::Failure(format!("demo failed: {e:#}")))
        }
        Command::Check { offline, rules } => commands::check(&inv, offline, rules).await,
        Command::Install { dry_run: true, .. } => commands::install_dry_run(&inv),
        Command::Install { no_backfill, .. } => commands::install(&inv, !no_backfill).await,
        Command::Uninstall { dry_run } => commands::uninstall(&inv, dry_run).await,
        Command::Grants { role, revoke } => commands::grants(&inv, &role, revoke).await,
        Command::Backfill { since: s, dry_run } => commands::backfill(&inv, since(s), dry_run).await,
        Command::Requeue { unassigned, dead_letter, since: s, ids } => {
            let ids = (!ids.is_empty()).then_some(ids.as_slice());
            commands::requeue(&inv, unassigned, dead_letter, since(s), ids).await
        }
        Command::Schema => {
            commands::out::out(format_args!("{}", oppty_router::rules::json_schema()), false);
            Ok(())
        }
        Command::Status { json } => commands::status(&inv, json).await,
        Command::Unpause { member, by } => commands::unpause(&inv, &member, by).await,
        Command::Revert { to, dry_run, list } => commands::revert(&inv, to.as_deref(), dry_run, list).await,
        Command::Explain { opportunity_id, json } => commands::explain(&inv, &opportunity_id, json).await,
        Command::Simulate { rules, in_force, since: window, opportunities: ids, json, html, seed } => {
            commands::simulate(&inv, rules, Replay { window, ids, json, html, seed, in_force }).await
        }
        Command::Report { since: window, json, html } => {
            commands::report(&inv, Replay { window, ids: None, json, html, seed: 1, in_force: false }).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "oppty-router", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir } => man_pages(dir),
        Command::Console { action: None } => console::commands::console(&inv).await,
        Command::Console { action: Some(ConsoleAction::User { action: UserAction::Add { name, role } }) } => {
            console::commands::add_user(&inv, &name, &role)
        }
        Command::Run => commands::run(&inv).await,
    }
}

/// The man pages, into `dir` (one per command) or the main one on stdout.
fn man_pages(dir: Option<PathBuf>) -> Result<(), CommandError> {
    match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    }
    .map_err(|e| CommandError::Failure(format!("cannot write the man page: {e}")))
}
