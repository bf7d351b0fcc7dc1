//! Opt-out, opt-in and help keywords in English and French.
//!
//! A keyword counts only when it is the whole message after normalisation,
//! as carriers do: "STOP" and " Stop. " opt out, "stop by tomorrow" does not.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The class of a keyword message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Stop all messages.
    OptOut,
    /// Resume messages.
    OptIn,
    /// Ask for help.
    Help,
}

const OPT_OUT: &[&str] = &[
    // English: carrier defaults (Twilio Advanced Opt-Out, CTIA).
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    // French: FFT/af2m SMS charter wording.
    "STOP SMS",
    "ARRET",
    "ARRETER",
    "DESABONNER",
    "DESINSCRIRE",
];
const OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];
const HELP: &[&str] = &["HELP", "INFO", "AIDE"];

/// Normalises a message for keyword matching: NFKC (full-width letters become
/// ASCII), accents stripped, zero-width and bidi characters removed,
/// punctuation turned into spaces, spaces collapsed, upper case.
pub fn normalise(text: &str) -> String {
    let decomposed: String = text.nfkc().collect::<String>().nfd().collect();
    let mut out = String::with_capacity(decomposed.len());
    let mut pending_space = false;
    for c in decomposed.chars() {
        if is_combining_mark(c) || is_invisible(c) {
            continue;
        }
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_uppercase());
        } else {
            pending_space = true;
        }
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Classifies a whole message as a keyword, if it is one.
pub fn classify(text: &str) -> Option<Keyword> {
    // Long messages are never bare keywords; skip normalising them.
    if text.len() > 64 {
        return None;
    }
    let normalised = normalise(text);
    if OPT_OUT.contains(&normalised.as_str()) {
        Some(Keyword::OptOut)
    } else if OPT_IN.contains(&normalised.as_str()) {
        Some(Keyword::OptIn)
    } else if HELP.contains(&normalised.as_str()) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_shapes() {
        for text in [
            "stop",
            " Stop. ",
            "STOP!!",
            "Arrêt",
            "ＳＴＯＰ",
            "S\u{200b}TOP",
            "stop sms",
            "Désinscrire",
            "arrêter",
            "unsubscribe",
            "OptOut",
        ] {
            assert_eq!(classify(text), Some(Keyword::OptOut), "{text:?}");
        }
    }

    #[test]
    fn not_opt_outs() {
        for text in [
            "stop by tomorrow",
            "non merci, pas maintenant",
            "Stop please",
            "",
            "🙂",
            "Please cancel my order",
        ] {
            assert_eq!(classify(text), None, "{text:?}");
        }
    }

    #[test]
    fn opt_in_and_help() {
        assert_eq!(classify("start"), Some(Keyword::OptIn));
        assert_eq!(classify("Unstop"), Some(Keyword::OptIn));
        assert_eq!(classify("aide"), Some(Keyword::Help));
        assert_eq!(classify("HELP?"), Some(Keyword::Help));
    }
}
