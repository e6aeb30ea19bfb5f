use crate::Error;
use crate::container::Container;
use crate::filename::{extension, sanitize_filename};

/// What a form may carry besides the file's own bytes (boundaries, part headers, small
/// fields) before the request as a whole is too large.
const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Which uploads are accepted: allowed extensions and the largest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    allowed: Vec<String>,
    max_file_bytes: u64,
}

impl UploadPolicy {
    /// `allowed` is a comma-separated extension list (`mp4,avi,.MOV`). `None` when it names
    /// no extension or the limit is zero: such a configuration could accept nothing.
    pub fn new(allowed: &str, max_file_bytes: u64) -> Option<Self> {
        let allowed: Vec<String> = allowed
            .split(',')
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        (!allowed.is_empty() && max_file_bytes > 0).then_some(Self {
            allowed,
            max_file_bytes,
        })
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// The largest request body an acceptable upload can arrive in.
    pub fn max_request_bytes(&self) -> u64 {
        self.max_file_bytes.saturating_add(FORM_OVERHEAD_BYTES)
    }

    pub fn too_large(&self) -> Error {
        Error::TooLarge {
            limit: self.max_file_bytes,
        }
    }

    fn allows(&self, extension: &str) -> bool {
        self.allowed.iter().any(|a| a == extension)
    }

    fn not_allowed(&self, extension: &str) -> Error {
        Error::ExtensionNotAllowed {
            extension: extension.to_string(),
            allowed: self.allowed.join(", "),
        }
    }

    /// Decides on a filename before any content is seen (a resumable upload's creation):
    /// the sanitised name, if its extension, when it has one, is allowed. The content is
    /// checked against it with [`UploadPolicy::check`] once its first bytes arrive.
    pub fn check_name(&self, client_filename: &str) -> Result<String, Error> {
        let name = sanitize_filename(client_filename);
        match extension(&name) {
            Some(declared) if !self.allows(&declared) => Err(self.not_allowed(&declared)),
            _ => Ok(name),
        }
    }

    /// Decides on a file from the client's filename and its first bytes (at least
    /// [`crate::SNIFF_LEN`] unless the file is shorter), returning the sanitised name it is
    /// stored under. The extension must be allowed and match the content; a name without
    /// an extension gets the one of the detected container, which must be allowed too.
    pub fn check(&self, client_filename: Option<&str>, head: &[u8]) -> Result<String, Error> {
        let name = self.check_name(client_filename.unwrap_or_default())?;
        let declared = extension(&name);
        if head.is_empty() {
            return Err(Error::EmptyFile);
        }
        let container = Container::detect(head).ok_or(Error::UnrecognisedContent)?;
        match declared {
            Some(declared) if container.matches_extension(&declared) => Ok(name),
            Some(declared) => Err(Error::ContentMismatch(declared)),
            None => {
                let detected = container.default_extension();
                if self.allows(detected) {
                    Ok(format!("{name}.{detected}"))
                } else {
                    Err(self.not_allowed(detected))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MP4: &[u8] = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2";
    const MOV: &[u8] = b"\0\0\0\x14ftypqt  \0\0\x02\0";
    const AVI: &[u8] = b"RIFF\x10\0\0\0AVI LIST";

    fn policy() -> UploadPolicy {
        UploadPolicy::new("mp4, avi,.MOV", 1000).unwrap()
    }

    #[test]
    fn parses_the_extension_list() {
        assert_eq!(policy().allowed, ["mp4", "avi", "mov"]);
        assert_eq!(UploadPolicy::new(" , ", 10), None);
        assert_eq!(UploadPolicy::new("mp4", 0), None);
    }

    #[test]
    fn limits() {
        let policy = policy();
        assert_eq!(policy.max_file_bytes(), 1000);
        assert_eq!(policy.max_request_bytes(), 1000 + FORM_OVERHEAD_BYTES);
        assert_eq!(policy.too_large(), Error::TooLarge { limit: 1000 });
        let huge = UploadPolicy::new("mp4", u64::MAX).unwrap();
        assert_eq!(huge.max_request_bytes(), u64::MAX);
    }

    #[test]
    fn names_are_checked_before_the_content() {
        let policy = policy();
        assert_eq!(policy.check_name("clip.MP4").unwrap(), "clip.MP4");
        assert_eq!(policy.check_name("no extension").unwrap(), "no extension");
        assert!(matches!(
            policy.check_name("song.mp3"),
            Err(Error::ExtensionNotAllowed { .. })
        ));
    }

    #[test]
    fn accepts_matching_extension_and_content() {
        let policy = policy();
        assert_eq!(policy.check(Some("clip.mp4"), MP4).unwrap(), "clip.mp4");
        assert_eq!(policy.check(Some("Clip.MOV"), MOV).unwrap(), "Clip.MOV");
        assert_eq!(policy.check(Some("phone.mov"), MP4).unwrap(), "phone.mov");
        assert_eq!(policy.check(Some("old.avi"), AVI).unwrap(), "old.avi");
    }

    #[test]
    fn sanitises_the_name() {
        assert_eq!(
            policy().check(Some("../../etc/passwd.mp4"), MP4).unwrap(),
            "passwd.mp4"
        );
    }

    #[test]
    fn names_without_extension_get_the_detected_one() {
        let policy = policy();
        assert_eq!(policy.check(Some("file"), MP4).unwrap(), "file.mp4");
        assert_eq!(policy.check(Some("file"), MOV).unwrap(), "file.mov");
        assert_eq!(policy.check(Some("file"), AVI).unwrap(), "file.avi");
        assert_eq!(policy.check(None, MP4).unwrap(), "upload.mp4");
        let mp4_only = UploadPolicy::new("mp4", 10).unwrap();
        assert_eq!(
            mp4_only.check(Some("file"), AVI),
            Err(Error::ExtensionNotAllowed {
                extension: "avi".into(),
                allowed: "mp4".into()
            })
        );
    }

    #[test]
    fn rejects_disallowed_extensions_before_looking_at_content() {
        assert_eq!(
            policy().check(Some("notes.txt"), b"hello"),
            Err(Error::ExtensionNotAllowed {
                extension: "txt".into(),
                allowed: "mp4, avi, mov".into()
            })
        );
    }

    #[test]
    fn rejects_content_that_is_not_a_video_or_does_not_match() {
        let policy = policy();
        assert_eq!(
            policy.check(Some("fake.mp4"), b"just some text, not a video"),
            Err(Error::UnrecognisedContent)
        );
        assert_eq!(
            policy.check(Some("tiny.mp4"), b"\0\0\0"),
            Err(Error::UnrecognisedContent)
        );
        assert_eq!(
            policy.check(Some("file"), b"plain text file"),
            Err(Error::UnrecognisedContent)
        );
        assert_eq!(
            policy.check(Some("clip.avi"), MP4),
            Err(Error::ContentMismatch("avi".into()))
        );
        assert_eq!(
            policy.check(Some("clip.mp4"), AVI),
            Err(Error::ContentMismatch("mp4".into()))
        );
        assert_eq!(policy.check(Some("empty.mp4"), b""), Err(Error::EmptyFile));
    }
}
