/// Why an upload is refused. Messages are client-facing: they name what is wrong with
/// the request, never anything about the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("Content-Type must be multipart/form-data")]
    NotMultipart,
    #[error("Malformed multipart body: {0}")]
    Malformed(&'static str),
    #[error("The form has no `file` field")]
    MissingFile,
    #[error("The uploaded file is empty")]
    EmptyFile,
    #[error("File exceeds the upload limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("Files of type .{extension} are not accepted; allowed: {allowed}")]
    ExtensionNotAllowed { extension: String, allowed: String },
    #[error("File content is not a supported video container")]
    UnrecognisedContent,
    #[error("File content does not match its .{0} extension")]
    ContentMismatch(String),
    #[error("{0}")]
    CallbackUrl(spinmesh_jobs::webhook::CallbackUrlError),
    /// A field that must come before the file, since the file is sent on as it arrives.
    #[error("The {0} field must come before the file in the form")]
    FieldAfterFile(&'static str),
}

impl Error {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_)
            | Error::MissingFile
            | Error::EmptyFile
            | Error::CallbackUrl(_)
            | Error::FieldAfterFile(_) => 400,
            Error::TooLarge { .. } => 413,
            Error::NotMultipart
            | Error::ExtensionNotAllowed { .. }
            | Error::UnrecognisedContent
            | Error::ContentMismatch(_) => 415,
        }
    }

    /// The stable, machine-readable `code` of the error response.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotMultipart => "unsupported_media_type",
            Error::Malformed(_) => "malformed_multipart",
            Error::MissingFile => "missing_file",
            Error::EmptyFile => "empty_file",
            Error::TooLarge { .. } => "payload_too_large",
            Error::ExtensionNotAllowed { .. }
            | Error::UnrecognisedContent
            | Error::ContentMismatch(_) => "unsupported_file_type",
            Error::CallbackUrl(_) => spinmesh_jobs::webhook::INVALID_CALLBACK_URL,
            Error::FieldAfterFile(_) => "field_after_file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (Error::NotMultipart, 415, "unsupported_media_type"),
            (Error::Malformed("x"), 400, "malformed_multipart"),
            (Error::MissingFile, 400, "missing_file"),
            (Error::EmptyFile, 400, "empty_file"),
            (Error::TooLarge { limit: 5 }, 413, "payload_too_large"),
            (Error::UnrecognisedContent, 415, "unsupported_file_type"),
            (
                Error::ContentMismatch("avi".into()),
                415,
                "unsupported_file_type",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status(), error.code()), (status, code), "{error:?}");
        }
        let error = Error::ExtensionNotAllowed {
            extension: "txt".into(),
            allowed: "mp4, avi".into(),
        };
        assert_eq!(
            error.to_string(),
            "Files of type .txt are not accepted; allowed: mp4, avi"
        );
        assert_eq!(
            Error::TooLarge { limit: 10 }.to_string(),
            "File exceeds the upload limit of 10 bytes"
        );
    }
}
