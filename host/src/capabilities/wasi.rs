//! The WASI imports a plugin gets: nothing ambient. No preopened
//! directories, arguments, stdin, sockets or name lookups, and an environment
//! holding only the variables `grants.env` names ([`super::env`]); clocks and
//! randomness, and randomness bounded by `max-call-bytes`.
//! Its stdout and stderr are captured line by line into its log (the run's
//! output channel), never the host's own stdout, the channel kubectl reads
//! the credential from.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::HostState;
use crate::bindings::log::Level;
use crate::boundary::Boundary;
use crate::boundary::output::{MAX_LINE, PluginOutput};

/// Most WASI resources (streams, pollables) a run may hold at once.
pub const MAX_WASI_RESOURCES: usize = 4096;

/// The WASI context of one run, whose environment is `environment`.
pub fn context(boundary: &Boundary, environment: &[(String, String)]) -> WasiCtx {
    let output = boundary.output().clone();
    WasiCtxBuilder::new()
        .envs(environment)
        .stdout(GuestOutput::new(output.clone(), "stdout"))
        .stderr(GuestOutput::new(output, "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // wasmtime-wasi's default is 64 MiB per call, generated on the host.
        .max_random_size(boundary.limits().max_call_bytes)
        .build()
}

/// Add WASI (p2) to `linker`.
///
/// # Errors
///
/// When wasmtime refuses a definition (a bug).
pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

/// What is buffered of the current line.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The current line was too long: what is left of it until the next
    /// newline is dropped.
    dropping: bool,
}

/// One of the plugin's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    output: PluginOutput,
    source: &'static str,
    pending: Arc<Mutex<Pending>>,
}

impl GuestOutput {
    /// A stream named `source` (`stdout` or `stderr`) into `output`.
    pub fn new(output: PluginOutput, source: &'static str) -> Self {
        Self { output, source, pending: Arc::default() }
    }

    fn emit(&self, line: &[u8]) {
        self.output.log(Level::Info, self.source, &String::from_utf8_lossy(line));
    }

    fn accept(&self, bytes: &[u8]) {
        // A line longer than the log keeps is cut, but only after it holds
        // every secret that starts in the part that is kept, so redaction
        // sees each of them whole; the rest of the line is dropped unseen.
        let keep = MAX_LINE + self.output.longest_secret();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for &byte in bytes {
            if byte == b'\n' {
                if !pending.dropping {
                    let line = std::mem::take(&mut pending.bytes);
                    self.emit(&line);
                }
                pending.dropping = false;
                continue;
            }
            if pending.dropping {
                continue;
            }
            pending.bytes.push(byte);
            if pending.bytes.len() >= keep {
                let line = std::mem::take(&mut pending.bytes);
                self.emit(&line);
                pending.dropping = true;
            }
        }
    }

    /// Log what is left without a final newline.
    pub fn finish(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.bytes.is_empty() && !pending.dropping {
            let line = std::mem::take(&mut pending.bytes);
            drop(pending);
            self.emit(&line);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::memory::MemoryAccount;
    use crate::boundary::redact::Redactor;
    use crate::limits::Limits;

    #[test]
    fn a_secret_across_a_write_or_line_cut_is_still_redacted() {
        let mut redactor = Redactor::new();
        redactor.add("SECRET-VALUE-123").unwrap();
        let output = PluginOutput::new("p".into(), 1 << 20, redactor, MemoryAccount::new(&Limits::default()));
        let stderr = GuestOutput::new(output.clone(), "stderr");
        // The secret straddles two writes and the 4096-byte cut of the line.
        let mut line = "x".repeat(MAX_LINE - 5).into_bytes();
        line.extend_from_slice(b"SECRET");
        stderr.accept(&line);
        stderr.accept(b"-VALUE-123 and more\nnext line\n");
        let tail = output.stderr_tail();
        assert_eq!(tail.len(), 2, "{tail:?}");
        assert!(!tail[0].contains("SECRET") && !tail[0].contains("VALUE-123"), "{}", &tail[0][MAX_LINE - 20..]);
        assert_eq!(tail[1], "next line");
    }
}
