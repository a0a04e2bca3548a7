//! A private OCI registry on loopback: Debian's `docker-registry` (CNCF
//! distribution 2.8), run from a config file (its systemd unit fails in
//! containers), with TLS from a throwaway CA and htpasswd (bcrypt) basic auth,
//! or in plain HTTP without auth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::UserEnv;
use super::pki::TestCa;

/// The user the registry knows.
pub const USER: &str = "publisher";
/// Their password.
pub const PASSWORD: &str = "publisher-pw";

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The CA of its certificate (TLS registries).
    ca: Option<TestCa>,
}

impl Registry {
    /// A registry with TLS and basic auth (`USER`/`PASSWORD`).
    pub fn start_tls() -> Self {
        Self::start(true)
    }

    /// A registry in plain HTTP, open to anyone.
    pub fn start_plain() -> Self {
        Self::start(false)
    }

    fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let path = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let host = format!("127.0.0.1:{port}");
        let p = |name: &str| path.join(name).display().to_string();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            p("data")
        );
        let ca = tls.then(|| {
            let ca = TestCa::new("registry test CA");
            let server = ca.server();
            std::fs::write(path.join("ca.crt"), &ca.cert_pem).expect("ca");
            std::fs::write(path.join("server.crt"), &server.cert_pem).expect("cert");
            std::fs::write(path.join("server.key"), &server.key_pem).expect("key");
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(htpasswd.status.success(), "htpasswd failed");
            std::fs::write(path.join("htpasswd"), htpasswd.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: credbroker-test\n    path: {}\n",
                p("server.crt"),
                p("server.key"),
                p("htpasswd")
            ));
            ca
        });
        std::fs::write(path.join("config.yml"), config).expect("registry config");
        let mut registry = Self { child: None, dir, host, ca };
        registry.launch();
        registry
    }

    /// Start (or restart) the registry on the same port and storage; ready
    /// when `GET /v2/` answers (401 with auth, 200 without).
    pub fn launch(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry (apt-get install docker-registry)");
        self.child = Some(child);
        let client = match &self.ca {
            Some(ca) => super::webhook::client(&ca.cert_pem, None),
            None => super::webhook::plain_client(),
        };
        let url = format!("{}://{}/v2/", if self.ca.is_some() { "https" } else { "http" }, self.host);
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(&url).send()
                && matches!(response.status().as_u16(), 200 | 401)
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its CA certificate file (TLS registries).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `oci://127.0.0.1:PORT/PATH`.
    pub fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host)
    }

    /// Where the registry keeps the blob `sha256:HEX` on disk.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// `[plugins.registries."HOST"]` for this registry: its CA file (TLS) or
    /// `insecure` (plain HTTP), and `extra` lines.
    pub fn policy(&self, extra: &str) -> String {
        let reach = match &self.ca {
            Some(_) => format!("ca-file = {:?}", self.ca_file().display().to_string()),
            None => "insecure = true".to_string(),
        };
        format!("[plugins.registries.\"{}\"]\n{reach}\n{extra}\n", self.host)
    }

    /// Give `env` docker credentials for this registry (`~/.docker/config.json`).
    pub fn login(&self, env: &UserEnv, password: &str) {
        write_docker_config(env.home(), &self.host, USER, password);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Write `HOME/.docker/config.json` with credentials `user:password` for `host`.
pub fn write_docker_config(home: &Path, host: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::create_dir_all(home.join(".docker")).expect("docker dir");
    std::fs::write(home.join(".docker/config.json"), serde_json::json!({"auths": {host: {"auth": auth}}}).to_string())
        .expect("docker config");
}
