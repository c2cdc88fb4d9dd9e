//! A draft saved: its changed files written atomically (`oppty_router::rule_files`), but only when
//! nobody changed the files on disk since the draft began; then, when the rules directory is in a
//! git repository, one commit of those files with the editor as author and the changes as
//! message. It must not judge the rules (the caller compiled the draft as the daemon will) nor
//! touch the database: the daemon sees the save as it sees any edit.

use std::path::{Path, PathBuf};

use oppty_router::rule_files;

use crate::drafts::Draft;

/// What a save did.
#[derive(Debug)]
pub struct Saved {
    pub files: Vec<PathBuf>,
    /// The commit made (its short hash), none when the directory is not in a git repository, or
    /// why the commit failed (the files are saved all the same).
    pub commit: Result<Option<String>, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(
        "{}: changed on disk since your draft began (someone else saved, or a hand edit); nothing was saved: discard the draft and make your change again",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Changed(Vec<PathBuf>),
    #[error("the rules directory cannot be read: {0}; nothing was saved")]
    Unreadable(String),
    #[error("{file}: cannot be written: {source} (the files before it were saved: {saved})")]
    Write { file: PathBuf, source: std::io::Error, saved: String },
    #[error("nothing to save: the draft changes nothing")]
    Nothing,
}

/// Write `draft`'s changed files into `dir`, as `who`.
pub fn save(dir: &Path, draft: &Draft, who: &str) -> Result<Saved, SaveError> {
    let now = rules::read_files(dir).map_err(|e| SaveError::Unreadable(e.to_string()))?;
    let changed_on_disk = changed_since(&draft.base, &now);
    if !changed_on_disk.is_empty() {
        return Err(SaveError::Changed(changed_on_disk));
    }
    let changed = draft.changed();
    if changed.is_empty() {
        return Err(SaveError::Nothing);
    }
    let mut files = Vec::new();
    for (path, text) in changed {
        rule_files::write_atomically(path, text).map_err(|source| SaveError::Write {
            file: path.clone(),
            source,
            saved: if files.is_empty() { "none".into() } else { names(&files) },
        })?;
        files.push(path.clone());
    }
    rule_files::sync_dir(dir);
    let message =
        format!("{} (oppty-router console, by {who})\n\n{}", summary(&draft.changes), draft.changes.join("\n"));
    let commit = rule_files::commit(dir, &files, who, &message);
    Ok(Saved { files, commit })
}

/// The files whose text on disk is not what the draft began from (added, removed or edited).
fn changed_since(base: &[(PathBuf, String)], now: &[(PathBuf, String)]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = base.iter().filter(|f| !now.contains(f)).map(|(p, _)| p.clone()).collect();
    for (p, _) in now {
        if !base.iter().any(|(b, _)| b == p) {
            out.push(p.clone());
        }
    }
    out
}

fn names(files: &[PathBuf]) -> String {
    files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A commit's first line: the one change, or how many.
pub fn summary(changes: &[String]) -> String {
    match changes {
        [one] => one.clone(),
        many => format!("{} changes to the rules", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<(PathBuf, String)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).expect("write");
        }
        let read = rules::read_files(dir.path()).expect("read");
        (dir, read)
    }

    #[test]
    fn a_save_writes_only_the_changed_file_keeping_its_mode_and_leaves_no_hidden_file() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, files) = dir_with(&[("a.toml", "x = 1\n"), ("b.toml", "y = 2\n")]);
        let b = dir.path().join("b.toml");
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let mut d = Draft::of(files);
        d.files[1].1 = "y = 3 # changed\n".into();
        d.changes.push("y changed".into());
        let saved = save(dir.path(), &d, "lan").expect("saved");
        assert_eq!(saved.files, vec![b.clone()]);
        assert_eq!(std::fs::read_to_string(&b).expect("read"), "y = 3 # changed\n");
        assert_eq!(std::fs::metadata(&b).expect("meta").permissions().mode() & 0o777, 0o640);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").filter_map(|e| e.ok()).collect();
        assert_eq!(left.len(), 2, "no temporary file left behind");
        assert!(matches!(saved.commit, Ok(None)), "not a git repository: no commit");
    }

    #[test]
    fn a_file_changed_on_disk_since_the_draft_began_is_named_and_nothing_is_written() {
        let (dir, files) = dir_with(&[("a.toml", "x = 1\n"), ("b.toml", "y = 2\n")]);
        let mut d = Draft::of(files);
        d.files[0].1 = "x = 5\n".into();
        std::fs::write(dir.path().join("b.toml"), "y = 2 # a hand edit\n").expect("hand edit");
        let err = save(dir.path(), &d, "lan").expect_err("refused");
        assert!(matches!(&err, SaveError::Changed(f) if f == &vec![dir.path().join("b.toml")]), "{err}");
        assert!(err.to_string().contains("nothing was saved"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("a.toml")).expect("read"), "x = 1\n");
        assert!(matches!(
            save(dir.path(), &Draft::of(rules::read_files(dir.path()).expect("read")), "lan"),
            Err(SaveError::Nothing)
        ));
    }
}
