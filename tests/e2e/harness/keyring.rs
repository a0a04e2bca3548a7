//! A real Secret Service for `storage = "keyring"`: a private D-Bus session
//! bus (`dbus-daemon`) with GNOME Keyring on it, its login keyring created
//! and unlocked with a known password, all under a temp dir. Each test gets
//! its own bus address, handed to credbroker as DBUS_SESSION_BUS_ADDRESS.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running session bus with a Secret Service.
pub struct SecretService {
    /// The bus address (DBUS_SESSION_BUS_ADDRESS).
    pub address: String,
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Child,
}

impl SecretService {
    /// Start a bus and an unlocked GNOME Keyring on it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("bus");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (scripts/install-test-deps installs dbus)");
        let mut line = String::new();
        BufReader::new(bus.stdout.take().expect("stdout")).read_line(&mut line).expect("bus address");
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon printed no address: {line:?}");
        // Its keyrings (encrypted with the password) and control socket stay
        // in the temp dir, apart from the home of the user under test.
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--foreground"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (scripts/install-test-deps installs gnome-keyring)");
        // The password unlocks (and first creates) the login keyring.
        let mut stdin = keyring.stdin.take().expect("stdin");
        stdin.write_all(b"test-keyring-password").expect("password");
        drop(stdin);
        let service = Self { address, dir, bus, keyring };
        service.wait_until_ready();
        service
    }

    fn wait_until_ready(&self) {
        let started = Instant::now();
        loop {
            let owned = self
                .command("dbus-send")
                .args(["--session", "--print-reply", "--dest=org.freedesktop.DBus", "/"])
                .args(["org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets"])
                .output()
                .expect("dbus-send");
            if String::from_utf8_lossy(&owned.stdout).contains("boolean true") {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "gnome-keyring-daemon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `program` talking to this bus.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DBUS_SESSION_BUS_ADDRESS", &self.address).env("XDG_RUNTIME_DIR", self.dir.path());
        command
    }

    /// Point `command` (a credbroker run) at this bus.
    pub fn attach<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env("DBUS_SESSION_BUS_ADDRESS", &self.address)
    }

    /// `secret-tool search --all` for items with these attributes: the
    /// `secret = ...` values and the attribute lines, as it prints them.
    pub fn search(&self, attributes: &[(&str, &str)]) -> String {
        let mut command = self.command("secret-tool");
        command.args(["search", "--all", "--unlock"]);
        for (key, value) in attributes {
            command.args([key, value]);
        }
        let output = command.output().expect("secret-tool (scripts/install-test-deps installs libsecret-tools)");
        // secret-tool prints the attributes on stderr and the rest on stdout.
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }

    /// The secrets of the items with these attributes, as secret-tool reads them.
    pub fn secrets(&self, attributes: &[(&str, &str)]) -> Vec<String> {
        self.search(attributes).lines().filter_map(|line| line.strip_prefix("secret = ").map(str::to_string)).collect()
    }

    /// Where the keyring keeps its (encrypted) files: not under the user's home.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A key in the kernel's user keyring (`@u`), as `keyctl` shows it.
#[derive(Debug)]
pub struct KernelKey {
    /// Its serial number.
    pub id: String,
    /// `type;uid;gid;perm;description`, as `keyctl rdescribe` prints it.
    pub described: String,
    /// Its payload, as `keyctl pipe` prints it.
    pub payload: String,
}

impl KernelKey {
    /// Its description.
    pub fn description(&self) -> &str {
        self.described.splitn(5, ';').nth(4).unwrap_or_default()
    }
}

fn keyctl(args: &[&str]) -> std::process::Output {
    Command::new("keyctl").args(args).output().expect("keyctl (scripts/install-test-deps installs keyutils)")
}

/// The `user` keys in the user keyring whose payload holds `needle` (the
/// tests of one run share the uid's `@u`: each looks for its own token).
pub fn kernel_keys_holding(needle: &str) -> Vec<KernelKey> {
    let listed = keyctl(&["rlist", "@u"]);
    String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .filter_map(|id| {
            let described = String::from_utf8_lossy(&keyctl(&["rdescribe", id]).stdout).trim().to_string();
            let payload = String::from_utf8_lossy(&keyctl(&["pipe", id]).stdout).into_owned();
            (described.starts_with("user;") && payload.contains(needle)).then(|| KernelKey {
                id: id.to_string(),
                described,
                payload,
            })
        })
        .collect()
}

/// Whether `keyctl search @u user DESCRIPTION` finds a key.
pub fn kernel_key_found(description: &str) -> bool {
    keyctl(&["search", "@u", "user", description]).status.success()
}

/// `keyctl invalidate ID`: the key is gone at once.
pub fn invalidate_kernel_key(id: &str) {
    assert!(keyctl(&["invalidate", id]).status.success(), "keyctl invalidate {id}");
}
