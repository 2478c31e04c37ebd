//! Small helpers: digests, ids and RFC 3339 times without a clock crate.

use super::*;

/// 64 hex digits derived from `name`, different for each `salt`.
pub(super) fn hex_digest(salt: &str, name: &str) -> String {
    (0..4u8)
        .map(|i| {
            let mut input = format!("{salt}/{name}/").into_bytes();
            input.push(i);
            format!("{:016x}", splitmix64(fnv1a64(&input)))
        })
        .collect()
}

/// SplitMix64's finaliser: spreads FNV's similar outputs for similar inputs.
pub(super) fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `prefix_` and 24 hex digits, like Ollama's `generateID`.
pub(super) fn hex_id(prefix: &str, serial: u64) -> String {
    format!(
        "{prefix}_{}",
        &hex_digest(prefix, &serial.to_string())[..24]
    )
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with nanoseconds, trailing zeros trimmed, as Go's `time.Time` marshals.
pub(super) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let nanos = since.subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_owned()
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
