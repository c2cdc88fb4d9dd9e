//! Who is logged in: a random token per session (the cookie), the account's name and role, and
//! the session's CSRF token (every write carries it). Sessions live in this process only and end
//! after an idle spell. It must not check passwords (`accounts` does) nor serve anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::accounts::Role;

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Sent back with every write (a form field or the `x-csrf-token` header).
    pub csrf: String,
    last_seen: Instant,
}

/// The sessions of this console process.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
}

/// The name of the session cookie.
pub const COOKIE: &str = "oppty_console";

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), idle }
    }

    /// A new session for `user`: its token (the cookie's value).
    pub fn open(&self, user: &str, role: Role) -> String {
        let token = random_token();
        let session = Session { user: user.to_string(), role, csrf: random_token(), last_seen: Instant::now() };
        let mut map = self.lock();
        let idle = self.idle;
        map.retain(|_, s| s.last_seen.elapsed() < idle);
        map.insert(token.clone(), session);
        token
    }

    /// The session of this token, if it is one and has not been idle too long.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.lock();
        let s = map.get_mut(token)?;
        if s.last_seen.elapsed() >= self.idle {
            map.remove(token);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    pub fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 32 random bytes from the operating system's generator, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token in a `Cookie` header, if any.
pub fn token_of(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Two secrets compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_until_it_is_closed_or_idle_too_long() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let token = sessions.open("lan", Role::Editor);
        let s = sessions.get(&token).expect("open");
        assert_eq!((s.user.as_str(), s.role), ("lan", Role::Editor));
        assert_eq!(s.csrf.len(), 64, "a CSRF token of its own");
        assert_ne!(s.csrf, token);
        assert!(sessions.get("not a token").is_none());
        sessions.close(&token);
        assert!(sessions.get(&token).is_none());
        let brief = Sessions::new(Duration::ZERO);
        let t = brief.open("lan", Role::Viewer);
        assert!(brief.get(&t).is_none(), "idle past its time");
    }

    #[test]
    fn the_cookie_header_gives_the_session_token_and_nothing_else() {
        assert_eq!(token_of("a=1; oppty_console=abc; b=2"), Some("abc"));
        assert_eq!(token_of("oppty_console_x=abc"), None);
        assert_eq!(token_of("other=1"), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
