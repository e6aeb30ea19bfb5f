/// Longest sanitised filename, in characters (the runner keeps 255, and the extension the
/// upload may gain must still fit).
const MAX_FILENAME_CHARS: usize = 200;

/// An extension longer than this is cut with the rest of the name rather than kept.
const MAX_KEPT_EXTENSION_CHARS: usize = 16;

/// The name used when nothing of the client's filename survives.
const FALLBACK_NAME: &str = "upload";

/// Characters never kept: C0/C1 controls and the Unicode bidirectional controls that can
/// disguise an extension (`evil\u{202e}4pm.exe`).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Reduces a client-supplied filename to a harmless display name: its last path component
/// (either separator), without unsafe characters, surrounding whitespace, leading dots or
/// trailing dots, at most [`MAX_FILENAME_CHARS`] characters with a short extension kept.
/// `upload` when nothing is left.
pub(crate) fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !is_unsafe(*c)).collect();
    let cleaned = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches([' ', '.'])
        .trim_start();
    if cleaned.is_empty() {
        return FALLBACK_NAME.to_string();
    }
    if cleaned.chars().count() <= MAX_FILENAME_CHARS {
        return cleaned.to_string();
    }
    let (stem, extension) = match split_extension(cleaned) {
        (stem, Some(extension)) if extension.chars().count() <= MAX_KEPT_EXTENSION_CHARS => {
            (stem, Some(extension))
        }
        _ => (cleaned, None),
    };
    let room = MAX_FILENAME_CHARS - extension.map_or(0, |e| e.chars().count() + 1);
    let stem: String = stem.chars().take(room).collect();
    match extension {
        Some(extension) => format!("{}.{extension}", stem.trim_end()),
        None => stem.trim_end().to_string(),
    }
}

/// `("clip", Some("mp4"))` for `clip.mp4`; a leading or trailing dot makes no extension.
fn split_extension(name: &str) -> (&str, Option<&str>) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && dot + 1 < name.len() => (&name[..dot], Some(&name[dot + 1..])),
        _ => (name, None),
    }
}

/// The lower-cased extension of `name`, if it has one.
pub(crate) fn extension(name: &str) -> Option<String> {
    split_extension(name).1.map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_names() {
        assert_eq!(sanitize_filename("clip.mp4"), "clip.mp4");
        assert_eq!(
            sanitize_filename("My Holiday (2024).MOV"),
            "My Holiday (2024).MOV"
        );
        assert_eq!(sanitize_filename("vidéo été.mp4"), "vidéo été.mp4");
    }

    #[test]
    fn strips_path_components() {
        assert_eq!(sanitize_filename("../../etc/passwd.mp4"), "passwd.mp4");
        assert_eq!(sanitize_filename("C:\\Users\\me\\clip.mp4"), "clip.mp4");
        assert_eq!(sanitize_filename("/abs/path/clip.avi"), "clip.avi");
        assert_eq!(sanitize_filename("dir/"), "upload");
        assert_eq!(sanitize_filename(".."), "upload");
    }

    #[test]
    fn strips_control_and_bidi_characters_and_dots() {
        assert_eq!(sanitize_filename("cl\0ip\r\n.mp4"), "clip.mp4");
        assert_eq!(sanitize_filename("evil\u{202e}4pm.exe"), "evil4pm.exe");
        assert_eq!(sanitize_filename("  .hidden.mp4  "), "hidden.mp4");
        assert_eq!(sanitize_filename("clip.mp4. . "), "clip.mp4");
        assert_eq!(sanitize_filename(""), "upload");
        assert_eq!(sanitize_filename("\u{7}\u{1b}"), "upload");
    }

    #[test]
    fn limits_length_keeping_the_extension() {
        let long = format!("{}.mp4", "a".repeat(500));
        let name = sanitize_filename(&long);
        assert_eq!(name.chars().count(), MAX_FILENAME_CHARS);
        assert!(name.ends_with("aaa.mp4"));

        let multibyte = format!("{}.mov", "é".repeat(300));
        let name = sanitize_filename(&multibyte);
        assert_eq!(name.chars().count(), MAX_FILENAME_CHARS);
        assert!(name.ends_with(".mov"));

        let long_extension = format!("clip.{}", "x".repeat(300));
        assert_eq!(
            sanitize_filename(&long_extension).chars().count(),
            MAX_FILENAME_CHARS
        );
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("clip.MP4").as_deref(), Some("mp4"));
        assert_eq!(extension("archive.tar.gz").as_deref(), Some("gz"));
        assert_eq!(extension("file"), None);
        assert_eq!(extension(".profile"), None);
        assert_eq!(extension("trailing."), None);
    }
}
