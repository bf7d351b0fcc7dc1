//! Text normalisation for matching, with a byte map back to the original.
//!
//! Patterns run on a lowercase, accent-free copy of each message, but quotes
//! must be copied from the original text. [`Normalised`] keeps, for every
//! byte of the normalised text, the original character it came from, so a
//! match maps back to a range that always starts and ends on a character
//! boundary of the original.

use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

use super::matching::clause_range;

/// A normalised copy of a message and the map back to the original.
#[derive(Debug, Clone)]
pub(crate) struct Normalised {
    /// Lowercase text without accents, with typographic apostrophes, dashes
    /// and spaces replaced by their ASCII forms and runs of spaces collapsed.
    pub(crate) text: String,
    /// For each byte of `text`, the start of the original character.
    starts: Vec<usize>,
    /// For each byte of `text`, the end of the original character.
    ends: Vec<usize>,
}

impl Normalised {
    /// Normalises `original`: compatibility decomposition (NFKD) per
    /// character, combining marks and invisible characters dropped, lower case.
    pub(crate) fn new(original: &str) -> Self {
        let mut normalised = Normalised {
            text: String::with_capacity(original.len()),
            starts: Vec::with_capacity(original.len()),
            ends: Vec::with_capacity(original.len()),
        };
        for (start, c) in original.char_indices() {
            let end = start + c.len_utf8();
            match c {
                'œ' | 'Œ' => normalised.push_str("oe", start, end),
                'æ' | 'Æ' => normalised.push_str("ae", start, end),
                _ => decompose_compatible(c, |part| normalised.push_part(part, start, end)),
            }
        }
        normalised
    }

    fn push_part(&mut self, part: char, start: usize, end: usize) {
        if is_combining_mark(part) || is_invisible(part) {
            return;
        }
        let mapped = match part {
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{02BC}' | '\u{00B4}' | '`' | '\u{2032}' => {
                '\''
            }
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' => '"',
            '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
            '\n' => '\n',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if mapped == ' '
            && (self.text.is_empty() || self.text.ends_with(' ') || self.text.ends_with('\n'))
        {
            return;
        }
        for lower in mapped.to_lowercase() {
            if !is_combining_mark(lower) {
                self.push_char(lower, start, end);
            }
        }
    }

    fn push_str(&mut self, text: &str, start: usize, end: usize) {
        for c in text.chars() {
            self.push_char(c, start, end);
        }
    }

    fn push_char(&mut self, c: char, start: usize, end: usize) {
        self.text.push(c);
        for _ in 0..c.len_utf8() {
            self.starts.push(start);
            self.ends.push(end);
        }
    }

    /// Maps a non-empty byte range of `text` to the range of the original
    /// characters it came from; `None` for an empty or out-of-bounds range.
    pub(crate) fn original_range(&self, range: Range<usize>) -> Option<Range<usize>> {
        if range.start >= range.end || range.end > self.text.len() {
            return None;
        }
        Some(self.starts[range.start]..self.ends[range.end - 1])
    }

    /// Returns the range of the clause around `range`, as [`clause_range`] does.
    pub(crate) fn clause_range(&self, range: Range<usize>) -> Range<usize> {
        clause_range(&self.text, range)
    }

    /// Maps a normalised `range` to the original text, widened to its clause.
    /// A clause longer than `max_len` bytes of normalised text is cut to
    /// about `max_len` normalised bytes centred on the match.
    pub(crate) fn quote<'a>(
        &self,
        original: &'a str,
        range: Range<usize>,
        max_len: usize,
    ) -> Option<&'a str> {
        let clause = self.clause_range(range.clone());
        let mut start = clause.start;
        let mut end = clause.end;
        if end - start > max_len {
            let margin = max_len.saturating_sub(range.end - range.start) / 2;
            start = start.max(range.start.saturating_sub(margin));
            end = end.min(range.end.saturating_add(margin));
            while start > 0 && !self.text.is_char_boundary(start) {
                start -= 1;
            }
            while end < self.text.len() && !self.text.is_char_boundary(end) {
                end += 1;
            }
        }
        let mapped = self
            .original_range(start..end)
            .or_else(|| self.original_range(range))?;
        let quote = original.get(mapped)?.trim();
        (!quote.is_empty()).then_some(quote)
    }
}

/// Zero-width, bidirectional-control and soft-hyphen characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original_of<'a>(original: &'a str, normalised: &Normalised, needle: &str) -> &'a str {
        let start = normalised.text.find(needle).unwrap();
        let range = normalised
            .original_range(start..start + needle.len())
            .unwrap();
        &original[range]
    }

    #[test]
    fn strips_accents_and_case() {
        let normalised = Normalised::new("Dès QUE possible, ÇA M’intéresse");
        assert_eq!(normalised.text, "des que possible, ca m'interesse");
    }

    #[test]
    fn maps_back_across_accents() {
        let original = "Budget : 15 000 € pour l’été";
        let normalised = Normalised::new(original);
        assert_eq!(normalised.text, "budget : 15 000 € pour l'ete");
        assert_eq!(original_of(original, &normalised, "15 000 €"), "15 000 €");
        assert_eq!(original_of(original, &normalised, "l'ete"), "l’été");
    }

    #[test]
    fn decomposed_accents_map_to_whole_characters() {
        // "e" followed by a combining acute accent, as some phones send it.
        let original = "de\u{301}cide";
        let normalised = Normalised::new(original);
        assert_eq!(normalised.text, "decide");
        assert_eq!(original_of(original, &normalised, "decide"), original);
    }

    #[test]
    fn full_width_and_ligatures() {
        let normalised = Normalised::new("ＳＴＯＰ ﬁne Œuvre");
        assert_eq!(normalised.text, "stop fine oeuvre");
    }

    #[test]
    fn collapses_spaces_and_drops_invisible() {
        let original = "20\u{202F}000\u{A0}\u{A0}€ s\u{200B}top";
        let normalised = Normalised::new(original);
        assert_eq!(normalised.text, "20 000 € stop");
        assert_eq!(
            original_of(original, &normalised, "20 000 €"),
            "20\u{202F}000\u{A0}\u{A0}€"
        );
    }

    #[test]
    fn quote_is_original_substring() {
        let original = "Bonjour ! On a un budget de 15 000 € pour l’été, c’est moi qui décide.";
        let normalised = Normalised::new(original);
        let start = normalised.text.find("15 000").unwrap();
        let quote = normalised.quote(original, start..start + 6, 200).unwrap();
        assert_eq!(quote, "On a un budget de 15 000 € pour l’été");
        assert!(original.contains(quote));
    }

    #[test]
    fn long_clause_quote_is_cut_on_char_boundaries() {
        let original = format!("{}budget 20k€{}", "é".repeat(300), "ü".repeat(300));
        let normalised = Normalised::new(&original);
        let start = normalised.text.find("20k").unwrap();
        let quote = normalised.quote(&original, start..start + 3, 60).unwrap();
        assert!(quote.contains("20k€"));
        assert!(
            quote.chars().count() <= 62,
            "{} chars",
            quote.chars().count()
        );
        assert!(original.contains(quote));
    }

    #[test]
    fn empty_and_emoji() {
        assert_eq!(Normalised::new("").text, "");
        let normalised = Normalised::new("👍🏽");
        assert!(normalised.original_range(0..0).is_none());
        assert!(normalised.original_range(0..100).is_none());
        assert_eq!(
            normalised.quote("👍🏽", 0..normalised.text.len(), 10),
            Some("👍🏽")
        );
    }
}
