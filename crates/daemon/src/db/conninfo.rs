//! The connection string, read the way libpq reads it: `key=value` pairs (spaces around `=`,
//! single-quoted values with `\'` and `\\` escapes) or a `postgres://` / `postgresql://` URL (user
//! and password in the authority, several `host:port`s, percent-encoding, `?key=value` parameters).
//!
//! Owns turning that text into ordered pairs, the redacted form every message and log line shows
//! (rebuilt from the pairs, so a password cannot survive in any spelling), and the TLS keys that
//! tokio-postgres does not know (`sslmode=verify-ca|verify-full`, `sslrootcert`, `sslcert`, `sslkey`).
//! It must never put the original text, or a value of `password`, into an error.

use std::fmt;

/// Why a connection string could not be read. Never holds a value of the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("missing `=` after `{0}` (write key=value pairs, or a postgres:// URL)")]
    MissingEquals(String),
    #[error("unterminated quoted value for `{0}`")]
    Unterminated(String),
    #[error("bad percent-encoding in the URL's {0}")]
    BadPercent(&'static str),
    #[error("invalid URL: {0}")]
    BadUrl(&'static str),
}

/// A parsed connection string: `(key, value)` in the order written (URL parts first, as libpq).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub pairs: Vec<(String, String)>,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({})", self.redacted())
    }
}

/// Keys whose values are secrets.
const SECRET_KEYS: &[&str] = &["password", "sslpassword"];

impl ConnInfo {
    pub fn parse(text: &str) -> Result<ConnInfo, ConnInfoError> {
        let t = text.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            parse_url(t)
        } else {
            parse_pairs(t)
        }
    }

    /// The last value given for `key` (libpq: a later setting wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Remove every pair for `key`, returning the last value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let last = self.get(key).map(str::to_string);
        self.pairs.retain(|(k, _)| k != key);
        last
    }

    /// The pairs as a `key=value` string that libpq and tokio-postgres read back the same way.
    pub fn to_pairs_string(&self) -> String {
        self.pairs.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect::<Vec<_>>().join(" ")
    }

    /// The same, with secrets replaced by `***`: what messages and logs show.
    pub fn redacted(&self) -> String {
        self.pairs
            .iter()
            .map(
                |(k, v)| {
                    if SECRET_KEYS.contains(&k.as_str()) {
                        format!("{k}=***")
                    } else {
                        format!("{k}={}", quote(v))
                    }
                },
            )
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value quoted only when it needs to be (empty, spaces, quotes, backslashes).
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn parse_pairs(t: &str) -> Result<ConnInfo, ConnInfoError> {
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            return Err(ConnInfoError::MissingEquals(key));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(ConnInfoError::Unterminated(key)),
                    Some('\\') if i + 1 < chars.len() => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        pairs.push((key, value));
    }
    Ok(ConnInfo { pairs })
}

fn percent_decode(s: &str, part: &'static str) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(ConnInfoError::BadPercent(part))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ConnInfoError::BadPercent(part))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::BadPercent(part))
}

fn parse_url(t: &str) -> Result<ConnInfo, ConnInfoError> {
    let rest = t.split_once("://").map(|(_, r)| r).unwrap_or("");
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], Some(&before_query[i + 1..])),
        None => (before_query, None),
    };
    let mut pairs = Vec::new();
    // The password may hold '@' (percent-encoded or not): the authority's last '@' ends it.
    let hostspec = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_string(), percent_decode(user, "user")?));
            }
            if let Some(p) = password {
                pairs.push(("password".to_string(), percent_decode(p, "password")?));
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    if !hostspec.is_empty() {
        for spec in hostspec.split(',') {
            let (host, port) = split_host_port(spec)?;
            hosts.push(percent_decode(host, "host")?);
            ports.push(percent_decode(port, "port")?);
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".to_string(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_string(), ports.join(",")));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_string(), percent_decode(db, "database name")?));
    }
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or(ConnInfoError::BadUrl("a query parameter has no `=`"))?;
        let k = percent_decode(k, "query")?;
        // libpq's URL spelling of hostaddr-less options is the same key.
        pairs.push((k, percent_decode(v, "query")?));
    }
    Ok(ConnInfo { pairs })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(spec: &str) -> Result<(&str, &str), ConnInfoError> {
    if let Some(rest) = spec.strip_prefix('[') {
        let end = rest.find(']').ok_or(ConnInfoError::BadUrl("unterminated `[` in an IPv6 host"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':').unwrap_or("");
        if !after.is_empty() && !after.starts_with(':') {
            return Err(ConnInfoError::BadUrl("unexpected text after an IPv6 host"));
        }
        return Ok((host, port));
    }
    Ok(spec.split_once(':').unwrap_or((spec, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        ConnInfo::parse(text).expect("parses").pairs
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn key_value_forms_libpq_accepts() {
        assert_eq!(pairs("host=/tmp dbname=crm"), vec![p("host", "/tmp"), p("dbname", "crm")]);
        assert_eq!(pairs("  host = db1   password = s3cret "), vec![p("host", "db1"), p("password", "s3cret")]);
        assert_eq!(pairs("password='a b\\'c\\\\d' user=x"), vec![p("password", "a b'c\\d"), p("user", "x")]);
        assert_eq!(pairs("password=a\\ b"), vec![p("password", "a b")]);
        assert_eq!(pairs("password=''"), vec![p("password", "")]);
        assert_eq!(pairs(""), vec![]);
        assert!(matches!(ConnInfo::parse("host"), Err(ConnInfoError::MissingEquals(_))));
        assert!(matches!(ConnInfo::parse("password='open"), Err(ConnInfoError::Unterminated(_))));
    }

    #[test]
    fn url_forms_libpq_accepts() {
        assert_eq!(
            pairs("postgresql://u:p%40ss@db.example.com:6432/crm?sslmode=verify-full&application_name=x"),
            vec![
                p("user", "u"),
                p("password", "p@ss"),
                p("host", "db.example.com"),
                p("port", "6432"),
                p("dbname", "crm"),
                p("sslmode", "verify-full"),
                p("application_name", "x")
            ]
        );
        assert_eq!(
            pairs("postgres://u@h1:5432,h2:5433,[::1]/db"),
            vec![p("user", "u"), p("host", "h1,h2,::1"), p("port", "5432,5433,"), p("dbname", "db")]
        );
        assert_eq!(
            pairs("postgres://%2Fvar%2Frun%2Fpostgresql/crm"),
            vec![p("host", "/var/run/postgresql"), p("dbname", "crm")]
        );
        assert_eq!(
            pairs("postgres:///crm?host=/tmp&password=x"),
            vec![p("dbname", "crm"), p("host", "/tmp"), p("password", "x")]
        );
        assert_eq!(
            pairs("postgres://u:a@b@h/db"),
            vec![p("user", "u"), p("password", "a@b"), p("host", "h"), p("dbname", "db")]
        );
        assert!(ConnInfo::parse("postgres://h/db?x").is_err());
        assert!(ConnInfo::parse("postgres://u:%zz@h").is_err());
    }

    #[test]
    fn the_redacted_form_never_holds_a_password_however_it_was_spelt() {
        let secret = "Sup3r s'cret@%";
        let forms = [
            "host=h password=Sup3r\\ s\\'cret@%".to_string(),
            "host=h password = 'Sup3r s\\'cret@%'".to_string(),
            "host=h   password   =   'Sup3r s\\'cret@%'   user=u".to_string(),
            "postgres://u:Sup3r%20s'cret%40%25@h/db".to_string(),
            "postgresql://u@h/db?password=Sup3r%20s'cret%40%25".to_string(),
            "postgresql://u@h/db?sslpassword=Sup3r%20s'cret%40%25&password=Sup3r%20s'cret%40%25".to_string(),
        ];
        for f in forms {
            let c = ConnInfo::parse(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(c.get("password").or(c.get("sslpassword")), Some(secret), "{f}");
            let shown = c.redacted();
            for piece in ["Sup3r", "cret", "%25", "%20"] {
                assert!(!shown.contains(piece), "{f} shown as {shown}");
            }
            assert!(shown.contains("password=***"), "{shown}");
            assert!(!format!("{c:?}").contains("Sup3r"));
        }
    }

    #[test]
    fn pairs_round_trip_through_their_string_form() {
        let c = ConnInfo::parse("postgres://u:it's%20me@h/db").expect("parses");
        assert_eq!(ConnInfo::parse(&c.to_pairs_string()).expect("again"), c);
        let s: tokio_postgres::Config = c.to_pairs_string().parse().expect("tokio-postgres reads it");
        assert_eq!(s.get_password(), Some(&b"it's me"[..]));
    }
}
