//! The small text fields an upload form may carry before its file: today the
//! `callback_url` of the job's webhook. The body is streamed, so a field is only seen if
//! it comes before the `file` part; one that comes after is refused rather than ignored.
//! Each field is held up to its own bound, never more.

use spinmesh_jobs::webhook::{self, CALLBACK_URL_FIELD, CallbackUrlError, MAX_CALLBACK_URL_LEN};

use crate::Error;

/// The text fields read so far, fed the parts before the file one event at a time.
#[derive(Debug, Default)]
pub struct FormFields {
    callback_url: Option<String>,
    /// The value of the field being read, if it is one we keep.
    reading: Option<Vec<u8>>,
}

impl FormFields {
    /// A part other than the file begins.
    pub fn part(&mut self, name: Option<&str>) {
        self.reading = (name == Some(CALLBACK_URL_FIELD)).then(Vec::new);
    }

    /// The next bytes of the current part.
    pub fn data(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(value) = self.reading.as_mut() {
            if value.len() + data.len() > MAX_CALLBACK_URL_LEN {
                return Err(Error::CallbackUrl(CallbackUrlError::TooLong));
            }
            value.extend_from_slice(data);
        }
        Ok(())
    }

    /// The current part ended: a kept field's value is checked now. An empty value (a
    /// form's blank input) is no value.
    pub fn part_end(&mut self) -> Result<(), Error> {
        let Some(value) = self.reading.take() else {
            return Ok(());
        };
        let value = String::from_utf8(value)
            .map_err(|_| Error::CallbackUrl(CallbackUrlError::NotPrintableAscii))?;
        let value = value.trim();
        if value.is_empty() {
            self.callback_url = None;
            return Ok(());
        }
        webhook::check_callback_url(value).map_err(Error::CallbackUrl)?;
        self.callback_url = Some(value.to_string());
        Ok(())
    }

    /// A part after the file: a field we would have kept there is refused, since it
    /// arrives after the upload was sent on.
    pub fn after_file(name: Option<&str>) -> Result<(), Error> {
        match name {
            Some(CALLBACK_URL_FIELD) => Err(Error::FieldAfterFile(CALLBACK_URL_FIELD)),
            _ => Ok(()),
        }
    }

    /// The job's callback URL, checked, if the form gave one.
    pub fn callback_url(&self) -> Option<&str> {
        self.callback_url.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(parts: &[(&str, &[&[u8]])]) -> Result<FormFields, Error> {
        let mut fields = FormFields::default();
        for (name, chunks) in parts {
            fields.part(Some(name));
            for chunk in *chunks {
                fields.data(chunk)?;
            }
            fields.part_end()?;
        }
        Ok(fields)
    }

    #[test]
    fn a_callback_url_in_pieces_is_kept_and_other_fields_are_not() {
        let fields = read(&[
            ("note", &[b"hello"]),
            ("callback_url", &[b" https://hooks.", b"example.com/x\r\n"]),
        ])
        .unwrap();
        assert_eq!(fields.callback_url(), Some("https://hooks.example.com/x"));
        assert_eq!(read(&[("note", &[b"x"])]).unwrap().callback_url(), None);
        assert_eq!(
            read(&[("callback_url", &[b"  "])]).unwrap().callback_url(),
            None
        );
    }

    #[test]
    fn a_bad_or_oversized_callback_url_is_refused_without_holding_it() {
        let refusal = read(&[("callback_url", &[b"ftp://example.com/"])]).unwrap_err();
        assert_eq!(refusal, Error::CallbackUrl(CallbackUrlError::NotHttp));
        assert_eq!(refusal.code(), "invalid_callback_url");
        let piece = [b'a'; 1024];
        let refusal = read(&[("callback_url", &[&piece, &piece, b"a"])]).unwrap_err();
        assert_eq!(refusal, Error::CallbackUrl(CallbackUrlError::TooLong));
        // Any size is fine for a field that is not kept: it is skipped, not held.
        assert!(read(&[("note", &[&piece, &piece, &piece])]).is_ok());
        let refusal = read(&[("callback_url", &[b"https://example.com/\xff"])]).unwrap_err();
        assert_eq!(refusal.status(), 400);
    }

    #[test]
    fn a_callback_url_after_the_file_is_refused() {
        let refusal = FormFields::after_file(Some("callback_url")).unwrap_err();
        assert_eq!(
            (refusal.status(), refusal.code()),
            (400, "field_after_file")
        );
        assert!(refusal.to_string().contains("before"), "{refusal}");
        assert!(FormFields::after_file(Some("note")).is_ok());
        assert!(FormFields::after_file(None).is_ok());
    }
}
