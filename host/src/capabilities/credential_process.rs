//! `credential-process`: run a credential helper the operator named, as the
//! AWS CLI runs a profile's `credential_process`, and hand the plugin what it
//! printed.
//!
//! What runs is the operator's choice, never the plugin's (as for
//! `browser-command`): `grants.credential-process` lists whole command lines,
//! and the host runs the one the plugin asks for only when it equals a granted
//! one exactly. It is split into words as the AWS CLI splits it on POSIX
//! (Python's `shlex.split`: quotes and backslashes, no comments, nothing
//! expanded) and started without a shell, in credbroker's own environment and
//! working directory, with standard input empty so it cannot read what the
//! user types to kubectl or credbroker.
//!
//! Its standard output is the call's result, at most `max-call-bytes` of it;
//! its standard error goes to the plugin's log, sanitized, within `log-bytes`;
//! what the host keeps of both meanwhile is charged to the run's memory.
//! It runs in a process group of its own, which is killed when it prints too
//! much, runs past `network-timeout-ms` or the run's deadline, or the call is
//! cancelled; the child is always reaped. Waiting for it is not charged to
//! the plugin's CPU time (the call's future is idle meanwhile).

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::credential_process::{Host, add_to_linker};
use crate::bindings::log::Level;
use crate::bindings::types::HostError;
use crate::boundary::memory::{Held, MemoryAccount};
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};
use crate::limits::LimitExceeded;

/// The grant that lists the command lines.
const GRANT_KEY: &str = "credential-process";
/// Bytes of the end of standard error quoted in the error of a failed run.
const STDERR_TAIL: usize = 1024;
/// The log's `source` of the helper's standard error lines.
const LOG_SOURCE: &str = "credential-process";
/// Most helpers one run may have the host start: the AWS chain runs one per
/// profile it visits; more is a plugin hammering the user's helper.
pub const MAX_RUNS: usize = 16;

/// The `credential-process` capability.
pub struct CredentialProcess;

/// The command lines the operator granted, each with its words.
#[derive(Debug, Default)]
pub struct ProcessPolicy {
    granted: Vec<(String, Vec<String>)>,
}

/// Why a command line cannot be split into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote is opened and never closed.
    #[error("a quotation is not closed")]
    NoClosingQuotation,
    /// It ends with a backslash that escapes nothing.
    #[error("it ends with a backslash that escapes nothing")]
    NoEscapedCharacter,
}

/// `line` split into words as Python's `shlex.split` does in POSIX mode (the
/// AWS CLI's `compat_shell_split` on Linux and macOS): words are separated by
/// spaces, tabs and newlines; single quotes keep everything literally; double
/// quotes keep everything but `\"` and `\\`; a backslash outside quotes keeps
/// the next character; `''` is an empty word; `#` is an ordinary character
/// (the `shlex` crate takes it as a comment, which the AWS CLI does not).
///
/// # Errors
///
/// [`SplitError`] for an unclosed quote or a trailing backslash, as Python
/// raises.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                word.push(chars.next().ok_or(SplitError::NoEscapedCharacter)?);
                in_word = true;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or(SplitError::NoClosingQuotation)? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or(SplitError::NoClosingQuotation)? {
                        '"' => break,
                        '\\' => match chars.next().ok_or(SplitError::NoEscapedCharacter)? {
                            escaped @ ('"' | '\\') => word.push(escaped),
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

impl ProcessPolicy {
    /// Check the granted command lines: each must split into words, the
    /// first naming a program, with no NUL character.
    ///
    /// # Errors
    ///
    /// [`GrantError::Invalid`] naming the command line and what is wrong.
    pub fn new(lines: Vec<String>) -> Result<Self, GrantError> {
        let mut granted = Vec::with_capacity(lines.len());
        for line in lines {
            let invalid = |why: String| GrantError::Invalid {
                key: GRANT_KEY,
                message: format!("`{}`: {why}", crate::boundary::text::name(&line)),
            };
            if line.contains('\0') {
                return Err(invalid("it holds a NUL character".into()));
            }
            let words = split(&line).map_err(|e| invalid(e.to_string()))?;
            match words.first() {
                None => return Err(invalid("it names no program".into())),
                Some(program) if program.is_empty() => return Err(invalid("the program is empty".into())),
                Some(_) => {}
            }
            granted.push((line, words));
        }
        Ok(Self { granted })
    }

    /// The words of `line` when it is granted, exactly as written.
    fn words(&self, line: &str) -> Option<&[String]> {
        self.granted.iter().find(|(granted, _)| granted == line).map(|(_, words)| words.as_slice())
    }
}

impl Capability for CredentialProcess {
    const INTERFACE: &'static str = "credential-process";
    const WHAT: &'static str = "have the host run a credential helper the operator named (its output returned)";
    const GRANT: &'static str = "grants.credential-process: exact command lines";
    type Policy = ProcessPolicy;
    type State = ProcessRuns;

    fn configure(grants: &mut GrantTable, _: &PluginSetup) -> Result<ProcessPolicy, GrantError> {
        ProcessPolicy::new(grants.take(GRANT_KEY)?)
    }

    fn prepare(policy: &Arc<ProcessPolicy>) -> ProcessRuns {
        ProcessRuns { policy: Arc::clone(policy), started: 0 }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// A run's credential helpers.
pub struct ProcessRuns {
    policy: Arc<ProcessPolicy>,
    /// How many the host started for this run.
    started: usize,
}

/// Kills the helper and what it started when dropped: on every way out of a
/// run but a clean exit, including the call being cancelled at the run's
/// deadline. On Unix the helper leads its own process group, which is
/// signalled; on Windows it is put in a job object, which is terminated.
#[cfg(unix)]
struct TreeKiller(Option<i32>);

#[cfg(unix)]
impl TreeKiller {
    /// The helper's process group (it was spawned as its leader).
    fn new(child: &tokio::process::Child) -> Self {
        Self(child.id().and_then(|pid| i32::try_from(pid).ok()))
    }

    /// Forget the group: the helper was reaped, so its id is free for reuse
    /// and must not be signalled.
    fn release(&mut self) {
        self.0 = None;
    }

    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the process group
            // the child leads; it is called only while the child is not yet
            // reaped, so the group id cannot have been reused.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

#[cfg(windows)]
struct TreeKiller {
    /// The job object's handle (as an integer, so the future stays `Send`).
    job: Option<isize>,
    kill_on_drop: bool,
}

#[cfg(windows)]
impl TreeKiller {
    /// A job object holding the helper; processes it starts join it. (One
    /// started before the helper is assigned escapes: Windows has no way to
    /// spawn into a job without suspending the helper's first thread.)
    fn new(child: &tokio::process::Child) -> Self {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::JobObjects::{AssignProcessToJobObject, CreateJobObjectW};
        let Some(process) = child.raw_handle() else { return Self { job: None, kill_on_drop: false } };
        // SAFETY: an anonymous job with default security; the child's
        // process handle is open while `child` lives.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                return Self { job: None, kill_on_drop: false };
            }
            if AssignProcessToJobObject(job, process.cast()) == 0 {
                CloseHandle(job);
                return Self { job: None, kill_on_drop: false };
            }
            Self { job: Some(job as isize), kill_on_drop: true }
        }
    }

    /// The helper exited cleanly: what it left running is left alone, as on Unix.
    fn release(&mut self) {
        self.kill_on_drop = false;
    }

    fn kill(&mut self) {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::JobObjects::TerminateJobObject;
        if let Some(job) = self.job.take() {
            // SAFETY: the job handle made in `new`, closed once.
            unsafe {
                if self.kill_on_drop {
                    TerminateJobObject(job as _, 1);
                }
                CloseHandle(job as _);
            }
        }
    }
}

impl Drop for TreeKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why reading the helper's output stopped early.
enum Stop {
    /// More standard output than the call may return.
    TooMuch,
    /// The run's memory cannot hold what it printed.
    Memory(LimitExceeded),
}

/// Read `pipe` to its end, failing once it holds more than `limit` bytes;
/// what is read is charged to the run's `memory`.
async fn read_bounded(
    mut pipe: impl AsyncRead + Unpin,
    limit: usize,
    memory: &MemoryAccount,
) -> Result<(Vec<u8>, Held), Stop> {
    let mut out = Vec::new();
    let mut held = memory.hold(0).map_err(Stop::Memory)?;
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok((out, held)),
            Ok(read) => {
                if out.len() + read > limit {
                    return Err(Stop::TooMuch);
                }
                out.extend_from_slice(&buffer[..read]);
                held.resize(out.capacity()).map_err(Stop::Memory)?;
            }
        }
    }
}

/// What standard error said: its first bytes (as many as the log takes),
/// the last [`STDERR_TAIL`] bytes, and how many there were.
struct Stderr {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: usize,
    /// The memory `head` and `tail` take, charged to the run.
    held: Held,
}

/// Read standard error to its end into `stderr`, keeping its first `keep`
/// bytes (what the log can take) and its tail, and dropping the rest so a
/// chatty helper never blocks on a full pipe.
async fn drain_stderr(mut pipe: impl AsyncRead + Unpin, keep: usize, stderr: &mut Stderr) -> Result<(), Stop> {
    let mut buffer = [0u8; 8192];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        let chunk = &buffer[..read];
        stderr.total += read;
        let room = keep.saturating_sub(stderr.head.len());
        stderr.head.extend_from_slice(&chunk[..room.min(read)]);
        stderr.tail.extend_from_slice(chunk);
        if stderr.tail.len() > STDERR_TAIL {
            stderr.tail.drain(..stderr.tail.len() - STDERR_TAIL);
        }
        stderr.held.resize(stderr.head.capacity() + stderr.tail.capacity()).map_err(Stop::Memory)?;
    }
    Ok(())
}

impl Stderr {
    /// Write what standard error said into the plugin's log, line by line
    /// (the output channel redacts, escapes and charges each one).
    fn log(&self, boundary: &Boundary, program: &str) {
        let text = String::from_utf8_lossy(&self.head);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            boundary.output().log(Level::Info, LOG_SOURCE, &format!("{program}: {line}"));
        }
        if self.total > self.head.len() {
            boundary.output().log(
                Level::Info,
                LOG_SOURCE,
                &format!("{program}: [{} more bytes of standard error dropped]", self.total - self.head.len()),
            );
        }
    }

    /// The end of standard error, for an error message (sanitized).
    fn tail(&self, boundary: &Boundary) -> String {
        let text = String::from_utf8_lossy(&self.tail);
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let cut = if self.total > self.tail.len() { "…" } else { "" };
        format!(": {cut}{}", boundary.output().clean(text))
    }
}

/// How a run of the helper ended before its output is judged.
enum Ended {
    /// It exited (its output, and the memory it takes).
    Exited(Vec<u8>, Held, ExitStatus),
    /// Its output was cut short.
    Stopped(Stop),
    /// It ran past the deadline.
    TimedOut,
    /// Waiting for it failed.
    Failed(std::io::Error),
}

/// The child's pipes and what may come through them.
struct Pipes<O, E> {
    stdout: O,
    stderr: E,
    /// Most bytes of standard output.
    limit: usize,
    /// Bytes of standard error kept for the log.
    keep: usize,
}

/// Wait for the child: both its pipes to their end (at most `limit` bytes of
/// standard output), then its exit, within `deadline`. The child is reaped
/// only when it [`Ended::Exited`].
async fn finish(
    child: &mut Child,
    pipes: Pipes<impl AsyncRead + Unpin, impl AsyncRead + Unpin>,
    deadline: Duration,
    memory: &MemoryAccount,
    stderr: &mut Stderr,
) -> Ended {
    let work = async {
        let read = tokio::try_join!(
            read_bounded(pipes.stdout, pipes.limit, memory),
            drain_stderr(pipes.stderr, pipes.keep, stderr)
        );
        let ((output, held), ()) = match read {
            Ok(read) => read,
            Err(stop) => return Ended::Stopped(stop),
        };
        match child.wait().await {
            Ok(status) => Ended::Exited(output, held, status),
            Err(e) => Ended::Failed(e),
        }
    };
    tokio::time::timeout(deadline, work).await.unwrap_or(Ended::TimedOut)
}

/// Run `words` (the granted `line`) for the plugin of `boundary` (see the
/// module).
async fn run(boundary: &Boundary, line: &str, words: &[String]) -> Result<Vec<u8>, HostError> {
    let (program, arguments) = words.split_first().ok_or_else(|| HostError::Invalid("no program".into()))?;
    let shown = boundary.output().clean(program);
    let deadline = boundary.network_timeout().min(boundary.time_left());
    let mut command = Command::new(program);
    command.args(arguments).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // Its own process group, so everything it starts can be killed with it.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|e| {
        HostError::Unreachable(format!("cannot run the credential process `{}`: {e}", boundary.output().clean(line)))
    })?;
    // Declared after the child, so dropped (the group killed) before it,
    // also when the call is cancelled at the run's deadline.
    let mut tree = TreeKiller::new(&child);
    let (Some(stdout), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(HostError::Unreachable("the credential process has no pipes".into()));
    };
    let pipes = Pipes {
        stdout,
        stderr: stderr_pipe,
        limit: boundary.max_call_bytes().saturating_sub(Vec::<u8>::new().wire_size()),
        keep: usize::try_from(boundary.limits().log_bytes).unwrap_or(usize::MAX),
    };
    let mut stderr = Stderr {
        head: Vec::new(),
        tail: Vec::new(),
        total: 0,
        held: boundary.memory().hold(0).map_err(|e| HostError::Invalid(e.to_string()))?,
    };
    let ended = finish(&mut child, pipes, deadline, boundary.memory(), &mut stderr).await;
    if matches!(ended, Ended::Exited(..)) {
        tree.release();
    } else {
        // Its tree first, while the child is unreaped; then the child is
        // reaped, so no zombie is left.
        tree.kill();
        let _ = child.kill().await;
    }
    stderr.log(boundary, &shown);
    match ended {
        Ended::Exited(output, _held, status) if status.success() => Ok(output),
        Ended::Exited(_, _, status) => Err(HostError::Unreachable(format!(
            "the credential process `{shown}` failed ({status}){}",
            stderr.tail(boundary)
        ))),
        Ended::Stopped(Stop::Memory(e)) => {
            Err(HostError::Invalid(format!("the credential process `{shown}` {e}; it was stopped")))
        }
        Ended::Stopped(Stop::TooMuch) => Err(HostError::Invalid(format!(
            "the credential process `{shown}` printed more than the per-call limit (max-call-bytes) of {} bytes; \
             it was stopped",
            boundary.limits().max_call_bytes
        ))),
        Ended::TimedOut => Err(HostError::Timeout(format!(
            "the credential process `{shown}` did not finish within {} ms (network-timeout-ms, or what was left \
             of the run's timeout-ms); it was stopped",
            deadline.as_millis()
        ))),
        Ended::Failed(e) => Err(HostError::Unreachable(format!("waiting for the credential process `{shown}`: {e}"))),
    }
}

impl Host for CapView<'_, ProcessRuns> {
    async fn run(&mut self, command_line: String) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        self.call("credential-process.run", command_line.wire_size(), async |runs, boundary| {
            let Some(words) = runs.policy.words(&command_line) else {
                return Ok(Err(HostError::Denied(format!(
                    "the credential process `{}` is not granted to this plugin: add the command line, exactly as \
                     written, to grants.credential-process",
                    boundary.output().clean(&command_line)
                ))));
            };
            if runs.started == MAX_RUNS {
                return Ok(Err(HostError::Invalid(format!(
                    "at most {MAX_RUNS} credential processes per run; this plugin asked for more"
                ))));
            }
            runs.started += 1;
            Ok(run(boundary, &command_line, words).await)
        })
        .await
    }
}

// The helpers these run are shell scripts.
#[cfg(all(test, unix))]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::capabilities::testing::Run;

    /// A script `body` in `dir`, and the grant of its command line
    /// `/bin/sh PATH ARGS`. (Run by the shell rather than executed itself:
    /// a test thread forking while another writes a script would make
    /// executing it fail with ETXTBSY.)
    fn script(dir: &tempfile::TempDir, name: &str, body: &str, args: &str) -> (String, String) {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{body}\n")).unwrap();
        let line = format!("/bin/sh {} {args}", path.display()).trim_end().to_string();
        (line.clone(), format!("credential-process = [{line:?}]"))
    }

    #[test]
    fn command_lines_split_as_the_aws_cli_splits_them() {
        let words = |line: &str| split(line).unwrap();
        assert_eq!(words("aws-vault export --format=json corp"), ["aws-vault", "export", "--format=json", "corp"]);
        assert_eq!(words("  /opt/bin/creds\t--profile  dev\n"), ["/opt/bin/creds", "--profile", "dev"]);
        assert_eq!(words(r#"a 'b c' "d \"e\" \\ \x" f\ g ''"#), ["a", "b c", r#"d "e" \ \x"#, "f g", ""]);
        assert_eq!(
            words("x#y #z $(id) `id` ~ *"),
            ["x#y", "#z", "$(id)", "`id`", "~", "*"],
            "no comments, nothing expanded"
        );
        assert_eq!(words(r#"pre"fix 'mid'"post"#), ["prefix 'mid'post"]);
        assert_eq!(split("a \"b\\"), Err(SplitError::NoEscapedCharacter));
        assert_eq!(split("a 'b"), Err(SplitError::NoClosingQuotation));
        assert_eq!(split("a \"b"), Err(SplitError::NoClosingQuotation));
        assert_eq!(split("a\\"), Err(SplitError::NoEscapedCharacter));
        assert!(words("").is_empty());
    }

    #[test]
    fn grants_must_name_a_program() {
        assert!(ProcessPolicy::new(vec!["aws-vault export --format=json corp".into()]).is_ok());
        for bad in ["", "   ", "''", "a 'b", "a\0b"] {
            let refused = ProcessPolicy::new(vec![bad.into()]).unwrap_err().to_string();
            assert!(refused.starts_with("grants.credential-process: `"), "{bad:?}: {refused}");
        }
    }

    #[tokio::test]
    async fn only_a_granted_command_line_runs_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let body = format!("printf '%s\\n' \"$@\" > {}\nprintf '{{\"Version\": 1}}'", ran.display());
        let (line, grant) = script(&dir, "creds", &body, "--profile 'dev team' $HOME");
        let mut run = Run::builder().grants(&grant).build();
        let mut view = run.view::<CredentialProcess>();
        let output = view.run(line.clone()).await.unwrap().unwrap();
        assert_eq!(output, br#"{"Version": 1}"#);
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "--profile\ndev team\n$HOME\n", "no shell expanded it");
        std::fs::remove_file(&ran).unwrap();

        // Not the same text: refused, and nothing ran.
        for other in [format!("{line} "), line.replace("'dev team'", "\"dev team\""), format!("{line}\x1b[2J")] {
            let denied = view.run(other).await.unwrap().unwrap_err();
            let HostError::Denied(message) = denied else { panic!("{denied:?}") };
            assert!(message.contains("add the command line, exactly as written, to grants.credential-process"));
            assert!(!message.contains('\x1b'), "{message}");
        }
        assert!(!ran.exists(), "a refused command line never runs");
        let mut ungranted = Run::builder().build();
        let denied = ungranted.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        assert!(matches!(denied, HostError::Denied(_)), "{denied:?}");
    }

    #[tokio::test]
    async fn a_run_starts_a_bounded_number_of_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let (line, grant) = script(&dir, "ok", "echo ok", "");
        let mut run = Run::builder().grants(&grant).build();
        let mut view = run.view::<CredentialProcess>();
        for _ in 0..MAX_RUNS {
            assert_eq!(view.run(line.clone()).await.unwrap().unwrap(), b"ok\n");
        }
        let refused = view.run(line).await.unwrap().unwrap_err();
        assert!(
            matches!(&refused, HostError::Invalid(m) if m.contains("at most 16 credential processes per run")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn standard_input_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (line, grant) = script(&dir, "reads", "cat; echo done", "");
        let mut run = Run::builder().grants(&grant).build();
        assert_eq!(run.view::<CredentialProcess>().run(line).await.unwrap().unwrap(), b"done\n");
    }

    #[tokio::test]
    async fn output_over_the_call_limit_stops_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let body = format!("head -c 5000 /dev/zero\nsleep 2\ntouch {}", marker.display());
        let (line, grant) = script(&dir, "chatty", &body, "");
        let mut run = Run::builder().grants(&grant).limits(|l| l.max_call_bytes = 4096).build();
        let started = Instant::now();
        let refused = run.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        let HostError::Invalid(message) = &refused else { panic!("{refused:?}") };
        assert!(message.contains("printed more than the per-call limit (max-call-bytes) of 4096 bytes"), "{message}");
        assert!(started.elapsed() < Duration::from_millis(1500), "stopped at once, not after its sleep");
        std::thread::sleep(Duration::from_secs(3));
        assert!(!marker.exists(), "the process was killed");

        // Exactly at the limit is fine.
        let (line, grant) = script(&dir, "fits", "head -c 4088 /dev/zero", "");
        let mut run = Run::builder().grants(&grant).limits(|l| l.max_call_bytes = 4096).build();
        assert_eq!(run.view::<CredentialProcess>().run(line).await.unwrap().unwrap().len(), 4088);
    }

    #[tokio::test]
    async fn what_it_prints_is_charged_to_the_runs_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (line, grant) = script(&dir, "big", "head -c 3000000 /dev/zero", "");
        let mut run = Run::builder()
            .grants(&grant)
            .limits(|l| {
                l.memory_mib = 1;
                l.max_call_bytes = 8 << 20;
            })
            .build();
        let refused = run.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        assert!(
            matches!(&refused, HostError::Invalid(m) if m.contains("exceeded its memory limit of 1 MiB; it was stopped")),
            "{refused:?}"
        );
        assert_eq!(run.memory.held(), 0, "released with the call");
    }

    /// Whether process `pid` exists (as anything, a zombie included).
    fn exists(pid: &str) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    /// Whether process `pid` runs (exists and is no zombie: an orphaned
    /// grandchild is reaped by init, not by us).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    }

    #[tokio::test]
    async fn the_deadline_kills_the_process_group_and_reaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // A helper that starts a grandchild and both sleep.
        let body = format!("sleep 30 &\necho \"$$ $!\" > {}\nsleep 30", pids.display());
        let (line, grant) = script(&dir, "slow", &body, "");
        let mut run = Run::builder().grants(&grant).limits(|l| l.network_timeout_ms = 300).build();
        let started = Instant::now();
        let timeout = run.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        let HostError::Timeout(message) = &timeout else { panic!("{timeout:?}") };
        assert!(message.contains("did not finish within 300 ms"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let text = std::fs::read_to_string(&pids).unwrap();
        let (shell, grandchild) = text.trim().split_once(' ').unwrap();
        assert!(!exists(shell), "the helper is killed and reaped (no zombie)");
        for _ in 0..50 {
            if !running(grandchild) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(grandchild), "its group is killed too");
    }

    #[tokio::test]
    async fn the_runs_own_deadline_comes_first_when_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let (line, grant) = script(&dir, "slow", "exec sleep 30", "");
        let mut run = Run::builder().grants(&grant).limits(|l| l.timeout_ms = 200).build();
        let started = Instant::now();
        let timeout = run.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        assert!(
            matches!(&timeout, HostError::Timeout(m) if m.contains("or what was left of the run's timeout-ms")),
            "{timeout:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "not the 10 s network timeout: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn waiting_is_not_charged_as_cpu_time() {
        let dir = tempfile::tempdir().unwrap();
        let (line, grant) = script(&dir, "slowish", "sleep 1; echo ok", "");
        // A CPU budget far below the second the helper takes.
        let mut run = Run::builder().grants(&grant).limits(|l| l.cpu_ms = 100).build();
        assert_eq!(run.view::<CredentialProcess>().run(line).await.unwrap().unwrap(), b"ok\n");
        assert!(run.host.boundary().check_time().is_ok(), "the wait did not use up the CPU budget");
    }

    /// Log lines, as a subscriber prints them.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failure_says_why_and_hostile_standard_error_is_sanitized() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let body = "printf 'fine line\\n\\033]0;owned\\007\\033[2J\\rFAKE INFO ok\\n\\342\\200\\256evil\\n' >&2\nprintf '{}'\nexit 3";
        let (line, grant) = script(&dir, "failing", body, "");
        let mut run = Run::builder().grants(&grant).build();
        let error = run.view::<CredentialProcess>().run(line).await.unwrap().unwrap_err();
        let HostError::Unreachable(message) = &error else { panic!("{error:?}") };
        assert!(message.contains("the credential process `/bin/sh` failed (exit status: 3): "), "{message}");
        assert!(message.contains("\\x1b]0;owned\\x07\\x1b[2J\\rFAKE INFO ok\\n\\u{202e}evil"), "{message}");
        assert!(!message.contains('\x1b') && !message.contains('\r') && !message.contains('\u{202e}'), "{message}");
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("/bin/sh: fine line"), "{logged}");
        assert!(logged.contains("\\x1b]0;owned\\x07\\x1b[2J\\rFAKE INFO ok"), "{logged}");
        assert!(!logged.contains('\x1b') && !logged.contains('\r') && !logged.contains('\u{202e}'), "{logged}");

        let missing = "/nonexistent/credential-helper --flag".to_string();
        let mut run = Run::builder().grants(&format!("credential-process = [{missing:?}]")).build();
        let error = run.view::<CredentialProcess>().run(missing).await.unwrap().unwrap_err();
        assert!(
            matches!(&error, HostError::Unreachable(m) if m.contains("cannot run the credential process `/nonexistent/credential-helper --flag`")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn standard_error_is_bounded_by_log_bytes() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        // A megabyte of standard error: drained (the helper does not block),
        // a bounded part logged.
        let (line, grant) = script(&dir, "noisy", "yes 'noise line' | head -c 1000000 >&2; echo ok", "");
        let mut run = Run::builder().grants(&grant).limits(|l| l.log_bytes = 2000).build();
        assert_eq!(run.view::<CredentialProcess>().run(line).await.unwrap().unwrap(), b"ok\n");
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(logged.matches("noise line").count() < 200, "{}", logged.len());
        assert!(logged.len() < 50_000, "{}", logged.len());
    }
}
