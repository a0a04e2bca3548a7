//! The plugin's WASI stdout and stderr: captured line by line into the plugin
//! log, never passed to the host's own stdout or stderr.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::capabilities::PluginLog;
use crate::runtime::bindings::log::Level;

/// Longest partial line buffered before it is logged anyway.
const MAX_PENDING: usize = 4096;

/// One of the plugin's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    log: PluginLog,
    source: &'static str,
    pending: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// A stream named `source` (`stdout` or `stderr`) into `log`.
    pub fn new(log: PluginLog, source: &'static str) -> Self {
        Self { log, source, pending: Default::default() }
    }

    fn accept(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for &byte in bytes {
            if byte == b'\n' || pending.len() >= MAX_PENDING {
                let line = String::from_utf8_lossy(&pending).into_owned();
                pending.clear();
                self.log.emit(Level::Info, self.source, &line);
            } else {
                pending.push(byte);
            }
        }
    }

    /// Log what is left without a final newline.
    pub fn finish(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            let line = String::from_utf8_lossy(&pending).into_owned();
            pending.clear();
            drop(pending);
            self.log.emit(Level::Info, self.source, &line);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
