//! Members: caps, schedules (their own, or their team's) with their own days out of office,
//! weights, skills; then every member the CRM adds to a team that the files do not define.

use std::collections::HashMap;

use super::{duration, timezone, Resolver};
use crate::format::{CapCountWord, RawCap, RawMember, RawTeam};
use engine::{self, Cap, Window};

impl Resolver<'_> {
    pub(super) fn members(&mut self, members: &[(usize, RawMember)], teams: &[(usize, RawTeam)]) {
        let mut team_schedule: HashMap<&str, &str> = HashMap::new();
        for (_, t) in teams {
            if let Some(s) = &t.schedule {
                for m in &t.members {
                    team_schedule.entry(m.id()).or_insert(s.as_str());
                }
            }
        }
        for (fi, m) in members {
            let key = format!("member `{}`", m.id);
            let caps = self.caps(*fi, &key, m);
            let schedule_id = m.schedule.as_deref().or_else(|| team_schedule.get(m.id.as_str()).copied());
            let Ok(schedule) = self.member_schedule(*fi, &key, m, schedule_id) else { continue };
            if m.weight == Some(0) {
                self.cx.err(
                    *fi,
                    &m.id,
                    &format!("{key}.weight"),
                    "is 0; use at least 1 (pause the member to stop assignments)",
                );
            }
            let territories = self.territory_refs(*fi, &format!("{key}.territories"), &m.territories);
            let accepts = m.accepts.as_ref().and_then(|c| self.cx.cond(*fi, &format!("{key}.accepts"), c));
            let directory = self.directory;
            let sym = &mut self.sym;
            self.members.push(engine::Member {
                id: m.id.as_str().into(),
                name: if m.name.is_empty() { m.id.as_str().into() } else { m.name.as_str().into() },
                active: directory.active.as_ref().is_none_or(|a| a.contains(&m.id)),
                paused: m.paused,
                caps,
                weight: m.weight.unwrap_or(1).max(1),
                kpi: directory.kpi.get(&m.id).copied().or(m.kpi),
                attributes: m.attributes.iter().map(|(k, v)| (sym.intern(k), sym.intern(&v.text()))).collect(),
                products: sym.set(&m.products),
                categories: sym.set(&m.categories),
                territories,
                tags: sym.set(&m.tags),
                schedule,
                rank: 0,
                accepts,
            });
        }
        self.member_index = self.members.iter().enumerate().map(|(i, m)| (m.id.to_string(), i)).collect();
        self.crm_members();
    }

    /// A member's caps: `max_open`, then each `[[member.caps]]`.
    fn caps(&mut self, fi: usize, key: &str, m: &RawMember) -> Vec<Cap> {
        let mut caps = Vec::new();
        if let Some(max) = m.max_open {
            caps.push(Cap { window: Window::Open, max, label: "open".into(), crm_count: false });
        }
        for c in &m.caps {
            let window = match c.per.trim() {
                "open" => Ok(Window::Open),
                "day" => match c.timezone.as_deref().map(timezone) {
                    Some(Ok(tz)) => Ok(Window::Day(tz)),
                    Some(Err(e)) => Err(e),
                    None => Err("a per-day cap needs `timezone` (the day starts at local midnight)".into()),
                },
                other => duration(other).map(|d| {
                    self.history = self.history.max(d);
                    Window::Rolling(d)
                }),
            };
            let crm_count = self.cap_count(fi, key, c, &window);
            match window {
                Ok(w) => caps.push(Cap { window: w, max: c.max, label: c.per.clone(), crm_count }),
                Err(e) => self.cx.err(fi, &c.per, &format!("{key}.caps.per"), e),
            }
        }
        caps
    }

    /// Whether a cap counts the CRM's assignments (`count = "crm"`): only a windowed cap can,
    /// and only with a config that says when the CRM assigns.
    fn cap_count(&mut self, fi: usize, key: &str, c: &RawCap, window: &Result<Window, String>) -> bool {
        let ckey = format!("{key}.caps.count");
        match &c.count {
            None | Some(CapCountWord::Router) => false,
            Some(CapCountWord::Other(o)) => {
                let msg = format!("`{o}` is not a count; use \"router\" (the default) or \"crm\"");
                self.cx.err(fi, o, &ckey, msg);
                false
            }
            Some(CapCountWord::Crm) if matches!(window, Ok(Window::Open)) => {
                let msg = "an open cap always counts the CRM's open opportunities; `count` is for windowed caps";
                self.cx.err(fi, "crm", &ckey, msg);
                false
            }
            Some(CapCountWord::Crm) if self.directory.crm_count_unmapped => {
                let msg = "`count = \"crm\"` needs `opportunity.assigned_at` (the column the CRM sets when it \
                           assigns an owner) or `opportunity.created_at` in the daemon config";
                self.cx.err(fi, "crm", &ckey, msg);
                false
            }
            Some(CapCountWord::Crm) => true,
        }
    }

    /// The member's schedule: the one named (or its team's), and, with days out of office of
    /// its own, a copy of it with those dates added. `Err` when those dates have no schedule.
    fn member_schedule(&mut self, fi: usize, key: &str, m: &RawMember, id: Option<&str>) -> Result<Option<u32>, ()> {
        let schedule = match id {
            Some(s) => match self.schedule_by_id.get(s) {
                Some(s) => Some(*s),
                None => {
                    self.cx.err(fi, s, &format!("{key}.schedule"), format!("unknown schedule `{s}`"));
                    None
                }
            },
            None => None,
        };
        if m.out_of_office.is_empty() {
            return Ok(schedule);
        }
        let Some(base) = schedule else {
            self.cx.err(
                fi,
                &m.id,
                &format!("{key}.out_of_office"),
                "needs a schedule (for the time zone the dates are in)",
            );
            return Err(());
        };
        let mut own = self.schedules[base as usize].clone();
        self.dates(fi, &format!("{key}.out_of_office"), &m.out_of_office, &mut own.out_of_office);
        self.schedules.push(own);
        Ok(Some(self.schedules.len() as u32 - 1))
    }

    /// Members the CRM puts in teams without a `[[member]]` of their own.
    fn crm_members(&mut self) {
        let directory = self.directory;
        for (_, id) in &directory.memberships {
            if self.member_index.contains_key(id) {
                continue;
            }
            self.member_index.insert(id.clone(), self.members.len());
            self.members.push(engine::Member {
                id: id.as_str().into(),
                name: id.as_str().into(),
                active: directory.active.as_ref().is_none_or(|a| a.contains(id)),
                paused: false,
                caps: Vec::new(),
                weight: 1,
                kpi: directory.kpi.get(id).copied(),
                attributes: Vec::new(),
                products: Vec::new(),
                categories: Vec::new(),
                territories: Vec::new(),
                tags: Vec::new(),
                schedule: None,
                rank: 0,
                accepts: None,
            });
        }
    }
}
