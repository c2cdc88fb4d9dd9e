//! Reading a rules directory: its `*.toml` and `*.json` files in name order, each a regular file of
//! at most [`MAX_RULE_FILE_BYTES`] in UTF-8.
//!
//! Owns file I/O for rule sets. It must not parse or judge what it reads.

use std::path::{Path, PathBuf};

use super::locate::Source;
use super::text::line_col_bytes;
use super::RulesError;

/// The largest rule file read: a bigger one is refused unread (its reading and compiling would
/// hold up reloads, and it is not something an admin edits by hand).
pub const MAX_RULE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Every rule file of `dir`, in name order (hidden files skipped).
pub(super) fn sources(dir: &Path) -> Result<Vec<Source>, RulesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RulesError {
        problems: vec![format!("{}: cannot read the rules directory: {e}", dir.display())],
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml") | Some("json")))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match read_rule_file(&path) {
            Ok(text) => files.push(Source::new(path, text)),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no .toml or .json rule files", dir.display()));
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(RulesError { problems })
    }
}

/// Read one rule file: a regular file (a FIFO or a device named `x.toml` is refused without
/// waiting on it), at most [`MAX_RULE_FILE_BYTES`], in UTF-8.
fn read_rule_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = "is not a regular file (a FIFO, socket or device?); rule files must be regular files";
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular.into());
    }
    let too_big = |n: u64| {
        format!(
            "is {:.1} MiB; rule files are limited to {} MiB (split it into several files)",
            n as f64 / 1048576.0,
            MAX_RULE_FILE_BYTES / 1048576
        )
    };
    if meta.len() > MAX_RULE_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    // Opened without blocking, and checked again: it may have been swapped since.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    if !file.metadata().map_err(|e| format!("cannot read: {e}"))?.is_file() {
        return Err(not_regular.into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_RULE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col_bytes(e.as_bytes(), e.utf8_error().valid_up_to());
        format!("{line}:{col}: is not UTF-8 text; save the file as UTF-8")
    })
}
