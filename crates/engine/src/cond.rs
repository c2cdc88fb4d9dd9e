//! Conditions on an opportunity's mapped fields, compiled: the field is an index, constants are
//! parsed once. Text comparisons ignore case; numeric and date comparisons parse the field's text
//! and are false when it is not a number or a date.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The facts a condition is tested against: the opportunity's fields (lower-cased copies for text
/// comparisons) and the tags applied so far.
pub struct Facts<'a> {
    pub raw: &'a [Option<String>],
    pub lower: Vec<Option<String>>,
    pub tags: Vec<String>,
}

impl<'a> Facts<'a> {
    pub fn new(raw: &'a [Option<String>]) -> Facts<'a> {
        let lower =
            raw.iter().map(|v| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase)).collect();
        Facts { raw, lower, tags: Vec::new() }
    }

    /// The field's text, trimmed, lower-cased; `None` when NULL or empty.
    pub fn text(&self, field: usize) -> Option<&str> {
        self.lower.get(field).and_then(|v| v.as_deref())
    }

    /// The field's original text, trimmed; `None` when NULL or empty.
    pub fn original(&self, field: usize) -> Option<&str> {
        self.raw.get(field).and_then(|v| v.as_deref()).map(str::trim).filter(|s| !s.is_empty())
    }

    /// The field as a list (comma-separated), lower-cased.
    pub fn list(&self, field: usize) -> impl Iterator<Item = &str> {
        self.text(field).into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub enum Op {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Contains(String),
    StartsWith(String),
    Above(f64),
    AtLeast(f64),
    Below(f64),
    AtMost(f64),
    Between(f64, f64),
    After(i64),
    Before(i64),
    DatesBetween(i64, i64),
    IsEmpty,
    IsSet,
}

#[derive(Debug, Clone, serde::Serialize)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// Build with [`Cond::field`]: `text` is its description, made once.
    Field {
        field: usize,
        name: String,
        op: Op,
        /// Made from the others.
        #[serde(skip)]
        text: std::sync::Arc<str>,
    },
    Tagged(String),
}

impl Cond {
    /// The only values of one field this condition can accept, when it says so plainly
    /// (`equals`, `in`, or an `all` holding one of those): (field, lower-cased values).
    pub fn allowed_values(&self) -> Option<(usize, BTreeSet<String>)> {
        match self {
            Cond::Field { field, op: Op::Equals(v), .. } => Some((*field, BTreeSet::from([v.clone()]))),
            Cond::Field { field, op: Op::In(vs), .. } => Some((*field, vs.clone())),
            Cond::All(cs) => cs.iter().find_map(Cond::allowed_values),
            _ => None,
        }
    }

    /// Whether no opportunity can satisfy both: both allow a plain set of values of the same
    /// field, and the sets share none.
    pub fn disjoint(&self, other: &Cond) -> bool {
        match (self.allowed_values(), other.allowed_values()) {
            (Some((f, a)), Some((g, b))) => f == g && a.is_disjoint(&b),
            _ => false,
        }
    }
}

/// Parse a date or timestamp as PostgreSQL prints them (and ISO 8601) into epoch seconds.
pub fn parse_instant(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(v, f) {
            return Some(t.timestamp());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc().timestamp())
}

/// Render epoch seconds for explanations.
pub fn show_instant(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_else(|| t.to_string())
}

impl Cond {
    /// A condition on one field, with its description made once (explanations reuse it).
    pub fn field(field: usize, name: String, op: Op) -> Cond {
        let text = field_text(&name, &op).into();
        Cond::Field { field, name, op, text }
    }

    pub fn eval(&self, f: &Facts<'_>) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.eval(f)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(f)),
            Cond::Not(c) => !c.eval(f),
            Cond::Tagged(t) => f.tags.iter().any(|x| x == t),
            Cond::Field { field, op, .. } => {
                let v = f.text(*field);
                let num = || v.and_then(|s| s.replace(',', "").parse::<f64>().ok());
                let date = || v.and_then(parse_instant);
                match op {
                    Op::IsEmpty => v.is_none(),
                    Op::IsSet => v.is_some(),
                    Op::Equals(x) => v == Some(x.as_str()),
                    Op::NotEquals(x) => v != Some(x.as_str()),
                    Op::In(xs) => v.is_some_and(|s| xs.contains(s)),
                    Op::NotIn(xs) => !v.is_some_and(|s| xs.contains(s)),
                    Op::Contains(x) => v.is_some_and(|s| s.contains(x.as_str())),
                    Op::StartsWith(x) => v.is_some_and(|s| s.starts_with(x.as_str())),
                    Op::Above(x) => num().is_some_and(|n| n > *x),
                    Op::AtLeast(x) => num().is_some_and(|n| n >= *x),
                    Op::Below(x) => num().is_some_and(|n| n < *x),
                    Op::AtMost(x) => num().is_some_and(|n| n <= *x),
                    Op::Between(a, b) => num().is_some_and(|n| n >= *a && n <= *b),
                    Op::After(t) => date().is_some_and(|d| d > *t),
                    Op::Before(t) => date().is_some_and(|d| d < *t),
                    Op::DatesBetween(a, b) => date().is_some_and(|d| d >= *a && d <= *b),
                }
            }
        }
    }

    /// Why the condition is false for these facts: the part that failed, with the value as the
    /// CRM has it ("amount ≥ 50000000: it is `12,500,000`"; "any of (…): none holds").
    pub fn why_false(&self, f: &Facts<'_>) -> String {
        match self {
            Cond::All(cs) => match cs.iter().find(|c| !c.eval(f)) {
                Some(c) => c.why_false(f),
                None => self.describe(),
            },
            Cond::Any(cs) => {
                let parts: Vec<String> = cs.iter().map(|c| c.why_false(f)).collect();
                format!("none of these holds: {}", parts.join("; "))
            }
            Cond::Not(c) => format!("{} holds", c.describe()),
            Cond::Tagged(t) => {
                let tags = if f.tags.is_empty() { "none".to_string() } else { f.tags.join(", ") };
                format!("not tagged `{t}` (its tags: {tags})")
            }
            Cond::Field { field, text, .. } => match f.original(*field) {
                Some(v) => format!("{text}: it is `{v}`"),
                None => format!("{text}: it is empty"),
            },
        }
    }

    /// A short human description, for explanations.
    pub fn describe(&self) -> String {
        match self {
            Cond::All(cs) => format!("all of ({})", cs.iter().map(Cond::describe).collect::<Vec<_>>().join("; ")),
            Cond::Any(cs) => format!("any of ({})", cs.iter().map(Cond::describe).collect::<Vec<_>>().join("; ")),
            Cond::Not(c) => format!("not ({})", c.describe()),
            Cond::Tagged(t) => format!("tagged `{t}`"),
            Cond::Field { text, .. } => text.to_string(),
        }
    }
}

fn field_text(name: &str, op: &Op) -> String {
    let o = match op {
        Op::Equals(x) => format!("= `{x}`"),
        Op::NotEquals(x) => format!("≠ `{x}`"),
        Op::In(xs) => format!("in {}", show_set(xs)),
        Op::NotIn(xs) => format!("not in {}", show_set(xs)),
        Op::Contains(x) => format!("contains `{x}`"),
        Op::StartsWith(x) => format!("starts with `{x}`"),
        Op::Above(x) => format!("> {x}"),
        Op::AtLeast(x) => format!("≥ {x}"),
        Op::Below(x) => format!("< {x}"),
        Op::AtMost(x) => format!("≤ {x}"),
        Op::Between(a, b) => format!("between {a} and {b}"),
        Op::After(t) => format!("after {}", show_instant(*t)),
        Op::Before(t) => format!("before {}", show_instant(*t)),
        Op::DatesBetween(a, b) => format!("between {} and {}", show_instant(*a), show_instant(*b)),
        Op::IsEmpty => "is empty".into(),
        Op::IsSet => "is set".into(),
    };
    format!("{name} {o}")
}

fn show_set(xs: &BTreeSet<String>) -> String {
    let v: Vec<&str> = xs.iter().map(String::as_str).collect();
    format!("[{}]", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_on_text_numbers_and_dates() {
        let raw = vec![
            Some("Instagram".to_string()),
            Some("120".to_string()),
            Some("2026-03-01 10:00:00+07".to_string()),
            None,
        ];
        let f = Facts::new(&raw);
        let t = |field, op| Cond::field(field, "x".into(), op).eval(&f);
        assert!(t(0, Op::Equals("instagram".into())));
        assert!(t(0, Op::StartsWith("insta".into())));
        assert!(t(1, Op::AtLeast(100.0)) && !t(1, Op::Below(100.0)));
        assert!(t(1, Op::Between(100.0, 120.0)));
        assert!(t(2, Op::After(parse_instant("2026-03-01").expect("date"))));
        assert!(t(3, Op::IsEmpty) && !t(3, Op::IsSet) && t(3, Op::NotEquals("a".into())));
        assert!(!t(0, Op::Above(1.0)), "text is not a number: false, not an error");
    }
}
