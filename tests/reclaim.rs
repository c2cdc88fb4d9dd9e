//! Reclaim: an opportunity its owner leaves untouched is taken back and given to someone else.
//! Windows are seconds here; nothing waits hours.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// One team `dn` (Da Nang) of these members in the `retail` pipeline, with this reclaim rule.
fn rules(reclaim: &str, members: &[&str]) -> String {
    let member_defs: String = members.iter().map(|m| format!("[[member]]\nid = \"{m}\"\n")).collect();
    let list = members.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[settings]\nfallback_owner = \"100\"\n[[territory]]\nid = \"DN\"\n{member_defs}\
         [[team]]\nid = \"dn\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nterritories = [\"DN\"]\nmembers = [{list}]\n\
         [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\n{reclaim}\n\
         [[pipeline.rule]]\nid = \"province\"\nteam = {{ territory = \"province\" }}\nmember = \"fewest_open\"\n"
    )
}

/// The database routes with this rule file only (no CRM directory) and sweeps every 200 ms.
async fn with_rules(mut db: TestDb, text: &str) -> (TestDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), text).expect("write rules");
    db.cfg.router.rules_dir = dir.path().to_path_buf();
    db.cfg.directory = None;
    db.cfg.router.reclaim_interval = Duration::from_millis(200);
    db.install().await;
    (db, dir)
}

async fn setup(label: &str, reclaim: &str, members: &[&str]) -> (TestDb, tempfile::TempDir) {
    setup_on(crm_db(label).await, reclaim, members).await
}

async fn setup_on(db: TestDb, reclaim: &str, members: &[&str]) -> (TestDb, tempfile::TempDir) {
    with_rules(db, &rules(reclaim, members)).await
}

async fn outcomes(db: &TestDb, opp: &str) -> Vec<(String, Option<String>, Option<String>)> {
    db.client
        .query(
            "SELECT outcome, owner_id, previous_owner FROM oppty_router.assignments WHERE opp_id = $1 ORDER BY id",
            &[&opp],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The explanation notes of an opportunity's decisions with this outcome, oldest first.
async fn notes(db: &TestDb, opp: &str, outcome: &str) -> Vec<String> {
    db.client
        .query(
            "SELECT explanation->>'note' FROM oppty_router.assignments_explained WHERE opp_id = $1 AND outcome = $2 ORDER BY id",
            &[&opp, &outcome],
        )
        .await
        .expect("notes")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn wait_outcome(db: &TestDb, opp: &str, outcome: &str, limit: Duration) {
    wait_outcomes(db, opp, outcome, 1, limit).await;
}

/// Wait until the audit holds `n` decisions of `outcome` for `opp`; a failure shows them all.
async fn wait_outcomes(db: &TestDb, opp: &str, outcome: &str, n: usize, limit: Duration) {
    let enough = || async move { outcomes(db, opp).await.iter().filter(|o| o.0 == outcome).count() >= n };
    assert!(
        holds_within(limit, enough).await,
        "no {n} `{outcome}` for {opp} after {limit:?}: {:?}",
        outcomes(db, opp).await
    );
}

/// Wait until `opp` is owned by `owner`; a failure shows its decisions.
async fn wait_owner(db: &TestDb, opp: &str, owner: i32, limit: Duration) {
    let owned = || async move { db.owner_of(opp).await == owner };
    assert!(holds_within(limit, owned).await, "{opp} not {owner}'s after {limit:?}: {:?}", outcomes(db, opp).await);
}

/// The barrier before a "was not reclaimed" check: an opportunity assigned now in Da Nang and
/// left untouched is reclaimed, so the sweep has run past the moment any assignment made before
/// it would have been due.
async fn a_sweep_past_now(db: &TestDb) {
    let control = db.insert_opportunity("control: nobody touches it", "DN", "retail").await;
    db.wait_owned(&control, Duration::from_secs(3)).await;
    wait_outcome(db, &control, "reclaim", Duration::from_secs(6)).await;
}

/// Wait until `opp`'s owner has been quiet for `window` by the database's clock (its last touch
/// that long ago): stale for a sweep that runs now.
async fn wait_quiet(db: &TestDb, opp: &str, window: &str) {
    let sql = format!(
        "SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}' AND last_owner_touch_at <= now() - interval '{window}'"
    );
    let sql = &sql;
    wait_until(
        &format!("{opp} quiet for {window}"),
        Duration::from_secs(5),
        || async move { db.count(sql).await == 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_opportunity_is_reclaimed_to_another_member_of_the_team() {
    let (db, _rules) = setup("reclaim", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("untouched", "DN", "retail").await;
    let (first, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_outcome(&db, &opp, "reclaim", Duration::from_secs(5)).await;
    daemon.stop().await;
    let now = db.owner_of(&opp).await;
    assert_ne!(now, first, "never the same owner again");
    assert!([301, 302].contains(&now), "another member of the team");
    let o = outcomes(&db, &opp).await;
    let reclaim = o.iter().find(|x| x.0 == "reclaim").expect("reclaim row");
    assert_eq!(reclaim.2.as_deref(), Some(first.to_string().as_str()), "the audit names the previous owner");
    let why = notes(&db, &opp, "reclaim").await.remove(0);
    assert!(why.contains(&format!("reclaimed from {first} after")) && why.contains("without an interaction"), "{why}");
    let (text, _) = oppty_router::explain::explain(&db.client, &db.cfg, &opp).await.expect("explain");
    assert!(text.contains("2 decision(s)") && text.contains("reclaim: owner"), "the whole ownership history: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_who_keeps_working_on_it_keeps_it() {
    let (db, _rules) = setup("touched", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("worked on", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    // The owner calls every 300 ms (the window is 1 s) until well past two windows and until the
    // sweep has reclaimed an untouched one assigned after it (the barrier before "not reclaimed").
    let control = db.insert_opportunity("control: nobody touches it", "DN", "retail").await;
    db.wait_owned(&control, Duration::from_secs(3)).await;
    let started = Instant::now();
    loop {
        db.log_call(&opp, owner).await;
        pace(Duration::from_millis(300)).await;
        let past = outcomes(&db, &control).await.iter().any(|o| o.0 == "reclaim");
        if past && started.elapsed() > Duration::from_millis(2400) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "the untouched control is reclaimed meanwhile");
    }
    daemon.stop().await;
    assert_eq!(db.owner_of(&opp).await, owner);
    assert!(!outcomes(&db, &opp).await.iter().any(|o| o.0 == "reclaim"), "kept: {:?}", outcomes(&db, &opp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_reassignment_or_closing_in_the_meantime_is_left_alone() {
    let (db, _rules) = setup("person", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let moved = db.insert_opportunity("reassigned by a manager", "DN", "retail").await;
    let won = db.insert_opportunity("won", "DN", "retail").await;
    db.wait_owned(&moved, Duration::from_secs(3)).await;
    db.wait_owned(&won, Duration::from_secs(3)).await;
    db.on_opportunity("UPDATE crm.opportunity SET \"accountOwnerId\" = 305 WHERE \"oppId\" = $1::text::uuid", &moved)
        .await;
    db.on_opportunity("UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid", &won).await;
    let won_owner = db.owner_of(&won).await;
    a_sweep_past_now(&db).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&moved).await, 305, "the person's choice stands");
    assert_eq!(db.owner_of(&won).await, won_owner, "a closed deal is not reclaimed");
    for opp in [&moved, &won] {
        assert!(!outcomes(&db, opp).await.iter().any(|o| o.0 == "reclaim"), "{:?}", outcomes(&db, opp).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_maximum_of_reclaims_the_configured_owner_takes_it() {
    let (db, _rules) =
        setup("max", "after = \"1s\"\nmax_reclaims = 1\nthen = { owner = \"100\" }", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("nobody works on it", "DN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_owner(&db, &opp, 100, Duration::from_secs(8)).await;
    daemon.stop().await;
    let o: Vec<String> = outcomes(&db, &opp).await.into_iter().map(|o| o.0).collect();
    assert_eq!(o, ["rule", "reclaim", "reclaim"], "routed, reclaimed once within the team, then to the named owner");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}'")).await,
        0,
        "no longer swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_with_nobody_else_eligible_leaves_it_with_its_owner_never_the_same_owner_again() {
    let (db, _rules) = setup("alone", "after = \"1s\"\nwhen_nobody = \"leave\"", &["301"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("only one rep", "DN", "retail").await;
    assert_eq!(db.wait_owned(&opp, Duration::from_secs(3)).await.0, 301);
    wait_outcome(&db, &opp, "kept", Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&opp).await, 301);
    let o = outcomes(&db, &opp).await;
    assert!(!o.iter().any(|x| x.0 == "reclaim"), "not reassigned to the same owner: {o:?}");
    let note = notes(&db, &opp, "kept").await.remove(0);
    assert!(note.contains("nobody else in scope is eligible"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stale_opportunities_of_the_same_members_are_reclaimed_in_one_sweep() {
    let (db, _rules) = setup("many", "after = \"1s\"", &["301", "302", "305"]).await;
    let daemon = db.start();
    let mut first = Vec::new();
    for i in 0..9 {
        let opp = db.insert_opportunity(&format!("stale {i}"), "DN", "retail").await;
        first.push((opp.clone(), db.wait_owned(&opp, Duration::from_secs(3)).await.0));
    }
    for (opp, _) in &first {
        wait_outcome(&db, opp, "reclaim", Duration::from_secs(6)).await;
    }
    daemon.stop().await;
    for (opp, owner) in &first {
        assert_ne!(db.owner_of(opp).await, *owner, "{opp} moved on");
    }
    let drift = db
        .count(
            "SELECT count(*) FROM oppty_router.member_state m LEFT JOIN (SELECT \"accountOwnerId\"::text AS o, count(*) AS n \
             FROM crm.opportunity GROUP BY 1) c ON c.o = m.member_id WHERE m.open_count <> coalesce(c.n, 0)",
        )
        .await;
    assert_eq!(drift, 0, "loads follow the reclaims");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_logged_just_before_the_sweep_writes_keeps_the_opportunity() {
    let (db, _rules) = setup("lastsecond", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("last-second call", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    daemon.stop().await;
    wait_quiet(&db, &opp, "1 second").await;
    // The rep logs a call: its event is queued, not yet drained when the sweep runs.
    db.log_call(&opp, owner).await;
    let (mut drain, mut client) = db.manual_drain().await;
    assert_eq!(drain.sweep(&mut client).await.expect("sweep"), 0, "the queued call keeps it");
    assert_eq!(db.owner_of(&opp).await, owner);
    // Without that call it would have gone: drain the event (the clock restarts), wait, sweep.
    drain.drain_all(&mut client, &tokio_util::sync::CancellationToken::new()).await.expect("drain");
    wait_quiet(&db, &opp, "1 second").await;
    assert_eq!(drain.sweep(&mut client).await.expect("sweep"), 1, "stale again after a quiet window");
    assert_ne!(db.owner_of(&opp).await, owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_warned_before_the_opportunity_is_taken_back() {
    let (db, _rules) = setup("warn", "after = \"3s\"\nwarn_at = 0.5", &["301", "302"]).await;
    let (listener, mut notes) =
        oppty_router::db::connect_listener(&db.cfg.database, " test listener").await.expect("listen");
    listener.batch_execute("LISTEN oppty_router_wakeup_reclaim_warning").await.expect("LISTEN");
    let daemon = db.start();
    let opp = db.insert_opportunity("going quiet", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    let warned = format!("SELECT count(*) FROM oppty_router.reclaim_warnings WHERE opp_id = '{opp}'");
    let took = wait_until("a warning row after half the window", Duration::from_secs(3), || async {
        db.count(&warned).await == 1
    })
    .await;
    assert!(took < Duration::from_millis(2900), "warned before the window ends");
    assert_eq!(db.owner_of(&opp).await, owner, "still the owner's when warned");
    tokio::time::timeout(Duration::from_secs(2), notes.recv())
        .await
        .expect("a NOTIFY on the documented channel")
        .expect("listener alive");
    let row = db
        .client
        .query_one(
            "SELECT owner_id, reclaim_at > idle_since FROM oppty_router.reclaim_warnings WHERE opp_id = $1",
            &[&opp],
        )
        .await
        .expect("warning row");
    assert_eq!(row.get::<_, String>(0), owner.to_string());
    assert!(row.get::<_, bool>(1));
    wait_outcome(&db, &opp, "reclaim", Duration::from_secs(6)).await;
    daemon.stop().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM oppty_router.reclaim_warnings WHERE opp_id = '{opp}' AND owner_id = '{owner}'"
        ))
        .await,
        1,
        "warned once per idle spell"
    );
}

/// A rule set with two teams in the `retail` pipeline: `dn` (Da Nang) and `hn` (Hanoi), the text
/// after `[pipeline.reclaim]` given, and extra keys for each team.
async fn setup_teams(
    label: &str,
    reclaim: &str,
    dn: (&[&str], &str),
    hn: (&[&str], &str),
) -> (TestDb, tempfile::TempDir) {
    let list = |ms: &[&str]| ms.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
    let mut all: Vec<&str> = dn.0.iter().chain(hn.0.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    let member_defs: String = all.iter().map(|m| format!("[[member]]\nid = \"{m}\"\n")).collect();
    let text = format!(
        "[settings]\nfallback_owner = \"100\"\n[[territory]]\nid = \"DN\"\n[[territory]]\nid = \"HN\"\n{member_defs}\
         [[team]]\nid = \"dn\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nterritories = [\"DN\"]\nmembers = [{}]\n{}\n\
         [[team]]\nid = \"hn\"\ncrm_id = \"11\"\npipelines = [\"retail\"]\nterritories = [\"HN\"]\nmembers = [{}]\n{}\n\
         [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\n{reclaim}\n\
         [[pipeline.rule]]\nid = \"province\"\nteam = {{ territory = \"province\" }}\nmember = \"fewest_open\"\n",
        list(dn.0),
        dn.1,
        list(hn.0),
        hn.1
    );
    with_rules(crm_db(label).await, &text).await
}

fn at(t: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_time_outside_the_owners_working_hours_does_not_count() {
    let (db, _rules) = with_rules(
        crm_db("hours").await,
        "[settings]\nfallback_owner = \"100\"\n[[territory]]\nid = \"DN\"\n\
         [[schedule]]\nid = \"office\"\ntimezone = \"Asia/Ho_Chi_Minh\"\nweek = { \"mon-fri\" = \"08:00-17:00\" }\n\
         [[member]]\nid = \"301\"\n[[member]]\nid = \"302\"\n\
         [[team]]\nid = \"dn\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nterritories = [\"DN\"]\nmembers = [\"301\", \"302\"]\nschedule = \"office\"\n\
         [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\nafter = \"2h\"\nworking_hours = true\n\
         [[pipeline.rule]]\nid = \"province\"\nteam = { territory = \"province\" }\nmember = \"fewest_open\"\n\n",
    )
    .await;
    // The router assigned it to 301 on a Friday afternoon, 30 working minutes before the weekend
    // (set in the CRM and in the router's ownership, as the router would have; routing now could
    // fall outside office hours).
    let (mut drain, mut client) = db.manual_drain().await;
    let opp = db.insert_opportunity("Friday afternoon", "DN", "retail").await;
    db.on_opportunity("UPDATE crm.opportunity SET \"accountOwnerId\" = 301 WHERE \"oppId\" = $1::text::uuid", &opp)
        .await;
    let cancel = tokio_util::sync::CancellationToken::new();
    drain.drain_all(&mut client, &cancel).await.expect("drain");
    let owner = 301;
    db.on_opportunity(
        "INSERT INTO oppty_router.ownership (opp_id, owner_id, team_id, pipeline, assigned_at, last_owner_touch_at, due_at) \
         VALUES ($1, '301', 'dn', 'retail', '2026-11-27T16:30:00+07:00', '2026-11-27T16:30:00+07:00', '2026-11-27T16:30:00+07:00')",
        &opp,
    )
    .await;
    // Saturday noon, Sunday night, Monday 09:00: 64 hours on the wall clock, 1.5 working hours.
    for now in ["2026-11-28T12:00:00+07:00", "2026-11-29T23:00:00+07:00", "2026-11-30T09:00:00+07:00"] {
        assert_eq!(drain.sweep_at(&mut client, at(now)).await.expect("sweep"), 0, "kept at {now}");
        assert_eq!(db.owner_of(&opp).await, owner);
    }
    let due: String = db
        .client
        .query_one(
            "SELECT to_char(due_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'Dy HH24:MI') FROM oppty_router.ownership WHERE opp_id = $1",
            &[&opp],
        )
        .await
        .expect("due")
        .get(0);
    assert_eq!(due, "Mon 09:30", "the sweeper looks again when two working hours have passed");
    assert_eq!(drain.sweep_at(&mut client, at("2026-11-30T09:31:00+07:00")).await.expect("sweep"), 1);
    assert_ne!(db.owner_of(&opp).await, owner, "reclaimed once the owner's working hours add up");
    let note = notes(&db, &opp, "reclaim").await.remove(0);
    assert!(note.contains("of working hours"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_edit_counts_as_an_interaction_when_the_rule_says_so() {
    let (db, _rules) =
        setup("edits", "after = \"1s\"\ninteractions = [\"owner\", \"owner_edits\"]", &["301", "302"]).await;
    let daemon = db.start();
    let edited = db.insert_opportunity("the owner edits it", "DN", "retail").await;
    let meddled = db.insert_opportunity("someone else edits it", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&edited, Duration::from_secs(3)).await;
    db.wait_owned(&meddled, Duration::from_secs(3)).await;
    // Each edits the amount, as the CRM's form would, stamping who changed the row.
    let edit = |opp: String, by: &'static str| {
        let sql = format!(
            "UPDATE crm.opportunity SET amount = amount + 1, \"lastModifiedBy\" = {by} WHERE \"oppId\" = $1::text::uuid"
        );
        let db = &db;
        async move { db.on_opportunity(&sql, &opp).await }
    };
    // Every 300 ms (the window is 1 s), until the other user's edits have failed to keep theirs:
    // the barrier before "the owner's edits kept it".
    let started = Instant::now();
    loop {
        edit(edited.clone(), "\"accountOwnerId\"").await;
        edit(meddled.clone(), "100").await;
        pace(Duration::from_millis(300)).await;
        if outcomes(&db, &meddled).await.iter().any(|o| o.0 == "reclaim")
            && started.elapsed() > Duration::from_millis(2400)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "another user's edits are not the owner's interaction: {:?}",
            outcomes(&db, &meddled).await
        );
    }
    daemon.stop().await;
    assert_eq!(db.owner_of(&edited).await, owner, "the owner's edits keep it");
    assert!(!outcomes(&db, &edited).await.iter().any(|o| o.0 == "reclaim"), "{:?}", outcomes(&db, &edited).await);
    assert!(
        outcomes(&db, &meddled).await.iter().any(|o| o.0 == "reclaim"),
        "another user's edits are not the owner's interaction: {:?}",
        outcomes(&db, &meddled).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_override_gives_its_opportunities_a_shorter_window() {
    let (db, _rules) = setup_teams(
        "override",
        "after = \"1h\"",
        (&["301", "302"], "[team.reclaim]\nafter = \"1s\""),
        (&["101", "102"], ""),
    )
    .await;
    let daemon = db.start();
    let fast = db.insert_opportunity("Da Nang: a 1 s window", "DN", "retail").await;
    let slow = db.insert_opportunity("Hanoi: the pipeline's hour", "HN", "retail").await;
    db.wait_owned(&fast, Duration::from_secs(3)).await;
    let (slow_owner, _) = db.wait_owned(&slow, Duration::from_secs(3)).await;
    // The barrier: Da Nang's opportunity, assigned with Hanoi's, is reclaimed.
    wait_outcome(&db, &fast, "reclaim", Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&slow).await, slow_owner);
    assert_eq!(
        outcomes(&db, &slow).await.len(),
        1,
        "Hanoi keeps the pipeline's window: {:?}",
        outcomes(&db, &slow).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_reassigns_then_escalates_to_the_team_lead_then_releases_to_the_pool() {
    let (db, _rules) = setup_teams(
        "ladder",
        "after = \"1s\"\nmax_reclaims = 1\nescalate = { to = \"team_lead\", after = \"1s\" }\nthen = { owner = \"100\" }",
        (&["301", "302"], "lead = \"305\""),
        (&["101"], "lead = \"103\""),
    )
    .await;
    let daemon = db.start();
    let opp = db.insert_opportunity("nobody acts on it", "DN", "retail").await;
    let (first, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_owner(&db, &opp, 100, Duration::from_secs(10)).await;
    daemon.stop().await;
    let o = outcomes(&db, &opp).await;
    let steps: Vec<(&str, Option<&str>)> = o.iter().map(|x| (x.0.as_str(), x.1.as_deref())).collect();
    let second = if first == 301 { "302" } else { "301" };
    let first = first.to_string();
    assert_eq!(
        steps,
        [("rule", Some(first.as_str())), ("reclaim", Some(second)), ("reclaim", Some("305")), ("reclaim", Some("100"))],
        "routed, reassigned within the team, escalated to Da Nang's lead, released to the pool"
    );
    let notes = notes(&db, &opp, "reclaim").await;
    assert!(notes[1].contains("escalated to the team lead 305"), "{}", notes[1]);
    assert!(notes[2].contains("the team lead did not act either: released to 100"), "{}", notes[2]);
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}'")).await,
        0,
        "released: no longer swept"
    );
    let (history, _) = oppty_router::explain::explain(&db.client, &db.cfg, &opp).await.expect("explain");
    assert!(history.contains("4 decision(s)"), "explain shows the whole ownership history: {history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluding_the_last_two_owners_hands_it_to_someone_new() {
    let (db, _rules) =
        setup("lastk", "after = \"1s\"\nmax_reclaims = 2\nexclude_last = 2", &["301", "302", "305"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("passed around", "DN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_outcomes(&db, &opp, "reclaim", 2, Duration::from_secs(8)).await;
    daemon.stop().await;
    let owners: Vec<String> = outcomes(&db, &opp).await.into_iter().filter_map(|o| o.1).collect();
    assert_eq!(owners.len(), 3, "{owners:?}");
    let mut distinct = owners.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "neither of the last two owners gets it back: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_lets_opportunities_lapse_is_paused_until_an_admin_lifts_it() {
    let (db, _rules) = setup(
        "pause",
        "after = \"1s\"\nmax_reclaims = 1\nthen = \"leave\"\npause_after = { lapses = 1, within = \"1h\" }",
        &["301", "302"],
    )
    .await;
    let daemon = db.start();
    let first = db.insert_opportunity("lapses", "DN", "retail").await;
    let (lapser, _) = db.wait_owned(&first, Duration::from_secs(3)).await;
    let other = if lapser == 301 { 302 } else { 301 };
    let paused =
        || async { db.count("SELECT count(*) FROM oppty_router.member_pauses WHERE lifted_at IS NULL").await > 0 };
    assert!(holds_within(Duration::from_secs(5), paused).await, "{:?}", outcomes(&db, &first).await);
    let paused: String =
        db.client.query_one("SELECT member_id FROM oppty_router.member_pauses", &[]).await.expect("pause").get(0);
    assert_eq!(paused, lapser.to_string(), "the member who let it lapse is paused");
    let (status, _) = oppty_router::status::status(&db.client, &db.cfg).await.expect("status");
    assert!(status.contains(&format!("  {lapser}: let 1 opportunities lapse within 1h")), "visible: {status}");

    // Paused: a new opportunity goes to the other member, though the paused one has fewer open.
    let next = db.insert_opportunity("while paused", "DN", "retail").await;
    assert_eq!(db.wait_owned(&next, Duration::from_secs(3)).await.0, other, "nothing new for a paused member");
    let why: String = db
        .client
        .query_one(
            "SELECT explanation::text FROM oppty_router.assignments_explained WHERE opp_id = $1 AND outcome = 'rule'",
            &[&next],
        )
        .await
        .expect("explanation")
        .get(0);
    assert!(why.contains("paused for letting opportunities lapse"), "{why}");

    // An admin lifts it; from the next sweep the member gets work again.
    assert!(oppty_router::admin::unpause(&db.client, &db.cfg, &lapser.to_string(), "test admin")
        .await
        .expect("unpause"));
    assert!(!oppty_router::admin::unpause(&db.client, &db.cfg, &lapser.to_string(), "test admin")
        .await
        .expect("again"));
    // New work, one at a time, until the daemon has seen the lift (at its next sweep): then the
    // member, who has the fewest open, gets it.
    let started = Instant::now();
    for i in 0.. {
        let after = db.insert_opportunity(&format!("after the pause {i}"), "DN", "retail").await;
        if db.wait_owned(&after, Duration::from_secs(3)).await.0 == lapser {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "back in rotation within a sweep or two of the lift");
    }
    daemon.stop().await;
}

/// The example config with owners written by ops statements instead of `write_back.set`.
fn custom_write_back(text: &mut String, reclaim_statement: bool) {
    let start = text.find("[write_back.set]").expect("write_back section");
    let end = text.find("[directory]").expect("directory section");
    let mut section = String::from(
        "[write_back]\nstatement = \"\"\"\nUPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int, \"assignedAt\" = now()\n\
         WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1\nRETURNING \"accountOwnerId\"::text AS owner\n\"\"\"\n",
    );
    if reclaim_statement {
        section.push_str(
            "reclaim_statement = \"\"\"\nUPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int, \"assignedAt\" = now(), title = title || ' (reclaimed)'\n\
             WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = :previous_owner::int\nRETURNING \"accountOwnerId\"::text AS owner\n\"\"\"\n",
        );
    }
    text.replace_range(start..end, &format!("{section}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ops_write_statements_the_reclaim_statement_hands_it_on() {
    let db = crm_db_with("stmt", |t| custom_write_back(t, true)).await;
    let (db, _rules) = setup_on(db, "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("custom writes", "DN", "retail").await;
    let (first, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_outcome(&db, &opp, "reclaim", Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_ne!(db.owner_of(&opp).await, first);
    let title: String = db
        .client
        .query_one("SELECT title FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("title")
        .get(0);
    assert_eq!(title, "custom writes (reclaimed)", "the ops statement did the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_reclaim_rules_have_no_way_to_write() {
    let db = crm_db_with("nostmt", |t| custom_write_back(t, false)).await;
    let (db, _rules) = setup_on(db, "after = \"1s\"", &["301", "302"]).await;
    let report = oppty_router::check::check(&db.cfg, false).await;
    assert!(!report.ok, "{:?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("write_back.reclaim_statement: the rules reclaim in pipeline(s) retail")),
        "{:?}",
        report.lines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_opportunity_is_routed_while_a_large_sweep_is_under_way() {
    let (db, _rules) = setup("bigsweep", "after = \"1s\"", &["301", "302", "305"]).await;
    // 40,000 opportunities in Da Nang that the router gave 301 an hour ago and 301 never touched
    // (written as the router writes them: the capture trigger ignores them).
    db.client
        .batch_execute(
            "BEGIN; SET LOCAL oppty_router.origin = 'router'; \
             INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", \"accountOwnerId\") \
             SELECT 'stale ' || g, (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = 'DN' \
             AND \"ownerId\" IS NULL ORDER BY 1 LIMIT 1), 'retail', 1, 301 FROM generate_series(1, 40000) g; \
             INSERT INTO oppty_router.ownership (opp_id, owner_id, team_id, pipeline, assigned_at, last_owner_touch_at, due_at) \
             SELECT \"oppId\"::text, '301', 'dn', 'retail', now() - interval '1 hour', now() - interval '1 hour', \
             now() - interval '1 hour' FROM crm.opportunity WHERE title LIKE 'stale %'; COMMIT",
        )
        .await
        .expect("a large stale backlog");
    let daemon = db.start();
    let reclaimed = || db.count("SELECT count(*) FROM oppty_router.assignments WHERE outcome = 'reclaim'");
    wait_until("the sweep starts", Duration::from_secs(30), || async { reclaimed().await > 0 }).await;
    let opp = db.insert_opportunity("arrives during the sweep", "DN", "retail").await;
    let (_, took) = db.wait_owned(&opp, Duration::from_secs(30)).await;
    let during = reclaimed().await;
    println!("routed in {took:?} while the sweep was at {during} of 40000");
    assert!(during < 40_000, "the sweep was still under way when the new one was routed ({during})");
    assert!(took < Duration::from_secs(1), "routed between two steps of the sweep, not after it: {took:?}");
    // And the sweep, step by step (its due times brought forward in chunks), takes back every one.
    let all = || async { reclaimed().await >= 40_000 };
    assert!(holds_within(Duration::from_secs(90), all).await, "every stale one is reclaimed: {}", reclaimed().await);
    daemon.stop().await;
}

/// "Counts as an interaction" is written twice, in Rust (the sweep's read) and in SQL (the
/// conditional reassign's last look): both say the same for every kind, actor and policy.
#[tokio::test]
async fn what_counts_as_an_interaction_is_the_same_in_rust_and_in_sql() {
    use oppty_router::engine::Interaction;
    let (_, _, client) = empty_db("counts").await;
    let sql = format!(
        "SELECT {} FROM (SELECT $1::text AS kind, $2::text AS actor) e, \
         (SELECT $3::text AS old, $4::bool AS anyone, $5::bool AS edits) u",
        oppty_router::store::COUNTS_AS_INTERACTION
    );
    let text = |anyone: bool, edits: bool| {
        let mut i = vec!["\"owner\""];
        if anyone {
            i.push("\"anyone\"");
        }
        if edits {
            i.push("\"owner_edits\"");
        }
        format!(
            "[[member]]\nid = \"a\"\n[[team]]\nid = \"t\"\nmembers = [\"a\"]\npipelines = [\"p\"]\n[[pipeline]]\nid = \"p\"\n\
             [[pipeline.rule]]\nid = \"r\"\nmember = \"random\"\n[pipeline.reclaim]\nafter = \"1h\"\ninteractions = [{}]\n",
            i.join(", ")
        )
    };
    let unmapped_edits = oppty_router::rules::Directory::default();
    let mut checked = 0;
    for anyone in [false, true] {
        for edits in [false, true] {
            let e = oppty_router::rules::compile_texts_with(&[("r.toml", &text(anyone, edits))], &[], &unmapped_edits)
                .expect("rules");
            let p = e.pipelines["p"].reclaim.clone().expect("reclaim");
            for (kind, word) in [(Interaction::Activity, "activity"), (Interaction::Edit, "edit")] {
                for actor in [Some("a"), Some("x"), None] {
                    let row = client.query_one(&sql, &[&word, &actor, &"a", &anyone, &edits]).await.expect("query");
                    let in_sql: Option<bool> = row.get(0);
                    let in_rust = p.counts(kind, actor, "a");
                    assert_eq!(in_sql.unwrap_or(false), in_rust, "{word} by {actor:?}, anyone {anyone}, edits {edits}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 24);
}
