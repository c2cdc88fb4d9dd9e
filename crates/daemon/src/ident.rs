//! SQL identifiers taken from the daemon config: validated, then always quoted.
//!
//! Owns the one way a name from configuration becomes SQL text. It must not accept anything
//! that could end an identifier early: names are quoted with `"` and inner quotes doubled, so a
//! camelCase column (`accountOwnerId`) keeps its case and nothing can be smuggled through.

use std::fmt;

/// Why a configured name is not a usable identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; PostgreSQL identifiers are at most 63 bytes")]
    TooLong(usize),
    #[error("contains a NUL or control character")]
    Control,
    #[error("has {0} parts; write `table` or `schema.table`")]
    TooManyParts(usize),
    #[error("has an unterminated double quote")]
    Unterminated,
}

/// One identifier (a schema, table or column name), stored unquoted, exactly as named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// A name as written in the config. Surrounding double quotes are allowed and removed
    /// (`"accountOwnerId"` and `accountOwnerId` name the same column): names are case-sensitive.
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let raw = raw.trim();
        let name = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            raw[1..raw.len() - 1].replace("\"\"", "\"")
        } else {
            raw.to_string()
        };
        Self::new(name)
    }

    fn new(name: String) -> Result<Self, IdentError> {
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > 63 {
            return Err(IdentError::TooLong(name.len()));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(IdentError::Control);
        }
        Ok(Ident(name))
    }

    /// The name as PostgreSQL stores it (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL text.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// A possibly schema-qualified table name: `opportunity`, `crm.opportunity`, `"CRM"."Deal"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<Ident>,
    pub table: Ident,
}

impl TableName {
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let parts = split_qualified(raw.trim())?;
        match parts.as_slice() {
            [t] => Ok(TableName { schema: None, table: Ident::parse(t)? }),
            [s, t] => Ok(TableName { schema: Some(Ident::parse(s)?), table: Ident::parse(t)? }),
            _ => Err(IdentError::TooManyParts(parts.len())),
        }
    }

    /// Quoted for SQL text.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.quoted(), self.table.quoted()),
            None => self.table.quoted(),
        }
    }

    /// A short, unquoted form for messages and trigger names.
    pub fn plain(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.as_str(), self.table.as_str()),
            None => self.table.as_str().to_string(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// Split on dots that are outside double quotes.
fn split_qualified(raw: &str) -> Result<Vec<String>, IdentError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                cur.push_str("\"\"");
                chars.next();
            }
            '"' => {
                in_quotes = !in_quotes;
                cur.push('"');
            }
            '.' if !in_quotes => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if in_quotes {
        return Err(IdentError::Unterminated);
    }
    parts.push(cur);
    Ok(parts)
}

/// A string literal for the few places SQL text must carry a value (trigger bodies, which cannot
/// take parameters). Only values from the daemon config (owned by ops) ever come here. It reads
/// the same whatever `standard_conforming_strings` says: a value with a backslash is written as an
/// `E''` string with the backslash doubled (as libpq's `PQescapeLiteral` does).
pub fn literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A `text[]` of literals ([`literal`]), `'{}'::text[]` when empty.
pub fn text_array(values: &[String]) -> String {
    if values.is_empty() {
        return "'{}'::text[]".into();
    }
    format!("ARRAY[{}]::text[]", values.iter().map(|v| literal(v)).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_reads_the_same_whatever_standard_conforming_strings_says() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b'c"), r"E'a\\b''c'");
        assert_eq!(text_array(&[]), "'{}'::text[]");
    }

    #[test]
    fn camel_case_keeps_its_case_and_is_quoted() {
        let id = Ident::parse("accountOwnerId").expect("valid");
        assert_eq!(id.quoted(), "\"accountOwnerId\"");
        assert_eq!(Ident::parse("\"accountOwnerId\"").expect("valid"), id);
    }

    #[test]
    fn quotes_inside_names_cannot_escape() {
        let id = Ident::parse("x\"; DROP TABLE t; --").expect("valid");
        assert_eq!(id.quoted(), "\"x\"\"; DROP TABLE t; --\"");
    }

    #[test]
    fn qualified_names() {
        let t = TableName::parse("crm.opportunity").expect("valid");
        assert_eq!(t.quoted(), "\"crm\".\"opportunity\"");
        let t = TableName::parse("\"my.schema\".\"Deal\"").expect("valid");
        assert_eq!(t.schema.as_ref().map(|s| s.as_str()), Some("my.schema"));
        assert_eq!(t.table.as_str(), "Deal");
        assert_eq!(TableName::parse("a.b.c"), Err(IdentError::TooManyParts(3)));
        assert_eq!(TableName::parse(""), Err(IdentError::Empty));
        assert!(matches!(Ident::parse(&"x".repeat(64)), Err(IdentError::TooLong(64))));
    }

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("o'brien"), "'o''brien'");
    }
}
