//! A lock's value even when a panic elsewhere poisoned it: a panic in the daemon is already an
//! outage, and it must not become a second one at the next lock. Every value behind the daemon's
//! locks is changed whole under its guard (a ledger lent and journaled, a cache of finished
//! entries, counters, a random source, a last error), so what a poisoned lock holds is still
//! good. A leaf: it imports nothing of the crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The guard of `m`, poisoned or not.
pub fn held<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
