//! What every test needs: an isolated user environment to run `credbroker` in,
//! plugins built from source, and small servers on loopback.

pub mod apiserver;
pub mod audit;
pub mod keyring;
pub mod kubectl;
pub mod ldap_flood;
pub mod oidc;
pub mod pki;
pub mod registry;
pub mod slapd;
pub mod sts;
pub mod terminal;
pub mod webhook;
pub mod wine;
pub mod wine_stub;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

/// Every file under `dir` whose content holds `needle`: where a secret
/// must not be, it is searched for with this.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|file| std::fs::read(file).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .map(|file| file.display().to_string())
        .collect()
}

/// The `credbroker` binary under test.
pub fn credbroker_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_credbroker"))
}

/// Where plugins are built (shared with the host's build script).
pub fn plugin_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
        .join("plugin-build")
}

/// The component of test plugin `name` (`tests/plugins/NAME`), built once per
/// test run.
pub fn test_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // As host/build.rs does: one `cargo rustc` per plugin library, asking
        // for a cdylib (the crates are plain libraries).
        for entry in std::fs::read_dir(root().join("tests/plugins")).expect("tests/plugins") {
            let dir = entry.expect("entry").path();
            let package = format!("test-plugin-{}", dir.file_name().and_then(|n| n.to_str()).expect("utf-8 name"));
            let mut command = Command::new(&cargo);
            command.current_dir(root());
            if dir.join("src/lib.rs").exists() {
                command.args(["rustc", "--lib", "--crate-type", "cdylib"]);
            } else {
                // A WASI command: a binary.
                command.arg("build");
            }
            command
                .args(["--profile", "plugin", "--target", "wasm32-wasip2", "-p", &package, "--target-dir"])
                .arg(plugin_target_dir());
            for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
                command.env_remove(var);
            }
            let status = command.status().expect("running cargo to build the test plugins");
            assert!(status.success(), "building the test plugin {package} failed");
        }
    });
    let dir = plugin_target_dir().join("wasm32-wasip2/plugin");
    let snake = dir.join(format!("test_plugin_{}.wasm", name.replace('-', "_")));
    if snake.exists() {
        return snake;
    }
    dir.join(format!("test-plugin-{name}.wasm"))
}

/// The probe plugin: one behaviour per `behavior` setting.
pub fn probe() -> PathBuf {
    test_plugin("probe")
}

/// An isolated user: its own HOME and XDG directories, so caches and
/// configuration never leak between tests or into the real user's.
pub struct UserEnv {
    home: tempfile::TempDir,
}

/// The kernel keyring outlives the test: the copies of credentials this
/// user's runs cached there (keyed by its cache directory) go with it.
impl Drop for UserEnv {
    fn drop(&mut self) {
        let credentials = self.cache_dir().join("credentials");
        let _ = credbroker_host::storage::keyring::kernel::KernelCache::new(&credentials).delete_all(None);
    }
}

impl UserEnv {
    /// A fresh user environment, of a user who has seen the one-time notice
    /// that `storage = "auto"` found no keyring and keeps files (tests of the
    /// notice call [`UserEnv::forget_keyring_notice`]).
    pub fn new() -> Self {
        let env = Self { home: tempfile::tempdir().expect("temp home") };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(env.cache_dir()).expect("cache dir");
        std::fs::write(env.cache_dir().join("keyring-fallback-noticed"), b"").expect("notice marker");
        env
    }

    /// Make this user one who has not seen the keyring fallback notice yet.
    pub fn forget_keyring_notice(&self) {
        std::fs::remove_file(self.cache_dir().join("keyring-fallback-noticed")).expect("notice marker");
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `~/.cache/credbroker`.
    pub fn cache_dir(&self) -> PathBuf {
        self.home().join(".cache/credbroker")
    }

    /// `~/.config/credbroker`.
    pub fn config_dir(&self) -> PathBuf {
        self.home().join(".config/credbroker")
    }

    /// `~/.local/share/credbroker/plugins`.
    pub fn plugin_dir(&self) -> PathBuf {
        self.home().join(".local/share/credbroker/plugins")
    }

    /// Write `~/.config/credbroker/config.toml`.
    pub fn write_config(&self, toml: &str) {
        std::fs::create_dir_all(self.config_dir()).expect("config dir");
        std::fs::write(self.config_dir().join("config.toml"), toml).expect("config file");
    }

    /// `credbroker ARGS` as this user, with nothing of the test process's
    /// credbroker or kubectl environment.
    pub fn credbroker(&self, args: &[&str]) -> Command {
        let mut command = Command::new(credbroker_bin());
        command
            .args(args)
            .env("HOME", self.home())
            .env("XDG_CACHE_HOME", self.home().join(".cache"))
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("CREDBROKER_PROVIDER")
            .env_remove("CREDBROKER_PLUGIN")
            .env_remove("CREDBROKER_CONFIG")
            .env_remove("CREDBROKER_CACHE_DIR")
            // Registry credentials come from this user's ~/.docker/config.json only.
            .env_remove("DOCKER_CONFIG")
            // A developer's RUST_BACKTRACE makes every error capture (and, at
            // trace level, print) a backtrace, and symbolizing it costs tens of MiB.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env_remove("CREDBROKER_STORAGE")
            // No keyring unless a test starts one (harness::keyring): the
            // tester's own session bus is never reached.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
            .env("CREDBROKER_LOG", audit::MAX_VERBOSITY)
            .stdin(Stdio::null());
        command
    }

    /// Run `credbroker ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.credbroker(args).output().expect("running credbroker"))
    }

    /// Run `command` to completion and measure it: its output, its peak
    /// resident memory in KiB (the kernel's own account, from `wait4`), and
    /// how long it took.
    pub fn run_measured(&self, mut command: Command) -> (Run, u64, Duration) {
        use std::os::unix::process::ExitStatusExt;
        let started = std::time::Instant::now();
        // Reaped by wait4 below, which std's wait would not give the usage of.
        #[allow(clippy::zombie_processes)]
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running credbroker");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let err = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child, whose pid std has not reaped.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(waited, pid, "wait4 failed");
        let elapsed = started.elapsed();
        let output = Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        };
        (Run::of(output), u64::try_from(usage.ru_maxrss).unwrap_or(0), elapsed)
    }
}

/// A finished `credbroker` process.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// From a process output. Its log is audited: no credential it printed
    /// and no secret the suite knows may appear in it.
    #[track_caller]
    pub fn of(output: Output) -> Self {
        let run = Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if let Ok(credential) = serde_json::from_str::<Value>(&run.stdout) {
            let status = &credential["status"];
            for field in ["token", "clientKeyData"] {
                if let Some(value) = status[field].as_str() {
                    audit::secret(value);
                }
            }
        }
        audit::check("a credbroker or kubectl run", &run.stderr);
        run
    }

    /// Assert success and return the ExecCredential printed on stdout.
    #[track_caller]
    pub fn credential(&self) -> Value {
        assert_eq!(self.code, Some(0), "credbroker failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Assert success and return `status.token`.
    #[track_caller]
    pub fn token(&self) -> String {
        self.credential()["status"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", self.stdout))
            .to_string()
    }

    /// Assert failure with nothing on stdout; return stderr.
    #[track_caller]
    pub fn error(&self) -> &str {
        assert_ne!(self.code, Some(0), "credbroker unexpectedly succeeded: {}", self.stdout);
        assert_eq!(self.stdout, "", "stdout must stay empty on failure");
        &self.stderr
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 with fixed routes, for exercising
/// the http capability. Each route maps a path to (status, extra headers, body);
/// the path `/hang` never answers. It counts requests per path.
pub struct HttpStub {
    /// Its port.
    pub port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request the stub received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The path, with its query.
    pub path: String,
    /// Header lines, names in lower case: `name: value`.
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| h.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }
}

/// One canned answer.
#[derive(Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// Never answer the first request to this path (a backend that hangs once).
    pub hang_first: bool,
}

impl Answer {
    /// 200 with `body`.
    pub fn ok(body: &str) -> Self {
        Self { status: 200, headers: Vec::new(), body: body.to_string(), hang_first: false }
    }

    /// Like [`Answer::ok`], but the first request hangs forever.
    pub fn ok_after_hanging_once(body: &str) -> Self {
        Self { hang_first: true, ..Self::ok(body) }
    }

    /// A 302 redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            headers: vec![("location".into(), location.into())],
            body: String::new(),
            hang_first: false,
        }
    }
}

impl HttpStub {
    /// Serve `routes` until the test process ends.
    pub fn start(routes: Vec<(&str, Answer)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let routes: Vec<(String, Answer)> = routes.into_iter().map(|(p, a)| (p.to_string(), a)).collect();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (counter, log) = (Arc::clone(&hits), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                let (counter, log) = (Arc::clone(&counter), Arc::clone(&log));
                std::thread::spawn(move || serve_one(stream, &routes, &counter, &log));
            }
        });
        Self { port, hits, seen }
    }

    /// The requests that reached `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve_one(
    stream: TcpStream,
    routes: &[(String, Answer)],
    hits: &Mutex<HashMap<String, usize>>,
    seen: &Mutex<Vec<Seen>>,
) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let header = format!("{}:{}", name.to_ascii_lowercase(), value.trim_end());
        if let Some(v) = header.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        headers.push(header);
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    seen.lock().unwrap().push(Seen { path: path.clone(), headers, body });
    let count = {
        let mut hits = hits.lock().unwrap();
        let count = hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let hang_once = routes.iter().any(|(p, a)| *p == path && a.hang_first) && count == 1;
    if path == "/hang" || hang_once {
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
    let answer = routes.iter().find(|(p, _)| *p == path).map(|(_, a)| a.clone()).unwrap_or(Answer {
        status: 404,
        headers: Vec::new(),
        body: "not found".into(),
        hang_first: false,
    });
    let mut stream = reader.into_inner();
    let mut response =
        format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", answer.status, answer.body.len());
    for (k, v) in &answer.headers {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&answer.body);
    let _ = stream.write_all(response.as_bytes());
}
