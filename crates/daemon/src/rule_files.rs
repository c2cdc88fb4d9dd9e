//! Writing the rule files as a person's tool would (the console's save, `revert`): each file
//! written to a hidden file beside it (the daemon reads no hidden file), synced, then renamed over
//! the original, which keeps its mode; a file set aside is renamed to a hidden name, never
//! deleted; when the rules directory is in a git repository, one commit of exactly those files
//! with the person as author; and a line in the console's journal (who, when, what). It must not
//! judge the rules (callers compile them first) nor touch the database: the daemon sees these
//! writes as it sees any edit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Write `text` to `path` atomically: a reader sees the old text or the new, never half.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("rules");
    let tmp = path.with_file_name(format!(".{name}.writing-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Set `path` aside under a hidden name beside it (`.NAME.WHY`), so the daemon no longer reads
/// it and nothing is lost. Returns the new name.
pub fn set_aside(path: &Path, why: &str) -> std::io::Result<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("rules");
    let to = path.with_file_name(format!(".{name}.{why}"));
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// The renames in `dir` made durable (best effort: some file systems refuse to sync a directory).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// One commit of `files` (written or removed) when `dir` is in a git repository: `who` is the
/// author, oppty-router the committer, `message` the message. Only these paths are committed,
/// whatever else the admin has staged. `Ok(None)` when `dir` is not in a repository.
pub fn commit(dir: &Path, files: &[PathBuf], who: &str, message: &str) -> Result<Option<String>, String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_COMMITTER_NAME", "oppty-router")
            .env("GIT_COMMITTER_EMAIL", "oppty-router@localhost.invalid")
            .output()
    };
    match git(&["rev-parse", "--is-inside-work-tree"]) {
        Ok(o) if o.status.success() && o.stdout.starts_with(b"true") => {}
        _ => return Ok(None),
    }
    let paths: Vec<&str> = files.iter().filter_map(|p| p.to_str()).collect();
    let run = |args: Vec<&str>| -> Result<String, String> {
        let o = git(&args).map_err(|e| format!("git: {e}"))?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(format!("git {}: {}", args[0], String::from_utf8_lossy(&o.stderr).trim()))
        }
    };
    let author = format!("{who} <{who}@oppty-router.invalid>");
    let mut add = vec!["add", "-A", "--"];
    add.extend(&paths);
    run(add)?;
    let mut commit = vec!["commit", "-q", "--no-verify", "--author", &author, "-m", message, "--"];
    commit.extend(&paths);
    run(commit)?;
    run(vec!["rev-parse", "--short", "HEAD"]).map(Some)
}

/// One line of the console's journal (`console.journal`): who did what, when, to which files,
/// and the hash of the rules it is expected to put in force. A journal that cannot be written is
/// logged as an error, never a failed save.
pub fn record(journal: &Path, action: &str, who: &str, files: &[PathBuf], changes: &[String], hash: &str) {
    let line = serde_json::json!({
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "action": action,
        "user": who,
        "files": files,
        "changes": changes,
        "rules_hash": hash,
    });
    let appended =
        std::fs::OpenOptions::new().create(true).append(true).open(journal).and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = appended {
        tracing::error!(journal = %journal.display(), error = %e, "cannot write the console's journal; the change is made");
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    tracing::info!(user = %who, action, files = %names.join(", "), changes = %changes.join("; "), rules_hash = hash, "rules {action}");
}

/// Who runs this command, as the journal and a commit name them: the person behind `sudo`, else
/// the login name.
pub fn person() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_keeps_its_mode_and_no_hidden_file_is_left_and_one_set_aside_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomically(&f, "x = 2\n").expect("written");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "x = 2\n");
        assert_eq!(std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "no temporary file left");
        let aside = set_aside(&f, "reverted").expect("set aside");
        assert_eq!(aside, dir.path().join(".a.toml.reverted"));
        assert_eq!(std::fs::read_to_string(&aside).expect("kept"), "x = 2\n");
    }

    #[test]
    fn in_a_git_repository_one_commit_of_the_files_named_by_their_author() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let o = Command::new("git").arg("-C").arg(dir.path()).args(args).output().expect("git runs");
            assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        assert_eq!(commit(dir.path(), &[], "lan", "x"), Ok(None), "not a repository: no commit");
        std::fs::write(dir.path().join("a.toml"), "x = 1\n").expect("write");
        git(&["init", "-q"]);
        git(&["-c", "user.name=admin", "-c", "user.email=a@b", "add", "."]);
        git(&["-c", "user.name=admin", "-c", "user.email=a@b", "commit", "-qm", "first"]);
        std::fs::write(dir.path().join("notes.txt"), "staged, not ours").expect("write");
        git(&["add", "notes.txt"]);
        std::fs::write(dir.path().join("a.toml"), "x = 2\n").expect("write");
        let hash =
            commit(dir.path(), &[dir.path().join("a.toml")], "lan", "x is 2").expect("committed").expect("a hash");
        let log = git(&["log", "-1", "--format=%h|%an|%cn|%s", "--name-only"]);
        assert!(log.starts_with(&format!("{hash}|lan|oppty-router|x is 2")), "{log}");
        assert!(log.contains("a.toml") && !log.contains("notes.txt"), "only the file named: {log}");
        assert!(
            git(&["diff", "--cached", "--name-only"]).contains("notes.txt"),
            "the admin's staged file stays staged"
        );
    }

    #[test]
    fn the_journal_gets_a_json_line_per_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("journal.jsonl");
        record(&journal, "save", "lan", &[dir.path().join("a.toml")], &["one".into()], "abc");
        record(&journal, "revert", "minh", &[], &[], "def");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object a line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0]["user"].as_str(), lines[0]["action"].as_str()), (Some("lan"), Some("save")));
        assert_eq!(lines[1]["rules_hash"].as_str(), Some("def"));
    }
}
