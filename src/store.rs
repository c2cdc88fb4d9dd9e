//! SQL over the router's own tables that more than one module needs, written once.
//!
//! It must not hold anything of the CRM's (that is `crm`) nor anything from a rule file.

/// Whether a queued event `e` (of `<schema>.events`) counts as an interaction by the owner
/// `u.old`, under the policy columns `u.anyone` (any activity counts) and `u.edits` (the owner's
/// edits count): the SQL twin of `engine::ReclaimPolicy::counts` (a test holds the two equal).
pub const COUNTS_AS_INTERACTION: &str = "((e.kind = 'activity' AND (u.anyone OR e.actor = u.old)) \
     OR (e.kind = 'edit' AND u.edits AND e.actor = u.old))";
