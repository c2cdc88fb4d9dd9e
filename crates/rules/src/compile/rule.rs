//! One rule of a pipeline: its condition, how it chooses a team (team stage), the filters on
//! members, how it picks a member, and what it does when everyone is full or away.

use super::Resolver;
use crate::format::{
    AnyAllWord, IfNobodyWord, PickWord, RawFilter, RawPick, RawPipeline, RawRule, RawTeamStage, SpecPickWord, TurnWord,
    WhenAwayWord, WhenFullWord,
};
use engine::{self, Cond, Filter, FilterKind, IfNobody, Pick, TeamStage, WhenAway, WhenFull};

const PICKS: &str =
    "random, fewest_open, round_robin, weighted_round_robin, best_kpi, or { pick = \"owner\", fields = [...] }";

impl Resolver<'_> {
    pub(super) fn rule(&mut self, fi: usize, p: &RawPipeline, pteams: &[usize], r: &RawRule) -> Option<engine::Rule> {
        let key = format!("pipeline `{}`.rule `{}`", p.id, r.id);
        let when = r.when.as_ref().and_then(|c| self.cx.cond(fi, &format!("{key}.when"), c));
        let team = match &r.team {
            None => {
                if pteams.is_empty() {
                    self.cx.err(
                        fi,
                        &r.id,
                        &format!("{key}.team"),
                        format!("no team takes part in pipeline `{}`; add it to a team's `pipelines`", p.id),
                    );
                }
                Some(TeamStage::AllPipelineTeams)
            }
            Some(ts) => self.team_stage(fi, &key, p, pteams, r, ts),
        };
        let filters = r.filters.iter().enumerate().filter_map(|(k, f)| self.filter(fi, &key, r, k, f)).collect();
        let pick = self.pick(fi, &key, r);
        let when_full = self.when_full(fi, &key, r);
        let when_away = self.when_away(fi, &key, r);
        let own_turn = self.own_turn(fi, &key, r);
        if let Some(c) = &when {
            self.tags_applied(fi, &key, r, c);
        }
        Some(engine::Rule {
            key: format!("{}/{}", p.id, r.id),
            id: r.id.as_str().into(),
            when,
            team: team?,
            filters,
            pick: pick?,
            when_full,
            when_away,
            own_turn,
        })
    }

    /// How the rule chooses the team: exactly one of `id`, `territory`, `from_field`, `tags`.
    fn team_stage(
        &mut self,
        fi: usize,
        key: &str,
        p: &RawPipeline,
        pteams: &[usize],
        r: &RawRule,
        ts: &RawTeamStage,
    ) -> Option<TeamStage> {
        let forms = [ts.id.is_some(), ts.territory.is_some(), ts.from_field.is_some(), ts.tags.is_some()];
        if forms.iter().filter(|x| **x).count() != 1 {
            self.cx.err(
                fi,
                &r.id,
                &format!("{key}.team"),
                "give exactly one of `id`, `territory`, `from_field` or `tags`",
            );
            return None;
        }
        if let Some(t) = &ts.id {
            return match self.team_index.get(t) {
                Some(i) if pteams.contains(i) => Some(TeamStage::Fixed(*i)),
                Some(_) => {
                    let msg = format!(
                        "team `{t}` does not take part in pipeline `{}`; add \"{}\" to its `pipelines`",
                        p.id, p.id
                    );
                    self.cx.err(fi, t, &format!("{key}.team.id"), msg);
                    None
                }
                None => {
                    self.cx.err(fi, t, &format!("{key}.team.id"), format!("unknown team `{t}`"));
                    None
                }
            };
        }
        if let Some(fs) = &ts.territory {
            let fields = self.fields(fi, &format!("{key}.team.territory"), &fs.list())?;
            return Some(TeamStage::Territory { fields });
        }
        if let Some(f) = &ts.from_field {
            return self
                .cx
                .field(fi, &format!("{key}.team.from_field"), f)
                .map(|field| TeamStage::FromField { field, name: f.clone() });
        }
        self.any_or_all(fi, &format!("{key}.team.tags"), ts.tags.as_ref()).map(|all| TeamStage::Tags { all })
    }

    /// Fields by name, all of them known, or `None`.
    fn fields(&mut self, fi: usize, key: &str, names: &[String]) -> Option<Vec<(usize, String)>> {
        let fields: Vec<(usize, String)> =
            names.iter().filter_map(|f| self.cx.field(fi, key, f).map(|i| (i, f.clone()))).collect();
        (fields.len() == names.len()).then_some(fields)
    }

    /// `tags = "any" | "all"`: whether all tags must match.
    fn any_or_all(&mut self, fi: usize, key: &str, v: Option<&AnyAllWord>) -> Option<bool> {
        match v {
            Some(AnyAllWord::Any) => Some(false),
            Some(AnyAllWord::All) => Some(true),
            other => {
                let needle = match other {
                    Some(AnyAllWord::Other(o)) => o.as_str(),
                    _ => "",
                };
                self.cx.err(fi, needle, key, "is \"any\" or \"all\"");
                None
            }
        }
    }

    fn filter(&mut self, fi: usize, key: &str, r: &RawRule, k: usize, f: &RawFilter) -> Option<Filter> {
        let fkey = format!("{key}.filters[{k}]");
        let if_nobody = match &f.if_nobody {
            None | Some(IfNobodyWord::NextRule) => IfNobody::NextRule,
            Some(IfNobodyWord::SkipFilter) => IfNobody::SkipFilter,
            Some(IfNobodyWord::Other(o)) => {
                let msg = format!("`{o}` is not a policy; use \"next_rule\" or \"skip_filter\"");
                self.cx.err(fi, o, &format!("{fkey}.if_nobody"), msg);
                IfNobody::NextRule
            }
        };
        let forms = [
            f.attribute.is_some(),
            f.products.is_some(),
            f.categories.is_some(),
            f.territory.is_some(),
            f.tags.is_some(),
        ];
        if forms.iter().filter(|x| **x).count() != 1 {
            self.cx.err(fi, &r.id, &fkey, "a filter is one of { attribute = \"…\", equals_field = \"…\" }, { products = \"field\" }, { categories = \"field\" }, { territory = \"field\" } or { tags = \"any\" | \"all\" }");
            return None;
        }
        let kind = self.filter_kind(fi, &fkey, f)?;
        Some(Filter { kind, if_nobody })
    }

    fn filter_kind(&mut self, fi: usize, fkey: &str, f: &RawFilter) -> Option<FilterKind> {
        if let Some(a) = &f.attribute {
            let Some(ef) = &f.equals_field else {
                self.cx.err(
                    fi,
                    a,
                    fkey,
                    "an attribute filter needs `equals_field` (the opportunity field to compare with)",
                );
                return None;
            };
            let field = self.cx.field(fi, &format!("{fkey}.equals_field"), ef)?;
            let symbol = self.sym.intern(a);
            return Some(FilterKind::Attribute { attribute: a.clone(), symbol, field, field_name: ef.clone() });
        }
        if let Some(pf) = &f.products {
            let field = self.cx.field(fi, &format!("{fkey}.products"), pf)?;
            return Some(FilterKind::Products { field, field_name: pf.clone() });
        }
        if let Some(cf) = &f.categories {
            let field = self.cx.field(fi, &format!("{fkey}.categories"), cf)?;
            return Some(FilterKind::Categories { field, field_name: cf.clone() });
        }
        if let Some(fs) = &f.territory {
            let fields = self.fields(fi, &format!("{fkey}.territory"), &fs.list())?;
            return Some(FilterKind::Territory { fields });
        }
        self.any_or_all(fi, &format!("{fkey}.tags"), f.tags.as_ref()).map(|all| FilterKind::Tags { all })
    }

    /// How the rule picks a member: a strategy's name, or `{ pick = "owner", fields, otherwise }`.
    fn pick(&mut self, fi: usize, key: &str, r: &RawRule) -> Option<Pick> {
        match &r.member {
            RawPick::Name(n) => {
                let p = simple_pick(n);
                if let PickWord::Other(n) = n {
                    let msg = format!("`{n}` is not a way to pick a member; use {PICKS}");
                    self.cx.err(fi, n, &format!("{key}.member"), msg);
                }
                p
            }
            RawPick::Spec(s) if s.pick == SpecPickWord::Owner => {
                if s.fields.is_empty() {
                    self.cx.err(fi, &r.id, &format!("{key}.member.fields"), "list the fields naming the owner to keep, in order, e.g. [\"profile_owner\", \"company_owner\"]");
                }
                let fields = self.fields(fi, &format!("{key}.member.fields"), &s.fields);
                let otherwise = match &s.otherwise {
                    None => Some(None),
                    Some(PickWord::Other(o)) => {
                        self.cx.err(fi, o, &format!("{key}.member.otherwise"), format!("`{o}` is not a way to pick a member; use random, fewest_open, round_robin, weighted_round_robin or best_kpi"));
                        None
                    }
                    Some(p) => simple_pick(p).map(|p| Some(Box::new(p))),
                };
                Some(Pick::Owner { fields: fields?, otherwise: otherwise?, ignore_remit: s.ignore_remit })
            }
            RawPick::Spec(s) => match spec_pick(&s.pick) {
                Ok(p) if s.fields.is_empty() && s.otherwise.is_none() && !s.ignore_remit => Some(p),
                Ok(_) => {
                    self.cx.err(
                        fi,
                        s.pick.text(),
                        &format!("{key}.member"),
                        "`fields` and `otherwise` go with pick = \"owner\" only",
                    );
                    None
                }
                Err(o) => {
                    let msg = format!("`{o}` is not a way to pick a member; use {PICKS}");
                    self.cx.err(fi, o, &format!("{key}.member.pick"), msg);
                    None
                }
            },
        }
    }

    fn when_full(&mut self, fi: usize, key: &str, r: &RawRule) -> WhenFull {
        match &r.when_full {
            None | Some(WhenFullWord::NextRule) => WhenFull::NextRule,
            Some(WhenFullWord::Fallback) => WhenFull::Fallback,
            Some(WhenFullWord::IgnoreCaps) => WhenFull::IgnoreCaps,
            Some(WhenFullWord::Hold) => WhenFull::Hold,
            Some(WhenFullWord::Other(o)) => {
                let msg =
                    format!("`{o}` is not a policy; use \"next_rule\", \"fallback\", \"ignore_caps\" or \"hold\"");
                self.cx.err(fi, o, &format!("{key}.when_full"), msg);
                WhenFull::NextRule
            }
        }
    }

    fn when_away(&mut self, fi: usize, key: &str, r: &RawRule) -> WhenAway {
        match &r.when_away {
            None | Some(WhenAwayWord::NextRule) => WhenAway::NextRule,
            Some(WhenAwayWord::Wait) => WhenAway::Wait,
            Some(WhenAwayWord::Other(o)) => {
                let msg = format!("`{o}` is not a policy; use \"next_rule\" or \"wait\"");
                self.cx.err(fi, o, &format!("{key}.when_away"), msg);
                WhenAway::NextRule
            }
        }
    }

    /// Whether a round-robin pick keeps a turn of the rule's own in each team (`turn = "rule"`)
    /// instead of the team's one turn.
    fn own_turn(&mut self, fi: usize, key: &str, r: &RawRule) -> bool {
        match &r.turn {
            None | Some(TurnWord::Team) => false,
            Some(TurnWord::Rule) => true,
            Some(TurnWord::Other(o)) => {
                let msg = format!("`{o}` is not a turn; use \"team\" (one turn per team, the default) or \"rule\"");
                self.cx.err(fi, o, &format!("{key}.turn"), msg);
                false
            }
        }
    }

    /// Tags a rule relies on must be applied by some tag rule.
    fn tags_applied(&mut self, fi: usize, key: &str, r: &RawRule, when: &Cond) {
        let mut used = Vec::new();
        collect_tags(when, &mut used);
        for t in used.into_iter().filter(|t| !self.all_tags.contains(t)) {
            let msg = format!("tag `{t}` is never applied: no [[tag]] rule has name = \"{t}\"");
            self.cx.err(fi, &r.id, &format!("{key}.when"), msg);
        }
    }
}

fn simple_pick(name: &PickWord) -> Option<Pick> {
    match name {
        PickWord::Random => Some(Pick::Random),
        PickWord::FewestOpen => Some(Pick::FewestOpen),
        PickWord::RoundRobin => Some(Pick::RoundRobin),
        PickWord::WeightedRoundRobin => Some(Pick::WeightedRoundRobin),
        PickWord::BestKpi => Some(Pick::BestKpi),
        PickWord::Other(_) => None,
    }
}

/// A plain way to pick in the table form; `Err` with the word when it is none (or "owner",
/// handled before).
fn spec_pick(name: &SpecPickWord) -> Result<Pick, &str> {
    match name {
        SpecPickWord::Random => Ok(Pick::Random),
        SpecPickWord::FewestOpen => Ok(Pick::FewestOpen),
        SpecPickWord::RoundRobin => Ok(Pick::RoundRobin),
        SpecPickWord::WeightedRoundRobin => Ok(Pick::WeightedRoundRobin),
        SpecPickWord::BestKpi => Ok(Pick::BestKpi),
        SpecPickWord::Owner => Err("owner"),
        SpecPickWord::Other(o) => Err(o),
    }
}

fn collect_tags(c: &Cond, out: &mut Vec<String>) {
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| collect_tags(c, out)),
        Cond::Not(c) => collect_tags(c, out),
        Cond::Tagged(t) => out.push(t.clone()),
        Cond::Field { .. } => {}
    }
}
