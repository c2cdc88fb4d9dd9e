//! The rule sets that were in force, as the router kept them when it put each in force (its files
//! and what the CRM's directory said): when, what changed from the one before (in the reloader's
//! words, and as a diff of the files), and a revert's plan (the files to write so the rules
//! directory holds that version's files again; a file the version did not have is set aside under
//! a hidden name, never deleted). It must not write the database; `apply` writes only the rules
//! directory, through `rule_files`.

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use crate::config::Config;
use crate::db::row::FromRow as _;
use crate::engine::Engine;
use crate::store::{KeptSet, Reads};

/// A version that was in force.
#[derive(Debug, Clone)]
pub struct Version {
    pub version: String,
    pub in_force_at: String,
    /// Its files (path as the daemon read it, text).
    pub files: Vec<(PathBuf, String)>,
    directory: String,
}

/// The `limit` versions put in force last, the latest first.
pub async fn latest(client: &Client, cfg: &Config, limit: i64) -> Result<Vec<Version>, tokio_postgres::Error> {
    let reads = Reads::new(&cfg.router.schema);
    let rows = KeptSet::from_rows(&client.query(&reads.rule_sets_latest, &[&limit]).await?)?;
    Ok(rows
        .into_iter()
        .map(|k| Version {
            files: serde_json::from_str(&k.sources).unwrap_or_default(),
            version: k.version,
            in_force_at: k.in_force_at,
            directory: k.directory,
        })
        .collect())
}

impl Version {
    /// The version compiled again as it was put in force (its files, the CRM's word then).
    pub fn compile(&self, cfg: &Config) -> Result<Engine, String> {
        let mut dir: rules::Directory = serde_json::from_str(&self.directory).map_err(|e| e.to_string())?;
        dir.tests_warn = true;
        dir.unread = false;
        let fields: Vec<String> = cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect();
        rules::compile_files_with(&self.files, &fields, &dir).map_err(|e| e.problems.join("; "))
    }
}

/// What changed from `older` to `newer`, in the reloader's words.
pub fn summary(older: Option<&Engine>, newer: &Engine) -> String {
    match older {
        None => "the first version kept".into(),
        Some(o) => crate::reload::summarize(o, newer).unwrap_or_else(|| "routes alike (comments or layout)".into()),
    }
}

/// What changed in each of `versions` (the latest first) from the one after it in the list, in
/// the reloader's words; said when a version cannot be compiled again to compare.
pub fn summaries(cfg: &Config, versions: &[Version]) -> Vec<String> {
    let compiled: Vec<Option<Engine>> = versions.iter().map(|v| v.compile(cfg).ok()).collect();
    (0..versions.len())
        .map(|i| match (&compiled[i], compiled.get(i + 1)) {
            (Some(new), Some(Some(old))) => summary(Some(old), new),
            (Some(_), Some(None)) => "(the version before cannot be compiled again to compare)".into(),
            (Some(new), None) => summary(None, new),
            (None, _) => "cannot be compiled again".into(),
        })
        .collect()
}

/// The files' differences from `older` to `newer`, as a unified diff by file name.
pub fn diff(older: &[(PathBuf, String)], newer: &[(PathBuf, String)]) -> String {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let mut names: Vec<String> = older.iter().chain(newer).map(|(p, _)| name(p)).collect();
    names.sort();
    names.dedup();
    let text_of = |files: &[(PathBuf, String)], n: &str| {
        files.iter().find(|(p, _)| name(p) == n).map(|(_, t)| t.clone()).unwrap_or_default()
    };
    let mut out = String::new();
    for n in names {
        let (a, b) = (text_of(older, &n), text_of(newer, &n));
        if a != b {
            let d = similar::TextDiff::from_lines(&a, &b);
            out.push_str(&d.unified_diff().context_radius(2).header(&format!("a/{n}"), &format!("b/{n}")).to_string());
        }
    }
    out
}

/// What a revert does to the rules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// Files written with the version's text (new or changed).
    pub write: Vec<(PathBuf, String)>,
    /// Files the version did not have: set aside under a hidden name.
    pub set_aside: Vec<PathBuf>,
}

impl Revert {
    pub fn is_empty(&self) -> bool {
        self.write.is_empty() && self.set_aside.is_empty()
    }

    /// The rule files as the revert leaves them, from the files as they are (`now`).
    pub fn applied_to(&self, now: &[(PathBuf, String)]) -> Vec<(PathBuf, String)> {
        let touched = self.paths();
        let mut files: Vec<(PathBuf, String)> = now.iter().filter(|(p, _)| !touched.contains(p)).cloned().collect();
        files.extend(self.write.iter().cloned());
        files.sort();
        files
    }

    /// Every path the revert touches.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.write.iter().map(|(p, _)| p.clone()).chain(self.set_aside.iter().cloned()).collect()
    }
}

/// The revert of the rules in `dir` (as they are, `now`) to `v`'s files, matched by file name.
pub fn plan(dir: &Path, now: &[(PathBuf, String)], v: &Version) -> Revert {
    let name = |p: &Path| p.file_name().map(|n| n.to_os_string());
    let write = v
        .files
        .iter()
        .filter_map(|(p, text)| {
            let to = dir.join(name(p)?);
            let same = now.iter().any(|(q, t)| *q == to && t == text);
            (!same).then(|| (to, text.clone()))
        })
        .collect();
    let set_aside =
        now.iter().filter(|(p, _)| !v.files.iter().any(|(q, _)| name(q) == name(p))).map(|(p, _)| p.clone()).collect();
    Revert { write, set_aside }
}

/// Carry out a revert to `version`; each file set aside keeps its text under `.NAME.before-VERSION`.
pub fn apply(dir: &Path, r: &Revert, version: &str) -> std::io::Result<()> {
    for (path, text) in &r.write {
        crate::rule_files::write_atomically(path, text)?;
    }
    let why =
        format!("before-{}", version.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>());
    for path in &r.set_aside {
        crate::rule_files::set_aside(path, &why)?;
    }
    crate::rule_files::sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(files: &[(&str, &str)]) -> Version {
        Version {
            version: "3-abc".into(),
            in_force_at: "now".into(),
            files: files
                .iter()
                .map(|(p, t)| (PathBuf::from(format!("/etc/oppty-router/rules/{p}")), t.to_string()))
                .collect(),
            directory: "{}".into(),
        }
    }

    #[test]
    fn a_revert_writes_what_differs_and_sets_aside_what_the_version_lacked_by_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |n: &str| dir.path().join(n);
        std::fs::write(at("a.toml"), "x = 1\n").expect("write");
        std::fs::write(at("b.toml"), "y = 9\n").expect("write");
        std::fs::write(at("c.toml"), "z = 3\n").expect("write");
        let now = rules::read_files(dir.path()).expect("read");
        let v = version(&[("a.toml", "x = 1\n"), ("b.toml", "y = 2\n"), ("d.json", "{}\n")]);
        let r = plan(dir.path(), &now, &v);
        assert_eq!(r.write, vec![(at("b.toml"), "y = 2\n".to_string()), (at("d.json"), "{}\n".to_string())]);
        assert_eq!(r.set_aside, vec![at("c.toml")]);
        apply(dir.path(), &r, "3-abc").expect("applied");
        assert_eq!(std::fs::read_to_string(at("b.toml")).expect("read"), "y = 2\n");
        assert_eq!(std::fs::read_to_string(at(".c.toml.before-3-abc")).expect("kept aside"), "z = 3\n");
        assert!(!at("c.toml").exists());
        let again = rules::read_files(dir.path()).expect("read");
        assert!(plan(dir.path(), &again, &v).is_empty(), "reverted: nothing more to do");
    }

    #[test]
    fn a_diff_names_each_changed_file_and_its_lines() {
        let older = version(&[("a.toml", "x = 1\ny = 2\n"), ("gone.toml", "g = 1\n")]).files;
        let newer = version(&[("a.toml", "x = 1\ny = 3\n")]).files;
        let d = diff(&older, &newer);
        assert!(d.contains("--- a/a.toml\n+++ b/a.toml\n") && d.contains("-y = 2\n+y = 3\n"), "{d}");
        assert!(d.contains("--- a/gone.toml") && d.contains("-g = 1\n"), "{d}");
    }
}
