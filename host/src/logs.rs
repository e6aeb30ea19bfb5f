//! Component stdout/stderr: echoed to the host's stderr and appended to
//! `<state-dir>/logs/<component>_stdout.txt` / `_stderr.txt`, as `spin up` does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// One component's output stream (stdout or stderr), shared by its instances.
#[derive(Clone, Debug)]
pub struct ComponentOutput {
    file: Arc<File>,
}

impl ComponentOutput {
    pub fn open(logs_dir: &Path, component: &str, stream: &str) -> Result<Self> {
        std::fs::create_dir_all(logs_dir)
            .with_context(|| format!("cannot create log directory {}", logs_dir.display()))?;
        let path = logs_dir.join(format!("{component}_{stream}.txt"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        Ok(ComponentOutput {
            file: Arc::new(file),
        })
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl ComponentOutput {
    /// Writes go to the console and the file at once: these are short log lines,
    /// and two plain writes are far cheaper than a stream task per instance.
    fn write_now(&self, buf: &[u8]) -> std::io::Result<()> {
        let _ = std::io::stderr().write_all(buf);
        (&*self.file).write_all(buf)
    }
}

impl StdoutStream for ComponentOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// The default adapter spawns a task per stream and hands every write to it,
    /// which cost ~70 µs per request once every component logged a line per
    /// request; writing synchronously costs two small syscalls.
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
    /// Guest output is small and line-oriented; plain blocking appends keep it
    /// ordered and are cheap next to the request itself.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_now(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
