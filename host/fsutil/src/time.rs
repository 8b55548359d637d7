//! RFC 3339 UTC timestamps without a date crate: records and logs need only "now" in one format.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SSZ` (whole seconds): lock files, feed entries, task times.
pub fn rfc3339(time: SystemTime) -> String {
    let (date, clock, _) = parts(time);
    format!("{date}T{clock}Z")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds): audit lines and request logs, where order within a
/// second matters.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let (date, clock, millis) = parts(time);
    format!("{date}T{clock}.{millis:03}Z")
}

fn parts(time: SystemTime) -> (String, String, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
        since.subsec_millis(),
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (H. Hinnant).
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
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_in_both_precisions() {
        let t = UNIX_EPOCH + Duration::from_millis(1_738_324_800_123); // 2025-01-31T12:00:00.123Z
        assert_eq!(rfc3339(t), "2025-01-31T12:00:00Z");
        assert_eq!(rfc3339_millis(t), "2025-01-31T12:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
