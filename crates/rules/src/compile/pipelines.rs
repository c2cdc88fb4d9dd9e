//! Pipelines: their rules (each compiled in `rule`), the teams taking part, the fields an
//! opportunity waits for (`require`), the fallback owner and the reclaim policy.

use std::collections::{HashMap, HashSet};

use super::{duration, Ctx, Resolver};
use crate::format::{RawPipeline, RawTeam};

impl Resolver<'_> {
    pub(super) fn pipelines(
        &mut self,
        pipelines: &[(usize, RawPipeline)],
        teams: &[(usize, RawTeam)],
    ) -> HashMap<String, engine::Pipeline> {
        let mut out = HashMap::new();
        for (fi, p) in pipelines {
            let pteams: Vec<usize> =
                (self.team_pipelines.iter().enumerate()).filter(|(_, ps)| ps.contains(&p.id)).map(|(i, _)| i).collect();
            let rules = self.rules(*fi, p, &pteams);
            let reclaim = p.reclaim.as_ref().and_then(|r| self.pipeline_reclaim(*fi, p, r, &pteams, teams));
            let require = compile_require(&mut self.cx, *fi, p);
            let pipeline = engine::Pipeline {
                id: p.id.clone(),
                rules,
                reclaim,
                fallback_owner: p.fallback_owner.clone(),
                teams: pteams,
                require,
            };
            out.insert(p.id.clone(), pipeline);
        }
        out
    }

    /// The pipeline's rules, in order; a rule id appears once.
    fn rules(&mut self, fi: usize, p: &RawPipeline, pteams: &[usize]) -> Vec<engine::Rule> {
        if p.rule.is_empty() {
            self.cx.err(
                fi,
                &p.id,
                &format!("pipeline `{}`.rule", p.id),
                "the pipeline has no rules; add [[pipeline.rule]] (or rely on its fallback_owner only by design)",
            );
        }
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for r in &p.rule {
            if !ids.insert(r.id.clone()) {
                self.cx.err(
                    fi,
                    &r.id,
                    &format!("pipeline `{}`.rule `{}`.id", p.id, r.id),
                    format!("rule `{}` appears twice in pipeline `{}`", r.id, p.id),
                );
            }
            rules.extend(self.rule(fi, p, pteams, r));
        }
        rules
    }
}

/// `require` and `wait_up_to`: the fields (by index) an opportunity waits for, and how long.
pub(super) fn compile_require(cx: &mut Ctx<'_>, fi: usize, p: &RawPipeline) -> Option<engine::Require> {
    let key = format!("pipeline `{}`", p.id);
    if p.require.is_empty() {
        if p.wait_up_to.is_some() {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), "goes with `require = [\"field\", …]`");
        }
        return None;
    }
    let fields: Vec<(usize, String)> = p
        .require
        .iter()
        .enumerate()
        .filter_map(|(i, name)| cx.field(fi, &format!("{key}.require[{i}]"), name).map(|f| (f, name.clone())))
        .collect();
    let wait = match p.wait_up_to.as_deref().map(duration).unwrap_or(Ok(600)) {
        Ok(w) if w > 0 => w,
        Ok(_) => {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), "must be longer than 0s, e.g. \"10m\"");
            return None;
        }
        Err(e) => {
            cx.err_key(fi, &p.id, "wait_up_to", &format!("{key}.wait_up_to"), e);
            return None;
        }
    };
    (fields.len() == p.require.len()).then_some(engine::Require { fields, wait_secs: wait })
}
