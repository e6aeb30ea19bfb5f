//! Log output. The host's own log (stderr) and each component's stdout/stderr, which is
//! echoed to the host's stderr and appended to `<state-dir>/logs/<component>_stdout.txt` /
//! `_stderr.txt`, as `spin up` does.
//!
//! Every writer here is [`background`]: a request hands its line to a thread and goes on.
//! Writing in place cost three write calls per request (the access line, and the
//! component's line twice), about 6 % of the host's time on the no-op route.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use tokio::io::AsyncWrite;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// A writer whose writes are done by a thread of its own, in batches (what queued while
/// it wrote goes out in one write). Nothing is dropped: a writer whose queue is full waits.
/// Dropping the guard writes out what is queued, so a clean exit loses no line; keep it
/// for as long as anything may write.
pub fn background(name: &str, writer: impl Write + Send + 'static) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .thread_name(name)
        .finish(Paced(BufWriter::new(writer)))
}

/// How long a background writer rests after writing a batch. Lines that come meanwhile
/// wait in its queue, at most this long, and go out in the next batch.
const WRITER_REST: Duration = Duration::from_millis(5);

/// A writer that rests after each flush. The background thread flushes once it has
/// drained its queue; resting then keeps it from being woken for every line (a futex
/// wake-up and two context switches each, at several lines per request: 8 % of the host's
/// CPU on create order). A busy writer thus wakes at most once per [`WRITER_REST`].
struct Paced<W>(W);

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    /// Rests after a failed flush too: the thread retries with the next batch, not at once.
    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.0.flush();
        std::thread::sleep(WRITER_REST);
        flushed
    }
}

/// The host's stderr, shared by its own log and the components' echoed output.
pub fn console() -> (NonBlocking, WorkerGuard) {
    background("log-console", std::io::stderr())
}

/// One component's output stream (stdout or stderr), shared by its instances.
#[derive(Clone, Debug)]
pub struct ComponentOutput {
    console: NonBlocking,
    file: NonBlocking,
}

impl ComponentOutput {
    /// The stream and the guard of its file's writer (see [`background`]).
    pub fn open(
        logs_dir: &Path,
        component: &str,
        stream: &str,
        console: &NonBlocking,
    ) -> Result<(Self, WorkerGuard)> {
        std::fs::create_dir_all(logs_dir)
            .with_context(|| format!("cannot create log directory {}", logs_dir.display()))?;
        let path = logs_dir.join(format!("{component}_{stream}.txt"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        let (file, guard) = background(&format!("log-{component}-{stream}"), file);
        Ok((
            ComponentOutput {
                console: console.clone(),
                file,
            },
            guard,
        ))
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl ComponentOutput {
    /// Hands the bytes to the console's and the file's writers: short log lines, for
    /// which this is far cheaper than a stream task per instance.
    fn write_now(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let _ = self.console.write_all(buf);
        self.file.write_all(buf)
    }
}

impl StdoutStream for ComponentOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// The default adapter spawns a task per stream and hands every write to it,
    /// which cost ~70 µs per request once every component logged a line per
    /// request; handing the bytes over in place costs two channel sends.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for ComponentOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_now(&bytes)
            .map_err(|error| StreamError::LastOperationFailed(error.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for ComponentOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for ComponentOutput {
    /// Guest output is small and line-oriented; handing it over in place keeps it
    /// ordered and is cheap next to the request itself.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().write_now(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
