//! The module graph of each crate, from the paths its files name (`crate::x::Y`, `super::x`, a
//! child module's `x::Y`): an arrow from a file to the module file it takes something from, but
//! not to its own ancestors (a child using its parent's types is the module tree, not an import).
//! Circles are the strongly connected parts with more than one file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::source::{facts, parse, rel, rust_files};

/// A crate's files by module path (`[]` is the root, `["drain", "claims"]` is `drain/claims.rs`).
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    for path in rust_files(root) {
        let relp = path.strip_prefix(root).unwrap_or(&path);
        let mut segs: Vec<String> = relp.iter().map(|s| s.to_string_lossy().to_string()).collect();
        let last = segs.pop().unwrap_or_default();
        match last.as_str() {
            "lib.rs" | "main.rs" | "mod.rs" => {}
            other => segs.push(other.trim_end_matches(".rs").to_string()),
        }
        out.insert(segs, path);
    }
    out
}

/// The module a path in module `at` (declaring child modules `mods`) names, if it is one of the
/// crate's: the longest known prefix of the path made absolute.
fn target(
    at: &[String],
    mods: &[String],
    path: &[String],
    known: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut abs: Vec<String> = match first.as_str() {
        "crate" => path[1..].to_vec(),
        "self" => [at, &path[1..]].concat(),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = at.get(..at.len().checked_sub(ups)?)?;
            [base, &path[ups..]].concat()
        }
        name if mods.iter().any(|m| m == name) && path.len() > 1 => [at, path].concat(),
        _ => return None,
    };
    while !abs.is_empty() && !known.contains_key(&abs) {
        abs.pop();
    }
    Some(abs)
}

/// Arrows between a crate's module files.
pub fn arrows(root: &Path) -> BTreeMap<Vec<String>, Vec<Vec<String>>> {
    let known = modules(root);
    let mut out: BTreeMap<Vec<String>, Vec<Vec<String>>> = BTreeMap::new();
    for (at, path) in &known {
        let f = facts(&parse(path));
        let mut to: Vec<Vec<String>> = f
            .paths
            .iter()
            .filter_map(|(p, _)| target(at, &f.mods, p, &known))
            .filter(|t| t != at && !at.starts_with(t))
            .collect();
        to.sort();
        to.dedup();
        out.insert(at.clone(), to);
    }
    out
}

/// The circles of a graph: each strongly connected part of more than one module (Tarjan).
pub fn circles(graph: &BTreeMap<Vec<String>, Vec<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'g> {
        g: &'g BTreeMap<Vec<String>, Vec<Vec<String>>>,
        index: BTreeMap<&'g Vec<String>, (usize, usize)>,
        stack: Vec<&'g Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    impl<'g> T<'g> {
        fn visit(&mut self, v: &'g Vec<String>) {
            self.index.insert(v, (self.next, self.next));
            self.next += 1;
            self.stack.push(v);
            for w in self.g.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.index[w].1.min(self.index[v].1);
                    self.index.entry(v).and_modify(|e| e.1 = low);
                } else if self.stack.contains(&w) {
                    let low = self.index[w].0.min(self.index[v].1);
                    self.index.entry(v).and_modify(|e| e.1 = low);
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut part = Vec::new();
                while let Some(w) = self.stack.pop() {
                    part.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.out.push(part);
                }
            }
        }
    }
    let mut t = T { g: graph, index: BTreeMap::new(), stack: Vec::new(), next: 0, out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

/// A circle in words: its files.
pub fn words(root: &Path, circle: &[Vec<String>]) -> String {
    let known = modules(root);
    circle.iter().map(|m| known.get(m).map(|p| rel(p)).unwrap_or_else(|| m.join("::"))).collect::<Vec<_>>().join(" ↔ ")
}
