//! Rule set versions: `<sequence>-<hash>`. The hash is a canonical digest of what the set was
//! compiled from (the files' names and texts, and what the CRM's directory said), so the same
//! inputs give the same hash in any process and on any version of our dependencies; the sequence
//! only grows, within a process and across restarts.
//!
//! Owns the version text. It must not read files or the database.

use sha2::{Digest, Sha256};

use super::locate::Source;
use super::Directory;
use crate::engine::Engine;

/// Rule set versions: a sequence that only grows within this process, and continues after the
/// last version the database recorded (see [`continue_versions_after`]).
static NEXT_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The sequence number of a version (`<sequence>-<hash>`).
pub fn version_sequence(version: &str) -> Option<u64> {
    version.split_once('-')?.0.parse().ok()
}

/// Versions never repeat across restarts: continue the sequence after `last` (the last version
/// recorded by a previous process) and, when `current` is not newer, give it the next number.
pub fn continue_versions_after(last: u64, current: &Engine) -> Option<Engine> {
    use std::sync::atomic::Ordering::SeqCst;
    NEXT_SEQUENCE.fetch_max(last.saturating_add(1), SeqCst);
    if version_sequence(&current.version).is_some_and(|s| s > last) {
        return None;
    }
    let version = format!("{}-{}", NEXT_SEQUENCE.fetch_add(1, SeqCst), current.hash);
    Some(Engine { version, ..current.clone() })
}

/// The digest of a rule set's inputs: every file's name and text, in order, then what the CRM's
/// directory said, each part sorted and written field by field (never through `Debug`, whose
/// output a dependency may change and a hash set prints in any order).
pub(super) fn fingerprint(files: &[Source], directory: &Directory) -> String {
    let mut h = Sha256::new();
    for src in files {
        h.update(src.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        h.update([0]);
        h.update(&src.text);
        h.update([0]);
    }
    let mut active: Vec<&String> = directory.active.iter().flatten().collect();
    active.sort();
    for a in active {
        h.update(a);
        h.update([1]);
    }
    let mut rules: Vec<_> = directory.membership_rules.iter().collect();
    rules.sort_by(|a, b| (&a.team, &a.member).cmp(&(&b.team, &b.member)));
    for m in rules {
        h.update(&m.team);
        h.update([0]);
        h.update(&m.member);
        h.update([0, u8::from(m.paused)]);
        match m.cap {
            Some((max, per)) => {
                h.update([1]);
                h.update(max.to_le_bytes());
                h.update(per.to_le_bytes());
            }
            None => h.update([0]),
        }
        h.update([4]);
    }
    let mut memberships = directory.memberships.clone();
    memberships.sort();
    for (t, m) in &memberships {
        h.update(t);
        h.update([2]);
        h.update(m);
        h.update([3]);
    }
    let mut terr: Vec<&super::CrmTerritory> = directory.territories.iter().collect();
    terr.sort_by(|a, b| a.id.cmp(&b.id));
    for t in terr {
        for part in [t.id.as_str(), t.name.as_str(), t.parent.as_deref().unwrap_or("\u{1}")] {
            h.update(part);
            h.update([5]);
        }
        for a in &t.aliases {
            h.update(a);
            h.update([6]);
        }
        h.update([7]);
    }
    let mut covered = directory.team_territories.clone();
    covered.sort();
    for (team, t) in &covered {
        h.update(team);
        h.update([8]);
        h.update(t);
        h.update([9]);
    }
    let mut kpis: Vec<(&String, &f64)> = directory.kpi.iter().collect();
    kpis.sort_by(|a, b| a.0.cmp(b.0));
    for (m, k) in kpis {
        h.update(m);
        h.update(k.to_le_bytes());
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The next version of this process for a set with this hash.
pub(super) fn next(hash: &str) -> String {
    format!("{}-{hash}", NEXT_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}
