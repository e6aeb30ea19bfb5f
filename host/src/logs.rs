//! Component stdout/stderr: echoed to the host's stderr and appended to
//! `<state-dir>/logs/<component>_stdout.txt` / `_stderr.txt`, as `spin up` does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

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
        Ok(ComponentOutput { file: Arc::new(file) })
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for ComponentOutput {
    /// Guest output is small and line-oriented; plain blocking appends keep it
    /// ordered and are cheap next to the request itself.
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let _ = std::io::stderr().write_all(buf);
        Poll::Ready((&*self.file).write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
