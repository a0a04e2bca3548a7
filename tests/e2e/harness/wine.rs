//! The Windows build of credbroker, run under wine: cross-built once per test
//! run for `x86_64-pc-windows-gnu` (mingw-w64), in one wine prefix that the
//! tests share. Each test keeps its own configuration and cache through
//! `CREDBROKER_CONFIG` and `CREDBROKER_CACHE_DIR` (wine gives every process
//! of a prefix the same `%APPDATA%`), and uses its own profile names where
//! the prefix's Credential Manager is involved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Run, UserEnv, plugin_target_dir, root};

/// The Rust target of the Windows build.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// wine's 64-bit loader (Debian's `wine64`).
pub const WINE64: &str = "/usr/lib/wine/wine64";

/// The cross-built `credbroker.exe` and the prefix it runs in.
pub struct Wine {
    /// `credbroker.exe`.
    pub exe: PathBuf,
    /// `WINEPREFIX`.
    pub prefix: PathBuf,
}

/// The Windows build, made (and its wine prefix created) on first use.
pub fn wine() -> &'static Wine {
    static WINE: OnceLock<Wine> = OnceLock::new();
    WINE.get_or_init(|| {
        let target_dir = plugin_target_dir().parent().expect("target dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(root())
            .args(["build", "--target", TARGET, "-p", "credbroker", "--bin", "credbroker", "--target-dir"])
            .arg(&target_dir);
        for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
            build.env_remove(var);
        }
        let status = build.status().expect("running cargo to cross-build credbroker.exe");
        assert!(status.success(), "cross-building credbroker for {TARGET} failed");
        let exe = target_dir.join(TARGET).join("debug/credbroker.exe");
        super::wine_stub::ensure_bcryptprimitives(exe.parent().expect("exe dir"))
            .expect("building the bcryptprimitives.dll stub (Debian's gcc-mingw-w64-x86-64)");
        let prefix = target_dir.join("wine-prefix");
        let wine = Wine { exe, prefix };
        // The first run creates the prefix (seconds); later ones reuse it.
        let run = Run::of(wine.command(&["--version"]).output().expect("running wine64"));
        assert_eq!(run.code, Some(0), "credbroker.exe --version under wine: {}", run.stderr);
        assert!(run.stdout.starts_with("credbroker "), "{}", run.stdout);
        wine
    })
}

/// Cross-build the host crate's unit tests for Windows and run them under
/// wine in the shared prefix; what the test binary printed and whether it passed.
pub fn run_host_unit_tests() -> Run {
    let wine = wine();
    let target_dir = plugin_target_dir().parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(root())
        .args(["test", "--no-run", "--lib", "--target", TARGET, "-p", "credbroker-host"])
        .args(["--message-format", "json", "--target-dir"])
        .arg(&target_dir)
        .stderr(Stdio::inherit());
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        build.env_remove(var);
    }
    let built = build.output().expect("running cargo to cross-build the host's unit tests");
    assert!(built.status.success(), "cross-building the host's unit tests for {TARGET} failed");
    let executable = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["profile"]["test"] == true)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the test executable");
    // The test binary lives in deps/, away from the stub DLL next to credbroker.exe.
    let dll = wine.exe.with_file_name("bcryptprimitives.dll");
    std::fs::copy(&dll, executable.with_file_name("bcryptprimitives.dll")).expect("copying the DLL stub");
    let mut command = Command::new(WINE64);
    command
        .arg(&executable)
        .args(["--test-threads", "2"])
        .env("WINEPREFIX", &wine.prefix)
        .env("WINEDEBUG", "-all")
        .stdin(Stdio::null());
    Run::of(command.output().expect("running the host's unit tests under wine"))
}

/// `path` as a Windows program under wine names it (`Z:` is `/`).
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

impl Wine {
    /// `wine64 credbroker.exe ARGS`, with nothing of the test process's
    /// credbroker environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(WINE64);
        command
            .arg(&self.exe)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            // wine's own diagnostics would mix with credbroker's stderr.
            .env("WINEDEBUG", "-all")
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("CREDBROKER_PROVIDER")
            .env_remove("CREDBROKER_PLUGIN")
            .env_remove("CREDBROKER_STORAGE")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null());
        command
    }

    /// The environment variables a kubeconfig exec entry gives the plugin so
    /// that it runs as [`Wine::command`] runs it for `env` (whose
    /// configuration is made empty if it has none: a named one must exist).
    pub fn exec_env(&self, env: &UserEnv) -> Vec<(String, String)> {
        if !env.config_dir().join("config.toml").exists() {
            env.write_config("");
        }
        vec![
            ("WINEPREFIX".into(), self.prefix.display().to_string()),
            ("WINEDEBUG".into(), "-all".into()),
            ("CREDBROKER_CONFIG".into(), windows_path(&env.config_dir().join("config.toml"))),
            ("CREDBROKER_CACHE_DIR".into(), windows_path(&env.cache_dir())),
        ]
    }
}

impl UserEnv {
    /// `credbroker.exe ARGS` under wine as this user: this user's
    /// configuration file and cache directory.
    pub fn windows(&self, args: &[&str]) -> Command {
        let wine = wine();
        let mut command = wine.command(args);
        for (key, value) in wine.exec_env(self) {
            command.env(key, value);
        }
        command
    }

    /// Run `credbroker.exe ARGS` under wine to completion.
    pub fn run_windows(&self, args: &[&str]) -> Run {
        Run::of(self.windows(args).output().expect("running wine64"))
    }
}
