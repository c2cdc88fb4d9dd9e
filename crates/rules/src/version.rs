//! Rule set versions: `<sequence>-<hash>`. The hash is a canonical digest of what the set was
//! compiled from (the files' names and texts, and what the CRM's directory said), so the same
//! inputs give the same hash in any process and on any version of our dependencies; the sequence
//! counts the sets put in force and only grows, within a process and across restarts (a
//! candidate bears the number it would take; one that is refused leaves the sequence as it was).
//!
//! Owns the version text. It must not read files or the database.

use sha2::{Digest, Sha256};

use super::locate::Source;
use super::Directory;
use engine::Engine;

/// The last version put in force by this process (or recorded by the one before): its sequence
/// and hash. Sequences count sets put in force; a candidate is numbered as the next one.
static IN_FORCE: std::sync::Mutex<(u64, String)> = std::sync::Mutex::new((0, String::new()));

fn in_force() -> std::sync::MutexGuard<'static, (u64, String)> {
    IN_FORCE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sequence number of a version (`<sequence>-<hash>`).
pub fn version_sequence(version: &str) -> Option<u64> {
    version.split_once('-')?.0.parse().ok()
}

/// The set as it goes in force: it keeps its version when that is the next in the sequence (or
/// is the very set in force: leading again changes nothing), else it is given the next number.
/// Identical content keeps the version already in force.
pub fn put_in_force(set: &std::sync::Arc<Engine>) -> std::sync::Arc<Engine> {
    let mut last = in_force();
    let seq = version_sequence(&set.version).unwrap_or(0);
    if set.hash == last.1 && last.0 > 0 {
        if seq == last.0 {
            return set.clone();
        }
        let version = format!("{}-{}", last.0, set.hash);
        return std::sync::Arc::new(Engine { version, ..(**set).clone() });
    }
    if seq > last.0 {
        *last = (seq, set.hash.clone());
        return set.clone();
    }
    *last = (last.0 + 1, set.hash.clone());
    std::sync::Arc::new(Engine { version: format!("{}-{}", last.0, set.hash), ..(**set).clone() })
}

/// Versions never repeat across restarts: `last` is the version a previous process recorded in
/// force; the sets this process puts in force from now on are numbered after it (and the same
/// content as `last` keeps its version).
pub fn recorded_in_force(last: &str) {
    let Some(seq) = version_sequence(last) else { return };
    let hash = last.split_once('-').map(|(_, h)| h.to_string()).unwrap_or_default();
    let mut now = in_force();
    if seq >= now.0 {
        *now = (seq, hash);
    }
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

/// A candidate's version: the number the next set put in force takes, and its hash.
pub(super) fn next(hash: &str) -> String {
    format!("{}-{hash}", in_force().0 + 1)
}
