//! Timestamps as the API shows them: RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat};

/// Unix seconds as RFC 3339 UTC (`2024-01-15T10:30:00Z`); `None` out of chrono's range.
pub fn rfc3339(secs: i64) -> Option<String> {
    DateTime::from_timestamp(secs, 0).map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_seconds() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_705_314_600).as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
    }
}
