//! An STS-compatible server (moto behind `tests/fixtures/sts/sts_server.py`,
//! which verifies presigned GetCallerIdentity URLs) over HTTPS on loopback,
//! and botocore as the reference signer (`presign.py`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::pki::TestCa;
use super::root;

/// The virtualenv's Python (`scripts/install-test-deps` makes it).
pub fn python() -> PathBuf {
    root().join("tests/fixtures/sts/.venv/bin/python")
}

/// A running STS stand-in.
pub struct Sts {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// What it created: `users.NAME.{access_key_id, secret_access_key, arn}`,
    /// `roles.NAME.arn`, `account`.
    pub out: Value,
    dir: tempfile::TempDir,
}

impl Sts {
    /// Start it with identities from `seed` (see the fixture's README).
    pub fn start(seed: &Value) -> Self {
        let dir = tempfile::tempdir().expect("sts dir");
        let ca = TestCa::new("sts test CA");
        let server = ca.server();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("tls.crt"), &server.cert_pem).expect("cert");
        std::fs::write(path("tls.key"), &server.key_pem).expect("key");
        std::fs::write(path("ca.crt"), &ca.cert_pem).expect("ca");
        std::fs::write(path("seed.json"), seed.to_string()).expect("seed");
        let mut child = Command::new(python())
            .arg(root().join("tests/fixtures/sts/sts_server.py"))
            .env("STS_PORT", "0")
            .env("STS_TLS_CERT", path("tls.crt"))
            .env("STS_TLS_KEY", path("tls.key"))
            .env("STS_SEED", path("seed.json"))
            .env("STS_OUT", path("out.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the STS test server (run scripts/install-test-deps)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        let url =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("sts_server said {line:?}")).to_string();
        let out: Value = serde_json::from_slice(&std::fs::read(path("out.json")).expect("out.json")).expect("json");
        for user in out["users"].as_object().into_iter().flat_map(|u| u.values()) {
            if let Some(secret) = user["secret_access_key"].as_str() {
                super::audit::secret(secret);
            }
        }
        Self { child: Some(child), url, out, dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }

    /// The CA file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The access key id and secret of seeded user `name`.
    pub fn keys(&self, name: &str) -> (String, String) {
        let user = &self.out["users"][name];
        (
            user["access_key_id"].as_str().expect("key").to_string(),
            user["secret_access_key"].as_str().expect("secret").to_string(),
        )
    }

    /// Make the next `count` GetCallerIdentity calls fail with Throttling.
    pub fn throttle(&self, count: u32) {
        let status = Command::new("curl")
            .args(["-sf", "-X", "POST", "--cacert"])
            .arg(self.ca_file())
            .arg(format!("{}/__test/throttle?count={count}", self.url))
            .stdout(Stdio::null())
            .status()
            .expect("curl");
        assert!(status.success(), "throttle switch");
    }

    /// Send `signal` to the server (SIGSTOP freezes it mid-flight, SIGCONT resumes).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Stop it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sts {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a reference signer is asked to presign.
#[derive(Debug, Clone, Copy)]
pub struct Presign<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret: &'a str,
    /// A session token, for temporary credentials.
    pub session_token: Option<&'a str>,
    /// The region (its partition picks the STS host).
    pub region: &'a str,
    /// The `x-k8s-aws-id` header.
    pub cluster_id: &'a str,
    /// The signing time.
    pub unix_time: u64,
    /// Another STS URL than the region's.
    pub endpoint: Option<&'a str>,
}

/// botocore's presigned URL for these inputs (`presign.py`).
pub fn botocore_presigned_url(inputs: &Presign<'_>) -> String {
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/fixtures/sts/presign.py"))
        .args(["--access-key-id", inputs.access_key_id, "--secret-access-key", inputs.secret])
        .args(["--region", inputs.region, "--cluster-id", inputs.cluster_id])
        .args(["--time", &inputs.unix_time.to_string()])
        .env_remove("AWS_SESSION_TOKEN");
    if let Some(token) = inputs.session_token {
        command.args(["--session-token", token]);
    }
    if let Some(endpoint) = inputs.endpoint {
        command.args(["--endpoint", endpoint]);
    }
    let output = command.output().expect("presign.py");
    assert!(output.status.success(), "presign.py: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_string()
}

/// The token `aws eks get-token` prints for these inputs: the AWS CLI itself,
/// its clock frozen at the signing time (`aws_cli.py`), with nothing from this
/// machine's environment or `~/.aws`; `AWS_ENDPOINT_URL_STS` for an endpoint.
pub fn aws_cli_token(inputs: &Presign<'_>) -> String {
    let home = tempfile::tempdir().expect("home for the AWS CLI");
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/fixtures/sts/aws_cli.py"))
        .args(["--time", &inputs.unix_time.to_string()])
        .args(["eks", "get-token", "--cluster-name", inputs.cluster_id, "--region", inputs.region])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", inputs.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", inputs.secret);
    if let Some(token) = inputs.session_token {
        command.env("AWS_SESSION_TOKEN", token);
    }
    if let Some(endpoint) = inputs.endpoint {
        command.env("AWS_ENDPOINT_URL_STS", endpoint);
    }
    let output = command.output().expect("aws_cli.py");
    assert!(output.status.success(), "aws eks get-token: {}", String::from_utf8_lossy(&output.stderr));
    let credential: Value = serde_json::from_slice(&output.stdout).expect("the AWS CLI prints an ExecCredential");
    credential["status"]["token"].as_str().expect("status.token").to_string()
}
