//! `X-Request-Id`: a client's (or proxy's) id is kept when it is sane, so one id follows a
//! request across systems; anything else is replaced by a fresh UUID v4.

/// The header name, lower-case as spin-sdk stores headers.
pub const HEADER: &str = "x-request-id";

/// Longer ids are refused: they only bloat logs (common ids — UUIDs, ULIDs, trace ids —
/// are well under this).
pub const MAX_LEN: usize = 128;

/// The client's id when it is 1..=[`MAX_LEN`] visible ASCII characters (no spaces or
/// control characters, so it cannot split or forge a log line), else a new one.
pub fn accept_or_generate(client: Option<&[u8]>) -> String {
    client
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn accept(value: &[u8]) -> Option<String> {
    let sane = !value.is_empty()
        && value.len() <= MAX_LEN
        && value.iter().all(|byte| byte.is_ascii_graphic());
    // Only ASCII passed the check, so this is valid UTF-8.
    sane.then(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_client_id() {
        for id in [
            "abc",
            "0b6d8a5e-4f4e-4a59-9d56-3c1f0e7a1b2c",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(accept_or_generate(Some(id.as_bytes())), id);
        }
    }

    #[test]
    fn replaces_a_missing_or_unsafe_id() {
        let too_long = "x".repeat(MAX_LEN + 1);
        for id in [
            None,
            Some(&b""[..]),
            Some(b"has space"),
            Some(b"line\nbreak"),
            Some(b"tab\there"),
            Some("caf\u{e9}".as_bytes()),
            Some(b"\xff\xfe"),
            Some(too_long.as_bytes()),
        ] {
            let generated = accept_or_generate(id);
            let parsed = uuid::Uuid::parse_str(&generated).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id:?}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(accept_or_generate(None), accept_or_generate(None));
    }
}
