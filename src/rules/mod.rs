//! Rule files (TOML or JSON, the same structure): parse, check, compile into an [`Engine`], and
//! run the tests the files carry.
//!
//! Owns the file format (the serde structs stay in here) and every message an admin sees about a
//! rule file, as `file:line:column: key: message`. All the files of a directory form one rule set;
//! ids are unique across files. Nothing read here ever reaches SQL: rules refer to fields by the
//! names the daemon config gives them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::{
    self, Cap, Cond, Engine, Filter, FilterKind, IfNobody, Ledger, Op, Opportunity, Pick, Schedule, TeamStage,
    Territories, WhenAway, WhenFull, Window,
};

/// Every problem of a rule set, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct RulesError {
    pub problems: Vec<String>,
}

/// What the CRM says about members, loaded through the daemon config (optional).
#[derive(Debug, Clone, Default)]
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
    /// Team memberships come from the CRM: a team may list no members in the files.
    pub memberships_from_crm: bool,
    /// The daemon config does not map `opportunity.edited_by`: rules counting owner edits are
    /// refused (false when compiling without a config: nothing is known then).
    pub owner_edits_unmapped: bool,
    /// How the CRM's owner column writes a user id as text; ids in the rule files are read in
    /// that form (an upper-case uuid in a file is the same user as the CRM's lower-case one).
    pub ids: IdForm,
    /// The daemon config has `[directory]` queries that have not been read yet: a set compiled
    /// now is provisional (it never routes), and the files' `[[test]]`s wait until the set is
    /// compiled with the directory, as it will route.
    pub unread: bool,
}

/// A member's pause or cap within one team, as the CRM keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
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

/// Every user id of a file, in the CRM's form.
fn canon_ids(f: &mut RawFile, form: IdForm) {
    let c = |s: &mut String| *s = form.canon(s);
    let else_owner = |e: &mut Option<RawReclaimElse>| {
        if let Some(RawReclaimElse::Owner { owner }) = e {
            *owner = form.canon(owner);
        }
    };
    let escalate = |e: &mut Option<RawEscalate>| {
        if let Some(x) = e.as_mut().filter(|x| x.to != "team_lead") {
            x.to = form.canon(&x.to);
        }
    };
    if let Some(fb) = f.settings.as_mut().and_then(|s| s.fallback_owner.as_mut()) {
        c(fb);
    }
    f.member.iter_mut().for_each(|m| c(&mut m.id));
    for t in &mut f.team {
        t.members.iter_mut().for_each(c);
        t.lead.iter_mut().for_each(c);
        if let Some(r) = &mut t.reclaim {
            else_owner(&mut r.then);
            escalate(&mut r.escalate);
        }
    }
    for p in &mut f.pipeline {
        p.fallback_owner.iter_mut().for_each(c);
        if let Some(r) = &mut p.reclaim {
            else_owner(&mut r.then);
            else_owner(&mut r.when_nobody);
            escalate(&mut r.escalate);
        }
    }
    for t in &mut f.test {
        t.expect.member.iter_mut().for_each(c);
        t.paused.iter_mut().for_each(c);
        t.open = std::mem::take(&mut t.open).into_iter().map(|(k, v)| (form.canon(&k), v)).collect();
    }
}

// ---------- the files as written ----------

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "oppty-router rule file")]
struct RawFile {
    /// The JSON Schema of this file, for editors (ignored).
    #[serde(rename = "$schema", default)]
    #[allow(dead_code)]
    schema: Option<String>,
    settings: Option<RawSettings>,
    #[serde(default)]
    territory: Vec<RawTerritory>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[serde(default)]
    member: Vec<RawMember>,
    #[serde(default)]
    team: Vec<RawTeam>,
    #[serde(default)]
    tag: Vec<RawTagRule>,
    #[serde(default)]
    pipeline: Vec<RawPipeline>,
    #[serde(default)]
    test: Vec<RawTest>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
struct RawSettings {
    fallback_owner: Option<String>,
    hold_max: Option<String>,
    hold_retry: Option<String>,
    reentry_ramp: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Territory")]
struct RawTerritory {
    id: String,
    /// Its name; a field holding the name (any letter case) matches it like the id does, unless
    /// another territory has the same name (then give aliases).
    #[serde(default)]
    name: String,
    parent: Option<String>,
    /// Other ways the CRM writes it ("United States", "USA", "US"): matched like the id.
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
struct RawSchedule {
    id: String,
    timezone: String,
    week: BTreeMap<String, String>,
    #[serde(default)]
    out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cap")]
struct RawCap {
    max: u32,
    per: String,
    timezone: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Member")]
struct RawMember {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    paused: bool,
    max_open: Option<u32>,
    #[serde(default)]
    caps: Vec<RawCap>,
    weight: Option<u32>,
    kpi: Option<f64>,
    #[serde(default)]
    attributes: BTreeMap<String, Scalar>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    territories: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    schedule: Option<String>,
    #[serde(default)]
    out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Team")]
struct RawTeam {
    id: String,
    #[serde(default)]
    name: String,
    crm_id: Option<String>,
    #[serde(default)]
    pipelines: Vec<String>,
    #[serde(default)]
    territories: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    members: Vec<String>,
    /// Members' default schedule.
    schedule: Option<String>,
    /// The team lead (a CRM user id): where a reclaim ladder with `escalate.to = "team_lead"` goes.
    lead: Option<String>,
    /// This team's changes to its pipelines' reclaim rules.
    reclaim: Option<RawReclaimOverride>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TagRule")]
struct RawTagRule {
    name: String,
    when: RawCond,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pipeline")]
struct RawPipeline<R = RawRule> {
    id: String,
    fallback_owner: Option<String>,
    /// Fields an opportunity must have before it is routed: CRMs often save its relations (the
    /// account link, the product line) a moment after the row. Missing one, it is held, not sent to
    /// the fallback owner, until the field is set or `wait_up_to` has passed.
    #[serde(default)]
    require: Vec<String>,
    /// How long an opportunity waits for its required fields, then it is routed with what it has
    /// (default "10m").
    wait_up_to: Option<String>,
    reclaim: Option<RawReclaim>,
    // The pipeline's rules (`R` is other than `RawRule` only to check the other keys alone).
    #[serde(default = "Vec::<R>::new")]
    rule: Vec<R>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
struct RawRule {
    id: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    when: Option<RawCond>,
    team: Option<RawTeamStage>,
    #[serde(default)]
    filters: Vec<RawFilter>,
    member: RawPick,
    when_full: Option<String>,
    when_away: Option<String>,
}

/// Take back an assignment whose owner did nothing in time, and give it to someone else.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Reclaim")]
struct RawReclaim {
    /// The inactivity window, e.g. "48h" or "3d 4h".
    after: String,
    /// What counts as an interaction: "owner" (an activity by the owner; always counts), "anyone"
    /// (an activity by anyone), "owner_edits" (an edit of the opportunity by its owner; needs
    /// `opportunity.edited_by` in the daemon config). One word or a list.
    interactions: Option<OneOrMany>,
    /// Count only the owner's working hours (their schedule) towards the window (default false).
    working_hours: Option<bool>,
    /// Reassign within the owner's team (default true).
    within_team: Option<bool>,
    /// Who must not get it back: "previous" (the owner losing it; the default) or "all_previous".
    exclude: Option<String>,
    /// Who must not get it back: the last k distinct owners (instead of `exclude`).
    exclude_last: Option<u32>,
    /// How many times one opportunity may be reassigned within the team (default 3).
    max_reclaims: Option<i32>,
    /// Warn the owner when this fraction of the window has passed, e.g. 0.75.
    warn_at: Option<f64>,
    /// After the reassignments: give it to the team lead (or a named user) for a window of its own.
    escalate: Option<RawEscalate>,
    /// At the end of the ladder: "leave", or { owner = "<id>" } (release to a pool owner).
    then: Option<RawReclaimElse>,
    /// When nobody else is eligible: "leave", or { owner = "<id>" }.
    when_nobody: Option<RawReclaimElse>,
    /// Pause a member who lets this many opportunities lapse within a period, until an admin lifts it.
    pause_after: Option<RawPauseAfter>,
}

/// A team's changes to the reclaim rule of its pipelines; what is not given is the pipeline's.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReclaimOverride")]
struct RawReclaimOverride {
    after: Option<String>,
    interactions: Option<OneOrMany>,
    working_hours: Option<bool>,
    warn_at: Option<f64>,
    max_reclaims: Option<i32>,
    escalate: Option<RawEscalate>,
    then: Option<RawReclaimElse>,
    pause_after: Option<RawPauseAfter>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Escalate")]
struct RawEscalate {
    /// "team_lead" (the team's `lead`), or a CRM user id.
    to: String,
    /// The lead's window (default: the reclaim window).
    after: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PauseAfter")]
struct RawPauseAfter {
    /// Opportunities reclaimed from the member …
    lapses: u32,
    /// … within this period, e.g. "7d".
    within: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ReclaimElse")]
enum RawReclaimElse {
    Word(String),
    Owner { owner: String },
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
    fn num(&self) -> Option<f64> {
        match self {
            Scalar::Text(s) => s.trim().parse().ok(),
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Bool(_) => None,
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cond")]
struct RawCond {
    all: Option<Vec<RawCond>>,
    any: Option<Vec<RawCond>>,
    not: Option<Box<RawCond>>,
    tagged: Option<String>,
    field: Option<String>,
    equals: Option<Scalar>,
    not_equals: Option<Scalar>,
    #[serde(rename = "in")]
    in_: Option<Vec<Scalar>>,
    not_in: Option<Vec<Scalar>>,
    contains: Option<String>,
    starts_with: Option<String>,
    above: Option<Scalar>,
    at_least: Option<Scalar>,
    below: Option<Scalar>,
    at_most: Option<Scalar>,
    between: Option<Vec<Scalar>>,
    after: Option<String>,
    before: Option<String>,
    dates_between: Option<Vec<String>>,
    is_empty: Option<bool>,
    is_set: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TeamStage")]
struct RawTeamStage {
    id: Option<String>,
    territory: Option<OneOrMany>,
    from_field: Option<String>,
    tags: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Filter")]
struct RawFilter {
    attribute: Option<String>,
    equals_field: Option<String>,
    products: Option<String>,
    categories: Option<String>,
    territory: Option<OneOrMany>,
    tags: Option<String>,
    if_nobody: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Pick")]
enum RawPick {
    Name(String),
    Spec(RawPickSpec),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PickSpec")]
struct RawPickSpec {
    pick: String,
    #[serde(default)]
    fields: Vec<String>,
    otherwise: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
struct RawTest {
    name: String,
    pipeline: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, Scalar>,
    /// Open opportunities per member id.
    #[serde(default)]
    open: BTreeMap<String, i64>,
    /// Members paused for this test only.
    #[serde(default)]
    paused: Vec<String>,
    now: Option<String>,
    expect: RawExpect,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
struct RawExpect {
    member: Option<String>,
    team: Option<String>,
    outcome: Option<String>,
    rule: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    explanation_contains: Option<String>,
}

/// Interns products, categories, tags and attributes as small integers for the engine.
#[derive(Default)]
struct Symbols {
    map: rustc_hash::FxHashMap<String, u32>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        let k = s.trim().to_lowercase();
        let n = self.map.len() as u32;
        *self.map.entry(k).or_insert(n)
    }

    fn set(&mut self, v: &[String]) -> Vec<u32> {
        let mut out: Vec<u32> = v.iter().map(|s| self.intern(s)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The JSON Schema of a rule file, generated from the types above (committed as
/// `config/rules.schema.json`; `oppty-router schema` prints it).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawFile);
    serde_json::to_string_pretty(&schema).map(|s| s + "\n").unwrap_or_default()
}

/// One file's text, kept for messages.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// Byte offsets of the definitions `id = "<id>"` (or `"id": "<id>"`), in order.
    fn definitions<'a>(&'a self, id: &str) -> impl Iterator<Item = usize> + 'a {
        let quoted = format!("\"{id}\"");
        let text = self.text.as_str();
        text.match_indices(&quoted).map(|(off, _)| off).collect::<Vec<_>>().into_iter().filter(move |off| {
            let before = text[..*off].trim_end();
            before.strip_suffix('=').or_else(|| before.strip_suffix(':')).is_some_and(|b| {
                let b = b.trim_end();
                b.ends_with("id") && !b.ends_with("_id") || b.ends_with("\"id\"")
            })
        })
    }

    fn at(&self, off: usize) -> String {
        let (l, c) = line_col(&self.text, off);
        format!("{}:{l}:{c}", self.path.display())
    }

    /// `file:line:column` of the `nth` (0-based) definition `id = "<id>"` (or `"id": "<id>"`).
    fn locate_id(&self, id: &str, nth: usize) -> String {
        match self.definitions(id).nth(nth) {
            Some(off) => self.at(off),
            None => self.locate(id),
        }
    }

    /// `file:line:column` of the key `key` (TOML `key =` or JSON `"key":`) first written after the
    /// definition `id = "<owner>"`; else of that definition.
    fn locate_key(&self, owner: &str, key: &str) -> String {
        let Some(start) = self.definitions(owner).next() else { return self.locate(owner) };
        let rest = &self.text[start..];
        let found = rest.match_indices(key).map(|(off, _)| off).find(|off| {
            let before = rest[..*off].chars().next_back();
            let after = &rest[off + key.len()..];
            let toml = matches!(before, Some('\n' | ' ' | '{' | ',' | '\t')) && after.trim_start().starts_with('=');
            let json = before == Some('"') && after.strip_prefix('"').is_some_and(|a| a.trim_start().starts_with(':'));
            toml || json
        });
        self.at(start + found.unwrap_or(0))
    }

    /// `file:line:column` of the first occurrence of `needle` (a quoted value), else `file`.
    fn locate(&self, needle: &str) -> String {
        let quoted = format!("\"{needle}\"");
        match self.text.find(&quoted) {
            Some(off) => self.at(off),
            None => self.path.display().to_string(),
        }
    }
}

fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
    (line, col)
}

/// Load every `*.toml` and `*.json` file of `dir` (in name order) as one rule set, compiled against
/// the field names the daemon config maps (in their fetch order).
pub fn load_dir(dir: &Path, fields: &[String]) -> Result<Engine, RulesError> {
    load_dir_with(dir, fields, &Directory::default())
}

/// The largest rule file read: a bigger one is refused unread (its reading and compiling would
/// hold up reloads, and it is not something an admin edits by hand).
pub const MAX_RULE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// [`load_dir`] with what the CRM says about members.
pub fn load_dir_with(dir: &Path, fields: &[String], directory: &Directory) -> Result<Engine, RulesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RulesError {
        problems: vec![format!("{}: cannot read the rules directory: {e}", dir.display())],
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml") | Some("json")))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match read_rule_file(&path) {
            Ok(text) => files.push(Source { path, text }),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no .toml or .json rule files", dir.display()));
    }
    if !problems.is_empty() {
        return Err(RulesError { problems });
    }
    compile_sources(files, fields, directory)
}

/// Read one rule file: a regular file (a FIFO or a device named `x.toml` is refused without
/// waiting on it), at most [`MAX_RULE_FILE_BYTES`], in UTF-8.
fn read_rule_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = "is not a regular file (a FIFO, socket or device?); rule files must be regular files";
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular.into());
    }
    let too_big = |n: u64| {
        format!(
            "is {:.1} MiB; rule files are limited to {} MiB (split it into several files)",
            n as f64 / 1048576.0,
            MAX_RULE_FILE_BYTES / 1048576
        )
    };
    if meta.len() > MAX_RULE_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    // Opened without blocking, and checked again: it may have been swapped since.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    if !file.metadata().map_err(|e| format!("cannot read: {e}"))?.is_file() {
        return Err(not_regular.into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_RULE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col_bytes(e.as_bytes(), e.utf8_error().valid_up_to());
        format!("{line}:{col}: is not UTF-8 text; save the file as UTF-8")
    })
}

fn line_col_bytes(bytes: &[u8], off: usize) -> (usize, usize) {
    let before = &bytes[..off.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rposition(|b| *b == b'\n').map_or(off + 1, |i| off - i);
    (line, col)
}

/// A file with nothing in it but blanks (and, in TOML, comments): most often a save in progress
/// (an editor that truncates, then writes). It is refused, so the set never loses that file's
/// definitions mid-save.
fn is_empty_rule_file(src: &Source) -> bool {
    let json = src.path.extension().and_then(|e| e.to_str()) == Some("json");
    src.text.lines().map(str::trim).all(|l| l.is_empty() || (!json && l.starts_with('#')))
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
    compile_sources(
        files.iter().map(|(p, t)| Source { path: PathBuf::from(p), text: (*t).to_string() }).collect(),
        fields,
        directory,
    )
}

/// Each cycle of territory parents is one error, naming the whole loop once (not once per member
/// of it); the loop is then cut, so nothing else reports it again.
fn territory_cycles(cx: &mut Ctx<'_>, territories: &[(usize, RawTerritory)], terr: &mut Territories) {
    let mut done = vec![false; terr.codes.len()];
    let mut names: Vec<&str> = terr.codes.iter().map(String::as_str).collect();
    for (_, t) in territories {
        names[terr.index[&t.id.trim().to_lowercase()] as usize] = t.id.trim();
    }
    for (fi, t) in territories {
        let start = terr.index[&t.id.trim().to_lowercase()];
        let mut path = vec![start];
        let mut cur = terr.parent[start as usize];
        while let Some(c) = cur {
            if done[c as usize] {
                break;
            }
            if let Some(pos) = path.iter().position(|p| *p == c) {
                let lp: Vec<&str> = path[pos..].iter().chain([&c]).map(|n| names[*n as usize]).collect();
                let at = cx.files[*fi].locate_id(&t.id, 0);
                cx.problems.push(format!(
                    "{at}: territory.parent: territories {} form a cycle; give one of them another parent (or none)",
                    lp.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" → ")
                ));
                terr.parent[c as usize] = None;
                break;
            }
            path.push(c);
            cur = terr.parent[c as usize];
        }
        path.iter().for_each(|n| done[*n as usize] = true);
    }
}

fn reclaim_else(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &Option<RawReclaimElse>) -> Option<engine::ReclaimElse> {
    match v {
        None => Some(engine::ReclaimElse::Leave),
        Some(RawReclaimElse::Word(w)) if w == "leave" => Some(engine::ReclaimElse::Leave),
        Some(RawReclaimElse::Word(w)) => {
            cx.err(fi, w, key, format!("`{w}` is not a choice; use \"leave\" or {{ owner = \"<CRM user id>\" }}"));
            None
        }
        Some(RawReclaimElse::Owner { owner }) if owner.trim().is_empty() => {
            cx.err(fi, owner, key, "the owner is empty; give a CRM user id");
            None
        }
        Some(RawReclaimElse::Owner { owner }) => Some(engine::ReclaimElse::Owner(owner.clone())),
    }
}

fn reclaim_window(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &str) -> Option<i64> {
    match duration(v) {
        Ok(d) if d > 0 => Some(d),
        Ok(_) => {
            cx.err(fi, v, key, "must be longer than 0s");
            None
        }
        Err(e) => {
            cx.err(fi, v, key, e);
            None
        }
    }
}

/// `(anyone, owner_edits)` from `interactions`; owner edits only where the config captures them.
fn interactions(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &OneOrMany) -> Option<(bool, bool)> {
    let (mut anyone, mut edits, mut ok) = (false, false, true);
    for w in v.list() {
        match w.as_str() {
            "owner" => {}
            "anyone" => anyone = true,
            "owner_edits" => edits = true,
            o => {
                cx.err(fi, o, key, format!("`{o}` is not a choice; use \"owner\", \"anyone\" or \"owner_edits\""));
                ok = false;
            }
        }
    }
    if edits && !cx.owner_edits_mapped {
        cx.err(
            fi,
            "owner_edits",
            key,
            "owner edits are not captured: map `opportunity.edited_by` (who last changed the row) in the daemon config, or remove \"owner_edits\"",
        );
        ok = false;
    }
    ok.then_some((anyone, edits))
}

fn warn_fraction(cx: &mut Ctx<'_>, fi: usize, needle: &str, key: &str, v: Option<f64>) -> Result<Option<f64>, ()> {
    match v {
        Some(f) if !(f > 0.0 && f < 1.0) => {
            cx.err_key(fi, needle, "warn_at", key, format!("is {f}; use a fraction between 0 and 1, e.g. 0.75"));
            Err(())
        }
        other => Ok(other),
    }
}

fn escalate(cx: &mut Ctx<'_>, fi: usize, key: &str, e: &RawEscalate, window: i64) -> Option<engine::Escalate> {
    let to = match e.to.trim() {
        "" => {
            cx.err(fi, &e.to, &format!("{key}.to"), "is empty; use \"team_lead\" or a CRM user id");
            return None;
        }
        "team_lead" => engine::EscalateTo::TeamLead,
        x => engine::EscalateTo::Owner(x.to_string()),
    };
    let after = match &e.after {
        Some(a) => reclaim_window(cx, fi, &format!("{key}.after"), a)?,
        None => window,
    };
    Some(engine::Escalate { to, after })
}

fn pause_after(cx: &mut Ctx<'_>, fi: usize, needle: &str, key: &str, p: &RawPauseAfter) -> Option<engine::PauseAfter> {
    if p.lapses == 0 {
        cx.err_key(fi, needle, "lapses", &format!("{key}.lapses"), "is 0; use 1 or more (or remove pause_after)");
        return None;
    }
    let within = reclaim_window(cx, fi, &format!("{key}.within"), &p.within)?;
    Some(engine::PauseAfter { lapses: i64::from(p.lapses), within })
}

fn compile_reclaim(
    cx: &mut Ctx<'_>,
    fi: usize,
    key: &str,
    pipeline: &str,
    r: &RawReclaim,
) -> Option<engine::ReclaimPolicy> {
    let after = reclaim_window(cx, fi, &format!("{key}.after"), &r.after);
    let (anyone, owner_edits) = match &r.interactions {
        Some(v) => interactions(cx, fi, &format!("{key}.interactions"), v)?,
        None => (false, false),
    };
    let exclude = match (r.exclude.as_deref(), r.exclude_last) {
        (Some(_), Some(_)) => {
            cx.err_key(
                fi,
                pipeline,
                "exclude_last",
                &format!("{key}.exclude_last"),
                "give either `exclude` or `exclude_last`, not both",
            );
            return None;
        }
        (_, Some(0)) => {
            cx.err_key(
                fi,
                pipeline,
                "exclude_last",
                &format!("{key}.exclude_last"),
                "is 0; use 1 or more (1 = the owner losing it)",
            );
            return None;
        }
        (_, Some(k)) => engine::Exclude::Last(k),
        (None | Some("previous"), None) => engine::Exclude::Previous,
        (Some("all_previous"), None) => engine::Exclude::AllPrevious,
        (Some(o), None) => {
            cx.err(
                fi,
                o,
                &format!("{key}.exclude"),
                format!("`{o}` is not a choice; use \"previous\" or \"all_previous\""),
            );
            return None;
        }
    };
    let then = reclaim_else(cx, fi, &format!("{key}.then"), &r.then);
    let when_nobody = reclaim_else(cx, fi, &format!("{key}.when_nobody"), &r.when_nobody);
    let max_reclaims = r.max_reclaims.unwrap_or(3);
    if max_reclaims < 0 {
        cx.err_key(fi, pipeline, "max_reclaims", &format!("{key}.max_reclaims"), "must be 0 or more");
        return None;
    }
    let warn_at = warn_fraction(cx, fi, pipeline, &format!("{key}.warn_at"), r.warn_at).ok()?;
    let after = after?;
    let escalate = match &r.escalate {
        Some(e) => Some(escalate(cx, fi, &format!("{key}.escalate"), e, after)?),
        None => None,
    };
    let pause_after = match &r.pause_after {
        Some(p) => Some(pause_after(cx, fi, pipeline, &format!("{key}.pause_after"), p)?),
        None => None,
    };
    Some(engine::ReclaimPolicy {
        after,
        anyone,
        owner_edits,
        working_hours: r.working_hours.unwrap_or(false),
        within_team: r.within_team.unwrap_or(true),
        exclude,
        max_reclaims,
        warn_at,
        then: then?,
        when_nobody: when_nobody?,
        escalate,
        pause_after,
        by_team: std::collections::BTreeMap::new(),
    })
}

fn override_reclaim(
    cx: &mut Ctx<'_>,
    fi: usize,
    key: &str,
    team: &str,
    base: &engine::ReclaimPolicy,
    o: &RawReclaimOverride,
) -> Option<engine::ReclaimPolicy> {
    let mut p = base.clone();
    if let Some(a) = &o.after {
        p.after = reclaim_window(cx, fi, &format!("{key}.after"), a)?;
    }
    if let Some(v) = &o.interactions {
        (p.anyone, p.owner_edits) = interactions(cx, fi, &format!("{key}.interactions"), v)?;
    }
    if let Some(w) = o.working_hours {
        p.working_hours = w;
    }
    if o.warn_at.is_some() {
        p.warn_at = warn_fraction(cx, fi, team, &format!("{key}.warn_at"), o.warn_at).ok()?;
    }
    if let Some(m) = o.max_reclaims {
        if m < 0 {
            cx.err_key(fi, team, "max_reclaims", &format!("{key}.max_reclaims"), "must be 0 or more");
            return None;
        }
        p.max_reclaims = m;
    }
    if let Some(e) = &o.escalate {
        p.escalate = Some(escalate(cx, fi, &format!("{key}.escalate"), e, p.after)?);
    }
    if o.then.is_some() {
        p.then = reclaim_else(cx, fi, &format!("{key}.then"), &o.then)?;
    }
    if let Some(x) = &o.pause_after {
        p.pause_after = Some(pause_after(cx, fi, team, &format!("{key}.pause_after"), x)?);
    }
    Some(p)
}

/// Names and aliases as other keys of the territory index (values are matched in lower case).
/// An alias that is already another territory's id, name or alias is an error; a name two
/// territories share matches neither (wards repeat across districts): ids and aliases still do.
fn territory_names(cx: &mut Ctx<'_>, territories: &[(usize, RawTerritory)], terr: &mut Territories) {
    let mut names: HashMap<String, Vec<u32>> = HashMap::new();
    for (_, t) in territories {
        let node = terr.index[&t.id.trim().to_lowercase()];
        let name = t.name.trim().to_lowercase();
        if !name.is_empty() && !terr.index.contains_key(&name) {
            names.entry(name).or_default().push(node);
        }
    }
    for (name, nodes) in names {
        if let [node] = nodes[..] {
            terr.index.insert(name, node);
        }
    }
    for (fi, t) in territories {
        let node = terr.index[&t.id.trim().to_lowercase()];
        for a in &t.aliases {
            let key = a.trim().to_lowercase();
            match terr.index.get(&key) {
                Some(other) if *other != node => {
                    let other = terr.codes[*other as usize].clone();
                    cx.err(
                        *fi,
                        a,
                        &format!("territory `{}`.aliases", t.id),
                        format!("`{a}` already names territory `{other}`; an alias names one territory"),
                    );
                }
                _ => {
                    terr.index.insert(key, node);
                }
            }
        }
    }
}

/// `require` and `wait_up_to`: the fields (by index) an opportunity waits for, and how long.
fn compile_require(cx: &mut Ctx<'_>, fi: usize, p: &RawPipeline) -> Option<engine::Require> {
    let key = format!("pipeline `{}`", p.id);
    if p.require.is_empty() {
        if p.wait_up_to.is_some() {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), "goes with `require = [\"field\", …]`");
        }
        return None;
    }
    let fields: Vec<(usize, String)> = p
        .require
        .iter()
        .enumerate()
        .filter_map(|(i, name)| cx.field(fi, &format!("{key}.require[{i}]"), name).map(|f| (f, name.clone())))
        .collect();
    let wait = match p.wait_up_to.as_deref().map(duration).unwrap_or(Ok(600)) {
        Ok(w) if w > 0 => w,
        Ok(_) => {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), "must be longer than 0s, e.g. \"10m\"");
            return None;
        }
        Err(e) => {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), e);
            return None;
        }
    };
    (fields.len() == p.require.len()).then_some(engine::Require { fields, wait_secs: wait })
}

fn duration(s: &str) -> Result<i64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs() as i64)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"30m\", \"48h\", \"3d 4h\""))
}

/// A window the CRM gives for a cap: a duration ("30d", "720h") or an interval as PostgreSQL
/// prints it ("30 days", "1 mon"); longer than zero.
pub fn parse_window(s: &str) -> Result<i64, String> {
    let t = s.trim();
    // PostgreSQL's own words for an interval: "1 mon" is 30 days, as interval arithmetic has it.
    let t = t.replace(" mons", "months").replace(" mon", "month");
    let secs = humantime::parse_duration(&t)
        .or_else(|_| humantime::parse_duration(&t.replace(' ', "")))
        .map(|d| d.as_secs() as i64)
        .map_err(|e| format!("not a duration ({e}); write e.g. '30d' or an interval"))?;
    if secs <= 0 {
        return Err("must be longer than 0s".into());
    }
    Ok(secs)
}

fn timezone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("`{s}` is not a time zone; use an IANA name such as \"Asia/Ho_Chi_Minh\""))
}

/// Compiling state: sources for messages and the problems found.
struct Ctx<'a> {
    files: &'a [Source],
    fields: HashMap<&'a str, usize>,
    field_list: String,
    problems: Vec<String>,
    /// `opportunity.edited_by` is mapped in the daemon config.
    owner_edits_mapped: bool,
}

impl Ctx<'_> {
    fn err(&mut self, fi: usize, needle: &str, key: &str, msg: impl std::fmt::Display) {
        let at = self.files[fi].locate(needle);
        self.problems.push(format!("{at}: {key}: {msg}"));
    }

    /// A problem with the value of `name`, a key written below the definition of `owner`.
    fn err_key(&mut self, fi: usize, owner: &str, name: &str, key: &str, msg: impl std::fmt::Display) {
        let at = self.files[fi].locate_key(owner, name);
        self.problems.push(format!("{at}: {key}: {msg}"));
    }

    fn field(&mut self, fi: usize, key: &str, name: &str) -> Option<usize> {
        match self.fields.get(name) {
            Some(i) => Some(*i),
            None => {
                let known = self.field_list.clone();
                self.err(fi, name, key, format!("unknown field `{name}`; fields mapped in the daemon config: {known}"));
                None
            }
        }
    }

    fn cond(&mut self, fi: usize, key: &str, c: &RawCond) -> Option<Cond> {
        let forms = [c.all.is_some(), c.any.is_some(), c.not.is_some(), c.tagged.is_some(), c.field.is_some()];
        if forms.iter().filter(|x| **x).count() != 1 {
            self.err(fi, "", key, "a condition is one of { all = [...] }, { any = [...] }, { not = {...} }, { tagged = \"tag\" } or { field = \"name\", <operator> = value }");
            return None;
        }
        if let Some(cs) = &c.all {
            let v: Vec<Cond> =
                cs.iter().enumerate().filter_map(|(i, c)| self.cond(fi, &format!("{key}.all[{i}]"), c)).collect();
            return (v.len() == cs.len()).then_some(Cond::All(v));
        }
        if let Some(cs) = &c.any {
            let v: Vec<Cond> =
                cs.iter().enumerate().filter_map(|(i, c)| self.cond(fi, &format!("{key}.any[{i}]"), c)).collect();
            return (v.len() == cs.len()).then_some(Cond::Any(v));
        }
        if let Some(n) = &c.not {
            return self.cond(fi, &format!("{key}.not"), n).map(|c| Cond::Not(Box::new(c)));
        }
        if let Some(t) = &c.tagged {
            return Some(Cond::Tagged(t.to_lowercase()));
        }
        let name = c.field.clone().unwrap_or_default();
        let field = self.field(fi, &format!("{key}.field"), &name);
        let lower = |s: &Scalar| s.text().trim().to_lowercase();
        let set = |v: &Vec<Scalar>| v.iter().map(lower).collect::<std::collections::BTreeSet<String>>();
        let mut ops: Vec<Result<Op, String>> = Vec::new();
        let num =
            |s: &Scalar, what: &str| s.num().ok_or_else(|| format!("`{what}` needs a number, not `{}`", s.text()));
        let date = |s: &str, what: &str| {
            cond::parse_instant(s)
                .ok_or_else(|| format!("`{what}` needs a date (\"2026-01-31\") or a timestamp, not `{s}`"))
        };
        if let Some(v) = &c.equals {
            ops.push(Ok(Op::Equals(lower(v))));
        }
        if let Some(v) = &c.not_equals {
            ops.push(Ok(Op::NotEquals(lower(v))));
        }
        if let Some(v) = &c.in_ {
            ops.push(Ok(Op::In(set(v))));
        }
        if let Some(v) = &c.not_in {
            ops.push(Ok(Op::NotIn(set(v))));
        }
        if let Some(v) = &c.contains {
            ops.push(Ok(Op::Contains(v.to_lowercase())));
        }
        if let Some(v) = &c.starts_with {
            ops.push(Ok(Op::StartsWith(v.to_lowercase())));
        }
        if let Some(v) = &c.above {
            ops.push(num(v, "above").map(Op::Above));
        }
        if let Some(v) = &c.at_least {
            ops.push(num(v, "at_least").map(Op::AtLeast));
        }
        if let Some(v) = &c.below {
            ops.push(num(v, "below").map(Op::Below));
        }
        if let Some(v) = &c.at_most {
            ops.push(num(v, "at_most").map(Op::AtMost));
        }
        if let Some(v) = &c.between {
            ops.push(match v.as_slice() {
                [a, b] => match (num(a, "between"), num(b, "between")) {
                    (Ok(a), Ok(b)) if a <= b => Ok(Op::Between(a, b)),
                    (Ok(_), Ok(_)) => Err("`between` needs [low, high] with low ≤ high".into()),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                },
                _ => Err("`between` needs two numbers: [low, high]".into()),
            });
        }
        if let Some(v) = &c.after {
            ops.push(date(v, "after").map(Op::After));
        }
        if let Some(v) = &c.before {
            ops.push(date(v, "before").map(Op::Before));
        }
        if let Some(v) = &c.dates_between {
            ops.push(match v.as_slice() {
                [a, b] => match (date(a, "dates_between"), date(b, "dates_between")) {
                    (Ok(a), Ok(b)) if a <= b => Ok(Op::DatesBetween(a, b)),
                    (Ok(_), Ok(_)) => Err("`dates_between` needs [first, last] in order".into()),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                },
                _ => Err("`dates_between` needs two dates: [first, last]".into()),
            });
        }
        if let Some(b) = c.is_empty {
            ops.push(Ok(if b { Op::IsEmpty } else { Op::IsSet }));
        }
        if let Some(b) = c.is_set {
            ops.push(Ok(if b { Op::IsSet } else { Op::IsEmpty }));
        }
        if ops.len() != 1 {
            self.err(fi, &name, key, format!("the condition on `{name}` needs exactly one operator (equals, not_equals, in, not_in, contains, starts_with, above, at_least, below, at_most, between, after, before, dates_between, is_empty, is_set); it has {}", ops.len()));
            return None;
        }
        match ops.pop() {
            Some(Ok(op)) => field.map(|field| Cond::field(field, name, op)),
            Some(Err(e)) => {
                self.err(fi, &name, key, e);
                None
            }
            None => None,
        }
    }
}

use crate::engine::cond;

mod parse;

/// Rule set versions: a sequence that only grows within this process, and continues after the
/// last version the database recorded (see [`continue_versions_after`]).
static NEXT_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The sequence number of a version (`<sequence>-<hash>`).
pub fn version_sequence(version: &str) -> Option<u64> {
    version.split_once('-')?.0.parse().ok()
}

/// Versions never repeat across restarts: continue the sequence after `last` (the last version
/// recorded by a previous process) and, when `current` is not newer, give it the next number.
pub fn continue_versions_after(last: u64, current: &Engine) -> Option<Engine> {
    use std::sync::atomic::Ordering::SeqCst;
    NEXT_SEQUENCE.fetch_max(last.saturating_add(1), SeqCst);
    if version_sequence(&current.version).is_some_and(|s| s > last) {
        return None;
    }
    let version = format!("{}-{}", NEXT_SEQUENCE.fetch_add(1, SeqCst), current.hash);
    Some(Engine { version, ..current.clone() })
}

const DEFAULT_TEST_NOW: &str = "2030-01-07T03:00:00Z";

fn compile_sources(files: Vec<Source>, fields: &[String], directory: &Directory) -> Result<Engine, RulesError> {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    let mut hasher = Sha256::new();
    for (i, src) in files.iter().enumerate() {
        hasher.update(src.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        hasher.update([0]);
        hasher.update(&src.text);
        hasher.update([0]);
        if is_empty_rule_file(src) {
            problems.push(format!(
                "{}: the file is empty (no definitions); if it is being saved, the saved version is read \
                 next; to remove its rules, delete the file",
                src.path.display()
            ));
            continue;
        }
        match parse::parse(src) {
            Ok(f) => parsed.push((i, f)),
            Err(e) => problems.extend(e),
        }
    }
    if !problems.is_empty() {
        return Err(RulesError { problems });
    }
    // The CRM's directory is part of what the set was compiled from.
    let mut active: Vec<&String> = directory.active.iter().flatten().collect();
    active.sort();
    for a in active {
        hasher.update(a);
        hasher.update([1]);
    }
    for m in &directory.membership_rules {
        hasher.update(format!("{m:?}"));
        hasher.update([4]);
    }
    let mut memberships = directory.memberships.clone();
    memberships.sort();
    for (t, m) in &memberships {
        hasher.update(t);
        hasher.update([2]);
        hasher.update(m);
        hasher.update([3]);
    }
    let mut kpis: Vec<(&String, &f64)> = directory.kpi.iter().collect();
    kpis.sort_by(|a, b| a.0.cmp(b.0));
    for (m, k) in kpis {
        hasher.update(m);
        hasher.update(k.to_le_bytes());
    }
    let hash: String = hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let version = format!("{}-{hash}", NEXT_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let mut cx = Ctx {
        files: &files,
        fields: fields.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect(),
        field_list: if fields.is_empty() { "none are mapped".into() } else { fields.join(", ") },
        problems: Vec::new(),
        owner_edits_mapped: !directory.owner_edits_unmapped,
    };

    // Gather everything with the file it came from; duplicates are errors naming both files.
    let mut settings: Option<(usize, RawSettings)> = None;
    let mut territories: Vec<(usize, RawTerritory)> = Vec::new();
    let mut schedules: Vec<(usize, RawSchedule)> = Vec::new();
    let mut members: Vec<(usize, RawMember)> = Vec::new();
    let mut teams: Vec<(usize, RawTeam)> = Vec::new();
    let mut tags: Vec<(usize, RawTagRule)> = Vec::new();
    let mut pipelines: Vec<(usize, RawPipeline)> = Vec::new();
    let mut tests: Vec<(usize, RawTest)> = Vec::new();
    for (fi, mut f) in parsed {
        canon_ids(&mut f, directory.ids);
        if let Some(s) = f.settings {
            if let Some((other, _)) = &settings {
                let other = files[*other].path.display().to_string();
                cx.err(fi, "", "settings", format!("[settings] appears again (also in {other}); keep one"));
            }
            settings = Some((fi, s));
        }
        territories.extend(f.territory.into_iter().map(|x| (fi, x)));
        schedules.extend(f.schedule.into_iter().map(|x| (fi, x)));
        members.extend(f.member.into_iter().map(|x| (fi, x)));
        teams.extend(f.team.into_iter().map(|x| (fi, x)));
        tags.extend(f.tag.into_iter().map(|x| (fi, x)));
        pipelines.extend(f.pipeline.into_iter().map(|x| (fi, x)));
        tests.extend(f.test.into_iter().map(|x| (fi, x)));
    }
    fn dupes<T>(cx: &mut Ctx<'_>, items: &[(usize, T)], id: impl Fn(&T) -> &str, what: &str) {
        let mut seen: HashMap<String, (usize, usize)> = HashMap::new(); // id -> (file, nth in file)
        let mut per_file: HashMap<(usize, String), usize> = HashMap::new();
        for (fi, x) in items {
            let i = id(x);
            if i.trim().is_empty() {
                cx.err(*fi, "", what, "an id is empty");
                continue;
            }
            let nth = per_file.entry((*fi, i.to_string())).or_insert(0);
            let here = *nth;
            *nth += 1;
            match seen.get(i) {
                Some(&(ofi, onth)) => {
                    let first = cx.files[ofi].locate_id(i, onth);
                    let at = cx.files[*fi].locate_id(i, here);
                    cx.problems
                        .push(format!("{at}: {what}.id: {what} `{i}` is defined twice (first at {first}); keep one"));
                }
                None => {
                    seen.insert(i.to_string(), (*fi, here));
                }
            }
        }
    }
    dupes(&mut cx, &territories, |t| &t.id, "territory");
    dupes(&mut cx, &schedules, |t| &t.id, "schedule");
    dupes(&mut cx, &members, |t| &t.id, "member");
    dupes(&mut cx, &teams, |t| &t.id, "team");
    dupes(&mut cx, &pipelines, |t| &t.id, "pipeline");

    // Settings.
    let mut hold_max = 24 * 3600;
    let mut hold_retry = 300;
    let mut reentry_ramp = 8 * 3600;
    let mut global_fallback = None;
    if let Some((fi, s)) = &settings {
        global_fallback = s.fallback_owner.clone();
        for (v, slot, key) in [
            (&s.hold_max, &mut hold_max, "settings.hold_max"),
            (&s.hold_retry, &mut hold_retry, "settings.hold_retry"),
            (&s.reentry_ramp, &mut reentry_ramp, "settings.reentry_ramp"),
        ] {
            if let Some(v) = v {
                match duration(v) {
                    Ok(d) => *slot = d,
                    Err(e) => cx.err(*fi, v, key, e),
                }
            }
        }
    }

    // Territories: a tree; every parent known; no cycles.
    let mut terr = Territories::default();
    for (_, t) in &territories {
        let code = t.id.trim().to_lowercase();
        if !terr.index.contains_key(&code) {
            terr.index.insert(code.clone(), terr.codes.len() as u32);
            terr.codes.push(code);
            terr.parent.push(None);
        }
    }
    for (fi, t) in &territories {
        if let Some(p) = &t.parent {
            match terr.index.get(&p.trim().to_lowercase()) {
                Some(pi) => {
                    let me = terr.index[&t.id.trim().to_lowercase()];
                    terr.parent[me as usize] = Some(*pi);
                }
                None => cx.err(
                    *fi,
                    p,
                    "territory.parent",
                    format!("unknown territory `{p}`; define it with [[territory]] id = \"{p}\""),
                ),
            }
        }
    }
    territory_cycles(&mut cx, &territories, &mut terr);
    territory_names(&mut cx, &territories, &mut terr);
    let territory_ref = |cx: &mut Ctx<'_>, fi: usize, key: &str, code: &str| -> Option<u32> {
        match terr.index.get(&code.trim().to_lowercase()) {
            Some(n) => Some(*n),
            None => {
                cx.err(
                    fi,
                    code,
                    key,
                    format!("unknown territory `{code}`; define it with [[territory]] id = \"{code}\""),
                );
                None
            }
        }
    };

    // Schedules.
    let mut schedule_by_id: HashMap<String, u32> = HashMap::new();
    let mut all_schedules: Vec<Schedule> = Vec::new();
    for (fi, s) in &schedules {
        // A bad time zone is one error: the schedule still exists for what refers to it.
        let tz = timezone(&s.timezone).unwrap_or_else(|e| {
            cx.err(*fi, &s.timezone, &format!("schedule `{}`.timezone", s.id), e);
            chrono_tz::UTC
        });
        let mut week = [None; 7];
        for (days, span) in &s.week {
            match (Schedule::parse_days(days), Schedule::parse_span(span)) {
                (Some(ds), Some(sp)) => ds.into_iter().for_each(|d| week[d] = Some(sp)),
                (None, _) => cx.err(
                    *fi,
                    days,
                    &format!("schedule `{}`.week", s.id),
                    format!("`{days}` is not a day or a range of days; write \"mon-fri\", \"sat\" or \"mon,wed\""),
                ),
                (_, None) => cx.err(
                    *fi,
                    span,
                    &format!("schedule `{}`.week.{days}", s.id),
                    format!("`{span}` is not a time span; write \"08:00-17:30\""),
                ),
            }
        }
        let mut ooo = Vec::new();
        for d in &s.out_of_office {
            match Schedule::parse_dates(d) {
                Some(r) => ooo.push(r),
                None => cx.err(
                    *fi,
                    d,
                    &format!("schedule `{}`.out_of_office", s.id),
                    format!("`{d}` is not a date or a range; write \"2026-12-24\" or \"2026-12-30..2027-01-02\""),
                ),
            }
        }
        schedule_by_id.insert(s.id.clone(), all_schedules.len() as u32);
        all_schedules.push(Schedule { tz, week, out_of_office: ooo });
    }

    // Members (from the files, then any the CRM adds to teams).
    let mut team_schedule_of_member: HashMap<&str, &str> = HashMap::new();
    for (_, t) in &teams {
        if let Some(s) = &t.schedule {
            for m in &t.members {
                team_schedule_of_member.entry(m.as_str()).or_insert(s.as_str());
            }
        }
    }
    let mut out_members: Vec<engine::Member> = Vec::new();
    let mut sym = Symbols::default();
    let mut history = 0i64;
    for (fi, m) in &members {
        let key = format!("member `{}`", m.id);
        let mut caps = Vec::new();
        if let Some(max) = m.max_open {
            caps.push(Cap { window: Window::Open, max, label: "open".into() });
        }
        for c in &m.caps {
            let window = match c.per.trim() {
                "open" => Ok(Window::Open),
                "day" => match c.timezone.as_deref().map(timezone) {
                    Some(Ok(tz)) => Ok(Window::Day(tz)),
                    Some(Err(e)) => Err(e),
                    None => Err("a per-day cap needs `timezone` (the day starts at local midnight)".into()),
                },
                other => duration(other).map(|d| {
                    history = history.max(d);
                    Window::Rolling(d)
                }),
            };
            match window {
                Ok(w) => caps.push(Cap { window: w, max: c.max, label: c.per.clone() }),
                Err(e) => cx.err(*fi, &c.per, &format!("{key}.caps.per"), e),
            }
        }
        let schedule_id = m.schedule.as_deref().or_else(|| team_schedule_of_member.get(m.id.as_str()).copied());
        let mut schedule = match schedule_id {
            Some(s) => match schedule_by_id.get(s) {
                Some(s) => Some(*s),
                None => {
                    cx.err(*fi, s, &format!("{key}.schedule"), format!("unknown schedule `{s}`"));
                    None
                }
            },
            None => None,
        };
        if !m.out_of_office.is_empty() {
            let Some(base) = schedule else {
                cx.err(
                    *fi,
                    &m.id,
                    &format!("{key}.out_of_office"),
                    "needs a schedule (for the time zone the dates are in)",
                );
                continue;
            };
            // The member's own holidays: a copy of their schedule with those dates added.
            let mut own = all_schedules[base as usize].clone();
            for d in &m.out_of_office {
                match Schedule::parse_dates(d) {
                    Some(r) => own.out_of_office.push(r),
                    None => cx.err(
                        *fi,
                        d,
                        &format!("{key}.out_of_office"),
                        format!("`{d}` is not a date or a range; write \"2026-12-24\" or \"2026-12-30..2027-01-02\""),
                    ),
                }
            }
            schedule = Some(all_schedules.len() as u32);
            all_schedules.push(own);
        }
        if m.weight == Some(0) {
            cx.err(*fi, &m.id, &format!("{key}.weight"), "is 0; use at least 1 (pause the member to stop assignments)");
        }
        let terrs = m
            .territories
            .iter()
            .filter_map(|t| territory_ref(&mut cx, *fi, &format!("{key}.territories"), t))
            .collect();
        out_members.push(engine::Member {
            id: m.id.as_str().into(),
            name: if m.name.is_empty() { m.id.as_str().into() } else { m.name.as_str().into() },
            active: directory.active.as_ref().is_none_or(|a| a.contains(&m.id)),
            paused: m.paused,
            caps,
            weight: m.weight.unwrap_or(1).max(1),
            kpi: directory.kpi.get(&m.id).copied().or(m.kpi),
            attributes: m.attributes.iter().map(|(k, v)| (sym.intern(k), sym.intern(&v.text()))).collect(),
            products: sym.set(&m.products),
            categories: sym.set(&m.categories),
            territories: terrs,
            tags: sym.set(&m.tags),
            schedule,
            rank: 0,
        });
    }
    let mut member_index: HashMap<String, usize> =
        out_members.iter().enumerate().map(|(i, m)| (m.id.to_string(), i)).collect();
    for (_, id) in &directory.memberships {
        if !member_index.contains_key(id) {
            member_index.insert(id.clone(), out_members.len());
            out_members.push(engine::Member {
                id: id.as_str().into(),
                name: id.as_str().into(),
                active: directory.active.as_ref().is_none_or(|a| a.contains(id)),
                paused: false,
                caps: Vec::new(),
                weight: 1,
                kpi: directory.kpi.get(id).copied(),
                attributes: Vec::new(),
                products: Vec::new(),
                categories: Vec::new(),
                territories: Vec::new(),
                tags: Vec::new(),
                schedule: None,
                rank: 0,
            });
        }
    }

    // Teams.
    let pipeline_ids: HashSet<&str> = pipelines.iter().map(|(_, p)| p.id.as_str()).collect();
    let mut out_teams = Vec::new();
    let mut team_pipelines: Vec<Vec<String>> = Vec::new();
    for (fi, t) in &teams {
        let key = format!("team `{}`", t.id);
        let mut ms = Vec::new();
        for m in &t.members {
            match member_index.get(m) {
                Some(i) => ms.push(*i),
                None => cx.err(
                    *fi,
                    m,
                    &format!("{key}.members"),
                    format!("unknown member `{m}`; define it with [[member]] id = \"{m}\""),
                ),
            }
        }
        if let Some(crm) = &t.crm_id {
            for (team_crm, member) in &directory.memberships {
                if team_crm == crm {
                    if let Some(i) = member_index.get(member) {
                        if !ms.contains(i) {
                            ms.push(*i);
                        }
                    }
                }
            }
        }
        if ms.is_empty() && t.members.is_empty() && !directory.memberships_from_crm {
            cx.err(
                *fi,
                &t.id,
                &format!("{key}.members"),
                "the team has no members; list CRM user ids defined as [[member]]",
            );
        }
        for p in &t.pipelines {
            if !pipeline_ids.contains(p.as_str()) {
                cx.err(*fi, p, &format!("{key}.pipelines"), format!("unknown pipeline `{p}`"));
            }
        }
        if t.pipelines.is_empty() {
            cx.err(*fi, &t.id, &format!("{key}.pipelines"), "the team takes part in no pipeline; list at least one");
        }
        let terrs = t
            .territories
            .iter()
            .filter_map(|x| territory_ref(&mut cx, *fi, &format!("{key}.territories"), x))
            .collect();
        let (paused_here, caps_here) =
            membership_rules(t.crm_id.as_deref(), &directory.membership_rules, &member_index);
        for (_, c) in &caps_here {
            if let Window::Rolling(secs) = c.window {
                history = history.max(secs);
            }
        }
        out_teams.push(engine::Team {
            id: t.id.as_str().into(),
            name: if t.name.is_empty() { t.id.clone() } else { t.name.clone() },
            crm_id: t.crm_id.clone(),
            lead: t.lead.clone(),
            members: ms,
            territories: terrs,
            tags: sym.set(&t.tags),
            paused_here,
            caps_here,
        });
        team_pipelines.push(t.pipelines.clone());
    }
    let team_index: HashMap<String, usize> = out_teams.iter().enumerate().map(|(i, t)| (t.id.to_string(), i)).collect();

    // Tag rules.
    let mut tag_rules = Vec::new();
    for (i, (fi, t)) in tags.iter().enumerate() {
        if let Some(when) = cx.cond(*fi, &format!("tag[{i}] `{}`.when", t.name), &t.when) {
            tag_rules.push(engine::TagRule { tag: t.name.trim().to_lowercase(), when });
        }
    }
    let all_tags: HashSet<String> = tag_rules.iter().map(|t| t.tag.clone()).collect();

    // Pipelines and their rules.
    let mut out_pipelines = HashMap::new();
    for (fi, p) in &pipelines {
        let pteams: Vec<usize> =
            team_pipelines.iter().enumerate().filter(|(_, ps)| ps.contains(&p.id)).map(|(i, _)| i).collect();
        let mut rules = Vec::new();
        let mut rule_ids = HashSet::new();
        if p.rule.is_empty() {
            cx.err(
                *fi,
                &p.id,
                &format!("pipeline `{}`.rule", p.id),
                "the pipeline has no rules; add [[pipeline.rule]] (or rely on its fallback_owner only by design)",
            );
        }
        for r in &p.rule {
            let key = format!("pipeline `{}`.rule `{}`", p.id, r.id);
            if !rule_ids.insert(r.id.clone()) {
                cx.err(
                    *fi,
                    &r.id,
                    &format!("{key}.id"),
                    format!("rule `{}` appears twice in pipeline `{}`", r.id, p.id),
                );
            }
            let when = r.when.as_ref().and_then(|c| cx.cond(*fi, &format!("{key}.when"), c));
            let team = match &r.team {
                None => {
                    if pteams.is_empty() {
                        cx.err(
                            *fi,
                            &r.id,
                            &format!("{key}.team"),
                            format!("no team takes part in pipeline `{}`; add it to a team's `pipelines`", p.id),
                        );
                    }
                    Some(TeamStage::AllPipelineTeams)
                }
                Some(ts) => {
                    let forms = [ts.id.is_some(), ts.territory.is_some(), ts.from_field.is_some(), ts.tags.is_some()];
                    if forms.iter().filter(|x| **x).count() != 1 {
                        cx.err(
                            *fi,
                            &r.id,
                            &format!("{key}.team"),
                            "give exactly one of `id`, `territory`, `from_field` or `tags`",
                        );
                        None
                    } else if let Some(t) = &ts.id {
                        match team_index.get(t) {
                            Some(i) if pteams.contains(i) => Some(TeamStage::Fixed(*i)),
                            Some(_) => {
                                cx.err(
                                    *fi,
                                    t,
                                    &format!("{key}.team.id"),
                                    format!(
                                        "team `{t}` does not take part in pipeline `{}`; add \"{}\" to its `pipelines`",
                                        p.id, p.id
                                    ),
                                );
                                None
                            }
                            None => {
                                cx.err(*fi, t, &format!("{key}.team.id"), format!("unknown team `{t}`"));
                                None
                            }
                        }
                    } else if let Some(fs) = &ts.territory {
                        let fields: Vec<(usize, String)> = fs
                            .list()
                            .iter()
                            .filter_map(|f| cx.field(*fi, &format!("{key}.team.territory"), f).map(|i| (i, f.clone())))
                            .collect();
                        (fields.len() == fs.list().len()).then_some(TeamStage::Territory { fields })
                    } else if let Some(f) = &ts.from_field {
                        cx.field(*fi, &format!("{key}.team.from_field"), f)
                            .map(|field| TeamStage::FromField { field, name: f.clone() })
                    } else {
                        match ts.tags.as_deref() {
                            Some("any") => Some(TeamStage::Tags { all: false }),
                            Some("all") => Some(TeamStage::Tags { all: true }),
                            other => {
                                cx.err(*fi, other.unwrap_or(""), &format!("{key}.team.tags"), "is \"any\" or \"all\"");
                                None
                            }
                        }
                    }
                }
            };
            let mut filters = Vec::new();
            for (k, f) in r.filters.iter().enumerate() {
                let fkey = format!("{key}.filters[{k}]");
                let if_nobody = match f.if_nobody.as_deref() {
                    None | Some("next_rule") => IfNobody::NextRule,
                    Some("skip_filter") => IfNobody::SkipFilter,
                    Some(o) => {
                        cx.err(
                            *fi,
                            o,
                            &format!("{fkey}.if_nobody"),
                            format!("`{o}` is not a policy; use \"next_rule\" or \"skip_filter\""),
                        );
                        IfNobody::NextRule
                    }
                };
                let forms = [
                    f.attribute.is_some(),
                    f.products.is_some(),
                    f.categories.is_some(),
                    f.territory.is_some(),
                    f.tags.is_some(),
                ];
                if forms.iter().filter(|x| **x).count() != 1 {
                    cx.err(*fi, &r.id, &fkey, "a filter is one of { attribute = \"…\", equals_field = \"…\" }, { products = \"field\" }, { categories = \"field\" }, { territory = \"field\" } or { tags = \"any\" | \"all\" }");
                    continue;
                }
                let kind = if let Some(a) = &f.attribute {
                    match &f.equals_field {
                        Some(ef) => {
                            cx.field(*fi, &format!("{fkey}.equals_field"), ef).map(|field| FilterKind::Attribute {
                                attribute: a.clone(),
                                symbol: sym.intern(a),
                                field,
                                field_name: ef.clone(),
                            })
                        }
                        None => {
                            cx.err(
                                *fi,
                                a,
                                &fkey,
                                "an attribute filter needs `equals_field` (the opportunity field to compare with)",
                            );
                            None
                        }
                    }
                } else if let Some(pf) = &f.products {
                    cx.field(*fi, &format!("{fkey}.products"), pf)
                        .map(|field| FilterKind::Products { field, field_name: pf.clone() })
                } else if let Some(cf) = &f.categories {
                    cx.field(*fi, &format!("{fkey}.categories"), cf)
                        .map(|field| FilterKind::Categories { field, field_name: cf.clone() })
                } else if let Some(fs) = &f.territory {
                    let fields: Vec<(usize, String)> = fs
                        .list()
                        .iter()
                        .filter_map(|x| cx.field(*fi, &format!("{fkey}.territory"), x).map(|i| (i, x.clone())))
                        .collect();
                    (fields.len() == fs.list().len()).then_some(FilterKind::Territory { fields })
                } else {
                    match f.tags.as_deref() {
                        Some("any") => Some(FilterKind::Tags { all: false }),
                        Some("all") => Some(FilterKind::Tags { all: true }),
                        other => {
                            cx.err(*fi, other.unwrap_or(""), &format!("{fkey}.tags"), "is \"any\" or \"all\"");
                            None
                        }
                    }
                };
                if let Some(kind) = kind {
                    filters.push(Filter { kind, if_nobody });
                }
            }
            let simple = |name: &str| -> Option<Pick> {
                match name {
                    "random" => Some(Pick::Random),
                    "fewest_open" => Some(Pick::FewestOpen),
                    "round_robin" => Some(Pick::RoundRobin),
                    "weighted_round_robin" => Some(Pick::WeightedRoundRobin),
                    "best_kpi" => Some(Pick::BestKpi),
                    _ => None,
                }
            };
            const PICKS: &str = "random, fewest_open, round_robin, weighted_round_robin, best_kpi, or { pick = \"owner\", fields = [...] }";
            let pick = match &r.member {
                RawPick::Name(n) => {
                    let p = simple(n);
                    if p.is_none() {
                        cx.err(
                            *fi,
                            n,
                            &format!("{key}.member"),
                            format!("`{n}` is not a way to pick a member; use {PICKS}"),
                        );
                    }
                    p
                }
                RawPick::Spec(s) if s.pick == "owner" => {
                    if s.fields.is_empty() {
                        cx.err(*fi, &r.id, &format!("{key}.member.fields"), "list the fields naming the owner to keep, in order, e.g. [\"profile_owner\", \"company_owner\"]");
                    }
                    let fields: Vec<(usize, String)> = s
                        .fields
                        .iter()
                        .filter_map(|f| cx.field(*fi, &format!("{key}.member.fields"), f).map(|i| (i, f.clone())))
                        .collect();
                    let otherwise = match s.otherwise.as_deref() {
                        None => Some(None),
                        Some(o) => match simple(o) {
                            Some(p) => Some(Some(Box::new(p))),
                            None => {
                                cx.err(*fi, o, &format!("{key}.member.otherwise"), format!("`{o}` is not a way to pick a member; use random, fewest_open, round_robin, weighted_round_robin or best_kpi"));
                                None
                            }
                        },
                    };
                    match otherwise {
                        Some(otherwise) if fields.len() == s.fields.len() => Some(Pick::Owner { fields, otherwise }),
                        _ => None,
                    }
                }
                RawPick::Spec(s) => match simple(&s.pick) {
                    Some(p) if s.fields.is_empty() && s.otherwise.is_none() => Some(p),
                    Some(_) => {
                        cx.err(
                            *fi,
                            &s.pick,
                            &format!("{key}.member"),
                            "`fields` and `otherwise` go with pick = \"owner\" only",
                        );
                        None
                    }
                    None => {
                        cx.err(
                            *fi,
                            &s.pick,
                            &format!("{key}.member.pick"),
                            format!("`{}` is not a way to pick a member; use {PICKS}", s.pick),
                        );
                        None
                    }
                },
            };
            let when_full = match r.when_full.as_deref() {
                None | Some("next_rule") => WhenFull::NextRule,
                Some("fallback") => WhenFull::Fallback,
                Some("ignore_caps") => WhenFull::IgnoreCaps,
                Some("hold") => WhenFull::Hold,
                Some(o) => {
                    cx.err(
                        *fi,
                        o,
                        &format!("{key}.when_full"),
                        format!("`{o}` is not a policy; use \"next_rule\", \"fallback\", \"ignore_caps\" or \"hold\""),
                    );
                    WhenFull::NextRule
                }
            };
            let when_away = match r.when_away.as_deref() {
                None | Some("next_rule") => WhenAway::NextRule,
                Some("wait") => WhenAway::Wait,
                Some(o) => {
                    cx.err(
                        *fi,
                        o,
                        &format!("{key}.when_away"),
                        format!("`{o}` is not a policy; use \"next_rule\" or \"wait\""),
                    );
                    WhenAway::NextRule
                }
            };
            // Tags a rule relies on must be produced by some tag rule.
            if let Some(c) = &when {
                let mut missing = Vec::new();
                collect_tags(c, &mut missing);
                for t in missing.into_iter().filter(|t| !all_tags.contains(t)) {
                    cx.err(
                        *fi,
                        &r.id,
                        &format!("{key}.when"),
                        format!("tag `{t}` is never applied: no [[tag]] rule has name = \"{t}\""),
                    );
                }
            }
            if let (Some(team), Some(pick)) = (team, pick) {
                rules.push(engine::Rule {
                    key: format!("{}/{}", p.id, r.id),
                    id: r.id.as_str().into(),
                    when,
                    team,
                    filters,
                    pick,
                    when_full,
                    when_away,
                });
            }
        }
        let reclaim = p.reclaim.as_ref().and_then(|r| {
            let key = format!("pipeline `{}`.reclaim", p.id);
            let base = compile_reclaim(&mut cx, *fi, &key, &p.id, r)?;
            let mut by_team = std::collections::BTreeMap::new();
            let mut ok = true;
            for &ti in &pteams {
                let (tfi, t) = &teams[ti];
                let tkey = format!("team `{}`.reclaim", t.id);
                let policy = match &t.reclaim {
                    Some(o) => match override_reclaim(&mut cx, *tfi, &tkey, &t.id, &base, o) {
                        Some(x) => x,
                        None => {
                            ok = false;
                            continue;
                        }
                    },
                    None => base.clone(),
                };
                if let Some(engine::Escalate { to: engine::EscalateTo::TeamLead, .. }) = &policy.escalate {
                    if t.lead.is_none() {
                        cx.err(
                            *tfi,
                            &t.id,
                            &format!("team `{}`.lead", t.id),
                            format!(
                                "pipeline `{}` escalates reclaims to the team lead, and this team has none; add lead = \"<CRM user id>\"",
                                p.id
                            ),
                        );
                        ok = false;
                    }
                }
                if t.reclaim.is_some() {
                    by_team.insert(t.id.clone(), policy);
                }
            }
            ok.then_some(engine::ReclaimPolicy { by_team, ..base })
        });
        let require = compile_require(&mut cx, *fi, p);
        out_pipelines.insert(
            p.id.clone(),
            engine::Pipeline {
                id: p.id.clone(),
                rules,
                reclaim,
                fallback_owner: p.fallback_owner.clone(),
                teams: pteams,
                require,
            },
        );
    }

    if !cx.problems.is_empty() {
        return Err(RulesError { problems: cx.problems });
    }
    // Round-robin turns go by member id, in the id column's natural order.
    let mut order: Vec<usize> = (0..out_members.len()).collect();
    order.sort_by_cached_key(|i| crate::engine::id_key(&out_members[*i].id));
    let sorted_ids: Vec<std::sync::Arc<str>> = order.iter().map(|i| out_members[*i].id.clone()).collect();
    for (rank, i) in order.into_iter().enumerate() {
        out_members[i].rank = rank as u32;
    }
    for t in &tag_rules {
        sym.intern(&t.tag);
    }
    let engine = Engine {
        hash,
        provisional: directory.unread,
        tests_waiting: if directory.unread { tests.len() } else { 0 },
        sorted_ids,
        schedules: all_schedules,
        symbols: sym.map,
        version,
        members: out_members,
        member_index: member_index.into_iter().collect(),
        teams: out_teams,
        team_index,
        territories: terr,
        pipelines: out_pipelines,
        tag_rules,
        global_fallback,
        hold_max,
        hold_retry,
        reentry_ramp,
        history: history.max(86_400 * 2),
    };

    // The files' own tests run at every load, against the set as it will route (with the CRM's
    // directory, once read); a failing one refuses the set like a syntax error.
    let tests: &[(usize, RawTest)] = if directory.unread { &[] } else { &tests };
    for (fi, t) in tests {
        if let Err(differences) = run_test(&engine, fields, t) {
            for d in differences {
                cx.err(*fi, &t.name, &format!("test `{}`", t.name), d);
            }
        }
    }
    if !cx.problems.is_empty() {
        return Err(RulesError { problems: cx.problems });
    }
    Ok(engine)
}

/// The CRM's pauses and caps for the members of the team with this CRM id: (paused member
/// indexes, sorted; (member index, cap) pairs).
fn membership_rules(
    crm_id: Option<&str>,
    rules: &[MembershipRule],
    member_index: &HashMap<String, usize>,
) -> (Vec<usize>, Vec<(usize, Cap)>) {
    let (mut paused, mut caps) = (Vec::new(), Vec::new());
    let Some(crm_id) = crm_id else { return (paused, caps) };
    for r in rules.iter().filter(|r| r.team == crm_id) {
        let Some(&m) = member_index.get(&r.member) else { continue };
        if r.paused {
            paused.push(m);
        }
        if let Some((max, per)) = r.cap {
            let label = humantime::format_duration(std::time::Duration::from_secs(per.max(0) as u64)).to_string();
            caps.push((m, Cap { window: Window::Rolling(per), max, label }));
        }
    }
    paused.sort_unstable();
    paused.dedup();
    (paused, caps)
}

fn collect_tags(c: &Cond, out: &mut Vec<String>) {
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| collect_tags(c, out)),
        Cond::Not(c) => collect_tags(c, out),
        Cond::Tagged(t) => out.push(t.clone()),
        Cond::Field { .. } => {}
    }
}

/// Run one rule-file test; every difference from what it expects, one line each.
fn run_test(engine: &Engine, fields: &[String], t: &RawTest) -> Result<(), Vec<String>> {
    let mut values: Vec<Option<String>> = vec![None; fields.len()];
    for (k, v) in &t.fields {
        match fields.iter().position(|f| f == k) {
            Some(i) => values[i] = Some(v.text()),
            None => {
                return Err(vec![format!(
                    "fields.{k}: unknown field; fields mapped in the daemon config: {}",
                    fields.join(", ")
                )])
            }
        }
    }
    let now_text = t.now.as_deref().unwrap_or(DEFAULT_TEST_NOW);
    let now = DateTime::parse_from_rfc3339(now_text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| vec![format!("now: `{now_text}` is not an RFC 3339 time ({e})")])?;
    let mut e = engine.clone();
    for p in &t.paused {
        match e.member_index(p) {
            Some(i) => e.members[i].paused = true,
            None => return Err(vec![format!("paused: unknown member `{p}`")]),
        }
    }
    let mut ledger = Ledger::for_engine(&e, None);
    for (m, n) in &t.open {
        match e.member_index(m) {
            Some(i) => ledger.open[i] = *n,
            None => return Err(vec![format!("open: unknown member `{m}`")]),
        }
    }
    let opp = Opportunity {
        id: "test",
        pipeline: t.pipeline.as_deref(),
        fields: &values,
        waiting_since: now,
        exclude: &[],
        only_team: None,
    };
    let mut rng = rand::rngs::mock::StepRng::new(0, 1);
    let d = e.route(&opp, &mut ledger, now, &mut rng);
    let x = &t.expect;
    let shown = |v: Option<&str>| v.unwrap_or("nobody").to_string();
    let mut wrong: Vec<String> = Vec::new();
    let mut differs = |what: &str, want: &str, got: String| {
        if !want.eq_ignore_ascii_case(&got) {
            wrong.push(format!("{what}: expected {want}, got {got}"));
        }
    };
    if let Some(m) = &x.member {
        differs("member", m, shown(d.owner.as_deref()));
    }
    if let Some(tm) = &x.team {
        differs("team", tm, shown(d.team.as_deref()));
    }
    if let Some(o) = &x.outcome {
        differs("outcome", o, d.outcome.as_str().to_string());
    }
    if let Some(r) = &x.rule {
        differs("rule", r, shown(d.rule_id.as_deref()));
    }
    for tag in x.tags.iter().filter(|tag| !d.tags.contains(&tag.to_lowercase())) {
        let got = if d.tags.is_empty() { "none".to_string() } else { d.tags.join(", ") };
        wrong.push(format!("tags: expected {tag} among them, got {got}"));
    }
    if let Some(s) = &x.explanation_contains {
        let explanation = serde_json::to_string(&d.explanation).unwrap_or_default();
        if !explanation.contains(s.as_str()) {
            wrong.push(format!("explanation: expected it to contain `{s}`, it does not"));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let why = crate::reload::bounded(&d.explanation.brief(), 300);
    Err(wrong.into_iter().map(|w| format!("{w} ({why})")).collect())
}

#[cfg(test)]
mod window_tests {
    use super::parse_window;

    #[test]
    fn a_cap_window_from_the_crm_reads_as_a_duration_or_an_interval() {
        assert_eq!(parse_window("30d"), Ok(30 * 86_400));
        assert_eq!(parse_window("30 days"), Ok(30 * 86_400));
        assert_eq!(parse_window(" 720h "), Ok(720 * 3_600));
        assert!(parse_window("1 mon").is_ok_and(|s| s > 29 * 86_400 && s < 32 * 86_400));
        assert!(parse_window("0s").is_err_and(|e| e.contains("longer than 0s")));
        assert!(parse_window("monthly").is_err_and(|e| e.contains("write e.g. '30d' or an interval")));
    }
}
