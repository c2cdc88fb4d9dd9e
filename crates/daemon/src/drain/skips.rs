//! Why an opportunity queued to route was not written: every such event ends with a record in
//! `skips` (its reason, the owner seen), a count in `oppty_router_skipped_total` once its batch
//! committed, and a line at debug; `explain` and `status` read the records.
//!
//! Owns the reasons, in words, and the columns the batch stores. It reads nothing and writes
//! nothing itself: the batch records the columns with the rest of its work.

use chrono::{DateTime, Utc};

use super::Context;

/// What the write statement refused while the row is unowned and open: not a person's doing, so
/// the opportunity is left unowned (`unrouted`) with this reason.
pub(super) const REFUSED: &str =
    "refused by write_back.statement (it wrote nothing though the row is unowned and open)";

/// Opportunities queued to route that the router did not write, with why, as columns.
#[derive(Default)]
pub(super) struct Skips {
    pub opp: Vec<String>,
    pub reason: Vec<&'static str>,
    pub owner: Vec<Option<String>>,
    pub event_at: Vec<DateTime<Utc>>,
}

impl Skips {
    pub fn push(&mut self, opp: &str, reason: &'static str, owner: Option<String>, event_at: DateTime<Utc>) {
        tracing::debug!(opportunity = %opp, owner = ?owner, reason, "skipped");
        self.opp.push(opp.to_string());
        self.reason.push(reason);
        self.owner.push(owner);
        self.event_at.push(event_at);
    }

    pub fn is_empty(&self) -> bool {
        self.opp.is_empty()
    }
}

/// Why a row read before routing is not routed (`c`: the row as read, `None` when it is gone).
pub(super) fn at_read(c: Option<&Context>) -> &'static str {
    match c {
        None => "gone (deleted from the CRM before it was routed)",
        Some(c) if !c.opportunity => "not an opportunity (opportunity.where)",
        Some(c) if c.deleted => "deleted (opportunity.deleted_when)",
        Some(c) if !c.open => "closed (opportunity.open_when)",
        Some(_) => "owned (opportunity.unowned_when, or the owner column, says someone has it)",
    }
}

/// Why a write matched no row, from the row read again after it (`None`: gone): the reason, and
/// whether the opportunity is left unowned by it (the write statement refused a row nobody has).
pub(super) fn after_write(c: Option<&Context>, custom: bool) -> (&'static str, bool) {
    match c {
        None => ("gone meanwhile (deleted between the read and the write)", false),
        Some(c) if !c.opportunity => ("not an opportunity meanwhile (opportunity.where)", false),
        Some(c) if c.deleted => ("deleted meanwhile (opportunity.deleted_when)", false),
        Some(c) if !c.open => ("closed meanwhile (opportunity.open_when)", false),
        Some(c) if !c.unowned => ("owned meanwhile (assigned between the read and the write)", false),
        Some(_) if custom => (REFUSED, true),
        Some(_) => ("changed meanwhile (owned and released again between the read and the write)", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(open: bool, deleted: bool, opportunity: bool, unowned: bool) -> Context {
        Context {
            owner: (!unowned).then(|| "7".into()),
            open,
            deleted,
            opportunity,
            unowned,
            only_owner: true,
            pipeline: None,
            fields: Vec::new(),
            locked: false,
        }
    }

    #[test]
    fn every_way_a_row_is_not_written_has_its_own_words() {
        let cases = [
            (None, "gone"),
            (Some(row(true, false, false, true)), "not an opportunity"),
            (Some(row(true, true, true, true)), "deleted"),
            (Some(row(false, false, true, true)), "closed"),
            (Some(row(true, false, true, false)), "owned"),
        ];
        for (c, want) in &cases {
            assert!(at_read(c.as_ref()).starts_with(want), "{want}: {}", at_read(c.as_ref()));
            let (after, left) = after_write(c.as_ref(), true);
            assert!(after.starts_with(want) && !left, "{want}: {after}");
        }
        let unowned = row(true, false, true, true);
        assert_eq!(after_write(Some(&unowned), true), (REFUSED, true));
        assert!(!after_write(Some(&unowned), false).1);
    }
}
