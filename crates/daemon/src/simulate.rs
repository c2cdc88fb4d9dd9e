//! `simulate` and `report`: past opportunities, from the audit and the CRM, replayed through a
//! candidate rule set (or only told again), into a [`Report`].
//!
//! Owns reading what a replay starts from: each opportunity's first decision in the window (or
//! of the ids given), its fields as the CRM holds them now, the members' open loads when the
//! window began, the assignments the windowed caps count, the pauses in force. It must not write
//! anything: every read runs in one READ ONLY transaction, and the engine's ledger is a copy
//! that no daemon ever sees.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use tokio_postgres::{Client, Transaction};

use crate::config::Config;
use crate::crm::{self, CrmSql};
use crate::db::row::FromRow;
use crate::engine::seen::Seen;
use crate::engine::{Engine, Explanation, Ledger, Opportunity};
use crate::report::{Inputs, Report, Routed};
use crate::store::{LapsePause, Past, Reads, Recent, ReclaimCount};

/// Ids sent to the CRM's context query at once.
const CHUNK: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{0}")]
    Sql(#[from] tokio_postgres::Error),
    /// The mapping or the rules are wrong, each problem a line.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
}

/// Which opportunities, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Those first decided since then…
    pub since: DateTime<Utc>,
    /// …or exactly these ids (`--opportunities FILE`).
    pub ids: Option<Vec<String>>,
    /// The replay's randomness (random picks, ties): the same seed, the same replay.
    pub seed: u64,
    /// The window as the user gave it, for the report's heading.
    pub window: String,
    /// Replay each decision with the rule set that made it (kept by version), not `candidate`.
    pub in_force: bool,
}

/// The rules in `cfg.router.rules_dir` as the daemon would route with them: the user ids in the
/// CRM's form, compiled with the CRM's directory when the config has one. With `tests_warn`, a
/// rule-file test the CRM's directory as it is now breaks does not refuse them (as the daemon's
/// directory refresh): for `report` and `simulate --in-force`, where they only name people.
pub async fn rules_as_routed(
    client: &Client,
    cfg: &Config,
    tests_warn: bool,
) -> Result<(Engine, CrmSql), SimulateError> {
    let (mut dir, sql) = directory_as_routed(client, cfg).await?;
    dir.tests_warn = tests_warn;
    let engine = crate::load_rules_with(cfg, &dir).map_err(|e| SimulateError::Config(e.problems))?;
    Ok((engine, sql))
}

/// What the CRM's directory says now, with the user ids in the CRM's form, as the daemon
/// compiles its rules with it (and the CRM statements it was read with): a console's draft is
/// compiled with it to the version the daemon will put in force.
pub async fn directory_as_routed(client: &Client, cfg: &Config) -> Result<(rules::Directory, CrmSql), SimulateError> {
    let sql = match crm::prepare(client, cfg).await {
        Ok(sql) => sql,
        Err(crm::CrmError::Mapping(p)) => {
            return Err(SimulateError::Config(p.iter().map(|p| format!("{}: {p}", cfg.path.display())).collect()))
        }
        Err(crm::CrmError::Sql(e)) => return Err(e.into()),
    };
    let dir = crm::directory_for(client, cfg, sql.id_form)
        .await
        .map_err(|p| SimulateError::Config(vec![format!("{}: {p}", cfg.path.display())]))?;
    Ok((dir, sql))
}

/// What happened to each opportunity, and what `candidate` would have done instead.
pub async fn simulate(
    client: &mut Client,
    cfg: &Config,
    sql: &CrmSql,
    candidate: &Engine,
    opts: &Options,
) -> Result<Report, SimulateError> {
    let opts = &as_stored(client, cfg, opts).await?;
    let t = read_only(client).await?;
    let reads = Reads::new(&cfg.router.schema);
    let mut past = Window::read(&t, &reads, sql, opts, candidate, Told::First, cfg).await?;
    past.read_for_replay(&t, &reads, candidate, opts.since).await?;
    let sets = if opts.in_force { past.sets_in_force(&t, &reads, cfg).await? } else { RuleSets::default() };
    t.commit().await?;
    let after = past.replay(candidate, &sets, opts.seed);
    let (title, rules) = if opts.in_force {
        ("What the rules in force then would do, replayed", format!("each decision's own ({} sets)", sets.sets.len()))
    } else {
        ("What the candidate rules would have done", candidate.version.clone())
    };
    let inputs = past.inputs(candidate, title, opts, rules);
    Ok(Report::build(inputs, &past.before, Some(&after)))
}

/// Each opportunity of the window as it was decided, and as `engine` decides it in a replay
/// (`simulate`'s own replay, opportunity by opportunity): the console's side-by-side explain.
pub async fn replay_each(
    client: &mut Client,
    cfg: &Config,
    sql: &CrmSql,
    engine: &Engine,
    opts: &Options,
) -> Result<(Vec<Routed>, Vec<Routed>), SimulateError> {
    let opts = &as_stored(client, cfg, opts).await?;
    let t = read_only(client).await?;
    let reads = Reads::new(&cfg.router.schema);
    let mut past = Window::read(&t, &reads, sql, opts, engine, Told::First, cfg).await?;
    past.read_for_replay(&t, &reads, engine, opts.since).await?;
    t.commit().await?;
    let after = past.replay(engine, &RuleSets::default(), opts.seed);
    Ok((past.before, after))
}

/// What happened to the opportunities of the window, as the audit has it (`report`).
pub async fn report(
    client: &mut Client,
    cfg: &Config,
    sql: &CrmSql,
    engine: &Engine,
    opts: &Options,
) -> Result<Report, SimulateError> {
    let t = read_only(client).await?;
    let reads = Reads::new(&cfg.router.schema);
    let mut past = Window::read(&t, &reads, sql, opts, engine, Told::Ended, cfg).await?;
    let reclaims = ReclaimCount::from_rows(&t.query(&reads.reclaims_since, &[&opts.since]).await?)?;
    let in_force = crate::store::DaemonRow::from_rows(&t.query(&reads.daemon, &[]).await?)?;
    t.commit().await?;
    // What happened happened: opportunities deleted since still count.
    past.before.append(&mut past.gone);
    past.before.sort_by_key(|r| r.at);
    past.skipped.clear();
    // The version the daemon routes with (this process's own compile numbers its sets anew).
    let version = in_force.into_iter().next().map_or_else(|| engine.version.clone(), |d| d.rules_version);
    let mut inputs = past.inputs(engine, "What the router did", opts, version);
    inputs.reclaims = reclaims.into_iter().map(|r| (r.pipeline, r.count)).collect();
    Ok(Report::build(inputs, &past.before, None))
}

/// The options with `--opportunities` ids as the router stores them (a uuid typed in upper case
/// finds its decisions).
async fn as_stored(client: &Client, cfg: &Config, opts: &Options) -> Result<Options, tokio_postgres::Error> {
    let ids = match &opts.ids {
        Some(ids) => {
            let mut stored = crm::stored_ids(client, cfg, ids).await?;
            let mut seen = std::collections::HashSet::new();
            stored.retain(|i| seen.insert(i.clone()));
            Some(stored)
        }
        None => None,
    };
    Ok(Options { ids, ..opts.clone() })
}

async fn read_only(client: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
}

/// How each opportunity of the window is told: by its first decision (what a replay redoes), or
/// as it ended (`report`: its last decision, or why it is unowned now).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Told {
    First,
    Ended,
}

/// One decision to replay: what it saw when the router kept it (fields, moment, randomness,
/// ledger), else the opportunity's fields as the CRM holds them now.
struct Fields {
    pipeline: Option<String>,
    fields: Vec<Option<String>>,
    seen: Option<Box<Seen>>,
    /// The rule set that made it.
    version: Option<String>,
}

/// The rule sets that made the window's decisions, compiled again from what the router kept.
#[derive(Default)]
struct RuleSets {
    sets: HashMap<String, Engine>,
}

/// Everything a replay starts from.
struct Window {
    /// What happened, oldest first; those that can be replayed.
    before: Vec<Routed>,
    /// What happened to opportunities that cannot be replayed (deleted, no longer opportunities).
    gone: Vec<Routed>,
    fields: Vec<Fields>,
    skipped: BTreeMap<String, usize>,
    /// Open loads when the window began.
    start_loads: BTreeMap<String, i64>,
    /// Assignments before the window that windowed caps count.
    recent: Vec<Recent>,
    paused: Vec<String>,
    /// The owners of the window's opportunities still open with the owner the router gave them.
    still_held: Vec<String>,
}

impl Window {
    /// The window's decisions, each with who could have received it by `engine` (the rules the
    /// report is about).
    async fn read(
        t: &Transaction<'_>,
        reads: &Reads,
        sql: &CrmSql,
        opts: &Options,
        engine: &Engine,
        told: Told,
        cfg: &Config,
    ) -> Result<Window, SimulateError> {
        let (of, since) = match told {
            Told::First => (&reads.past_of, &reads.past_since),
            Told::Ended => (&reads.ended_of, &reads.ended_since),
        };
        let past = match &opts.ids {
            Some(ids) => Past::from_rows(&t.query(of, &[ids]).await?)?,
            None => Past::from_rows(&t.query(since, &[&opts.since]).await?)?,
        };
        let names: Vec<String> = cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect();
        let mut w = Window::from_past(t, sql, past, engine, &names).await?;
        if let Some(ids) = &opts.ids {
            let known: std::collections::HashSet<&str> =
                w.before.iter().chain(&w.gone).map(|r| r.opp_id.as_str()).collect();
            let never = ids.iter().filter(|i| !known.contains(i.as_str())).count();
            if never > 0 {
                w.skipped.insert("never decided by the router".into(), never);
            }
        }
        w.start_loads(t, sql).await?;
        Ok(w)
    }

    /// What only a replay needs besides: the assignments before the window that `engine`'s
    /// windowed caps count, and the pauses for lapses in force.
    async fn read_for_replay(
        &mut self,
        t: &Transaction<'_>,
        reads: &Reads,
        engine: &Engine,
        since: DateTime<Utc>,
    ) -> Result<(), SimulateError> {
        let start = self.before.first().map_or(since, |r| DateTime::from_timestamp(r.at, 0).unwrap_or(since));
        let from = start - chrono::Duration::seconds(engine.history);
        self.recent = Recent::from_rows(&t.query(&reads.recent_between, &[&from, &start]).await?)?;
        self.paused =
            LapsePause::from_rows(&t.query(&reads.lapse_pauses, &[]).await?)?.into_iter().map(|p| p.member).collect();
        Ok(())
    }

    /// The past decisions with what each saw (or, for one made before the router kept it, its
    /// fields from the CRM now: those gone from it put aside).
    async fn from_past(
        t: &Transaction<'_>,
        sql: &CrmSql,
        past: Vec<Past>,
        engine: &Engine,
        names: &[String],
    ) -> Result<Window, SimulateError> {
        let mut ctx: HashMap<String, crate::drain::Context> = HashMap::with_capacity(past.len());
        let ids: Vec<String> = past.iter().map(|p| p.opp_id.clone()).collect();
        for chunk in ids.chunks(CHUNK) {
            for r in t.query(&sql.context, &[&chunk]).await? {
                let (id, c) = crate::drain::context_from_row(&r, false)?;
                ctx.insert(id, c);
            }
        }
        let mut w = Window {
            before: Vec::with_capacity(past.len()),
            gone: Vec::new(),
            fields: Vec::with_capacity(past.len()),
            skipped: BTreeMap::new(),
            start_loads: BTreeMap::new(),
            recent: Vec::new(),
            paused: Vec::new(),
            still_held: Vec::new(),
        };
        // Decisions share their explanations (the audit stores each distinct one once): each is
        // parsed once here too.
        let mut parsed: HashMap<String, Option<Explanation>> = HashMap::new();
        for p in past {
            let routed = routed_of(&p, engine, &mut parsed);
            let c = ctx.remove(&p.opp_id).filter(|c| c.opportunity && !c.deleted);
            if let Some(c) = c.as_ref().filter(|c| c.open && c.owner.is_some() && c.owner == p.owner_id) {
                w.still_held.extend(c.owner.clone());
            }
            let seen = p.seen.as_deref().and_then(|t| serde_json::from_str::<Seen>(t).ok());
            match (seen, c) {
                (Some(seen), _) => {
                    let fields = names.iter().map(|n| seen.fields.get(n).cloned()).collect();
                    let pipeline = seen.pipeline.clone();
                    w.fields.push(Fields { pipeline, fields, seen: Some(Box::new(seen)), version: p.rules_version });
                    w.before.push(routed);
                }
                (None, Some(c)) => {
                    w.fields.push(Fields {
                        pipeline: c.pipeline,
                        fields: c.fields,
                        seen: None,
                        version: p.rules_version,
                    });
                    w.before.push(routed);
                }
                (None, None) => {
                    *w.skipped
                        .entry("deleted from the CRM since (decided before the router kept what it saw)".into())
                        .or_insert(0) += 1;
                    w.gone.push(routed);
                }
            }
        }
        Ok(w)
    }

    /// Each member's open load now, less the opportunities of the window still open with the
    /// owner the router gave them: the load as the window began (closings are not replayed).
    async fn start_loads(&mut self, t: &Transaction<'_>, sql: &CrmSql) -> Result<(), SimulateError> {
        for l in crm::Load::from_rows(&t.query(&sql.full_count, &[]).await?)? {
            self.start_loads.insert(l.owner, l.open);
        }
        for owner in std::mem::take(&mut self.still_held) {
            if let Some(n) = self.start_loads.get_mut(&owner) {
                *n = (*n - 1).max(0);
            }
        }
        Ok(())
    }

    /// The rules' decision for each opportunity, in the order they came: from what the router
    /// saw then (its fields, moment, randomness, and the loads, caps and turns of the members its
    /// rules reached), else from the loads and recent assignments as the window began. With
    /// `sets`, each decision is replayed with the rule set that made it; `candidate` otherwise.
    fn replay(&self, candidate: &Engine, sets: &RuleSets, seed: u64) -> Vec<Routed> {
        let mut ledgers: HashMap<usize, Ledger> = HashMap::new();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(self.before.len());
        for (i, (b, f)) in self.before.iter().zip(&self.fields).enumerate() {
            let engine = f.version.as_ref().and_then(|v| sets.sets.get(v)).unwrap_or(candidate);
            let ledger = ledgers.entry(engine as *const Engine as usize).or_insert_with(|| self.ledger(engine));
            let d = match &f.seen {
                Some(seen) => replay_seen(engine, ledger, &b.opp_id, f, seen),
                None => {
                    let at = DateTime::from_timestamp(b.at, 0).unwrap_or_default();
                    let opp = Opportunity {
                        id: &b.opp_id,
                        pipeline: f.pipeline.as_deref(),
                        fields: &f.fields,
                        waiting_since: at,
                        exclude: &[],
                        only_team: None,
                    };
                    engine.route(&opp, ledger, at, &mut rng)
                }
            };
            if i % CHUNK == 0 {
                ledger.trim(b.at, engine.history);
            }
            let entitled = entitled(engine, &d.explanation, &d.pipeline, d.rule_id.as_deref(), d.team.as_deref());
            out.push(Routed {
                opp_id: b.opp_id.clone(),
                at: b.at,
                outcome: d.outcome.as_str().to_string(),
                owner: d.owner,
                team: d.team,
                pipeline: d.pipeline,
                rule: d.rule_id,
                reason: d.explanation.brief(),
                entitled,
            });
        }
        out
    }

    /// The rule sets that made the window's decisions, compiled again from the files and the
    /// CRM's directory the router kept with each version; one it cannot compile is said, and its
    /// decisions are replayed with the rules on disk.
    async fn sets_in_force(
        &mut self,
        t: &Transaction<'_>,
        reads: &Reads,
        cfg: &Config,
    ) -> Result<RuleSets, SimulateError> {
        let mut versions: Vec<String> = self.fields.iter().filter_map(|f| f.version.clone()).collect();
        versions.sort();
        versions.dedup();
        let names: Vec<String> = cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect();
        let mut sets = RuleSets::default();
        let mut failed: HashMap<String, String> = HashMap::new();
        for row in t.query(&reads.rule_sets, &[&versions]).await? {
            let (version, sources, directory): (String, String, String) =
                (row.try_get("version")?, row.try_get("sources")?, row.try_get("directory")?);
            match compile_kept(&sources, &directory, &names) {
                Ok(engine) => drop(sets.sets.insert(version, engine)),
                Err(why) => drop(failed.insert(version, why)),
            }
        }
        // Each decision whose own rules cannot be had is replayed with the rules on disk: said,
        // counted by decision.
        for v in self.fields.iter().filter_map(|f| f.version.as_ref()).filter(|v| !sets.sets.contains_key(*v)) {
            let why = match failed.get(v) {
                Some(e) => format!("rules {v} could not be compiled again: {e}"),
                None => format!("rules {v} were not kept (put in force before the router kept rule sets)"),
            };
            let note = format!("with the rules that made them: {why}; replayed with the rules on disk");
            *self.skipped.entry(note).or_insert(0) += 1;
        }
        Ok(sets)
    }

    /// The ledger as the window began: open loads, the assignments windowed caps count, pauses.
    fn ledger(&self, engine: &Engine) -> Ledger {
        let mut ledger = Ledger::for_engine(engine, None);
        for (m, id) in engine.member_ids().enumerate() {
            ledger.open[m] = self.start_loads.get(id).copied().unwrap_or(0);
        }
        for r in &self.recent {
            let Some(m) = engine.member_index(&r.owner_id) else { continue };
            ledger.recent[m].push_back(r.at);
            let team = r.team_id.as_ref().and_then(|t| engine.team_index.get(t)).map(|t| &engine.teams[*t]);
            if let Some(team) = team.filter(|t| t.caps_here.iter().any(|(x, _)| *x == m)) {
                ledger.assign_here(&engine.members[m].id, &team.id, r.at);
            }
        }
        ledger.recent.iter_mut().for_each(|q| q.make_contiguous().sort_unstable());
        ledger.set_paused(engine, self.paused.iter().map(String::as_str));
        ledger
    }

    /// The report's inputs: teams and names from `engine`, the window's loads and skips.
    fn inputs(&self, engine: &Engine, title: &str, opts: &Options, rules: String) -> Inputs {
        let id = |m: &usize| engine.members[*m].id.to_string();
        Inputs {
            title: title.to_string(),
            window: opts.window.clone(),
            rules,
            start_loads: self.start_loads.clone(),
            teams: engine.teams.iter().map(|t| (t.id.to_string(), t.members.iter().map(id).collect())).collect(),
            names: engine.members.iter().map(|m| (m.id.to_string(), m.name.to_string())).collect(),
            paused: engine.members.iter().filter(|m| m.paused).map(|m| m.id.to_string()).collect(),
            reclaims: BTreeMap::new(),
            skipped: self.skipped.clone(),
            bucket_secs: bucket_secs(self.before.first().map(|r| r.at), self.before.last().map(|r| r.at)),
        }
    }
}

/// One decision replayed from what it saw: the ledger of the members its rules reached put back
/// as the router counted it, the same moment, the same randomness.
fn replay_seen(engine: &Engine, ledger: &mut Ledger, id: &str, f: &Fields, seen: &Seen) -> crate::engine::Decision {
    let at = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    seen.ledger.apply(engine, ledger);
    let opp = Opportunity {
        id,
        pipeline: f.pipeline.as_deref(),
        fields: &f.fields,
        waiting_since: at(seen.waiting_since_us),
        exclude: &seen.exclude,
        only_team: seen.only_team.as_deref(),
    };
    engine.route(&opp, ledger, at(seen.now_us), &mut rand::rngs::SmallRng::seed_from_u64(seen.seed))
}

/// A rule set as the router kept it (its files, and what the CRM's directory said), compiled
/// again; its own tests only warn (the CRM may have changed since).
fn compile_kept(sources: &str, directory: &str, names: &[String]) -> Result<Engine, String> {
    let files: Vec<(String, String)> = serde_json::from_str(sources).map_err(|e| e.to_string())?;
    let mut dir: crate::rules::Directory = serde_json::from_str(directory).map_err(|e| e.to_string())?;
    dir.tests_warn = true;
    dir.unread = false;
    let texts: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    crate::rules::compile_texts_with(&texts, names, &dir).map_err(|e| e.problems.join("; "))
}

/// A past decision as the report counts it, with who could have received it (read from its own
/// explanation, parsed once per distinct text in `parsed`; none when it does not read).
fn routed_of(p: &Past, engine: &Engine, parsed: &mut HashMap<String, Option<Explanation>>) -> Routed {
    let pipeline = p.pipeline.clone().unwrap_or_else(|| crate::engine::DEFAULT_PIPELINE.to_string());
    let ex = p.explanation.as_deref().and_then(|text| {
        if !parsed.contains_key(text) {
            parsed.insert(text.to_string(), serde_json::from_str(text).ok());
        }
        parsed.get(text).and_then(Option::as_ref)
    });
    let entitled =
        ex.map(|ex| entitled(engine, ex, &pipeline, p.rule_id.as_deref(), p.team_id.as_deref())).unwrap_or_default();
    Routed {
        opp_id: p.opp_id.clone(),
        at: p.at.floor() as i64,
        outcome: p.outcome.clone(),
        owner: p.owner_id.clone(),
        team: p.team_id.clone(),
        pipeline,
        rule: p.rule_id.clone(),
        reason: String::new(),
        entitled,
    }
}

/// Who could have received a decision made by a rule through a team, and their share of it.
fn entitled(
    engine: &Engine,
    ex: &Explanation,
    pipeline: &str,
    rule: Option<&str>,
    team: Option<&str>,
) -> Vec<(String, f64)> {
    let (Some(rule), Some(team)) = (rule, team) else { return Vec::new() };
    engine.entitlement(ex, pipeline, rule, team).into_iter().map(|(m, s)| (m.to_string(), s)).collect()
}

/// The fallback chart's bucket: the shortest of a minute, 5 and 15 minutes, an hour, 6 hours and
/// a day that gives at most 60 buckets.
fn bucket_secs(first: Option<i64>, last: Option<i64>) -> i64 {
    let span = last.unwrap_or(0) - first.unwrap_or(0);
    [60, 300, 900, 3_600, 21_600, 86_400].into_iter().find(|b| span / b < 60).unwrap_or(86_400 * 7)
}

/// The ids of an `--opportunities` file: one per line (the first field of a CSV line); blank
/// lines, `#` comments and a header `id` skipped.
pub fn ids_from(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| l.split(',').next().unwrap_or("").trim().trim_matches('"').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.eq_ignore_ascii_case("id"))
        .collect();
    let mut seen = std::collections::HashSet::new();
    ids.retain(|i| seen.insert(i.clone()));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opportunities_file_takes_one_id_a_line_or_a_csv_first_column() {
        let ids = ids_from("id,name\n# exported\n42,\"Acme\"\n\n 7 \n42\n\"a-b\",x\n");
        assert_eq!(ids, ["42", "7", "a-b"]);
    }

    #[test]
    fn the_fallback_chart_keeps_to_sixty_buckets() {
        assert_eq!(bucket_secs(Some(0), Some(30)), 60);
        assert_eq!(bucket_secs(Some(0), Some(7 * 86_400)), 21_600);
        assert_eq!(bucket_secs(None, None), 60);
    }
}
