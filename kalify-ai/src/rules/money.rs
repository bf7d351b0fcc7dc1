//! Budget extraction: amounts of money in English and French formats.
//!
//! A number counts as a budget only with evidence that it is money:
//!
//! | evidence | example | confidence |
//! |---|---|---|
//! | a currency mark next to it | "20k€", "$50,000", "15 000 euros" | 0.9 |
//! | a budget word near it, in the same sentence | "budget around 10K" | 0.8 |
//! | a `k` or `M` suffix and nothing counted after it | "can you do 15k?", "around 5k a month" | 0.6 |
//! | the previous outbound message requested the budget | "10 000" after "What budget…?" | 0.6 |
//!
//! Phone numbers, years, dates, times, percentages and counted things
//! ("50 employees", "3,000 leads") are skipped unless a currency mark is
//! attached. A range ("between 10 and 20k", "10 à 15 000 €") gives its lower
//! bound, the amount the prospect can commit to for sure. "No budget" and
//! "pas de budget" give an amount of 0, but "no budget yet", "no budget
//! limit" and "aucun budget n'est encore défini" give nothing. An amount
//! right after a threshold word in a sentence about approval ("l'accord de
//! la DAF pour toute dépense au-dessus de 5 000 €") is a limit, not a budget.
//!
//! NOTE: the period is dropped, so "2 500 € par mois" gives 2,500, the same
//! as a one-off 2,500, and the framework's bands compare it as such.

use std::ops::Range;

use regex::{Captures, Regex};

use super::matching::{
    Found, after, any_of, before, compile, first_word, last_words, sentence_range, window,
};
use super::normalise::Normalised;

/// An amount of money and its ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Money {
    /// The amount in major units.
    pub(crate) amount: f64,
    /// The currency code, such as `EUR`.
    pub(crate) currency: &'static str,
}

/// The compiled budget patterns.
#[derive(Debug)]
pub(crate) struct MoneyPatterns {
    amount: Regex,
    phone: Regex,
    zero: Regex,
    zero_exception: Regex,
    cue: Regex,
    approximation: Regex,
    threshold: Regex,
    approval: Regex,
}

/// Amounts above this are treated as misread numbers, not budgets.
const MAX_AMOUNT: f64 = 1e12;

const BUDGET_CUES: &[&str] = &[
    r"budgets?",
    r"bugdet",
    r"budjet",
    r"buget",
    r"enveloppe",
    r"spend(?:ing)?",
    r"invest(?:ir|issement|ment)?",
    r"afford",
    r"allocated?",
    r"set aside",
    r"earmarked",
    r"depenser?",
    r"consacrer",
    r"mettre",
    r"pay(?:er)?",
    r"fourchette",
    r"price range",
    r"prevu",
    r"plafond",
];

const APPROXIMATIONS: &[&str] = &[
    r"around",
    r"about",
    r"approx\.?",
    r"approximately",
    r"roughly",
    r"circa",
    r"~",
    r"environ",
    r"autour de",
    r"a peu pres",
    r"dans les",
    r"something like",
    r"quelque chose comme",
    r"max(?:imum)?",
    r"up to",
    r"jusqu'a",
    r"under",
    r"less than",
    r"moins de",
];

/// Words that, right after a number, say what it counts.
const COUNTED: &[&str] = &[
    "employee",
    "people",
    "person",
    "staff",
    "user",
    "seat",
    "licen",
    "lead",
    "contact",
    "client",
    "customer",
    "prospect",
    "request",
    "inquir",
    "enquir",
    "rep",
    "agent",
    "member",
    "store",
    "shop",
    "branch",
    "office",
    "location",
    "site",
    "message",
    "sms",
    "text",
    "mail",
    "email",
    "call",
    "visit",
    "follower",
    "subscriber",
    "product",
    "unit",
    "deal",
    "order",
    "quote",
    "dev",
    "engineer",
    "sales",
    "month",
    "year",
    "week",
    "day",
    "hour",
    "minute",
    "min",
    "time",
    "percent",
    "%",
    "salari",
    "personne",
    "collaborat",
    "utilisateur",
    "demande",
    "commercia",
    "vendeu",
    "magasin",
    "boutique",
    "agence",
    "appel",
    "abonne",
    "produit",
    "commande",
    "devis",
    "mois",
    "an",
    "ans",
    "annee",
    "semaine",
    "jour",
    "heure",
    "fois",
    "pourcent",
    "membre",
    "poste",
    "licence",
    "m2",
    "km",
    "kg",
    "x",
    "h",
    "am",
    "pm",
];

const MONTH_NAMES: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "janvier",
    "fevrier",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "decembre",
    "jan",
    "feb",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// Words that may follow a suffixed amount such as "15k" when the number
/// is money: periods, approximations and verbs, never a counted noun.
const AFTER_SUFFIXED_AMOUNT: &[&str] = &[
    "a", "per", "par", "max", "maximum", "tops", "ht", "ttc", "ish", "or", "environ", "budget",
    "total", "en", "au", "annual", "annuel", "mensuel", "for", "is", "est", "would", "serait",
    "should", "could", "sur", "over", "this", "ce", "cette", "la", "le", "then", "puis", "and",
    "et", "but", "mais", "if", "si",
];

impl MoneyPatterns {
    /// Compiles the patterns.
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let amount = compile(
            r"(?:(?P<pre>us\$|\$|€|£|\b(?:usd|eur|gbp|chf))\s?)?(?P<num>\d{1,3}(?:[ .,']\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d+)?)(?:\s?(?P<mult>keur|kusd|k|mm|mio|m|millions?|mille|thousand|grand)\b)?(?:\s?(?P<post>€|\$|£|(?:euros?|eur|usd|dollars?|gbp|pounds?|balles|bucks|chf)\b))?",
        )?;
        let phone = compile(r"\+?\(?\d[\d .\-()/]{6,}\d")?;
        let zero = compile(&format!(
            r"\b(?:{})\b",
            [
                r"(?:no|zero|0|nil) budget",
                r"(?:don't|dont|do not|doesn't|haven't|have not|won't|didn't) (?:have |got )?(?:a |any )?budget",
                r"budget (?:is |of |=|: ?)?(?:zero|nil|nothing|none|0)",
                r"not a (?:penny|cent|dime)",
                r"(?:pas|aucun|zero|0) (?:de |d'|le moindre )?budget",
                r"budget (?:est )?(?:nul|zero|inexistant)",
                r"pas un (?:centime|sou|euro|rond)",
            ]
            .join("|")
        ))?;
        let zero_exception = compile(
            r"^\W*(?:(?:\S+ ){0,3}(?:yet|encore)\b|(?:\S+ ){0,2}(?:defined|set|fixed|decided|definie?s?|fixee?s?|arretee?s?|validee?s?|determinee?s?|limits?|limitee?s?|limites|constraints?|contraintes?|issues?|problems?|problemes?|soucis?|caps?|plafond|worries|concerns?)\b)",
        )?;
        let cue = compile(&format!(r"\b{}\b", any_of(BUDGET_CUES)))?;
        let approximation = compile(&format!(r"(?:^|\W){}\W*$", any_of(APPROXIMATIONS)))?;
        let threshold = compile(
            r"(?:\b(?:above|over|more than|exceeding|beyond|au-dessus de|au dessus de|au-dela de|au dela de|plus de|superieure? a|depassant)|>)\s*$",
        )?;
        let approval = compile(
            r"\b(?:approv\w*|sign-?off|sign off|validat\w*|valider|accord|aval|autoris\w*|feu vert|green light)\b",
        )?;
        Ok(MoneyPatterns {
            amount,
            phone,
            zero,
            zero_exception,
            cue,
            approximation,
            threshold,
            approval,
        })
    }

    /// Finds the budget stated in `text`. `default_currency` applies when no
    /// currency is written. `budget_requested` is true when the previous
    /// outbound message requested the budget.
    pub(crate) fn find(
        &self,
        text: &Normalised,
        default_currency: &'static str,
        budget_requested: bool,
    ) -> Option<Found<Money>> {
        let text = text.text.as_str();
        let phones: Vec<Range<usize>> = self
            .phone
            .find_iter(text)
            .filter(|candidate| is_phone_number(candidate.as_str()))
            .map(|candidate| candidate.range())
            .collect();
        let tokens: Vec<Token> = self
            .amount
            .captures_iter(text)
            .filter_map(|captures| Token::read(text, &captures))
            .filter(|token| {
                !phones
                    .iter()
                    .any(|phone| phone.start <= token.range.start && token.range.end <= phone.end)
            })
            .collect();

        let mut candidates: Vec<Found<Money>> = Vec::new();
        let mut index = 0;
        while index < tokens.len() {
            let token = &tokens[index];
            if let Some(next) = tokens.get(index + 1)
                && let Some(range) = join_range(text, token, next)
            {
                if let Some(found) =
                    self.judge(text, &range, default_currency, budget_requested, true)
                {
                    candidates.push(found);
                }
                index += 2;
                continue;
            }
            if let Some(found) = self.judge(text, token, default_currency, budget_requested, false)
            {
                candidates.push(found);
            }
            index += 1;
        }
        candidates.extend(self.find_zero(text, default_currency));
        candidates.sort_by_key(|candidate| candidate.range.start);

        // The statement with the highest confidence wins, and among equals the
        // latest, because prospects correct themselves ("10k, actually 15k").
        candidates.into_iter().reduce(|best, candidate| {
            if candidate.confidence >= best.confidence {
                candidate
            } else {
                best
            }
        })
    }

    /// Decides whether `token` is a budget and how sure that is.
    fn judge(
        &self,
        text: &str,
        token: &Token,
        default_currency: &'static str,
        budget_requested: bool,
        is_range: bool,
    ) -> Option<Found<Money>> {
        let amount = token.value;
        if !(0.0..=MAX_AMOUNT).contains(&amount) {
            return None;
        }
        let sentence = sentence_range(text, token.range.clone());
        let after_word = first_word(after(text, token.range.end, 24));
        let preceding = window(text, sentence.start, token.range.start);

        if token.currency.is_none() {
            if token.is_year() || is_counted(after_word) || is_date_or_time(text, token) {
                return None;
            }
        } else if is_date_or_time(text, token) && token.multiplier.is_none() {
            return None;
        }
        let threshold = self
            .threshold
            .is_match(before(preceding, preceding.len(), 30));
        if threshold
            && self
                .approval
                .is_match(window(text, sentence.start, sentence.end))
        {
            return None;
        }

        let near_cue = {
            let start = token.range.start.saturating_sub(60).max(sentence.start);
            let end = token.range.end.saturating_add(40).min(sentence.end);
            self.cue.is_match(window(text, start, end))
        };
        let large_enough = token.multiplier.is_some() || token.value >= 100.0;
        let mut confidence = if token.currency.is_some() {
            0.9
        } else if near_cue && large_enough {
            0.8
        } else if self.is_vague_amount(text, token, preceding) || (budget_requested && large_enough)
        {
            0.6
        } else {
            return None;
        };
        if is_range {
            confidence -= 0.05;
        }
        Some(Found {
            value: Money {
                amount,
                currency: token.currency.unwrap_or(default_currency),
            },
            range: token.range.clone(),
            confidence,
        })
    }

    /// Checks whether a suffixed amount is on its own: "around 10K", "15k?", "5k a month".
    fn is_vague_amount(&self, text: &str, token: &Token, preceding: &str) -> bool {
        token.multiplier.is_some()
            && (self
                .approximation
                .is_match(before(preceding, preceding.len(), 30))
                || ends_amount(after(text, token.range.end, 24)))
    }

    /// Finds statements of no budget at all.
    fn find_zero(&self, text: &str, default_currency: &'static str) -> Vec<Found<Money>> {
        self.zero
            .find_iter(text)
            .filter(|found| !self.zero_exception.is_match(after(text, found.end(), 40)))
            .map(|found| Found {
                value: Money {
                    amount: 0.0,
                    currency: default_currency,
                },
                range: found.range(),
                confidence: 0.85,
            })
            .collect()
    }
}

/// A number the amount pattern matched, with what surrounds it.
#[derive(Debug, Clone)]
struct Token {
    range: Range<usize>,
    value: f64,
    digits: String,
    multiplier: Option<f64>,
    currency: Option<&'static str>,
}

impl Token {
    fn read(text: &str, captures: &Captures<'_>) -> Option<Token> {
        let whole = captures.get(0)?;
        let number = captures.name("num")?;
        let previous = text[..whole.start()].chars().next_back();
        if previous
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '+' | '/' | '#' | '.' | ',' | '_'))
        {
            return None;
        }
        let next = text[whole.end()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_digit()) {
            return None;
        }
        let multiplier = captures
            .name("mult")
            .map(|found| multiplier_of(found.as_str()));
        let currency = captures
            .name("pre")
            .and_then(|found| currency_of(found.as_str()))
            .or_else(|| {
                captures
                    .name("post")
                    .and_then(|found| currency_of(found.as_str()))
            })
            .or_else(|| {
                captures
                    .name("mult")
                    .and_then(|found| currency_of(found.as_str()))
            });
        // A number glued to letters that are not a multiplier is a time, an
        // ordinal or a code: "18h", "15th", "1er", "b2b".
        if multiplier.is_none()
            && captures.name("post").is_none()
            && next.is_some_and(char::is_alphabetic)
        {
            return None;
        }
        let value = parse_number(number.as_str())? * multiplier.unwrap_or(1.0);
        Some(Token {
            range: whole.range(),
            value,
            digits: number.as_str().to_owned(),
            multiplier,
            currency,
        })
    }

    /// Checks whether the token is a bare four-digit number from 1900 to 2100.
    fn is_year(&self) -> bool {
        self.multiplier.is_none()
            && self.digits.len() == 4
            && self.digits.bytes().all(|byte| byte.is_ascii_digit())
            && (1900.0..=2100.0).contains(&self.value)
    }
}

/// Reads `first` and `second` as a range when only a range word or a
/// hyphen separates them, and returns the token for the whole range: its
/// span, its lower bound and the currency of either end. A bare low end
/// takes the high end's scale, so "10 and 20k" and "10 à 15 000 €" both
/// start at 10,000.
fn join_range(text: &str, first: &Token, second: &Token) -> Option<Token> {
    let between = text.get(first.range.end..second.range.start)?.trim();
    if !matches!(between, "-" | "to" | "a" | "et" | "and" | "jusqu'a")
        || first.is_year()
        || second.is_year()
    {
        return None;
    }
    let mut low = first.value;
    if first.multiplier.is_none() {
        if let Some(multiplier) = second.multiplier {
            low *= multiplier;
        } else if low < 1000.0 && low * 1000.0 <= second.value && low * 10_000.0 > second.value {
            low *= 1000.0;
        }
    }
    if low > second.value {
        return None;
    }
    Some(Token {
        range: first.range.start..second.range.end,
        value: low,
        digits: second.digits.clone(),
        multiplier: second.multiplier.or(first.multiplier),
        currency: second.currency.or(first.currency),
    })
}

fn multiplier_of(word: &str) -> f64 {
    match word {
        "m" | "mm" | "mio" | "million" | "millions" => 1e6,
        _ => 1e3,
    }
}

fn currency_of(mark: &str) -> Option<&'static str> {
    match mark.trim() {
        "€" | "eur" | "euro" | "euros" | "balles" | "keur" => Some("EUR"),
        "$" | "us$" | "usd" | "dollar" | "dollars" | "bucks" | "kusd" => Some("USD"),
        "£" | "gbp" | "pound" | "pounds" => Some("GBP"),
        "chf" => Some("CHF"),
        _ => None,
    }
}

/// Parses "15 000", "15.000", "1,5", "2.500,50" or "1,500.50".
///
/// A separator followed by exactly three digits groups thousands, so
/// "1,500" is 1500 and "1.250" is 1250; any other last separator is the
/// decimal point, so "1,5" and "1.5" are both 1.5.
fn parse_number(digits: &str) -> Option<f64> {
    let is_separator = |c: char| matches!(c, ' ' | '.' | ',' | '\'');
    let last_separator = digits.rfind(is_separator);
    let (integer, fraction) = match last_separator {
        Some(position) if digits.len() - position - 1 != 3 => {
            (&digits[..position], &digits[position + 1..])
        }
        _ => (digits, ""),
    };
    let integer: String = integer.chars().filter(char::is_ascii_digit).collect();
    let number = if fraction.is_empty() {
        integer
    } else {
        format!("{integer}.{fraction}")
    };
    number.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Checks whether a run of digits is a phone number: a leading `+`, or
/// eight digits or more not grouped by thousands ("06 12 34 56 78", "07700 900123").
fn is_phone_number(candidate: &str) -> bool {
    let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
    if digits < 8 {
        return false;
    }
    if candidate.starts_with('+') {
        return true;
    }
    let groups: Vec<&str> = candidate
        .split(|c: char| !c.is_ascii_digit())
        .filter(|group| !group.is_empty())
        .collect();
    let grouped_by_thousands = groups.len() > 1
        && groups[0].len() <= 3
        && groups[1..].iter().all(|group| group.len() == 3);
    let single_number = groups.len() == 1 && !candidate.starts_with('0');
    !(grouped_by_thousands || single_number)
}

fn is_counted(word: &str) -> bool {
    !word.is_empty()
        && COUNTED
            .iter()
            .any(|counted| word.starts_with(counted) && (counted.len() > 2 || word == *counted))
}

/// Checks whether the token is part of a date or a time: "12/05", "14:30",
/// "15 septembre", "September 15".
fn is_date_or_time(text: &str, token: &Token) -> bool {
    let next_two: String = text[token.range.end..].chars().take(2).collect();
    let mut next = next_two.chars();
    if let (Some(separator), Some(digit)) = (next.next(), next.next())
        && matches!(separator, '/' | ':')
        && digit.is_ascii_digit()
    {
        return true;
    }
    let following = first_word(after(text, token.range.end, 16));
    let previous = last_words(before(text, token.range.start, 16), 1);
    MONTH_NAMES.contains(&following)
        || previous
            .first()
            .is_some_and(|word| MONTH_NAMES.contains(word))
}

/// Checks whether the text after a suffixed amount ends the amount: the end of the
/// text, punctuation, or a word that does not say what the number counts.
fn ends_amount(following: &str) -> bool {
    let trimmed = following.trim_start();
    match trimmed.chars().next() {
        None => true,
        Some('.' | ',' | '!' | '?' | ';' | ')' | '\n' | '/' | '-') => true,
        Some(_) => AFTER_SUFFIXED_AMOUNT.contains(&first_word(trimmed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(text: &str) -> Option<(f64, &'static str)> {
        budget_with(text, "EUR", false)
    }

    fn budget_with(
        text: &str,
        default_currency: &'static str,
        requested: bool,
    ) -> Option<(f64, &'static str)> {
        let patterns = MoneyPatterns::new().unwrap();
        patterns
            .find(&Normalised::new(text), default_currency, requested)
            .map(|found| (found.value.amount, found.value.currency))
    }

    #[test]
    fn currency_formats() {
        let cases: &[(&str, f64, &str)] = &[
            ("20k€", 20_000.0, "EUR"),
            ("15 000 euros", 15_000.0, "EUR"),
            ("15\u{202F}000\u{A0}€", 15_000.0, "EUR"),
            ("15.000 €", 15_000.0, "EUR"),
            ("$50,000", 50_000.0, "USD"),
            ("50 k$", 50_000.0, "USD"),
            ("1,5 M€", 1_500_000.0, "EUR"),
            ("1.5M$", 1_500_000.0, "USD"),
            ("£8,000", 8_000.0, "GBP"),
            ("EUR 5000", 5_000.0, "EUR"),
            ("2.500,50 €", 2_500.5, "EUR"),
            ("1,500.50 USD", 1_500.5, "USD"),
            ("40k dollars", 40_000.0, "USD"),
            ("20 000 balles", 20_000.0, "EUR"),
            ("10 mille euros", 10_000.0, "EUR"),
            ("50keur", 50_000.0, "EUR"),
        ];
        for (text, amount, currency) in cases {
            assert_eq!(budget(text), Some((*amount, *currency)), "{text:?}");
        }
    }

    #[test]
    fn budget_word_without_currency() {
        assert_eq!(
            budget_with("budget around 10K", "USD", false),
            Some((10_000.0, "USD"))
        );
        assert_eq!(
            budget("budget de 8000 pour ce projet"),
            Some((8_000.0, "EUR"))
        );
        assert_eq!(
            budget_with("we can spend 12000 on this", "USD", false),
            Some((12_000.0, "USD"))
        );
    }

    #[test]
    fn suffixed_amount_alone() {
        assert_eq!(
            budget_with("around 10K", "USD", false),
            Some((10_000.0, "USD"))
        );
        assert_eq!(
            budget_with("can you do 15k?", "USD", false),
            Some((15_000.0, "USD"))
        );
        assert_eq!(budget_with("we have 10k followers", "USD", false), None);
        assert_eq!(budget_with("10k visitors a month", "USD", false), None);
    }

    #[test]
    fn ranges_take_lower_bound() {
        assert_eq!(
            budget_with("between 10 and 20k", "USD", false),
            Some((10_000.0, "USD"))
        );
        assert_eq!(
            budget("Entre 10 et 15 000 € selon les options"),
            Some((10_000.0, "EUR"))
        );
        assert_eq!(budget("de 10 à 20 k€"), Some((10_000.0, "EUR")));
        assert_eq!(budget("10k-15k€"), Some((10_000.0, "EUR")));
        assert_eq!(budget("budget 1 à 2 M€"), Some((1_000_000.0, "EUR")));
    }

    #[test]
    fn zero_budget() {
        assert_eq!(budget("pas de budget"), Some((0.0, "EUR")));
        assert_eq!(budget("On a aucun budget pour ça"), Some((0.0, "EUR")));
        assert_eq!(
            budget_with("no budget for this, sorry", "USD", false),
            Some((0.0, "USD"))
        );
        assert_eq!(
            budget_with("we have zero budget atm", "USD", false),
            Some((0.0, "USD"))
        );
        assert_eq!(
            budget_with("we don't have a budget for that", "USD", false),
            Some((0.0, "USD"))
        );
    }

    #[test]
    fn zero_budget_exceptions() {
        assert_eq!(budget_with("no budget yet", "USD", false), None);
        assert_eq!(
            budget_with("There is no budget limit really", "USD", false),
            None
        );
        assert_eq!(budget("Aucun budget n'est encore défini"), None);
        assert_eq!(budget("pas encore de budget"), None);
        assert_eq!(budget("Pas de souci de budget"), None);
        assert_eq!(budget("pas de budget défini pour l'instant"), None);
    }

    #[test]
    fn traps_are_not_amounts() {
        for text in [
            "Call me at 06 12 34 56 78",
            "budget: call me on +33 6 12 34 56 78",
            "my budget is tight, phone 07700 900123",
            "budget for 2025 still open",
            "budget 2025",
            "we have 50 employees and a budget to find",
            "budget meeting on 12/05 at 14:30",
            "budget review le 15 septembre",
            "budget call at 6pm",
            "budget: 3,000 leads per year",
            "T3 et T4 surtout",
            "Q4 budget review",
            "budget up 20%",
            "Stop by tomorrow around 10",
            "budget for 3 months",
            "",
            "€",
            "k€",
        ] {
            assert_eq!(budget(text), None, "{text:?}");
        }
    }

    #[test]
    fn approval_threshold_is_not_budget() {
        assert_eq!(
            budget("Il faut l'accord de la DAF pour toute dépense au-dessus de 5 000 €."),
            None
        );
        assert_eq!(
            budget("we can spend more than 5 000 €"),
            Some((5_000.0, "EUR"))
        );
    }

    #[test]
    fn year_next_to_amount() {
        assert_eq!(
            budget_with("Our budget for 2025 is 40k dollars.", "USD", false),
            Some((40_000.0, "USD"))
        );
        assert_eq!(
            budget("Le budget prévu pour 2025 est de 20 000 €."),
            Some((20_000.0, "EUR"))
        );
        assert_eq!(budget("budget 2000€"), Some((2_000.0, "EUR")));
    }

    #[test]
    fn counted_things_with_budget_word() {
        assert_eq!(
            budget_with("team of 8 and budget is around 3 000 $", "USD", false),
            Some((3_000.0, "USD"))
        );
        assert_eq!(
            budget_with(
                "We have 50 employees and 200 leads a month, budget around 10K.",
                "USD",
                false
            ),
            Some((10_000.0, "USD"))
        );
    }

    #[test]
    fn requested_budget_reads_bare_amount() {
        assert_eq!(
            budget_with("10 000 je pense", "EUR", true),
            Some((10_000.0, "EUR"))
        );
        assert_eq!(budget_with("10 000 je pense", "EUR", false), None);
        assert_eq!(budget_with("2026", "EUR", true), None);
    }

    #[test]
    fn latest_equal_statement_wins() {
        assert_eq!(budget("10k€, enfin plutôt 15k€"), Some((15_000.0, "EUR")));
    }

    #[test]
    fn parse_number_separators() {
        assert_eq!(parse_number("15 000"), Some(15_000.0));
        assert_eq!(parse_number("1,5"), Some(1.5));
        assert_eq!(parse_number("1.250"), Some(1_250.0));
        assert_eq!(parse_number("10.000.000"), Some(10_000_000.0));
        assert_eq!(parse_number("2.500,50"), Some(2_500.5));
        assert!(
            parse_number("99999999999999999999999999999999").is_some_and(|value| value > 9.9e31)
        );
    }

    #[test]
    fn huge_numbers_are_ignored() {
        assert_eq!(budget(&format!("{}€", "9".repeat(400))), None);
    }

    #[test]
    fn phone_detection() {
        assert!(is_phone_number("06 12 34 56 78"));
        assert!(is_phone_number("+1 415 555 0199"));
        assert!(is_phone_number("01.23.45.67.89"));
        assert!(is_phone_number("0612345678"));
        assert!(!is_phone_number("15 000 000"));
        assert!(!is_phone_number("12345678"));
        assert!(!is_phone_number("10 000"));
    }
}
