//! Following a job: how long a status request waits for the job to change (`?wait=`),
//! from which event an event stream resumes (`Last-Event-ID`), and the events as the
//! client sees them. The rules for the values are the runner's (`spinmesh_jobs`);
//! checked here too so a bad value is the client's 400, not a failed call to the runner.

use spinmesh_api::{ApiError, query_value};
use spinmesh_jobs::{MAX_WAIT_SECS, parse_event_id, parse_wait};
use spinmesh_media::job::{JobView, RunnerJob};

/// Longest line of the runner's event stream held while it arrives: a job's JSON is
/// far shorter.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// The `wait` of a status request's query: seconds to wait for a change, if asked.
pub fn wait_secs(query: &str) -> Result<Option<u64>, ApiError> {
    query_value(query, "wait")
        .map(|value| {
            parse_wait(value).ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "wait must be a whole number of seconds from 1 to {MAX_WAIT_SECS}"
                ))
            })
        })
        .transpose()
}

/// The event id a reconnecting event-stream client has seen up to; empty means none.
pub fn last_event_id(header: Option<&str>) -> Result<Option<u64>, ApiError> {
    match header.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => parse_event_id(value)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_request("Last-Event-ID is not an event id")),
    }
}

/// Rewrites the runner's event stream line by line as it passes: each event's data, the
/// runner's job JSON, becomes the job as its owner sees it ([`JobView`], as from
/// `GET /api/jobs/:id`); ids, event names and comments pass as they are. Only an
/// unfinished line is held back.
#[derive(Default)]
pub struct EventTranslator {
    pending: Vec<u8>,
}

impl EventTranslator {
    /// The client's bytes for the runner's next `chunk`; an error when the stream is not
    /// the runner's events.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + end];
            translate_line(line, &mut out)?;
            start += end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_EVENT_LINE {
            return Err("an event line is too long");
        }
        Ok(out)
    }
}

fn translate_line(line: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    match line.strip_prefix(b"data: ") {
        Some(data) => {
            let job: RunnerJob =
                serde_json::from_slice(data).map_err(|_| "an event's data is not a job")?;
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut *out, &JobView::from(job))
                .map_err(|_| "cannot write an event's data")?;
        }
        None => out.extend_from_slice(line),
    }
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"id":"job_3f2c0000000000000000000000000001","owner":"42","status":"running","progress":37,"filename":"clip.mp3","source_filename":"clip.mp4","size_bytes":11,"output_bytes":null,"created_at":"2026-05-01T12:00:00Z","started_at":"2026-05-01T12:00:00Z","completed_at":null,"error":null,"attempts":1,"expired":false}"#;

    #[test]
    fn events_pass_with_the_job_as_its_owner_sees_it_however_they_are_cut() {
        let stream =
            format!("retry: 1000\n\nid: 7\nevent: progress\ndata: {JOB}\n\n: keep-alive\n\n");
        let view = r#"{"job_id":"job_3f2c0000000000000000000000000001","status":"running","progress":37,"filename":"clip.mp3","created_at":"2026-05-01T12:00:00Z","completed_at":null}"#;
        let expected =
            format!("retry: 1000\n\nid: 7\nevent: progress\ndata: {view}\n\n: keep-alive\n\n");
        for cut in [1, 2, 5, 64, stream.len()] {
            let mut translator = EventTranslator::default();
            let mut out = Vec::new();
            for chunk in stream.as_bytes().chunks(cut) {
                out.extend(translator.push(chunk).unwrap());
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {cut}");
        }
    }

    #[test]
    fn what_is_not_the_runners_events_is_refused() {
        let mut translator = EventTranslator::default();
        assert!(translator.push(b"data: {\"not\":\"a job\"}\n").is_err());
        let mut translator = EventTranslator::default();
        assert!(translator.push(&vec![b'x'; MAX_EVENT_LINE + 1]).is_err());
    }

    #[test]
    fn wait_comes_from_the_query_and_is_bounded() {
        assert_eq!(wait_secs("").unwrap(), None);
        assert_eq!(wait_secs("x=1").unwrap(), None);
        assert_eq!(wait_secs("wait=30").unwrap(), Some(30));
        assert_eq!(wait_secs("a=b&wait=5&wait=99").unwrap(), Some(5));
        for bad in ["wait=0", "wait=31", "wait=", "wait", "wait=1s"] {
            let error = wait_secs(bad).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (400, "invalid_request"),
                "{bad}"
            );
        }
    }

    #[test]
    fn last_event_id_is_a_number_or_nothing() {
        assert_eq!(last_event_id(None).unwrap(), None);
        assert_eq!(last_event_id(Some(" ")).unwrap(), None);
        assert_eq!(last_event_id(Some("42")).unwrap(), Some(42));
        assert_eq!(last_event_id(Some("latest")).unwrap_err().status, 400);
    }
}
