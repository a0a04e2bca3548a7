//! `prompt`: asking the user on the terminal. Questions and messages go to
//! stderr, answers come from stdin (kubectl passes both through in interactive
//! mode); stdout is never touched.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;

use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::prompt::{Host, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};

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

/// Turns terminal echo off on stdin while alive (when stdin is a terminal):
/// the termios `ECHO` flag on Unix (with `ECHONL`, so the newline still shows).
#[cfg(unix)]
struct EchoOff {
    saved: Option<libc::termios>,
}

#[cfg(unix)]
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

#[cfg(unix)]
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

/// Turns console echo off on stdin while alive (when stdin is a console): the
/// console mode's `ENABLE_ECHO_INPUT` on Windows. The console does not echo
/// the Enter either, so the newline is written to stderr when it is restored.
#[cfg(windows)]
struct EchoOff {
    saved: Option<u32>,
}

#[cfg(windows)]
impl EchoOff {
    fn new() -> Self {
        use windows_sys::Win32::System::Console::{
            ENABLE_ECHO_INPUT, GetConsoleMode, GetStdHandle, STD_INPUT_HANDLE, SetConsoleMode,
        };
        // SAFETY: console calls on this process's stdin handle; failures (stdin
        // not a console) leave it untouched.
        unsafe {
            let input = GetStdHandle(STD_INPUT_HANDLE);
            let mut mode = 0;
            if GetConsoleMode(input, &mut mode) == 0 || SetConsoleMode(input, mode & !ENABLE_ECHO_INPUT) == 0 {
                return Self { saved: None };
            }
            Self { saved: Some(mode) }
        }
    }
}

#[cfg(windows)]
impl Drop for EchoOff {
    fn drop(&mut self) {
        use windows_sys::Win32::System::Console::{GetStdHandle, STD_INPUT_HANDLE, SetConsoleMode};
        if let Some(saved) = self.saved {
            // SAFETY: restores the mode read in `new` on the same handle.
            unsafe {
                SetConsoleMode(GetStdHandle(STD_INPUT_HANDLE), saved);
            }
            let _ = writeln!(io::stderr());
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

/// The `prompt` capability.
pub struct Prompt;

impl Capability for Prompt {
    const INTERFACE: &'static str = "prompt";
    const WHAT: &'static str = "ask the user on the terminal";
    const GRANT: &'static str = "works only when the run is interactive";
    type Policy = Arc<dyn Terminal>;
    type State = Prompting;

    fn configure(_: &mut GrantTable, plugin: &PluginSetup) -> Result<Self::Policy, GrantError> {
        Ok(Arc::clone(&plugin.terminal))
    }

    fn prepare(policy: &Arc<Self::Policy>) -> Prompting {
        Prompting { terminal: Arc::clone(policy) }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// A run's terminal.
pub struct Prompting {
    terminal: Arc<dyn Terminal>,
}

/// Longest answer read from the terminal.
const MAX_ANSWER: usize = 64 * 1024;

/// A question as the terminal shows it: attributed to the plugin (so a
/// plugin cannot pose as `sudo` or kubectl), sanitized, ending in one space.
fn question(plugin: &str, text: &str, secret: bool) -> String {
    let plugin = plugin.rsplit('/').next().unwrap_or(plugin);
    let kind = if secret { " (hidden input)" } else { "" };
    let text = text.trim_end().replace('\n', " ");
    format!("[credbroker: plugin `{plugin}` asks{kind}] {text} ")
}

impl Prompting {
    async fn ask(&self, boundary: &Boundary, message: String, secret: bool) -> Result<String, HostError> {
        if !boundary.interactive() {
            return Err(HostError::NotInteractive);
        }
        let Some(shown) = boundary.output().for_terminal(&message) else {
            return Err(HostError::Invalid("the plugin's output budget (log-bytes) is spent".into()));
        };
        let question = question(boundary.plugin(), &shown, secret);
        let terminal = Arc::clone(&self.terminal);
        // Waiting for the user is waiting: off the async workers, on a thread
        // of its own and not the runtime's blocking pool, whose shutdown
        // would wait for a read nobody answers (the user walked away) and
        // keep the process alive past the run's time limit.
        let (answered, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("credbroker-prompt".into())
            .spawn(move || {
                let read = if secret { terminal.read_secret(&question) } else { terminal.read_line(&question) };
                let _ = answered.send(read);
            })
            .map_err(|e| HostError::Unreachable(format!("prompt failed: {e}")))?;
        let answer = match tokio::time::timeout(boundary.time_left(), answer).await {
            Err(_) => return Err(HostError::Timeout("nobody answered the question in time".into())),
            Ok(Err(_)) => return Err(HostError::Unreachable("prompt failed: the terminal reader stopped".into())),
            Ok(Ok(read)) => read.map_err(|e| HostError::Unreachable(format!("cannot read the answer: {e}")))?,
        };
        if answer.len() > MAX_ANSWER {
            return Err(HostError::Invalid(format!("the answer is longer than {MAX_ANSWER} bytes")));
        }
        if secret && let Err(e) = boundary.output().mark_secret(&answer) {
            return Err(HostError::Invalid(format!("the answer cannot be kept secret: {e}")));
        }
        Ok(answer)
    }

    fn show(&self, boundary: &Boundary, message: &str) -> Result<(), HostError> {
        // Over the output budget, messages are dropped like log lines.
        let Some(text) = boundary.output().for_terminal(message) else { return Ok(()) };
        let framed = frame(boundary.plugin(), &text, io::stderr().is_terminal());
        self.terminal.show(&framed).map_err(|e| HostError::Unreachable(format!("cannot write to the terminal: {e}")))
    }
}

impl Host for CapView<'_, Prompting> {
    async fn text(&mut self, message: String) -> wasmtime::Result<Result<String, HostError>> {
        self.call("prompt.text", message.wire_size(), async |prompt, boundary| {
            Ok(prompt.ask(boundary, message, false).await)
        })
        .await
    }

    async fn secret(&mut self, message: String) -> wasmtime::Result<Result<String, HostError>> {
        self.call("prompt.secret", message.wire_size(), async |prompt, boundary| {
            Ok(prompt.ask(boundary, message, true).await)
        })
        .await
    }

    async fn show(&mut self, message: String) -> wasmtime::Result<Result<(), HostError>> {
        self.call("prompt.show", message.wire_size(), async |prompt, boundary| Ok(prompt.show(boundary, &message)))
            .await
    }
}
/// A plugin's message to the user, framed so it stands out among kubectl's
/// and the plugin's log lines (a device code must not be missed), with the
/// plugin named so nobody mistakes it for kubectl's own words. `text` has
/// been sanitised: no control characters a plugin could use to fake output.
pub(crate) fn frame(plugin: &str, text: &str, ansi: bool) -> String {
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
    use crate::capabilities::testing::Run;

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

    /// A terminal that records what it shows and answers from a script.
    #[derive(Default)]
    struct Scripted {
        shown: std::sync::Mutex<Vec<String>>,
        answer: String,
    }

    impl Terminal for Scripted {
        fn read_line(&self, message: &str) -> io::Result<String> {
            self.shown.lock().unwrap().push(message.to_string());
            Ok(self.answer.clone())
        }
        fn read_secret(&self, message: &str) -> io::Result<String> {
            self.read_line(message)
        }
        fn show(&self, message: &str) -> io::Result<()> {
            self.shown.lock().unwrap().push(message.to_string());
            Ok(())
        }
    }

    #[tokio::test]
    async fn prompts_are_attributed_sanitized_and_answers_secret() {
        let terminal = Arc::new(Scripted { answer: "hunter2".into(), ..Scripted::default() });
        let mut run = Run::builder().terminal(terminal.clone()).interactive(true).build();
        let mut view = run.view::<Prompt>();
        let answer = view.secret("[sudo] password for root:\x1b[8m".into()).await.unwrap().unwrap();
        assert_eq!(answer, "hunter2");
        let shown = terminal.shown.lock().unwrap().clone();
        assert_eq!(
            shown[0],
            "[credbroker: plugin `test-plugin` asks (hidden input)] [sudo] password for root:\\x1b[8m "
        );
        assert_eq!(view.boundary.output().clean("pw hunter2"), "pw [REDACTED]");
        view.show("line\r\x1b]0;title\x07".into()).await.unwrap().unwrap();
        let framed = terminal.shown.lock().unwrap()[1].clone();
        assert!(framed.contains("line\\r\\x1b]0;title\\x07"), "{framed}");
        assert!(!framed.contains('\x1b'));
    }

    #[tokio::test]
    async fn prompts_need_an_interactive_run_and_count_against_the_output_budget() {
        let terminal = Arc::new(Scripted::default());
        let mut run = Run::builder().terminal(terminal.clone()).build();
        assert!(matches!(run.view::<Prompt>().text("Name?".into()).await.unwrap(), Err(HostError::NotInteractive)));
        let mut run = Run::builder().terminal(terminal.clone()).limits(|l| l.log_bytes = 64).build();
        let mut view = run.view::<Prompt>();
        view.show("m".repeat(50)).await.unwrap().unwrap();
        view.show("m".repeat(50)).await.unwrap().unwrap();
        assert_eq!(terminal.shown.lock().unwrap().len(), 1, "the second message is over log-bytes");
    }
}
