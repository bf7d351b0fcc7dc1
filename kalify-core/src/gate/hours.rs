//! Sending hours: which rules apply to a prospect, and when they allow a send.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::gate::holidays::{FrenchArea, is_french_holiday};
use crate::prospect::{CustomValue, Prospect};

/// A rule set for marketing sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoursRule {
    /// France and its overseas departments: Monday to Saturday 08:00–20:00,
    /// never on a public holiday of the area (FFT/af2m SMS charters).
    France(FrenchArea),
    /// United States: every day 08:00–21:00 (TCPA, 47 CFR 64.1200(c)(1)).
    UnitedStates,
    /// Elsewhere: Monday to Saturday 08:00–20:00.
    Generic,
    /// No restriction, for channels without sending hours.
    Any,
}

impl HoursRule {
    /// Returns whether the rule allows a send at `local`, a wall-clock time in the prospect's zone.
    pub fn allows(&self, local: &DateTime<Tz>) -> bool {
        let time = local.time();
        let weekday = local.weekday();
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN);
        match self {
            HoursRule::France(area) => {
                weekday != Weekday::Sun
                    && time >= eight
                    && time.hour() < 20
                    && !is_french_holiday(local.date_naive(), *area)
            }
            HoursRule::UnitedStates => time >= eight && time.hour() < 21,
            HoursRule::Generic => weekday != Weekday::Sun && time >= eight && time.hour() < 20,
            HoursRule::Any => true,
        }
    }
}

/// One zone and the rule that applies in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneRule {
    /// The IANA zone.
    pub zone: Tz,
    /// The rule.
    pub rule: HoursRule,
}

/// The source of the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneSource {
    /// The prospect's own time zone.
    Prospect,
    /// Inferred from the phone number's region.
    PhoneNumber,
    /// No zone is known, so every listed zone must allow the send.
    MostRestrictive,
}

/// The zones and rules a send to a prospect must satisfy, all at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jurisdiction {
    /// Every zone and rule; a send is allowed when all of them allow it.
    pub zones: Vec<ZoneRule>,
    /// The source of the zones.
    pub source: ZoneSource,
}

const US_ZONES: [Tz; 7] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Phoenix,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Anchorage,
    chrono_tz::Pacific::Honolulu,
];

/// Custom field names read as a French postal code, to tell Alsace-Moselle apart.
const POSTAL_CODE_FIELDS: [&str; 4] = ["postal_code", "postcode", "code_postal", "zip"];

impl Jurisdiction {
    /// Returns the jurisdiction of `prospect`: its own time zone when set, else
    /// the zone of its phone number's region, else the most restrictive reading
    /// (every zone of a multi-zone country, or French rules in Paris when
    /// nothing is known).
    pub fn of(prospect: &Prospect) -> Jurisdiction {
        let region = prospect.phone.as_ref().and_then(|phone| phone.region());
        let region_code = region.as_ref().map(|region| region.code().to_owned());
        let rule = rule_for(region_code.as_deref(), prospect);

        if let Some(zone) = prospect.time_zone {
            let rule = match region_code.as_deref() {
                Some(_) => rule,
                None if zone.name() == "Europe/Paris" => {
                    HoursRule::France(french_area(prospect, FrenchArea::MetropolitanUnknown))
                }
                None => HoursRule::Generic,
            };
            return Jurisdiction {
                zones: vec![ZoneRule { zone, rule }],
                source: ZoneSource::Prospect,
            };
        }

        match region_code.as_deref() {
            Some("US") => Jurisdiction {
                zones: US_ZONES
                    .iter()
                    .map(|zone| ZoneRule {
                        zone: *zone,
                        rule: HoursRule::UnitedStates,
                    })
                    .collect(),
                source: ZoneSource::MostRestrictive,
            },
            Some(code) => match zone_of_region(code) {
                Some(zone) => Jurisdiction {
                    zones: vec![ZoneRule { zone, rule }],
                    source: ZoneSource::PhoneNumber,
                },
                None => Jurisdiction::unknown(),
            },
            None => Jurisdiction::unknown(),
        }
    }

    /// Returns the reading used when no zone is known: French rules (the
    /// strictest kalify knows) in Europe/Paris.
    pub fn unknown() -> Jurisdiction {
        Jurisdiction {
            zones: vec![ZoneRule {
                zone: chrono_tz::Europe::Paris,
                rule: HoursRule::France(FrenchArea::MetropolitanUnknown),
            }],
            source: ZoneSource::MostRestrictive,
        }
    }

    /// Returns whether every zone allows a send at `at`, and `window` too when given.
    pub fn allows(&self, at: Timestamp, window: Option<&SendingWindow>) -> bool {
        self.zones.iter().all(|zone_rule| {
            let local = at.with_timezone(&zone_rule.zone);
            zone_rule.rule.allows(&local) && window.is_none_or(|window| window.allows(&local))
        })
    }

    /// Finds the first instant at or after `at` when a send is allowed,
    /// searching 31 days ahead in 15-minute steps. `None` when no slot exists, which
    /// means the custom window never opens.
    pub fn next_open(&self, at: Timestamp, window: Option<&SendingWindow>) -> Option<Timestamp> {
        if self.allows(at, window) {
            return Some(at);
        }
        // Windows open on whole local hours; every zone offset in use is a
        // multiple of 15 minutes, so 15-minute UTC steps land on each opening.
        let step = Duration::minutes(15);
        let minute = i64::from(at.minute());
        let aligned = at
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(at)
            + Duration::minutes(15 - minute % 15);
        let mut candidate = aligned;
        let limit = at + Duration::days(31);
        while candidate <= limit {
            if self.allows(candidate, window) {
                return Some(candidate);
            }
            candidate += step;
        }
        None
    }
}

fn rule_for(region: Option<&str>, prospect: &Prospect) -> HoursRule {
    match region {
        Some("FR") => HoursRule::France(french_area(prospect, FrenchArea::MetropolitanUnknown)),
        Some("RE") => HoursRule::France(FrenchArea::Reunion),
        Some("YT") => HoursRule::France(FrenchArea::Mayotte),
        Some("GP") | Some("BL") | Some("MF") => HoursRule::France(FrenchArea::Guadeloupe),
        Some("MQ") => HoursRule::France(FrenchArea::Martinique),
        Some("GF") => HoursRule::France(FrenchArea::Guyane),
        Some("US") => HoursRule::UnitedStates,
        _ => HoursRule::Generic,
    }
}

fn french_area(prospect: &Prospect, default: FrenchArea) -> FrenchArea {
    POSTAL_CODE_FIELDS
        .iter()
        .find_map(|name| match prospect.custom_fields.get(*name) {
            Some(CustomValue::Text(code)) => FrenchArea::from_postal_code(code),
            Some(CustomValue::Number(number)) => {
                FrenchArea::from_postal_code(&format!("{number:05}"))
            }
            _ => None,
        })
        .unwrap_or(default)
}

/// Returns the zone of a single-zone region. Multi-zone regions other than the
/// United States (Canada, Brazil, Australia, Russia, Mexico…) are absent, so
/// their prospects fall back to the unknown reading unless their own zone is set.
fn zone_of_region(code: &str) -> Option<Tz> {
    use chrono_tz::{Africa, America, Europe, Indian};
    Some(match code {
        "FR" | "MC" => Europe::Paris,
        "RE" => Indian::Reunion,
        "YT" => Indian::Mayotte,
        "GP" | "BL" | "MF" => America::Guadeloupe,
        "MQ" => America::Martinique,
        "GF" => America::Cayenne,
        "GB" => Europe::London,
        "IE" => Europe::Dublin,
        "DE" => Europe::Berlin,
        "BE" => Europe::Brussels,
        "NL" => Europe::Amsterdam,
        "LU" => Europe::Luxembourg,
        "CH" => Europe::Zurich,
        "AT" => Europe::Vienna,
        "IT" => Europe::Rome,
        "ES" => Europe::Madrid,
        "PT" => Europe::Lisbon,
        "SE" => Europe::Stockholm,
        "DK" => Europe::Copenhagen,
        "NO" => Europe::Oslo,
        "FI" => Europe::Helsinki,
        "PL" => Europe::Warsaw,
        "CZ" => Europe::Prague,
        "GR" => Europe::Athens,
        "MA" => Africa::Casablanca,
        "DZ" => Africa::Algiers,
        "TN" => Africa::Tunis,
        "SN" => Africa::Dakar,
        "CI" => Africa::Abidjan,
        _ => return None,
    })
}

/// A custom sending window in the prospect's local time, on top of the
/// jurisdiction's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingWindow {
    /// Days the window is open.
    pub days: Vec<Weekday>,
    /// Local opening time.
    pub start: NaiveTime,
    /// Local closing time (exclusive).
    pub end: NaiveTime,
}

impl SendingWindow {
    /// Whether the window is open at `local`.
    pub fn allows<Z: chrono::TimeZone>(&self, local: &DateTime<Z>) -> bool {
        let time = local.time();
        self.days.contains(&local.weekday()) && time >= self.start && time < self.end
    }
}

/// Returns `at` shifted by `days` business days (Monday to Friday, skipping
/// French public holidays when the jurisdiction is French), at the same
/// local time in the jurisdiction's first zone.
pub fn add_business_days(at: Timestamp, days: u32, jurisdiction: &Jurisdiction) -> Timestamp {
    let Some(first) = jurisdiction.zones.first() else {
        return at + Duration::days(i64::from(days));
    };
    let mut local = at.with_timezone(&first.zone);
    let mut left = days;
    let mut guard = 0;
    while left > 0 && guard < 3660 {
        guard += 1;
        local += Duration::days(1);
        let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
        let holiday = match first.rule {
            HoursRule::France(area) => is_french_holiday(local.date_naive(), area),
            _ => false,
        };
        if !weekend && !holiday {
            left -= 1;
        }
    }
    local.with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::contact::{PhoneNumber, Region};
    use crate::id::OrgId;

    fn prospect(phone: &str) -> Prospect {
        let mut prospect = Prospect::new(OrgId::new(), Utc::now());
        prospect.phone = Some(PhoneNumber::parse(phone, Region::FR).unwrap());
        prospect
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn french_number_uses_paris() {
        let jurisdiction = Jurisdiction::of(&prospect("06 12 34 56 78"));
        assert_eq!(jurisdiction.source, ZoneSource::PhoneNumber);
        // Monday 2 March 2026: 07:00 UTC is 08:00 in Paris.
        assert!(jurisdiction.allows(utc(2026, 3, 2, 7, 0), None));
        assert!(!jurisdiction.allows(utc(2026, 3, 2, 6, 59), None));
        assert!(
            !jurisdiction.allows(utc(2026, 3, 2, 19, 0), None),
            "20:00 in Paris"
        );
        // Sunday.
        assert!(!jurisdiction.allows(utc(2026, 3, 8, 10, 0), None));
        // Easter Monday 2026.
        assert!(!jurisdiction.allows(utc(2026, 4, 6, 10, 0), None));
    }

    #[test]
    fn reunion_uses_its_zone_and_day() {
        let jurisdiction = Jurisdiction::of(&prospect("+262 692 12 34 56"));
        assert_eq!(jurisdiction.zones[0].zone, chrono_tz::Indian::Reunion);
        // 04:00 UTC is 08:00 in Réunion.
        assert!(jurisdiction.allows(utc(2026, 3, 2, 4, 0), None));
        assert!(
            !jurisdiction.allows(utc(2026, 12, 21, 4, 0) - Duration::days(1), None),
            "20 December"
        );
    }

    #[test]
    fn us_without_zone_is_most_restrictive() {
        let jurisdiction = Jurisdiction::of(&prospect("+1 415 555 0132"));
        assert_eq!(jurisdiction.source, ZoneSource::MostRestrictive);
        // 14:00 UTC is 09:00 in New York but 04:00 in Honolulu.
        assert!(!jurisdiction.allows(utc(2026, 3, 2, 14, 0), None));
        // 19:00 UTC is 14:00 in New York and 09:00 in Honolulu.
        assert!(jurisdiction.allows(utc(2026, 3, 2, 19, 0), None));
    }

    #[test]
    fn next_open_defers_to_morning() {
        let jurisdiction = Jurisdiction::of(&prospect("06 12 34 56 78"));
        // Saturday 7 March 2026 at 21:00 Paris: next slot Monday 08:00 Paris.
        let next = jurisdiction
            .next_open(utc(2026, 3, 7, 20, 0), None)
            .unwrap();
        assert_eq!(next, utc(2026, 3, 9, 7, 0));
    }

    #[test]
    fn custom_window_narrows() {
        let window = SendingWindow {
            days: vec![Weekday::Tue],
            start: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
        };
        let jurisdiction = Jurisdiction::of(&prospect("06 12 34 56 78"));
        let next = jurisdiction
            .next_open(utc(2026, 3, 2, 9, 0), Some(&window))
            .unwrap();
        assert_eq!(next, utc(2026, 3, 3, 9, 0));
        let never = SendingWindow {
            days: vec![],
            ..window
        };
        assert_eq!(
            jurisdiction.next_open(utc(2026, 3, 2, 9, 0), Some(&never)),
            None
        );
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let jurisdiction = Jurisdiction::of(&prospect("06 12 34 56 78"));
        // Thursday 2 April 2026 + 2 business days skips Good Friday (the
        // department is unknown, so Alsace-Moselle days count), the weekend
        // and Easter Monday.
        let later = add_business_days(utc(2026, 4, 2, 8, 0), 2, &jurisdiction);
        assert_eq!(later, utc(2026, 4, 8, 8, 0));
    }
}
