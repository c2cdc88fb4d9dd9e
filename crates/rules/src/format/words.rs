//! The words of a rule file with a fixed set of values (`when_full`, `pick`, `exclude`, ...):
//! each read as text, so a misspelling reaches `compile` with its position, and each listed in the
//! JSON Schema. It must not check anything: `compile` refuses a word that is not one of these.

use serde::Deserialize;

/// A word of a rule file with a fixed set of values. It is read as text, so any other word (or a
/// misspelling) is kept for `compile` to refuse with its position, its key and the values to use;
/// the JSON Schema lists the values, so editors complete them and flag a wrong one.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident as $schema:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant,)+
            /// Not one of the words: refused by `compile`.
            Other(String),
        }

        impl $name {
            pub(crate) const WORDS: &'static [&'static str] = &[$($text),+];

            /// The word as written.
            #[allow(dead_code)] // not every word is quoted back in a message
            pub(crate) fn text(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            fn from_text(s: String) -> Self {
                match s.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Other(s),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::from_text)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $schema.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                word_schema(Self::WORDS)
            }
        }
    };
}

/// The schema of a word: a string, one of `words`.
fn word_schema(words: &[&str]) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": words })
}

words! {
    /// What a rule does when every candidate is at a cap.
    WhenFullWord as "WhenFull" { NextRule = "next_rule", Fallback = "fallback", IgnoreCaps = "ignore_caps", Hold = "hold" }
}

words! {
    /// What a rule does when the whole team is away (out of office, outside working hours).
    WhenAwayWord as "WhenAway" { NextRule = "next_rule", Wait = "wait" }
}

words! {
    /// What a windowed cap counts: "router" (the default: the assignments the router made, from
    /// its audit) or "crm" (every assignment the CRM records in the window, manual ones included;
    /// needs `opportunity.assigned_at` or `created_at` in the daemon config).
    CapCountWord as "CapCount" { Router = "router", Crm = "crm" }
}

words! {
    /// Whose turn a round-robin pick follows in a team: "team" (the default: one turn per team,
    /// shared by every rule that feeds it) or "rule" (a turn of this rule's own in each team).
    TurnWord as "Turn" { Team = "team", Rule = "rule" }
}

words! {
    /// What a filter that would leave nobody does.
    IfNobodyWord as "IfNobody" { NextRule = "next_rule", SkipFilter = "skip_filter" }
}

words! {
    /// Whether any or all of the opportunity's tags must match.
    AnyAllWord as "AnyAll" { Any = "any", All = "all" }
}

words! {
    /// Who must not get a reclaimed opportunity back.
    ExcludeWord as "Exclude" { Previous = "previous", AllPrevious = "all_previous" }
}

words! {
    /// What counts as an interaction with an assignment.
    InteractionWord as "Interaction" { Owner = "owner", Anyone = "anyone", OwnerEdits = "owner_edits" }
}

words! {
    /// The end of the ladder, or nobody else eligible: leave it with its owner.
    ElseWord as "Leave" { Leave = "leave" }
}

words! {
    /// A way to pick a member.
    PickWord as "PickName" {
        Random = "random",
        FewestOpen = "fewest_open",
        RoundRobin = "round_robin",
        WeightedRoundRobin = "weighted_round_robin",
        BestKpi = "best_kpi",
    }
}

words! {
    /// A way to pick a member, in its table form: "owner" (keep the owner a field names), or one
    /// of the plain ways.
    SpecPickWord as "PickSpecName" {
        Owner = "owner",
        Random = "random",
        FewestOpen = "fewest_open",
        RoundRobin = "round_robin",
        WeightedRoundRobin = "weighted_round_robin",
        BestKpi = "best_kpi",
    }
}
