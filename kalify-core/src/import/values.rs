//! Cell parsing: names, numbers, yes/no values, dates, countries and contact points.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use unicode_normalization::{IsNormalized, UnicodeNormalization};

use crate::Timestamp;
use crate::contact::{EmailAddress, PhoneNumber, Region};
use crate::prospect::Locale;

use super::mapping::header_key;

/// Trims a cell, collapses inner whitespace to single spaces and
/// NFC-normalises it. Returns `None` for an empty cell.
pub(crate) fn clean_text(cell: &str) -> Option<String> {
    let mut cleaned = String::with_capacity(cell.len());
    for word in cell.split_whitespace() {
        if !cleaned.is_empty() {
            cleaned.push(' ');
        }
        cleaned.push_str(word);
    }
    if cleaned.is_empty() {
        return None;
    }
    Some(to_nfc(cleaned))
}

/// Returns `text` in Unicode normalization form C, without copying it when
/// it already is, as ASCII text and most accented text typed on a keyboard are.
pub(crate) fn to_nfc(text: String) -> String {
    if unicode_normalization::is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return text;
    }
    text.nfc().collect()
}

/// Removes the `'` that spreadsheet-safe CSV writers, kalify's export among
/// them, put before a cell starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return so that a spreadsheet does not run it as a formula.
pub(crate) fn strip_formula_guard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// Splits a full name into given and family names.
///
/// `Dupont, Jean` puts the family name first. So does a leading run of
/// upper-case words, as in `DUPONT Jean Pierre`, a usual French form.
/// Otherwise the first word is the given name and the rest the family name,
/// and a single word is taken as the given name.
pub(crate) fn split_full_name(full: &str) -> (Option<String>, Option<String>) {
    if let Some((last, first)) = full.split_once(',') {
        return (clean_text(first), clean_text(last));
    }
    let words: Vec<&str> = full.split_whitespace().collect();
    if words.len() < 2 {
        return (clean_text(full), None);
    }
    let is_upper_word = |word: &&&str| {
        word.chars().any(char::is_alphabetic)
            && word
                .chars()
                .filter(|c| c.is_alphabetic())
                .all(char::is_uppercase)
    };
    let leading_upper = words.iter().take_while(is_upper_word).count();
    if leading_upper > 0 && leading_upper < words.len() {
        let last = words[..leading_upper].join(" ");
        let first = words[leading_upper..].join(" ");
        return (clean_text(&first), clean_text(&last));
    }
    (clean_text(words[0]), clean_text(&words[1..].join(" ")))
}

/// Reads a yes/no value in English or French. Returns `None` when the text
/// is neither.
pub(crate) fn parse_bool(cell: &str) -> Option<bool> {
    match header_key(cell).as_str() {
        "1" | "true" | "yes" | "y" | "oui" | "o" | "vrai" | "x" | "optin" | "optedin"
        | "accepted" | "accepte" | "granted" | "subscribed" | "inscrit" => Some(true),
        "0" | "false" | "no" | "n" | "non" | "faux" | "optout" | "optedout" | "refused"
        | "refuse" | "denied" | "unsubscribed" | "desinscrit" => Some(false),
        _ => match cell.trim() {
            "✓" | "✔" => Some(true),
            _ => None,
        },
    }
}

/// Reads a number written with French or English separators and an optional
/// currency sign: `1 234,5`, `1,234.5`, `12 400 €`, `$12,400.00`.
///
/// A single comma followed by exactly three digits, as in `42,000`, is a
/// thousands separator under [`Locale::En`] and a decimal comma under
/// [`Locale::Fr`].
pub(crate) fn parse_number(cell: &str, locale: Locale) -> Option<f64> {
    let compact: String = cell
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '€' | '$' | '£' | '\''))
        .collect();
    if compact.is_empty() {
        return None;
    }
    let commas = compact.matches(',').count();
    let dots = compact.matches('.').count();
    let normalised = if commas > 0 && dots > 0 {
        // The separator that comes last is the decimal one.
        let last_comma = compact.rfind(',').unwrap_or(0);
        let last_dot = compact.rfind('.').unwrap_or(0);
        if last_comma > last_dot {
            compact.replace('.', "").replace(',', ".")
        } else {
            compact.replace(',', "")
        }
    } else if commas > 1 {
        compact.replace(',', "")
    } else if commas == 1 {
        let decimals = compact.rsplit(',').next().map(str::len).unwrap_or(0);
        if decimals == 3 && locale == Locale::En {
            compact.replace(',', "")
        } else {
            compact.replace(',', ".")
        }
    } else if dots > 1 {
        compact.replace('.', "")
    } else {
        compact
    };
    let number: f64 = normalised.parse().ok()?;
    number.is_finite().then_some(number)
}

/// Month names and abbreviations in English and French, in key form.
const MONTHS: &[(&str, u32)] = &[
    ("january", 1),
    ("jan", 1),
    ("janvier", 1),
    ("janv", 1),
    ("february", 2),
    ("feb", 2),
    ("fevrier", 2),
    ("fevr", 2),
    ("fev", 2),
    ("march", 3),
    ("mar", 3),
    ("mars", 3),
    ("april", 4),
    ("apr", 4),
    ("avril", 4),
    ("avr", 4),
    ("may", 5),
    ("mai", 5),
    ("june", 6),
    ("jun", 6),
    ("juin", 6),
    ("july", 7),
    ("jul", 7),
    ("juillet", 7),
    ("juil", 7),
    ("august", 8),
    ("aug", 8),
    ("aout", 8),
    ("september", 9),
    ("sep", 9),
    ("sept", 9),
    ("septembre", 9),
    ("october", 10),
    ("oct", 10),
    ("octobre", 10),
    ("november", 11),
    ("nov", 11),
    ("novembre", 11),
    ("december", 12),
    ("dec", 12),
    ("decembre", 12),
];

fn month_number(word: &str) -> Option<u32> {
    let key = header_key(word);
    MONTHS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, number)| *number)
}

/// Reads a calendar date: ISO `2026-01-06` (a time part is ignored),
/// `06/01/2026`, `06.01.2026`, `06-01-2026`, `2026/01/06`, `6 janvier 2026`,
/// `January 6, 2026` or `6 Jan 2026`.
///
/// Numeric day and month are read in the locale's order (day first for
/// [`Locale::Fr`], month first for [`Locale::En`]) unless one of them is
/// above 12, which settles the order.
pub(crate) fn parse_date(cell: &str, locale: Locale) -> Option<NaiveDate> {
    let text = cell.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(date) = parse_iso_prefix(text) {
        return Some(date);
    }
    let numeric: Vec<&str> = text.split(['/', '.', '-']).map(str::trim).collect();
    if numeric.len() == 3
        && numeric
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    {
        return parse_numeric_date(&numeric, locale);
    }
    parse_worded_date(text)
}

fn parse_iso_prefix(text: &str) -> Option<NaiveDate> {
    let head = text.get(..10)?;
    let rest = &text[10..];
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
        return None;
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

fn parse_numeric_date(parts: &[&str], locale: Locale) -> Option<NaiveDate> {
    let numbers: Vec<u32> = parts
        .iter()
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    let (a, b, c) = (numbers[0], numbers[1], numbers[2]);
    if parts[0].len() == 4 {
        return NaiveDate::from_ymd_opt(i32::try_from(a).ok()?, b, c);
    }
    let year = match parts[2].len() {
        4 => i32::try_from(c).ok()?,
        2 => 2000 + i32::try_from(c).ok()?,
        _ => return None,
    };
    let day_first = if a > 12 {
        true
    } else if b > 12 {
        false
    } else {
        locale == Locale::Fr
    };
    let (day, month) = if day_first { (a, b) } else { (b, a) };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn parse_worded_date(text: &str) -> Option<NaiveDate> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| !word.is_empty())
        .collect();
    if words.len() != 3 {
        return None;
    }
    let day_of = |word: &str| -> Option<u32> {
        let digits = word.trim_end_matches(|c: char| c.is_alphabetic());
        digits.parse().ok()
    };
    let year: i32 = words[2].parse().ok()?;
    if let Some(month) = month_number(words[1]) {
        return NaiveDate::from_ymd_opt(year, month, day_of(words[0])?);
    }
    let month = month_number(words[0])?;
    NaiveDate::from_ymd_opt(year, month, day_of(words[1])?)
}

/// Reads a point in time: RFC 3339, `2026-01-06 14:30[:00]` (read as UTC)
/// or any form [`parse_date`] reads (midnight UTC).
pub(crate) fn parse_timestamp(cell: &str, locale: Locale) -> Option<Timestamp> {
    let text = cell.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    let date = parse_date(text, locale)?;
    Some(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)))
}

/// Country names in English and French, in key form, with their region code.
const COUNTRIES: &[(&str, &str)] = &[
    ("france", "FR"),
    ("belgium", "BE"),
    ("belgique", "BE"),
    ("switzerland", "CH"),
    ("suisse", "CH"),
    ("luxembourg", "LU"),
    ("monaco", "MC"),
    ("canada", "CA"),
    ("germany", "DE"),
    ("allemagne", "DE"),
    ("spain", "ES"),
    ("espagne", "ES"),
    ("italy", "IT"),
    ("italie", "IT"),
    ("portugal", "PT"),
    ("netherlands", "NL"),
    ("thenetherlands", "NL"),
    ("paysbas", "NL"),
    ("holland", "NL"),
    ("austria", "AT"),
    ("autriche", "AT"),
    ("ireland", "IE"),
    ("irlande", "IE"),
    ("unitedkingdom", "GB"),
    ("uk", "GB"),
    ("greatbritain", "GB"),
    ("england", "GB"),
    ("royaumeuni", "GB"),
    ("angleterre", "GB"),
    ("grandebretagne", "GB"),
    ("unitedstates", "US"),
    ("unitedstatesofamerica", "US"),
    ("usa", "US"),
    ("etatsunis", "US"),
    ("etatsunisdamerique", "US"),
    ("poland", "PL"),
    ("pologne", "PL"),
    ("sweden", "SE"),
    ("suede", "SE"),
    ("denmark", "DK"),
    ("danemark", "DK"),
    ("norway", "NO"),
    ("norvege", "NO"),
    ("finland", "FI"),
    ("finlande", "FI"),
    ("greece", "GR"),
    ("grece", "GR"),
    ("morocco", "MA"),
    ("maroc", "MA"),
    ("algeria", "DZ"),
    ("algerie", "DZ"),
    ("tunisia", "TN"),
    ("tunisie", "TN"),
    ("senegal", "SN"),
    ("cotedivoire", "CI"),
    ("ivorycoast", "CI"),
    ("cameroon", "CM"),
    ("cameroun", "CM"),
    ("reunion", "RE"),
    ("lareunion", "RE"),
    ("guadeloupe", "GP"),
    ("martinique", "MQ"),
    ("frenchguiana", "GF"),
    ("guyane", "GF"),
    ("guyanefrancaise", "GF"),
    ("mayotte", "YT"),
    ("newcaledonia", "NC"),
    ("nouvellecaledonie", "NC"),
    ("frenchpolynesia", "PF"),
    ("polynesiefrancaise", "PF"),
    ("quebec", "CA"),
    ("mexico", "MX"),
    ("mexique", "MX"),
    ("brazil", "BR"),
    ("bresil", "BR"),
    ("australia", "AU"),
    ("australie", "AU"),
    ("japan", "JP"),
    ("japon", "JP"),
    ("china", "CN"),
    ("chine", "CN"),
    ("india", "IN"),
    ("inde", "IN"),
];

/// Three-letter ISO 3166-1 codes of the countries above that files use most.
const ALPHA3: &[(&str, &str)] = &[
    ("fra", "FR"),
    ("bel", "BE"),
    ("che", "CH"),
    ("lux", "LU"),
    ("can", "CA"),
    ("deu", "DE"),
    ("esp", "ES"),
    ("ita", "IT"),
    ("prt", "PT"),
    ("nld", "NL"),
    ("gbr", "GB"),
    ("usa", "US"),
    ("mar", "MA"),
    ("dza", "DZ"),
    ("tun", "TN"),
];

/// Reads a country as an ISO 3166-1 alpha-2 or alpha-3 code or a common
/// English or French name.
pub(crate) fn region_for_country(cell: &str) -> Option<Region> {
    let key = header_key(cell);
    if key.is_empty() {
        return None;
    }
    if key.len() == 2 {
        if key == "uk" {
            return "GB".parse().ok();
        }
        return key.parse().ok();
    }
    let code = COUNTRIES
        .iter()
        .chain(ALPHA3)
        .find(|(name, _)| *name == key)
        .map(|(_, code)| *code)?;
    code.parse().ok()
}

/// Splits a tag cell on `,`, `;` and `|`, trimming and dropping empty tags.
pub(crate) fn split_tags(cell: &str) -> Vec<String> {
    cell.split([',', ';', '|']).filter_map(clean_text).collect()
}

/// Reads a phone cell in `region`. A cell with several numbers separated by
/// `/`, `,` or `;` gives its first valid one.
///
/// A national number that lost its leading 0, or an international one that
/// lost its `+`, as when a spreadsheet stores it as a number, still reads
/// when it belongs to `region`, because the phonenumber crate accepts both forms.
pub(crate) fn parse_phone(cell: &str, region: Region) -> Option<PhoneNumber> {
    if let Ok(phone) = PhoneNumber::parse(cell, region) {
        return Some(phone);
    }
    if cell.contains(['/', ',', ';']) {
        return cell
            .split(['/', ',', ';'])
            .filter(|part| !part.trim().is_empty())
            .find_map(|part| PhoneNumber::parse(part, region).ok());
    }
    None
}

/// Reads an e-mail cell: a bare address, `mailto:` link, `Name <address>`,
/// or the first valid address of a list separated by `,`, `;` or spaces.
pub(crate) fn parse_email(cell: &str) -> Option<EmailAddress> {
    let text = cell.trim();
    let text = text.strip_prefix("mailto:").unwrap_or(text);
    if let Ok(email) = EmailAddress::parse(text) {
        return Some(email);
    }
    if let (Some(open), Some(close)) = (text.rfind('<'), text.rfind('>'))
        && open < close
        && let Ok(email) = EmailAddress::parse(&text[open + 1..close])
    {
        return Some(email);
    }
    text.split([',', ';', ' '])
        .filter(|part| part.contains('@'))
        .find_map(|part| EmailAddress::parse(part).ok())
}

/// Reads an e-mail cell that must hold exactly one address: bare, as a
/// `mailto:` link or as `Name <address>`. Unlike [`parse_email`], it finds
/// no address inside a list or other text.
pub(crate) fn parse_single_email(cell: &str) -> Option<EmailAddress> {
    let text = cell.trim();
    let text = text.strip_prefix("mailto:").unwrap_or(text);
    if let Ok(email) = EmailAddress::parse(text) {
        return Some(email);
    }
    let (display_name, rest) = text.split_once('<')?;
    let address = rest.strip_suffix('>')?;
    if display_name.contains(['@', '<', '>']) || address.contains(['<', '>']) {
        return None;
    }
    EmailAddress::parse(address).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_collapses_and_normalises() {
        assert_eq!(
            clean_text("  Jean \t  Pierre \n"),
            Some("Jean Pierre".to_owned())
        );
        assert_eq!(clean_text("   "), None);
        // "e" followed by a combining acute accent becomes the single character "é".
        assert_eq!(clean_text("Rene\u{301}e"), Some("Ren\u{e9}e".to_owned()));
    }

    #[test]
    fn nfc_keeps_composed_text_and_composes_the_rest() {
        assert_eq!(to_nfc("Hélène".to_owned()), "H\u{e9}l\u{e8}ne");
        assert_eq!(
            to_nfc("He\u{301}le\u{300}ne".to_owned()),
            "H\u{e9}l\u{e8}ne"
        );
        assert_eq!(to_nfc("plain".to_owned()), "plain");
    }

    #[test]
    fn formula_guard_is_removed() {
        assert_eq!(
            strip_formula_guard("'+33 6 12 34 56 78"),
            "+33 6 12 34 56 78"
        );
        assert_eq!(strip_formula_guard("'=SUM(A1)"), "=SUM(A1)");
        assert_eq!(strip_formula_guard("'-5%"), "-5%");
        assert_eq!(strip_formula_guard("'quoted'"), "'quoted'");
        assert_eq!(strip_formula_guard("O'Brien"), "O'Brien");
    }

    #[test]
    fn full_names_split() {
        let cases = [
            ("Alice Dupont", Some("Alice"), Some("Dupont")),
            (
                "Jean Pierre de la Tour",
                Some("Jean"),
                Some("Pierre de la Tour"),
            ),
            ("DUPONT Jean Pierre", Some("Jean Pierre"), Some("DUPONT")),
            ("LE GALL Anne", Some("Anne"), Some("LE GALL")),
            ("Dupont, Jean", Some("Jean"), Some("Dupont")),
            ("Madonna", Some("Madonna"), None),
            ("JEAN DUPONT", Some("JEAN"), Some("DUPONT")),
        ];
        for (full, first, last) in cases {
            let (got_first, got_last) = split_full_name(full);
            assert_eq!(got_first.as_deref(), first, "{full}");
            assert_eq!(got_last.as_deref(), last, "{full}");
        }
    }

    #[test]
    fn bools_in_two_languages() {
        for yes in ["oui", "Yes", "TRUE", "1", "x", "Opt-in", "✓"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["non", "No", "false", "0", "opt-out"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn numbers_with_separators() {
        let cases = [
            ("1 234,5", Locale::Fr, 1234.5),
            ("1,234.5", Locale::En, 1234.5),
            ("1.234,5", Locale::Fr, 1234.5),
            ("12 400 €", Locale::Fr, 12400.0),
            ("$12,400.00", Locale::En, 12400.0),
            ("42,000", Locale::En, 42000.0),
            ("42,000", Locale::Fr, 42.0),
            ("3,5", Locale::En, 3.5),
            ("-7", Locale::Fr, -7.0),
            ("1.234.567", Locale::Fr, 1_234_567.0),
        ];
        for (text, locale, expected) in cases {
            assert_eq!(
                parse_number(text, locale),
                Some(expected),
                "{text} {locale}"
            );
        }
        for bad in ["", "abc", "12abc", "inf", "NaN"] {
            assert_eq!(parse_number(bad, Locale::Fr), None, "{bad}");
        }
    }

    #[test]
    fn dates_in_usual_forms() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let cases = [
            ("2026-01-06", Locale::Fr, date(2026, 1, 6)),
            ("2026-01-06T10:00:00Z", Locale::Fr, date(2026, 1, 6)),
            ("06/01/2026", Locale::Fr, date(2026, 1, 6)),
            ("06/01/2026", Locale::En, date(2026, 6, 1)),
            ("10/13/2026", Locale::Fr, date(2026, 10, 13)),
            ("13.10.26", Locale::En, date(2026, 10, 13)),
            ("2026/01/06", Locale::En, date(2026, 1, 6)),
            ("6 janvier 2026", Locale::Fr, date(2026, 1, 6)),
            ("1er février 2026", Locale::Fr, date(2026, 2, 1)),
            ("January 6, 2026", Locale::En, date(2026, 1, 6)),
            ("6 Jan 2026", Locale::En, date(2026, 1, 6)),
        ];
        for (text, locale, expected) in cases {
            assert_eq!(parse_date(text, locale), expected, "{text}");
        }
        for bad in ["", "31/02/2026", "soon", "2026-13-01", "1/2"] {
            assert_eq!(parse_date(bad, Locale::Fr), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_default_to_utc() {
        let at = parse_timestamp("2026-01-06 14:30", Locale::Fr).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-06T14:30:00+00:00");
        let at = parse_timestamp("2026-01-06T14:30:00+01:00", Locale::Fr).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-06T13:30:00+00:00");
        let at = parse_timestamp("06/01/2026", Locale::Fr).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-06T00:00:00+00:00");
    }

    #[test]
    fn countries_by_code_and_name() {
        let code = |text: &str| region_for_country(text).map(|region| region.code().to_owned());
        assert_eq!(code("BE").as_deref(), Some("BE"));
        assert_eq!(code("Belgique").as_deref(), Some("BE"));
        assert_eq!(code("États-Unis").as_deref(), Some("US"));
        assert_eq!(code("United Kingdom").as_deref(), Some("GB"));
        assert_eq!(code("uk").as_deref(), Some("GB"));
        assert_eq!(code("CHE").as_deref(), Some("CH"));
        assert_eq!(code("Côte d'Ivoire").as_deref(), Some("CI"));
        assert_eq!(code("Atlantis"), None);
        assert_eq!(code(""), None);
    }

    #[test]
    fn phones_in_spreadsheet_forms() {
        let read = |text: &str, region: Region| {
            parse_phone(text, region).map(|phone| phone.as_str().to_owned())
        };
        for text in [
            "06 12 34 56 78",
            "612345678",
            "33612345678",
            "0033612345678",
            "06 12 34 56 78 / 01 45 04 89 55",
        ] {
            assert_eq!(
                read(text, Region::FR).as_deref(),
                Some("+33612345678"),
                "{text}"
            );
        }
        assert_eq!(
            read("4155552671", Region::US).as_deref(),
            Some("+14155552671")
        );
        assert_eq!(
            read("14155552671", Region::US).as_deref(),
            Some("+14155552671")
        );
        for bad in ["12", "3.36123E+10", "4155552671"] {
            assert_eq!(read(bad, Region::FR), None, "{bad}");
        }
    }

    #[test]
    fn emails_in_usual_wrappings() {
        let read = |text: &str| parse_email(text).map(|email| email.as_str().to_owned());
        assert_eq!(
            read(" jean@Example.fr ").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(
            read("mailto:jean@example.fr").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(
            read("Jean Dupont <jean@example.fr>").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(
            read("bad; jean@example.fr").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(read("jean.example.fr"), None);
    }

    #[test]
    fn single_emails_only() {
        let read = |text: &str| parse_single_email(text).map(|email| email.as_str().to_owned());
        assert_eq!(
            read(" jean@Example.fr ").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(
            read("mailto:jean@example.fr").as_deref(),
            Some("jean@example.fr")
        );
        assert_eq!(
            read("Jean Dupont <jean@example.fr>").as_deref(),
            Some("jean@example.fr")
        );
        for bad in [
            "Jean Dupont@example.fr",
            "bad; jean@example.fr",
            "a@example.fr, b@example.fr",
            "jean@",
            "x <y <jean@example.fr>>",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn tags_split_on_separators() {
        assert_eq!(
            split_tags("salon 2026, VIP | froid;;"),
            vec!["salon 2026", "VIP", "froid"]
        );
    }
}
