//! Helpers shared by the extractors: compiling patterns, taking text
//! windows on character boundaries and spotting negations.

use std::ops::Range;

use regex::{Regex, RegexBuilder};

/// A value found in a normalised message, with the bytes that state it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found<T> {
    /// The value.
    pub(crate) value: T,
    /// The byte range in the normalised text.
    pub(crate) range: Range<usize>,
    /// Confidence from 0 to 1.
    pub(crate) confidence: f32,
}

/// Compiles `pattern` with a compiled-size limit large enough for the
/// longest alternations in this module (the default is 10 MiB).
pub(crate) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(64 << 20).build()
}

/// Joins alternatives into a non-capturing group.
pub(crate) fn any_of(alternatives: &[&str]) -> String {
    format!("(?:{})", alternatives.join("|"))
}

/// Returns the text from `start` to `end`, with both ends clamped to the
/// text and moved outwards to character boundaries.
pub(crate) fn window(text: &str, start: usize, end: usize) -> &str {
    let mut start = start.min(text.len());
    let mut end = end.min(text.len()).max(start);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    &text[start..end]
}

/// Returns up to `max_bytes` of text before `at`.
pub(crate) fn before(text: &str, at: usize, max_bytes: usize) -> &str {
    window(text, at.saturating_sub(max_bytes), at)
}

/// Returns up to `max_bytes` of text after `at`.
pub(crate) fn after(text: &str, at: usize, max_bytes: usize) -> &str {
    window(text, at, at.saturating_add(max_bytes))
}

/// Returns the last `count` words of `text`, oldest first.
pub(crate) fn last_words(text: &str, count: usize) -> Vec<&str> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| !word.is_empty())
        .collect();
    words[words.len().saturating_sub(count)..].to_vec()
}

/// Returns the first word of `text`, skipping leading spaces and hyphens.
pub(crate) fn first_word(text: &str) -> &str {
    let text = text.trim_start_matches([' ', '-']);
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '%'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Returns the range of the clause around `range`: the text between the nearest
/// clause boundaries before and after it, without surrounding spaces. A
/// clause ends at `!`, `?`, `;`, a line break, or a `.` or `,` followed by a
/// space, so "1.5", "15,000" and "approx." before a number do not split it.
pub(crate) fn clause_range(text: &str, range: Range<usize>) -> Range<usize> {
    bounded_range(text, range, true)
}

/// Returns the range of the sentence around `range`, like [`clause_range`]
/// except that commas do not end it.
pub(crate) fn sentence_range(text: &str, range: Range<usize>) -> Range<usize> {
    bounded_range(text, range, false)
}

/// Returns the start of the clause that contains byte `at`.
pub(crate) fn clause_start(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    let mut start = at.min(bytes.len());
    while start > 0 && !is_boundary(bytes, start - 1, true) {
        start -= 1;
    }
    start
}

fn bounded_range(text: &str, range: Range<usize>, split_on_comma: bool) -> Range<usize> {
    let bytes = text.as_bytes();
    let range = range.start.min(bytes.len())..range.end.min(bytes.len());
    let mut start = range.start;
    while start > 0 && !is_boundary(bytes, start - 1, split_on_comma) {
        start -= 1;
    }
    let mut end = range.end.max(start);
    while end < bytes.len() && !is_boundary(bytes, end, split_on_comma) {
        end += 1;
    }
    // Boundaries are ASCII bytes, so `start` and `end` are char boundaries.
    while start < end && bytes[start] == b' ' {
        start += 1;
    }
    while end > start && bytes[end - 1] == b' ' {
        end -= 1;
    }
    start..end
}

/// Checks whether the byte at `index` ends a clause.
fn is_boundary(bytes: &[u8], index: usize, split_on_comma: bool) -> bool {
    let next_is_space = bytes
        .get(index + 1)
        .is_none_or(|next| *next == b' ' || *next == b'\n');
    match bytes[index] {
        b'!' | b'?' | b';' | b'\n' => true,
        b',' => split_on_comma && next_is_space,
        b'.' => next_is_space && !ends_with_abbreviation(&bytes[..index]),
        _ => false,
    }
}

/// Checks whether the text before a period ends with an abbreviation such as "approx".
fn ends_with_abbreviation(before: &[u8]) -> bool {
    const ABBREVIATIONS: &[&[u8]] = &[
        b"approx", b"env", b"ca", b"cf", b"etc", b"vs", b"mr", b"mrs", b"ms", b"dr", b"mme", b"st",
    ];
    ABBREVIATIONS.iter().any(|abbreviation| {
        before.ends_with(abbreviation)
            && before
                .len()
                .checked_sub(abbreviation.len() + 1)
                .is_none_or(|previous| !before[previous].is_ascii_alphanumeric())
    })
}

/// Checks whether one of the three words before `start` negates what follows, as
/// in "we don't need", "not interested" or "pas besoin". Only words of the
/// same clause count.
pub(crate) fn is_negated(text: &str, clause_start: usize, start: usize) -> bool {
    let preceding = window(text, clause_start.min(start), start);
    last_words(preceding, 3).iter().any(|word| is_negator(word))
}

fn is_negator(word: &str) -> bool {
    const NEGATORS: &[&str] = &[
        "not", "no", "never", "don't", "dont", "doesn't", "doesnt", "didn't", "didnt", "isn't",
        "isnt", "aren't", "arent", "wasn't", "won't", "wont", "can't", "cant", "cannot", "without",
        "nothing", "pas", "ne", "jamais", "aucun", "aucune", "sans", "rien",
    ];
    NEGATORS.contains(&word) || word.starts_with("n'") || word.starts_with("d'aucun")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_snaps_to_char_boundaries() {
        let text = "été";
        assert_eq!(window(text, 1, 2), "é");
        assert_eq!(window(text, 0, 100), "été");
        assert_eq!(window(text, 100, 200), "");
        assert_eq!(before(text, 3, 1), "t");
        assert_eq!(after(text, 0, 1), "é");
    }

    #[test]
    fn negation_in_clause_only() {
        let text = "we don't need to check with my boss";
        let start = text.find("check").unwrap();
        assert!(is_negated(text, 0, start));
        let text = "no, i need to check with my boss";
        let start = text.find("check").unwrap();
        assert!(!is_negated(text, 4, start));
        assert!(is_negated("on n'a pas besoin", 0, 11));
    }

    #[test]
    fn clauses_and_sentences() {
        let text = "hi. budget approx. 7.5k, start in may! thanks";
        let start = text.find("7.5k").unwrap();
        assert_eq!(
            &text[clause_range(text, start..start + 4)],
            "budget approx. 7.5k"
        );
        assert_eq!(
            &text[sentence_range(text, start..start + 4)],
            "budget approx. 7.5k, start in may"
        );
        assert_eq!(clause_start(text, start), text.find(" budget").unwrap());
        assert_eq!(clause_range("", 0..0), 0..0);
        assert_eq!(clause_range("abc", 5..9), 0..3);
    }

    #[test]
    fn word_helpers() {
        assert_eq!(first_word(" - employees and more"), "employees");
        assert_eq!(first_word("%"), "%");
        assert_eq!(last_words("a b, c d", 2), vec!["c", "d"]);
        assert!(last_words("", 3).is_empty());
    }
}
