//! Timeline extraction: when the prospect wants to start, in months from
//! the reference time (the latest new message).
//!
//! | phrase | months |
//! |---|---|
//! | "ASAP", "dès que possible", "urgent", "tout de suite" | 0 |
//! | "this week", in a clause about starting | 0 |
//! | "in 2 weeks", "d'ici 3 mois", "within a year" | the duration (a week is 0.25) |
//! | "Timeline: 6 months", a bare duration in a clause about starting | the duration |
//! | "next week" / "next month" / "next quarter" / "next year" | 0.25 / 1 / 3 / 12 |
//! | "in September", "en mai", "October at the latest", "à la rentrée" | calendar months to that month |
//! | "au T3", "in Q3 2026", "third quarter"; a bare "Q3" in a clause about starting | calendar months to the quarter's first month |
//! | "this summer", "cet été", "au printemps", "after the summer" | calendar months to the season's first month, or to the month after it |
//! | "end of the year", "fin 2026", "early next year", "the new year" | calendar months to that month |
//!
//! Calendar months count whole months between the reference month and the
//! named month. A month already past this year means next year, and the
//! current month, quarter or season gives 0. "End of" a quarter or a year
//! points at its last month. A range ("in 3 to 4 months") gives its lower
//! bound.
//!
//! Timing inside a meeting request ("a demo next week") is not a timeline
//! unless the clause also talks about starting, and neither is timing in a
//! clause about the past ("we already switched in January"). Of the
//! remaining statements the first one about starting wins, else the first.
//! "ASAP" always counts as being about starting.
//!
//! NOTE: dates with a day ("le 15 septembre", "on 3/9") and vague words
//! ("soon", "bientôt", "later this year") give no timeline.

use regex::{Captures, Regex};

use super::matching::{Found, any_of, clause_range, clause_start, compile, is_negated, window};
use super::normalise::Normalised;
use kalify_core::Timestamp;

/// A calendar date in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CalendarDate {
    /// The year.
    pub(crate) year: i64,
    /// The month, 1 to 12.
    pub(crate) month: u32,
}

impl CalendarDate {
    /// Returns the UTC calendar date of `at`.
    pub(crate) fn of(at: Timestamp) -> CalendarDate {
        let (year, month, _day) = civil_from_days(at.timestamp().div_euclid(86_400));
        CalendarDate { year, month }
    }

    /// Whole calendar months from this date's month to `month` of `year`.
    fn months_until(self, year: i64, month: u32) -> i64 {
        (year - self.year) * 12 + i64::from(month) - i64::from(self.month)
    }

    /// Whole calendar months to the next occurrence of `month`: 0 in that
    /// month, otherwise within the coming 11 months.
    fn months_until_next(self, month: u32) -> i64 {
        (i64::from(month) - i64::from(self.month)).rem_euclid(12)
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) date in the
/// proleptic Gregorian calendar.
///
/// Years are counted from March so that the leap day falls at the end of a
/// year, then split into 400-year eras of 146,097 days each.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are in range by construction: month 1..=12, day 1..=31.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

const NUMBER: &str = r"\d+(?:[.,]\d+)?|a couple of|a couple|couple of|a few|few|several|quelques|plusieurs|eighteen|eleven|twelve|three|seven|eight|four|five|nine|one|two|six|ten|dix-huit|quatre|douze|trois|onze|deux|cinq|huit|neuf|sept|six|dix|une|un|an|a";
const UNIT: &str =
    r"days?|jours?|weeks?|semaines?|months?|mois|years?|ans|annees?|an|quarters?|trimestres?";
const MONTHS: &str = r"january|february|march|april|may|june|july|august|september|october|november|december|janvier|fevrier|mars|avril|mai|juin|juillet|aout|septembre|octobre|novembre|decembre|jan|feb|apr|jun|jul|aug|sept|sep|oct|nov|dec";
const MONTH_PREPOSITIONS: &[&str] = &[
    "by the end of",
    "at the end of",
    "at the beginning of",
    "by the beginning of",
    "in early",
    "in late",
    "in mid",
    "by early",
    "by mid",
    "not before",
    "pas avant",
    "au mois de",
    "au mois d'",
    "a partir de",
    "a partir d'",
    "a la fin de",
    "au debut de",
    "jusqu'en",
    "start of",
    "beginning of",
    "end of",
    "starting",
    "from",
    "until",
    "till",
    "before",
    "after",
    "as of",
    "around",
    "early",
    "late",
    "mid-",
    "mid",
    "in",
    "by",
    "for",
    "en",
    "pour",
    "d'ici",
    "vers",
    "courant",
    "debut de",
    "debut",
    "fin de",
    "fin",
    "mi-",
    "mi",
    "des",
    "avant",
    "apres",
];

/// The meaning of a fixed phrase such as "next month".
#[derive(Debug, Clone, Copy)]
enum Fixed {
    Months(f64),
    EndOfYear,
    NextYear,
}

/// The compiled timeline patterns.
#[derive(Debug)]
pub(crate) struct TimelinePatterns {
    asap: Regex,
    this_week: Regex,
    relative: Regex,
    bare_duration: Regex,
    fixed: Vec<(Regex, Fixed)>,
    month: Regex,
    bare_month: Regex,
    rentree: Regex,
    new_year: Regex,
    quarter: Regex,
    season: Regex,
    year: Regex,
    start_cue: Regex,
    meeting_cue: Regex,
    past_cue: Regex,
    duration_blocker: Regex,
}

impl TimelinePatterns {
    /// Compiles the patterns.
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let asap = compile(
            r"\b(?:asap|a\.s\.a\.p|as soon as (?:possible|we can|you can)|urgent(?:ly)?|urgence|right away|immediately|straight ?away|des que possible|au plus vite|au plus tot|tout de suite|immediatement|sans attendre|sans tarder|des maintenant)\b",
        )?;

        let this_week = compile(r"\b(?:this week|cette semaine)\b")?;

        let relative = compile(&format!(
            r"\b(?:within|in|over the next|over the coming|during the next|d'ici|dans|sous|under|les)\s+(?:the |les |next |coming |prochains? |prochaines? )*(?:(?:about|around|environ) )?(?P<n>{NUMBER})(?:\s*(?:-|to|a|ou|or)\s*(?:{NUMBER}))?\s*(?:prochaine?s\s+|next\s+)?(?P<unit>{UNIT})\b"
        ))?;

        let bare_duration = compile(&format!(
            r"\b(?P<n>{NUMBER})(?:\s*(?:-|to|a)\s*\d+)?\s*(?P<unit>weeks?|semaines?|months?|mois)\b"
        ))?;

        let fixed = vec![
            (
                compile(
                    r"\b(?:next|the following|coming) week\b|\bsemaine prochaine\b|\bprochaine semaine\b",
                )?,
                Fixed::Months(0.25),
            ),
            (
                compile(
                    r"\b(?:next|the following|coming) month\b|\bmois prochain\b|\bprochain mois\b",
                )?,
                Fixed::Months(1.0),
            ),
            (
                compile(r"\bnext quarter\b|\btrimestre prochain\b|\bprochain trimestre\b")?,
                Fixed::Months(3.0),
            ),
            (
                compile(r"\bnext (?:semester|half)\b|\bsemestre prochain\b|\bprochain semestre\b")?,
                Fixed::Months(6.0),
            ),
            (
                compile(r"\bthis month\b|\bce mois(?:-| )ci\b")?,
                Fixed::Months(0.0),
            ),
            (
                compile(r"\bthis quarter\b|\bce trimestre\b")?,
                Fixed::Months(0.0),
            ),
            (
                compile(r"\bend of (?:the |this )?month\b|\bfin (?:du|de) mois\b")?,
                Fixed::Months(0.5),
            ),
            (
                compile(
                    r"\b(?:end of (?:the |this )?year|year[- ]end|fin (?:d'|de l'|de cette )annee|fin de l'an)\b",
                )?,
                Fixed::EndOfYear,
            ),
            (
                compile(
                    r"\b(?:(?:early |beginning of |start of |end of |late |mid-?|debut (?:de )?(?:l')?|fin (?:de )?(?:l')?|mi-)?(?:next year|annee prochaine|an prochain))\b",
                )?,
                Fixed::NextYear,
            ),
        ];

        let month = compile(&format!(
            r"\b(?P<prep>{})\s*(?:the )?(?:month of |mois de |mois d')?(?P<month>{MONTHS})\b(?:\s+(?:prochain|next))?(?:\s+(?P<year>20\d\d)\b)?",
            any_of(MONTH_PREPOSITIONS)
        ))?;

        // A month without a preposition counts with a year or a limit word:
        // "January 2026", "October at the latest".
        let bare_month = compile(&format!(
            r"\b(?P<month>{MONTHS})\b(?:\s+(?P<year>20\d\d)\b|\s+(?:at the latest|at the earliest|latest|au plus tard|au plus tot|maximum|max)\b)"
        ))?;

        let rentree =
            compile(r"\b(?:a la|la|apres la|d'ici la|pour la|des la|avant la|en|de la) rentree\b")?;

        let new_year = compile(r"\b(?:the new year|la nouvelle annee)\b")?;

        let quarter = compile(
            r"\b(?P<prep>(?:by the end of|at the end of|end of|by|in|during|for|from|starting|early|late|mid|en|au|pour|d'ici le|d'ici la fin du|d'ici|des le|a partir du|fin du|fin|debut du|debut|courant|avant le|avant la fin du|au cours du|pendant le)\s+)?(?:(?P<letter>q|t)(?P<n>[1-4])|(?:the )?(?P<ordinal>first|1st|second|2nd|third|3rd|fourth|4th|premier|1er|deuxieme|2e|2eme|second|troisieme|3e|3eme|quatrieme|4e|4eme) (?:quarter|trimestre))\b(?:\s*(?P<year>20\d\d)\b|(?P<next>\s+(?:next year|de l'annee prochaine|de l'an prochain|l'an prochain|l'annee prochaine|prochain))\b)?(?P<after>\s+(?:au plus tard|au plus tot|maximum|max|idealement|ideally|at the latest|latest)\b)?",
        )?;

        let season = compile(
            r"\b(?P<pre>this coming|this|next|in the|over the|during the|for the|by the|start of|end of|after the|after|in|by|for|cet|cette|ce|l'|en|au|a l'|d'ici l'|pour l'|avant l'|des l'|apres l'|apres)\s*(?P<season>summer|spring|autumn|fall|winter|ete|printemps|automne|hiver)\b(?P<next>\s+prochain)?",
        )?;

        let year = compile(
            r"\b(?P<prep>by the end of|before the end of|in early|in late|in mid|by early|au cours de|a partir de|debut de|fin de|avant fin|end of|in|en|for|pour|by|d'ici|early|debut|courant|mid-|mid|mi-|mi|fin|late|during|starting|from|des)\s*(?P<year>20\d\d)\b",
        )?;

        let start_cue = compile(
            r"\b(?:start\w*|begin\w*|kick\w* ?off|kickoff|launch\w*|go live|go-live|live|roll ?out|deploy\w*|implement\w*|in place|up and running|running|timeline|timeframe|deadline|horizon|demarr\w*|commenc\w*|lanc\w*|deploi\w*|mise en place|mettre en place|en place|operationnel\w*|echeance|delai|projet|project)\b",
        )?;

        let meeting_cue = compile(
            r"\b(?:call|meeting|meet|demo|chat|talk|discuss|speak|catch up|appointment|available|zoom|visio|rdv|rendez-vous|rendez vous|appel\w*|rappel\w*|telephon\w*|reunion|echang\w*|dispo\w*|voir|passez|parler|demo)\b",
        )?;

        let past_cue =
            compile(r"\b(?:already|last|ago|since|deja|il y a|depuis|dernier|derniere)\b")?;

        let duration_blocker = compile(
            r"\b(?:for|pendant|depuis|since|per|par|every|chaque|tous les|toutes les|over|sur|il y a)\s*$",
        )?;
        Ok(TimelinePatterns {
            asap,
            this_week,
            relative,
            bare_duration,
            fixed,
            month,
            bare_month,
            rentree,
            new_year,
            quarter,
            season,
            year,
            start_cue,
            meeting_cue,
            past_cue,
            duration_blocker,
        })
    }

    /// Finds the timeline stated in `text`, counted from `now`.
    pub(crate) fn find(&self, text: &Normalised, now: CalendarDate) -> Option<Found<f64>> {
        let text = text.text.as_str();
        let mut matches: Vec<Found<f64>> = Vec::new();

        // "As soon as possible" is about when to start wherever it appears,
        // so it ranks like a clause that contains "start".
        let mut asap_ranges = Vec::new();
        for found in self.asap.find_iter(text) {
            let clause = clause_start(text, found.start());
            if !is_negated(text, clause, found.start()) {
                matches.push(Found {
                    value: 0.0,
                    range: found.range(),
                    confidence: 0.9,
                });
                asap_ranges.push(found.range());
            }
        }
        // "This week" is a start date only when the clause talks about
        // starting: "the third message this week" is not.
        for found in self.this_week.find_iter(text) {
            if self
                .start_cue
                .is_match(&text[clause_range(text, found.range())])
            {
                matches.push(Found {
                    value: 0.0,
                    range: found.range(),
                    confidence: 0.8,
                });
            }
        }
        for captures in self.relative.captures_iter(text) {
            matches.extend(duration(&captures, 0.85));
        }
        for captures in self.bare_duration.captures_iter(text) {
            let Some(whole) = captures.get(0) else {
                continue;
            };
            let clause = clause_range(text, whole.range());
            let preceding = window(text, clause.start, whole.start());
            let after_match = window(text, whole.end(), clause.end);
            if self.start_cue.is_match(&text[clause.clone()])
                && !self.duration_blocker.is_match(preceding)
                && !after_match.trim_start().starts_with("ago")
            {
                matches.extend(duration(&captures, 0.7));
            }
        }
        for (pattern, fixed) in &self.fixed {
            for found in pattern.find_iter(text) {
                let value = match fixed {
                    Fixed::Months(months) => *months,
                    Fixed::EndOfYear => (12 - i64::from(now.month)) as f64,
                    Fixed::NextYear => next_year(found.as_str(), now),
                };
                matches.push(Found {
                    value,
                    range: found.range(),
                    confidence: 0.85,
                });
            }
        }
        for captures in self
            .month
            .captures_iter(text)
            .chain(self.bare_month.captures_iter(text))
        {
            matches.extend(month_match(&captures, now));
        }
        for found in self.new_year.find_iter(text) {
            matches.push(Found {
                value: now.months_until_next(1) as f64,
                range: found.range(),
                confidence: 0.75,
            });
        }
        for found in self.rentree.find_iter(text) {
            matches.push(Found {
                value: now.months_until_next(9) as f64,
                range: found.range(),
                confidence: 0.8,
            });
        }
        for captures in self.quarter.captures_iter(text) {
            let about_start = captures.get(0).is_some_and(|whole| {
                self.start_cue
                    .is_match(&text[clause_range(text, whole.range())])
            });
            matches.extend(quarter_match(&captures, now, about_start));
        }
        for captures in self.season.captures_iter(text) {
            matches.extend(season_match(&captures, now));
        }
        for captures in self.year.captures_iter(text) {
            matches.extend(year_match(&captures, now));
        }

        self.pick(text, matches, &asap_ranges)
    }

    /// Keeps the first of overlapping matches (the longest at equal start),
    /// drops timing that belongs to a meeting request or to the past
    /// ("we already switched in January"), then prefers a match
    /// whose clause talks about starting, else the first in the text.
    fn pick(
        &self,
        text: &str,
        mut matches: Vec<Found<f64>>,
        asap_ranges: &[std::ops::Range<usize>],
    ) -> Option<Found<f64>> {
        matches.sort_by(|a, b| {
            a.range
                .start
                .cmp(&b.range.start)
                .then(b.range.end.cmp(&a.range.end))
        });
        let mut kept: Vec<(Found<f64>, bool)> = Vec::new();
        for candidate in matches {
            if kept
                .last()
                .is_some_and(|(last, _)| candidate.range.start < last.range.end)
            {
                continue;
            }
            let clause = &text[clause_range(text, candidate.range.clone())];
            let clause_about_start = self.start_cue.is_match(clause);
            if (self.meeting_cue.is_match(clause) && !clause_about_start)
                || self.past_cue.is_match(clause)
            {
                continue;
            }
            let about_start = clause_about_start || asap_ranges.contains(&candidate.range);
            kept.push((candidate, about_start));
        }
        let first_about_start = kept.iter().position(|(_, about_start)| *about_start);
        let index = first_about_start.unwrap_or(0);
        (index < kept.len()).then(|| kept.swap_remove(index).0)
    }
}

/// Reads a duration such as "3 months" or "a couple of weeks", in months.
fn duration(captures: &Captures<'_>, confidence: f32) -> Option<Found<f64>> {
    let whole = captures.get(0)?;
    let (count, vague) = number_value(captures.name("n")?.as_str())?;
    let unit = captures.name("unit")?.as_str();
    let per_unit = if unit.starts_with("day") || unit.starts_with("jour") {
        1.0 / 30.0
    } else if unit.starts_with("week") || unit.starts_with("semaine") {
        0.25
    } else if unit.starts_with("month") || unit == "mois" {
        1.0
    } else if unit.starts_with("quarter") || unit.starts_with("trimestre") {
        3.0
    } else {
        12.0
    };
    let value = count * per_unit;
    (value.is_finite() && value <= 120.0).then(|| Found {
        value,
        range: whole.range(),
        confidence: if vague { 0.6 } else { confidence },
    })
}

/// Returns the value of a number written in digits or words, and whether it is vague.
fn number_value(word: &str) -> Option<(f64, bool)> {
    let exact = match word {
        "a" | "an" | "one" | "un" | "une" => 1.0,
        "two" | "deux" | "a couple of" | "a couple" | "couple of" => 2.0,
        "three" | "trois" => 3.0,
        "four" | "quatre" => 4.0,
        "five" | "cinq" => 5.0,
        "six" => 6.0,
        "seven" | "sept" => 7.0,
        "eight" | "huit" => 8.0,
        "nine" | "neuf" => 9.0,
        "ten" | "dix" => 10.0,
        "eleven" | "onze" => 11.0,
        "twelve" | "douze" => 12.0,
        "eighteen" | "dix-huit" => 18.0,
        "a few" | "few" | "several" | "quelques" | "plusieurs" => return Some((3.0, true)),
        digits => {
            return digits
                .replace(',', ".")
                .parse::<f64>()
                .ok()
                .map(|value| (value, false));
        }
    };
    Some((exact, false))
}

fn next_year(phrase: &str, now: CalendarDate) -> f64 {
    let target = if ["early", "beginning", "start", "debut"]
        .iter()
        .any(|word| phrase.starts_with(word))
    {
        1
    } else if ["end", "late", "fin"]
        .iter()
        .any(|word| phrase.starts_with(word))
    {
        12
    } else if phrase.starts_with("mi") {
        6
    } else {
        return 12.0;
    };
    now.months_until(now.year + 1, target) as f64
}

fn month_number(name: &str) -> Option<u32> {
    let number = match name {
        "january" | "janvier" | "jan" => 1,
        "february" | "fevrier" | "feb" => 2,
        "march" | "mars" => 3,
        "april" | "avril" | "apr" => 4,
        "may" | "mai" => 5,
        "june" | "juin" | "jun" => 6,
        "july" | "juillet" | "jul" => 7,
        "august" | "aout" | "aug" => 8,
        "september" | "septembre" | "sept" | "sep" => 9,
        "october" | "octobre" | "oct" => 10,
        "november" | "novembre" | "nov" => 11,
        "december" | "decembre" | "dec" => 12,
        _ => return None,
    };
    Some(number)
}

fn month_match(captures: &Captures<'_>, now: CalendarDate) -> Option<Found<f64>> {
    let whole = captures.get(0)?;
    let month = month_number(captures.name("month")?.as_str())?;
    let months = match captures
        .name("year")
        .and_then(|year| year.as_str().parse::<i64>().ok())
    {
        Some(year) => now.months_until(year, month),
        None => now.months_until_next(month),
    };
    (months >= 0).then(|| Found {
        value: months as f64,
        range: whole.range(),
        confidence: 0.85,
    })
}

/// Reads a quarter. `about_start` is true when its clause talks about
/// starting, which a bare "Q1" or "T3" needs to count.
fn quarter_match(
    captures: &Captures<'_>,
    now: CalendarDate,
    about_start: bool,
) -> Option<Found<f64>> {
    let whole = captures.get(0)?;
    let preposition = captures.name("prep").map_or("", |found| found.as_str());
    let next_year = captures.name("next").map(|_| now.year + 1);
    let year = captures
        .name("year")
        .and_then(|year| year.as_str().parse::<i64>().ok())
        .or(next_year);
    let number = match (captures.name("n"), captures.name("ordinal")) {
        (Some(digit), _) => digit.as_str().parse::<u32>().ok()?,
        (None, Some(ordinal)) => match ordinal.as_str() {
            "first" | "1st" | "premier" | "1er" => 1,
            "second" | "2nd" | "deuxieme" | "2e" | "2eme" => 2,
            "third" | "3rd" | "troisieme" | "3e" | "3eme" => 3,
            _ => 4,
        },
        (None, None) => return None,
    };

    // A bare "Q1" also names past results ("the results of Q1"), and "T3"
    // is also a flat size in French ("un T3"): without a preposition, a year
    // or a time word, a quarter counts only in a clause about starting.
    let is_bare = captures.name("letter").is_some()
        && preposition.is_empty()
        && year.is_none()
        && captures.name("after").is_none();
    if is_bare && !about_start {
        return None;
    }

    let first_month = 3 * (number - 1) + 1;
    let at_end = preposition.contains("end")
        || preposition.starts_with("fin")
        || preposition.contains(" fin ");
    let target = if at_end { first_month + 2 } else { first_month };
    let in_quarter = (first_month..first_month + 3).contains(&now.month);

    let months = match year {
        Some(year) if year == now.year && in_quarter && !at_end => 0,
        Some(year) => now.months_until(year, target),
        None if in_quarter && !at_end => 0,
        None => now.months_until_next(target),
    };
    (months >= 0).then(|| Found {
        value: months as f64,
        range: whole.range(),
        confidence: 0.85,
    })
}

fn season_match(captures: &Captures<'_>, now: CalendarDate) -> Option<Found<f64>> {
    let whole = captures.get(0)?;
    let prefix = captures.name("pre").map_or("", |found| found.as_str());
    let first_month = match captures.name("season")?.as_str() {
        "spring" | "printemps" => 3,
        "summer" | "ete" => 6,
        "autumn" | "fall" | "automne" => 9,
        _ => 12,
    };
    // "After the summer" starts when the season ends.
    let first_month = if prefix.starts_with("after") || prefix.starts_with("apres") {
        (first_month + 2) % 12 + 1
    } else {
        first_month
    };
    let offset = (i64::from(now.month) - first_month).rem_euclid(12);
    let in_season = offset < 3;
    let next = prefix == "next" || captures.name("next").is_some();
    let months = if in_season && next {
        12 - offset
    } else if in_season {
        0
    } else {
        now.months_until_next(u32::try_from(first_month).unwrap_or(1))
    };
    Some(Found {
        value: months as f64,
        range: whole.range(),
        confidence: 0.8,
    })
}

fn year_match(captures: &Captures<'_>, now: CalendarDate) -> Option<Found<f64>> {
    let whole = captures.get(0)?;
    let preposition = captures.name("prep")?.as_str();
    let year = captures.name("year")?.as_str().parse::<i64>().ok()?;
    let target = if preposition.contains("end")
        || preposition.starts_with("fin")
        || preposition.contains("late")
        || preposition == "avant fin"
    {
        12
    } else if preposition.starts_with("mi") || preposition.contains("mid") {
        6
    } else {
        1
    };
    // "in 2025" during 2025 gives no start month.
    if year == now.year && target == 1 {
        return None;
    }
    let months = now.months_until(year, target);
    (0..=120).contains(&months).then(|| Found {
        value: months as f64,
        range: whole.range(),
        confidence: 0.75,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-03-10, a Monday in the first quarter.
    const MARCH: CalendarDate = CalendarDate {
        year: 2025,
        month: 3,
    };

    fn months(text: &str) -> Option<f64> {
        months_at(text, MARCH)
    }

    fn months_at(text: &str, now: CalendarDate) -> Option<f64> {
        TimelinePatterns::new()
            .unwrap()
            .find(&Normalised::new(text), now)
            .map(|found| found.value)
    }

    #[test]
    fn calendar_conversion() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_157), (2025, 3, 10));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        let at: Timestamp = "2025-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(
            CalendarDate::of(at),
            CalendarDate {
                year: 2025,
                month: 12
            }
        );
    }

    #[test]
    fn as_soon_as_possible() {
        for text in [
            "ASAP",
            "dès que possible",
            "c'est urgent",
            "tout de suite",
            "We want to start immediately",
            "au plus vite svp",
        ] {
            assert_eq!(months(text), Some(0.0), "{text:?}");
        }
    }

    #[test]
    fn negated_urgency_is_not_asap() {
        for text in [
            "pas urgent",
            "not urgent at all",
            "rien d'urgent",
            "pas tout de suite",
            "ce n'est pas urgent",
        ] {
            assert_eq!(months(text), None, "{text:?}");
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, f64)] = &[
            ("within 3 months", 3.0),
            ("d'ici 3 mois", 3.0),
            ("in 2 weeks", 0.5),
            ("dans 2 semaines", 0.5),
            ("in a month", 1.0),
            ("dans un an", 12.0),
            ("in six months", 6.0),
            ("in 3 to 4 months", 3.0),
            ("les 6 prochains mois", 6.0),
            ("in the next 2 months", 2.0),
            ("in a few weeks", 0.75),
        ];
        for (text, expected) in cases {
            assert_eq!(months(text), Some(*expected), "{text:?}");
        }
    }

    #[test]
    fn bare_duration_needs_start_cue() {
        assert_eq!(months("Timeline: 6 months"), Some(6.0));
        assert_eq!(months("we want to start 2 months from now"), Some(2.0));
        assert_eq!(months("we have 6 months of data"), None);
        assert_eq!(months("the project started 3 months ago"), None);
        assert_eq!(months("projet lancé depuis 3 mois"), None);
    }

    #[test]
    fn fixed_phrases() {
        let cases: &[(&str, f64)] = &[
            ("next quarter", 3.0),
            ("le trimestre prochain", 3.0),
            ("next year", 12.0),
            ("l'année prochaine", 12.0),
            ("l'an prochain", 12.0),
            ("next month", 1.0),
            ("le mois prochain", 1.0),
            ("end of the year", 9.0),
            ("fin d'année", 9.0),
            ("early next year", 10.0),
            ("début de l'année prochaine", 10.0),
            ("fin de l'année prochaine", 21.0),
        ];
        for (text, expected) in cases {
            assert_eq!(months(text), Some(*expected), "{text:?}");
        }
    }

    #[test]
    fn named_months() {
        assert_eq!(months("en septembre"), Some(6.0));
        assert_eq!(months("start in September"), Some(6.0));
        assert_eq!(months("en janvier"), Some(10.0));
        assert_eq!(months("in March"), Some(0.0));
        assert_eq!(months("fin septembre"), Some(6.0));
        assert_eq!(months("à partir de juin"), Some(3.0));
        assert_eq!(months("en septembre 2026"), Some(18.0));
        assert_eq!(months("à la rentrée"), Some(6.0));
        assert_eq!(months("pas avant la rentrée"), Some(6.0));
    }

    #[test]
    fn month_with_year_or_limit() {
        assert_eq!(
            months("The earliest we could start is January 2026."),
            Some(10.0)
        );
        assert_eq!(months("so October at the latest"), Some(7.0));
        assert_eq!(months("septembre au plus tard"), Some(6.0));
        assert_eq!(months("we met in 2024, in March"), Some(0.0));
        assert_eq!(months("May I ask who you are?"), None);
    }

    #[test]
    fn may_needs_preposition() {
        assert_eq!(months("we may start soon"), None);
        assert_eq!(months("in May"), Some(2.0));
    }

    #[test]
    fn quarters() {
        assert_eq!(months("Go-live: Q3"), Some(4.0));
        assert_eq!(months("Q3"), None);
        assert_eq!(months("au T3"), Some(4.0));
        assert_eq!(months("T3 au plus tard"), Some(4.0));
        assert_eq!(months("by the end of Q2"), Some(3.0));
        assert_eq!(months("in Q1"), Some(0.0));
        assert_eq!(months("Q1 2026"), Some(10.0));
        assert_eq!(months("third quarter"), Some(4.0));
        assert_eq!(months("un appartement T3 et T4"), None);
        assert_eq!(months("it depends on the results of Q1"), None);
        assert_eq!(
            months("Planning to roll this out in Q2 next year."),
            Some(13.0)
        );
        assert_eq!(months("Timeline: Q3."), Some(4.0));
    }

    #[test]
    fn seasons() {
        assert_eq!(months("this summer"), Some(3.0));
        assert_eq!(months("cet été"), Some(3.0));
        assert_eq!(months("au printemps"), Some(0.0));
        assert_eq!(months("cet automne"), Some(6.0));
        assert_eq!(
            months_at(
                "next summer",
                CalendarDate {
                    year: 2025,
                    month: 7
                }
            ),
            Some(11.0)
        );
        assert_eq!(months("ça a été difficile"), None);
        assert_eq!(months("Hold off until after the summer please."), Some(6.0));
    }

    #[test]
    fn years() {
        assert_eq!(months("début 2026"), Some(10.0));
        assert_eq!(months("fin 2025"), Some(9.0));
        assert_eq!(months("en 2025"), None);
        assert_eq!(months("en 2024 on a dépensé"), None);
        assert_eq!(months("We spent 2024 rebuilding"), None);
        assert_eq!(
            months("We're looking at kicking off in the new year."),
            Some(10.0)
        );
    }

    #[test]
    fn meeting_timing_is_not_timeline() {
        assert_eq!(months("Let's set up a demo next week."), None);
        assert_eq!(months("Un rendez-vous la semaine prochaine ?"), None);
        assert_eq!(
            months("call me next week, we want to start next month"),
            Some(1.0)
        );
    }

    #[test]
    fn past_and_weak_phrases_are_not_timeline() {
        assert_eq!(
            months("We already switched to a competitor in January."),
            None
        );
        assert_eq!(months("This is the third message this week, enough."), None);
        assert_eq!(months("we want to start this week"), Some(0.0));
    }

    #[test]
    fn first_start_statement_wins() {
        assert_eq!(months("T3 au plus tard, on a un salon en juin."), Some(4.0));
        assert_eq!(
            months("Maybe next quarter. Right now we're busy with the 2025 launch."),
            Some(3.0)
        );
        assert_eq!(
            months("Au plus vite, on a un lancement produit en mai."),
            Some(0.0)
        );
        assert_eq!(months("call me asap, we want to start in June"), Some(3.0));
    }

    #[test]
    fn december_wraps_to_next_year() {
        let december = CalendarDate {
            year: 2025,
            month: 12,
        };
        assert_eq!(months_at("in January", december), Some(1.0));
        assert_eq!(months_at("end of the year", december), Some(0.0));
        assert_eq!(months_at("in Q1", december), Some(1.0));
        assert_eq!(months_at("cet hiver", december), Some(0.0));
    }
}
