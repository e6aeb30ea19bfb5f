//! `Range: bytes=…` parsing for downloads (RFC 9110 §14).
//!
//! Only a single byte range is served as `206`. Anything the server may legitimately
//! ignore (another unit, several ranges, syntax errors) results in the full body.
//!
//! Kept by hand rather than `http-range-header` (0.4), which is less correct here: it
//! refuses a suffix longer than the file (RFC 9110 §14.1.3 says send all of it), accepts
//! `bytes=0-` on an empty file as byte 0 instead of 416, matches only a lower-case
//! `bytes=` although the unit is case-insensitive, and puts malformed and unsatisfiable
//! headers in one error type, leaving "ignore it, send 200" versus 416 to the caller.

/// What to send for a `Range` header against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Send the whole representation with `200`.
    Full,
    /// Send bytes `start..=end` with `206`.
    Partial { start: u64, end: u64 },
    /// Answer `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides how to answer `header` for a body of `len` bytes.
pub fn parse_range(header: &str, len: u64) -> RangeDecision {
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        // Multiple ranges: we choose not to build multipart/byteranges.
        return RangeDecision::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeDecision::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            // A syntactically valid but huge number saturates rather than failing.
            Some(s.parse().unwrap_or(u64::MAX))
        }
    };

    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(suffix) = number(last) else {
            return RangeDecision::Full;
        };
        if suffix == 0 || len == 0 {
            return RangeDecision::Unsatisfiable;
        }
        let count = suffix.min(len);
        return RangeDecision::Partial {
            start: len - count,
            end: len - 1,
        };
    }

    let Some(start) = number(first) else {
        return RangeDecision::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeDecision::Full,
        }
    };
    if start >= len {
        return RangeDecision::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    RangeDecision::Partial { start, end }
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn closed_and_open_ranges() {
        assert_eq!(
            parse_range("bytes=0-99", 1000),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=500-", 1000),
            Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=990-5000", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=999-999", 1000),
            Partial {
                start: 999,
                end: 999
            }
        );
        assert_eq!(
            parse_range(" Bytes = 1 - 2 ", 10),
            Partial { start: 1, end: 2 }
        );
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(
            parse_range("bytes=-10", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", 1000),
            Partial { start: 0, end: 999 }
        );
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-1001", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
    }

    #[test]
    fn ignorable_headers_give_the_full_body() {
        for h in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=0x10-",
            "bytes",
            "",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(h, 1000), Full, "{h:?}");
        }
    }
}
