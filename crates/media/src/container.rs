/// How many leading bytes [`Container::detect`] needs.
pub const SNIFF_LEN: usize = 12;

/// A video container recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// ISO base media file format (an `ftyp` box at offset 4) with an MP4-family brand.
    Mp4,
    /// ISO base media with the QuickTime brand `qt  `.
    QuickTime,
    /// RIFF with form type `AVI `.
    Avi,
}

impl Container {
    /// The container the first [`SNIFF_LEN`] bytes of a file announce, if any.
    pub(crate) fn detect(head: &[u8]) -> Option<Container> {
        let head = head.get(..SNIFF_LEN)?;
        if &head[4..8] == b"ftyp" {
            return Some(if &head[8..12] == b"qt  " {
                Container::QuickTime
            } else {
                Container::Mp4
            });
        }
        (&head[..4] == b"RIFF" && &head[8..12] == b"AVI ").then_some(Container::Avi)
    }

    /// The extension given to a file of this container that has none.
    pub(crate) fn default_extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::QuickTime => "mov",
            Container::Avi => "avi",
        }
    }

    /// Whether a file named `*.{extension}` (lower case) may hold this container. MP4 and
    /// QuickTime share one format, and files of either are routinely named after the other.
    pub(crate) fn matches_extension(self, extension: &str) -> bool {
        match self {
            Container::Mp4 | Container::QuickTime => matches!(extension, "mp4" | "m4v" | "mov"),
            Container::Avi => extension == "avi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        let mut head = vec![0, 0, 0, 0x20];
        head.extend_from_slice(b"ftyp");
        head.extend_from_slice(brand);
        head.extend_from_slice(&[0, 0, 2, 0]);
        head
    }

    #[test]
    fn detects_iso_media_by_ftyp_and_brand() {
        assert_eq!(Container::detect(&ftyp(b"isom")), Some(Container::Mp4));
        assert_eq!(Container::detect(&ftyp(b"mp42")), Some(Container::Mp4));
        assert_eq!(
            Container::detect(&ftyp(b"qt  ")),
            Some(Container::QuickTime)
        );
    }

    #[test]
    fn detects_avi() {
        assert_eq!(
            Container::detect(b"RIFF\x10\x00\x00\x00AVI LIST"),
            Some(Container::Avi)
        );
        // A WAV file is RIFF too, but not a video.
        assert_eq!(Container::detect(b"RIFF\x10\x00\x00\x00WAVEfmt "), None);
    }

    #[test]
    fn rejects_other_content_and_short_input() {
        assert_eq!(Container::detect(b"hello, this is text\n"), None);
        assert_eq!(
            Container::detect(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x23"),
            None
        );
        assert_eq!(Container::detect(&ftyp(b"isom")[..11]), None);
        assert_eq!(Container::detect(b""), None);
    }

    #[test]
    fn extensions() {
        assert_eq!(Container::Mp4.default_extension(), "mp4");
        assert_eq!(Container::QuickTime.default_extension(), "mov");
        assert_eq!(Container::Avi.default_extension(), "avi");
        for extension in ["mp4", "m4v", "mov"] {
            assert!(Container::Mp4.matches_extension(extension));
            assert!(Container::QuickTime.matches_extension(extension));
            assert!(!Container::Avi.matches_extension(extension));
        }
        assert!(Container::Avi.matches_extension("avi"));
        assert!(!Container::Mp4.matches_extension("avi"));
        assert!(!Container::Mp4.matches_extension("txt"));
    }
}
