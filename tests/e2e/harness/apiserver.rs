//! A stand-in Kubernetes API server over HTTPS: just enough for
//! `kubectl get --raw /version` and `kubectl version`, and strict about who
//! gets in. kubectl sends credentials only over TLS, so it must be HTTPS.

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
    /// Serve, accepting exactly the bearer tokens `check` approves.
    pub fn start(check: TokenCheck) -> Self {
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
                        async move { Ok::<_, Infallible>(answer(request, check, &seen).await) }
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
        let client = webhook.client();
        let url = format!("{}/authenticate", webhook.url);
        let users: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen_users = Arc::clone(&users);
        let server = Self::start(Arc::new(move |token| {
            let body = super::webhook::review_body("v1", token, &["https://kubernetes.default.svc"]);
            let Ok(response) = client.post(&url).body(body).send() else { return false };
            let Ok(text) = response.text() else { return false };
            let Ok(answer) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
            let authenticated = answer["status"]["authenticated"] == true;
            if authenticated {
                seen_users
                    .lock()
                    .unwrap()
                    .push(answer["status"]["user"]["username"].as_str().unwrap_or("").to_string());
            }
            authenticated
        }));
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

async fn answer(request: Request<Incoming>, check: TokenCheck, seen: &Mutex<Vec<String>>) -> Response<Full<Bytes>> {
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
    let accepted = match token {
        Some(token) => tokio::task::spawn_blocking(move || check(&token)).await.unwrap_or(false),
        None => false,
    };
    if !accepted {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.into(),
        );
    }
    match request.uri().path() {
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
