//! Extraction of the text a person wrote in a reply, without the quoted
//! message, the signature or the client's footer.
//!
//! The text is read from the top, line by line:
//!
//! - quoted lines (starting with `>`) are dropped, and so is the
//!   attribution line before them ("On … wrote:", "Le … a écrit :"), which
//!   may be wrapped over three lines; unquoted text between quotes (inline
//!   replies) is kept;
//! - everything from the first of these lines on is dropped: an Outlook
//!   "-----Original Message-----" or "Message d'origine" separator, a
//!   forwarded-message marker, a header block ("From: … Sent: …",
//!   "De : … Envoyé : …"), a line of underscores, the `-- ` signature
//!   delimiter, a "-Name" sign-off after a blank line, a mobile footer
//!   ("Sent from my iPhone", "Envoyé de mon iPhone", "Get Outlook for
//!   iOS"), and an attribution not followed by quoted lines (the client did
//!   not prefix the original with `>`);
//! - trailing white space is removed from every line, and the blank lines
//!   around dropped quotes collapse to one.
//!
//! Every pattern is matched by the `regex` crate in linear time, and lines
//! longer than [`LONG_LINE`] bytes are taken as text without matching, so
//! the whole pass is linear in the input.

use std::sync::LazyLock;

use regex::Regex;

/// Lines longer than this, in bytes, are never separators or attributions.
const LONG_LINE: usize = 2000;
/// The maximum length of an attribution, in bytes, across its lines.
const MAX_ATTRIBUTION: usize = 600;
/// The number of lines an attribution may be wrapped over.
const ATTRIBUTION_LINES: usize = 3;

struct Patterns {
    attribution_start: Regex,
    attribution_end: Regex,
    original_message: Regex,
    forwarded: Regex,
    header_from: Regex,
    header_other: Regex,
    underscores: Regex,
    dash_name: Regex,
    mobile_mine: Regex,
    mobile_app: Regex,
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| {
    Some(Patterns {
        // English, French, German, Spanish, Italian, Dutch, Portuguese,
        // Swedish and Polish openers of "On <date>, <name> wrote:".
        attribution_start: Regex::new(r"(?i)^\s*(on|le|am|el|il|op|em|den|w dniu|dnia)\s").ok()?,
        attribution_end: Regex::new(
            r"(?i)(wrote|writes|a\s+écrit|a\s+ecrit|schrieb|escribió|escribio|ha\s+scritto|schreef|escreveu|skrev|napisał|napisal)\s*:\s*$",
        )
        .ok()?,
        original_message: Regex::new(
            r"(?i)^\s*[-_=*]{2,}\s*(original message|message d['’]origine|message original|mensaje original|ursprüngliche nachricht|messaggio originale|forwarded message|message transféré|message transfere|message réexpédié)\s*[-_=*]{2,}\s*$",
        )
        .ok()?,
        forwarded: Regex::new(r"(?i)^\s*(begin forwarded message|début du message réexpédié|debut du message reexpedie)\s*:\s*$")
            .ok()?,
        header_from: Regex::new(r"(?i)^\s*\*?(from|de|von|da|van)\s*\*?\s*:\s*\*?\s*\S").ok()?,
        header_other: Regex::new(
            r"(?i)^\s*\*?(sent|date|envoyé|envoye|to|à|a|cc|subject|objet|gesendet|an|betreff|enviado|para|asunto|inviato|oggetto)\s*\*?\s*:",
        )
        .ok()?,
        underscores: Regex::new(r"^\s*_{2,}\s*$").ok()?,
        dash_name: Regex::new(r"^-\p{L}[\p{L}\p{M}.' ]{0,40}$").ok()?,
        mobile_mine: Regex::new(
            r"(?i)^\s*(sent from my|envoyé de mon|envoye de mon|envoyé depuis mon|envoye depuis mon|envoyé à partir de mon|envoye a partir de mon)\s+[^,;:!?]{1,40}$",
        )
        .ok()?,
        mobile_app: Regex::new(
            r"(?i)^\s*(sent from|sent with|envoyé de|envoyé depuis|envoyé avec|envoye de|envoye depuis|envoye avec|get outlook for|télécharger outlook pour|telecharger outlook pour|obtenir outlook pour)\s+(yahoo|outlook|gmail|mail|samsung|android|ios|ipad|iphone|proton|protonmail|blackberry|courrier|the)\b[^,;:!?]{0,40}$",
        )
        .ok()?,
    })
});

enum Piece<'a> {
    Line(&'a str),
    /// Lines were dropped here.
    Gap,
}

/// Returns the part of a plain-text reply that its sender wrote.
///
/// Quoted lines (`>`) and their attribution ("On … wrote:", "Le … a écrit :")
/// are dropped. So is everything from the first Outlook separator or header
/// block, forwarded-message marker, line of underscores, `-- ` delimiter,
/// "-Name" sign-off or mobile footer ("Sent from my iPhone", "Envoyé de mon
/// iPhone") on. Text written between quoted lines is kept, trailing white
/// space is removed from each line, and the time is linear in the input.
pub fn visible_reply(body: &str) -> String {
    let Some(patterns) = PATTERNS.as_ref() else {
        // The patterns are constants; if one failed to compile, keeping the
        // whole text is safer than dropping it.
        return body.trim().to_owned();
    };
    let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalised.split('\n').collect();
    let mut pieces = Vec::with_capacity(lines.len());

    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if is_quoted(line) {
            pieces.push(Piece::Gap);
            index += 1;
            continue;
        }
        if line.len() > LONG_LINE {
            pieces.push(Piece::Line(line.trim_end()));
            index += 1;
            continue;
        }

        let after_blank = index == 0 || lines[index - 1].trim().is_empty();
        if ends_reply(patterns, &lines, index, after_blank) {
            break;
        }
        if let Some(last) = attribution_end(patterns, &lines, index) {
            let next = (last + 1..lines.len()).find(|&next| !lines[next].trim().is_empty());
            match next {
                Some(next) if !is_quoted(lines[next]) => break,
                _ => {
                    pieces.push(Piece::Gap);
                    index = last + 1;
                    continue;
                }
            }
        }

        pieces.push(Piece::Line(line.trim_end()));
        index += 1;
    }
    assemble(pieces)
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// True when `lines[index]` starts the part of the message that is not the reply.
fn ends_reply(patterns: &Patterns, lines: &[&str], index: usize, after_blank: bool) -> bool {
    let line = lines[index];
    let trimmed = line.trim_end();
    if trimmed == "--" || patterns.underscores.is_match(line) {
        return true;
    }
    if patterns.original_message.is_match(line) || patterns.forwarded.is_match(line) {
        return true;
    }
    if patterns.mobile_mine.is_match(trimmed) && word_count(trimmed) <= 8 {
        return true;
    }
    if patterns.mobile_app.is_match(trimmed) {
        return true;
    }
    if after_blank && patterns.dash_name.is_match(trimmed) && word_count(trimmed) <= 4 {
        return true;
    }
    patterns.header_from.is_match(line) && starts_header_block(patterns, lines, index)
}

/// True when a `From:` line at `index` is followed, within the next four
/// non-blank lines, by another header such as `Sent:` or `Objet :`.
fn starts_header_block(patterns: &Patterns, lines: &[&str], index: usize) -> bool {
    lines[index + 1..]
        .iter()
        .filter(|line| !line.trim().is_empty())
        .take(4)
        .any(|line| line.len() <= LONG_LINE && patterns.header_other.is_match(line))
}

/// When an attribution starts at `index`, returns the index of its last line.
fn attribution_end(patterns: &Patterns, lines: &[&str], index: usize) -> Option<usize> {
    if !patterns.attribution_start.is_match(lines[index]) {
        return None;
    }
    let mut joined = String::new();
    for (offset, line) in lines[index..].iter().take(ATTRIBUTION_LINES).enumerate() {
        if line.trim().is_empty() || is_quoted(line) {
            return None;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line.trim());
        if joined.len() > MAX_ATTRIBUTION {
            return None;
        }
        if patterns.attribution_end.is_match(&joined) {
            return Some(index + offset);
        }
    }
    None
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn is_separator(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.chars().count() >= 3
        && trimmed
            .chars()
            .all(|c| matches!(c, '-' | '_' | '=' | '*' | '~'))
}

fn assemble(pieces: Vec<Piece<'_>>) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut pending_gap = false;
    for piece in pieces {
        match piece {
            Piece::Gap => pending_gap = true,
            Piece::Line(line) => {
                if pending_gap {
                    if line.is_empty() {
                        continue;
                    }
                    while out.last().is_some_and(|last| last.is_empty()) {
                        out.pop();
                    }
                    if !out.is_empty() {
                        out.push("");
                    }
                    pending_gap = false;
                }
                out.push(line);
            }
        }
    }
    while out
        .last()
        .is_some_and(|last| last.trim().is_empty() || is_separator(last))
    {
        out.pop();
    }
    let start = out
        .iter()
        .position(|line| !line.trim().is_empty())
        .unwrap_or(out.len());
    out[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_english_quote_removed() {
        let body = "Yes, about 20k.\n\nOn Mon, Mar 3, 2025 at 10:12 AM Ana Ruiz <ana@example.com> wrote:\n> What is your budget?\n>\n";
        assert_eq!(visible_reply(body), "Yes, about 20k.");
    }

    #[test]
    fn gmail_french_quote_removed() {
        let body = "Oui, vers 20 k€.\n\nLe lun. 3 mars 2025 à 10:12, Ana Ruiz <ana@example.com> a\u{a0}écrit\u{202f}:\n\n> Quel est votre budget ?\n";
        assert_eq!(visible_reply(body), "Oui, vers 20 k€.");
    }

    #[test]
    fn wrapped_attribution_removed() {
        let body =
            "Sure\n\nLe 3 mars 2025 à 10:12, Ana Ruiz\n<ana@example.com> a écrit :\n> Bonjour\n";
        assert_eq!(visible_reply(body), "Sure");
    }

    #[test]
    fn outlook_french_block_cut() {
        let body = "Bonjour,\nC'est validé de notre côté.\n\nDe : Ana Ruiz <ana@example.com>\nEnvoyé : lundi 3 mars 2025 10:12\nÀ : Paul <paul@example.fr>\nObjet : Devis\n\nBonjour Paul, voici le devis.";
        assert_eq!(visible_reply(body), "Bonjour,\nC'est validé de notre côté.");
    }

    #[test]
    fn original_message_separator_cut() {
        for separator in [
            "-----Original Message-----",
            "-----Message d'origine-----",
            "-------- Message original --------",
        ] {
            let body = format!("Merci\n\n{separator}\nFrom: x\nHello");
            assert_eq!(visible_reply(&body), "Merci", "{separator}");
        }
    }

    #[test]
    fn mobile_footers_cut() {
        for footer in [
            "Envoyé de mon iPhone",
            "Sent from my iPhone",
            "Get Outlook for iOS",
            "Télécharger Outlook pour Android",
            "Sent from Yahoo Mail on Android",
        ] {
            let body = format!("D'accord pour jeudi.\n\n{footer}\n\n> Jeudi ?");
            assert_eq!(visible_reply(&body), "D'accord pour jeudi.", "{footer}");
        }
        let kept = "Ok\n\nSent from my desk, is much easier then my mobile phone.";
        assert_eq!(visible_reply(kept), kept);
    }

    #[test]
    fn signature_delimiter_cut() {
        assert_eq!(visible_reply("Thanks!\n-- \nPaul Martin\nCEO"), "Thanks!");
        assert_eq!(visible_reply("A -- B stays\n"), "A -- B stays");
    }

    #[test]
    fn inline_replies_kept() {
        let body = "On Tue, Apr 1, 2025 at 9:00 AM Ana <a@example.com> wrote:\n> Budget?\n\n20k\n\n> Timeline?\n\nQ3\n";
        assert_eq!(visible_reply(body), "20k\n\nQ3");
    }

    #[test]
    fn unquoted_original_after_attribution_cut() {
        let body = "Yes\n\nOn Tue, Apr 1, 2025, Ana wrote:\nWhat is your budget?\n";
        assert_eq!(visible_reply(body), "Yes");
    }

    #[test]
    fn sentence_starting_with_on_kept() {
        let body = "On second thought, we need it by June.\nLe budget est validé.";
        assert_eq!(visible_reply(body), body);
    }

    #[test]
    fn only_quote_gives_empty_text() {
        assert_eq!(visible_reply("> all quoted\n> here"), "");
        assert_eq!(visible_reply(""), "");
    }

    #[test]
    fn long_lines_are_linear() {
        let body = format!("Hi\n{}\n{}\n", ">".repeat(500_000), "On ".repeat(200_000));
        let started = std::time::Instant::now();
        let _ = visible_reply(&body);
        assert!(started.elapsed().as_secs() < 2);
    }
}
