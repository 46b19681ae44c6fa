//! Unix seconds to the UTC timestamp of a descriptor header
//! (`2006-01-02 15:04:05` in Go's layout), without a date library.

/// Formats `unix_seconds` as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_utc(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by Howard
/// Hinnant's `civil_from_days` (eras of 400 years, years starting in March so
/// that the leap day comes last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(86_399), "1970-01-01 23:59:59");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(2_147_483_647), "2038-01-19 03:14:07");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00:00");
    }

    #[test]
    fn handles_leap_years() {
        // 2000 is a leap year (divisible by 400), 2100 is not (by 100).
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(951_868_800), "2000-03-01 00:00:00");
        assert_eq!(format_utc(1_709_164_800), "2024-02-29 00:00:00");
        assert_eq!(format_utc(1_677_628_800), "2023-03-01 00:00:00");
        assert_eq!(format_utc(4_107_456_000), "2100-02-28 00:00:00");
        assert_eq!(format_utc(4_107_542_400), "2100-03-01 00:00:00");
        assert_eq!(format_utc(1_735_603_200), "2024-12-31 00:00:00");
        assert_eq!(format_utc(1_735_689_599), "2024-12-31 23:59:59");
    }

    #[test]
    fn agrees_with_a_day_by_day_walk() {
        // Walk 1970..2404 one day at a time with the textbook leap rule.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..160_000u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
