//! The console in a real browser (headless Chromium through chromedriver), on a real PostgreSQL
//! with the real daemon routing and reloading: an editor logs in, drags a rule above another,
//! tries the draft and sees whose owner would change, saves it, watches the version go in force,
//! and a new opportunity is routed by the moved rule; a broken block shows its error on the block
//! and saves nothing; a viewer cannot save; a form on another site is refused. Each page is
//! photographed at 1280×800 (`OPPTY_SCREENSHOTS=1` writes them to docs/screenshots).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::sync::Arc;
use std::time::Duration;

use common::web::{console_on, instagram_lead, rule_that_routed};
use common::*;
use serde_json::json;
use webdriver::Browser;

fn log_in(b: &Browser, base: &str, name: &str, password: &str) {
    b.go(&format!("{base}/login"));
    b.type_into(&b.find("input[name=name]"), name);
    b.type_into(&b.find("input[name=password]"), password);
    b.click(&b.find("form.login button"));
    b.wait_for_text(&format!("{name} ("), Duration::from_secs(10));
}

/// Drag rule `from` onto rule `onto` as a person would with a mouse: the page's own drag and drop
/// handlers receive the browser's drag events.
fn drag(b: &Browser, from: &str, onto: &str) {
    let (src, dst) = (b.find(from), b.find(onto));
    b.script(
        "const [src, dst] = arguments; const dt = new DataTransfer();\
         src.dispatchEvent(new DragEvent('dragstart', { dataTransfer: dt, bubbles: true }));\
         dst.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));\
         dst.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));\
         src.dispatchEvent(new DragEvent('dragend', { dataTransfer: dt, bubbles: true }));",
        json!([src.arg(), dst.arg()]),
    );
}

/// A page on another site (another port) whose form posts to the console as soon as it loads.
fn another_site(console: u16) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(4) {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let page = format!(
                "<!doctype html><form id=f method=post action=\"http://127.0.0.1:{console}/draft/discard\">\
                 <input name=csrf value=guess></form><script>document.getElementById('f').submit()</script>"
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = std::io::Write::write_all(&mut s, answer.as_bytes());
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_drags_a_rule_up_tries_it_saves_it_and_the_next_lead_follows_it() {
    let db = crm_db("browser").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    let retail = dir.path().join("rules/10-retail.toml");
    let (daemon, logs) = start_daemon(&config);
    logs.wait_for("connected and leading", Duration::from_secs(20)).await;
    let kept = instagram_lead(&db, 101).await;
    assert_eq!(rule_that_routed(&db, &kept).await, "keep-the-relationship");
    let cfg = oppty_router::config::Config::load(&config).expect("the config");
    let (port, stop) = console_on(cfg, dir.path()).await;
    let base = format!("http://127.0.0.1:{port}");
    let shots = Browser::screenshot_dir();

    let b = tokio::task::spawn_blocking(Browser::start).await.expect("the browser");
    let b = Arc::new(b);
    let run = |f: Box<dyn FnOnce(&Browser) + Send>| {
        let b = b.clone();
        tokio::task::spawn_blocking(move || f(&b))
    };
    let (base2, shots2) = (base.clone(), shots.clone());
    run(Box::new(move |b| {
        log_in(b, &base2, "lan", "lan's long password");
        b.wait_for_text("Rules in force", Duration::from_secs(10));
        b.screenshot(&shots2.join("overview.png"));
        b.go(&format!("{base2}/pipelines"));
        b.wait_for_text("keep-the-relationship", Duration::from_secs(10));
        b.screenshot(&shots2.join("pipelines.png"));
        // A block given a team no file defines: the compiler's words on that block; nothing saved.
        let form = "#rule-retail-province-team .block-team form.block";
        b.script("document.querySelector(arguments[0]).closest('details').open = true;", json!([form]));
        let area = b.find(&format!("{form} textarea"));
        b.type_into(&area, "\"no-such-team\"");
        // Checked as it is typed: the compiler's words appear under the field before any save.
        b.wait_for(&format!("{form} output .problem"), Duration::from_secs(10));
        b.click(&b.find(&format!("{form} button[value=set]")));
        b.wait_for_text("does not compile", Duration::from_secs(10));
        let on_block = b.script(
            "return [...document.querySelectorAll('#rule-retail-province-team .block-team > p.problem')].map(p => p.innerText).join(' ');",
            json!([]),
        );
        assert!(on_block.as_str().is_some_and(|t| t.contains("no-such-team")), "the error is on the team block: {on_block}");
        assert_eq!(b.count("button[disabled]"), 1, "Save is disabled while the draft does not compile");
        b.screenshot(&shots2.join("pipelines-broken-draft.png"));
        b.click(&b.find("form[action='/draft/discard'] button"));
        b.wait_for_text("No draft", Duration::from_secs(10));
        // Drag the Instagram rule above the relationship rule.
        drag(b, "#rule-retail-instagram-to-digital", "#rule-retail-keep-the-relationship");
        b.wait_for_text("rule instagram-to-digital moved from position 2 to 1", Duration::from_secs(10));
    }))
    .await
    .expect("the editor's story");
    assert!(!std::fs::read_to_string(&retail).expect("read").contains("no-such-team"), "a broken draft saved nothing");

    let (base2, shots2, kept2) = (base.clone(), shots.clone(), kept.clone());
    run(Box::new(move |b| {
        b.go(&format!("{base2}/try?days=1&opp={kept2}"));
        let text = b.wait_for_text("would change owner", Duration::from_secs(20));
        assert!(text.contains("instagram-to-digital"), "{text}");
        b.screenshot(&shots2.join("try.png"));
        b.go(&format!("{base2}/pipelines"));
        b.click(&b.find("form[action='/draft/save'] button"));
        b.wait_for_text("Saved", Duration::from_secs(10));
    }))
    .await
    .expect("try and save");
    let hash = b.script("return document.querySelector('[data-hash]').dataset.hash;", json!([]));
    let hash = hash.as_str().expect("the saved rules' hash").to_string();
    wait_until("the saved rules go in force", Duration::from_secs(20), || async {
        rules_version(&db.client).await.is_some_and(|v| v.ends_with(&hash))
    })
    .await;
    let seen = run(Box::new(move |b| {
        // The saved page's overview is live: the version in force shows without a reload.
        wait_until_blocking("the overview shows the saved version in force", Duration::from_secs(20), || {
            b.script("const v = document.querySelector('#overview .version'); return v ? v.innerText : '';", json!([]))
                .as_str()
                .is_some_and(|v| v.ends_with(&hash))
        });
        b.wait_for_text("saved by lan at", Duration::from_secs(10));
    }));
    seen.await.expect("the version in force, live");
    let moved = instagram_lead(&db, 101).await;
    assert_eq!(rule_that_routed(&db, &moved).await, "instagram-to-digital", "routed by the moved rule");

    let (base2, shots2) = (base.clone(), shots.clone());
    let evil = another_site(port);
    run(Box::new(move |b| {
        b.go(&format!("{base2}/teams"));
        b.wait_for_text("Nguyễn Văn An", Duration::from_secs(10));
        b.screenshot(&shots2.join("teams.png"));
        b.go(&format!("{base2}/history"));
        b.wait_for_text("In force from", Duration::from_secs(10));
        assert!(b.count("form[action='/history/revert']") >= 1, "an editor may revert to an earlier version");
        b.wait_for_text("saved by lan at", Duration::from_secs(5));
        b.screenshot(&shots2.join("history.png"));
        let size = b.script("return document.documentElement.outerHTML.length;", json!([]));
        assert!(size.as_u64().is_some_and(|n| n < 300_000), "a page under 300 KB: {size}");
        // Another site's form, posted by the editor's own browser: refused.
        b.go(&format!("http://127.0.0.1:{evil}/"));
        b.wait_for_text("A request from another site was refused", Duration::from_secs(10));
        // A viewer sees the rules but has no controls, and a write of theirs is refused.
        b.go(&format!("{base2}/"));
        b.click(&b.find("form.who button"));
        log_in(b, &base2, "minh", "minh's long password");
        b.go(&format!("{base2}/pipelines"));
        b.wait_for_text("keep-the-relationship", Duration::from_secs(10));
        assert_eq!(b.count("form[action='/pipelines/move']"), 0, "a viewer gets no controls");
        let status = b.script(
            "const csrf = document.querySelector('input[name=csrf]').value;\
             const r = new XMLHttpRequest(); r.open('POST', '/draft/save', false);\
             r.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');\
             r.send('csrf=' + encodeURIComponent(csrf)); return r.status;",
            json!([]),
        );
        assert_eq!(status, json!(403), "a viewer cannot save");
    }))
    .await
    .expect("the viewer and the other site");
    stop.cancel();
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
}
