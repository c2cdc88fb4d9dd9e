//! Password guessing slowed down: after `limit` failed logins for one name within `window`, that
//! name's logins are refused (429) until `window` after its latest failure, whatever the password;
//! a login that succeeds clears the count. It must not check passwords (`accounts` does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    map: Mutex<HashMap<String, (u32, Instant)>>,
    limit: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Throttle {
        Throttle { map: Mutex::new(HashMap::new()), limit, window }
    }

    fn key(name: &str) -> String {
        name.trim().to_lowercase()
    }

    /// How long `name` must wait before its next try, when it must.
    pub fn wait(&self, name: &str) -> Option<Duration> {
        let map = oppty_router::held::held(&self.map);
        let (count, last) = map.get(&Self::key(name))?;
        let since = last.elapsed();
        (*count >= self.limit && since < self.window).then(|| self.window - since)
    }

    /// A failed login for `name`.
    pub fn failed(&self, name: &str) {
        let mut map = oppty_router::held::held(&self.map);
        let window = self.window;
        map.retain(|_, (_, last)| last.elapsed() < window);
        let entry = map.entry(Self::key(name)).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    /// A login for `name` succeeded.
    pub fn succeeded(&self, name: &str) {
        oppty_router::held::held(&self.map).remove(&Self::key(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_back_after_its_limit_of_failures_and_freed_by_a_success() {
        let t = Throttle::new(3, Duration::from_secs(600));
        for _ in 0..2 {
            t.failed("Lan");
        }
        assert_eq!(t.wait("lan"), None, "two failures: still free");
        t.failed(" LAN ");
        let wait = t.wait("lan").expect("held back after three, whatever the letter case");
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600), "{wait:?}");
        assert_eq!(t.wait("minh"), None, "another name is free");
        t.succeeded("lan");
        assert_eq!(t.wait("lan"), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t = Throttle::new(1, Duration::from_millis(0));
        t.failed("lan");
        assert_eq!(t.wait("lan"), None, "a zero window holds nobody back");
    }
}
