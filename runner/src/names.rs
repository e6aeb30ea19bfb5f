//! Job ids (their rule is `spinmesh_jobs`, shared with the upload side) and
//! client-supplied filenames.
//!
//! A client's filename is only ever metadata: it is shown back in the job JSON and in
//! `Content-Disposition`, never used to build a path. Files on disk are named after the
//! job id, which the runner generates.

use uuid::Uuid;

pub use spinmesh_jobs::is_job_id as is_valid_job_id;
pub use spinmesh_jobs::is_upload_id as is_valid_upload_id;

/// Longest filename kept, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;
/// Longest owner id accepted, in characters.
pub const MAX_OWNER_CHARS: usize = 128;

/// A fresh, unguessable job id in the shape of the shared wire contract.
pub fn new_job_id() -> String {
    spinmesh_jobs::job_id(Uuid::new_v4().as_u128())
}

/// A fresh, unguessable resumable upload id.
pub fn new_upload_id() -> String {
    spinmesh_jobs::upload_id(Uuid::new_v4().as_u128())
}

/// A token naming one append's hold on an upload.
pub fn new_hold_token() -> String {
    Uuid::new_v4().simple().to_string()
}

/// Validates an owner id: non-empty, at most [`MAX_OWNER_CHARS`], no control characters.
pub fn validate_owner(owner: &str) -> Result<&str, &'static str> {
    if owner.is_empty() {
        return Err("X-Owner-Id must not be empty");
    }
    if owner.chars().count() > MAX_OWNER_CHARS {
        return Err("X-Owner-Id must be at most 128 characters");
    }
    if owner.chars().any(char::is_control) {
        return Err("X-Owner-Id must not contain control characters");
    }
    Ok(owner)
}

/// Characters that must never survive into a displayed filename: C0/C1 controls and the
/// Unicode bidirectional overrides that can disguise an extension.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Reduces a client-supplied filename to a harmless display name: the last path
/// component, without control/bidi characters, leading dots or surrounding whitespace,
/// at most [`MAX_FILENAME_CHARS`] characters (keeping a short extension). Falls back to
/// `upload` when nothing is left.
pub fn sanitize_source_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !is_unsafe_char(*c)).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        return "upload".to_string();
    }
    if cleaned.chars().count() <= MAX_FILENAME_CHARS {
        return cleaned.to_string();
    }
    // Too long: keep the extension (when it is short) and cut the stem.
    let (stem, ext) = split_extension(cleaned);
    let ext = ext.filter(|e| e.chars().count() <= 16);
    let room = MAX_FILENAME_CHARS - ext.map_or(0, |e| e.chars().count() + 1);
    let stem: String = stem.chars().take(room).collect();
    match ext {
        Some(ext) => format!("{}.{ext}", stem.trim_end()),
        None => stem.trim_end().to_string(),
    }
}

/// Splits `name.ext` into (`name`, `Some("ext")`); a leading dot is not an extension.
fn split_extension(name: &str) -> (&str, Option<&str>) {
    match name.rfind('.') {
        Some(i) if i > 0 && i + 1 < name.len() => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

/// The name the converted file is offered under: the source's stem with `.mp3`.
pub fn output_filename(source: &str) -> String {
    let (stem, _) = split_extension(source);
    let stem = stem.trim();
    if stem.is_empty() {
        "audio.mp3".to_string()
    } else {
        format!("{stem}.mp3")
    }
}

/// Builds a `Content-Disposition: attachment` value with an ASCII-only `filename`
/// fallback and the exact UTF-8 name as an RFC 5987 / RFC 6266 `filename*`.
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            '"' | '\\' | '%' | ';' | '/' => '_',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let fallback = fallback.trim();
    let fallback = if fallback.is_empty() {
        "audio.mp3"
    } else {
        fallback
    };
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        rfc5987_encode(filename)
    )
}

/// Percent-encodes everything outside RFC 5987's `attr-char`.
fn rfc5987_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes the percent-encoded `X-Filename` header into UTF-8.
pub fn decode_filename_header(value: &str) -> Option<String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_have_a_fixed_safe_shape() {
        let id = new_job_id();
        assert!(is_valid_job_id(&id), "{id}");
        assert_ne!(id, new_job_id());
        assert!(!is_valid_job_id("job_../../etc/passwd"));
        assert!(!is_valid_job_id("job_0123456789ABCDEF0123456789abcdef"));
        assert!(!is_valid_job_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_job_id("job_0123"));
    }

    #[test]
    fn owners() {
        assert_eq!(validate_owner("user-42"), Ok("user-42"));
        assert!(validate_owner("").is_err());
        assert!(validate_owner(&"x".repeat(129)).is_err());
        assert!(validate_owner(&"é".repeat(128)).is_ok());
        assert!(validate_owner("a\nb").is_err());
    }

    #[test]
    fn sanitising_strips_paths_and_controls() {
        assert_eq!(sanitize_source_filename("clip.mp4"), "clip.mp4");
        assert_eq!(sanitize_source_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitize_source_filename("C:\\Users\\me\\film.mov"),
            "film.mov"
        );
        assert_eq!(sanitize_source_filename("a\u{0}b\r\n.mp4"), "ab.mp4");
        assert_eq!(
            sanitize_source_filename("evil\u{202e}4pm.exe"),
            "evil4pm.exe"
        );
        assert_eq!(sanitize_source_filename("  .hidden.mp4 "), "hidden.mp4");
        assert_eq!(sanitize_source_filename(".."), "upload");
        assert_eq!(sanitize_source_filename("dir/"), "upload");
        assert_eq!(
            sanitize_source_filename("Vidéo été 日本.mp4"),
            "Vidéo été 日本.mp4"
        );
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.mp4", "ä".repeat(400));
        let s = sanitize_source_filename(&long);
        assert_eq!(s.chars().count(), MAX_FILENAME_CHARS);
        assert!(s.ends_with(".mp4"));
    }

    #[test]
    fn output_names() {
        assert_eq!(output_filename("clip.mp4"), "clip.mp3");
        assert_eq!(
            output_filename("my.holiday.video.mkv"),
            "my.holiday.video.mp3"
        );
        assert_eq!(output_filename("noext"), "noext.mp3");
        assert_eq!(output_filename("upload"), "upload.mp3");
        assert_eq!(output_filename(".mp4"), ".mp4.mp3");
        assert_eq!(output_filename(" .mp4"), "audio.mp3");
    }

    #[test]
    fn content_disposition_has_ascii_fallback_and_utf8_name() {
        assert_eq!(
            content_disposition("clip.mp3"),
            "attachment; filename=\"clip.mp3\"; filename*=UTF-8''clip.mp3"
        );
        assert_eq!(
            content_disposition("Été \"live\".mp3"),
            "attachment; filename=\"_t_ _live_.mp3\"; filename*=UTF-8''%C3%89t%C3%A9%20%22live%22.mp3"
        );
        assert_eq!(
            content_disposition("a;b%c\\d.mp3"),
            "attachment; filename=\"a_b_c_d.mp3\"; filename*=UTF-8''a%3Bb%25c%5Cd.mp3"
        );
        let cd = content_disposition("x\r\ny.mp3");
        assert!(!cd.contains('\r') && !cd.contains('\n'));
    }

    #[test]
    fn filename_header_decoding() {
        assert_eq!(
            decode_filename_header("clip.mp4").as_deref(),
            Some("clip.mp4")
        );
        assert_eq!(
            decode_filename_header("V%C3%A9%20x.mp4").as_deref(),
            Some("Vé x.mp4")
        );
        assert_eq!(decode_filename_header("%FF%FE"), None);
    }
}
