//! Rule files edited on a live system, the way files really change, against the real watcher on a
//! real directory: each pattern ends with the new rules in force, or the old ones kept with the
//! error reported for a broken save.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::{holds_within, pace, pace_blocking, wait_until};
use oppty_router::config::Config;
use oppty_router::reload::{self, Reloader};
use oppty_router::rules::Directory;
use tokio_util::sync::CancellationToken;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules");

struct Live {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    reloader: Arc<Reloader>,
    shutdown: CancellationToken,
}

fn copy_rules(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(RULES).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

async fn live(layout: impl FnOnce(&Path) -> PathBuf) -> Live {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = layout(tmp.path());
    let mut cfg = Config::parse(devkit::demo::EXAMPLE_CONFIG, Path::new("oppty-router.toml")).expect("config");
    cfg.router.rules_dir = dir.clone();
    cfg.directory = None;
    // Longer than any step of the saves below, shorter than the tests' patience.
    cfg.router.reload_settle = Duration::from_millis(700);
    let cfg = Arc::new(cfg);
    let engine = oppty_router::load_rules(&cfg).expect("rules load");
    let reloader = Arc::new(Reloader::new(
        cfg.clone(),
        Arc::new(ArcSwap::from_pointee(engine)),
        Arc::new(ArcSwap::from_pointee(Directory::default())),
    ));
    let shutdown = CancellationToken::new();
    tokio::spawn(reload::watch(reloader.clone(), dir.clone(), Duration::from_millis(100), shutdown.clone()));
    wait_until("the watch is in place", Duration::from_secs(5), || async { reloader.status.load().watching }).await;
    Live { _tmp: tmp, dir, reloader, shutdown }
}

impl Live {
    /// Lan's weight (no rule-file test depends on it, so any value is accepted).
    fn weight_of_402(&self) -> Option<u32> {
        let e = self.reloader.latest();
        Some(e.members[e.member_index("402")?].weight)
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&Live) -> bool) {
        let held = holds_within(Duration::from_secs(5), || async { ok(self) }).await;
        assert!(held, "waited 5 s for {what} (status now {:?})", self.reloader.status.load());
    }

    /// The barrier before "nothing more happened": a last save (Lan's weight set to `weight`) is
    /// the latest candidate. The watcher reads the files one look after another, so every look at
    /// what was saved before it has been judged.
    async fn after_one_more_save(&self, weight: u32) {
        let now = self.weight_of_402().expect("Lan");
        let text = std::fs::read_to_string(people(&self.dir)).expect("read");
        let next = text.replacen(&format!("weight = {now} "), &format!("weight = {weight} "), 1);
        std::fs::write(people(&self.dir), next).expect("one more save");
        self.wait_for("one more save", |l| l.weight_of_402() == Some(weight)).await;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn people(dir: &Path) -> PathBuf {
    dir.join("01-people.toml")
}

fn edited(dir: &Path, weight: u32) -> String {
    std::fs::read_to_string(people(dir)).expect("read").replacen("weight = 2 ", &format!("weight = {weight} "), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_write_is_picked_up() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    assert_eq!(l.weight_of_402(), Some(2));
    std::fs::write(people(&l.dir), edited(&l.dir, 77)).expect("write");
    l.wait_for("in-place write", |l| l.weight_of_402() == Some(77)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vim_save_with_4913_swp_and_backup_files_is_picked_up() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let new = edited(&l.dir, 66);
    let d = &l.dir;
    // What vim does: probe file 4913, swap file, rename the original to a backup, write, clean up.
    std::fs::write(d.join("4913"), "").expect("4913");
    std::fs::remove_file(d.join("4913")).expect("rm 4913");
    std::fs::write(d.join(".01-people.toml.swp"), "binary swap").expect("swp");
    std::fs::rename(people(d), d.join("01-people.toml~")).expect("backup");
    std::fs::write(people(d), new).expect("write");
    std::fs::remove_file(d.join("01-people.toml~")).expect("rm backup");
    std::fs::remove_file(d.join(".01-people.toml.swp")).expect("rm swp");
    l.wait_for("vim save", |l| l.weight_of_402() == Some(66)).await;
    assert_eq!(l.reloader.status.load().refused, 0, "the temp files never made a reload fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sed_in_place_and_cp_and_mv_of_new_files_are_picked_up() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let status = std::process::Command::new("sed")
        .args(["-i", "0,/weight = 2 /s//weight = 55 /"])
        .arg(people(&l.dir))
        .status()
        .expect("sed");
    assert!(status.success());
    l.wait_for("sed -i", |l| l.weight_of_402() == Some(55)).await;

    // cp a new file in: a new pipeline appears.
    let extra = "[[pipeline]]\nid = \"leasing\"\nfallback_owner = \"100\"\n[[pipeline.rule]]\nid = \"any\"\nteam = { id = \"wealth\" }\nmember = \"fewest_open\"\n";
    let outside = l.dir.parent().expect("parent").join("40-leasing.toml");
    std::fs::write(
        &outside,
        extra
            .replace(
                "[[pipeline]]",
                "[[team]]\nid = \"leasing\"\npipelines = [\"leasing\"]\nmembers = [\"101\"]\n[[pipeline]]",
            )
            .replace("wealth", "leasing"),
    )
    .expect("write");
    std::fs::copy(&outside, l.dir.join("40-leasing.toml")).expect("cp");
    l.wait_for("cp of a new file", |l| l.reloader.latest().pipelines.contains_key("leasing")).await;

    // mv a new file in (and delete one): pipelines change again.
    let moved = l.dir.parent().expect("parent").join("50-more.toml");
    std::fs::write(&moved, "[[team]]\nid = \"more\"\npipelines = [\"more\"]\nmembers = [\"101\"]\n[[pipeline]]\nid = \"more\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"random\"\n").expect("write");
    std::fs::rename(&moved, l.dir.join("50-more.toml")).expect("mv");
    std::fs::remove_file(l.dir.join("40-leasing.toml")).expect("rm");
    l.wait_for("mv in and rm", |l| {
        let e = l.reloader.latest();
        e.pipelines.contains_key("more") && !e.pipelines.contains_key("leasing")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_changing_many_files_at_once_is_one_reload() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let before = l.reloader.status.load().candidates;
    // A branch where Lan's weight is 33, Instagram leads go to the least loaded, and the wealth file is gone.
    std::fs::write(people(&l.dir), edited(&l.dir, 33)).expect("write");
    let retail = std::fs::read_to_string(l.dir.join("10-retail.toml")).expect("read").replacen(
        "member = \"round_robin\"",
        "member = \"fewest_open\"",
        1,
    );
    std::fs::write(l.dir.join("10-retail.toml"), retail).expect("write");
    std::fs::remove_file(l.dir.join("30-wealth.toml")).expect("rm");
    l.wait_for("checkout", |l| {
        let e = l.reloader.latest();
        l.weight_of_402() == Some(33)
            && !e.pipelines.contains_key("wealth")
            && format!("{:?}", e.pipelines["retail"].rules[1].pick) == "FewestOpen"
    })
    .await;
    assert_eq!(l.reloader.status.load().candidates - before, 1, "debounced into one candidate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_swap_of_its_data_symlink_is_picked_up() {
    let l = live(|t| {
        // The layout kubelet makes: ..<timestamp>/ holds the files, ..data points at it, and each
        // file is a symlink through ..data.
        let dir = t.join("rules");
        copy_rules(&dir.join("..2026_11_23_01"));
        std::os::unix::fs::symlink("..2026_11_23_01", dir.join("..data")).expect("..data");
        for e in std::fs::read_dir(dir.join("..2026_11_23_01")).expect("ts dir") {
            let name = e.expect("entry").file_name();
            std::os::unix::fs::symlink(Path::new("..data").join(&name), dir.join(&name)).expect("file link");
        }
        dir
    })
    .await;
    assert_eq!(l.weight_of_402(), Some(2));
    let d = &l.dir;
    copy_rules(&d.join("..2026_11_23_02"));
    let new = std::fs::read_to_string(d.join("..2026_11_23_02/01-people.toml")).expect("read").replacen(
        "weight = 2 ",
        "weight = 44 ",
        1,
    );
    std::fs::write(d.join("..2026_11_23_02/01-people.toml"), new).expect("write");
    std::os::unix::fs::symlink("..2026_11_23_02", d.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("atomic swap");
    std::fs::remove_dir_all(d.join("..2026_11_23_01")).expect("old data");
    l.wait_for("ConfigMap swap", |l| l.weight_of_402() == Some(44)).await;
    let st = l.reloader.status.load();
    assert_eq!((st.refused, st.candidates), (0, 1), "one candidate, never a refusal: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_two_steps_is_not_loaded_half_written() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let full = edited(&l.dir, 22);
    let cut = full.find("[[member]]\nid = \"203\"").expect("a member to cut at");
    // The first half alone is valid TOML (members 203… missing: the teams would then fail).
    let mut f = std::fs::File::create(people(&l.dir)).expect("open");
    std::io::Write::write_all(&mut f, &full.as_bytes()[..cut]).expect("first half");
    std::io::Write::flush(&mut f).expect("flush");
    pace(Duration::from_millis(40)).await;
    std::io::Write::write_all(&mut f, &full.as_bytes()[cut..]).expect("second half");
    drop(f);
    l.wait_for("two-step write", |l| l.weight_of_402() == Some(22)).await;
    let st = l.reloader.status.load();
    assert_eq!(
        (st.candidates, st.refused),
        (1, 0),
        "one candidate, of the whole file; the half was never offered: {st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_directory_replaced_by_another_is_picked_up() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let parent = l.dir.parent().expect("parent").to_path_buf();
    copy_rules(&parent.join("rules.new"));
    let new = std::fs::read_to_string(parent.join("rules.new/01-people.toml")).expect("read").replacen(
        "weight = 2 ",
        "weight = 11 ",
        1,
    );
    std::fs::write(parent.join("rules.new/01-people.toml"), new).expect("write");
    std::fs::rename(&l.dir, parent.join("rules.old")).expect("move away");
    std::fs::rename(parent.join("rules.new"), &l.dir).expect("move in");
    l.wait_for("directory replaced", |l| l.weight_of_402() == Some(11)).await;
    // And edits inside the new directory are seen too.
    std::fs::write(
        people(&l.dir),
        std::fs::read_to_string(people(&l.dir)).expect("read").replacen("weight = 11 ", "weight = 12 ", 1),
    )
    .expect("write");
    l.wait_for("edit in the new directory", |l| l.weight_of_402() == Some(12)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_save_keeps_the_last_good_rules_and_reports_where() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let good = l.reloader.latest().version.clone();
    std::fs::write(people(&l.dir), edited(&l.dir, 12).replacen("weight = 12 ", "weight = \"twelve\" ", 1))
        .expect("write");
    wait_until("the broken save to be reported", Duration::from_secs(5), || async {
        l.reloader.status.load().last_error.is_some()
    })
    .await;
    assert_eq!(l.reloader.latest().version, good, "the last good rules stay in force");
    assert_eq!(l.weight_of_402(), Some(2));
    let err = l.reloader.status.load().last_error.clone().expect("error").1;
    let line = std::fs::read_to_string(people(&l.dir))
        .expect("read")
        .lines()
        .position(|l| l.contains("twelve"))
        .expect("line")
        + 1;
    assert!(err.contains(&format!("01-people.toml:{line}:10:")), "file:line:column of the bad value: {err}");
    assert!(err.contains(".weight: expected a non-negative integer, found the string \"twelve\""), "{err}");
    // Fixing it brings the new rules in.
    let fixed =
        std::fs::read_to_string(people(&l.dir)).expect("read").replacen("weight = \"twelve\" ", "weight = 13 ", 1);
    std::fs::write(people(&l.dir), fixed).expect("write");
    l.wait_for("fixed save", |l| l.weight_of_402() == Some(13)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_log_says_what_changed() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let old = l.reloader.latest();
    let people = std::fs::read_to_string(people(&l.dir)).expect("read").replacen("kpi = 78.5", "kpi = 79.5", 1);
    std::fs::write(people_path(&l.dir), people).expect("write");
    std::fs::remove_file(l.dir.join("30-wealth.toml")).expect("rm");
    l.wait_for("edit", |l| !l.reloader.latest().pipelines.contains_key("wealth")).await;
    let summary = reload::summarize(&old, &l.reloader.latest());
    assert_eq!(
        summary.as_deref().unwrap_or("no change"),
        "pipelines -wealth; rules -wealth/back-to-last-team -wealth/everyone-else -wealth/priority-clients; teams -wealth; members ~404"
    );
}

fn people_path(dir: &Path) -> PathBuf {
    people(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_written_beside_the_rules_directory_does_not_reload_the_rules() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    // One bad file: every reload is refused, so each one shows in the count.
    std::fs::write(l.dir.join("99-broken.toml"), "[[member]]\nid = ").expect("a broken save");
    l.wait_for("the broken save is refused", |l| l.reloader.status.load().refused >= 1).await;
    let (looks, refused) = (l.reloader.status.load().looks, l.reloader.status.load().refused);
    let log = l.dir.parent().expect("parent").join("router.log");
    for i in 0..20 {
        std::fs::write(&log, format!("line {i}\n")).expect("write the log");
        pace(Duration::from_millis(50)).await;
    }
    // The log goes quiet for three debounces, so a look it caused could not merge with the next.
    pace(Duration::from_millis(300)).await;
    // A change inside is looked at; once it is, every look before it has been too (one at a time).
    std::fs::write(l.dir.join("99-broken.toml"), "[[member]]\nid = \"x\"\nnope = 1\n").expect("another broken save");
    let its_problem = |l: &Live| l.reloader.status.load().last_error.as_ref().is_some_and(|e| e.1.contains("nope"));
    l.wait_for("the new save is looked at", its_problem).await;
    let st = l.reloader.status.load();
    assert_eq!(st.refused, refused + 1, "{st:?}");
    assert_eq!(st.looks, looks + 1, "writes beside the rules directory are not rule changes: {st:?}");
}

/// Watches the candidates every few milliseconds while `during` runs; returns whether a set
/// without the `wealth` pipeline (all of 30-wealth.toml) was ever published.
async fn ever_without_wealth(l: &Live, during: impl std::future::Future<Output = ()>) -> bool {
    let reloader = l.reloader.clone();
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut missing = false;
            while !stop.is_cancelled() {
                missing |= !reloader.latest().pipelines.contains_key("wealth");
                pace(Duration::from_millis(2)).await;
            }
            missing
        })
    };
    during.await;
    stop.cancel();
    watcher.await.expect("watcher")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_two_step_save_never_puts_the_emptied_file_live() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let wealth = l.dir.join("30-wealth.toml");
    // Without this file the set is still valid (its pipeline is simply gone): nothing but the
    // emptiness says the save is unfinished.
    let full = std::fs::read_to_string(&wealth).expect("read").replace("[[pipeline]]", "# saved\n[[pipeline]]");
    let missing = ever_without_wealth(&l, async {
        // An editor that truncates, then writes the new text: far slower than the debounce.
        std::fs::File::create(&wealth).expect("truncate");
        pace(Duration::from_millis(400)).await;
        std::fs::write(&wealth, &full).expect("write");
        l.wait_for("the saved file", |l| l.reloader.status.load().last_error.is_none()).await;
    })
    .await;
    assert!(!missing, "the emptied file's pipeline was never missing from the candidates");
    let st = l.reloader.status.load();
    assert_eq!(st.refused, 0, "a save in progress is not a refusal: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_huge_file_is_refused_without_holding_anything_up() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    nix::unistd::mkfifo(&l.dir.join("50-pipe.toml"), nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .expect("mkfifo");
    let r = l.reloader.clone();
    let got = tokio::time::timeout(Duration::from_secs(5), r.reload_in_background("test")).await;
    let err = got.expect("a FIFO is not waited on").expect_err("refused").to_string();
    assert!(err.contains("50-pipe.toml: is not a regular file"), "{err}");
    std::fs::remove_file(l.dir.join("50-pipe.toml")).expect("rm fifo");

    // 6 MB of one TOML string: refused unread, and nothing long is logged or kept.
    let huge = format!("[settings]\nfallback_owner = \"{}\"\n", "x".repeat(6 << 20));
    std::fs::write(l.dir.join("60-huge.toml"), huge).expect("huge");
    let started = Instant::now();
    let err = l.reloader.reload_in_background("test").await.expect_err("refused").to_string();
    // Judged once the directory is quiet (a settle or two), never after reading 6 MB.
    assert!(started.elapsed() < Duration::from_secs(3), "refused without reading it: {:?}", started.elapsed());
    assert!(err.contains("60-huge.toml: is 6.0 MiB; rule files are limited to 4 MiB"), "{err}");
    let kept = l.reloader.status.load().last_error.clone().expect("kept for status").1;
    assert!(kept.len() < 1000, "the kept error is short: {} bytes", kept.len());
    assert_eq!(l.weight_of_402(), Some(2), "the last good rules stay in force");
}

#[test]
fn a_comment_or_a_reordered_list_is_no_change() {
    let fields: Vec<String> = ["province", "segment"].iter().map(|s| s.to_string()).collect();
    let text = "[[member]]\nid = \"a\"\n[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nwhen = { field = \"segment\", in = [\"vip\", \"gold\", \"silver\"] }\nmember = \"fewest_open\"\n";
    let a = oppty_router::rules::compile_texts(&[("a.toml", text)], &fields).expect("rules");
    let b = oppty_router::rules::compile_texts(&[("a.toml", &format!("# a comment\n{text}"))], &fields).expect("rules");
    assert_ne!(a.hash, b.hash, "the files differ");
    assert_eq!(reload::summarize(&a, &b), None, "but they route alike");
    let c = oppty_router::rules::compile_texts(&[("a.toml", &text.replace("\"silver\"", "\"bronze\""))], &fields)
        .expect("rules");
    assert_eq!(reload::summarize(&a, &c).as_deref(), Some("rules ~p/r"));
}

#[test]
fn a_huge_change_summary_names_a_few_and_counts_the_rest() {
    let fields: Vec<String> = vec!["province".into()];
    let set = |n: usize| {
        let mut t = String::new();
        for i in 0..n {
            t.push_str(&format!("[[member]]\nid = \"m{i}\"\n"));
        }
        t.push_str("[[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"m0\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"fewest_open\"\n");
        oppty_router::rules::compile_texts(&[("a.toml", &t)], &fields).expect("rules")
    };
    let summary = reload::summarize(&set(1), &set(5000)).expect("a change");
    assert!(summary.ends_with("… and 4987 more"), "{summary}");
    assert!(summary.len() < 300, "{} bytes: {summary}", summary.len());
}

/// A member's new product renumbers the interned names the set uses; a rule filtering on an
/// attribute does not change for it, and the summary says only what did.
#[test]
fn a_new_product_on_one_member_changes_that_member_only() {
    let fields: Vec<String> = ["province", "segment"].iter().map(|s| s.to_string()).collect();
    let text = |products: &str| {
        format!(
            "[[member]]\nid = \"a\"\nproducts = [{products}]\n[[member]]\nid = \"b\"\nattributes = {{ lang = \"vi\" }}\n\
             [[team]]\nid = \"t\"\npipelines = [\"p\"]\nmembers = [\"a\", \"b\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\n\
             filters = [{{ attribute = \"lang\", equals_field = \"segment\" }}]\nmember = \"fewest_open\"\n"
        )
    };
    let a = oppty_router::rules::compile_texts(&[("a.toml", &text("\"home\""))], &fields).expect("rules");
    let b = oppty_router::rules::compile_texts(&[("a.toml", &text("\"auto\", \"home\""))], &fields).expect("rules");
    assert_ne!(a.symbols.get("lang"), b.symbols.get("lang"), "the attribute's symbol moved");
    assert_eq!(reload::summarize(&a, &b).as_deref(), Some("members ~a"));
}

/// An editor's save, a step at a time, with the pauses real tools leave between steps.
struct Save {
    name: &'static str,
    steps: fn(&Path, &str),
}

fn pause(ms: u64) {
    pace_blocking(Duration::from_millis(ms));
}

const SAVES: &[Save] = &[
    Save {
        name: "vim (the original renamed to a backup, the new text written 120 ms later)",
        steps: |d, new| {
            std::fs::rename(people(d), d.join("01-people.toml~")).expect("backup");
            pause(120);
            std::fs::write(people(d), new).expect("write");
            std::fs::remove_file(d.join("01-people.toml~")).expect("rm backup");
        },
    },
    Save {
        name: "sed -i (a temp file written, then renamed over)",
        steps: |d, new| {
            std::fs::write(d.join("sedX1b2c3"), new).expect("temp");
            pause(60);
            std::fs::rename(d.join("sedX1b2c3"), people(d)).expect("rename over");
        },
    },
    Save {
        name: "truncate, then write 400 ms later",
        steps: |d, new| {
            std::fs::File::create(people(d)).expect("truncate");
            pause(400);
            std::fs::write(people(d), new).expect("write");
        },
    },
    Save {
        name: "removed, then created again 300 ms later",
        steps: |d, new| {
            std::fs::remove_file(people(d)).expect("rm");
            pause(300);
            std::fs::write(people(d), new).expect("write");
        },
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_in_steps_is_judged_when_it_is_finished_never_refused_midway() {
    for (i, save) in SAVES.iter().enumerate() {
        let l = live(|t| {
            copy_rules(&t.join("rules"));
            t.join("rules")
        })
        .await;
        let weight = 50 + i as u32;
        let (dir, new) = (l.dir.clone(), edited(&l.dir, weight));
        let steps = save.steps;
        tokio::task::spawn_blocking(move || steps(&dir, &new)).await.expect("the save");
        l.wait_for(save.name, |l| l.weight_of_402() == Some(weight)).await;
        l.after_one_more_save(weight + 100).await;
        let st = l.reloader.status.load();
        assert_eq!((st.refused, &st.last_error), (0, &None), "{}: a save in progress is no refusal", save.name);
        assert_eq!(st.candidates, 2, "{}: one candidate for the finished save, one for the next: {st:?}", save.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_contained_file_renamed_away_mid_save_never_leaves_the_candidates() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    let wealth = l.dir.join("30-wealth.toml");
    let text = std::fs::read_to_string(&wealth).expect("read").replace("[[pipeline]]", "# saved\n[[pipeline]]");
    let missing = ever_without_wealth(&l, async {
        std::fs::rename(&wealth, l.dir.join("30-wealth.toml~")).expect("backup");
        pace(Duration::from_millis(150)).await;
        std::fs::write(&wealth, &text).expect("write");
        std::fs::remove_file(l.dir.join("30-wealth.toml~")).expect("rm backup");
        l.after_one_more_save(61).await;
    })
    .await;
    assert!(!missing, "the wealth pipeline never left the candidates while its file was being saved");
    let st = l.reloader.status.load();
    assert_eq!(st.refused, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_stays_broken_is_refused_once_the_directory_is_quiet() {
    let l = live(|t| {
        copy_rules(&t.join("rules"));
        t.join("rules")
    })
    .await;
    std::fs::write(people(&l.dir), edited(&l.dir, 9).replacen("weight = 9 ", "weight = \"nine\" ", 1)).expect("write");
    l.wait_for("the refusal", |l| l.reloader.status.load().refused == 1).await;
    // Put back as it was: the refusal is history, and nothing is offered (no new version).
    std::fs::write(people(&l.dir), edited(&l.dir, 9).replacen("weight = \"nine\" ", "weight = 2 ", 1)).expect("revert");
    l.wait_for("the revert", |l| l.reloader.status.load().last_error.is_none()).await;
    // The revert was looked at after every look at the broken save: it was refused once.
    assert_eq!(l.reloader.status.load().refused, 1, "one save, one refusal");
    assert_eq!(l.reloader.status.load().candidates, 0, "the files compile to the set in force");
}
