//! Where something is written in a rule file: a file's text kept for messages, and the
//! `file:line:column` of a definition, a key below it, or a value.
//!
//! Owns positions for compile-time messages (parse-time positions come from the parsers' own
//! spans, in `parse`). It must not judge what it finds.

use std::path::PathBuf;

/// One file's text, kept for messages.
pub(in crate::rules) struct Source {
    pub(in crate::rules) path: PathBuf,
    pub(in crate::rules) text: String,
}

impl Source {
    /// Byte offsets of the definitions `id = "<id>"` (or `"id": "<id>"`), in order.
    fn definitions<'a>(&'a self, id: &str) -> impl Iterator<Item = usize> + 'a {
        let quoted = format!("\"{id}\"");
        let text = self.text.as_str();
        text.match_indices(&quoted).map(|(off, _)| off).collect::<Vec<_>>().into_iter().filter(move |off| {
            let before = text[..*off].trim_end();
            before.strip_suffix('=').or_else(|| before.strip_suffix(':')).is_some_and(|b| {
                let b = b.trim_end();
                b.ends_with("id") && !b.ends_with("_id") || b.ends_with("\"id\"")
            })
        })
    }

    pub(in crate::rules) fn at(&self, off: usize) -> String {
        let (l, c) = line_col(&self.text, off);
        format!("{}:{l}:{c}", self.path.display())
    }

    /// `file:line:column` of the `nth` (0-based) definition `id = "<id>"` (or `"id": "<id>"`).
    pub(in crate::rules) fn locate_id(&self, id: &str, nth: usize) -> String {
        match self.definitions(id).nth(nth) {
            Some(off) => self.at(off),
            None => self.locate(id),
        }
    }

    /// `file:line:column` of the key `key` (TOML `key =` or JSON `"key":`) first written after the
    /// definition `id = "<owner>"`; else of that definition.
    pub(in crate::rules) fn locate_key(&self, owner: &str, key: &str) -> String {
        let Some(start) = self.definitions(owner).next() else { return self.locate(owner) };
        let rest = &self.text[start..];
        let found = rest.match_indices(key).map(|(off, _)| off).find(|off| {
            let before = rest[..*off].chars().next_back();
            let after = &rest[off + key.len()..];
            let toml = matches!(before, Some('\n' | ' ' | '{' | ',' | '\t')) && after.trim_start().starts_with('=');
            let json = before == Some('"') && after.strip_prefix('"').is_some_and(|a| a.trim_start().starts_with(':'));
            toml || json
        });
        self.at(start + found.unwrap_or(0))
    }

    /// `file:line:column` of the first occurrence of `needle` (a quoted value), else `file`.
    pub(in crate::rules) fn locate(&self, needle: &str) -> String {
        let quoted = format!("\"{needle}\"");
        match self.text.find(&quoted) {
            Some(off) => self.at(off),
            None => self.path.display().to_string(),
        }
    }

    /// A file with nothing in it but blanks (and, in TOML, comments): most often a save in progress
    /// (an editor that truncates, then writes). It is refused, so the set never loses that file's
    /// definitions mid-save.
    pub(in crate::rules) fn is_blank(&self) -> bool {
        let json = self.path.extension().and_then(|e| e.to_str()) == Some("json");
        self.text.lines().map(str::trim).all(|l| l.is_empty() || (!json && l.starts_with('#')))
    }
}

pub(in crate::rules) fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
    (line, col)
}

pub(in crate::rules) fn line_col_bytes(bytes: &[u8], off: usize) -> (usize, usize) {
    let before = &bytes[..off.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rposition(|b| *b == b'\n').map_or(off + 1, |i| off - i);
    (line, col)
}
