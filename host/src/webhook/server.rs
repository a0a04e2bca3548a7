//! The HTTPS server: connections, routes, reloads, shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::cache::{ReviewCache, Source};
use super::config::{ListenerOverrides, ServerConfig};
use super::connections::{Activity, Budget, Place};
use super::login::{FailureLimiter, LoginRequest, RecheckCache};
use super::metrics::{Format as MetricsFormat, Metrics};
use super::review::{self, TokenReviewResponse, TokenReviewStatus};
use super::tls::{ReloadingTls, TlsFiles};
use super::validators::{PluginSlots, ValidatorSet, Verdict};
use crate::config::ConfigError;
use crate::runtime::{Allocation, Runtime, RuntimeOptions};

/// Largest request body accepted; a TokenReview is a few kilobytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time allowed to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// How long in-flight requests get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The path kube-apiserver POSTs TokenReviews to.
pub const REVIEW_PATH: &str = "/authenticate";
/// Logins are POSTed to this prefix followed by the login backend's name.
pub const LOGIN_PREFIX: &str = "/v1/login/";
/// Largest login request body.
const MAX_LOGIN_BODY: usize = 64 * 1024;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// Directories of installed plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// The store of plugins pulled from OCI registries.
    pub plugin_store: PathBuf,
    /// Where compiled plugins are cached.
    pub artifact_dir: Option<PathBuf>,
    /// Overrides `[server] listen`.
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP even if the file does not say so (local testing).
    pub insecure_plain_http: bool,
}

impl ServeOptions {
    /// The configuration file with `--listen` and `--insecure-plain-http`
    /// applied to `[server]` before it is checked.
    fn load_config(&self) -> Result<ServerConfig, ConfigError> {
        let overrides = ListenerOverrides { listen: self.listen, insecure_plain_http: self.insecure_plain_http };
        ServerConfig::load_with(&self.config, &overrides)
    }

    /// Where plugins come from.
    fn plugin_sources(&self) -> crate::plugin::prepare::PluginSources {
        crate::plugin::prepare::PluginSources {
            plugin_dirs: self.plugin_dirs.clone(),
            store: crate::plugin::store::PluginStore::new(self.plugin_store.clone()),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A validator cannot be loaded.
    #[error(transparent)]
    Validators(#[from] super::validators::BuildError),
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::LoadError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// State shared by every connection.
struct Shared {
    options: ServeOptions,
    metrics: Metrics,
    cache: ReviewCache,
    runtime: Arc<Runtime>,
    slots: PluginSlots,
    validators: RwLock<Arc<ValidatorSet>>,
    listener_config: super::config::ListenerConfig,
    ready: AtomicBool,
    tls: Option<ReloadingTls>,
    /// Whether /authenticate needs a verified client certificate.
    review_needs_client_cert: bool,
    rechecks: RecheckCache,
    limiter: Option<FailureLimiter>,
    /// The watched files as they were when the serving set was loaded.
    loaded_stamps: std::sync::Mutex<Stamps>,
}

/// What the server knows about one connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: SocketAddr,
    /// Whether it presented a client certificate the client CA verified.
    verified_client: bool,
    /// Whether it came in on the plain-HTTP health listener.
    health_only: bool,
}

/// A bound, loaded server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    health: Option<TcpListener>,
}

impl Server {
    /// Load the configuration and validators and bind the listener.
    ///
    /// # Errors
    ///
    /// [`ServeError`] for anything that keeps the server from starting.
    pub async fn bind(options: ServeOptions) -> Result<Self, ServeError> {
        // Stamped before reading, so an edit made while loading is seen.
        let config_stamp = stamp(&options.config);
        let config = options.load_config()?;
        let listener_config = config.server.clone();
        let reviews = listener_config.max_concurrent_reviews;
        let runtime = Arc::new(Runtime::new(RuntimeOptions {
            allocation: Allocation::Pooling {
                // One instance per concurrent review, and a few spare for
                // instances being torn down while new ones start.
                instances: reviews.saturating_add(reviews / 4 + 2),
                memory_bytes: listener_config.max_plugin_memory_mib.saturating_mul(1024 * 1024),
            },
            artifact_dir: options.artifact_dir.clone(),
        })?);
        let slots = PluginSlots::new(reviews, Duration::from_millis(listener_config.review_queue_timeout_ms));
        let validators = load_validators(&options, &config, &runtime, &slots)?;
        validators.setup().await?;
        let loaded_stamps = std::sync::Mutex::new(stamps_after_load(&validators, &options.config, config_stamp));
        let tls = if listener_config.insecure_plain_http {
            tracing::warn!("serving plain HTTP: tokens cross the network in the clear; for local testing only");
            None
        } else {
            Some(ReloadingTls::new(TlsFiles {
                cert: listener_config.tls_cert_file.clone().unwrap_or_default(),
                key: listener_config.tls_key_file.clone().unwrap_or_default(),
                client_ca: listener_config.client_ca_file.clone(),
                // People logging in have no client certificate; the review
                // endpoint still requires one (checked per request).
                client_cert_optional: config.login.is_some(),
            })?)
        };
        if tls.is_some() && listener_config.client_ca_file.is_none() {
            tracing::warn!("no client-ca-file: any client that reaches the port can ask for TokenReviews");
        }
        let listener = TcpListener::bind(listener_config.listen)
            .await
            .map_err(|error| ServeError::Bind { addr: listener_config.listen, error })?;
        let health = match listener_config.health_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|error| ServeError::Bind { addr, error })?),
            None => None,
        };
        let metrics = Metrics::new();
        metrics.set_validators(validators.len());
        let cache = ReviewCache::new(
            Duration::from_secs(config.cache.positive_ttl_seconds),
            Duration::from_secs(config.cache.negative_ttl_seconds),
            config.cache.max_entries,
        )
        .with_max_bytes(usize::try_from(config.cache.max_bytes).unwrap_or(usize::MAX));
        let review_needs_client_cert = tls.is_some() && listener_config.client_ca_file.is_some();
        let limiter = config.login.as_ref().map(FailureLimiter::new);
        let shared = Arc::new(Shared {
            options,
            metrics,
            cache,
            runtime,
            slots,
            validators: RwLock::new(Arc::new(validators)),
            listener_config,
            ready: AtomicBool::new(true),
            tls,
            review_needs_client_cert,
            rechecks: RecheckCache::default(),
            limiter,
            loaded_stamps,
        });
        Ok(Self { shared, listener, health })
    }

    /// Load everything [`Server::bind`] loads (configuration, TLS files, keys,
    /// every validator plugin, compiled) without listening; a line per
    /// validator on success.
    ///
    /// # Errors
    ///
    /// What [`Server::bind`] would fail with, except for binding.
    pub fn check(options: &ServeOptions) -> Result<Vec<String>, ServeError> {
        let config = options.load_config()?;
        let server = &config.server;
        // The serving engine (same compiler), so the check warms the artifact cache.
        let runtime = Arc::new(Runtime::new(RuntimeOptions {
            allocation: Allocation::Pooling {
                instances: 2,
                memory_bytes: server.max_plugin_memory_mib.saturating_mul(1024 * 1024),
            },
            artifact_dir: options.artifact_dir.clone(),
        })?);
        let slots =
            PluginSlots::new(server.max_concurrent_reviews, Duration::from_millis(server.review_queue_timeout_ms));
        let validators = load_validators(options, &config, &runtime, &slots)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Runtime(crate::runtime::LoadError::Engine(format!("cannot start tokio: {e}"))))?;
        tokio.block_on(validators.setup())?;
        if !server.insecure_plain_http {
            ReloadingTls::new(TlsFiles {
                cert: server.tls_cert_file.clone().unwrap_or_default(),
                key: server.tls_key_file.clone().unwrap_or_default(),
                client_ca: server.client_ca_file.clone(),
                client_cert_optional: config.login.is_some(),
            })?;
        }
        Ok(validators.describe())
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The bound address of the plain-HTTP health listener, if any.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Replace the validators loaded from the configuration with a set built in
    /// code (for embedding and benchmarks); `build` gets the server's plugin
    /// slots. A later change of the configuration file reloads from it again.
    pub fn replace_validators(&self, build: impl FnOnce(PluginSlots) -> ValidatorSet) {
        let set = build(self.shared.slots.clone());
        self.shared.metrics.set_validators(set.len());
        *self.shared.validators.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.shared.cache.clear();
    }

    /// Serve until `shutdown` resolves, then stop accepting and drain.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self { shared, listener, health } = self;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            "serving TokenReviews on {}://{addr}{REVIEW_PATH} with {} validator(s)",
            if shared.tls.is_some() { "https" } else { "http" },
            shared.validators().len()
        );
        let reloader = tokio::spawn(reload_loop(Arc::clone(&shared)));
        let updater = tokio::spawn(update_loop(Arc::clone(&shared)));
        let config = &shared.listener_config;
        let budgets = Arc::new(Budgets {
            handshakes: Budget::new("TLS handshakes in progress", config.max_handshakes),
            logins: Budget::new("connections without a client certificate", config.max_login_connections),
            health: Budget::new("health listener connections", config.max_health_connections),
            authenticated: Arc::new(Semaphore::new(config.max_connections as usize)),
        });
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        let health = health.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("serving /healthz, /readyz and /metrics on http://{addr}");
            }
            tokio::spawn(health_loop(listener, Arc::clone(&shared), Arc::clone(&budgets.health)))
        });
        tokio::pin!(shutdown);
        loop {
            // Accept at once, whatever the budgets say: each stage after this
            // is bounded on its own, and a connection left in the kernel's
            // queue would wait behind whoever holds the slots.
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(accept_connection(
                stream,
                peer,
                Arc::clone(&shared),
                Arc::clone(&budgets),
                Drain { stopping: Some(stopping.clone()), _open: Some(open.clone()) },
            ));
        }
        shared.ready.store(false, Ordering::SeqCst);
        drop(listener);
        reloader.abort();
        updater.abort();
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop.send(true);
        drop(open);
        // Every connection holds a sender: none is left once all have closed.
        if tokio::time::timeout(DRAIN_TIMEOUT, all_closed.recv()).await.is_err() {
            tracing::warn!("some connections did not finish within {} s", DRAIN_TIMEOUT.as_secs());
        }
        // Probes were answered (not ready) while draining.
        if let Some(health) = health {
            health.abort();
        }
    }
}

/// A connection's part in a graceful shutdown.
struct Drain {
    /// Turns true when the server stops: finish the requests in progress,
    /// then close (HTTP/2: GOAWAY). None for connections a drain does not
    /// wait for (probes are answered, not ready, until the end).
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
    /// Held while the connection is open; the drain waits for every one.
    _open: Option<tokio::sync::mpsc::Sender<()>>,
}

/// The connection budgets of the listeners (`[server]`).
struct Budgets {
    /// TLS handshakes in progress.
    handshakes: Arc<Budget>,
    /// TLS connections without a client certificate (password logins).
    logins: Arc<Budget>,
    /// Connections to the plain-HTTP health listener.
    health: Arc<Budget>,
    /// Connections with a verified client certificate (every connection
    /// when no client CA is configured): the API server's.
    authenticated: Arc<Semaphore>,
}

/// Take a connection of the main listener through its stages: the TLS
/// handshake (its own budget and deadline), then the budget of what the
/// handshake showed: a verified client (the API server) or a password login.
async fn accept_connection(
    stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    budgets: Arc<Budgets>,
    drain: Drain,
) {
    let activity = Arc::new(Activity::default());
    let config = &shared.listener_config;
    let Some(tls) = &shared.tls else {
        // Plain HTTP, for local testing: nobody to tell apart.
        let Some(_permit) = authenticated_place(&budgets, config).await else {
            tracing::debug!(peer = %addr, "no connection slot within the request head timeout; closing");
            return;
        };
        let peer = Peer { addr, verified_client: false, health_only: false };
        return serve_connection(stream, peer, Protocol::Http1, Arc::clone(&shared), drain, activity, None).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let mut handshaking = budgets.handshakes.admit(addr.ip(), Arc::clone(&activity));
    let deadline = Duration::from_millis(config.handshake_timeout_ms);
    let stream = tokio::select! {
        done = tokio::time::timeout(deadline, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(peer = %addr, "TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
        },
        () = handshaking.cut_off() => return tracing::debug!(peer = %addr, "TLS handshake cut off for a newer one"),
    };
    drop(handshaking);
    let (_, connection) = stream.get_ref();
    let verified_client = connection.peer_certificates().is_some_and(|c| !c.is_empty());
    // ALPN said which protocol follows: hyper need not sniff the first bytes
    // (which it does without a deadline).
    let protocol = if connection.alpn_protocol() == Some(b"h2") { Protocol::Http2 } else { Protocol::Http1 };
    let peer = Peer { addr, verified_client, health_only: false };
    if verified_client || !shared.review_needs_client_cert {
        let Some(_permit) = authenticated_place(&budgets, config).await else {
            tracing::debug!(peer = %addr, "no connection slot within the request head timeout; closing");
            return;
        };
        serve_connection(stream, peer, protocol, Arc::clone(&shared), drain, activity, None).await
    } else {
        let place = budgets.logins.admit(addr.ip(), Arc::clone(&activity));
        serve_connection(stream, peer, protocol, Arc::clone(&shared), drain, activity, Some(place)).await
    }
}

/// A slot among the authenticated connections: they wait for one (they are
/// the API server's), at most the request head timeout.
async fn authenticated_place(
    budgets: &Budgets,
    config: &super::config::ListenerConfig,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let wait = Duration::from_millis(config.request_head_timeout_ms);
    tokio::time::timeout(wait, Arc::clone(&budgets.authenticated).acquire_owned()).await.ok()?.ok()
}

/// Accept plain-HTTP probe connections, within their own budget.
async fn health_loop(listener: TcpListener, shared: Arc<Shared>, budget: Arc<Budget>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed on the health listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let activity = Arc::new(Activity::default());
        let place = budget.admit(addr.ip(), Arc::clone(&activity));
        let peer = Peer { addr, verified_client: false, health_only: true };
        // Not part of the drain: a probe must not hold it up.
        let drain = Drain { stopping: None, _open: None };
        tokio::spawn(serve_connection(
            stream,
            peer,
            Protocol::Http1,
            Arc::clone(&shared),
            drain,
            activity,
            Some(place),
        ));
    }
}

fn load_validators(
    options: &ServeOptions,
    config: &ServerConfig,
    runtime: &Arc<Runtime>,
    slots: &PluginSlots,
) -> Result<ValidatorSet, super::validators::BuildError> {
    let mut set = ValidatorSet::load(config, runtime, &options.plugin_sources(), slots.clone())?;
    set.watched.push(options.config.clone());
    Ok(set)
}

impl Shared {
    fn validators(&self) -> Arc<ValidatorSet> {
        Arc::clone(&self.validators.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// Serve HTTP on a connection until it closes, goes idle for the request head
/// timeout or the server stops (then it is closed gracefully), or its `place`
/// in a budget is taken for a newer connection (then at once).
async fn serve_connection<I>(
    io: I,
    peer: Peer,
    protocol: Protocol,
    shared: Arc<Shared>,
    drain: Drain,
    activity: Arc<Activity>,
    mut place: Option<Place>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head_timeout = Duration::from_millis(shared.listener_config.request_head_timeout_ms);
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let in_progress = requests.request();
        async move {
            let response = route(request, peer, &shared).await;
            drop(in_progress);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(head_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // HTTP/1 has hyper's own deadline for the head; this one also covers
    // HTTP/2, where a silent peer would otherwise stay forever.
    let idle = activity.idle_for(head_timeout);
    tokio::pin!(idle);
    let mut stopping = drain.stopping;
    let stop = async move {
        match stopping.as_mut() {
            Some(stopping) => drop(stopping.wait_for(|stop| *stop).await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut closing: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let cut_off = async {
            match place.as_mut() {
                Some(place) => place.cut_off().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(peer = %peer.addr, "connection ended: {e}");
                }
                return;
            }
            () = &mut idle, if closing.is_none() => {
                tracing::debug!(peer = %peer.addr, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(head_timeout)));
            }
            () = &mut stop, if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(DRAIN_TIMEOUT)));
            }
            // A peer that does not take its GOAWAY or last response in time.
            () = async {
                match closing.as_mut() {
                    Some(deadline) => deadline.await,
                    None => std::future::pending().await,
                }
            } => return,
            () = cut_off => {
                tracing::debug!(peer = %peer.addr, "closing a connection for a newer one");
                return;
            }
        }
    }
}

/// Why a request body was not read.
enum BodyError {
    /// It is over the limit.
    TooLarge,
    /// It did not arrive within the body deadline.
    TimedOut,
    /// The connection broke.
    Broken(hyper::Error),
}

/// Read `body` whole: at most `max` bytes, all within `deadline` (a body
/// trickled a byte at a time must not hold its connection open).
async fn read_body(body: &mut Incoming, max: usize, deadline: Duration) -> Result<Vec<u8>, BodyError> {
    let read = async {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Broken)?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes)
    };
    tokio::time::timeout(deadline, read).await.unwrap_or(Err(BodyError::TimedOut))
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn review_response(status: StatusCode, api_version: &str, review: TokenReviewStatus) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&TokenReviewResponse::new(api_version, review)).unwrap_or_default();
    respond(status, "application/json", body)
}

fn review_error(status: StatusCode, api_version: &str, error: String) -> Response<Full<Bytes>> {
    review_response(
        status,
        api_version,
        TokenReviewStatus { authenticated: false, error: Some(error), ..Default::default() },
    )
}

async fn route(request: Request<Incoming>, peer: Peer, shared: &Shared) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    if peer.health_only && !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        // Tokens and passwords never travel over the plain-HTTP listener.
        return respond(StatusCode::NOT_FOUND, "text/plain", "only /healthz, /readyz and /metrics here\n");
    }
    if let Some(name) = path.strip_prefix(LOGIN_PREFIX) {
        let name = name.to_string();
        let response = if request.method() == Method::POST {
            login(request, &name, peer, shared).await
        } else {
            respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "POST {\"username\", \"password\"}\n")
        };
        shared.metrics.request(LOGIN_PREFIX, response.status().as_u16());
        return response;
    }
    let (label, response) = match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => ("/healthz", respond(StatusCode::OK, "text/plain", "ok\n")),
        (&Method::GET, "/readyz") => (
            "/readyz",
            if shared.ready.load(Ordering::SeqCst) && !shared.validators().is_empty() {
                respond(StatusCode::OK, "text/plain", "ok\n")
            } else {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            },
        ),
        (&Method::GET, "/metrics") => {
            let format = MetricsFormat::negotiate(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
            let mut response = respond(StatusCode::OK, format.content_type(), shared.metrics.render(format));
            response.headers_mut().insert(VARY, HeaderValue::from_static("accept"));
            ("/metrics", response)
        }
        (&Method::POST, REVIEW_PATH) if shared.review_needs_client_cert && !peer.verified_client => (
            REVIEW_PATH,
            review_error(
                StatusCode::UNAUTHORIZED,
                review::V1,
                "TokenReviews need a client certificate signed by the configured client CA".into(),
            ),
        ),
        (&Method::POST, REVIEW_PATH) => {
            let response = match tokio::time::timeout(REQUEST_TIMEOUT, token_review(request, shared)).await {
                Ok(response) => response,
                Err(_) => review_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    review::V1,
                    format!("the review took longer than {} s", REQUEST_TIMEOUT.as_secs()),
                ),
            };
            (REVIEW_PATH, response)
        }
        (_, REVIEW_PATH) => {
            (REVIEW_PATH, respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "POST a TokenReview\n"))
        }
        _ => ("other", respond(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    };
    shared.metrics.request(label, response.status().as_u16());
    response
}

async fn token_review(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body();
    let too_large = |body| async move {
        // Read (and drop) a bounded amount more, so a client still sending its
        // body sees the answer instead of a broken connection.
        drain(body).await;
        review_error(StatusCode::PAYLOAD_TOO_LARGE, review::V1, format!("the body is over {MAX_BODY} bytes"))
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(body).await;
    }
    let deadline = Duration::from_millis(shared.listener_config.request_body_timeout_ms);
    let body = match read_body(&mut body, MAX_BODY, deadline).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return too_large(body).await,
        Err(BodyError::TimedOut) => {
            let message = format!("the body did not arrive within {} ms", deadline.as_millis());
            return review_error(StatusCode::REQUEST_TIMEOUT, review::V1, message);
        }
        Err(BodyError::Broken(e)) => {
            return review_error(StatusCode::BAD_REQUEST, review::V1, format!("cannot read the body: {e}"));
        }
    };
    let parsed = match review::parse(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            let version = match &e {
                review::BadReview::WrongKind(_) | review::BadReview::Malformed(_) => review::V1,
                review::BadReview::WrongVersion(_) => review::V1,
            };
            return review_error(StatusCode::BAD_REQUEST, version, e.to_string());
        }
    };
    let version = parsed.api_version.as_str();
    let token = parsed.spec.token.as_str();
    if token.is_empty() {
        shared.metrics.review("", "denied", started.elapsed().as_secs_f64());
        return review_error(StatusCode::OK, version, "the token is empty".into());
    }
    let validators = shared.validators();
    let audiences = &parsed.spec.audiences;
    let (verdict, source) = shared
        .cache
        .get_or_compute(token, audiences, || async {
            validators.review(token, audiences, &shared.metrics, &shared.rechecks).await
        })
        .await;
    shared.metrics.cache(source == Source::Hit);
    let seconds = started.elapsed().as_secs_f64();
    match verdict {
        Verdict::Authenticated { validator, user, audiences } => {
            tracing::debug!(%validator, user = %user.username, ms = seconds * 1000.0, "authenticated");
            shared.metrics.review(&validator, "authenticated", seconds);
            review_response(
                StatusCode::OK,
                version,
                TokenReviewStatus { authenticated: true, user: Some(user), audiences, error: None },
            )
        }
        Verdict::Denied { reason } => {
            tracing::debug!(%reason, ms = seconds * 1000.0, "denied");
            shared.metrics.review("", "denied", seconds);
            review_error(StatusCode::OK, version, reason)
        }
        Verdict::Transient { reason } => {
            tracing::warn!(%reason, "cannot decide now; the API server will retry");
            shared.metrics.review("", "transient", seconds);
            review_error(StatusCode::SERVICE_UNAVAILABLE, version, reason)
        }
        Verdict::Busy => {
            shared.metrics.review("", "busy", seconds);
            review_error(StatusCode::TOO_MANY_REQUESTS, version, "too many reviews in progress".into())
        }
        Verdict::Throttled { reason } => {
            tracing::warn!(%reason, "a backend is throttling; the API server will retry");
            shared.metrics.review("", "throttled", seconds);
            review_error(StatusCode::TOO_MANY_REQUESTS, version, reason)
        }
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", serde_json::to_vec(&value).unwrap_or_default())
}

/// `POST /v1/login/NAME`: check a password with login backend NAME and issue
/// a token. Every failure looks the same to the client, so it cannot tell an
/// unknown user from a wrong password.
async fn login(request: Request<Incoming>, name: &str, peer: Peer, shared: &Shared) -> Response<Full<Bytes>> {
    let validators = shared.validators();
    let (Some(issuer), Some((backend, identities)), Some(limiter)) =
        (validators.issuer.clone(), validators.login_backend(name), shared.limiter.as_ref())
    else {
        return json(StatusCode::NOT_FOUND, serde_json::json!({ "error": format!("no login backend named `{name}`") }));
    };
    let deadline = Duration::from_millis(shared.listener_config.request_body_timeout_ms);
    let bytes = match read_body(&mut request.into_body(), MAX_LOGIN_BODY, deadline).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return json(StatusCode::PAYLOAD_TOO_LARGE, serde_json::json!({ "error": "the body is too large" }));
        }
        Err(BodyError::TimedOut) => {
            let error = format!("the body did not arrive within {} ms", deadline.as_millis());
            return json(StatusCode::REQUEST_TIMEOUT, serde_json::json!({ "error": error }));
        }
        Err(BodyError::Broken(_)) => {
            return json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": "cannot read the body" }));
        }
    };
    let Ok(credentials) = serde_json::from_slice::<LoginRequest>(&bytes) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "send JSON: {\"username\": \"...\", \"password\": \"...\"}" }),
        );
    };
    let client = peer.addr.ip();
    // Checked and counted in one step, before the backend runs: logins in
    // flight count as failures until they succeed.
    let attempt = match limiter.begin(name, &credentials.username, client) {
        Ok(attempt) => attempt,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(backend = name, %client, "login refused: too many failed or pending logins");
            let mut response = json(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({ "error": format!("too many failed logins; try again in {seconds} s"), "retryAfterSeconds": seconds }),
            );
            if let Ok(value) = seconds.to_string().parse() {
                response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    let Some(permit) = validators.slot_for(name).await else {
        attempt.withdraw();
        return json(StatusCode::TOO_MANY_REQUESTS, serde_json::json!({ "error": "too many requests in progress" }));
    };
    let outcome = backend.authenticate(&credentials.username, &credentials.password).await;
    drop(permit);
    match outcome {
        Ok(crate::bindings::LoginOutcome::Authenticated(user)) => {
            attempt.succeeded();
            let user = super::review::UserInfo::from(user);
            if let Err(refusal) = identities.check(&user) {
                tracing::warn!(backend = name, %client, "login refused: identity not granted: {refusal}");
                shared.metrics.identity_refusal(name, refusal.kind);
                return json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({ "error": "the login backend named an identity it may not assert" }),
                );
            }
            match issuer.mint(&user, name) {
                Ok((token, expires_at)) => {
                    tracing::info!(backend = name, user = %user.username, %client, "login");
                    shared.metrics.review(name, "login", 0.0);
                    json(
                        StatusCode::OK,
                        serde_json::json!({
                            "token": token,
                            "expiresAt": expires_at,
                            "expirationTimestamp": crate::exec::credential::rfc3339(expires_at),
                            "user": { "username": user.username, "groups": user.groups },
                        }),
                    )
                }
                Err(e) => {
                    tracing::error!("cannot sign a token: {e}");
                    json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({ "error": "cannot issue a token" }))
                }
            }
        }
        Ok(crate::bindings::LoginOutcome::Rejected(reason)) => {
            attempt.failed();
            tracing::info!(backend = name, %client, "login failed: {reason}");
            json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "invalid username or password" }))
        }
        Err(error) => {
            // Not known to be right: it counts, or an error the attacker can
            // provoke would be a way around the limits.
            attempt.failed();
            tracing::warn!(backend = name, "login backend failed: {error}");
            shared.metrics.plugin_failure(name, "login");
            let status =
                if error.is_transient() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
            json(status, serde_json::json!({ "error": "the login backend is unavailable; try again later" }))
        }
    }
}

/// Most bytes read and dropped from an oversized body before answering.
const MAX_DRAIN: usize = 8 * 1024 * 1024;
/// Longest time spent draining.
const DRAIN_BODY_TIMEOUT: Duration = Duration::from_secs(5);

async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_BODY_TIMEOUT, async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > MAX_DRAIN {
                break;
            }
        }
    })
    .await;
}

/// Identity of a file's content, to notice changes.
type Stamp = Option<crate::fsutil::ContentStamp>;

/// Each watched file with its stamp.
type Stamps = Vec<(PathBuf, Stamp)>;

/// The stamps of `set`'s watched files just after it loaded, with the
/// configuration file's stamp as it was before it was read. Taken at load time
/// (not when the watcher first runs) so a change made right after start-up
/// is not mistaken for the loaded state.
fn stamps_after_load(set: &ValidatorSet, config: &Path, config_stamp: Stamp) -> Stamps {
    set.watched
        .iter()
        .map(|p| {
            let s = if p == config { config_stamp } else { stamp(p) };
            (p.clone(), s)
        })
        .collect()
}

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| crate::fsutil::ContentStamp::of(&m))
}

/// Re-resolve the OCI tags of the serving validators every `[plugins]
/// update-interval-seconds`: a new digest is pulled, verified and stored,
/// which changes its ref file, which [`reload_loop`] then loads beside the
/// serving set. A registry that cannot be reached is a warning: the stored
/// copy keeps serving.
async fn update_loop(shared: Arc<Shared>) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(RELOAD_POLL).await;
        let set = shared.validators();
        let Some(interval) = set.plugin_policy.update_interval_seconds.map(Duration::from_secs) else { continue };
        if set.oci_tags.is_empty() || last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let sources = shared.options.plugin_sources();
        let _ = tokio::task::spawn_blocking(move || {
            for reference in &set.oci_tags {
                match sources.update(reference, &set.plugin_policy) {
                    Ok(updated) if updated.before.as_ref() != Some(&updated.after) => {
                        tracing::info!("{reference} now resolves to {}; loading it", updated.after);
                    }
                    Ok(_) => tracing::debug!("{reference} is unchanged"),
                    Err(crate::plugin::prepare::PrepareError::Registry { error, .. }) if error.is_unreachable() => {
                        tracing::warn!("cannot re-resolve {reference}, the stored copy keeps serving: {error}");
                    }
                    Err(e) => tracing::error!("not updating {reference}, the stored copy keeps serving: {e}"),
                }
            }
        })
        .await;
    }
}

/// Watch the configuration, plugin and TLS files (and SIGHUP); swap in a new
/// validator set when they change. A broken new configuration is logged and
/// the old one keeps serving.
async fn reload_loop(shared: Arc<Shared>) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut watched = std::mem::take(&mut *shared.loaded_stamps.lock().unwrap_or_else(|e| e.into_inner()));
    let mut interval = tokio::time::interval(RELOAD_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = interval.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        if let Some(tls) = &shared.tls {
            match tls.reload_if_changed() {
                Ok(true) => tracing::info!("reloaded the TLS certificate"),
                Ok(false) => {}
                Err(e) => tracing::error!("keeping the previous TLS certificate: {e}"),
            }
        }
        let changed = watched.iter().any(|(path, old)| stamp(path) != *old);
        if !(forced || changed) {
            continue;
        }
        // Whatever the outcome, do not retry the same broken files every poll.
        watched = watched
            .into_iter()
            .map(|(p, _)| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        let reload = Arc::clone(&shared);
        let result = tokio::task::spawn_blocking(move || {
            let config_stamp = stamp(&reload.options.config);
            // With the overrides applied, or `--listen` would look like a change.
            let config = reload.options.load_config().map_err(|e| e.to_string())?;
            if config.server != reload.listener_config {
                tracing::warn!("[server] settings changed; they take effect after a restart");
            }
            let set =
                load_validators(&reload.options, &config, &reload.runtime, &reload.slots).map_err(|e| e.to_string())?;
            // On a blocking thread: the new set's setup runs beside the old set serving.
            tokio::runtime::Handle::current().block_on(set.setup()).map_err(|e| e.to_string())?;
            let stamps = stamps_after_load(&set, &reload.options.config, config_stamp);
            Ok::<_, String>((set, stamps))
        })
        .await;
        match result {
            Ok(Ok((set, stamps))) => {
                watched = stamps;
                let count = set.len();
                *shared.validators.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                shared.cache.clear();
                shared.rechecks.clear();
                shared.metrics.reload(true);
                shared.metrics.set_validators(count);
                tracing::info!("reloaded the configuration: {count} validator(s)");
            }
            Ok(Err(e)) => {
                tracing::error!("the new configuration is broken; the previous one keeps serving: {e}");
                shared.metrics.reload(false);
            }
            Err(e) => {
                tracing::error!("reloading failed: {e}");
                shared.metrics.reload(false);
            }
        }
    }
}
