//! Fairness since this leader started leading: per team, what each member received and what they
//! could expect by the rules (each decision's entitlement, read from its own explanation by
//! `Engine::entitlement`), and the fairness figure `report` computes from the same sums
//! (`report::Fairness`), published as metrics once a second.
//!
//! It must not decide or read anything: the committed decisions are handed in.

use std::collections::HashMap;
use std::sync::Arc;

use super::Routed;
use crate::report::Fairness;

/// (received, expected) per member of one team.
type TeamShares = HashMap<Arc<str>, (usize, f64)>;

/// (received, expected) per member, per team.
#[derive(Debug, Default)]
pub(super) struct Shares {
    by_team: HashMap<Arc<str>, TeamShares>,
}

impl Shares {
    /// Count one committed decision.
    pub(super) fn add(&mut self, r: &Routed) {
        let (Some(team), Some(owner)) = (&r.team, &r.owner) else { return };
        if r.entitled.is_empty() {
            return;
        }
        if !self.by_team.contains_key(team.as_str()) {
            self.by_team.insert(Arc::from(team.as_str()), TeamShares::default());
        }
        let Some(members) = self.by_team.get_mut(team.as_str()) else { return };
        for (m, share) in &r.entitled {
            members.entry(m.clone()).or_default().1 += share;
        }
        // The owner could receive it, so is among the entitled: counted without a new key.
        if let Some(got) = members.get_mut(owner.as_str()) {
            got.0 += 1;
        } else {
            members.insert(Arc::from(owner.as_str()), (1, 0.0));
        }
    }

    /// Each team's fairness so far, in team id order.
    pub(super) fn fairness(&self) -> Vec<(Arc<str>, Fairness)> {
        let mut out: Vec<(Arc<str>, Fairness)> = self
            .by_team
            .iter()
            .map(|(t, ms)| (t.clone(), Fairness::of(&ms.values().copied().collect::<Vec<_>>())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
