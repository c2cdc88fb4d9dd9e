//! Compiling a parsed rule set into an [`Engine`]: ids resolved across files, references
//! checked, values read (durations, time zones, schedules, conditions), every problem collected
//! with its position in one pass.
//!
//! A [`Resolver`] holds the indexes built so far, so each step is a small method, in this order:
//! settings, territories (`territories`), schedules (`schedules`), members (`members`), teams
//! (`teams`), tag rules, pipelines and their rules (`pipelines`: team stage, filters, pick,
//! policies), reclaim policies (`reclaim`). It must not read files, the database or a clock, and
//! nothing it reads reaches SQL.

mod cond;
mod domains;
mod members;
mod pipelines;
mod reclaim;
mod rule;
mod schedules;
mod teams;
mod territories;

use std::collections::{HashMap, HashSet};

use super::format::{
    canon_ids, RawFile, RawMember, RawPipeline, RawSchedule, RawSettings, RawTagRule, RawTeam, RawTerritory, RawTest,
};
use super::locate::Source;
use super::{parse, tests, version, Directory, RulesError};
use engine::{self, Engine, Schedule, Territories};

/// Compile a rule set: every file parsed (all problems of all files at once), then resolved.
pub(super) fn compile_sources(
    files: Vec<Source>,
    fields: &[String],
    directory: &Directory,
) -> Result<Engine, RulesError> {
    let parsed = parse_all(&files)?;
    let hash = version::fingerprint(&files, directory);
    let version = version::next(&hash);
    let mut r = Resolver::new(&files, fields, directory);
    let set = r.gather(parsed);
    let settings = r.settings(set.settings.as_ref());
    r.territories(&set.territories);
    r.schedules(&set.schedules);
    r.members(&set.members, &set.teams);
    r.teams(&set.teams, &set.pipelines);
    let tag_rules = r.tag_rules(&set.tags);
    let pipelines = r.pipelines(&set.pipelines, &set.teams);
    r.cx.fail_if_any()?;
    let waiting = if directory.unread { set.tests.len() } else { 0 };
    let (mut engine, mut cx) =
        r.engine(Compiled { hash, version, settings, tag_rules, pipelines, tests_waiting: waiting });
    // The files' own tests run at every load, against the set as it will route (with the CRM's
    // directory, once read); a failing one refuses the set like a syntax error. On a refresh of
    // the directory alone the CRM's word on people wins: a test it breaks is a warning.
    if !directory.unread {
        for (fi, t) in &set.tests {
            if let Err(differences) = tests::run_test(&engine, fields, t) {
                for d in differences {
                    if directory.tests_warn {
                        let file = files[*fi].path.display();
                        engine.warnings.push(format!(
                            "{file}: test `{}` no longer holds with the CRM's directory as it is now: {d}",
                            t.name
                        ));
                    } else {
                        cx.err(*fi, &t.name, &format!("test `{}`", t.name), d);
                    }
                }
            }
        }
    }
    cx.fail_if_any()?;
    Ok(engine)
}

/// Parse every file; a blank file is refused (most often a save in progress).
fn parse_all(files: &[Source]) -> Result<Vec<(usize, RawFile)>, RulesError> {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (i, src) in files.iter().enumerate() {
        if src.is_blank() {
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
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(RulesError { problems })
    }
}

/// Every definition of the set with the file (index) it came from.
#[derive(Default)]
struct Gathered {
    settings: Option<(usize, RawSettings)>,
    territories: Vec<(usize, RawTerritory)>,
    schedules: Vec<(usize, RawSchedule)>,
    members: Vec<(usize, RawMember)>,
    teams: Vec<(usize, RawTeam)>,
    tags: Vec<(usize, RawTagRule)>,
    pipelines: Vec<(usize, RawPipeline)>,
    tests: Vec<(usize, RawTest)>,
}

/// `[settings]`, with its defaults.
struct Settings {
    hold_max: i64,
    hold_retry: i64,
    reentry_ramp: i64,
    global_fallback: Option<String>,
}

/// What the steps produced that is not kept in the resolver's indexes.
struct Compiled {
    hash: String,
    version: String,
    settings: Settings,
    tag_rules: Vec<engine::TagRule>,
    pipelines: HashMap<String, engine::Pipeline>,
    tests_waiting: usize,
}

/// Compiling state: the problems found, and the indexes each step builds for the next.
pub(super) struct Resolver<'a> {
    cx: Ctx<'a>,
    directory: &'a Directory,
    sym: Symbols,
    terr: Territories,
    schedule_by_id: HashMap<String, u32>,
    schedules: Vec<Schedule>,
    members: Vec<engine::Member>,
    member_index: HashMap<String, usize>,
    teams: Vec<engine::Team>,
    team_index: HashMap<String, usize>,
    /// The pipelines each team (by index) takes part in.
    team_pipelines: Vec<Vec<String>>,
    /// Every tag some tag rule applies.
    all_tags: HashSet<String>,
    /// The longest rolling window of any cap (the ledger keeps this much history).
    history: i64,
}

impl<'a> Resolver<'a> {
    fn new(files: &'a [Source], fields: &'a [String], directory: &'a Directory) -> Self {
        Resolver {
            cx: Ctx {
                files,
                fields: fields.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect(),
                field_list: if fields.is_empty() { "none are mapped".into() } else { fields.join(", ") },
                problems: Vec::new(),
                owner_edits_mapped: !directory.owner_edits_unmapped,
            },
            directory,
            sym: Symbols::default(),
            terr: Territories::default(),
            schedule_by_id: HashMap::new(),
            schedules: Vec::new(),
            members: Vec::new(),
            member_index: HashMap::new(),
            teams: Vec::new(),
            team_index: HashMap::new(),
            team_pipelines: Vec::new(),
            all_tags: HashSet::new(),
            history: 0,
        }
    }

    /// Gather the definitions of every file (user ids in the CRM's form); an id defined twice
    /// is an error naming both places.
    fn gather(&mut self, parsed: Vec<(usize, RawFile)>) -> Gathered {
        let mut g = Gathered::default();
        for (fi, mut f) in parsed {
            canon_ids(&mut f, self.directory.ids);
            if let Some(s) = f.settings {
                if let Some((other, _)) = &g.settings {
                    let other = self.cx.files[*other].path.display().to_string();
                    self.cx.err(fi, "", "settings", format!("[settings] appears again (also in {other}); keep one"));
                }
                g.settings = Some((fi, s));
            }
            g.territories.extend(f.territory.into_iter().map(|x| (fi, x)));
            g.schedules.extend(f.schedule.into_iter().map(|x| (fi, x)));
            g.members.extend(f.member.into_iter().map(|x| (fi, x)));
            g.teams.extend(f.team.into_iter().map(|x| (fi, x)));
            g.tags.extend(f.tag.into_iter().map(|x| (fi, x)));
            g.pipelines.extend(f.pipeline.into_iter().map(|x| (fi, x)));
            g.tests.extend(f.test.into_iter().map(|x| (fi, x)));
        }
        self.cx.dupes(&g.territories, |t| &t.id, "territory");
        self.cx.dupes(&g.schedules, |t| &t.id, "schedule");
        self.cx.dupes(&g.members, |t| &t.id, "member");
        self.cx.dupes(&g.teams, |t| &t.id, "team");
        self.cx.dupes(&g.pipelines, |t| &t.id, "pipeline");
        g
    }

    fn settings(&mut self, settings: Option<&(usize, RawSettings)>) -> Settings {
        let mut out = Settings { hold_max: 24 * 3600, hold_retry: 300, reentry_ramp: 8 * 3600, global_fallback: None };
        let Some((fi, s)) = settings else { return out };
        out.global_fallback = s.fallback_owner.clone();
        for (v, slot, key) in [
            (&s.hold_max, &mut out.hold_max, "settings.hold_max"),
            (&s.hold_retry, &mut out.hold_retry, "settings.hold_retry"),
            (&s.reentry_ramp, &mut out.reentry_ramp, "settings.reentry_ramp"),
        ] {
            if let Some(v) = v {
                match duration(v) {
                    Ok(d) => *slot = d,
                    Err(e) => self.cx.err(*fi, v, key, e),
                }
            }
        }
        out
    }

    fn tag_rules(&mut self, tags: &[(usize, RawTagRule)]) -> Vec<engine::TagRule> {
        let mut out = Vec::new();
        for (i, (fi, t)) in tags.iter().enumerate() {
            if let Some(when) = self.cx.cond(*fi, &format!("tag[{i}] `{}`.when", t.name), &t.when) {
                out.push(engine::TagRule { tag: t.name.trim().to_lowercase(), when });
            }
        }
        self.all_tags = out.iter().map(|t| t.tag.clone()).collect();
        out
    }

    /// The engine, once every step passed. Round-robin turns go by member id, in the id
    /// column's natural order.
    fn engine(self, c: Compiled) -> (Engine, Ctx<'a>) {
        let Resolver {
            cx,
            directory,
            mut sym,
            mut members,
            member_index,
            teams,
            team_index,
            terr,
            schedules,
            history,
            ..
        } = self;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_cached_key(|i| engine::id_key(&members[*i].id));
        let sorted_ids: Vec<std::sync::Arc<str>> = order.iter().map(|i| members[*i].id.clone()).collect();
        for (rank, i) in order.into_iter().enumerate() {
            members[i].rank = rank as u32;
        }
        for t in &c.tag_rules {
            sym.intern(&t.tag);
        }
        let engine = Engine {
            hash: c.hash,
            provisional: directory.unread,
            tests_waiting: c.tests_waiting,
            sorted_ids,
            schedules,
            symbols: sym.map,
            version: c.version,
            members,
            member_index: member_index.into_iter().collect(),
            teams,
            team_index,
            territories: terr,
            pipelines: c.pipelines,
            tag_rules: c.tag_rules,
            global_fallback: c.settings.global_fallback,
            hold_max: c.settings.hold_max,
            hold_retry: c.settings.hold_retry,
            reentry_ramp: c.settings.reentry_ramp,
            history: history.max(86_400 * 2),
            warnings: Vec::new(),
            sources: cx.files.iter().map(|f| (f.path.clone(), f.text.clone())).collect(),
            directory: serde_json::to_string(directory).unwrap_or_default().into(),
        };
        let engine = Engine { warnings: domains::warnings(&engine), ..engine };
        (engine, cx)
    }
}

/// Compiling state: sources for messages and the problems found.
pub(super) struct Ctx<'a> {
    pub(super) files: &'a [Source],
    pub(super) fields: HashMap<&'a str, usize>,
    pub(super) field_list: String,
    pub(super) problems: Vec<String>,
    /// `opportunity.edited_by` is mapped in the daemon config.
    pub(super) owner_edits_mapped: bool,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, fi: usize, needle: &str, key: &str, msg: impl std::fmt::Display) {
        let at = self.files[fi].locate(needle, key);
        self.problems.push(format!("{at}: {key}: {msg}"));
    }

    /// A problem with the value of `name`, a key written below the definition of `owner`.
    pub(super) fn err_key(&mut self, fi: usize, owner: &str, name: &str, key: &str, msg: impl std::fmt::Display) {
        let at = self.files[fi].locate_key(owner, name);
        self.problems.push(format!("{at}: {key}: {msg}"));
    }

    pub(super) fn field(&mut self, fi: usize, key: &str, name: &str) -> Option<usize> {
        match self.fields.get(name) {
            Some(i) => Some(*i),
            None => {
                let known = self.field_list.clone();
                self.err(fi, name, key, format!("unknown field `{name}`; fields mapped in the daemon config: {known}"));
                None
            }
        }
    }
}

impl Ctx<'_> {
    /// The problems so far, as the error of the whole set.
    fn fail_if_any(&mut self) -> Result<(), RulesError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(RulesError { problems: std::mem::take(&mut self.problems) })
        }
    }

    /// Ids defined twice (across all files) are errors naming both places.
    fn dupes<T>(&mut self, items: &[(usize, T)], id: impl Fn(&T) -> &str, what: &str) {
        let mut seen: HashMap<String, (usize, usize)> = HashMap::new(); // id -> (file, nth in file)
        let mut per_file: HashMap<(usize, String), usize> = HashMap::new();
        for (fi, x) in items {
            let i = id(x);
            if i.trim().is_empty() {
                self.err(*fi, "", what, "an id is empty");
                continue;
            }
            let nth = per_file.entry((*fi, i.to_string())).or_insert(0);
            let here = *nth;
            *nth += 1;
            match seen.get(i) {
                Some(&(ofi, onth)) => {
                    let first = self.files[ofi].locate_id(what, i, onth);
                    let at = self.files[*fi].locate_id(what, i, here);
                    self.problems
                        .push(format!("{at}: {what}.id: {what} `{i}` is defined twice (first at {first}); keep one"));
                }
                None => {
                    seen.insert(i.to_string(), (*fi, here));
                }
            }
        }
    }
}

/// Interns products, categories, tags and attributes as small integers for the engine.
#[derive(Default)]
pub(super) struct Symbols {
    pub(super) map: rustc_hash::FxHashMap<String, u32>,
}

impl Symbols {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        let k = s.trim().to_lowercase();
        let n = self.map.len() as u32;
        *self.map.entry(k).or_insert(n)
    }

    pub(super) fn set(&mut self, v: &[String]) -> Vec<u32> {
        let mut out: Vec<u32> = v.iter().map(|s| self.intern(s)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub(super) fn duration(s: &str) -> Result<i64, String> {
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

pub(super) fn timezone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("`{s}` is not a time zone; use an IANA name such as \"Asia/Ho_Chi_Minh\""))
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
