//! A real OpenID Connect provider (npm `oidc-provider`, `tests/fixtures/oidc`)
//! over HTTPS on loopback, and a browser stand-in that walks its login pages
//! the way `tests/fixtures/oidc/README.md` describes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::pki::TestCa;
use super::root;

/// A running provider (or a handle to one, see [`OidcProvider::attach`]).
pub struct OidcProvider {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT`.
    pub issuer: String,
    /// Its port (to restart on the same one).
    pub port: u16,
    /// The CA of its certificate.
    pub ca: TestCa,
    dir: tempfile::TempDir,
    ttls: Vec<(String, String)>,
}

impl OidcProvider {
    /// Start it with token lifetimes (`OIDC_ID_TOKEN_TTL`...) overridden by `ttls`.
    pub fn start(ttls: &[(&str, &str)]) -> Self {
        for secret in ["confidential-secret", "other-secret", "alice-password", "bob-password"] {
            super::audit::secret(secret);
        }
        let dir = tempfile::tempdir().expect("oidc dir");
        let ca = TestCa::new("oidc test CA");
        let server = ca.server();
        std::fs::write(dir.path().join("tls.crt"), &server.cert_pem).expect("cert");
        std::fs::write(dir.path().join("tls.key"), &server.key_pem).expect("key");
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).expect("ca");
        let ttls: Vec<(String, String)> = ttls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, issuer, port) = Self::spawn(dir.path(), 0, &ttls);
        Self { child: Some(child), issuer, port, ca, dir, ttls }
    }

    /// A handle to the provider at `issuer` (for a browser stand-in in another
    /// thread); dropping it stops nothing.
    pub fn attach(issuer: &str, port: u16, ca_pem: &str) -> Self {
        Self {
            child: None,
            issuer: issuer.to_string(),
            port,
            ca: TestCa::from_cert_pem(ca_pem),
            dir: tempfile::tempdir().expect("dir"),
            ttls: Vec::new(),
        }
    }

    fn spawn(dir: &std::path::Path, port: u16, ttls: &[(String, String)]) -> (Child, String, u16) {
        // Node has been seen to hang before its first line (in a futex, on
        // this busy machine, once in hundreds of starts): a start that says
        // nothing within a minute is killed and tried again, once.
        for attempt in 0..2 {
            let mut child = Command::new("node")
                .arg(root().join("tests/fixtures/oidc/server.mjs"))
                .env("OIDC_PORT", port.to_string())
                .env("OIDC_TLS_CERT", dir.join("tls.crt"))
                .env("OIDC_TLS_KEY", dir.join("tls.key"))
                .envs(ttls.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("node (the tests need node and `npm ci --prefix tests/fixtures/oidc`)");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
                let _ = child.kill();
                let _ = child.wait();
                assert!(attempt == 0, "oidc-provider said nothing within a minute, twice");
                continue;
            };
            let issuer =
                line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("oidc-provider said {line:?}"));
            let port = issuer.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
            return (child, issuer.to_string(), port);
        }
        unreachable!("the loop returns or panics")
    }

    /// Kill the server (SIGKILL): an outage until [`OidcProvider::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restart on the same port: same issuer, new signing keys, no sessions.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, issuer, _) = Self::spawn(self.dir.path(), self.port, &self.ttls);
        assert_eq!(issuer, self.issuer);
        self.child = Some(child);
    }

    /// The CA file path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A client trusting the provider; `cookies` for a browser stand-in.
    pub fn client(&self, cookies: bool) -> reqwest::blocking::Client {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.cert_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("ca");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .cookie_store(cookies)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    /// An access token for `confidential` by client credentials (a JWT for
    /// `https://kubernetes.example`).
    pub fn client_credentials_token(&self) -> String {
        self.client_credentials_token_for(None)
    }

    /// The same, with `scope` requested (the token's `scope` claim).
    pub fn client_credentials_token_for(&self, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let answer: Value = self
            .client(false)
            .post(format!("{}/token", self.issuer))
            .basic_auth("confidential", Some("confidential-secret"))
            .form(&form)
            .send()
            .expect("token")
            .json()
            .expect("json");
        answer["access_token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_string()
    }

    /// The ID token the device flow of client `public` gives `login`
    /// (scopes `openid groups`), approved like a user at the browser.
    pub fn device_id_token(&self, login: &str) -> String {
        let http = self.client(false);
        let started: Value = http
            .post(format!("{}/device/auth", self.issuer))
            .form(&[("client_id", "public"), ("scope", "openid groups")])
            .send()
            .expect("device authorization")
            .json()
            .expect("json");
        let code = started["user_code"].as_str().expect("user_code");
        self.approve_device(started["verification_uri_complete"].as_str().expect("verification uri"), code, login);
        let answer: Value = http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", started["device_code"].as_str().expect("device_code")),
                ("client_id", "public"),
            ])
            .send()
            .expect("token")
            .json()
            .expect("json");
        let token = answer["id_token"].as_str().unwrap_or_else(|| panic!("no id token: {answer}")).to_string();
        super::audit::secret(token.clone());
        token
    }

    /// How often the distributed-claims endpoint answered, per account.
    pub fn claim_requests(&self) -> Value {
        self.client(false)
            .get(format!("{}/claims/requests", self.issuer))
            .send()
            .expect("claims requests")
            .json()
            .expect("json")
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") { location.to_string() } else { format!("{}{location}", self.issuer) }
    }

    fn location(response: &reqwest::blocking::Response) -> String {
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_else(|| panic!("no Location in a {} answer", response.status()))
            .to_string()
    }

    /// Approve a device `user_code` as `login`, like a user at the browser.
    pub fn approve_device(&self, verification_uri_complete: &str, user_code: &str, login: &str) {
        let browser = self.client(true);
        let page = browser.get(verification_uri_complete).send().expect("device page").text().expect("html");
        let xsrf = page
            .split("name=\"xsrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no xsrf field in {page}"))
            .to_string();
        let confirm = browser
            .post(format!("{}/device", self.issuer))
            .form(&[("xsrf", xsrf.as_str()), ("user_code", user_code), ("confirm", "yes")])
            .send()
            .expect("confirm");
        assert_eq!(confirm.status(), 303, "confirming the user code");
        let interaction = self.absolute(&Self::location(&confirm));
        let back = browser.get(format!("{interaction}?login={login}")).send().expect("interaction");
        assert_eq!(back.status(), 303);
        let done = browser.get(self.absolute(&Self::location(&back))).send().expect("device done");
        assert!(done.text().expect("html").contains("device approved"), "the device was not approved");
    }

    /// Follow an authorization URL like a browser (logging in as its
    /// `login_hint`) until it leaves the provider's login pages: the address
    /// of the redirect to the client (the loopback listener, or the
    /// out-of-band page), carrying `code` (or `error`) and `state`.
    pub fn follow_authorization(&self, authorization_url: &str) -> String {
        let browser = self.client(true);
        let mut url = authorization_url.to_string();
        for _ in 0..6 {
            let response = browser.get(&url).send().expect("authorization step");
            assert_eq!(response.status(), 303, "at {url}");
            let next = self.absolute(&Self::location(&response));
            if next.starts_with("http://127.0.0.1") || next.starts_with(&format!("{}/oob", self.issuer)) {
                return next;
            }
            url = next;
        }
        panic!("the authorization never redirected to the client");
    }

    /// Follow an authorization URL like a browser (logging in as its
    /// `login_hint`), up to the loopback redirect, and deliver it there.
    pub fn complete_authorization(&self, authorization_url: &str) {
        let next = self.follow_authorization(authorization_url);
        // The loopback listener of credbroker: a plain browser GET.
        let delivered = self.client(false).get(&next).send().expect("delivering the redirect");
        assert_eq!(delivered.status(), 200);
    }

    /// The code the out-of-band page at `address` shows the user.
    pub fn out_of_band_code(&self, address: &str) -> String {
        let page = self.client(false).get(address).send().expect("the out-of-band page").text().expect("html");
        page.split("<pre id=\"code\">")
            .nth(1)
            .and_then(|rest| rest.split("</pre>").next())
            .unwrap_or_else(|| panic!("no code on the page: {page}"))
            .to_string()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
