//! oppty-router: routes a legacy CRM's new sales opportunities to the right team and member,
//! as a daemon beside the CRM's PostgreSQL database. See ARCHITECTURE.md for the module map.

pub mod access;
pub mod admin;
pub mod backfill;
pub mod capture;
pub mod check;
pub mod commands;
pub mod config;
pub mod crm;
pub mod daemon;
pub mod db;
pub mod drain;
pub use engine;
pub mod explain;
pub mod grants;
pub mod held;
pub mod history;
pub mod ident;
pub mod install;
pub mod reload;
pub mod report;
pub mod retry;
pub mod rule_files;
pub use rules;
pub mod simulate;
pub mod sql_text;
pub mod status;
pub mod store;
pub mod systemd;
pub mod telemetry;

/// Exit codes (sysexits), documented in the README.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Something failed at run time (see the message).
    pub const FAILURE: i32 = 1;
    /// The database could not be reached (install, uninstall, explain).
    pub const UNAVAILABLE: i32 = 69;
    /// The database was busy (a deadlock, a lock held elsewhere, a statement timeout): run again.
    pub const TEMPFAIL: i32 = 75;
    /// The daemon config or the rules are wrong: fix them; systemd does not restart on this code.
    pub const CONFIG: i32 = 78;
}

/// Load the rule set named by the config, compiled against the config's mapped fields.
pub fn load_rules(cfg: &config::Config) -> Result<engine::Engine, rules::RulesError> {
    load_rules_with(cfg, &directory_flags(cfg))
}

/// What the config says about the CRM's directory before anything is read from it.
pub fn directory_flags(cfg: &config::Config) -> rules::Directory {
    rules::Directory {
        memberships_from_crm: cfg.directory.as_ref().is_some_and(|d| d.team_members.is_some()),
        unread: cfg.directory.is_some(),
        ..Default::default()
    }
}

/// [`load_rules`] with what the CRM says about members (the config's `[directory]` queries).
pub fn load_rules_with(
    cfg: &config::Config,
    directory: &rules::Directory,
) -> Result<engine::Engine, rules::RulesError> {
    rules::load_dir_with(&cfg.router.rules_dir, &fields_of(cfg), &as_mapped(cfg, directory))
}

/// Rule files held in memory (a console's draft: path and text, as [`rules::read_files`] gives
/// them) compiled exactly as [`load_rules_with`] compiles the same files on disk.
pub fn compile_rules_with(
    cfg: &config::Config,
    files: &[(std::path::PathBuf, String)],
    directory: &rules::Directory,
) -> Result<engine::Engine, rules::RulesError> {
    rules::compile_files_with(files, &fields_of(cfg), &as_mapped(cfg, directory))
}

/// The field names the config maps, in their fetch order.
fn fields_of(cfg: &config::Config) -> Vec<String> {
    cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect()
}

/// The directory with what the config's mapping says (owner edits, the CRM's assignment times).
fn as_mapped<'d>(cfg: &config::Config, directory: &'d rules::Directory) -> std::borrow::Cow<'d, rules::Directory> {
    let o = &cfg.opportunity;
    let crm_count_unmapped = o.assigned_at.is_none() && o.created_at.is_none();
    if directory.owner_edits_unmapped == o.edited_by.is_none() && directory.crm_count_unmapped == crm_count_unmapped {
        return std::borrow::Cow::Borrowed(directory);
    }
    let mut d = directory.clone();
    d.owner_edits_unmapped = o.edited_by.is_none();
    d.crm_count_unmapped = crm_count_unmapped;
    std::borrow::Cow::Owned(d)
}
