//! The routing engine on its own: the product documents' scenarios, the semantics that must hold
//! (property tests over thousands of generated rule sets and opportunities), and explanations.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use oppty_router::engine::{Engine, Ledger, Opportunity, Outcome};
use oppty_router::rules::compile_texts;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const FIELDS: &[&str] =
    &["province", "score", "source", "amount", "product", "category", "company_owner", "last_owner", "segment"];

fn fields() -> Vec<String> {
    FIELDS.iter().map(|s| s.to_string()).collect()
}

/// The shipped example rules, as the demo uses them.
fn example() -> Engine {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("rules dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (p.display().to_string(), std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    files.sort();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    compile_texts(&refs, &example_fields()).expect("example rules")
}

/// The fields the example daemon config maps, in its order.
fn example_fields() -> Vec<String> {
    let cfg = oppty_router::config::Config::parse(devkit::demo::EXAMPLE_CONFIG, std::path::Path::new("x.toml"))
        .expect("config");
    cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect()
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc)
}

/// An opportunity of pipeline `p` with these fields, waiting since `at`.
fn plain(v: &[Option<String>], at: DateTime<Utc>) -> Opportunity<'_> {
    Opportunity { id: "o", pipeline: Some("p"), fields: v, waiting_since: at, exclude: &[], only_team: None }
}

/// Monday 10:00 in Hanoi.
fn monday_morning() -> DateTime<Utc> {
    at("2030-01-07T03:00:00Z")
}

fn values(engine_fields: &[&str], given: &[(&str, &str)]) -> Vec<Option<String>> {
    engine_fields.iter().map(|f| given.iter().find(|(k, _)| k == f).map(|(_, v)| v.to_string())).collect()
}

fn route(
    e: &Engine,
    ledger: &mut Ledger,
    pipeline: &str,
    given: &[(&str, &str)],
    now: DateTime<Utc>,
) -> oppty_router::engine::Decision {
    let mapped = example_fields();
    let mapped: Vec<&str> = mapped.iter().map(String::as_str).collect();
    let v = values(&mapped, given);
    let opp = Opportunity {
        id: "o",
        pipeline: Some(pipeline),
        fields: &v,
        waiting_since: now,
        exclude: &[],
        only_team: None,
    };
    let mut rng = SmallRng::seed_from_u64(1);
    e.route(&opp, ledger, now, &mut rng)
}

/// The product documents' scenarios, on the example rules.
#[test]
fn scenarios_from_the_product_documents() {
    struct Case {
        story: &'static str,
        pipeline: &'static str,
        given: &'static [(&'static str, &'static str)],
        open: &'static [(&'static str, i64)],
        paused: &'static [&'static str],
        expect_owner: &'static str,
        expect_team: Option<&'static str>,
        explanation_has: &'static str,
    }
    let cases = [
        Case {
            story: "a province routes to that province's team",
            pipeline: "retail",
            given: &[("province", "DN")],
            open: &[],
            paused: &[],
            expect_owner: "301",
            expect_team: Some("danang-retail"),
            explanation_has: "its territory covers province = `DN`",
        },
        Case {
            story: "score < 100 goes to the junior team",
            pipeline: "corporate",
            given: &[("score", "42"), ("amount", "1000")],
            open: &[],
            paused: &[],
            expect_owner: "401",
            expect_team: Some("corporate-junior"),
            explanation_has: "round robin",
        },
        Case {
            story: "score ≥ 100 goes to the senior team",
            pipeline: "corporate",
            given: &[("score", "100"), ("amount", "1000")],
            open: &[],
            paused: &[],
            expect_owner: "402",
            expect_team: Some("corporate-senior"),
            explanation_has: "weighted round robin",
        },
        Case {
            story: "an Instagram-sourced profile is tagged and routed to the team tagged instagram",
            pipeline: "retail",
            given: &[("province", "DN"), ("source", "INSTAGRAM")],
            open: &[],
            paused: &[],
            expect_owner: "102",
            expect_team: Some("digital"),
            explanation_has: "\"tags\":[\"instagram\"]",
        },
        Case {
            story: "a repeat customer returns to the last deal owner",
            pipeline: "retail",
            given: &[("province", "HN"), ("last_owner", "302")],
            open: &[("302", 30)],
            paused: &[],
            expect_owner: "302",
            expect_team: Some("danang-retail"),
            explanation_has: "last_owner `302` is eligible",
        },
        Case {
            story: "a member at cap is skipped",
            pipeline: "retail",
            given: &[("province", "HN"), ("product", "HOME")],
            open: &[("101", 3), ("102", 400)],
            paused: &[],
            expect_owner: "101",
            expect_team: Some("hanoi-retail"),
            explanation_has: "at cap: open opportunities",
        },
        Case {
            story: "all members paused: the fallback owner",
            pipeline: "retail",
            given: &[("province", "HCM")],
            open: &[],
            paused: &["201", "202", "203"],
            expect_owner: "100",
            expect_team: None,
            explanation_has: "\"paused (rule files)\":[\"201\",\"202\",\"203\"]",
        },
        Case {
            story: "a last owner who is paused is not kept",
            pipeline: "retail",
            given: &[("province", "DN"), ("last_owner", "103")],
            open: &[],
            paused: &[],
            expect_owner: "301",
            expect_team: Some("danang-retail"),
            explanation_has: "last_owner `103` is not eligible",
        },
    ];
    for c in cases {
        let mut e = example();
        for p in c.paused {
            let i = e.member_index(p).expect("member");
            e.members[i].paused = true;
        }
        let mut ledger = Ledger::for_engine(&e, None);
        for (m, n) in c.open {
            ledger.open[e.member_index(m).expect("member")] = *n;
        }
        let d = route(&e, &mut ledger, c.pipeline, c.given, monday_morning());
        let ex = serde_json::to_string(&d.explanation).expect("json");
        assert_eq!(d.owner.as_deref(), Some(c.expect_owner), "{}: {ex}", c.story);
        assert_eq!(d.team.as_deref(), c.expect_team, "{}: {ex}", c.story);
        assert!(ex.contains(c.explanation_has), "{}: expected `{}` in {ex}", c.story, c.explanation_has);
    }
}

// ---------- generated rule sets ----------

#[derive(Debug, Clone)]
struct GenMember {
    paused: bool,
    max_open: Option<u32>,
    weight: u32,
    open: i64,
    /// Works 08:00-17:00 UTC on weekdays only.
    office_hours: bool,
}

#[derive(Debug, Clone)]
struct GenSet {
    members: Vec<GenMember>,
    /// Which team (0 or 1) each member is in; team 1 does not take part in the pipeline.
    team_of: Vec<usize>,
    pick: &'static str,
}

fn gen_member() -> impl Strategy<Value = GenMember> {
    (prop::bool::weighted(0.2), prop::option::weighted(0.5, 1u32..6), 1u32..5, 0i64..6, prop::bool::weighted(0.3))
        .prop_map(|(paused, max_open, weight, open, office_hours)| GenMember {
            paused,
            max_open,
            weight,
            open,
            office_hours,
        })
}

fn gen_set(picks: &'static [&'static str]) -> impl Strategy<Value = GenSet> {
    (prop::collection::vec(gen_member(), 1..9), prop::sample::select(picks)).prop_flat_map(|(members, pick)| {
        let n = members.len();
        (
            Just(members),
            prop::collection::vec(prop::bool::weighted(0.8).prop_map(|b| if b { 0 } else { 1 }), n),
            Just(pick),
        )
            .prop_map(|(members, team_of, pick)| GenSet { members, team_of, pick })
    })
}

fn build(g: &GenSet) -> (Engine, Ledger) {
    let mut text = String::from("[settings]\nfallback_owner = \"fb\"\nreentry_ramp = \"0s\"\n[[schedule]]\nid = \"office\"\ntimezone = \"UTC\"\nweek = { \"mon-fri\" = \"08:00-17:00\" }\n");
    for (i, m) in g.members.iter().enumerate() {
        text.push_str(&format!("[[member]]\nid = \"m{i}\"\npaused = {}\nweight = {}\n", m.paused, m.weight));
        if let Some(c) = m.max_open {
            text.push_str(&format!("max_open = {c}\n"));
        }
        if m.office_hours {
            text.push_str("schedule = \"office\"\n");
        }
    }
    for t in 0..2 {
        let ms: Vec<String> =
            (0..g.members.len()).filter(|i| g.team_of[*i] == t).map(|i| format!("\"m{i}\"")).collect();
        let ms = if ms.is_empty() { vec!["\"m0\"".to_string()] } else { ms };
        let pipelines = if t == 0 { "[\"p\"]" } else { "[\"other\"]" };
        text.push_str(&format!("[[team]]\nid = \"t{t}\"\npipelines = {pipelines}\nmembers = [{}]\n", ms.join(", ")));
    }
    text.push_str(&format!(
        "[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"{}\"\n[[pipeline]]\nid = \"other\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"fewest_open\"\n",
        g.pick
    ));
    let e = compile_texts(&[("gen.toml", &text)], &fields()).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let mut l = Ledger::for_engine(&e, None);
    for (i, m) in g.members.iter().enumerate() {
        l.open[e.member_index(&format!("m{i}")).expect("member")] = m.open;
    }
    (e, l)
}

/// In the pipeline (team 0 or also listed in team 0), not paused, under cap, in hours.
fn eligible(g: &GenSet, e: &Engine, l: &Ledger, i: usize, now: DateTime<Utc>) -> bool {
    let m = &g.members[i];
    let in_pipeline = g.team_of[i] == 0 || (i == 0 && !g.team_of.contains(&0));
    let idx = e.member_index(&format!("m{i}")).expect("member");
    let in_hours = !m.office_hours || e.members[idx].schedule.is_some_and(|s| e.schedules[s as usize].working(now));
    in_pipeline && !m.paused && m.max_open.is_none_or(|c| l.open[idx] < i64::from(c)) && in_hours
}

fn member_no(id: &str) -> usize {
    id.trim_start_matches('m').parse().expect("generated member id")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Never a paused member, one at or over a cap, one outside working hours, or one outside the
    /// pipeline; the fallback only when nobody is eligible; fewest-open picks a minimum load.
    #[test]
    fn decisions_respect_scope_and_fallback_only_when_nobody_is_eligible(
        g in gen_set(&["fewest_open", "round_robin", "weighted_round_robin", "random", "best_kpi"]),
        hour in 0u32..24,
        n in 1usize..12,
        seed in any::<u64>(),
    ) {
        let (e, mut l) = build(&g);
        let now = at(&format!("2030-01-07T{hour:02}:30:00Z"));
        let mut rng = SmallRng::seed_from_u64(seed);
        for _ in 0..n {
            let before = l.clone();
            let anyone = (0..g.members.len()).any(|i| eligible(&g, &e, &before, i, now));
            let v = vec![None; FIELDS.len()];
            let opp = plain(&v, now);
            let d = e.route(&opp, &mut l, now, &mut rng);
            match d.outcome {
                Outcome::Rule => {
                    let i = member_no(d.owner.as_deref().expect("owner"));
                    prop_assert!(eligible(&g, &e, &before, i, now), "m{i} was not eligible: {:?}", d.explanation);
                    if g.pick == "fewest_open" {
                        let idx = |j: usize| e.member_index(&format!("m{j}")).expect("member");
                        let min = (0..g.members.len()).filter(|j| eligible(&g, &e, &before, *j, now)).map(|j| before.open[idx(j)]).min();
                        prop_assert_eq!(Some(before.open[idx(i)]), min, "fewest open picks a minimum load");
                    }
                }
                Outcome::Fallback => prop_assert!(!anyone, "fallback although someone was eligible: {:?}", d.explanation),
                other => prop_assert!(false, "unexpected outcome {other:?}"),
            }
        }
    }

    /// Whatever a sequence of decisions changed in the ledger (loads, recent assignments, team
    /// caps, round-robin turns, away flags, re-entry ramps), undoing them in reverse order puts
    /// it back exactly as it was: a batch that rolls back leaves no trace.
    #[test]
    fn route_then_undo_restores_the_ledger_exactly(
        g in gen_set(&["fewest_open", "round_robin", "weighted_round_robin", "random", "best_kpi"]),
        away in prop::collection::vec(any::<bool>(), 8),
        reentry in prop::collection::vec(prop::option::of((0i64..1_000, 0i64..5)), 8),
        hour in 0u32..24,
        n in 1usize..12,
        seed in any::<u64>(),
    ) {
        let (e, mut l) = build(&g);
        let k = g.members.len();
        l.away.copy_from_slice(&away[..k]);
        l.reentry.copy_from_slice(&reentry[..k]);
        let before = l.clone();
        let now = at(&format!("2030-01-07T{hour:02}:30:00Z"));
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut undos = Vec::new();
        for _ in 0..n {
            let v = vec![None; FIELDS.len()];
            undos.push(e.route(&plain(&v, now), &mut l, now, &mut rng).undo);
        }
        for u in undos.iter().rev() {
            l.undo(u);
        }
        l.dirty.clear(); // what to persist next, not state
        prop_assert_eq!(l, before);
    }

    /// Round robin over N opportunities gives each of k eligible members ⌊N/k⌋ or ⌈N/k⌉; weighted
    /// round robin gives shares proportional to weights, off by fewer than two (smooth weighted
    /// round robin strays past one now and then: weights 1,1,1,5,5,5 give 17 after 65 picks for
    /// a share of 18.06).
    #[test]
    fn round_robin_is_fair_and_weighted_round_robin_proportional(
        weights in prop::collection::vec(1u32..6, 1..7),
        n in 1usize..200,
        weighted in any::<bool>(),
    ) {
        let members: Vec<GenMember> = weights.iter().map(|w| GenMember { paused: false, max_open: None, weight: *w, open: 0, office_hours: false }).collect();
        let k = members.len();
        let g = GenSet { team_of: vec![0; k], members, pick: if weighted { "weighted_round_robin" } else { "round_robin" } };
        let (e, mut l) = build(&g);
        let now = monday_morning();
        let mut rng = SmallRng::seed_from_u64(0);
        let mut count: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            let v = vec![None; FIELDS.len()];
            let opp = plain(&v, now);
            let d = e.route(&opp, &mut l, now, &mut rng);
            *count.entry(d.owner.expect("owner")).or_default() += 1;
        }
        let total_w: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let got = count.get(&format!("m{i}")).copied().unwrap_or(0) as f64;
            if weighted {
                let share = n as f64 * f64::from(*w) / f64::from(total_w);
                prop_assert!((got - share).abs() < 2.0, "m{i} weight {w}: got {got}, share {share:.2}");
            } else {
                prop_assert!(got as usize == n / k || got as usize == n.div_ceil(k), "m{i}: got {got} of {n} over {k}");
            }
        }
    }

    /// The same rules, opportunity, ledger, time and randomness give the same decision.
    #[test]
    fn the_same_inputs_give_the_same_decision(
        g in gen_set(&["fewest_open", "round_robin", "weighted_round_robin", "random", "best_kpi"]),
        seed in any::<u64>(),
    ) {
        let (e, l) = build(&g);
        let now = monday_morning();
        let v = vec![None; FIELDS.len()];
        let opp = plain(&v, now);
        let (mut l1, mut l2) = (l.clone(), l);
        let d1 = e.route(&opp, &mut l1, now, &mut SmallRng::seed_from_u64(seed));
        let d2 = e.route(&opp, &mut l2, now, &mut SmallRng::seed_from_u64(seed));
        prop_assert_eq!(d1.owner, d2.owner);
        prop_assert_eq!(serde_json::to_string(&d1.explanation).ok(), serde_json::to_string(&d2.explanation).ok());
        prop_assert_eq!(l1.open, l2.open);
    }
}

#[test]
fn loads_update_within_a_batch_so_fewest_open_spreads_a_burst_evenly() {
    let members: Vec<GenMember> =
        (0..4).map(|_| GenMember { paused: false, max_open: None, weight: 1, open: 0, office_hours: false }).collect();
    let g = GenSet { team_of: vec![0; 4], members, pick: "fewest_open" };
    let (e, mut l) = build(&g);
    let mut rng = SmallRng::seed_from_u64(0);
    for _ in 0..10 {
        let v = vec![None; FIELDS.len()];
        let opp = plain(&v, monday_morning());
        e.route(&opp, &mut l, monday_morning(), &mut rng);
    }
    let (min, max) = (l.open.iter().min().copied(), l.open.iter().max().copied());
    assert_eq!((min, max), (Some(2), Some(3)), "10 over 4 members: 2 or 3 each, not all to one");
}

#[test]
fn round_robin_state_survives_membership_changes() {
    let text = |members: &str| {
        format!("[[member]]\nid = \"a\"\n[[member]]\nid = \"b\"\n[[member]]\nid = \"c\"\n[[member]]\nid = \"d\"\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [{members}]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"round_robin\"\n")
    };
    let e1 = compile_texts(&[("a.toml", &text("\"a\", \"b\", \"c\""))], &fields()).expect("rules");
    let mut l1 = Ledger::for_engine(&e1, None);
    let v = vec![None; FIELDS.len()];
    let opp = plain(&v, monday_morning());
    let mut rng = SmallRng::seed_from_u64(0);
    let first: Vec<String> =
        (0..2).map(|_| e1.route(&opp, &mut l1, monday_morning(), &mut rng).owner.expect("owner")).collect();
    assert_eq!(first, ["a", "b"]);
    // d joins the team, a leaves: the turn goes on after b, it does not restart.
    let e2 = compile_texts(&[("a.toml", &text("\"b\", \"c\", \"d\""))], &fields()).expect("rules");
    let mut l2 = Ledger::for_engine(&e2, Some((&e1, &l1)));
    let next: Vec<String> =
        (0..4).map(|_| e2.route(&opp, &mut l2, monday_morning(), &mut rng).owner.expect("owner")).collect();
    assert_eq!(next, ["c", "d", "b", "c"]);
}

#[test]
fn random_is_reproducible_with_the_same_seed() {
    let members: Vec<GenMember> =
        (0..6).map(|_| GenMember { paused: false, max_open: None, weight: 1, open: 0, office_hours: false }).collect();
    let g = GenSet { team_of: vec![0; 6], members, pick: "random" };
    let (e, l) = build(&g);
    let run = |seed| {
        let mut l = l.clone();
        let mut rng = SmallRng::seed_from_u64(seed);
        let v = vec![None; FIELDS.len()];
        let opp = plain(&v, monday_morning());
        (0..20).map(|_| e.route(&opp, &mut l, monday_morning(), &mut rng).owner.expect("owner")).collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43), "different seeds give different sequences");
}

#[test]
fn a_member_back_from_pause_neither_floods_nor_starves() {
    let text = |paused: bool| {
        format!("[settings]\nreentry_ramp = \"8h\"\n[[member]]\nid = \"a\"\n[[member]]\nid = \"b\"\n[[member]]\nid = \"c\"\npaused = {paused}\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\", \"b\", \"c\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"fewest_open\"\n")
    };
    let paused = compile_texts(&[("a.toml", &text(true))], &fields()).expect("rules");
    let mut l = Ledger::for_engine(&paused, None);
    let (a, b) = (paused.member_index("a").expect("a"), paused.member_index("b").expect("b"));
    l.open[a] = 40;
    l.open[b] = 40;
    let back = compile_texts(&[("a.toml", &text(false))], &fields()).expect("rules");
    let mut l = Ledger::for_engine(&back, Some((&paused, &l)));
    let c = back.member_index("c").expect("c");
    let v = vec![None; FIELDS.len()];
    let start = monday_morning();
    let mut rng = SmallRng::seed_from_u64(0);
    let mut to_c = 0;
    // 30 opportunities in the first hour: c gets about a third, not all 30.
    for i in 0..30 {
        let now = start + chrono::Duration::minutes(i * 2);
        let opp = plain(&v, now);
        if back.route(&opp, &mut l, now, &mut rng).owner.as_deref() == Some("c") {
            to_c += 1;
        }
    }
    assert!((10..=16).contains(&to_c), "no flood: c got {to_c} of 30 in the first hour");
    // Over the ramp the deficit fades: by the end c has caught up.
    for i in 0..200 {
        let now = start + chrono::Duration::hours(1) + chrono::Duration::minutes(i * 3);
        let opp = plain(&v, now);
        back.route(&opp, &mut l, now, &mut rng);
    }
    assert!((l.open[c] - l.open[a]).abs() <= 2, "no starvation: loads {:?}", l.open);
}

#[test]
fn when_every_candidate_is_full_the_rule_can_hold_and_retry() {
    let text = "[settings]\nfallback_owner = \"admin\"\nhold_retry = \"10m\"\nhold_max = \"1h\"\n[[member]]\nid = \"a\"\nmax_open = 1\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"fewest_open\"\nwhen_full = \"hold\"\n";
    let e = compile_texts(&[("a.toml", text)], &fields()).expect("rules");
    let mut l = Ledger::for_engine(&e, None);
    l.open[0] = 1;
    let v = vec![None; FIELDS.len()];
    let now = monday_morning();
    let opp = plain(&v, now);
    let d = e.route(&opp, &mut l, now, &mut SmallRng::seed_from_u64(0));
    assert_eq!(d.outcome, Outcome::Held);
    assert_eq!(d.retry_at, Some(now + chrono::Duration::minutes(10)));
    // Held longer than hold_max: no lead stranded, the fallback owner takes it.
    let later = now + chrono::Duration::minutes(61);
    let d = e.route(&opp, &mut l, later, &mut SmallRng::seed_from_u64(0));
    assert_eq!((d.outcome, d.owner.as_deref()), (Outcome::Fallback, Some("admin")));
    // Capacity frees: assigned.
    l.open[0] = 0;
    let d = e.route(&opp, &mut l, now, &mut SmallRng::seed_from_u64(0));
    assert_eq!(d.owner.as_deref(), Some("a"));
}

#[test]
fn a_team_outside_working_hours_waits_for_the_morning_or_falls_through() {
    let text = |policy: &str| {
        format!("[settings]\nfallback_owner = \"admin\"\n[[schedule]]\nid = \"hn\"\ntimezone = \"Asia/Ho_Chi_Minh\"\nweek = {{ \"mon-fri\" = \"08:00-17:00\" }}\n[[member]]\nid = \"a\"\nschedule = \"hn\"\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"fewest_open\"\nwhen_away = \"{policy}\"\n")
    };
    let evening = at("2030-01-07T12:00:00Z"); // 19:00 in Hanoi
    let v = vec![None; FIELDS.len()];
    let opp = plain(&v, evening);
    let wait = compile_texts(&[("a.toml", &text("wait"))], &fields()).expect("rules");
    let d = wait.route(&opp, &mut Ledger::for_engine(&wait, None), evening, &mut SmallRng::seed_from_u64(0));
    assert_eq!(d.outcome, Outcome::Held);
    assert_eq!(d.retry_at, Some(at("2030-01-08T01:00:00Z")), "08:00 the next morning in Hanoi");
    let next = compile_texts(&[("a.toml", &text("next_rule"))], &fields()).expect("rules");
    let d = next.route(&opp, &mut Ledger::for_engine(&next, None), evening, &mut SmallRng::seed_from_u64(0));
    assert_eq!(d.owner.as_deref(), Some("admin"));
    assert!(serde_json::to_string(&d.explanation).expect("json").contains("outside working hours"));
}

#[test]
fn rolling_and_daily_caps_count_recent_assignments() {
    let text = "[[member]]\nid = \"a\"\ncaps = [{ max = 2, per = \"24h\" }, { max = 1, per = \"day\", timezone = \"Asia/Ho_Chi_Minh\" }]\n[[member]]\nid = \"b\"\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\", \"b\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"round_robin\"\n";
    let e = compile_texts(&[("a.toml", text)], &fields()).expect("rules");
    let mut l = Ledger::for_engine(&e, None);
    let v = vec![None; FIELDS.len()];
    let mut rng = SmallRng::seed_from_u64(0);
    let mut owners = Vec::new();
    for i in 0..4 {
        let now = monday_morning() + chrono::Duration::minutes(i);
        let opp = plain(&v, now);
        owners.push(e.route(&opp, &mut l, now, &mut rng).owner.expect("owner"));
    }
    assert_eq!(owners, ["a", "b", "b", "b"], "a's daily cap of 1 holds for the rest of the local day");
    // The next local day (00:00 in Hanoi = 17:00 UTC): a is back.
    let tomorrow = at("2030-01-07T17:30:00Z");
    let opp = plain(&v, tomorrow);
    assert_eq!(e.route(&opp, &mut l, tomorrow, &mut rng).owner.as_deref(), Some("a"));
}

#[test]
fn a_crm_storing_country_names_or_codes_matches_territories_by_name_and_alias() {
    let rules = r#"
[[territory]]
id = "US"
name = "United States"
aliases = ["USA", "U.S."]
[[territory]]
id = "VN"
name = "Việt Nam"
aliases = ["Vietnam"]
[[territory]]
id = "VN-HN"
name = "Hà Nội"
parent = "VN"
[[member]]
id = "1"
[[member]]
id = "2"
[[team]]
id = "americas"
pipelines = ["p"]
territories = ["united states"]
members = ["1"]
[[team]]
id = "vietnam"
pipelines = ["p"]
territories = ["VN"]
members = ["2"]
[[pipeline]]
id = "p"
[[pipeline.rule]]
id = "by-country"
team = { territory = "province" }
member = "fewest_open"
"#;
    let e = compile_texts(&[("t.toml", rules)], &fields()).expect("rules");
    for (written, team) in [
        ("US", "americas"),
        ("usa", "americas"),
        ("United States", "americas"),
        ("U.S.", "americas"),
        ("Vietnam", "vietnam"),
        ("VIỆT NAM", "vietnam"),
        ("hà nội", "vietnam"),
    ] {
        let mut l = Ledger::for_engine(&e, None);
        let v = values(FIELDS, &[("province", written)]);
        let opp = plain(&v, monday_morning());
        let d = e.route(&opp, &mut l, monday_morning(), &mut SmallRng::seed_from_u64(0));
        assert_eq!(d.team.as_deref(), Some(team), "`{written}`");
    }
    let clash = rules.replace("aliases = [\"Vietnam\"]", "aliases = [\"Vietnam\", \"USA\"]");
    let err = compile_texts(&[("t.toml", &clash)], &fields()).expect_err("an alias names one territory");
    assert!(err.to_string().contains("`USA` already names territory `us`"), "{err}");
}

/// A generated organisation for the per-team fairness property: teams each covering one
/// territory (plus, sometimes, a team covering the country above them all), members with numeric
/// ids (so "10" sorts after "6"), some in two teams.
#[derive(Debug, Clone)]
struct Org {
    /// Per team: (member number, weight) pairs; a member in two teams has one weight.
    teams: Vec<Vec<(u32, u32)>>,
    /// Whether the first rule's team stage is the whole pipeline (every team) for opportunities
    /// from no known territory.
    all_teams_rule: bool,
    /// Territory (team) index of each opportunity, in creation order; `None`: no known territory.
    opportunities: Vec<Option<usize>>,
}

fn gen_org() -> impl Strategy<Value = Org> {
    let team = prop::collection::vec(1u32..14, 1..5);
    let weights = prop::collection::vec(1u32..5, 14);
    (prop::collection::vec(team, 2..5), weights, any::<bool>()).prop_flat_map(|(teams, weights, all_teams_rule)| {
        let teams: Vec<Vec<(u32, u32)>> = teams
            .into_iter()
            .map(|mut t| {
                t.sort();
                t.dedup();
                t.into_iter().map(|m| (m, weights[m as usize])).collect()
            })
            .collect();
        let k = teams.len();
        let opp = prop::option::weighted(0.85, 0..k);
        (Just(teams), Just(all_teams_rule), prop::collection::vec(opp, 1..250))
            .prop_map(|(teams, all_teams_rule, opportunities)| Org { teams, all_teams_rule, opportunities })
    })
}

fn org_rules(org: &Org, pick: &str) -> String {
    let mut text = String::from("[settings]\nfallback_owner = \"fb\"\n[[territory]]\nid = \"C\"\n");
    let mut weight: HashMap<u32, u32> = HashMap::new();
    for t in &org.teams {
        for (m, w) in t {
            weight.insert(*m, *w);
        }
    }
    for (m, w) in &weight {
        text.push_str(&format!("[[member]]\nid = \"{m}\"\nweight = {w}\n"));
    }
    for (i, t) in org.teams.iter().enumerate() {
        let ms: Vec<String> = t.iter().map(|(m, _)| format!("\"{m}\"")).collect();
        text.push_str(&format!(
            "[[territory]]\nid = \"T{i}\"\nparent = \"C\"\n[[team]]\nid = \"team{i}\"\npipelines = [\"p\"]\nterritories = [\"T{i}\"]\nmembers = [{}]\n",
            ms.join(", ")
        ));
    }
    text.push_str(&format!(
        "[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"by-territory\"\nteam = {{ territory = \"province\" }}\nmember = \"{pick}\"\nturn = \"rule\"\n"
    ));
    if org.all_teams_rule {
        text.push_str(&format!("[[pipeline.rule]]\nid = \"anyone\"\nmember = \"{pick}\"\nturn = \"rule\"\n"));
    }
    text
}

/// The same organisation with two rules feeding each team: customers coming back go to the team
/// the `source` field names ("already in this team"), the others by territory; both follow the
/// team's one turn (the default).
fn two_rules_one_team(org: &Org, pick: &str) -> String {
    let text = org_rules(&Org { all_teams_rule: false, ..org.clone() }, pick);
    let head = text.split("[[pipeline]]").next().unwrap_or_default().to_string();
    head + &format!(
        "[[pipeline]]\nid = \"p\"\n\
         [[pipeline.rule]]\nid = \"returning\"\nwhen = {{ field = \"segment\", equals = \"returning\" }}\nteam = {{ from_field = \"source\" }}\nmember = \"{pick}\"\n\
         [[pipeline.rule]]\nid = \"by-territory\"\nteam = {{ territory = \"province\" }}\nmember = \"{pick}\"\n"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// One round-robin turn per team, whatever mix of rules feeds it: within each team, every
    /// member's count is within one of their share (by weight, for the weighted pick).
    #[test]
    fn any_mix_of_rules_feeding_a_team_keeps_its_spread_within_one(
        org in gen_org(),
        weighted in any::<bool>(),
        returning in prop::collection::vec(any::<bool>(), 250),
    ) {
        let pick = if weighted { "weighted_round_robin" } else { "round_robin" };
        let text = two_rules_one_team(&org, pick);
        let e = compile_texts(&[("org.toml", &text)], &fields()).unwrap_or_else(|err| panic!("{err}\n{text}"));
        let mut l = Ledger::for_engine(&e, None);
        let mut rng = SmallRng::seed_from_u64(0);
        let now = monday_morning();
        let at = |f: &str| FIELDS.iter().position(|x| *x == f).expect("field");
        let mut got: HashMap<String, HashMap<String, usize>> = HashMap::new();
        let mut rules_used: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        for (o, back) in org.opportunities.iter().zip(&returning) {
            let Some(t) = o else { continue };
            let mut v = vec![None; FIELDS.len()];
            v[at("province")] = Some(format!("T{t}"));
            if *back {
                v[at("segment")] = Some("returning".into());
                v[at("source")] = Some(format!("team{t}"));
            }
            let d = e.route(&plain(&v, now), &mut l, now, &mut rng);
            prop_assert_eq!(d.outcome, Outcome::Rule, "{:?}", d.explanation);
            let team = d.team.clone().expect("team");
            rules_used.entry(team.clone()).or_default().insert(d.rule_id.clone().expect("rule"));
            *got.entry(team).or_default().entry(d.owner.clone().expect("owner")).or_default() += 1;
        }
        for (team, picks) in &got {
            let t: usize = team.trim_start_matches("team").parse().expect("team no");
            let n: usize = picks.values().sum();
            let total_w: u32 = org.teams[t].iter().map(|(_, w)| if weighted { *w } else { 1 }).sum();
            for (m, w) in &org.teams[t] {
                let w = if weighted { *w } else { 1 };
                let c = picks.get(&m.to_string()).copied().unwrap_or(0) as f64;
                let share = n as f64 * f64::from(w) / f64::from(total_w);
                prop_assert!((c - share).abs() < 1.0 + 1e-9,
                    "team {team} fed by {:?}: member {m} (weight {w}) got {c} of {n}, share {share:.2}; all: {picks:?}",
                    rules_used.get(team));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Round robin is per team: whatever the mix of teams, territories and creation orders, the
    /// equal members of a team end within one of each other (weighted round robin: within one of
    /// their weighted share of what the team received), also when a rule picks among every team.
    #[test]
    fn round_robin_is_fair_within_each_team_across_teams_and_creation_orders(
        org in gen_org(),
        weighted in any::<bool>(),
    ) {
        let pick = if weighted { "weighted_round_robin" } else { "round_robin" };
        let text = org_rules(&org, pick);
        let e = compile_texts(&[("org.toml", &text)], &fields()).unwrap_or_else(|err| panic!("{err}\n{text}"));
        let mut l = Ledger::for_engine(&e, None);
        let mut rng = SmallRng::seed_from_u64(0);
        let now = monday_morning();
        let province = FIELDS.iter().position(|f| *f == "province").expect("province");
        // (rule, team) → member → picks.
        let mut got: HashMap<(String, String), HashMap<String, usize>> = HashMap::new();
        for o in &org.opportunities {
            let mut v = vec![None; FIELDS.len()];
            v[province] = Some(o.map_or("nowhere".to_string(), |t| format!("T{t}")));
            let d = e.route(&plain(&v, now), &mut l, now, &mut rng);
            if d.outcome != Outcome::Rule {
                prop_assert!(o.is_none() && !org.all_teams_rule, "{:?}", d.explanation);
                continue;
            }
            let key = (d.rule_id.clone().expect("rule"), d.team.clone().expect("team"));
            *got.entry(key).or_default().entry(d.owner.clone().expect("owner")).or_default() += 1;
        }
        for ((rule, team), picks) in &got {
            let t: usize = team.trim_start_matches("team").parse().expect("team no");
            // A rule picking among every team counts a member in several once, through the first.
            let members: Vec<(u32, u32)> = org.teams[t]
                .iter()
                .copied()
                .filter(|(m, _)| rule != "anyone" || !org.teams[..t].iter().any(|e| e.iter().any(|(x, _)| x == m)))
                .collect();
            let n: usize = picks.values().sum();
            let total_w: u32 = members.iter().map(|(_, w)| if weighted { *w } else { 1 }).sum();
            for (m, w) in &members {
                let w = if weighted { *w } else { 1 };
                let c = picks.get(&m.to_string()).copied().unwrap_or(0) as f64;
                let share = n as f64 * f64::from(w) / f64::from(total_w);
                prop_assert!((c - share).abs() < 1.0 + 1e-9,
                    "rule {rule}, team {team}: member {m} (weight {w}) got {c} of {n}, share {share:.2}; all: {picks:?}");
            }
        }
    }
}

#[test]
fn round_robin_turns_go_in_the_id_columns_natural_order() {
    let text = "[[member]]\nid = \"6\"\n[[member]]\nid = \"10\"\n[[member]]\nid = \"9\"\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"10\", \"6\", \"9\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"round_robin\"\n";
    let e = compile_texts(&[("a.toml", text)], &fields()).expect("rules");
    let mut l = Ledger::for_engine(&e, None);
    let v = vec![None; FIELDS.len()];
    let opp = plain(&v, monday_morning());
    let mut rng = SmallRng::seed_from_u64(0);
    let order: Vec<String> =
        (0..4).map(|_| e.route(&opp, &mut l, monday_morning(), &mut rng).owner.expect("owner")).collect();
    assert_eq!(order, ["6", "9", "10", "6"], "numeric ids take turns in numeric order");
}

#[test]
fn an_explanation_says_which_part_of_a_condition_failed_with_the_crms_own_values() {
    let text = r#"
[settings]
fallback_owner = "100"
[[member]]
id = "1"
[[team]]
id = "t"
pipelines = ["p"]
members = ["1"]
[[pipeline]]
id = "p"
[[pipeline.rule]]
id = "big-instagram"
when = { all = [{ field = "source", equals = "instagram" }, { field = "amount", at_least = 50000000 }] }
member = "fewest_open"
[[pipeline.rule]]
id = "vip-or-hanoi"
when = { any = [{ field = "segment", in = ["vip", "gold"] }, { field = "province", equals = "HN" }] }
member = "fewest_open"
"#;
    let e = compile_texts(&[("t.toml", text)], &fields()).expect("rules");
    let v = values(
        FIELDS,
        &[("source", "Instagram"), ("amount", "12,500,000"), ("segment", "Mass"), ("province", "Đà Nẵng")],
    );
    let mut l = Ledger::for_engine(&e, None);
    let d = e.route(&plain(&v, monday_morning()), &mut l, monday_morning(), &mut SmallRng::seed_from_u64(0));
    let whys: Vec<String> = d.explanation.rules.iter().map(|r| r.why.as_deref().unwrap_or("").to_string()).collect();
    assert_eq!(
        whys,
        [
            "amount ≥ 50000000: it is `12,500,000`",
            "none of these holds: segment in [gold, vip]: it is `Mass`; province = `hn`: it is `Đà Nẵng`",
        ]
    );
}

/// The reclaim ladder, step by step, decided by the engine alone (no database): each case is an
/// assignment's place on the ladder and what the rule says next.
#[test]
fn the_reclaim_ladder_reassigns_then_escalates_then_releases_or_leaves() {
    use oppty_router::engine::{Stage, Stale, Step};
    let rules = |extra: &str, members: &str| {
        format!(
            r#"
[[member]]
id = "a"
[[member]]
id = "b"
[[member]]
id = "lead"
[[team]]
id = "t"
members = [{members}]
lead = "lead"
pipelines = ["p"]
[[pipeline]]
id = "p"
fallback_owner = "fb"
[[pipeline.rule]]
id = "r"
member = "fewest_open"
[pipeline.reclaim]
after = "1h"
max_reclaims = 2
{extra}
"#
        )
    };
    struct Case {
        story: &'static str,
        extra: &'static str,
        members: &'static str,
        reclaims: i32,
        stage: Stage,
        want: Step,
        note: &'static str,
    }
    let mv = |to: &str, track: Option<Stage>, by_engine: bool| Step::Move {
        to: to.into(),
        team_crm: None,
        track: track.map(|s| (Some("t".to_string()), s)),
        by_engine,
    };
    let cases = [
        Case {
            story: "a first lapse goes to the other member of the team",
            extra: "",
            members: r#""a", "b""#,
            reclaims: 0,
            stage: Stage::Owner,
            want: mv("b", Some(Stage::Owner), true),
            note: "to b (reassignment 1 of 2)",
        },
        Case {
            story: "reassignments used up: escalated to the team lead",
            extra: r#"escalate = { to = "team_lead", after = "2h" }"#,
            members: r#""a", "b""#,
            reclaims: 2,
            stage: Stage::Owner,
            want: mv("lead", Some(Stage::Escalated), false),
            note: "escalated to the team lead lead after 2 reassignment(s)",
        },
        Case {
            story: "the lead did not act either: released to the pool owner",
            extra: "escalate = { to = \"team_lead\" }\nthen = { owner = \"pool\" }",
            members: r#""a", "b""#,
            reclaims: 2,
            stage: Stage::Escalated,
            want: Step::Move { to: "pool".into(), team_crm: None, track: None, by_engine: false },
            note: "the team lead did not act either: released to pool",
        },
        Case {
            story: "reassignments used up, no escalation, then = leave: left, no longer tracked",
            extra: "",
            members: r#""a", "b""#,
            reclaims: 2,
            stage: Stage::Owner,
            want: Step::Leave,
            note: "the maximum of 2 reassignment(s) is reached: left with a",
        },
        Case {
            story: "nobody else in the team: left with its owner, the clock restarts",
            extra: "",
            members: r#""a""#,
            reclaims: 0,
            stage: Stage::Owner,
            want: Step::Restart,
            note: "nobody else in scope is eligible: left with a; the clock restarts",
        },
        Case {
            story: "nobody else, when_nobody names an owner: to that owner",
            extra: r#"when_nobody = { owner = "pool" }"#,
            members: r#""a""#,
            reclaims: 0,
            stage: Stage::Owner,
            want: Step::Move { to: "pool".into(), team_crm: None, track: None, by_engine: false },
            note: "nobody else in scope is eligible: to pool",
        },
    ];
    let now = monday_morning();
    for c in cases {
        let e = compile_texts(&[("r.toml", &rules(c.extra, c.members))], &[]).expect(c.story);
        let p = e.pipelines["p"].reclaim.clone().expect("reclaim");
        let mut ledger = Ledger::for_engine(&e, None);
        let stale = Stale {
            id: "o1".into(),
            owner: "a".into(),
            team: Some("t".into()),
            reclaims: c.reclaims,
            stage: c.stage,
            idle: 3600,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let v = e.reclaim("p", &stale, &p, &[], Vec::new(), &mut ledger, now, &mut rng);
        assert_eq!(v.step, c.want, "{}", c.story);
        let note = v.decision.explanation.note.clone().unwrap_or_default();
        assert!(note.contains(c.note), "{}: the note says {note:?}", c.story);
        let took = ledger.open.iter().sum::<i64>();
        assert_eq!(took, i64::from(matches!(&c.want, Step::Move { by_engine: true, .. })), "{}: ledger", c.story);
    }
}

/// Which captured changes count as an interaction is the policy's: the owner's activity always,
/// anyone's with `anyone`, the owner's edits with `owner_edits`.
#[test]
fn what_counts_as_an_interaction_is_the_reclaim_rules_choice() {
    use oppty_router::engine::Interaction::{Activity, Edit};
    let text = |interactions: &str| {
        format!(
            "[[member]]\nid = \"a\"\n[[team]]\nid = \"t\"\nmembers = [\"a\"]\npipelines = [\"p\"]\n[[pipeline]]\nid = \"p\"\n\
             [[pipeline.rule]]\nid = \"r\"\nmember = \"random\"\n[pipeline.reclaim]\nafter = \"1h\"\ninteractions = {interactions}\n"
        )
    };
    for (interactions, kind, actor, counts) in [
        (r#""owner""#, Activity, Some("a"), true),
        (r#""owner""#, Activity, Some("x"), false),
        (r#""owner""#, Activity, None, false),
        (r#""owner""#, Edit, Some("a"), false),
        (r#"["owner", "anyone"]"#, Activity, Some("x"), true),
        (r#"["owner", "anyone"]"#, Edit, Some("x"), false),
        (r#"["owner", "owner_edits"]"#, Edit, Some("a"), true),
        (r#"["owner", "owner_edits"]"#, Edit, Some("x"), false),
    ] {
        let e = compile_texts(&[("r.toml", &text(interactions))], &[]).expect("rules");
        let p = e.pipelines["p"].reclaim.clone().expect("reclaim");
        assert_eq!(p.counts(kind, actor, "a"), counts, "{interactions} {kind:?} by {actor:?}");
    }
}

/// `explain` reads stored explanations through the engine's own type: every explanation the
/// engine writes reads back as itself (a renamed or retyped field fails here, not in `explain`).
#[test]
fn every_explanation_reads_back_through_the_same_type() {
    use oppty_router::engine::Explanation;
    let e = example();
    let mut ledger = Ledger::for_engine(&e, None);
    let now = monday_morning();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("retail", &[("province", "HN"), ("score", "80"), ("product", "HOME")]),
        ("retail", &[("province", "nowhere")]),
        ("corporate", &[("amount", "90000000000"), ("segment", "sme")]),
        ("no-such-pipeline", &[]),
    ];
    let mut with_exclusions = 0;
    for (pipeline, given) in cases {
        for _ in 0..30 {
            let d = route(&e, &mut ledger, pipeline, given, now);
            let stored = serde_json::to_value(&d.explanation).expect("serialize");
            let read: Explanation = serde_json::from_value(stored.clone()).expect("reads back");
            assert_eq!(serde_json::to_value(&read).expect("serialize"), stored, "{pipeline} {given:?}");
            with_exclusions += usize::from(d.explanation.rules.iter().any(|r| !r.excluded.is_empty()));
        }
    }
    assert!(with_exclusions > 0, "some explanation lists excluded members");
}

#[test]
fn explanations_show_territories_and_teams_as_the_rules_write_them() {
    let text = r#"
[[territory]]
id = "DE"
name = "Deutschland"
[[territory]]
id = "BY"
name = "Bayern"
parent = "DE"
[[member]]
id = "m1"
[[team]]
id = "Germany"
pipelines = ["p"]
territories = ["DE"]
members = ["m1"]
[[pipeline]]
id = "p"
[[pipeline.rule]]
id = "current-team"
team = { from_field = "segment" }
member = "fewest_open"
[[pipeline.rule]]
id = "by-land"
team = { territory = "province" }
member = "fewest_open"
"#;
    let e = compile_texts(&[("r.toml", text)], &fields()).expect("rules");
    let now = monday_morning();
    let mut ledger = Ledger::for_engine(&e, None);
    let mut rng = SmallRng::seed_from_u64(1);
    let explained = |given: &[(&str, &str)], ledger: &mut Ledger, rng: &mut SmallRng| {
        let v = values(FIELDS, given);
        let opp =
            Opportunity { id: "o", pipeline: Some("p"), fields: &v, waiting_since: now, exclude: &[], only_team: None };
        serde_json::to_string(&e.route(&opp, ledger, now, rng).explanation).expect("json")
    };
    let by_land = explained(&[("province", "by")], &mut ledger, &mut rng);
    assert!(by_land.contains("its territory `DE` contains"), "as the rules write it: {by_land}");
    let named = explained(&[("segment", "germany")], &mut ledger, &mut rng);
    assert!(named.contains("segment = `germany` names team `Germany`"), "the team it names, no guess: {named}");
    assert!(!named.contains("served this customer last"), "{named}");
}

/// A replay takes the round-robin turn the decision saw: a team's one turn shared by every rule
/// that feeds it (`team:<id>`) is part of what each decision saw, and a turn not taken yet is
/// replayed as not taken, whatever the replaying ledger held before (the demo's `simulate
/// --in-force` found one pick differ under load before it was).
#[test]
fn a_replay_of_a_round_robin_pick_takes_the_teams_turn_the_decision_saw() {
    use oppty_router::engine::seen::{reached, LedgerView};
    let text = "[[member]]\nid = \"a\"\n[[member]]\nid = \"b\"\n[[member]]\nid = \"c\"\n[[team]]\nid = \"t\"\n\
                members = [\"a\", \"b\", \"c\"]\npipelines = [\"p\"]\n[[pipeline]]\nid = \"p\"\n\
                [[pipeline.rule]]\nid = \"r\"\nteam = { id = \"t\" }\nmember = \"round_robin\"\n";
    let e = compile_texts(&[("r.toml", text)], &[]).expect("rules");
    let now = Utc::now();
    let opp = |id: &'static str| Opportunity {
        id,
        pipeline: Some("p"),
        fields: &[],
        waiting_since: now,
        exclude: &[],
        only_team: None,
    };
    let mut live = Ledger::for_engine(&e, None);
    let mut seen = Vec::new();
    for id in ["o1", "o2", "o3", "o4"] {
        let d = e.route(&opp(id), &mut live, now, &mut SmallRng::seed_from_u64(7));
        let view = LedgerView::of(&e, &live, &reached(&e, &d.explanation), &d.pipeline, now, &d.undo);
        seen.push((id, d.owner.clone(), view));
    }
    let owners: Vec<_> = seen.iter().map(|(_, o, _)| o.clone().unwrap_or_default()).collect();
    assert_eq!(owners, ["a", "b", "c", "a"], "the team's turn goes round");
    for (id, owner, view) in &seen {
        // Replayed alone, on a fresh ledger and on one whose turn has moved on since.
        for mut ledger in [Ledger::for_engine(&e, None), live.clone()] {
            view.apply(&e, &mut ledger);
            let d = e.route(&opp(id), &mut ledger, now, &mut SmallRng::seed_from_u64(7));
            assert_eq!(&d.owner, owner, "{id} replayed from what it saw: {view:?}");
        }
    }
}
