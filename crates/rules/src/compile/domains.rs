//! Domains and remits that can never meet: a member whose remit (their own, or the one they
//! have in a team) shares no value with the team's domain never receives anything through that
//! team. The set still routes; `check` warns.

use engine::{Cond, Engine};

/// One warning per (team, member) whose conditions cannot both hold.
pub(super) fn warnings(e: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    for t in &e.teams {
        for &m in &t.members {
            let member = &e.members[m];
            let here = t.remits.iter().find(|(x, _)| *x == m).map(|(_, c)| c);
            let pairs: [(Option<&Cond>, Option<&Cond>, &str); 3] = [
                (t.accepts.as_ref(), member.accepts.as_ref(), "their remit"),
                (t.accepts.as_ref(), here, "their remit in the team"),
                (member.accepts.as_ref(), here, "their remit in the team (against their own)"),
            ];
            for (a, b, what) in pairs {
                if let (Some(a), Some(b)) = (a, b) {
                    if a.disjoint(b) {
                        out.push(format!(
                            "team `{}`: member `{}`: {what} ({}) and ({}) share no value: they never receive \
                             anything through this team; widen one, or take them out of the team",
                            t.id,
                            member.id,
                            b.describe(),
                            a.describe()
                        ));
                    }
                }
            }
        }
    }
    out
}
