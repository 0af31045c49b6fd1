//! Durations (`500ms`, `10s`, `2m`) and sizes (`64K`, `1M`) of the file,
//! converted with errors that name their key.

use super::raw::{DurationValue, SizeValue};
use crate::size::parse_size;
use std::time::Duration;

pub(super) fn parse_duration(v: &DurationValue, key: &str) -> Result<Duration, String> {
    duration_at(v, &format!("limits.{key}"))
}

/// A duration; errors name `key` (the full key, e.g. `route[0] auth.leeway`).
pub(super) fn duration_at(v: &DurationValue, key: &str) -> Result<Duration, String> {
    match v {
        DurationValue::Secs(s) => Ok(Duration::from_secs(*s)),
        DurationValue::Text(t) => {
            let t = t.trim();
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (n, unit) = t.split_at(end);
            let n: u64 = n
                .parse()
                .map_err(|_| format!("`{key}`: `{t}` is not a duration (try 500ms, 10s, 2m)"))?;
            match unit.trim() {
                "ms" => Ok(Duration::from_millis(n)),
                "" | "s" => Ok(Duration::from_secs(n)),
                "m" => Ok(Duration::from_secs(n * 60)),
                "h" => Ok(Duration::from_secs(n * 3600)),
                u => Err(format!("`{key}`: unknown unit `{u}` (use ms, s, m or h)")),
            }
        }
    }
}

/// A size setting in bytes; `key` is its full name for errors
/// (`limits.max_message_size`).
pub(super) fn parse_size_value(v: &SizeValue, key: &str) -> Result<usize, String> {
    match v {
        SizeValue::Bytes(b) => usize::try_from(*b).map_err(|_| format!("`{key}` is too large")),
        SizeValue::Text(t) => parse_size(t).map_err(|e| format!("`{key}`: {e}")),
    }
}
