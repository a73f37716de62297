//! Identifiers and timestamps in the formats of seed 002: `n-`/`j-` plus eight
//! characters from `[A-Za-z0-9]`, and times as `YYYY-MM-DD HH:MM:SS` in UTC.

use rand::distr::Alphanumeric;
use rand::RngExt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of BMNode and Node ids.
pub const NODE_PREFIX: &str = "n-";
/// Prefix of job ids.
pub const JOB_PREFIX: &str = "j-";
/// Prefix of user message ids.
pub const MESSAGE_PREFIX: &str = "m-";
/// Prefix of request ids (logged, and recorded on user messages).
pub const REQUEST_PREFIX: &str = "req-";

/// A new random id: `prefix` followed by eight alphanumeric characters.
pub fn new_id(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

/// Whether `id` has the shape `prefix` + eight characters of `[A-Za-z0-9]`.
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), the seed's time
/// format. Hand-rolled (civil-from-days, H. Hinnant) because it runs three
/// times per node of a 10,000-node DescribeBMNodes.
pub fn format_time(secs: i64) -> String {
    let secs = secs.max(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD HH:MM:SS` (UTC) back to Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let iso = format!("{}Z", s.trim().replacen(' ', "T", 1));
    humantime::parse_rfc3339(&iso)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_have_the_seed_shape() {
        for _ in 0..100 {
            let id = new_id(NODE_PREFIX);
            assert!(is_id(&id, NODE_PREFIX), "{id}");
            assert!(!is_id(&id, JOB_PREFIX));
        }
        assert!(is_id("n-Jr8KE6cf", NODE_PREFIX));
        assert!(!is_id("n-Jr8KE6c", NODE_PREFIX));
        assert!(!is_id("n-Jr8KE6c!", NODE_PREFIX));
        assert!(!is_id("n-Jr8KE6cfX", NODE_PREFIX));
    }

    #[test]
    fn formatting_agrees_with_humantime_over_centuries() {
        let mut t: i64 = 0;
        while t < 8_000_000_000 {
            let reference =
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t as u64))
                    .to_string()
                    .replacen('T', " ", 1)
                    .trim_end_matches('Z')
                    .to_string();
            assert_eq!(format_time(t), reference, "{t}");
            t += 86_400 * 37 + 3_601;
        }
    }

    #[test]
    fn times_round_trip_in_the_seed_format() {
        assert_eq!(format_time(1_530_564_921), "2018-07-02 20:55:21");
        assert_eq!(parse_time("2018-07-02 20:55:21"), Some(1_530_564_921));
        assert_eq!(parse_time("yesterday"), None);
    }
}
