//! Whole-process start-up benchmark of `credbroker get`, the command kubectl
//! runs before every request. Prints wall times and the ratios the project
//! targets, in one run:
//!
//! - fresh credential from a precompiled plugin vs `/bin/true`  (target ≤ 3.5×)
//! - first run, compiling the plugin (target ≤ 150 ms for ~250 KB)
//! - cache hit vs a native binary printing the same JSON        (target ≤ 1.3×),
//!   built both as the project builds (static) and by plain `rustc -O`
//! - cache hit from the OS keyring (a real Secret Service: GNOME Keyring on a
//!   private session bus, as the tests start it) vs from the file cache
//!   (target ≤ 3 ms): served by the kernel keyring's copy, and (on Linux)
//!   with that copy removed before each run, from the Secret Service itself;
//!   and `storage = auto` with no session bus at all
//! - peak RSS of `credbroker get`                               (target ≤ 15 MB)
//! - with `docker-registry` installed (scripts/install-test-deps), a plugin
//!   from a loopback OCI registry: a cache hit of a profile naming it vs one
//!   naming the bundled plugin (target ≤ 1.1×), and the first run's pull on
//!   top of the compile of a ~200 KB plugin (target ≤ 150 ms)
//!
//! Run with `cargo bench --bench startup`. `STARTUP_RUNS` sets the repetitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The tests' Secret Service: a private bus with GNOME Keyring on it.
#[path = "../tests/e2e/harness/keyring.rs"]
#[allow(dead_code)]
mod keyring;

// The DLL wine lacks, built next to the Windows binary as the tests build it.
#[path = "../tests/e2e/harness/wine_stub.rs"]
mod wine_stub;

const CREDENTIAL_JSON: &str = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false},"status":{"expirationTimestamp":"2030-01-01T00:00:00Z","token":"abc"}}"#;

/// One measured run: wall time and the child's peak RSS in KiB.
fn run_once(command: &mut Command) -> (Duration, i64) {
    let started = Instant::now();
    let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for a child we spawned and have not waited for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed");
    // The child is reaped; std must not wait for it again.
    std::mem::forget(child);
    (elapsed, usage.ru_maxrss)
}

struct Stats {
    median: Duration,
    p90: Duration,
    max_rss_kib: i64,
}

/// Run each command `runs` times, interleaved (one of each per round), so that
/// the machine's drifting background load affects every command alike.
fn measure_interleaved(runs: usize, commands: &mut [&mut dyn FnMut() -> Command]) -> Vec<Stats> {
    let mut times = vec![Vec::with_capacity(runs); commands.len()];
    let mut rss = vec![0; commands.len()];
    for _ in 0..runs {
        for (i, make) in commands.iter_mut().enumerate() {
            let (elapsed, peak) = run_once(&mut make());
            times[i].push(elapsed);
            rss[i] = rss[i].max(peak);
        }
    }
    times
        .into_iter()
        .zip(rss)
        .map(|(mut t, max_rss_kib)| {
            t.sort();
            Stats { median: t[t.len() / 2], p90: t[t.len() * 9 / 10], max_rss_kib }
        })
        .collect()
}

fn measure(runs: usize, mut make: impl FnMut() -> Command, mut before_each: impl FnMut()) -> Stats {
    let mut times = Vec::with_capacity(runs);
    let mut max_rss = 0;
    for _ in 0..runs {
        before_each();
        let (elapsed, rss) = run_once(&mut make());
        times.push(elapsed);
        max_rss = max_rss.max(rss);
    }
    times.sort();
    Stats { median: times[times.len() / 2], p90: times[times.len() * 9 / 10], max_rss_kib: max_rss }
}

/// The native reference compiled by `rustc -O` with no other flags (a
/// dynamically linked executable), or `None` when rustc is not at hand.
fn compile_default_native(dir: &Path) -> Option<PathBuf> {
    let source = dir.join("native.rs");
    let binary = dir.join("native");
    std::fs::write(&source, format!("fn main() {{ println!(\"{{}}\", {CREDENTIAL_JSON:?}); }}\n")).ok()?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let built =
        Command::new(rustc).arg("-O").arg(&source).arg("-o").arg(&binary).env_remove("RUSTFLAGS").status().ok()?;
    built.success().then_some(binary)
}

/// A plain-HTTP `docker-registry` on loopback, stopped when dropped.
struct LoopbackRegistry {
    child: std::process::Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl LoopbackRegistry {
    /// Start one, or `None` when `docker-registry` is not installed.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .ok()?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let registry = Self { child, host, _dir: dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(&registry.host).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // Re-executed as the native reference: a Rust binary printing the credential.
    if std::env::var_os("CREDBROKER_BENCH_NATIVE").is_some() {
        println!("{CREDENTIAL_JSON}");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("STARTUP_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let credbroker = PathBuf::from(env!("CARGO_BIN_EXE_credbroker"));
    let home = tempfile::tempdir().expect("temp home");
    let get = |home: &Path, extra: &[&str]| {
        let mut command = Command::new(&credbroker);
        command
            .args(["get", "--provider", "static", "--set", "token=abc"])
            .args(extra)
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("CREDBROKER_STORAGE")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR");
        command
    };
    // Without gnome-keyring (scripts/install-test-deps installs it), no keyring rows.
    let secret_service = Command::new("gnome-keyring-daemon")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then(keyring::SecretService::start);
    let artifacts = home.path().join(".cache/credbroker/artifacts");

    // The native reference, twice: this benchmark binary, built the way the
    // project builds (statically linked, like credbroker), and the same
    // program built by plain `rustc -O` (dynamically linked, the default).
    let native = std::env::current_exe().expect("current exe");
    let default_native = compile_default_native(home.path());
    // Warm the artifact cache (for the precompiled runs) and the credential
    // cache (for the hits: a credential with an expiry is cached).
    run_once(&mut get(home.path(), &["--no-cache"]));
    run_once(&mut get(home.path(), &["--storage", "file", "--set", "expires-in=86400"]));
    run_once(&mut get(home.path(), &["--set", "expires-in=86400"]));
    let keyring_get = |extra: &[&str]| {
        let mut command = get(home.path(), extra);
        if let Some(service) = &secret_service {
            service.attach(&mut command);
        }
        command
    };
    if secret_service.is_some() {
        run_once(&mut keyring_get(&["--storage", "keyring", "--set", "expires-in=86400"]));
    }
    let mut true_cmd = || Command::new("/bin/true");
    let mut native_cmd = || {
        let mut c = Command::new(&native);
        c.env("CREDBROKER_BENCH_NATIVE", "1");
        c
    };
    let mut default_native_cmd = || Command::new(default_native.as_deref().unwrap_or(Path::new("/bin/true")));
    let mut hit_cmd = || get(home.path(), &["--storage", "file", "--set", "expires-in=86400"]);
    let mut fresh_cmd = || get(home.path(), &["--no-cache"]);
    // The default (auto) where no session bus exists: files, after a stat.
    let mut auto_hit_cmd = || get(home.path(), &["--set", "expires-in=86400"]);
    let mut keyring_hit_cmd = || keyring_get(&["--storage", "keyring", "--set", "expires-in=86400"]);
    // The same hit without the kernel's copy (removed before the clock
    // starts; the run puts it back): three round trips to the Secret Service.
    let kernel_copies =
        credbroker_host::storage::keyring::kernel::KernelCache::new(&home.path().join(".cache/credbroker/credentials"));
    let mut secret_service_hit_cmd = || {
        let _ = kernel_copies.delete_all(None);
        keyring_get(&["--storage", "keyring", "--set", "expires-in=86400"])
    };
    let mut commands: Vec<&mut dyn FnMut() -> Command> =
        vec![&mut true_cmd, &mut native_cmd, &mut default_native_cmd, &mut hit_cmd, &mut fresh_cmd, &mut auto_hit_cmd];
    if secret_service.is_some() {
        commands.push(&mut keyring_hit_cmd);
        if cfg!(target_os = "linux") {
            commands.push(&mut secret_service_hit_cmd);
        }
    }
    let mut stats = measure_interleaved(runs, &mut commands).into_iter();
    let mut next = || stats.next().expect("one result per command");
    let (true_stats, native_stats, default_native_stats, hit, fresh, auto_hit) =
        (next(), next(), next(), next(), next(), next());
    let keyring_hit = stats.next();
    let secret_service_hit = stats.next();
    // The kernel keyring outlives the temp home: its copy goes now.
    let _ = kernel_copies.delete_all(None);
    let compile_runs = (runs / 10).max(5);
    let first = measure(
        compile_runs,
        || get(home.path(), &["--no-cache"]),
        || {
            let _ = std::fs::remove_dir_all(&artifacts);
        },
    );
    let plugin_build = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("plugin-build/wasm32-wasip2/plugin");
    let probe_wasm = plugin_build.join("test_plugin_probe.wasm");
    let probe_first = probe_wasm.exists().then(|| {
        let size = std::fs::metadata(&probe_wasm).map(|m| m.len()).unwrap_or(0);
        let stats = measure(
            compile_runs,
            || {
                let mut c = Command::new(&credbroker);
                c.args(["get", "--no-cache", "--plugin"])
                    .arg(&probe_wasm)
                    .args(["--set", "behavior=echo", "--set", "value=x"])
                    .env("HOME", home.path())
                    .env("XDG_CACHE_HOME", home.path().join(".cache"));
                c
            },
            || {
                let _ = std::fs::remove_dir_all(&artifacts);
            },
        );
        (size, stats)
    });
    let oci = LoopbackRegistry::start()
        .and_then(|registry| oci_runs(&registry, &credbroker, runs, &probe_wasm, &plugin_build));
    let windows = windows_runs((runs / 4).max(10), &get);
    println!("credbroker get start-up, {runs} interleaved runs each (median, p90):");
    let row = |name: &str, s: &Stats| {
        println!(
            "  {name:<44} {:>7.2} ms  {:>7.2} ms  peak RSS {:>6.1} MB",
            ms(s.median),
            ms(s.p90),
            s.max_rss_kib as f64 / 1024.0
        );
    };
    row("/bin/true", &true_stats);
    row("native Rust binary printing the credential", &native_stats);
    if default_native.is_some() {
        row("  the same, built by plain rustc -O (dynamic)", &default_native_stats);
    }
    row("credbroker get, cache hit (file)", &hit);
    row("credbroker get, cache hit (auto, no session bus)", &auto_hit);
    if let Some(keyring_hit) = &keyring_hit {
        row("credbroker get, cache hit (keyring)", keyring_hit);
    }
    if let Some(secret_service_hit) = &secret_service_hit {
        row("  the same, no kernel copy (Secret Service)", secret_service_hit);
    }
    row("credbroker get, precompiled static plugin", &fresh);
    row("credbroker get, first run (compiles static)", &first);
    if let Some((size, stats)) = &probe_first {
        row(&format!("credbroker get, first run ({} KB plugin)", size / 1024), stats);
    }
    if let Some(oci) = &oci {
        row("profile, bundled static: cache hit", &oci.bundled_hit);
        row("profile, static from OCI: cache hit", &oci.oci_hit);
        row(&format!("first run, {} KB plugin file (compiles)", oci.probe_size / 1024), &oci.file_first);
        row(&format!("first run, {} KB plugin from OCI (pull+compile)", oci.probe_size / 1024), &oci.oci_first);
    }
    println!("ratios:");
    println!("  precompiled run / /bin/true   = {:.2}x (target <= 3.5x)", ms(fresh.median) / ms(true_stats.median));
    println!("  cache hit / native binary     = {:.2}x (target <= 1.3x)", ms(hit.median) / ms(native_stats.median));
    if default_native.is_some() {
        println!(
            "  cache hit / rustc -O binary   = {:.2}x (target <= 1.3x)",
            ms(hit.median) / ms(default_native_stats.median)
        );
    }
    if let Some(keyring_hit) = &keyring_hit {
        println!(
            "  keyring hit / file hit        = {:.2}x ({:.2} ms, target <= 3 ms)",
            ms(keyring_hit.median) / ms(hit.median),
            ms(keyring_hit.median)
        );
        if let Some(secret_service_hit) = &secret_service_hit {
            println!(
                "  Secret Service hit / file hit = {:.2}x ({:.2} ms, without the kernel keyring's copy)",
                ms(secret_service_hit.median) / ms(hit.median),
                ms(secret_service_hit.median)
            );
        }
    } else {
        println!("  keyring hit: not measured (no gnome-keyring-daemon; run scripts/install-test-deps)");
    }
    println!("  auto (no bus) hit / file hit  = {:.2}x", ms(auto_hit.median) / ms(hit.median));
    println!(
        "  first run (compile)           = {:.1} ms (target <= 150 ms for ~250 KB)",
        ms(probe_first.as_ref().map_or(first.median, |(_, s)| s.median))
    );
    println!(
        "  peak RSS of credbroker get    = {:.1} MB (target <= 15 MB)",
        fresh.max_rss_kib.max(hit.max_rss_kib) as f64 / 1024.0
    );
    match &oci {
        Some(oci) => {
            println!(
                "  OCI cache hit / bundled hit   = {:.2}x (target <= 1.1x)",
                ms(oci.oci_hit.median) / ms(oci.bundled_hit.median)
            );
            println!(
                "  OCI first run - file first run = {:.1} ms (the pull; target <= 150 ms)",
                ms(oci.oci_first.median) - ms(oci.file_first.median)
            );
        }
        None => {
            println!("  (no docker-registry: the OCI cases were not measured; scripts/install-test-deps installs it)")
        }
    }
    match &windows {
        Some(w) => {
            println!("the Windows build under wine, {} interleaved runs each (median, p90):", w.runs);
            row("Linux, cache hit (file)", &w.linux_hit);
            row("Windows under wine, cache hit (file)", &w.windows_hit);
            row("Windows under wine, cache hit (Credential Manager)", &w.windows_keyring_hit);
            row("Linux, precompiled static plugin", &w.linux_fresh);
            row("Windows under wine, precompiled static plugin", &w.windows_fresh);
            println!(
                "  Windows/Linux cache hit       = {:.2}x; precompiled run = {:.2}x (wine: a regression guard)",
                ms(w.windows_hit.median) / ms(w.linux_hit.median),
                ms(w.windows_fresh.median) / ms(w.linux_fresh.median)
            );
        }
        None => println!("  (no mingw-w64 or wine64: the Windows build was not measured; scripts/install-test-deps)"),
    }
}

/// The Windows cases' measurements.
struct WindowsStats {
    runs: usize,
    linux_hit: Stats,
    windows_hit: Stats,
    windows_keyring_hit: Stats,
    linux_fresh: Stats,
    windows_fresh: Stats,
}

/// Cross-build the Windows binary (release, thin LTO: the fat-LTO release
/// build takes half an hour on two cores, and this is a regression guard),
/// then measure it under wine against the Linux binary (`get` makes its
/// commands), with a persistent wineserver so no run pays for starting one.
fn windows_runs(runs: usize, get: &dyn Fn(&Path, &[&str]) -> Command) -> Option<WindowsStats> {
    const WINE64: &str = "/usr/lib/wine/wine64";
    let has = |program: &str| Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
    if !has("x86_64-w64-mingw32-gcc") || !Path::new(WINE64).exists() {
        return None;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--release", "--target", "x86_64-pc-windows-gnu", "-p", "credbroker", "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "thin")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .ok()?;
    assert!(built.success(), "cross-building credbroker.exe failed");
    let exe = target_dir.join("x86_64-pc-windows-gnu/release/credbroker.exe");
    wine_stub::ensure_bcryptprimitives(exe.parent()?).expect("building the bcryptprimitives.dll stub");
    let prefix = target_dir.join("wine-prefix");
    let home = tempfile::tempdir().ok()?;
    let cache = format!("Z:{}", home.path().join("cache").display()).replace('/', "\\");
    let config = home.path().join("config.toml");
    std::fs::write(&config, "").ok()?;
    let config = format!("Z:{}", config.display()).replace('/', "\\");
    let wine = |extra: &[&str]| {
        let mut command = Command::new(WINE64);
        command
            .arg(&exe)
            .args(["get", "--provider", "static", "--set", "token=abc"])
            .args(extra)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("CREDBROKER_CACHE_DIR", &cache)
            .env("CREDBROKER_CONFIG", &config)
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("CREDBROKER_STORAGE");
        command
    };
    // One wineserver for the whole measurement (it exits when told to, below).
    let mut server = Command::new("/usr/lib/wine/wineserver").arg("-p").env("WINEPREFIX", &prefix).spawn().ok()?;
    let hit = ["--storage", "file", "--set", "expires-in=86400"];
    let keyring_hit = ["--storage", "keyring", "--set", "expires-in=86400"];
    for warm in [&["--no-cache"][..], &hit, &keyring_hit] {
        run_once(&mut wine(warm));
    }
    let linux_home = home.path().join("linux");
    run_once(&mut get(&linux_home, &["--no-cache"]));
    run_once(&mut get(&linux_home, &hit));
    let mut linux_hit = || get(&linux_home, &hit);
    let mut windows_hit = || wine(&hit);
    let mut windows_keyring_hit = || wine(&keyring_hit);
    let mut linux_fresh = || get(&linux_home, &["--no-cache"]);
    let mut windows_fresh = || wine(&["--no-cache"]);
    let mut stats = measure_interleaved(
        runs,
        &mut [&mut linux_hit, &mut windows_hit, &mut windows_keyring_hit, &mut linux_fresh, &mut windows_fresh],
    )
    .into_iter();
    let _ = Command::new("/usr/lib/wine/wineserver").arg("-k").env("WINEPREFIX", &prefix).status();
    let _ = server.wait();
    let mut next = || stats.next().expect("one result per command");
    Some(WindowsStats {
        runs,
        linux_hit: next(),
        windows_hit: next(),
        windows_keyring_hit: next(),
        linux_fresh: next(),
        windows_fresh: next(),
    })
}

/// The OCI cases' measurements.
struct OciStats {
    bundled_hit: Stats,
    oci_hit: Stats,
    probe_size: u64,
    file_first: Stats,
    oci_first: Stats,
}

/// Push the static plugin and the probe to `registry`, then measure cache
/// hits of profiles naming the bundled and the pulled static plugin, and
/// first runs of the probe from its file and from the registry (the store
/// and the compiled code removed before each).
fn oci_runs(
    registry: &LoopbackRegistry,
    credbroker: &Path,
    runs: usize,
    probe_wasm: &Path,
    plugin_build: &Path,
) -> Option<OciStats> {
    let home = tempfile::tempdir().ok()?;
    let command = |args: &[&str]| {
        let mut c = Command::new(credbroker);
        c.args(args)
            .env("HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join(".cache"))
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_DATA_HOME", home.path().join(".local/share"))
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("DOCKER_CONFIG");
        c
    };
    let static_ref = format!("oci://{}/credbroker/static:1", registry.host);
    let probe_ref = format!("oci://{}/credbroker/probe:1", registry.host);
    let config = home.path().join(".config/credbroker");
    std::fs::create_dir_all(&config).ok()?;
    let settings = "[profiles.NAME.settings]\ntoken = \"abc\"\nexpires-in = \"86400\"\n";
    std::fs::write(
        config.join("config.toml"),
        format!(
            "[plugins.registries.\"{host}\"]\ninsecure = true\n\
             [profiles.bundled]\nplugin = \"static\"\n{}\
             [profiles.oci]\nplugin = {static_ref:?}\n{}\
             [profiles.probe-file]\nplugin = {:?}\n[profiles.probe-file.settings]\nbehavior = \"echo\"\nvalue = \"x\"\n\
             [profiles.probe-oci]\nplugin = {probe_ref:?}\n[profiles.probe-oci.settings]\nbehavior = \"echo\"\nvalue = \"x\"\n",
            settings.replace("NAME", "bundled"),
            settings.replace("NAME", "oci"),
            probe_wasm.display().to_string(),
            host = registry.host,
        ),
    )
    .ok()?;
    let static_wasm = plugin_build.join("credbroker_plugin_static.wasm");
    if !static_wasm.exists() || !probe_wasm.exists() {
        eprintln!(
            "the OCI cases need {} and {} (cargo test builds the probe)",
            static_wasm.display(),
            probe_wasm.display()
        );
        return None;
    }
    for (wasm, reference) in [(static_wasm.as_path(), &static_ref), (probe_wasm, &probe_ref)] {
        let pushed = command(&["plugin", "push", wasm.to_str()?, reference]).output().ok()?;
        if !pushed.status.success() {
            eprintln!("pushing {reference} failed: {}", String::from_utf8_lossy(&pushed.stderr));
            return None;
        }
    }
    // Pull, compile and cache a credential for both profiles.
    run_once(&mut command(&["get", "--provider", "bundled"]));
    run_once(&mut command(&["get", "--provider", "oci"]));
    let mut bundled_cmd = || command(&["get", "--provider", "bundled"]);
    let mut oci_cmd = || command(&["get", "--provider", "oci"]);
    let [bundled_hit, oci_hit] =
        <[Stats; 2]>::try_from(measure_interleaved(runs, &mut [&mut bundled_cmd, &mut oci_cmd])).ok()?;

    let artifacts = home.path().join(".cache/credbroker/artifacts");
    let store = home.path().join(".local/share/credbroker/oci");
    let first_runs = (runs / 10).max(5);
    let (mut file_times, mut oci_times) = (Vec::new(), Vec::new());
    let (mut file_rss, mut oci_rss) = (0, 0);
    for _ in 0..first_runs {
        let _ = std::fs::remove_dir_all(&artifacts);
        let (t, rss) = run_once(&mut command(&["get", "--provider", "probe-file", "--no-cache"]));
        file_times.push(t);
        file_rss = file_rss.max(rss);
        let _ = std::fs::remove_dir_all(&artifacts);
        let _ = std::fs::remove_dir_all(&store);
        let (t, rss) = run_once(&mut command(&["get", "--provider", "probe-oci", "--no-cache"]));
        oci_times.push(t);
        oci_rss = oci_rss.max(rss);
    }
    let stats = |mut times: Vec<Duration>, max_rss_kib| {
        times.sort();
        Stats { median: times[times.len() / 2], p90: times[times.len() * 9 / 10], max_rss_kib }
    };
    Some(OciStats {
        bundled_hit,
        oci_hit,
        probe_size: std::fs::metadata(probe_wasm).map(|m| m.len()).unwrap_or(0),
        file_first: stats(file_times, file_rss),
        oci_first: stats(oci_times, oci_rss),
    })
}
