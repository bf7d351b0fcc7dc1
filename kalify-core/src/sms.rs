//! SMS encoding and segment counting.
//!
//! An SMS carries 140 bytes. Text that fits the GSM 03.38 default alphabet
//! (3GPP TS 23.038) is packed as 7-bit septets, 160 to a message. Any other
//! character switches the whole message to UCS-2, 70 UTF-16 code units to a
//! message. Longer texts are split into concatenated parts whose user data
//! header takes 7 septets (GSM-7, 153 left) or 6 bytes (UCS-2, 67 units left).
//! Providers bill and rate-limit per part, so [`segments`] is what a sender
//! counts against its budget.
//!
//! ```
//! use kalify_core::sms::{segments, SmsEncoding};
//!
//! let plain = segments("Bonjour, etes-vous disponible ?");
//! assert_eq!(plain.encoding, SmsEncoding::Gsm7);
//! assert_eq!(plain.segments, 1);
//!
//! // The typographic apostrophe is not in the GSM alphabet.
//! let curly = segments("Aujourd’hui");
//! assert_eq!(curly.encoding, SmsEncoding::Ucs2);
//! ```

/// Septets in a single GSM-7 message.
pub const GSM7_SINGLE_SEPTETS: usize = 160;
/// Septets in each part of a concatenated GSM-7 message.
pub const GSM7_PART_SEPTETS: usize = 153;
/// UTF-16 code units in a single UCS-2 message.
pub const UCS2_SINGLE_UNITS: usize = 70;
/// UTF-16 code units in each part of a concatenated UCS-2 message.
pub const UCS2_PART_UNITS: usize = 67;

/// The data coding of an SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmsEncoding {
    /// The GSM 03.38 default alphabet and its extension table, 7 bits a character.
    Gsm7,
    /// UCS-2, counted as UTF-16 code units as carriers and providers do.
    Ucs2,
}

/// The encoding of a text and its split into SMS parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SmsSegments {
    /// The encoding the whole text needs.
    pub encoding: SmsEncoding,
    /// Parts billed: 0 for an empty text, 1 when it fits a single message.
    pub segments: usize,
    /// Septets for GSM-7, where an extension character counts 2; UTF-16
    /// code units for UCS-2, where a character outside the Basic
    /// Multilingual Plane, such as most emoji, counts 2.
    pub units: usize,
    /// Unicode scalar values in the text.
    pub characters: usize,
}

/// Counts the encoding, parts and units of `text` sent as one SMS.
///
/// # Behavior
/// - Text made only of GSM-7 characters is GSM-7; a single other character
///   makes the whole text UCS-2.
/// - An extension character (`€ [ ] { } \ ^ ~ |` and form feed) takes an
///   escape septet plus its own, and the pair is never split across parts.
/// - In UCS-2, a surrogate pair is never split across parts.
/// - The count assumes no national language shift table, as providers do
///   by default.
pub fn segments(text: &str) -> SmsSegments {
    let characters = text.chars().count();
    let gsm_costs: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();

    match gsm_costs {
        Some(costs) => {
            let units = costs.iter().sum();
            SmsSegments {
                encoding: SmsEncoding::Gsm7,
                segments: count_parts(&costs, units, GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS),
                units,
                characters,
            }
        }
        None => {
            let costs: Vec<usize> = text.chars().map(char::len_utf16).collect();
            let units = costs.iter().sum();
            SmsSegments {
                encoding: SmsEncoding::Ucs2,
                segments: count_parts(&costs, units, UCS2_SINGLE_UNITS, UCS2_PART_UNITS),
                units,
                characters,
            }
        }
    }
}

/// True when `c` is in the GSM 03.38 default alphabet or its extension table.
pub fn is_gsm7(c: char) -> bool {
    gsm7_septets(c).is_some()
}

/// Returns the distinct characters of `text` outside the GSM-7 alphabet, in
/// order of first appearance. Replacing them (`’` by `'`, `«` by `"`) keeps a
/// message in GSM-7, which halves the cost of a long French text.
pub fn non_gsm7_chars(text: &str) -> Vec<char> {
    let mut found: Vec<char> = Vec::new();
    for c in text.chars() {
        if !is_gsm7(c) && !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

/// Splits characters of the given unit costs into parts of `part_size`
/// units, starting a new part rather than splitting one character.
fn count_parts(costs: &[usize], total: usize, single_size: usize, part_size: usize) -> usize {
    if total == 0 {
        return 0;
    }
    if total <= single_size {
        return 1;
    }
    let mut parts = 1;
    let mut filled = 0;
    for &cost in costs {
        if filled + cost > part_size {
            parts += 1;
            filled = 0;
        }
        filled += cost;
    }
    parts
}

/// Septets `c` takes in GSM-7: 1 in the default alphabet, 2 in the
/// extension table (escape plus code), `None` when GSM-7 cannot encode it.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The GSM 03.38 default alphabet, in code order, without the escape code 0x1B.
const GSM7_BASIC: &str = concat!(
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmnopqrstuvwxyzäöñüà",
);

/// The characters of the GSM 03.38 extension table, each sent after the escape code.
const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_has_128_codes_less_escape() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
    }

    #[test]
    fn empty_text_has_no_segment() {
        let counted = segments("");
        assert_eq!(counted.encoding, SmsEncoding::Gsm7);
        assert_eq!(counted.segments, 0);
        assert_eq!(counted.units, 0);
    }

    #[test]
    fn gsm7_single_and_concatenated_limits() {
        assert_eq!(segments(&"a".repeat(160)).segments, 1);
        assert_eq!(segments(&"a".repeat(161)).segments, 2);
        assert_eq!(segments(&"a".repeat(306)).segments, 2);
        assert_eq!(segments(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn gsm7_accents_in_alphabet_stay_gsm7() {
        let counted = segments("Très bien, à demain. Ça marche !");
        assert_eq!(counted.encoding, SmsEncoding::Gsm7);
        assert_eq!(counted.units, counted.characters);
    }

    #[test]
    fn euro_is_extension_and_counts_two() {
        let counted = segments("Budget: 30 000 €");
        assert_eq!(counted.encoding, SmsEncoding::Gsm7);
        assert_eq!(counted.characters, 16);
        assert_eq!(counted.units, 17);
    }

    #[test]
    fn extension_characters_count_two_each() {
        let counted = segments("{}[]~^|\\€\u{000C}");
        assert_eq!(counted.units, 20);
        assert_eq!(counted.encoding, SmsEncoding::Gsm7);
    }

    #[test]
    fn extension_pushes_single_message_over() {
        assert_eq!(segments(&format!("{}€", "a".repeat(158))).segments, 1);
        assert_eq!(segments(&format!("{}€", "a".repeat(159))).segments, 2);
    }

    #[test]
    fn escape_pair_never_split() {
        // 152 septets, then € (2) would straddle the 153 boundary and moves
        // to the second part.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let counted = segments(&text);
        assert_eq!(counted.units, 164);
        assert_eq!(counted.segments, 2);

        // 306 septets would fill 2 parts of 153 exactly, but the € moved to
        // part 2 leaves one septet of part 1 empty, so a third part is needed.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        let counted = segments(&text);
        assert_eq!(counted.units, 306);
        assert_eq!(counted.segments, 3);
    }

    #[test]
    fn french_typography_switches_to_ucs2() {
        for text in ["C’est parfait", "« Oui »", "Un cœur", "Bœuf"] {
            let counted = segments(text);
            assert_eq!(counted.encoding, SmsEncoding::Ucs2, "{text}");
        }
        assert_eq!(
            non_gsm7_chars("« l’œuvre » d’art"),
            vec!['«', '’', 'œ', '»']
        );
    }

    #[test]
    fn lowercase_c_cedilla_is_not_gsm7() {
        // The default alphabet has only the capital Ç (code 0x09).
        assert!(is_gsm7('Ç'));
        assert!(!is_gsm7('ç'));
        assert_eq!(segments("Ça va").encoding, SmsEncoding::Gsm7);
        assert_eq!(segments("français").encoding, SmsEncoding::Ucs2);
    }

    #[test]
    fn ucs2_limits() {
        assert_eq!(segments(&"é’".repeat(35)).segments, 1);
        let seventy_one = format!("’{}", "a".repeat(70));
        assert_eq!(segments(&seventy_one).segments, 2);
        let one_thirty_four = format!("’{}", "a".repeat(133));
        assert_eq!(segments(&one_thirty_four).segments, 2);
        let one_thirty_five = format!("’{}", "a".repeat(134));
        assert_eq!(segments(&one_thirty_five).segments, 3);
    }

    #[test]
    fn emoji_counts_two_units() {
        let counted = segments("Merci 😀");
        assert_eq!(counted.encoding, SmsEncoding::Ucs2);
        assert_eq!(counted.characters, 7);
        assert_eq!(counted.units, 8);
        assert_eq!(counted.segments, 1);
    }

    #[test]
    fn surrogate_pair_never_split() {
        // 66 units then an emoji (2 units) straddling the 67 boundary.
        let text = format!("’{}😀{}", "a".repeat(65), "b".repeat(10));
        let counted = segments(&text);
        assert_eq!(counted.units, 78);
        assert_eq!(counted.segments, 2);

        let text = format!("’{}😀{}", "a".repeat(65), "b".repeat(65));
        let counted = segments(&text);
        assert_eq!(counted.units, 133);
        // Part 1 contains 66 units and part 2 the emoji and 65 more (67). One
        // more character needs a third part, although 134 units would fill
        // 2 parts of 67 exactly.
        assert_eq!(counted.segments, 2);
        let text = format!("’{}😀{}", "a".repeat(65), "b".repeat(66));
        assert_eq!(segments(&text).segments, 3);
    }

    #[test]
    fn emoji_only_and_long_texts() {
        assert_eq!(segments("😀😀😀").units, 6);
        let long = "Bonjour, ".repeat(100);
        let counted = segments(&long);
        assert_eq!(counted.encoding, SmsEncoding::Gsm7);
        assert_eq!(counted.units, 900);
        assert_eq!(counted.segments, 6);
    }
}
