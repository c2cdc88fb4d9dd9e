//! Rule files (TOML or JSON, the same structure): parse, check, compile into an [`Engine`], and
//! run the tests the files carry.
//!
//! Owns the file format (the serde structs stay in here) and every message an admin sees about a
//! rule file, as `file:line:column: key: message`. All the files of a directory form one rule set;
//! ids are unique across files. Nothing read here ever reaches SQL: rules refer to fields by the
//! names the daemon config gives them.
//!
//! The rooms: `format` (the serde structs), `parse` (one file, every problem at once), `locate`
//! (positions for compile-time messages), `read` (the directory and its files), `compile` (a
//! `Resolver` turning the parsed set into an `Engine`), `version` (canonical hashes and the
//! version sequence), `tests` (the files' own `[[test]]`s), `outline` (each pipeline's rules as
//! blocks in the files' own words, for the console), `edit` (the console's changes applied to a
//! file's text, every untouched line kept).

mod compile;
pub mod edit;
mod format;
mod locate;
pub mod outline;
mod parse;
mod read;
mod tests;
mod text;
mod tree;
mod version;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use engine::Engine;
use locate::Source;

pub use compile::parse_window;
pub use locate::where_written;
pub use read::MAX_RULE_FILE_BYTES;
pub use text::{bounded, line_col};
pub use version::{put_in_force, recorded_in_force, version_sequence};

/// Every problem of a rule set, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct RulesError {
    pub problems: Vec<String>,
}

/// What the CRM says about members, loaded through the daemon config (optional).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    /// When set, members not in it are inactive.
    pub active: Option<HashSet<String>>,
    /// (team crm id, member id) pairs added to the teams with that `crm_id`.
    pub memberships: Vec<(String, String)>,
    /// What the CRM says about a member within one team (`paused`, `max_assignments` and `per`
    /// columns of `directory.team_members`): a pause or a cap that holds in that team only.
    pub membership_rules: Vec<MembershipRule>,
    /// KPI score per member id.
    pub kpi: HashMap<String, f64>,
    /// The CRM's territory tree (`directory.territories`), before the rule files' territories
    /// (which may add to it or override a node).
    pub territories: Vec<CrmTerritory>,
    /// (team crm id, territory id) pairs: the territories the CRM says each team covers.
    pub team_territories: Vec<(String, String)>,
    /// Team memberships come from the CRM: a team may list no members in the files.
    pub memberships_from_crm: bool,
    /// The daemon config does not map `opportunity.edited_by`: rules counting owner edits are
    /// refused (false when compiling without a config: nothing is known then).
    pub owner_edits_unmapped: bool,
    /// The daemon config maps neither `opportunity.assigned_at` nor `created_at`: caps counting
    /// the CRM's assignments (`count = "crm"`) are refused (false without a config).
    pub crm_count_unmapped: bool,
    /// How the CRM's owner column writes a user id as text; ids in the rule files are read in
    /// that form (an upper-case uuid in a file is the same user as the CRM's lower-case one).
    pub ids: IdForm,
    /// The daemon config has `[directory]` queries that have not been read yet: a set compiled
    /// now is provisional (it never routes), and the files' `[[test]]`s wait until the set is
    /// compiled with the directory, as it will route.
    pub unread: bool,
    /// Compiled for a refresh of the directory alone, with a set compiled with it in force: a
    /// rule-file test the CRM's change breaks (a member it disabled, say) is a warning, not a
    /// refusal. The CRM's word on people applies; the admin is told which test to update.
    pub tests_warn: bool,
}

/// A territory as the CRM's tree has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrmTerritory {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub aliases: Vec<String>,
}

/// A member's pause or cap within one team, as the CRM keeps it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MembershipRule {
    /// The team's CRM id.
    pub team: String,
    pub member: String,
    /// Opted out of automatic assignment in this team.
    pub paused: bool,
    /// At most this many assignments through this team per window (seconds).
    pub cap: Option<(u32, i64)>,
}

/// The canonical text form of a user id, by the owner column's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IdForm {
    /// A uuid column, or not known yet (offline): an id that is a uuid in any letter case (braces
    /// and missing hyphens too) is read in lower case, hyphenated, as PostgreSQL writes a uuid;
    /// anything else as written. Trailing blanks are dropped.
    #[default]
    Canonical,
    /// A text column (text, varchar, char(n)): ids as written, case and all (trailing blanks
    /// dropped: char(n) reads back without its padding).
    Exact,
}

impl IdForm {
    /// From the owner column's `format_type`.
    pub fn of_type(t: &str) -> IdForm {
        let base = t.split('(').next().unwrap_or(t).trim();
        if matches!(base, "text" | "character varying" | "character" | "citext" | "name") {
            IdForm::Exact
        } else {
            IdForm::Canonical
        }
    }

    pub fn canon(self, id: &str) -> String {
        let id = id.trim_end();
        if self == IdForm::Exact {
            return id.to_string();
        }
        let hex: String = id.chars().filter(|c| !matches!(c, '-' | '{' | '}')).collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || id.len() > 38 {
            return id.to_string();
        }
        let h = hex.to_ascii_lowercase();
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

/// Load every `*.toml` and `*.json` file of `dir` (in name order) as one rule set, compiled against
/// the field names the daemon config maps (in their fetch order).
pub fn load_dir(dir: &Path, fields: &[String]) -> Result<Engine, RulesError> {
    load_dir_with(dir, fields, &Directory::default())
}

/// [`load_dir`] with what the CRM says about members.
pub fn load_dir_with(dir: &Path, fields: &[String], directory: &Directory) -> Result<Engine, RulesError> {
    compile::compile_sources(read::sources(dir)?, fields, directory)
}

/// The rule files of `dir` as the compiler reads them (name order, each checked as [`load_dir`]
/// checks it), as (path, text) pairs: what the console outlines and edits.
pub fn read_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, RulesError> {
    Ok(read::sources(dir)?.into_iter().map(|s| (s.path, s.text)).collect())
}

/// Compile rule files as [`read_files`] gives them (path, text), as [`load_dir_with`] would if
/// they were on disk: a draft compiles to the version its files will have once saved.
pub fn compile_files_with(
    files: &[(PathBuf, String)],
    fields: &[String],
    directory: &Directory,
) -> Result<Engine, RulesError> {
    compile::compile_sources(files.iter().map(|(p, t)| Source::new(p.clone(), t.clone())).collect(), fields, directory)
}

/// Compile rule files given as (name, text) pairs; the name's extension picks the format.
pub fn compile_texts(files: &[(&str, &str)], fields: &[String]) -> Result<Engine, RulesError> {
    compile_texts_with(files, fields, &Directory::default())
}

/// [`compile_texts`] with what the CRM and the daemon config say.
pub fn compile_texts_with(
    files: &[(&str, &str)],
    fields: &[String],
    directory: &Directory,
) -> Result<Engine, RulesError> {
    compile::compile_sources(
        files.iter().map(|(p, t)| Source::new(PathBuf::from(p), (*t).to_string())).collect(),
        fields,
        directory,
    )
}

/// The JSON Schema of a rule file, generated from the types of `format` (committed as
/// `config/rules.schema.json`; `oppty-router schema` prints it).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(format::RawFile);
    serde_json::to_string_pretty(&schema).map(|s| s + "\n").unwrap_or_default()
}

/// The example rules directory and the field names the example config maps (for tests).
#[cfg(test)]
pub(crate) fn example_rules() -> (PathBuf, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config: toml::Table = std::fs::read_to_string(root.join("config/oppty-router.toml"))
        .expect("the example config")
        .parse()
        .expect("TOML");
    let fields = config["opportunity"]["fields"].as_table().expect("fields").keys().cloned().collect();
    (root.join("config/rules"), fields)
}
