//! A real browser for the tests: Debian's Chromium, headless, driven through chromedriver's W3C
//! WebDriver protocol (HTTP and JSON, spoken here over a plain socket: no client crate needed).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The element key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts the browser and its driver (`chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one browser session in it (both ended when dropped).
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a 1280×800 window.
    pub fn start() -> Browser {
        for (what, path) in [("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)] {
            assert!(
                Path::new(path).exists(),
                "{what} is not at {path}: run `cargo xtask setup` (Debian: apt-get install chromium chromium-driver)"
            );
        }
        let port = super::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut b = Browser { driver, port, session: String::new(), _profile: tempfile::tempdir().expect("tempdir") };
        super::wait_until_blocking("chromedriver answers", Duration::from_secs(20), || {
            b.call("GET", "/status", None).is_ok_and(|v| v["value"]["ready"] == json!(true))
        });
        let profile = b._profile.path().display().to_string();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--hide-scrollbars", "--force-device-scale-factor=1",
                         format!("--user-data-dir={profile}")]
            }
        }}});
        let started = b.call("POST", "/session", Some(caps)).expect("a browser session");
        b.session = started["value"]["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; the answer's JSON, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let (head, body) = read_answer(&mut s)?;
        let body = String::from_utf8_lossy(&body).to_string();
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if head.starts_with("HTTP/1.1 2") {
            Ok(v)
        } else {
            Err(format!("{} {}", v["value"]["error"], v["value"]["message"]))
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    pub fn go(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The page's text as a person reads it.
    pub fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : '';", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element a CSS selector finds (the test fails when there is none).
    pub fn find(&self, css: &str) -> Element {
        let v = self.session_call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        Element(v["value"][ELEMENT].as_str().unwrap_or_else(|| panic!("no element `{css}`: {v}")).to_string())
    }

    /// How many elements a CSS selector finds.
    pub fn count(&self, css: &str) -> usize {
        let v = self.session_call("POST", "/elements", Some(json!({ "using": "css selector", "value": css })));
        v["value"].as_array().map_or(0, Vec::len)
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Type into a field (after clearing it).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.session_call("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
        self.session_call("POST", &format!("/element/{}/value", e.0), Some(json!({ "text": text })));
    }

    /// Run a script in the page; `args` may hold elements (`Element::arg`).
    pub fn script(&self, body: &str, args: Value) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": body, "args": args })))["value"].clone()
    }

    /// Wait until the page's text holds `what`; the text then.
    pub fn wait_for_text(&self, what: &str, limit: Duration) -> String {
        let mut text = String::new();
        let seen = super::holds_within_blocking(limit, || {
            text = self.text();
            text.contains(what)
        });
        assert!(seen, "the page never said `{what}` within {limit:?}; it says:\n{text}");
        text
    }

    /// Wait until a CSS selector finds an element.
    pub fn wait_for(&self, css: &str, limit: Duration) {
        super::wait_until_blocking(&format!("an element `{css}`"), limit, || self.count(css) > 0);
    }

    /// A PNG of the window, written to `to`.
    pub fn screenshot(&self, to: &Path) {
        let v = self.session_call("GET", "/screenshot", None);
        let png = base64_decode(v["value"].as_str().expect("a screenshot"));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(to, png).expect("write the screenshot");
    }

    /// Where the screenshots go: `docs/screenshots` when `OPPTY_SCREENSHOTS` is set (to refresh
    /// the committed ones), else the target directory.
    pub fn screenshot_dir() -> PathBuf {
        if std::env::var_os("OPPTY_SCREENSHOTS").is_some() {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots"))
        } else {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots"))
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page.
pub struct Element(String);

impl Element {
    /// The element as a script's argument.
    pub fn arg(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

/// One HTTP/1.1 answer: its head, and its body read to its length (chromedriver keeps the
/// connection open whatever the request says, so the body's end is what its head says).
fn read_answer(s: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the driver closed the connection before answering".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut body = raw[head_end + 4..].to_vec();
    let lower = head.to_ascii_lowercase();
    let length =
        lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if let Some(n) = length {
        body.truncate(n);
    }
    Ok((head, if chunked { unchunk(&body) } else { body }))
}

fn unchunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
        let tail = &rest[eol + 2..];
        if n == 0 || tail.len() < n {
            break;
        }
        out.extend_from_slice(&tail[..n]);
        rest = tail[n..].strip_prefix(b"\r\n").unwrap_or(&tail[n..]);
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
