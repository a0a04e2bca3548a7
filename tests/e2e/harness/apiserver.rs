//! A stand-in Kubernetes API server over HTTPS: just enough for
//! `kubectl get --raw /version`, `kubectl version` and `SelfSubjectReview`
//! (`kubectl auth whoami`, `credbroker whoami`), and strict about who gets
//! in. kubectl sends credentials only over TLS, so it must be HTTPS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::pki::TestCa;

/// Decides whether a bearer token gets in.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Who a bearer token is (TokenReview `status.user`), or `None` to refuse it.
pub type Authenticate = Arc<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

/// The `authentication.k8s.io` versions serving `selfsubjectreviews`, as in
/// Kubernetes 1.28 and later.
pub const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The running server.
pub struct ApiServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed its certificate, PEM.
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl ApiServer {
    /// Serve, accepting exactly the bearer tokens `check` approves (all as
    /// user `token-user`).
    pub fn start(check: TokenCheck) -> Self {
        Self::serve(
            Arc::new(move |token| {
                check(token).then(|| serde_json::json!({"username": "token-user", "groups": ["system:authenticated"]}))
            }),
            REVIEW_VERSIONS,
        )
    }

    /// Serve, knowing users by `authenticate`, with `SelfSubjectReview` in
    /// `review_versions` (none: a server older than Kubernetes 1.26).
    pub fn serve(check: Authenticate, review_versions: &'static [&'static str]) -> Self {
        let ca = TestCa::new("stand-in apiserver CA");
        let server = ca.server();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let tls = tls_acceptor(&server.cert_pem, &server.key_pem);
        let seen_by_server = Arc::clone(&seen);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let tls = tls.clone();
                let check = Arc::clone(&check);
                let seen = Arc::clone(&seen_by_server);
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        let check = Arc::clone(&check);
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(answer(request, check, &seen, review_versions).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url: format!("https://{addr}"), ca_pem: ca.cert_pem, seen, _runtime: runtime }
    }

    /// Accept one fixed token.
    pub fn with_token(token: &str) -> Self {
        let token = token.to_string();
        Self::start(Arc::new(move |t| t == token))
    }

    /// Ask `webhook` about every bearer token, like kube-apiserver with
    /// `--authentication-token-webhook-config-file`; the usernames it answers
    /// are recorded.
    pub fn with_webhook(webhook: &super::webhook::Webhook) -> (Self, Arc<Mutex<Vec<String>>>) {
        Self::with_webhook_reviews(webhook, REVIEW_VERSIONS)
    }

    /// [`ApiServer::with_webhook`] with `SelfSubjectReview` served in
    /// `review_versions` only.
    pub fn with_webhook_reviews(
        webhook: &super::webhook::Webhook,
        review_versions: &'static [&'static str],
    ) -> (Self, Arc<Mutex<Vec<String>>>) {
        let client = webhook.client();
        let url = format!("{}/authenticate", webhook.url);
        let users: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen_users = Arc::clone(&users);
        let server = Self::serve(
            Arc::new(move |token| {
                let body = super::webhook::review_body("v1", token, &["https://kubernetes.default.svc"]);
                let text = client.post(&url).body(body).send().ok()?.text().ok()?;
                let answer = serde_json::from_str::<serde_json::Value>(&text).ok()?;
                if answer["status"]["authenticated"] != true {
                    return None;
                }
                let user = answer["status"]["user"].clone();
                seen_users.lock().unwrap().push(user["username"].as_str().unwrap_or("").to_string());
                Some(user)
            }),
            review_versions,
        );
        (server, users)
    }

    /// Every bearer token presented so far (accepted or not), in order.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

async fn answer(
    request: Request<Incoming>,
    check: Authenticate,
    seen: &Mutex<Vec<String>>,
    review_versions: &[&str],
) -> Response<Full<Bytes>> {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(token) = &token {
        seen.lock().unwrap().push(token.clone());
    }
    // The check may block (asking a webhook): keep it off the async workers.
    let user = match token {
        Some(token) => tokio::task::spawn_blocking(move || check(&token)).await.ok().flatten(),
        None => None,
    };
    let Some(user) = user else {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.into(),
        );
    };
    let path = request.uri().path().to_string();
    if let Some(version) = path
        .strip_prefix("/apis/authentication.k8s.io/")
        .and_then(|rest| rest.strip_suffix("/selfsubjectreviews"))
        .filter(|version| review_versions.contains(version) && request.method() == hyper::Method::POST)
    {
        // As kube-apiserver: the user it authenticated, `extra` included.
        let review = serde_json::json!({
            "kind": "SelfSubjectReview",
            "apiVersion": format!("authentication.k8s.io/{version}"),
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user},
        });
        return json(StatusCode::CREATED, review.to_string());
    }
    match path.as_str() {
        "/version" => json(
            StatusCode::OK,
            r#"{"major":"1","minor":"33","gitVersion":"v1.33.0-credbroker-standin","gitCommit":"0","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#.into(),
        ),
        "/api" => json(
            StatusCode::OK,
            r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#.into(),
        ),
        "/apis" => json(StatusCode::OK, r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#.into()),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#.into(),
        ),
    }
}
