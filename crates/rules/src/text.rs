//! Positions in a text and bounded excerpts of it: the leaf every message about a file builds on.
//!
//! Owns turning a byte offset into the line and column an editor shows, and cutting a text to a
//! length a log line or a status field can carry. It must not know what the text is (a rule file,
//! the daemon's config, a server's words) nor read anything.

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The 1-based line and column (in characters, as editors count them) of byte offset `off`; an
/// offset inside a character (a parser's byte count) is taken back to that character's start.
pub fn line_col(text: &str, off: usize) -> (usize, usize) {
    let mut off = off.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

pub(crate) fn line_col_bytes(bytes: &[u8], off: usize) -> (usize, usize) {
    let before = &bytes[..off.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rposition(|b| *b == b'\n').map_or(off + 1, |i| off - i);
    (line, col)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_text_longer_than_its_bound_is_cut_at_a_character_with_an_ellipsis() {
        assert_eq!(super::bounded("Nguyễn Văn", 5), "Nguyễ…");
        assert_eq!(super::bounded("Giang", 5), "Giang");
    }

    #[test]
    fn a_position_inside_a_character_is_that_character_and_columns_count_characters() {
        assert_eq!(super::line_col("\"¡", 2), (1, 2));
        assert_eq!(super::line_col("a = 1\nname = \"Nguyễn\" x", 21), (2, 14));
        assert_eq!(super::line_col("ab", 99), (1, 3));
    }
}
