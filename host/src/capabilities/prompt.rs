//! `prompt`: asking the user on the terminal. Questions and messages go to
//! stderr, answers come from stdin (kubectl passes both through in interactive
//! mode); stdout is never touched.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;

use super::{PluginContext, sanitize};
use crate::runtime::bindings::prompt::Host;
use crate::runtime::bindings::types::HostError;

/// Where prompts are shown and answered.
pub trait Terminal: Send + Sync {
    /// Show `message` and read one line.
    ///
    /// # Errors
    ///
    /// I/O errors of the terminal; end of input.
    fn read_line(&self, message: &str) -> io::Result<String>;
    /// Show `message` and read one line without echo.
    ///
    /// # Errors
    ///
    /// I/O errors of the terminal; end of input.
    fn read_secret(&self, message: &str) -> io::Result<String>;
    /// Show `message`.
    ///
    /// # Errors
    ///
    /// I/O errors of the terminal.
    fn show(&self, message: &str) -> io::Result<()>;
}

/// The process's stderr and stdin: what `credbroker get` uses.
#[derive(Debug, Default)]
pub struct StdioTerminal;

fn read_answer() -> io::Result<String> {
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no input (stdin is closed)"));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// Turns terminal echo off on stdin while alive (when stdin is a terminal).
struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled termios;
        // failures (stdin not a terminal) leave the terminal untouched.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut termios) != 0 {
                return Self { saved: None };
            }
            let saved = termios;
            termios.c_lflag &= !libc::ECHO;
            termios.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &termios) != 0 {
                return Self { saved: None };
            }
            Self { saved: Some(saved) }
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restores the attributes read in `new` on the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

impl Terminal for StdioTerminal {
    fn read_line(&self, message: &str) -> io::Result<String> {
        let mut stderr = io::stderr().lock();
        write!(stderr, "{message}")?;
        stderr.flush()?;
        drop(stderr);
        read_answer()
    }

    fn read_secret(&self, message: &str) -> io::Result<String> {
        let mut stderr = io::stderr().lock();
        write!(stderr, "{message}")?;
        stderr.flush()?;
        drop(stderr);
        let _echo = EchoOff::new();
        read_answer()
    }

    fn show(&self, message: &str) -> io::Result<()> {
        let mut stderr = io::stderr().lock();
        writeln!(stderr, "{message}")?;
        stderr.flush()
    }
}

/// No terminal at all: what `credbroker serve` uses.
#[derive(Debug, Default)]
pub struct NoTerminal;

impl Terminal for NoTerminal {
    fn read_line(&self, _: &str) -> io::Result<String> {
        Err(io::Error::other("no terminal"))
    }

    fn read_secret(&self, _: &str) -> io::Result<String> {
        Err(io::Error::other("no terminal"))
    }

    fn show(&self, _: &str) -> io::Result<()> {
        Ok(())
    }
}

/// Make a question end in one space, the way users expect to type after it.
fn as_question(message: &str) -> String {
    let text = sanitize(message.trim_end(), false);
    format!("{text} ")
}

impl PluginContext {
    async fn ask(&mut self, message: String, secret: bool) -> Result<String, HostError> {
        if !self.interactive {
            return Err(HostError::NotInteractive);
        }
        self.check_call_size("prompt message", message.len())?;
        let terminal = Arc::clone(&self.terminal);
        let question = as_question(&message);
        let answer = tokio::task::spawn_blocking(move || {
            if secret { terminal.read_secret(&question) } else { terminal.read_line(&question) }
        })
        .await
        .map_err(|e| HostError::Unreachable(format!("prompt failed: {e}")))?
        .map_err(|e| HostError::Unreachable(format!("cannot read the answer: {e}")))?;
        if secret {
            self.log.mark_secret(&answer);
        }
        Ok(answer)
    }
}

impl Host for PluginContext {
    async fn text(&mut self, message: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.ask(message, false).await)
    }

    async fn secret(&mut self, message: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.ask(message, true).await)
    }

    async fn show(&mut self, message: String) -> wasmtime::Result<Result<(), HostError>> {
        if let Err(e) = self.check_call_size("message", message.len()) {
            return Ok(Err(e));
        }
        let text = sanitize(&self.log.redact(&message), true);
        let framed = frame(&self.plugin, &text, io::stderr().is_terminal());
        Ok(self
            .terminal
            .show(&framed)
            .map_err(|e| HostError::Unreachable(format!("cannot write to the terminal: {e}"))))
    }
}
/// A plugin's message to the user, framed so it stands out among kubectl's
/// and the plugin's log lines (a device code must not be missed), with the
/// plugin named so nobody mistakes it for kubectl's own words. `text` has
/// been sanitised: no control characters a plugin could use to fake output.
fn frame(plugin: &str, text: &str, ansi: bool) -> String {
    let (bold, reset) = if ansi { ("\x1b[1m", "\x1b[0m") } else { ("", "") };
    let plugin = plugin.rsplit('/').next().unwrap_or(plugin);
    let title = format!("\u{250c}\u{2500} credbroker: message from plugin `{plugin}` ");
    let title_width = title.chars().count();
    let width = text.lines().map(|l| l.chars().count() + 2).max().unwrap_or(0).max(title_width + 8).min(100);
    let mut out = format!("{bold}{title}{}{reset}\n", "\u{2500}".repeat(width.saturating_sub(title_width)));
    for line in text.trim_matches('\n').lines() {
        out.push_str(&format!("{bold}\u{2502}{reset} {line}\n"));
    }
    out.push_str(&format!("{bold}\u{2514}{}{reset}", "\u{2500}".repeat(width.saturating_sub(1))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_and_name_the_plugin() {
        let framed = frame("/plugins/oidc.wasm", "\n  To log in, open\n\n      https://idp/device\n", false);
        let lines: Vec<&str> = framed.lines().collect();
        assert!(
            lines[0].starts_with("\u{250c}\u{2500} credbroker: message from plugin `oidc.wasm` \u{2500}"),
            "{framed}"
        );
        assert_eq!(lines[1], "\u{2502}   To log in, open");
        assert_eq!(lines[3], "\u{2502}       https://idp/device");
        assert!(lines.last().unwrap().starts_with('\u{2514}'));
        assert!(!framed.contains('\x1b'));
        assert!(frame("p", "x", true).starts_with("\x1b[1m"));
    }
}
