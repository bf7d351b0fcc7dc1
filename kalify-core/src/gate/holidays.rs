//! French public holidays, computed for any year.

use chrono::{Datelike, Duration, NaiveDate};

/// The part of France whose holiday calendar applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrenchArea {
    /// Metropolitan France outside Alsace-Moselle.
    Metropolitan,
    /// Bas-Rhin, Haut-Rhin and Moselle: Good Friday and 26 December are also holidays.
    AlsaceMoselle,
    /// Metropolitan France when the department is unknown: the union of both
    /// calendars, the strictest reading.
    MetropolitanUnknown,
    /// Guadeloupe (+590).
    Guadeloupe,
    /// Martinique (+596).
    Martinique,
    /// French Guiana (+594).
    Guyane,
    /// La Réunion (+262, 0692/0693).
    Reunion,
    /// Mayotte (+262, 0639).
    Mayotte,
}

impl FrenchArea {
    /// The area of a French postal code: 57, 67 and 68 are Alsace-Moselle,
    /// 971 to 976 the overseas departments.
    pub fn from_postal_code(code: &str) -> Option<FrenchArea> {
        let code = code.trim();
        if code.len() != 5 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Some(match &code[..3] {
            "971" => FrenchArea::Guadeloupe,
            "972" => FrenchArea::Martinique,
            "973" => FrenchArea::Guyane,
            "974" => FrenchArea::Reunion,
            "976" => FrenchArea::Mayotte,
            _ => match &code[..2] {
                "57" | "67" | "68" => FrenchArea::AlsaceMoselle,
                _ => FrenchArea::Metropolitan,
            },
        })
    }
}

/// Easter Sunday of `year` in the Gregorian calendar (anonymous Gregorian
/// algorithm, also known as Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// Whether `date` is a public holiday in `area`.
///
/// The eleven national days (1 January, Easter Monday, 1 May, 8 May,
/// Ascension, Whit Monday, 14 July, 15 August, 1 November, 11 November,
/// 25 December), plus Good Friday and 26 December in Alsace-Moselle, plus
/// the abolition-of-slavery day of each overseas department.
pub fn is_french_holiday(date: NaiveDate, area: FrenchArea) -> bool {
    let (month, day) = (date.month(), date.day());
    let fixed = matches!(
        (month, day),
        (1, 1) | (5, 1) | (5, 8) | (7, 14) | (8, 15) | (11, 1) | (11, 11) | (12, 25)
    );
    if fixed {
        return true;
    }
    if let Some(easter) = easter_sunday(date.year()) {
        let offset = (date - easter).num_days();
        // Easter Monday, Ascension Thursday and Whit Monday.
        if matches!(offset, 1 | 39 | 50) {
            return true;
        }
        if offset == -2
            && matches!(
                area,
                FrenchArea::AlsaceMoselle | FrenchArea::MetropolitanUnknown
            )
        {
            return true;
        }
    }
    match area {
        FrenchArea::AlsaceMoselle | FrenchArea::MetropolitanUnknown => (month, day) == (12, 26),
        FrenchArea::Metropolitan => false,
        FrenchArea::Guadeloupe => (month, day) == (5, 27),
        FrenchArea::Martinique => (month, day) == (5, 22),
        FrenchArea::Guyane => (month, day) == (6, 10),
        FrenchArea::Reunion => (month, day) == (12, 20),
        FrenchArea::Mayotte => (month, day) == (4, 27),
    }
}

/// The holidays of `year` in `area`, in date order.
pub fn french_holidays(year: i32, area: FrenchArea) -> Vec<NaiveDate> {
    let Some(start) = NaiveDate::from_ymd_opt(year, 1, 1) else {
        return Vec::new();
    };
    (0..366)
        .map(|offset| start + Duration::days(offset))
        .filter(|date| date.year() == year && is_french_holiday(*date, area))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_known_years() {
        assert_eq!(easter_sunday(2024), Some(date(2024, 3, 31)));
        assert_eq!(easter_sunday(2025), Some(date(2025, 4, 20)));
        assert_eq!(easter_sunday(2026), Some(date(2026, 4, 5)));
        assert_eq!(easter_sunday(2027), Some(date(2027, 3, 28)));
        assert_eq!(easter_sunday(2038), Some(date(2038, 4, 25)));
    }

    #[test]
    fn eleven_national_days() {
        let days = french_holidays(2026, FrenchArea::Metropolitan);
        assert_eq!(days.len(), 11, "{days:?}");
        assert!(days.contains(&date(2026, 4, 6)), "Easter Monday");
        assert!(days.contains(&date(2026, 5, 14)), "Ascension");
        assert!(days.contains(&date(2026, 5, 25)), "Whit Monday");
    }

    #[test]
    fn alsace_moselle_adds_two() {
        let days = french_holidays(2026, FrenchArea::AlsaceMoselle);
        assert_eq!(days.len(), 13);
        assert!(days.contains(&date(2026, 4, 3)), "Good Friday");
        assert!(days.contains(&date(2026, 12, 26)));
        assert_eq!(french_holidays(2026, FrenchArea::MetropolitanUnknown), days);
    }

    #[test]
    fn overseas_days() {
        assert!(is_french_holiday(date(2026, 12, 20), FrenchArea::Reunion));
        assert!(!is_french_holiday(
            date(2026, 12, 20),
            FrenchArea::Metropolitan
        ));
        assert!(is_french_holiday(date(2026, 5, 27), FrenchArea::Guadeloupe));
        assert!(is_french_holiday(date(2026, 5, 22), FrenchArea::Martinique));
        assert!(is_french_holiday(date(2026, 6, 10), FrenchArea::Guyane));
        assert!(is_french_holiday(date(2026, 4, 27), FrenchArea::Mayotte));
    }

    #[test]
    fn postal_codes() {
        assert_eq!(
            FrenchArea::from_postal_code("67000"),
            Some(FrenchArea::AlsaceMoselle)
        );
        assert_eq!(
            FrenchArea::from_postal_code("75011"),
            Some(FrenchArea::Metropolitan)
        );
        assert_eq!(
            FrenchArea::from_postal_code("97400"),
            Some(FrenchArea::Reunion)
        );
        assert_eq!(FrenchArea::from_postal_code("ABCDE"), None);
    }
}
