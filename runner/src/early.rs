//! Converting while the upload is still arriving.
//!
//! Uploads arrive several times faster than ffmpeg converts them, so waiting for the
//! last byte before starting ffmpeg adds the whole transfer time to every job. When a
//! worker is free and the container can be read front to back, the upload handler starts
//! ffmpeg at once on a pipe, and a feeder copies the spool file into that pipe as it
//! grows. Reading back from the file (rather than teeing the request's chunks) keeps
//! memory flat and never slows the upload down to ffmpeg's pace.
//!
//! This is only a head start: when it cannot finish (the feeder waited too long for the
//! client, ffmpeg disliked the pipe), the job is converted from the stored file as usual.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::store::Leased;

/// Give up sniffing (and convert after the upload) if the container's layout is not
/// known within this many bytes.
pub const SNIFF_LIMIT: usize = 1 << 20;

/// How the start of an upload decides whether ffmpeg can read it from a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Readable front to back: the index (`moov`) comes before the media data, or the
    /// container is AVI.
    Sequential,
    /// ffmpeg needs to seek (`moov` after `mdat`), or the format is not one we know.
    NeedsSeeking,
    /// Not enough bytes yet to tell.
    Unknown,
}

/// Reads the layout from the first bytes of an upload.
///
/// ISO base media files (MP4, MOV) are a sequence of boxes, each starting with a 32-bit
/// size and a 4-byte type; the walk only needs the box headers. AVI keeps its headers
/// first and its optional index last, and ffmpeg reads it sequentially.
pub fn layout(head: &[u8]) -> Layout {
    if head.len() >= 12 {
        if &head[0..4] == b"RIFF" && &head[8..12] == b"AVI " {
            return Layout::Sequential;
        }
        if &head[4..8] != b"ftyp" {
            return Layout::NeedsSeeking;
        }
    }
    let mut offset = 0usize;
    loop {
        let Some(header) = head.get(offset..offset + 8) else {
            return undecided(head);
        };
        let size32 = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
        match &header[4..8] {
            b"moov" => return Layout::Sequential,
            b"mdat" => return Layout::NeedsSeeking,
            _ => {}
        }
        let size = match size32 {
            // The box runs to the end of the file: nothing follows it.
            0 => return Layout::NeedsSeeking,
            1 => match head.get(offset + 8..offset + 16) {
                Some(large) => u64::from_be_bytes(large.try_into().expect("8 bytes")),
                None => return undecided(head),
            },
            n => u64::from(n),
        };
        if size < 8 {
            return Layout::NeedsSeeking;
        }
        match usize::try_from(size)
            .ok()
            .and_then(|s| offset.checked_add(s))
        {
            Some(next) if next < SNIFF_LIMIT => offset = next,
            _ => return Layout::NeedsSeeking,
        }
    }
}

fn undecided(head: &[u8]) -> Layout {
    if head.len() >= SNIFF_LIMIT {
        Layout::NeedsSeeking
    } else {
        Layout::Unknown
    }
}

/// Where an upload stands, published by the upload handler to the conversion that
/// started early. The handler dropping its sender means the upload was abandoned.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// This many bytes are in the spool file so far.
    Receiving { on_disk: u64 },
    /// Every byte is in the spool file; the job is not recorded yet.
    Received { total: u64 },
    /// The job is recorded (as `running`, owned by the early conversion).
    Recorded(Box<Leased>),
}

impl Arrival {
    fn on_disk(&self) -> Option<u64> {
        match self {
            Arrival::Receiving { on_disk } => Some(*on_disk),
            Arrival::Received { total } => Some(*total),
            Arrival::Recorded(leased) => Some(leased.job.size_bytes),
        }
    }

    fn is_complete(&self) -> bool {
        !matches!(self, Arrival::Receiving { .. })
    }
}

/// Why the feeder stopped before giving ffmpeg the whole upload.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the upload was abandoned")]
    Abandoned,
    #[error("waited more than {0:?} in all for the client to send data")]
    Stalled(Duration),
    #[error("ffmpeg stopped reading its input")]
    ReaderGone,
    #[error("cannot read the spool file: {0}")]
    Io(#[from] io::Error),
}

const FEED_CHUNK: usize = 256 << 10;

/// Copies the spool file (opened before the upload handler can rename it) into `sink`
/// as the upload lands, then closes `sink`.
///
/// Waiting for the client counts against `stall_budget`: a slow client must not hold a
/// worker for the whole length of its upload.
pub async fn feed<W>(
    mut file: tokio::fs::File,
    mut arrival: watch::Receiver<Arrival>,
    mut sink: W,
    stall_budget: Duration,
) -> Result<u64, FeedError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FEED_CHUNK];
    let mut sent = 0u64;
    let mut budget = stall_budget;
    loop {
        let state = arrival.borrow_and_update().clone();
        let on_disk = state.on_disk().unwrap_or(0);
        if sent < on_disk {
            let want = usize::try_from(on_disk - sent)
                .unwrap_or(usize::MAX)
                .min(FEED_CHUNK);
            let n = file.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(FeedError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "spool file is shorter than reported",
                )));
            }
            sink.write_all(&buf[..n])
                .await
                .map_err(|_| FeedError::ReaderGone)?;
            sent += n as u64;
            continue;
        }
        if state.is_complete() {
            sink.shutdown().await.map_err(|_| FeedError::ReaderGone)?;
            return Ok(sent);
        }
        let waited = tokio::time::Instant::now();
        match tokio::time::timeout(budget, arrival.changed()).await {
            Ok(Ok(())) => budget = budget.saturating_sub(waited.elapsed()),
            Ok(Err(_)) => return Err(FeedError::Abandoned),
            Err(_) => return Err(FeedError::Stalled(stall_budget)),
        }
    }
}

/// Waits until the upload handler has recorded the job (`Some`) or given up (`None`).
pub async fn recorded(mut arrival: watch::Receiver<Arrival>) -> Option<Leased> {
    let state = arrival
        .wait_for(|a| matches!(a, Arrival::Recorded(_)))
        .await
        .ok()?;
    match &*state {
        Arrival::Recorded(leased) => Some((**leased).clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body_len: usize) -> Vec<u8> {
        let mut b = ((body_len + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(std::iter::repeat_n(0u8, body_len));
        b
    }

    #[test]
    fn moov_before_mdat_is_sequential() {
        let mut file = boxed(b"ftyp", 24);
        file.extend(boxed(b"free", 100));
        file.extend(boxed(b"moov", 5000));
        assert_eq!(layout(&file[..file.len() - 5000]), Layout::Sequential);
    }

    #[test]
    fn mdat_first_needs_seeking() {
        let mut file = boxed(b"ftyp", 24);
        file.extend(boxed(b"free", 0));
        file.extend(boxed(b"mdat", 100));
        assert_eq!(layout(&file), Layout::NeedsSeeking);
    }

    #[test]
    fn large_size_boxes_are_followed() {
        let mut file = boxed(b"ftyp", 24);
        let mut wide = 1u32.to_be_bytes().to_vec();
        wide.extend_from_slice(b"skip");
        wide.extend_from_slice(&40u64.to_be_bytes());
        wide.extend(std::iter::repeat_n(0u8, 24));
        file.extend(wide);
        file.extend(boxed(b"moov", 10));
        assert_eq!(layout(&file), Layout::Sequential);
    }

    #[test]
    fn undecided_until_the_next_header_arrives() {
        let file = boxed(b"ftyp", 24);
        assert_eq!(layout(&file[..6]), Layout::Unknown);
        assert_eq!(layout(&file), Layout::Unknown);
    }

    #[test]
    fn avi_is_sequential_and_other_formats_are_not() {
        assert_eq!(layout(b"RIFF\0\0\0\0AVI LIST"), Layout::Sequential);
        assert_eq!(layout(b"RIFF\0\0\0\0WAVEfmt "), Layout::NeedsSeeking);
        assert_eq!(layout(b"hello, this is text"), Layout::NeedsSeeking);
    }

    #[test]
    fn malformed_sizes_stop_the_walk() {
        let mut file = boxed(b"ftyp", 24);
        file.extend_from_slice(&4u32.to_be_bytes());
        file.extend_from_slice(b"free");
        assert_eq!(layout(&file), Layout::NeedsSeeking);
        let mut to_end = boxed(b"ftyp", 24);
        to_end.extend_from_slice(&0u32.to_be_bytes());
        to_end.extend_from_slice(b"free");
        assert_eq!(layout(&to_end), Layout::NeedsSeeking);
        let mut huge = boxed(b"ftyp", 24);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(b"free");
        assert_eq!(layout(&huge), Layout::NeedsSeeking);
    }

    #[test]
    fn a_head_that_never_decides_gives_up_at_the_limit() {
        let mut file = boxed(b"ftyp", 24);
        while file.len() < SNIFF_LIMIT {
            file.extend(boxed(b"free", 1000));
        }
        assert_eq!(layout(&file), Layout::NeedsSeeking);
    }

    #[tokio::test]
    async fn feeds_the_file_as_it_grows_then_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::write(&path, b"").unwrap();
        let (tx, rx) = watch::channel(Arrival::Receiving { on_disk: 0 });
        let (reader, writer) = tokio::io::duplex(1 << 20);
        let file = tokio::fs::File::open(&path).await.unwrap();
        let feeder = tokio::spawn(feed(file, rx, writer, Duration::from_secs(30)));
        let mut data = Vec::new();
        let mut upload = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for part in [b"first ".as_slice(), b"second ", b"third"] {
            data.extend_from_slice(part);
            std::io::Write::write_all(&mut upload, part).unwrap();
            tx.send_replace(Arrival::Receiving {
                on_disk: data.len() as u64,
            });
            tokio::task::yield_now().await;
        }
        tx.send_replace(Arrival::Received {
            total: data.len() as u64,
        });
        assert_eq!(feeder.await.unwrap().unwrap(), data.len() as u64);
        let mut got = Vec::new();
        let mut reader = reader;
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
    }

    /// A spool file holding the first three bytes of an upload still arriving.
    async fn three_bytes_arrived(
        dir: &tempfile::TempDir,
    ) -> (
        tokio::fs::File,
        watch::Sender<Arrival>,
        watch::Receiver<Arrival>,
    ) {
        let path = dir.path().join("upload");
        std::fs::write(&path, b"abc").unwrap();
        let (tx, rx) = watch::channel(Arrival::Receiving { on_disk: 3 });
        (tokio::fs::File::open(&path).await.unwrap(), tx, rx)
    }

    #[tokio::test]
    async fn an_abandoned_upload_stops_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, tx, rx) = three_bytes_arrived(&dir).await;
        let (_reader, writer) = tokio::io::duplex(64);
        let feeder = tokio::spawn(feed(file, rx, writer, Duration::from_secs(30)));
        tokio::task::yield_now().await;
        drop(tx);
        assert!(matches!(feeder.await.unwrap(), Err(FeedError::Abandoned)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stalls_too_long_loses_the_head_start() {
        let dir = tempfile::tempdir().unwrap();
        let (file, tx, rx) = three_bytes_arrived(&dir).await;
        let (_reader, writer) = tokio::io::duplex(64);
        let result = feed(file, rx, writer, Duration::from_secs(2)).await;
        assert!(matches!(result, Err(FeedError::Stalled(_))), "{result:?}");
        drop(tx);
    }
}
