//! What a batch records beside the owners: the opportunities left unowned (`unrouted`), each
//! distinct explanation stored once by key (the keys a committed batch stored are remembered), and
//! the audit's columns, one array per column. It must not decide anything.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use crate::db::prepared::Prepared;
use crate::engine::Outcome;
use crate::held::held;

use super::skips;

/// What a batch left unowned (with why), and what it owned, saw closed or gone: the `unrouted`
/// table's changes. The last word about an opportunity in the batch wins.
#[derive(Default)]
pub(super) struct Unrouted {
    pub(super) clear: Vec<String>,
    pub(super) park: HashMap<String, (&'static str, String, String)>,
}

impl Unrouted {
    pub(super) fn clear(&mut self, id: &str) {
        self.park.remove(id);
        self.clear.push(id.to_string());
    }

    pub(super) fn note(&mut self, id: &str, d: &crate::engine::Decision) {
        let ex = &d.explanation;
        let parked = match d.outcome {
            Outcome::Held => {
                let why = ex.held.as_deref().unwrap_or("held");
                Some(("held", why.split("; held until").next().unwrap_or(why).to_string()))
            }
            Outcome::Unassigned => {
                let why = ex.fallback.as_deref().unwrap_or("no rule yielded anybody");
                Some(("unassigned", ex.note.as_ref().map_or_else(|| why.to_string(), |n| format!("{n}; {why}"))))
            }
            _ => None,
        };
        match parked {
            Some((outcome, reason)) => {
                self.park.insert(id.to_string(), (outcome, reason, d.pipeline.clone()));
            }
            None => self.clear(id),
        }
    }

    /// The write statement refused a row nobody has: left unowned until it is fixed (`backfill`
    /// queues such rows again).
    pub(super) fn unwritten(&mut self, id: &str, pipeline: &str) {
        self.park.insert(id.to_string(), ("unwritten", skips::REFUSED.to_string(), pipeline.to_string()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.clear.is_empty() && self.park.is_empty()
    }

    /// `(ids to clear, (ids, outcomes, reasons, pipelines) to park)`, disjoint.
    #[allow(clippy::type_complexity)]
    pub(super) fn into_columns(self) -> (Vec<String>, (Vec<String>, Vec<&'static str>, Vec<String>, Vec<String>)) {
        let clear: Vec<String> = self.clear.into_iter().filter(|id| !self.park.contains_key(id)).collect();
        let mut park = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, (outcome, reason, pipeline)) in self.park {
            park.0.push(id);
            park.1.push(outcome);
            park.2.push(reason);
            park.3.push(pipeline);
        }
        (clear, park)
    }
}

/// An explanation's key in the store: the first 16 bytes of the SHA-256 of its JSON text.
pub(super) type ExplanationKey = [u8; 16];

pub(super) fn explanation_key(text: &str) -> ExplanationKey {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The keys of explanations known to be in the store (their batch committed): a batch sends the
/// text of new ones only. Bounded: when full it starts over (a forgotten one is sent again, and the
/// store keeps its first copy).
#[derive(Default)]
pub(super) struct Explained(pub(super) std::sync::Mutex<HashSet<ExplanationKey>>);

impl Explained {
    const MAX: usize = 100_000;

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ExplanationKey>> {
        held(&self.0)
    }

    /// These were committed.
    pub(super) fn learn(&self, keys: Vec<ExplanationKey>) {
        let mut known = self.lock();
        if known.len() + keys.len() > Self::MAX {
            known.clear();
        }
        known.extend(keys);
    }
}

#[derive(Default)]
pub(super) struct AuditCols {
    pub(super) opp: Vec<String>,
    pub(super) owner: Vec<Option<String>>,
    pub(super) team: Vec<Option<String>>,
    pub(super) previous: Vec<Option<String>>,
    pub(super) outcome: Vec<String>,
    pub(super) pipeline: Vec<String>,
    pub(super) rule: Vec<Option<String>>,
    /// Each row's explanation, as JSON text, and its key.
    pub(super) explanation: Vec<String>,
    pub(super) key: Vec<ExplanationKey>,
    pub(super) event_at: Vec<DateTime<Utc>>,
    /// What each decision saw (`engine::seen`, JSON), when it was a routing decision.
    pub(super) seen: Vec<Option<String>>,
}

impl AuditCols {
    /// The rows whose `keep` is true.
    pub(super) fn retain(self, keep: &[bool]) -> AuditCols {
        fn pick<T>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
            v.into_iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| x).collect()
        }
        AuditCols {
            opp: pick(self.opp, keep),
            owner: pick(self.owner, keep),
            team: pick(self.team, keep),
            previous: pick(self.previous, keep),
            outcome: pick(self.outcome, keep),
            pipeline: pick(self.pipeline, keep),
            rule: pick(self.rule, keep),
            explanation: pick(self.explanation, keep),
            key: pick(self.key, keep),
            event_at: pick(self.event_at, keep),
            seen: pick(self.seen, keep),
        }
    }

    /// The explanations `known` does not hold, each once, in key order: (keys, texts).
    pub(super) fn new_explanations(&self, known: &Explained) -> (Vec<ExplanationKey>, Vec<&str>) {
        let known = known.lock();
        let mut new: Vec<(ExplanationKey, &str)> = (self.key.iter().zip(&self.explanation))
            .filter(|(k, _)| !known.contains(*k))
            .map(|(k, t)| (*k, t.as_str()))
            .collect();
        new.sort_unstable_by_key(|(k, _)| *k);
        new.dedup_by_key(|(k, _)| *k);
        new.into_iter().unzip()
    }

    /// The rows into `assignments`, by the prepared audit statement, as rule set `version`, with
    /// the explanations the store may not hold yet. Returns the keys of those sent, to learn once
    /// the transaction committed.
    pub(super) async fn insert(
        &self,
        prep: &Prepared,
        tx: &Transaction<'_>,
        sql: &str,
        version: &str,
        known: &Explained,
    ) -> Result<Vec<ExplanationKey>, tokio_postgres::Error> {
        let (new_keys, new_texts) = self.new_explanations(known);
        let keys: Vec<&[u8]> = self.key.iter().map(|k| k.as_slice()).collect();
        let new: Vec<&[u8]> = new_keys.iter().map(|k| k.as_slice()).collect();
        prep.execute(
            tx,
            sql,
            &[
                &self.opp,
                &self.owner,
                &self.team,
                &self.previous,
                &self.outcome,
                &self.pipeline,
                &self.rule,
                &version,
                &keys,
                &self.event_at,
                &new,
                &new_texts,
                &self.seen,
            ],
        )
        .await?;
        Ok(new_keys)
    }

    pub(super) fn push(
        &mut self,
        opp: &str,
        d: &crate::engine::Decision,
        previous: Option<String>,
        event_at: DateTime<Utc>,
        seen: Option<String>,
    ) {
        self.seen.push(seen);
        self.opp.push(opp.to_string());
        self.owner.push(d.owner.clone());
        self.team.push(d.team.clone());
        self.previous.push(previous);
        self.outcome.push(d.outcome.as_str().to_string());
        self.pipeline.push(d.pipeline.clone());
        self.rule.push(d.rule_id.clone());
        let text = serde_json::to_string(&d.explanation).unwrap_or_else(|_| "{}".into());
        self.key.push(explanation_key(&text));
        self.explanation.push(text);
        self.event_at.push(event_at);
    }
}
