//! Territories: a tree (country › province › district › ward) of ids, names and aliases; every
//! parent known, no cycles, an alias naming one territory.

use std::collections::HashMap;

use super::{Ctx, Resolver};
use crate::format::RawTerritory;
use engine::Territories;

impl Resolver<'_> {
    pub(super) fn territories(&mut self, territories: &[(usize, RawTerritory)]) {
        self.crm_territories();
        let terr = &mut self.terr;
        for (_, t) in territories {
            let code = t.id.trim().to_lowercase();
            if !terr.index.contains_key(&code) {
                terr.index.insert(code.clone(), terr.codes.len() as u32);
                terr.codes.push(code);
                terr.written.push(t.id.trim().to_string());
                terr.parent.push(None);
            }
        }
        for (fi, t) in territories {
            let Some(p) = &t.parent else { continue };
            match terr.index.get(&p.trim().to_lowercase()) {
                Some(pi) => {
                    let me = terr.index[&t.id.trim().to_lowercase()];
                    terr.parent[me as usize] = Some(*pi);
                }
                None => self.cx.err(
                    *fi,
                    p,
                    "territory.parent",
                    format!("unknown territory `{p}`; define it with [[territory]] id = \"{p}\""),
                ),
            }
        }
        territory_cycles(&mut self.cx, territories, terr);
        territory_names(&mut self.cx, territories, terr);
    }

    /// The CRM's tree (`directory.territories`), before the files' territories: every node,
    /// then the parents (an unknown one, or a cycle, is an error naming the config key), then
    /// names and aliases (one that names two territories names neither, like a name two wards
    /// share). A file's `[[territory]]` of the same id may then add aliases or set another parent.
    fn crm_territories(&mut self) {
        const KEY: &str = "directory.territories";
        let tree = &self.directory.territories;
        let terr = &mut self.terr;
        for t in tree {
            let code = t.id.to_lowercase();
            if !terr.index.contains_key(&code) {
                terr.index.insert(code.clone(), terr.codes.len() as u32);
                terr.codes.push(code);
                terr.written.push(t.id.clone());
                terr.parent.push(None);
            }
        }
        for t in tree {
            let Some(p) = &t.parent else { continue };
            let me = terr.index[&t.id.to_lowercase()] as usize;
            match terr.index.get(&p.to_lowercase()) {
                Some(pi) => terr.parent[me] = Some(*pi),
                None => self.cx.problems.push(format!(
                    "{KEY}: territory `{}` has parent `{p}`, which the query does not return; return every node of the tree",
                    t.id
                )),
            }
        }
        for t in tree {
            let start = terr.index[&t.id.to_lowercase()];
            if let Some(cycle) = cycle_from(terr, start) {
                self.cx.problems.push(format!("{KEY}: territories {cycle} form a cycle in the CRM's tree"));
            }
        }
        let mut names: HashMap<String, Vec<u32>> = HashMap::new();
        for t in tree {
            let node = terr.index[&t.id.to_lowercase()];
            for n in std::iter::once(&t.name).chain(&t.aliases) {
                let n = n.trim().to_lowercase();
                if !n.is_empty() && !terr.index.contains_key(&n) {
                    names.entry(n).or_default().push(node);
                }
            }
        }
        for (name, mut nodes) in names {
            nodes.dedup();
            if let [node] = nodes[..] {
                terr.index.insert(name, node);
            }
        }
    }

    /// The territories the CRM says the team with `crm_id` covers (`directory.team_territories`).
    pub(super) fn crm_team_territories(&mut self, crm_id: Option<&str>) -> Vec<u32> {
        let Some(crm_id) = crm_id else { return Vec::new() };
        let mut out = Vec::new();
        for (team, code) in self.directory.team_territories.iter().filter(|(t, _)| t == crm_id) {
            match self.terr.index.get(&code.to_lowercase()) {
                Some(n) => out.push(*n),
                None => self.cx.problems.push(format!(
                    "directory.team_territories: team `{team}` covers `{code}`, which is neither in the CRM's \
                     territories nor in the rule files"
                )),
            }
        }
        out
    }

    /// The node a territory id, name or alias names.
    pub(super) fn territory_ref(&mut self, fi: usize, key: &str, code: &str) -> Option<u32> {
        match self.terr.index.get(&code.trim().to_lowercase()) {
            Some(n) => Some(*n),
            None => {
                self.cx.err(
                    fi,
                    code,
                    key,
                    format!("unknown territory `{code}`; define it with [[territory]] id = \"{code}\""),
                );
                None
            }
        }
    }

    /// Every territory of a list, by reference.
    pub(super) fn territory_refs(&mut self, fi: usize, key: &str, codes: &[String]) -> Vec<u32> {
        codes.iter().filter_map(|t| self.territory_ref(fi, key, t)).collect()
    }
}

/// The cycle of parents `start` runs into, as "`a` → `b` → `a`" (cut, so it is reported once),
/// or `None`.
fn cycle_from(terr: &mut Territories, start: u32) -> Option<String> {
    let mut path = vec![start];
    let mut cur = terr.parent[start as usize];
    while let Some(c) = cur {
        if let Some(pos) = path.iter().position(|p| *p == c) {
            let names: Vec<String> =
                path[pos..].iter().chain([&c]).map(|n| format!("`{}`", terr.codes[*n as usize])).collect();
            terr.parent[c as usize] = None;
            return Some(names.join(" → "));
        }
        path.push(c);
        cur = terr.parent[c as usize];
    }
    None
}

/// Each cycle of territory parents is one error, naming the whole loop once (not once per member
/// of it); the loop is then cut, so nothing else reports it again.
fn territory_cycles(cx: &mut Ctx<'_>, territories: &[(usize, RawTerritory)], terr: &mut Territories) {
    let mut done = vec![false; terr.codes.len()];
    let mut names: Vec<&str> = terr.codes.iter().map(String::as_str).collect();
    for (_, t) in territories {
        names[terr.index[&t.id.trim().to_lowercase()] as usize] = t.id.trim();
    }
    for (fi, t) in territories {
        let start = terr.index[&t.id.trim().to_lowercase()];
        let mut path = vec![start];
        let mut cur = terr.parent[start as usize];
        while let Some(c) = cur {
            if done[c as usize] {
                break;
            }
            if let Some(pos) = path.iter().position(|p| *p == c) {
                let lp: Vec<&str> = path[pos..].iter().chain([&c]).map(|n| names[*n as usize]).collect();
                let at = cx.files[*fi].locate_id("territory", &t.id, 0);
                cx.problems.push(format!(
                    "{at}: territory.parent: territories {} form a cycle; give one of them another parent (or none)",
                    lp.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" → ")
                ));
                terr.parent[c as usize] = None;
                break;
            }
            path.push(c);
            cur = terr.parent[c as usize];
        }
        path.iter().for_each(|n| done[*n as usize] = true);
    }
}

/// Names and aliases as other keys of the territory index (values are matched in lower case).
/// An alias that is already another territory's id, name or alias is an error; a name two
/// territories share matches neither (wards repeat across districts): ids and aliases still do.
fn territory_names(cx: &mut Ctx<'_>, territories: &[(usize, RawTerritory)], terr: &mut Territories) {
    let mut names: HashMap<String, Vec<u32>> = HashMap::new();
    for (_, t) in territories {
        let node = terr.index[&t.id.trim().to_lowercase()];
        let name = t.name.trim().to_lowercase();
        if !name.is_empty() && !terr.index.contains_key(&name) {
            names.entry(name).or_default().push(node);
        }
    }
    for (name, nodes) in names {
        if let [node] = nodes[..] {
            terr.index.insert(name, node);
        }
    }
    for (fi, t) in territories {
        let node = terr.index[&t.id.trim().to_lowercase()];
        for a in &t.aliases {
            let key = a.trim().to_lowercase();
            match terr.index.get(&key) {
                Some(other) if *other != node => {
                    let other = terr.codes[*other as usize].clone();
                    cx.err(
                        *fi,
                        a,
                        &format!("territory `{}`.aliases", t.id),
                        format!("`{a}` already names territory `{other}`; an alias names one territory"),
                    );
                }
                _ => {
                    terr.index.insert(key, node);
                }
            }
        }
    }
}
