//! Incremental `multipart/form-data` parsing (RFC 7578, RFC 2046 §5.1.1).
//!
//! [`Parser`] is fed the body chunk by chunk and hands back [`Event`]s. It holds at most
//! the unconsumed part of one chunk plus a delimiter's length of a part's body (and at
//! most [`MAX_PART_HEADER_BYTES`] of a part's headers), so a file of any size streams
//! through it in constant memory.
//!
//! Kept by hand rather than `multer`: multer builds for wasm32-wasip2, but it pulls in
//! as much of the body as the host has ready before handing out a field, so memory
//! follows the sender's speed rather than a bound we set (measured: pieces of about
//! 12 MB, 34 MB of guest memory for one upload). This parser never holds more than the
//! limits above, which is what a component with a fixed memory budget needs.

use memchr::memmem::{self, Finder};
use percent_encoding::percent_decode_str;

use crate::Error;

/// Longest header block a part may have.
const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY_LEN: usize = 70;
/// Transport padding (whitespace) allowed after a delimiter before its line ends.
const MAX_PADDING: usize = 64;

/// The boundary of a `multipart/form-data` content type; [`Error::NotMultipart`] for any
/// other type.
pub fn boundary(content_type: &str) -> Result<String, Error> {
    let mut params = content_type.split(';');
    let essence = params.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(Error::NotMultipart);
    }
    let value = params
        .filter_map(|param| param.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim())
        .ok_or(Error::Malformed("the content type has no boundary"))?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let valid = (1..=MAX_BOUNDARY_LEN).contains(&value.len())
        && value.bytes().all(is_boundary_char)
        && !value.ends_with(' ');
    if valid {
        Ok(value.to_string())
    } else {
        Err(Error::Malformed("invalid boundary"))
    }
}

/// RFC 2046 `bchars`.
fn is_boundary_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b)
}

/// What a part's `Content-Disposition` says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// The form field name.
    pub name: Option<String>,
    /// The client's filename, as sent (not sanitised).
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins.
    Part(PartHeaders),
    /// The next bytes of the current part's body.
    Data(Vec<u8>),
    /// The current part is complete: its closing delimiter was seen.
    PartEnd,
    /// The closing delimiter of the whole body was seen.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// A push parser: [`Parser::push`] one chunk, then call [`Parser::next_event`] until it
/// returns `None`; at the end of the input, [`Parser::finish`] tells whether the body
/// was complete.
pub struct Parser {
    /// Finds `CRLF--boundary`.
    delimiter: Finder<'static>,
    buffer: Vec<u8>,
    state: State,
}

impl Parser {
    pub fn new(boundary: &str) -> Self {
        let delimiter = format!("\r\n--{boundary}");
        Self {
            delimiter: Finder::new(delimiter.as_bytes()).into_owned(),
            // The first delimiter may start the body without a CRLF before it.
            buffer: b"\r\n".to_vec(),
            state: State::Preamble,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.state != State::Done {
            self.buffer.extend_from_slice(chunk);
        }
    }

    /// The next event, `None` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            match self.state {
                State::Preamble => match self.delimiter.find(&self.buffer) {
                    Some(at) => {
                        self.buffer.drain(..at + self.delimiter_len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep_from = self.buffer.len().saturating_sub(self.delimiter_len() - 1);
                        self.buffer.drain(..keep_from);
                        return Ok(None);
                    }
                },
                State::AfterDelimiter => return self.after_delimiter(),
                State::Headers => return self.headers(),
                State::Body => return Ok(self.body()),
                State::Done => return Ok(None),
            }
        }
    }

    /// `Ok` when the input held the whole body, up to its closing delimiter.
    pub fn finish(&self) -> Result<(), Error> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(Error::Malformed(
                "the body ended before its closing boundary",
            ))
        }
    }

    fn delimiter_len(&self) -> usize {
        self.delimiter.needle().len()
    }

    /// After `CRLF--boundary`: `--` closes the body; otherwise optional padding and CRLF
    /// lead to a part's headers.
    fn after_delimiter(&mut self) -> Result<Option<Event>, Error> {
        if self.buffer.len() < 2 {
            return Ok(None);
        }
        if self.buffer.starts_with(b"--") {
            self.state = State::Done;
            self.buffer = Vec::new();
            return Ok(Some(Event::End));
        }
        let line_end = memmem::find(&self.buffer, b"\r\n");
        let padding = match line_end {
            Some(at) => &self.buffer[..at],
            None => self.buffer.strip_suffix(b"\r").unwrap_or(&self.buffer),
        };
        if padding.len() > MAX_PADDING || !padding.iter().all(|b| matches!(b, b' ' | b'\t')) {
            return Err(Error::Malformed("invalid boundary line"));
        }
        let Some(line_end) = line_end else {
            return Ok(None);
        };
        self.buffer.drain(..line_end + 2);
        self.state = State::Headers;
        self.headers()
    }

    fn headers(&mut self) -> Result<Option<Event>, Error> {
        let (block_len, consumed) = if self.buffer.starts_with(b"\r\n") {
            (0, 2)
        } else if let Some(at) = memmem::find(&self.buffer, b"\r\n\r\n") {
            (at, at + 4)
        } else {
            (self.buffer.len(), 0)
        };
        if block_len > MAX_PART_HEADER_BYTES {
            return Err(Error::Malformed("part headers are too large"));
        }
        if consumed == 0 {
            return Ok(None);
        }
        let headers = parse_headers(&self.buffer[..block_len])?;
        self.buffer.drain(..consumed);
        self.state = State::Body;
        Ok(Some(Event::Part(headers)))
    }

    fn body(&mut self) -> Option<Event> {
        match self.delimiter.find(&self.buffer) {
            Some(0) => {
                self.buffer.drain(..self.delimiter_len());
                self.state = State::AfterDelimiter;
                Some(Event::PartEnd)
            }
            Some(at) => Some(Event::Data(self.take(at))),
            // Keep what could be the start of a delimiter split across chunks.
            None => {
                let safe = self.buffer.len().saturating_sub(self.delimiter_len() - 1);
                (safe > 0).then(|| Event::Data(self.take(safe)))
            }
        }
    }

    /// The first `len` bytes of the buffer, without copying them.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let rest = self.buffer.split_off(len);
        std::mem::replace(&mut self.buffer, rest)
    }
}

fn parse_headers(block: &[u8]) -> Result<PartHeaders, Error> {
    let text = String::from_utf8_lossy(block);
    let mut headers = PartHeaders::default();
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(Error::Malformed("invalid part header"))?;
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            headers = parse_disposition(value);
        }
    }
    Ok(headers)
}

/// `form-data; name="file"; filename="clip.mp4"`, where an RFC 5987 `filename*`
/// (`UTF-8''clip%20%E2%82%AC.mp4`) takes precedence over `filename`.
fn parse_disposition(value: &str) -> PartHeaders {
    let mut headers = PartHeaders::default();
    let mut extended_filename = None;
    let mut rest = value.split_once(';').map_or("", |(_, params)| params);
    while let Some((key, value, after)) = next_param(rest) {
        match key.to_ascii_lowercase().as_str() {
            "name" => headers.name = Some(value),
            "filename" => headers.filename = Some(value),
            "filename*" => extended_filename = decode_extended(&value),
            _ => {}
        }
        rest = after;
    }
    if extended_filename.is_some() {
        headers.filename = extended_filename;
    }
    headers
}

/// The first `key=value` of `input` (after any `;` and whitespace), and what follows it.
fn next_param(input: &str) -> Option<(&str, String, &str)> {
    let input = input.trim_start_matches(|c: char| c == ';' || c.is_whitespace());
    if input.is_empty() {
        return None;
    }
    let (key, after_key) = input.split_once('=')?;
    let after_key = after_key.trim_start();
    let Some(quoted) = after_key.strip_prefix('"') else {
        let (value, after) = after_key.split_once(';').unwrap_or((after_key, ""));
        return Some((key.trim(), value.trim().to_string(), after));
    };
    // A backslash escapes only `"` and `\`: browsers send Windows paths unescaped.
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((key.trim(), value, &quoted[at + 1..])),
            '\\' if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                value.push(chars.next().map_or(c, |(_, escaped)| escaped));
            }
            c => value.push(c),
        }
    }
    Some((key.trim(), value, ""))
}

/// RFC 5987 `charset'language'percent-encoded`, for UTF-8 and ISO-8859-1.
fn decode_extended(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = percent_decode_str(encoded);
    if charset.eq_ignore_ascii_case("utf-8") {
        Some(bytes.decode_utf8_lossy().into_owned())
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.map(char::from).collect())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let filename = filename
                .map(|f| format!("; filename=\"{f}\""))
                .unwrap_or_default();
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
            );
            body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// Parses `body` fed in chunks of `chunk` bytes, joining adjacent data events.
    fn parse_in_chunks(boundary: &str, body: &[u8], chunk: usize) -> Result<Vec<Event>, Error> {
        let mut parser = Parser::new(boundary);
        let mut events: Vec<Event> = Vec::new();
        for piece in body.chunks(chunk) {
            parser.push(piece);
            while let Some(event) = parser.next_event()? {
                match (events.last_mut(), event) {
                    (Some(Event::Data(joined)), Event::Data(more)) => joined.extend(more),
                    (_, event) => events.push(event),
                }
            }
        }
        parser.finish()?;
        Ok(events)
    }

    fn part(name: &str, filename: Option<&str>) -> Event {
        Event::Part(PartHeaders {
            name: Some(name.into()),
            filename: filename.map(Into::into),
        })
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc123").unwrap(),
            "abc123"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"").unwrap(),
            "a b:c"
        );
        assert_eq!(boundary("application/json"), Err(Error::NotMultipart));
        assert_eq!(
            boundary("multipart/mixed; boundary=x"),
            Err(Error::NotMultipart)
        );
        assert_eq!(boundary(""), Err(Error::NotMultipart));
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
            "multipart/form-data; boundary=a\rb",
            "multipart/form-data; boundary=\"ends with space \"",
        ] {
            assert!(matches!(boundary(bad), Err(Error::Malformed(_))), "{bad}");
        }
        let long = format!("multipart/form-data; boundary={}", "x".repeat(71));
        assert!(matches!(boundary(&long), Err(Error::Malformed(_))));
    }

    #[test]
    fn parses_fields_and_files_at_every_chunk_size() {
        let file: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let body = form(&[
            ("title", None, b"Holiday"),
            ("file", Some("clip.mp4"), &file),
        ]);
        let expected = vec![
            part("title", None),
            Event::Data(b"Holiday".to_vec()),
            Event::PartEnd,
            part("file", Some("clip.mp4")),
            Event::Data(file.clone()),
            Event::PartEnd,
            Event::End,
        ];
        for chunk in 1..=body.len().min(200) {
            assert_eq!(
                parse_in_chunks(BOUNDARY, &body, chunk).unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
        assert_eq!(
            parse_in_chunks(BOUNDARY, &body, body.len()).unwrap(),
            expected
        );
    }

    #[test]
    fn data_resembling_the_boundary_is_kept() {
        // Prefixes of the delimiter, one of them right before the real one.
        let data = format!(
            "a\r\n--{}x\r\n-{BOUNDARY}\r\n--{}",
            &BOUNDARY[..10],
            &BOUNDARY[..BOUNDARY.len() - 1]
        );
        let body = form(&[("file", Some("a.mp4"), data.as_bytes())]);
        for chunk in [1, 3, 7, 64] {
            let events = parse_in_chunks(BOUNDARY, &body, chunk).unwrap();
            assert_eq!(
                events[1],
                Event::Data(data.as_bytes().to_vec()),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn preamble_epilogue_padding_and_empty_parts() {
        let body = format!(
            "preamble text\r\n--{BOUNDARY}  \t\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--{BOUNDARY}\r\n\r\nno headers\r\n--{BOUNDARY}--\r\nepilogue"
        );
        let events = parse_in_chunks(BOUNDARY, body.as_bytes(), 5).unwrap();
        assert_eq!(
            events,
            vec![
                part("empty", None),
                Event::PartEnd,
                Event::Part(PartHeaders::default()),
                Event::Data(b"no headers".to_vec()),
                Event::PartEnd,
                Event::End,
            ]
        );
    }

    #[test]
    fn truncated_bodies_are_malformed() {
        let body = form(&[("file", Some("clip.mp4"), b"0123456789")]);
        for cut in [0, 10, body.len() / 2, body.len() - 8] {
            let result = parse_in_chunks(BOUNDARY, &body[..cut], 4);
            assert_eq!(
                result,
                Err(Error::Malformed(
                    "the body ended before its closing boundary"
                )),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn garbage_after_a_delimiter_and_huge_headers_are_malformed() {
        let body = format!("--{BOUNDARY}garbage\r\n\r\nx\r\n--{BOUNDARY}--");
        assert_eq!(
            parse_in_chunks(BOUNDARY, body.as_bytes(), 8),
            Err(Error::Malformed("invalid boundary line"))
        );

        let mut body = format!("--{BOUNDARY}\r\nX-Filler: ").into_bytes();
        body.extend(std::iter::repeat_n(b'a', MAX_PART_HEADER_BYTES + 1));
        assert_eq!(
            parse_in_chunks(BOUNDARY, &body, 1024),
            Err(Error::Malformed("part headers are too large"))
        );

        let body = format!("--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--");
        assert_eq!(
            parse_in_chunks(BOUNDARY, body.as_bytes(), 8),
            Err(Error::Malformed("invalid part header"))
        );
    }

    #[test]
    fn memory_stays_bounded_while_streaming_a_large_part() {
        let chunk = 16 * 1024;
        let mut parser = Parser::new(BOUNDARY);
        parser.push(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(parser.next_event().unwrap(), Some(part("file", None)));
        let mut received = 0;
        for _ in 0..200 {
            parser.push(&vec![7u8; chunk]);
            while let Some(event) = parser.next_event().unwrap() {
                let Event::Data(data) = event else {
                    panic!("unexpected {event:?}")
                };
                received += data.len();
            }
            assert!(
                parser.buffer.len() < BOUNDARY.len() + 4,
                "{}",
                parser.buffer.len()
            );
        }
        parser.push(format!("\r\n--{BOUNDARY}--").as_bytes());
        while let Some(event) = parser.next_event().unwrap() {
            if let Event::Data(data) = event {
                received += data.len();
            }
        }
        parser.finish().unwrap();
        assert_eq!(received, 200 * chunk);
    }

    #[test]
    fn disposition_parameters() {
        let cases = [
            (
                r#"form-data; name="file"; filename="clip.mp4""#,
                Some("file"),
                Some("clip.mp4"),
            ),
            (
                r#"form-data;name=file;filename=clip.mp4"#,
                Some("file"),
                Some("clip.mp4"),
            ),
            (
                r#"form-data; filename="a; b=\"c\".mp4"; name="file""#,
                Some("file"),
                Some(r#"a; b="c".mp4"#),
            ),
            (
                r#"form-data; name="file"; filename="C:\Users\me\clip.mp4""#,
                Some("file"),
                Some(r"C:\Users\me\clip.mp4"),
            ),
            (
                r#"form-data; name="file"; filename="fallback.mp4"; filename*=UTF-8''%E2%82%AC%20rates.mp4"#,
                Some("file"),
                Some("€ rates.mp4"),
            ),
            (
                r#"form-data; name="file"; filename*=iso-8859-1'en'caf%E9.mp4"#,
                Some("file"),
                Some("café.mp4"),
            ),
            (
                r#"form-data; name="file"; filename="kept.mp4"; filename*=koi8-r''x"#,
                Some("file"),
                Some("kept.mp4"),
            ),
            (
                r#"form-data; name="unterminated"#,
                Some("unterminated"),
                None,
            ),
            ("form-data", None, None),
        ];
        for (value, name, filename) in cases {
            let headers = parse_disposition(value);
            assert_eq!(headers.name.as_deref(), name, "{value}");
            assert_eq!(headers.filename.as_deref(), filename, "{value}");
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_may_be_non_utf8() {
        let mut body =
            format!("--{BOUNDARY}\r\ncontent-DISPOSITION: form-data; name=\"file\"; filename=\"")
                .into_bytes();
        body.extend_from_slice(b"caf\xe9.mp4\"\r\n\r\nx\r\n");
        body.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());
        let events = parse_in_chunks(BOUNDARY, &body, 3).unwrap();
        assert_eq!(events[0], part("file", Some("caf\u{fffd}.mp4")));
    }
}
