//! Reclaim policies: a pipeline's, and each team's changes to it (the window, what counts as an
//! interaction, the ladder: exclude, max reclaims, warn, escalate, then, when nobody, pauses for
//! lapses).

use super::{duration, Ctx, Resolver};
use crate::format::{
    ElseWord, ExcludeWord, InteractionWord, OneOrMany, RawEscalate, RawPauseAfter, RawPipeline, RawReclaim,
    RawReclaimElse, RawReclaimOverride, RawTeam,
};

impl Resolver<'_> {
    /// The pipeline's policy, with each team's own where it changes it; a team escalating to its
    /// lead must have one.
    pub(super) fn pipeline_reclaim(
        &mut self,
        fi: usize,
        p: &RawPipeline,
        r: &RawReclaim,
        pteams: &[usize],
        teams: &[(usize, RawTeam)],
    ) -> Option<engine::ReclaimPolicy> {
        let key = format!("pipeline `{}`.reclaim", p.id);
        let base = compile_reclaim(&mut self.cx, fi, &key, &p.id, r)?;
        let mut by_team = std::collections::BTreeMap::new();
        let mut ok = true;
        for &ti in pteams {
            let (tfi, t) = &teams[ti];
            let tkey = format!("team `{}`.reclaim", t.id);
            let policy = match &t.reclaim {
                Some(o) => match override_reclaim(&mut self.cx, *tfi, &tkey, &t.id, &base, o) {
                    Some(x) => x,
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => base.clone(),
            };
            if let Some(engine::Escalate { to: engine::EscalateTo::TeamLead, .. }) = &policy.escalate {
                if t.lead.is_none() {
                    let msg = format!(
                        "pipeline `{}` escalates reclaims to the team lead, and this team has none; add lead = \"<CRM user id>\"",
                        p.id
                    );
                    self.cx.err(*tfi, &t.id, &format!("team `{}`.lead", t.id), msg);
                    ok = false;
                }
            }
            if t.reclaim.is_some() {
                by_team.insert(t.id.clone(), policy);
            }
        }
        ok.then_some(engine::ReclaimPolicy { by_team, ..base })
    }
}

fn reclaim_else(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &Option<RawReclaimElse>) -> Option<engine::ReclaimElse> {
    match v {
        None => Some(engine::ReclaimElse::Leave),
        Some(RawReclaimElse::Word(ElseWord::Leave)) => Some(engine::ReclaimElse::Leave),
        Some(RawReclaimElse::Word(ElseWord::Other(w))) => {
            cx.err(fi, w, key, format!("`{w}` is not a choice; use \"leave\" or {{ owner = \"<CRM user id>\" }}"));
            None
        }
        Some(RawReclaimElse::Owner { owner }) if owner.trim().is_empty() => {
            cx.err(fi, owner, key, "the owner is empty; give a CRM user id");
            None
        }
        Some(RawReclaimElse::Owner { owner }) => Some(engine::ReclaimElse::Owner(owner.clone())),
    }
}

fn reclaim_window(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &str) -> Option<i64> {
    match duration(v) {
        Ok(d) if d > 0 => Some(d),
        Ok(_) => {
            cx.err(fi, v, key, "must be longer than 0s");
            None
        }
        Err(e) => {
            cx.err(fi, v, key, e);
            None
        }
    }
}

/// `(anyone, owner_edits)` from `interactions`; owner edits only where the config captures them.
fn interactions(cx: &mut Ctx<'_>, fi: usize, key: &str, v: &OneOrMany<InteractionWord>) -> Option<(bool, bool)> {
    let (mut anyone, mut edits, mut ok) = (false, false, true);
    for w in v.list() {
        match w {
            InteractionWord::Owner => {}
            InteractionWord::Anyone => anyone = true,
            InteractionWord::OwnerEdits => edits = true,
            InteractionWord::Other(o) => {
                cx.err(fi, &o, key, format!("`{o}` is not a choice; use \"owner\", \"anyone\" or \"owner_edits\""));
                ok = false;
            }
        }
    }
    if edits && !cx.owner_edits_mapped {
        cx.err(
            fi,
            "owner_edits",
            key,
            "owner edits are not captured: map `opportunity.edited_by` (who last changed the row) in the daemon config, or remove \"owner_edits\"",
        );
        ok = false;
    }
    ok.then_some((anyone, edits))
}

fn warn_fraction(cx: &mut Ctx<'_>, fi: usize, needle: &str, key: &str, v: Option<f64>) -> Result<Option<f64>, ()> {
    match v {
        Some(f) if !(f > 0.0 && f < 1.0) => {
            cx.err_key(fi, needle, "warn_at", key, format!("is {f}; use a fraction between 0 and 1, e.g. 0.75"));
            Err(())
        }
        other => Ok(other),
    }
}

fn escalate(cx: &mut Ctx<'_>, fi: usize, key: &str, e: &RawEscalate, window: i64) -> Option<engine::Escalate> {
    let to = match e.to.trim() {
        "" => {
            cx.err(fi, &e.to, &format!("{key}.to"), "is empty; use \"team_lead\" or a CRM user id");
            return None;
        }
        "team_lead" => engine::EscalateTo::TeamLead,
        x => engine::EscalateTo::Owner(x.to_string()),
    };
    let after = match &e.after {
        Some(a) => reclaim_window(cx, fi, &format!("{key}.after"), a)?,
        None => window,
    };
    Some(engine::Escalate { to, after })
}

fn pause_after(cx: &mut Ctx<'_>, fi: usize, needle: &str, key: &str, p: &RawPauseAfter) -> Option<engine::PauseAfter> {
    if p.lapses == 0 {
        cx.err_key(fi, needle, "lapses", &format!("{key}.lapses"), "is 0; use 1 or more (or remove pause_after)");
        return None;
    }
    let within = reclaim_window(cx, fi, &format!("{key}.within"), &p.within)?;
    Some(engine::PauseAfter { lapses: i64::from(p.lapses), within })
}

pub(super) fn compile_reclaim(
    cx: &mut Ctx<'_>,
    fi: usize,
    key: &str,
    pipeline: &str,
    r: &RawReclaim,
) -> Option<engine::ReclaimPolicy> {
    let after = reclaim_window(cx, fi, &format!("{key}.after"), &r.after);
    let (anyone, owner_edits) = match &r.interactions {
        Some(v) => interactions(cx, fi, &format!("{key}.interactions"), v)?,
        None => (false, false),
    };
    let exclude = match (r.exclude.as_ref(), r.exclude_last) {
        (Some(_), Some(_)) => {
            cx.err_key(
                fi,
                pipeline,
                "exclude_last",
                &format!("{key}.exclude_last"),
                "give either `exclude` or `exclude_last`, not both",
            );
            return None;
        }
        (_, Some(0)) => {
            cx.err_key(
                fi,
                pipeline,
                "exclude_last",
                &format!("{key}.exclude_last"),
                "is 0; use 1 or more (1 = the owner losing it)",
            );
            return None;
        }
        (_, Some(k)) => engine::Exclude::Last(k),
        (None | Some(ExcludeWord::Previous), None) => engine::Exclude::Previous,
        (Some(ExcludeWord::AllPrevious), None) => engine::Exclude::AllPrevious,
        (Some(ExcludeWord::Other(o)), None) => {
            cx.err(
                fi,
                o,
                &format!("{key}.exclude"),
                format!("`{o}` is not a choice; use \"previous\" or \"all_previous\""),
            );
            return None;
        }
    };
    let then = reclaim_else(cx, fi, &format!("{key}.then"), &r.then);
    let when_nobody = reclaim_else(cx, fi, &format!("{key}.when_nobody"), &r.when_nobody);
    let max_reclaims = r.max_reclaims.unwrap_or(3);
    if max_reclaims < 0 {
        cx.err_key(fi, pipeline, "max_reclaims", &format!("{key}.max_reclaims"), "must be 0 or more");
        return None;
    }
    let warn_at = warn_fraction(cx, fi, pipeline, &format!("{key}.warn_at"), r.warn_at).ok()?;
    let after = after?;
    let escalate = match &r.escalate {
        Some(e) => Some(escalate(cx, fi, &format!("{key}.escalate"), e, after)?),
        None => None,
    };
    let pause_after = match &r.pause_after {
        Some(p) => Some(pause_after(cx, fi, pipeline, &format!("{key}.pause_after"), p)?),
        None => None,
    };
    Some(engine::ReclaimPolicy {
        after,
        anyone,
        owner_edits,
        working_hours: r.working_hours.unwrap_or(false),
        within_team: r.within_team.unwrap_or(true),
        exclude,
        max_reclaims,
        warn_at,
        then: then?,
        when_nobody: when_nobody?,
        escalate,
        pause_after,
        by_team: std::collections::BTreeMap::new(),
    })
}

fn override_reclaim(
    cx: &mut Ctx<'_>,
    fi: usize,
    key: &str,
    team: &str,
    base: &engine::ReclaimPolicy,
    o: &RawReclaimOverride,
) -> Option<engine::ReclaimPolicy> {
    let mut p = base.clone();
    if let Some(a) = &o.after {
        p.after = reclaim_window(cx, fi, &format!("{key}.after"), a)?;
    }
    if let Some(v) = &o.interactions {
        (p.anyone, p.owner_edits) = interactions(cx, fi, &format!("{key}.interactions"), v)?;
    }
    if let Some(w) = o.working_hours {
        p.working_hours = w;
    }
    if o.warn_at.is_some() {
        p.warn_at = warn_fraction(cx, fi, team, &format!("{key}.warn_at"), o.warn_at).ok()?;
    }
    if let Some(m) = o.max_reclaims {
        if m < 0 {
            cx.err_key(fi, team, "max_reclaims", &format!("{key}.max_reclaims"), "must be 0 or more");
            return None;
        }
        p.max_reclaims = m;
    }
    if let Some(e) = &o.escalate {
        p.escalate = Some(escalate(cx, fi, &format!("{key}.escalate"), e, p.after)?);
    }
    if o.then.is_some() {
        p.then = reclaim_else(cx, fi, &format!("{key}.then"), &o.then)?;
    }
    if let Some(x) = &o.pause_after {
        p.pause_after = Some(pause_after(cx, fi, team, &format!("{key}.pause_after"), x)?);
    }
    Some(p)
}
