//! Team and member domains (`accepts`): each team and each member receives only the
//! opportunities that fit them; the product documents' two examples, sticky picks, territory
//! fall-through, and a property over generated organisations.

use chrono::{DateTime, Utc};
use oppty_router::engine::{Cond, Engine, Facts, Ledger, Opportunity, Outcome};
use oppty_router::rules::compile_texts;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const FIELDS: &[&str] = &["country", "score", "last_owner"];

fn fields() -> Vec<String> {
    FIELDS.iter().map(|s| s.to_string()).collect()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-07T03:00:00Z").expect("time").with_timezone(&Utc)
}

fn values(given: &[(&str, &str)]) -> Vec<Option<String>> {
    FIELDS.iter().map(|f| given.iter().find(|(k, _)| k == f).map(|(_, v)| v.to_string())).collect()
}

fn route(e: &Engine, l: &mut Ledger, given: &[(&str, &str)]) -> oppty_router::engine::Decision {
    let v = values(given);
    let opp =
        Opportunity { id: "o", pipeline: Some("p"), fields: &v, waiting_since: now(), exclude: &[], only_team: None };
    e.route(&opp, l, now(), &mut SmallRng::seed_from_u64(1))
}

/// The product documents' examples: the direct sales team takes leads from the United States and
/// Canada only, and Toni in it only those from Canada; a junior team takes scores below 100, the
/// senior team the rest. A sticky first rule keeps the last owner, within their remit or not.
const DOCUMENTS: &str = r#"
[settings]
fallback_owner = "admin"

[[member]]
id = "toni"
accepts = { field = "country", in = ["CA"] }

[[member]]
id = "sam"

[[member]]
id = "jo"

[[member]]
id = "lee"

[[team]]
id = "direct"
pipelines = ["p"]
accepts = { field = "country", in = ["US", "CA"] }
members = ["toni", "sam"]

[[team]]
id = "junior"
pipelines = ["p"]
accepts = { field = "score", below = 100 }
members = ["jo", { id = "lee", accepts = { field = "country", equals = "DE" } }]

[[team]]
id = "senior"
pipelines = ["p"]
accepts = { field = "score", at_least = 100 }
members = ["lee"]

[[pipeline]]
id = "p"

[[pipeline.rule]]
id = "sticky"
member = { pick = "owner", fields = ["last_owner"] }

[[pipeline.rule]]
id = "anyone"
member = "fewest_open"
"#;

#[test]
fn each_team_and_member_receives_only_what_their_domain_accepts() {
    let e = compile_texts(&[("d.toml", DOCUMENTS)], &fields()).expect("rules");
    // (fields, the members who may receive it)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[("country", "CA"), ("score", "100")], &["toni", "sam", "lee"]),
        (&[("country", "US"), ("score", "150")], &["sam", "lee"]),
        (&[("country", "DE"), ("score", "50")], &["jo", "lee"]),
        (&[("country", "VN"), ("score", "50")], &["jo"]),
        (&[("country", "VN"), ("score", "150")], &["lee"]),
    ];
    for (given, allowed) in cases {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let mut l = Ledger::for_engine(&e, None);
            // Spread the loads so fewest-open visits everyone allowed.
            for (i, m) in e.members.iter().enumerate() {
                l.open[i] = (seen.len() as i64 + i as i64 * 7) % 5;
                let _ = m;
            }
            let d = route(&e, &mut l, given);
            assert_eq!(d.outcome, Outcome::Rule, "{given:?}: {}", d.explanation.brief());
            let owner = d.owner.clone().expect("owner");
            assert!(allowed.contains(&owner.as_str()), "{given:?} went to {owner}: {}", d.explanation.brief());
            seen.insert(owner);
        }
    }
    let d = route(&e, &mut Ledger::for_engine(&e, None), &[("country", "VN"), ("score", "not a number")]);
    assert_eq!(d.owner.as_deref(), Some("admin"), "no team takes it: {}", d.explanation.brief());
    assert!(d.explanation.brief().contains("does not accept it"), "{}", d.explanation.brief());
}

#[test]
fn the_explanation_says_who_was_outside_their_remit_and_why() {
    let e = compile_texts(&[("d.toml", DOCUMENTS)], &fields()).expect("rules");
    let d = route(&e, &mut Ledger::for_engine(&e, None), &[("country", "US"), ("score", "120")]);
    let brief = d.explanation.brief();
    assert!(brief.contains("toni outside their remit: country in [ca]: it is `US`"), "{brief}");
    let team = d.explanation.rules.iter().find_map(|r| r.team.as_ref()).expect("a team stage");
    assert!(team.why.contains("left out: team `junior` does not accept it: score"), "{}", team.why);
    let d = route(&e, &mut Ledger::for_engine(&e, None), &[("country", "US"), ("score", "50")]);
    assert!(d.explanation.brief().contains("lee outside their remit: country"), "{}", d.explanation.brief());
}

#[test]
fn a_sticky_pick_respects_the_remit_unless_the_rule_ignores_it_and_says_which() {
    let e = compile_texts(&[("d.toml", DOCUMENTS)], &fields()).expect("rules");
    let us_lead_of_toni = [("country", "US"), ("score", "150"), ("last_owner", "toni")];
    let d = route(&e, &mut Ledger::for_engine(&e, None), &us_lead_of_toni);
    assert_ne!(d.owner.as_deref(), Some("toni"), "{}", d.explanation.brief());
    assert!(d.explanation.brief().contains("last_owner `toni` is outside their remit (the rule respects remits)"));

    let ignoring =
        DOCUMENTS.replace(r#"fields = ["last_owner"] }"#, r#"fields = ["last_owner"], ignore_remit = true }"#);
    let e = compile_texts(&[("d.toml", &ignoring)], &fields()).expect("rules");
    let d = route(&e, &mut Ledger::for_engine(&e, None), &us_lead_of_toni);
    assert_eq!(d.owner.as_deref(), Some("toni"), "{}", d.explanation.brief());
    assert!(d.explanation.brief().contains("outside their remit, kept: the rule ignores remits"));
    let wrong = DOCUMENTS.replace(r#"member = "fewest_open""#, r#"member = { pick = "random", ignore_remit = true }"#);
    assert!(compile_texts(&[("d.toml", &wrong)], &fields()).is_err(), "ignore_remit is for pick = owner");
}

#[test]
fn a_territory_stage_moves_on_to_the_wider_team_when_the_nearest_does_not_accept() {
    let text = r#"
[[territory]]
id = "VN"
[[territory]]
id = "HN"
parent = "VN"
[[member]]
id = "a"
[[member]]
id = "b"
[[team]]
id = "hanoi"
pipelines = ["p"]
territories = ["HN"]
accepts = { field = "score", below = 100 }
members = ["a"]
[[team]]
id = "national"
pipelines = ["p"]
territories = ["VN"]
members = ["b"]
[[pipeline]]
id = "p"
fallback_owner = "a"
[[pipeline.rule]]
id = "by-country"
team = { territory = "country" }
member = "fewest_open"
"#;
    let e = compile_texts(&[("t.toml", text)], &fields()).expect("rules");
    let d = route(&e, &mut Ledger::for_engine(&e, None), &[("country", "HN"), ("score", "50")]);
    assert_eq!((d.owner.as_deref(), d.team.as_deref()), (Some("a"), Some("hanoi")));
    let d = route(&e, &mut Ledger::for_engine(&e, None), &[("country", "HN"), ("score", "500")]);
    assert_eq!((d.owner.as_deref(), d.team.as_deref()), (Some("b"), Some("national")), "{}", d.explanation.brief());
}

#[test]
fn a_remit_that_shares_no_value_with_the_teams_domain_is_a_warning_and_the_set_still_routes() {
    let e = compile_texts(&[("d.toml", DOCUMENTS)], &fields()).expect("rules");
    assert_eq!(e.warnings, Vec::<String>::new(), "Toni's Canada is within the direct team's US and Canada");
    let text = DOCUMENTS.replace(
        r#"accepts = { field = "country", in = ["CA"] }"#,
        r#"accepts = { field = "country", equals = "DE" }"#,
    );
    let e = compile_texts(&[("d.toml", &text)], &fields()).expect("a warning, not an error");
    assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    assert!(e.warnings[0].starts_with("team `direct`: member `toni`: their remit"), "{}", e.warnings[0]);
    assert!(e.warnings[0].contains("share no value"), "{}", e.warnings[0]);
}

#[test]
fn a_domain_on_an_unmapped_field_is_an_error_naming_it() {
    let text = DOCUMENTS
        .replace(r#"accepts = { field = "country", in = ["CA"] }"#, r#"accepts = { field = "region", in = ["CA"] }"#);
    let err = compile_texts(&[("d.toml", &text)], &fields()).expect_err("unmapped");
    assert!(err.to_string().contains("region") && err.to_string().contains("accepts"), "{err}");
}

/// Countries a domain or remit accepts (indexes into `COUNTRIES`); `None`: any.
type Countries = Option<Vec<usize>>;

/// A generated organisation: teams with a domain over country, members with a remit of their
/// own, some memberships with a remit inside the team.
#[derive(Debug, Clone)]
struct Org {
    /// Per team: its countries, its members (number, remit inside the team).
    teams: Vec<(Countries, Vec<(usize, Countries)>)>,
    /// Per member: their own remit over countries (None: any).
    members: Vec<Countries>,
    /// Countries of the opportunities, in order.
    opportunities: Vec<usize>,
}

const COUNTRIES: &[&str] = &["US", "CA", "DE", "VN"];

fn countries() -> impl Strategy<Value = Option<Vec<usize>>> {
    prop::option::weighted(
        0.6,
        prop::collection::btree_set(0..COUNTRIES.len(), 1..3).prop_map(|s| s.into_iter().collect()),
    )
}

fn gen_org() -> impl Strategy<Value = Org> {
    let member = (0usize..6, countries());
    let team = (countries(), prop::collection::vec(member, 1..4));
    (
        prop::collection::vec(team, 1..4),
        prop::collection::vec(countries(), 6),
        prop::collection::vec(0..COUNTRIES.len(), 1..80),
    )
        .prop_map(|(teams, members, opportunities)| Org { teams, members, opportunities })
}

fn cond(list: &Option<Vec<usize>>) -> Option<String> {
    let l = list.as_ref()?;
    let quoted: Vec<String> = l.iter().map(|c| format!("\"{}\"", COUNTRIES[*c])).collect();
    Some(format!("{{ field = \"country\", in = [{}] }}", quoted.join(", ")))
}

fn org_rules(org: &Org, sticky: bool) -> String {
    let mut text = String::from("[settings]\nfallback_owner = \"fb\"\n");
    for (i, remit) in org.members.iter().enumerate() {
        text.push_str(&format!("[[member]]\nid = \"m{i}\"\n"));
        if let Some(c) = cond(remit) {
            text.push_str(&format!("accepts = {c}\n"));
        }
    }
    for (i, (domain, members)) in org.teams.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        let ms: Vec<String> = members
            .iter()
            .filter(|(m, _)| seen.insert(*m))
            .map(|(m, remit)| match cond(remit) {
                Some(c) => format!("{{ id = \"m{m}\", accepts = {c} }}"),
                None => format!("\"m{m}\""),
            })
            .collect();
        text.push_str(&format!("[[team]]\nid = \"t{i}\"\npipelines = [\"p\"]\nmembers = [{}]\n", ms.join(", ")));
        if let Some(c) = cond(domain) {
            text.push_str(&format!("accepts = {c}\n"));
        }
    }
    text.push_str("[[pipeline]]\nid = \"p\"\n");
    if sticky {
        text.push_str("[[pipeline.rule]]\nid = \"sticky\"\nmember = { pick = \"owner\", fields = [\"last_owner\"] }\n");
    }
    text.push_str("[[pipeline.rule]]\nid = \"anyone\"\nmember = \"fewest_open\"\n");
    text
}

fn accepts(c: &Option<Cond>, facts: &Facts<'_>) -> bool {
    c.as_ref().is_none_or(|c| c.eval(facts))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever the teams, domains, remits and the order opportunities come in (sticky owners
    /// included), nobody receives an opportunity their effective domain rejects: the team's, the
    /// member's own, and the one they have in that team.
    #[test]
    fn no_member_ever_receives_an_opportunity_their_effective_domain_rejects(org in gen_org(), sticky in any::<bool>()) {
        let text = org_rules(&org, sticky);
        let e = compile_texts(&[("org.toml", &text)], &fields()).unwrap_or_else(|err| panic!("{err}\n{text}"));
        let mut l = Ledger::for_engine(&e, None);
        let mut rng = SmallRng::seed_from_u64(0);
        for (i, c) in org.opportunities.iter().enumerate() {
            let last = format!("m{}", i % 6);
            let v = values(&[("country", COUNTRIES[*c]), ("last_owner", &last)]);
            let opp = Opportunity { id: "o", pipeline: Some("p"), fields: &v, waiting_since: now(), exclude: &[], only_team: None };
            let d = e.route(&opp, &mut l, now(), &mut rng);
            if d.outcome != Outcome::Rule {
                continue;
            }
            let facts = Facts::new(&v);
            let (owner, team) = (d.owner.clone().expect("owner"), d.team.clone().expect("team"));
            let t = &e.teams[e.team_index[&team]];
            let m = e.member_index(&owner).expect("a member");
            prop_assert!(accepts(&t.accepts, &facts), "team {team} got {}: {}", COUNTRIES[*c], d.explanation.brief());
            prop_assert!(accepts(&e.members[m].accepts, &facts), "{owner} got {}: {}", COUNTRIES[*c], d.explanation.brief());
            let here = t.remits.iter().find(|(x, _)| *x == m).map(|(_, c)| c.clone());
            prop_assert!(accepts(&here, &facts), "{owner} in {team} got {}: {}", COUNTRIES[*c], d.explanation.brief());
        }
    }
}
