//! Where something is written in a rule file: a file's text kept for messages, and the
//! `file:line:column` of a definition, a key below it, or a value, for compile-time messages.
//!
//! Positions come from the parsers' own spans: `tree::spots` walks the file as toml_edit or
//! serde_json read it and records every key and value with its key path (`pipeline[0].rule[2].when_full`)
//! and where each is written, in file order. Nothing here searches the text: a value written in a
//! comment, or the same words under another key, is never taken for the one meant. It must not
//! judge what it finds.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::tree::{last_name, spots, Spot};

/// The spots of a file by string value (in file order) and by key path.
#[derive(Default)]
struct Index {
    by_text: std::collections::HashMap<String, Vec<usize>>,
    by_path: std::collections::BTreeMap<String, usize>,
}

/// One file's text, kept for messages, and (once a message needs them) its spots.
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    spots: OnceLock<Vec<Spot>>,
    /// The spots by string value and by key path, so a file with thousands of problems finds
    /// each one's place by a lookup, not a scan.
    index: OnceLock<Index>,
    /// Where each line starts (built the first time a message needs a position): a file with
    /// thousands of problems finds each one's line by a binary search, not a scan.
    lines: OnceLock<Vec<usize>>,
}

impl Source {
    pub(crate) fn new(path: PathBuf, text: String) -> Source {
        Source { path, text, spots: OnceLock::new(), index: OnceLock::new(), lines: OnceLock::new() }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.path.extension().and_then(|e| e.to_str()) == Some("json")
    }

    /// Every key and value of the file in file order (read again from the text the first time a
    /// message needs a position: compiling a good set never pays for it).
    fn spots(&self) -> &[Spot] {
        self.spots.get_or_init(|| spots(self.is_json(), &self.text))
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let mut ix = Index::default();
            for (i, s) in self.spots().iter().enumerate() {
                if let Some(t) = &s.text {
                    ix.by_text.entry(t.clone()).or_default().push(i);
                }
                ix.by_path.insert(s.path.clone(), i);
            }
            ix
        })
    }

    /// The spots whose string value is `text`, in file order.
    fn valued<'a>(&'a self, text: &str) -> impl Iterator<Item = &'a Spot> + Clone + 'a {
        let spots = self.spots();
        self.index().by_text.get(text).into_iter().flatten().map(move |i| &spots[*i])
    }

    /// The definitions `id = "<id>"` (or `"id": "<id>"`), in order.
    fn definitions<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Spot> + 'a {
        self.valued(id).filter(|s| s.is_definition())
    }

    pub(crate) fn at(&self, off: usize) -> String {
        let (l, c) = self.line_col(off);
        format!("{}:{l}:{c}", self.path.display())
    }

    /// [`crate::text::line_col`] through the file's line index.
    pub(crate) fn line_col(&self, off: usize) -> (usize, usize) {
        let starts = self.lines.get_or_init(|| {
            let ends = self.text.bytes().enumerate().filter(|(_, b)| *b == b'\n');
            std::iter::once(0).chain(ends.map(|(i, _)| i + 1)).collect()
        });
        let mut off = off.min(self.text.len());
        while !self.text.is_char_boundary(off) {
            off -= 1;
        }
        let line = starts.partition_point(|s| *s <= off);
        let start = starts[line.saturating_sub(1)];
        (line, self.text[start..off].chars().count() + 1)
    }

    fn at_or_file(&self, off: Option<usize>) -> String {
        off.map_or_else(|| self.path.display().to_string(), |o| self.at(o))
    }

    /// `file:line:column` of the `nth` (0-based) definition of `id` in `section` (`member`, …).
    pub(crate) fn locate_id(&self, section: &str, id: &str, nth: usize) -> String {
        let prefix = format!("{section}[");
        match self.definitions(id).filter(|s| s.path.starts_with(&prefix)).nth(nth) {
            Some(s) => self.at_or_file(s.value_at),
            None => self.locate(id, section),
        }
    }

    /// `file:line:column` of the key `key` written inside the definition of `owner` (the first
    /// one, in file order, at any depth below it); else of that definition.
    pub(crate) fn locate_key(&self, owner: &str, key: &str) -> String {
        let Some(def) = self.definitions(owner).next() else { return self.locate(owner, key) };
        let inside = format!("{}.", def.path.trim_end_matches(".id"));
        let spots = self.spots();
        let found = self
            .index()
            .by_path
            .range(inside.clone()..)
            .take_while(|(p, _)| p.starts_with(&inside))
            .map(|(_, i)| *i)
            .filter(|i| spots[*i].name() == key && spots[*i].key_at.is_some())
            .min()
            .map(|i| &spots[i]);
        self.at_or_file(found.and_then(|s| s.key_at).or(def.value_at))
    }

    /// `file:line:column` of the string value `needle`: the first written under a key named as
    /// `key` ends (`pipeline `p`.rule `r`.when_full` → `when_full`), else the first anywhere, else
    /// the file alone.
    pub(crate) fn locate(&self, needle: &str, key: &str) -> String {
        let hint = last_name(key);
        let mut values = self.valued(needle);
        let first = values.clone().next();
        let named = values.find(|s| s.name() == hint);
        self.at_or_file(named.or(first).and_then(|s| s.value_at))
    }

    /// A file with nothing in it but blanks (and, in TOML, comments): most often a save in progress
    /// (an editor that truncates, then writes). It is refused, so the set never loses that file's
    /// definitions mid-save.
    pub(crate) fn is_blank(&self) -> bool {
        let json = self.is_json();
        self.text.lines().map(str::trim).all(|l| l.is_empty() || (!json && l.starts_with('#')))
    }
}

/// Where each of `values` is written in the files a set was compiled from, as `(file:line:column,
/// key path)`: its definitions (`member[3].id`) first, then every other place it is named (a
/// team's `members`, a `fallback_owner`), in file order. An id is matched as the rules read it (a
/// uuid in any letter case). Each file is read once, whatever the number of values.
pub fn where_written(sources: &[(PathBuf, String)], values: &[&str]) -> Vec<Vec<(String, String)>> {
    let canon = |s: &str| super::IdForm::Canonical.canon(s);
    let mut wanted: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for (i, v) in values.iter().enumerate() {
        wanted.entry(canon(v)).or_default().push(i);
    }
    let (mut defs, mut uses) = (vec![Vec::new(); values.len()], vec![Vec::new(); values.len()]);
    for (path, text) in sources {
        let src = Source::new(path.clone(), text.clone());
        for s in src.spots() {
            let Some(all) = s.text.as_deref().and_then(|t| wanted.get(&canon(t))) else { continue };
            let place = (src.at_or_file(s.value_at), s.path.clone());
            for &i in all {
                if s.is_definition() { &mut defs[i] } else { &mut uses[i] }.push(place.clone());
            }
        }
    }
    defs.iter_mut().zip(&mut uses).for_each(|(d, u)| d.append(u));
    defs
}
