//! Reading the upload request: its body with a size cap, and the multipart form in it.

use futures::{Stream, StreamExt};
use spinmesh_api::ApiError;
use spinmesh_media::multipart::{Event, Parser, PartHeaders};
use spinmesh_media::{Error, FormFields, SNIFF_LEN, UploadPolicy};
use wasi::io::streams;

use crate::reject;

/// The form field that carries the file (the seeds' `file`).
const FILE_FIELD: &str = "file";

/// Read at most this much of a body the upload will not use.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// An incoming body as spin-sdk streams it.
pub trait BodyStream: Stream<Item = Result<Vec<u8>, streams::Error>> + Unpin {}

impl<S: Stream<Item = Result<Vec<u8>, streams::Error>> + Unpin> BodyStream for S {}

/// The request body, counted: more than the policy's request limit is refused, whether
/// `Content-Length` announces it or the bytes arrive.
pub struct RequestBody<S> {
    stream: S,
    declared: Option<u64>,
    received: u64,
    limit: u64,
    too_large: Error,
    ended: bool,
}

impl<S: BodyStream> RequestBody<S> {
    pub fn new(stream: S, declared: Option<u64>, policy: &UploadPolicy) -> Self {
        Self {
            stream,
            declared,
            received: 0,
            limit: policy.max_request_bytes(),
            too_large: policy.too_large(),
            ended: false,
        }
    }

    /// The next chunk, `None` at the end of the body.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        if self.declared.is_some_and(|declared| declared > self.limit) {
            return Err(reject(self.too_large.clone()));
        }
        if self.ended {
            return Ok(None);
        }
        match self.stream.next().await {
            None => {
                self.ended = true;
                Ok(None)
            }
            Some(Err(_)) => {
                self.ended = true;
                Err(ApiError::bad_request("The request body could not be read"))
            }
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    return Err(reject(self.too_large.clone()));
                }
                Ok(Some(chunk))
            }
        }
    }

    /// Reads and discards the rest of the body, up to [`DRAIN_BYTES`]; nothing when more
    /// than that is announced to remain.
    pub async fn drain(&mut self) {
        let remaining = self
            .declared
            .map(|declared| declared.saturating_sub(self.received));
        if self.ended || remaining.is_some_and(|remaining| remaining > DRAIN_BYTES) {
            return;
        }
        let mut drained = 0;
        while drained <= DRAIN_BYTES {
            match self.stream.next().await {
                Some(Ok(chunk)) => drained += chunk.len() as u64,
                _ => break,
            }
        }
    }
}

/// The multipart form of an upload, read as it arrives.
pub struct Form<'b, S> {
    body: &'b mut RequestBody<S>,
    parser: Parser,
    in_part: bool,
}

impl<'b, S: BodyStream> Form<'b, S> {
    pub fn new(body: &'b mut RequestBody<S>, boundary: &str) -> Self {
        Self {
            body,
            parser: Parser::new(boundary),
            in_part: false,
        }
    }

    async fn event(&mut self) -> Result<Event, ApiError> {
        loop {
            if let Some(event) = self.parser.next_event().map_err(reject)? {
                return Ok(event);
            }
            match self.body.next_chunk().await? {
                Some(chunk) => self.parser.push(&chunk),
                None => {
                    self.parser.finish().map_err(reject)?;
                    return Ok(Event::End);
                }
            }
        }
    }

    /// Reads up to the `file` part, keeping the text fields before it (the webhook's
    /// `callback_url`); 400 when the form has no file.
    pub async fn file_part(&mut self) -> Result<(PartHeaders, FormFields), ApiError> {
        let mut fields = FormFields::default();
        loop {
            match self.event().await? {
                Event::Part(headers) if headers.name.as_deref() == Some(FILE_FIELD) => {
                    self.in_part = true;
                    return Ok((headers, fields));
                }
                Event::Part(headers) => fields.part(headers.name.as_deref()),
                Event::Data(data) => fields.data(&data).map_err(reject)?,
                Event::PartEnd => fields.part_end().map_err(reject)?,
                Event::End => return Err(reject(Error::MissingFile)),
            }
        }
    }

    /// The next bytes of the current part, `None` once it has ended.
    pub async fn data(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        if !self.in_part {
            return Ok(None);
        }
        match self.event().await? {
            Event::Data(data) => Ok(Some(data)),
            // Within a part the parser yields only data, then the part's end.
            _ => {
                self.in_part = false;
                Ok(None)
            }
        }
    }

    /// The part's first bytes: at least [`SNIFF_LEN`] unless the part is shorter.
    pub async fn sniff(&mut self) -> Result<Vec<u8>, ApiError> {
        let mut head = Vec::new();
        while head.len() < SNIFF_LEN {
            match self.data().await? {
                Some(data) => head.extend_from_slice(&data),
                None => break,
            }
        }
        Ok(head)
    }

    /// Reads the rest of the form, which must end properly and hold no field that had
    /// to come before the file.
    pub async fn finish(&mut self) -> Result<(), ApiError> {
        loop {
            match self.event().await? {
                Event::End => return Ok(()),
                Event::Part(headers) => {
                    FormFields::after_file(headers.name.as_deref()).map_err(reject)?
                }
                _ => {}
            }
        }
    }
}
