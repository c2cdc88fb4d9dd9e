//! What a rule set needs of the router's history: the depth of each member's latest assignments
//! (its largest windowed cap) and how far back, compiled from rule files.

use std::sync::Arc;

use engine::history::HistoryNeed;

const PEOPLE: &str = r#"
[[member]]
id = "1"
max_open = 40
[[member]]
id = "2"
caps = [{ max = 150, per = "24h" }, { max = 3000, per = "30d" }]
[[member]]
id = "3"
caps = [{ max = 50, per = "day", timezone = "Asia/Ho_Chi_Minh" }]
[[team]]
id = "t"
pipelines = ["retail"]
members = ["1", "2", "3"]
[[pipeline]]
id = "retail"
fallback_owner = "1"
[[pipeline.rule]]
id = "r"
team = { id = "t" }
member = "fewest_open"
"#;

fn need(text: &str) -> HistoryNeed {
    HistoryNeed::of(&oppty_router_rules::compile_texts(&[("p.toml", text)], &[]).expect("rules"))
}

#[test]
fn a_member_needs_as_many_of_its_latest_assignments_as_its_largest_windowed_cap_and_at_least_one() {
    let n = need(PEOPLE);
    let of = |m: &str| n.depth.get(&(Arc::from(m), None)).copied();
    assert_eq!((of("1"), of("2"), of("3")), (Some(1), Some(3000), Some(50)), "an open cap reads no history");
    assert_eq!(n.window, 30 * 86_400, "within the longest window");
    let (members, teams, depths) = n.columns();
    assert_eq!((members.len(), teams.len(), depths.len()), (3, 3, 3));
}

#[test]
fn a_larger_cap_a_longer_window_or_a_new_member_needs_a_fresh_read() {
    let read = need(PEOPLE);
    assert!(read.covers(&read));
    assert!(read.covers(&need(&PEOPLE.replace("max = 150", "max = 100"))), "a smaller cap");
    assert!(!read.covers(&need(&PEOPLE.replace("max = 3000", "max = 3001"))), "a larger cap");
    assert!(!read.covers(&need(&PEOPLE.replace("30d", "31d"))), "a longer window");
    let more = PEOPLE.replace("[[team]]", "[[member]]\nid = \"4\"\n[[team]]").replace("\"3\"]", "\"3\", \"4\"]");
    assert!(!read.covers(&need(&more)), "a new member");
}
