//! Formatting of consensus times (Unix milliseconds, UTC) for people.

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
pub fn format_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Unix milliseconds of UTC midnight at the start of `YYYY-MM-DD` (checked, e.g. no 2027-02-30).
pub fn parse_utc_date_ms(text: &str) -> anyhow::Result<u64> {
    sabt_core::entry::check_date(text).map_err(|e| anyhow::anyhow!("{text:?} is not a date YYYY-MM-DD: {e}"))?;
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else { anyhow::bail!("{text:?}: give the full date, YYYY-MM-DD") };
    let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
    // H. Hinnant's `days_from_civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400_000).map_err(|_| anyhow::anyhow!("{text:?} is before 1970"))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::format_utc_ms;

    #[test]
    fn known_instants() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_utc_ms(1_795_392_000_000), "2026-11-23T00:00:00.000Z");
        assert_eq!(super::parse_utc_date_ms("2026-11-23").unwrap(), 1_795_392_000_000);
        assert_eq!(super::parse_utc_date_ms("2000-02-29").unwrap(), 951_782_400_000);
        assert!(super::parse_utc_date_ms("2027-02-29").is_err());
        assert!(super::parse_utc_date_ms("2027-02").is_err());
    }
}
