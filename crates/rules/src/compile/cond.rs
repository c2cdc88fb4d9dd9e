//! Conditions (`when`, tag rules): `all`, `any`, `not`, `tagged`, and a field compared by one
//! operator, read once into the engine's [`Cond`].

use super::Ctx;
use crate::format::{RawCond, Scalar};
use engine::{cond, Cond, Op};

impl Ctx<'_> {
    pub(super) fn cond(&mut self, fi: usize, key: &str, c: &RawCond) -> Option<Cond> {
        let forms = [c.all.is_some(), c.any.is_some(), c.not.is_some(), c.tagged.is_some(), c.field.is_some()];
        if forms.iter().filter(|x| **x).count() != 1 {
            self.err(fi, "", key, "a condition is one of { all = [...] }, { any = [...] }, { not = {...} }, { tagged = \"tag\" } or { field = \"name\", <operator> = value }");
            return None;
        }
        if let Some(cs) = &c.all {
            let v: Vec<Cond> =
                cs.iter().enumerate().filter_map(|(i, c)| self.cond(fi, &format!("{key}.all[{i}]"), c)).collect();
            return (v.len() == cs.len()).then_some(Cond::All(v));
        }
        if let Some(cs) = &c.any {
            let v: Vec<Cond> =
                cs.iter().enumerate().filter_map(|(i, c)| self.cond(fi, &format!("{key}.any[{i}]"), c)).collect();
            return (v.len() == cs.len()).then_some(Cond::Any(v));
        }
        if let Some(n) = &c.not {
            return self.cond(fi, &format!("{key}.not"), n).map(|c| Cond::Not(Box::new(c)));
        }
        if let Some(t) = &c.tagged {
            return Some(Cond::Tagged(t.to_lowercase()));
        }
        self.field_cond(fi, key, c)
    }

    /// `{ field = "name", <operator> = value }`: exactly one operator.
    fn field_cond(&mut self, fi: usize, key: &str, c: &RawCond) -> Option<Cond> {
        let name = c.field.clone().unwrap_or_default();
        let field = self.field(fi, &format!("{key}.field"), &name);
        let mut ops = operators(c);
        if ops.len() != 1 {
            self.err(fi, &name, key, format!("the condition on `{name}` needs exactly one operator (equals, not_equals, in, not_in, contains, starts_with, above, at_least, below, at_most, between, after, before, dates_between, is_empty, is_set); it has {}", ops.len()));
            return None;
        }
        match ops.pop() {
            Some(Ok(op)) => field.map(|field| Cond::field(field, name, op)),
            Some(Err(e)) => {
                self.err(fi, &name, key, e);
                None
            }
            None => None,
        }
    }
}

/// Every operator a condition gives, each read (or why it cannot be).
fn operators(c: &RawCond) -> Vec<Result<Op, String>> {
    let lower = |s: &Scalar| s.text().trim().to_lowercase();
    let set = |v: &Vec<Scalar>| v.iter().map(lower).collect::<std::collections::BTreeSet<String>>();
    let mut ops: Vec<Result<Op, String>> = Vec::new();
    let num = |s: &Scalar, what: &str| s.num().ok_or_else(|| format!("`{what}` needs a number, not `{}`", s.text()));
    let date = |s: &str, what: &str| {
        cond::parse_instant(s)
            .ok_or_else(|| format!("`{what}` needs a date (\"2026-01-31\") or a timestamp, not `{s}`"))
    };
    if let Some(v) = &c.equals {
        ops.push(Ok(Op::Equals(lower(v))));
    }
    if let Some(v) = &c.not_equals {
        ops.push(Ok(Op::NotEquals(lower(v))));
    }
    if let Some(v) = &c.in_ {
        ops.push(Ok(Op::In(set(v))));
    }
    if let Some(v) = &c.not_in {
        ops.push(Ok(Op::NotIn(set(v))));
    }
    if let Some(v) = &c.contains {
        ops.push(Ok(Op::Contains(v.to_lowercase())));
    }
    if let Some(v) = &c.starts_with {
        ops.push(Ok(Op::StartsWith(v.to_lowercase())));
    }
    if let Some(v) = &c.above {
        ops.push(num(v, "above").map(Op::Above));
    }
    if let Some(v) = &c.at_least {
        ops.push(num(v, "at_least").map(Op::AtLeast));
    }
    if let Some(v) = &c.below {
        ops.push(num(v, "below").map(Op::Below));
    }
    if let Some(v) = &c.at_most {
        ops.push(num(v, "at_most").map(Op::AtMost));
    }
    if let Some(v) = &c.between {
        ops.push(match v.as_slice() {
            [a, b] => match (num(a, "between"), num(b, "between")) {
                (Ok(a), Ok(b)) if a <= b => Ok(Op::Between(a, b)),
                (Ok(_), Ok(_)) => Err("`between` needs [low, high] with low ≤ high".into()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            _ => Err("`between` needs two numbers: [low, high]".into()),
        });
    }
    if let Some(v) = &c.after {
        ops.push(date(v, "after").map(Op::After));
    }
    if let Some(v) = &c.before {
        ops.push(date(v, "before").map(Op::Before));
    }
    if let Some(v) = &c.dates_between {
        ops.push(match v.as_slice() {
            [a, b] => match (date(a, "dates_between"), date(b, "dates_between")) {
                (Ok(a), Ok(b)) if a <= b => Ok(Op::DatesBetween(a, b)),
                (Ok(_), Ok(_)) => Err("`dates_between` needs [first, last] in order".into()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            _ => Err("`dates_between` needs two dates: [first, last]".into()),
        });
    }
    if let Some(b) = c.is_empty {
        ops.push(Ok(if b { Op::IsEmpty } else { Op::IsSet }));
    }
    if let Some(b) = c.is_set {
        ops.push(Ok(if b { Op::IsSet } else { Op::IsEmpty }));
    }
    ops
}
