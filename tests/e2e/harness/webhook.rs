//! `credbroker serve` as a child process over mTLS, and a client that talks to
//! it the way kube-apiserver does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::UserEnv;
use super::pki::{Issued, TestCa};

/// A running webhook.
pub struct Webhook {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA of the server certificate.
    pub server_ca: TestCa,
    /// kube-apiserver's client certificate.
    pub apiserver_cert: Issued,
    /// The configuration file.
    pub config: PathBuf,
    /// Where the TLS files live.
    pub dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

/// The `[server]` section for TLS files in `dir`.
fn server_section(dir: &Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls-cert-file = {:?}\ntls-key-file = {:?}\nclient-ca-file = {:?}\n",
        dir.join("tls.crt").display().to_string(),
        dir.join("tls.key").display().to_string(),
        dir.join("client-ca.crt").display().to_string()
    )
}

impl Webhook {
    /// Start `credbroker serve` with mTLS and the given validators (TOML
    /// `[[validators]]` tables, plus optional `[cache]`).
    pub fn start(env: &UserEnv, rest: &str) -> Self {
        let dir = env.home().join(format!("webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("webhook dir");
        let server_ca = TestCa::new("webhook server CA");
        let client_ca = TestCa::new("apiserver client CA");
        let server = server_ca.server();
        std::fs::write(dir.join("tls.crt"), &server.cert_pem).expect("cert");
        std::fs::write(dir.join("tls.key"), &server.key_pem).expect("key");
        std::fs::write(dir.join("client-ca.crt"), &client_ca.cert_pem).expect("client ca");
        let config = dir.join("serve.toml");
        std::fs::write(&config, format!("{}\n{rest}", server_section(&dir))).expect("config");
        let apiserver_cert = client_ca.client("kube-apiserver", &[]);
        Self::spawn(env, config, dir, server_ca, apiserver_cert)
    }

    /// Start `credbroker serve --config config`; `server_ca` verifies its
    /// certificate, `apiserver_cert` is the client certificate it trusts.
    pub fn spawn(env: &UserEnv, config: PathBuf, dir: PathBuf, server_ca: TestCa, apiserver_cert: Issued) -> Self {
        let mut child = env
            .credbroker(&["serve", "--config", config.to_str().expect("utf-8")])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting credbroker serve");
        let stderr = child.stderr.take().expect("stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving TokenReviews on ").nth(1) {
                    let _ = tx.send(rest.split("/authenticate").next().unwrap_or_default().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        // Compiling 18 MB Python components for the server takes minutes on a
        // busy 2-core machine.
        let url = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("credbroker serve did not start: {}", log.lock().unwrap().join("\n"));
            }
        };
        Self { child, url, server_ca, apiserver_cert, config, dir, log }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// `127.0.0.1:PORT` of the plain-HTTP health listener (`health-listen`).
    pub fn health_addr(&self) -> String {
        let find = || {
            self.log().lines().find_map(|l| {
                l.split("serving /healthz, /readyz and /metrics on http://").nth(1).map(|a| a.trim().to_string())
            })
        };
        self.wait_for("the health listener", || find().is_some());
        find().unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Rewrite the validators part of the configuration.
    pub fn rewrite(&self, rest: &str) {
        let tmp = self.dir.join("serve.toml.new");
        std::fs::write(&tmp, format!("{}\n{rest}", server_section(&self.dir))).expect("config");
        std::fs::rename(tmp, &self.config).expect("swap config");
    }

    /// A client with kube-apiserver's certificate.
    pub fn client(&self) -> reqwest::blocking::Client {
        client(&self.server_ca.cert_pem, Some(&self.apiserver_cert))
    }

    /// POST `body` to `/authenticate`: status and JSON answer.
    pub fn post(&self, body: impl Into<Vec<u8>>) -> (u16, Value) {
        let body = body.into();
        if let Some(token) =
            serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["spec"]["token"].as_str().map(str::to_string))
        {
            super::audit::secret(token);
        }
        let response = self
            .client()
            .post(format!("{}/authenticate", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("POST /authenticate");
        let status = response.status().as_u16();
        let text = response.text().expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, json)
    }

    /// Review `token` the way kube-apiserver does, in `version` (`v1`/`v1beta1`).
    pub fn review(&self, version: &str, token: &str, audiences: &[&str]) -> (u16, Value) {
        self.post(review_body(version, token, audiences))
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.client().get(format!("{}/metrics", self.url)).send().expect("metrics").text().expect("text")
    }

    /// The value of the metric line starting with `prefix`, or 0.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait until `condition` holds (reloads happen on a 2 s poll, and may
    /// compile a plugin in a debug build on a busy machine).
    pub fn wait_for(&self, what: &str, condition: impl Fn() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(started.elapsed() < Duration::from_secs(180), "timed out waiting for {what}: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send SIGTERM and wait for the process to end; returns its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The server's log at trace level holds no token it reviewed or issued,
        // and no password it checked.
        if !std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(50));
            super::audit::check("credbroker serve", &self.log());
        }
    }
}

/// A TokenReview as kube-apiserver sends it.
pub fn review_body(version: &str, token: &str, audiences: &[&str]) -> Vec<u8> {
    let mut spec = json!({ "token": token });
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    serde_json::to_vec(&json!({
        "apiVersion": format!("authentication.k8s.io/{version}"),
        "kind": "TokenReview",
        "metadata": { "creationTimestamp": null },
        "spec": spec,
        "status": { "user": {} },
    }))
    .expect("json")
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` if given.
pub fn client(ca_pem: &str, identity: Option<&Issued>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls_config(ca_pem, identity))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A client for plain-HTTP endpoints (it trusts no certificate).
pub fn plain_client() -> reqwest::blocking::Client {
    client("", None)
}

/// TLS for a client trusting `ca_pem`, presenting `identity` if given.
pub fn tls_config(ca_pem: &str, identity: Option<&Issued>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("ca");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    }
}
