//! The mistakes an admin makes in a rule file, and the exact messages they get: file, line,
//! column, the key, and what to do.

use oppty_router::rules::compile_texts;

const FIELDS: &[&str] = &["province", "score", "source"];

const GOOD: &str = r#"[settings]
fallback_owner = "100"
hold_max = "4h"

[[territory]]
id = "VN"

[[schedule]]
id = "office"
timezone = "Asia/Ho_Chi_Minh"
week = { "mon-fri" = "08:00-17:00" }

[[member]]
id = "101"
max_open = 10

[[team]]
id = "hanoi"
pipelines = ["retail"]
territories = ["VN"]
members = ["101"]

[[pipeline]]
id = "retail"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "fewest_open"
"#;

fn errors(files: &[(&str, &str)]) -> String {
    let fields: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    match compile_texts(files, &fields) {
        Ok(_) => String::from("(accepted)"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_file_is_accepted() {
    assert_eq!(errors(&[("rules.toml", GOOD)]), "(accepted)");
}

#[test]
fn every_kind_of_mistake_gets_a_precise_message() {
    // (mistake, change GOOD from → to, the exact message expected)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("a typo in a key", "max_open = 10", "max_opn = 10",
         "rules.toml:15:1: member[0].max_opn: unknown field `max_opn`, expected one of `id`, `name`, `paused`, `max_open`, `caps`, `weight`, `kpi`, `attributes`, `products`, `categories`, `territories`, `tags`, `schedule`, `out_of_office`, `accepts`"),
        ("a wrong type", "max_open = 10", "max_open = \"ten\"",
         "rules.toml:15:12: member[0].max_open: expected a non-negative integer, found the string \"ten\""),
        ("an unknown team", "team = { territory = \"province\" }", "team = { id = \"hanoi-retail\" }",
         "rules.toml:27:15: pipeline `retail`.rule `by-province`.team.id: unknown team `hanoi-retail`"),
        ("an unknown field", "territory = \"province\"", "territory = \"provnce\"",
         "rules.toml:27:22: pipeline `retail`.rule `by-province`.team.territory: unknown field `provnce`; fields mapped in the daemon config: province, score, source"),
        ("a duplicate id", "[[team]]", "[[member]]\nid = \"101\"\n\n[[team]]",
         "rules.toml:18:6: member.id: member `101` is defined twice (first at rules.toml:14:6); keep one"),
        ("a bad duration", "hold_max = \"4h\"", "hold_max = \"4 hourz\"",
         "rules.toml:3:12: settings.hold_max: `4 hourz` is not a duration (unknown time unit \"hourz\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write e.g. \"30m\", \"48h\", \"3d 4h\""),
        ("a bad time zone", "Asia/Ho_Chi_Minh", "Asia/Hanoi",
         "rules.toml:10:12: schedule `office`.timezone: `Asia/Hanoi` is not a time zone; use an IANA name such as \"Asia/Ho_Chi_Minh\""),
        ("an empty member list", "members = [\"101\"]", "members = []",
         "rules.toml:18:6: team `hanoi`.members: the team has no members; list CRM user ids defined as [[member]]"),
        ("a territory cycle", "[[territory]]\nid = \"VN\"", "[[territory]]\nid = \"VN\"\nparent = \"HN\"\n[[territory]]\nid = \"HN\"\nparent = \"VN\"",
         "rules.toml:6:6: territory.parent: territories `VN` → `HN` → `VN` form a cycle; give one of them another parent (or none)"),
        ("invalid TOML", "max_open = 10", "max_open = 10 10",
         "rules.toml:15:12: string values must be quoted, expected literal string"),
        ("a pick that does not exist", "member = \"fewest_open\"", "member = \"least_loaded\"",
         "rules.toml:28:10: pipeline `retail`.rule `by-province`.member: `least_loaded` is not a way to pick a member; use random, fewest_open, round_robin, weighted_round_robin, best_kpi, or { pick = \"owner\", fields = [...] }"),
        ("a count on an open cap", "max_open = 10", "caps = [{ max = 10, per = \"open\", count = \"crm\" }]",
         "rules.toml:15:43: member `101`.caps.count: an open cap always counts the CRM's open opportunities; `count` is for windowed caps"),
        ("a count that does not exist", "max_open = 10", "caps = [{ max = 10, per = \"30d\", count = \"manual\" }]",
         "rules.toml:15:42: member `101`.caps.count: `manual` is not a count; use \"router\" (the default) or \"crm\""),
        ("an unknown pipeline", "[[pipeline]]", "[[team]]\nid = \"other\"\npipelines = [\"corporate\"]\nmembers = [\"101\"]\n\n[[pipeline]]",
         "rules.toml:25:14: team `other`.pipelines: unknown pipeline `corporate`"),
    ];
    for (mistake, from, to, expected) in cases {
        assert!(GOOD.contains(from), "{mistake}: GOOD contains {from}");
        let bad = GOOD.replacen(from, to, 1);
        let got = errors(&[("rules.toml", &bad)]);
        assert_eq!(&got, expected, "{mistake}");
    }
}

#[test]
fn every_mistake_of_a_file_is_reported_at_once_with_its_key_path() {
    let toml = GOOD
        .replacen("max_open = 10", "max_open = \"ten\"\nweight = -1", 1)
        .replacen("pipelines = [\"retail\"]", "pipelines = \"retail\"", 1)
        .replacen("member = \"fewest_open\"", "member = \"fewest_open\"\nwhen_full = 3", 1);
    assert_eq!(
        errors(&[("rules.toml", &toml)]),
        "rules.toml:15:12: member[0].max_open: expected a non-negative integer, found the string \"ten\"\n\
         rules.toml:16:10: member[0].weight: expected a non-negative integer, found -1\n\
         rules.toml:20:13: team[0].pipelines: expected a list, found the string \"retail\"\n\
         rules.toml:30:13: pipeline[0].rule[0].when_full: expected a string, found 3"
    );
    let json = r#"{
  "member": [{"id": "1", "max_open": "ten"}, {"id": "2", "kpi": "high"}],
  "pipeline": [{"id": "p", "rule": [{"id": "r"}]}],
  "membres": []
}"#;
    assert_eq!(
        errors(&[("a.json", json)]),
        "a.json:2:42: member[0].max_open: expected a non-negative integer, found the string \"ten\"\n\
         a.json:2:70: member[1].kpi: expected a number, found the string \"high\"\n\
         a.json:3:47: pipeline[0].rule[0]: missing field `member`\n\
         a.json:4:14: unknown field `membres`, expected one of `$schema`, `settings`, `territory`, `schedule`, `member`, `team`, `tag`, `pipeline`, `test`"
    );
}

#[test]
fn one_root_cause_gives_one_error() {
    // A bad time zone: the schedule is still known to the members who use it.
    let tz = GOOD.replacen("Asia/Ho_Chi_Minh", "Asia/Hanoi", 1).replacen(
        "max_open = 10",
        "max_open = 10\nschedule = \"office\"",
        1,
    );
    assert_eq!(
        errors(&[("rules.toml", &tz)]),
        "rules.toml:10:12: schedule `office`.timezone: `Asia/Hanoi` is not a time zone; use an IANA name such as \"Asia/Ho_Chi_Minh\""
    );
    // A cycle of three territories is one error naming the loop.
    let cycle = GOOD.replacen(
        "[[territory]]\nid = \"VN\"",
        "[[territory]]\nid = \"VN\"\nparent = \"HCM\"\n[[territory]]\nid = \"HN\"\nparent = \"VN\"\n[[territory]]\nid = \"HCM\"\nparent = \"HN\"",
        1,
    );
    assert_eq!(
        errors(&[("rules.toml", &cycle)]),
        "rules.toml:6:6: territory.parent: territories `VN` → `HCM` → `HN` → `VN` form a cycle; give one of them another parent (or none)"
    );
}

#[test]
fn invalid_json_and_a_duplicate_across_files_name_both_places() {
    assert_eq!(errors(&[("a.json", "{\"member\": [{\"id\": \"1\",}]}")]), "a.json:1:24: trailing comma");
    let other = "[[member]]\nid = \"101\"\n";
    let got = errors(&[("a.toml", GOOD), ("b.toml", other)]);
    assert_eq!(got, "b.toml:2:6: member.id: member `101` is defined twice (first at a.toml:14:6); keep one");
}

#[test]
fn a_failing_rule_file_test_refuses_the_set_with_one_readable_line_per_difference() {
    let with_test = format!("{GOOD}\n[[test]]\nname = \"goes to 102\"\npipeline = \"retail\"\nfields = {{ province = \"VN\" }}\nexpect = {{ member = \"102\" }}\n");
    assert_eq!(
        errors(&[("rules.toml", &with_test)]),
        "rules.toml:31:8: test `goes to 102`: member: expected 102, got 101 (rule `by-province` matched; picked 101: fewest open opportunities (0) among 1 eligible)"
    );
    // The admin pauses the member a test expects: each difference on its own line, no JSON.
    let paused = format!("{}\n[[test]]\nname = \"Hanoi goes to 101\"\npipeline = \"retail\"\nfields = {{ province = \"VN\" }}\nexpect = {{ member = \"101\", team = \"hanoi\", rule = \"by-province\" }}\n", GOOD.replacen("max_open = 10", "max_open = 10\npaused = true", 1));
    let got = errors(&[("rules.toml", &paused)]);
    let why = "(rule `by-province` nobody eligible, 101 paused (rule files); no rule yielded anybody: the global fallback owner)";
    assert_eq!(
        got,
        format!(
            "rules.toml:32:8: test `Hanoi goes to 101`: member: expected 101, got 100 {why}\n\
             rules.toml:32:8: test `Hanoi goes to 101`: team: expected hanoi, got nobody {why}\n\
             rules.toml:32:8: test `Hanoi goes to 101`: rule: expected by-province, got nobody {why}"
        )
    );
    assert!(!got.contains('{'), "no JSON: {got}");
}

#[test]
fn reclaim_mistakes_name_the_key_and_the_fix() {
    // (mistake, the [pipeline.reclaim] text, the exact message expected)
    let cases: &[(&str, &str, &str)] = &[
        ("escalating to a lead the team does not have", "after = \"48h\"\nescalate = { to = \"team_lead\" }",
         "rules.toml:18:6: team `hanoi`.lead: pipeline `retail` escalates reclaims to the team lead, and this team has none; add lead = \"<CRM user id>\""),
        ("an interaction that does not exist", "after = \"48h\"\ninteractions = \"calls\"",
         "rules.toml:27:16: pipeline `retail`.reclaim.interactions: `calls` is not a choice; use \"owner\", \"anyone\" or \"owner_edits\""),
        ("both exclusions", "after = \"48h\"\nexclude = \"all_previous\"\nexclude_last = 2",
         "rules.toml:28:1: pipeline `retail`.reclaim.exclude_last: give either `exclude` or `exclude_last`, not both"),
        ("a pause that never triggers", "after = \"48h\"\npause_after = { lapses = 0, within = \"7d\" }",
         "rules.toml:27:17: pipeline `retail`.reclaim.pause_after.lapses: is 0; use 1 or more (or remove pause_after)"),
        ("a bad escalation window", "after = \"48h\"\nescalate = { to = \"110\", after = \"soon\" }",
         "rules.toml:27:34: pipeline `retail`.reclaim.escalate.after: `soon` is not a duration (expected number at 0); write e.g. \"30m\", \"48h\", \"3d 4h\""),
    ];
    for (mistake, reclaim, expected) in cases {
        let bad = GOOD.replacen("[[pipeline.rule]]", &format!("[pipeline.reclaim]\n{reclaim}\n[[pipeline.rule]]"), 1);
        assert_eq!(&errors(&[("rules.toml", &bad)]), expected, "{mistake}");
    }
    // Owner edits count only where the daemon config captures them.
    let edits = GOOD.replacen(
        "[[pipeline.rule]]",
        "[pipeline.reclaim]\nafter = \"48h\"\ninteractions = [\"owner\", \"owner_edits\"]\n[[pipeline.rule]]",
        1,
    );
    let fields: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    let unmapped = oppty_router::rules::Directory { owner_edits_unmapped: true, ..Default::default() };
    let got = oppty_router::rules::compile_texts_with(&[("rules.toml", &edits)], &fields, &unmapped)
        .map(|_| "(accepted)".to_string())
        .unwrap_or_else(|e| e.to_string());
    assert_eq!(
        got,
        "rules.toml:27:26: pipeline `retail`.reclaim.interactions: owner edits are not captured: map `opportunity.edited_by` (who last changed the row) in the daemon config, or remove \"owner_edits\""
    );
    assert_eq!(errors(&[("rules.toml", &edits)]), "(accepted)", "mapped (or no config to say otherwise)");
    // A team's override is checked like the pipeline's, under the team's key.
    let bad = GOOD.replacen("[[pipeline.rule]]", "[pipeline.reclaim]\nafter = \"48h\"\n[[pipeline.rule]]", 1).replacen(
        "members = [\"101\"]",
        "members = [\"101\"]\nreclaim = { warn_at = 1.5 }",
        1,
    );
    assert_eq!(
        errors(&[("rules.toml", &bad)]),
        "rules.toml:22:13: team `hanoi`.reclaim.warn_at: is 1.5; use a fraction between 0 and 1, e.g. 0.75"
    );
}

/// Positions come from the parser, not from searching the text: the same words in a comment, under
/// another key, or in a team stage are never taken for the mistake.
#[test]
fn a_mistake_is_shown_where_it_is_written_not_where_the_same_words_first_appear() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "a misspelt word also written in a comment above it",
            "[[pipeline]]",
            "# when_full = \"hodl\" was tried once\n[[pipeline]]",
            "when_full = \"hodl\"",
        ),
        (
            "a misspelt word that is also a member's name",
            "max_open = 10",
            "max_open = 10\nname = \"hodl\"",
            "when_full = \"hodl\"",
        ),
    ];
    for (what, find, replace, rule_line) in cases {
        let text = GOOD
            .replace(find, replace)
            .replace("member = \"fewest_open\"", &format!("member = \"fewest_open\"\n{rule_line}"));
        let line = text.lines().position(|l| l == *rule_line).expect("the line") + 1;
        assert_eq!(
            errors(&[("rules.toml", &text)]),
            format!(
                "rules.toml:{line}:13: pipeline `retail`.rule `by-province`.when_full: `hodl` is not a policy; \
                 use \"next_rule\", \"fallback\", \"ignore_caps\" or \"hold\""
            ),
            "{what}"
        );
    }
    // A team stage naming the team before its definitions: the duplicate is shown at the two
    // `[[team]]` definitions, in TOML and in JSON alike.
    let twice = GOOD.replace(
        "[[pipeline]]",
        "[[team]]\nid = \"hanoi\"\npipelines = [\"retail\"]\nmembers = [\"101\"]\n\n[[pipeline]]",
    );
    let staged = twice.replace("team = { territory = \"province\" }", "team = { id = \"hanoi\" }");
    let staged = format!(
        "{}\n{}",
        &staged[staged.find("[[pipeline]]").expect("pipeline")..],
        &staged[..staged.find("[[pipeline]]").expect("pipeline")]
    );
    let line_of = |text: &str, n: usize| {
        let mut defs = text
            .lines()
            .enumerate()
            .filter(|(i, l)| *l == "id = \"hanoi\"" && text.lines().nth(i - 1) == Some("[[team]]"));
        defs.nth(n).map(|(i, _)| i + 1).expect("a definition")
    };
    assert_eq!(
        errors(&[("rules.toml", &staged)]),
        format!(
            "rules.toml:{}:6: team.id: team `hanoi` is defined twice (first at rules.toml:{}:6); keep one",
            line_of(&staged, 1),
            line_of(&staged, 0)
        )
    );
    let json = r#"{
  "member": [{ "id": "101" }],
  "pipeline": [{ "id": "retail", "rule": [{ "id": "r", "team": { "id": "hanoi" }, "member": "random" }] }],
  "team": [
    { "id": "hanoi", "members": ["101"], "pipelines": ["retail"] },
    { "id": "hanoi", "members": ["101"], "pipelines": ["retail"] }
  ]
}
"#;
    assert_eq!(
        errors(&[("rules.json", json)]),
        "rules.json:6:13: team.id: team `hanoi` is defined twice (first at rules.json:5:13); keep one"
    );
}
