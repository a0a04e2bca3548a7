//! Throughput and latency of `credbroker serve`, in one run, on the real stack
//! (hyper over rustls with client certificates), server and load generator in
//! one process on this machine:
//!
//! - (a) the token-file validator in wasm, (b) the same logic compiled natively
//!   into the server, (c) a fixed answer (the stack's floor), (d) response-cache
//!   hits: TokenReviews/s and p50/p99 at concurrency 64. Targets: a/b ≥ 0.5,
//!   d/c ≥ 0.8.
//! - (h) the token-file validator with a one-line file: the cost of a fresh
//!   wasm instance per review, against the floor (c).
//! - p99 at 1000 reviews/s for (a), for a server-issued (login) token
//!   (signature check + cached re-check; target ≥ 0.5 × the token-file
//!   throughput), and for an RS256 JWT (the `jwt` validator, JWKS cached).
//!   Target p99 ≤ 5 ms.
//! - (i) the `jwt` validator reading an AuthenticationConfiguration of two
//!   issuers and 8 CEL expressions (rules and mappings), against (f), the same
//!   RS256 JWTs without CEL. Target ≥ 0.8: the file is parsed and the
//!   expressions compiled once, by the validator's setup; a review evaluates
//!   them.
//! - Peak RSS of a `credbroker serve` process with 256 connections busy
//!   (target ≤ 150 MB).
//!
//! Run with `cargo bench --bench webhook`; `WEBHOOK_SECONDS` sets the
//! measuring time per case (default 5), `WEBHOOK_LOG` (e.g. `debug`) shows the
//! in-process servers' log on stderr.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use credbroker_host::bindings::LoginOutcome;
use credbroker_host::bindings::types::{ReviewOutcome, UserInfo};
use credbroker_host::runtime::RunError;
use credbroker_host::webhook::login::{LoginConfig, TokenIssuer};
use credbroker_host::webhook::validators::{Backend, LoginBackend, PluginSlots, Validator, ValidatorSet};
use credbroker_host::webhook::{ServeOptions, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

const TOKENS: usize = 1000;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let issue = |sans: Vec<String>, usage| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    Pki {
        ca,
        server: issue(vec!["127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth),
        client: issue(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn client(pki: &Pki) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(pki.client.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.client.1.as_bytes()).unwrap(),
        )
        .unwrap();
    reqwest::Client::builder().use_preconfigured_tls(tls).http1_only().pool_max_idle_per_host(512).build().unwrap()
}

fn review_body(token: &str) -> Vec<u8> {
    format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#)
        .into_bytes()
}

/// The token-file logic compiled natively: the same table (digest to the
/// encoded user, in a hash map as the host keeps it), the same lookup.
struct NativeTokenFile {
    table: std::collections::HashMap<[u8; 32], Vec<u8>>,
}

#[async_trait::async_trait]
impl Backend for NativeTokenFile {
    async fn review(&self, token: &str, _audiences: &[String]) -> Result<ReviewOutcome, RunError> {
        let found = self.table.get(&credbroker_plugin_token_file::token_key(token));
        Ok(match found.and_then(|value| credbroker_plugin_token_file::decode(value)) {
            Some(user) => ReviewOutcome::Authenticated(credbroker_host::bindings::types::Authenticated {
                user: UserInfo { username: user.username, uid: user.uid, groups: user.groups, extra: Vec::new() },
                audiences: Vec::new(),
            }),
            None => ReviewOutcome::Rejected("unknown token".into()),
        })
    }
}

/// The floor: the same answer for every token, no work.
struct Fixed;

#[async_trait::async_trait]
impl Backend for Fixed {
    async fn review(&self, _token: &str, _audiences: &[String]) -> Result<ReviewOutcome, RunError> {
        Ok(ReviewOutcome::Authenticated(credbroker_host::bindings::types::Authenticated {
            user: UserInfo {
                username: "alice".into(),
                uid: Some("1".into()),
                groups: vec!["devs".into()],
                extra: Vec::new(),
            },
            audiences: Vec::new(),
        }))
    }
}

/// A directory that always knows the user (so re-checks cost only the cache).
struct Directory;

#[async_trait::async_trait]
impl LoginBackend for Directory {
    async fn authenticate(&self, username: &str, _password: &str) -> Result<LoginOutcome, RunError> {
        Ok(LoginOutcome::Authenticated(UserInfo {
            username: username.into(),
            uid: None,
            groups: vec![],
            extra: vec![],
        }))
    }
    async fn lookup(&self, username: &str) -> Result<Option<UserInfo>, RunError> {
        Ok(Some(UserInfo { username: username.into(), uid: None, groups: vec!["devs".into()], extra: vec![] }))
    }
}

struct Stats {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Whether a review was answered 200 with a whole body.
async fn answered(response: reqwest::Result<reqwest::Response>) -> bool {
    match response {
        Ok(response) if response.status() == 200 => response.bytes().await.is_ok(),
        _ => false,
    }
}

/// Closed loop: `concurrency` workers, each sending the next review as soon as
/// the last is answered, for `seconds`: the latencies of the answered ones and
/// how many failed.
async fn closed_loop_latencies(
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    concurrency: usize,
    seconds: f64,
) -> (Vec<Duration>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (http, url, stop, errors) = (http.clone(), url.to_string(), Arc::clone(&stop), Arc::clone(&errors));
        let tokens: Vec<String> = tokens.to_vec();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let body = review_body(&tokens[i % tokens.len()]);
                if answered(http.post(&url).body(body).send().await).await {
                    latencies.push(started.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += concurrency;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    (all, errors.load(Ordering::Relaxed))
}

fn stats(mut all: Vec<Duration>, errors: u64, seconds: f64) -> Stats {
    all.sort();
    Stats { per_second: all.len() as f64 / seconds, p50: percentile(&all, 0.5), p99: percentile(&all, 0.99), errors }
}

/// A closed loop of `seconds`.
async fn closed_loop(http: &reqwest::Client, url: &str, tokens: &[String], concurrency: usize, seconds: f64) -> Stats {
    let (all, errors) = closed_loop_latencies(http, url, tokens, concurrency, seconds).await;
    stats(all, errors, seconds)
}

/// One second of warm-up, then a [`closed_loop`] of `seconds`.
async fn measure(http: &reqwest::Client, url: &str, tokens: &[String], concurrency: usize, seconds: f64) -> Stats {
    closed_loop(http, url, tokens, concurrency, 1.0).await;
    closed_loop(http, url, tokens, concurrency, seconds).await
}

/// Cases compared by a ratio, measured in turns: a warm-up of each, then
/// `ROUNDS` rounds of a closed loop of `seconds / ROUNDS` on each. This
/// machine's speed drifts by a third within minutes; in turns, the drift falls
/// on every case of a ratio alike.
async fn interleaved(http: &reqwest::Client, cases: &[(&str, &[String])], seconds: f64) -> Vec<Stats> {
    const ROUNDS: usize = 8;
    for (url, tokens) in cases {
        closed_loop(http, url, tokens, 64, 0.5).await;
    }
    let mut runs: Vec<(Vec<Duration>, u64)> = cases.iter().map(|_| (Vec::new(), 0)).collect();
    for _ in 0..ROUNDS {
        for ((url, tokens), run) in cases.iter().zip(&mut runs) {
            let (latencies, errors) = closed_loop_latencies(http, url, tokens, 64, seconds / ROUNDS as f64).await;
            run.0.extend(latencies);
            run.1 += errors;
        }
    }
    runs.into_iter().map(|(all, errors)| stats(all, errors, seconds)).collect()
}

/// A set of one validator built in code, for any token and audience.
fn one_validator(
    name: &str,
    backend: Option<Arc<dyn Backend>>,
    login: Option<Arc<dyn LoginBackend>>,
    slots: PluginSlots,
) -> ValidatorSet {
    ValidatorSet::new(
        vec![Validator {
            name: name.into(),
            identities: Default::default(),
            token_prefix: None,
            audiences: Vec::new(),
            backend,
            login,
        }],
        slots,
    )
}

/// Open loop: `rate` reviews per second regardless of answers, for `seconds`.
async fn open_loop(http: &reqwest::Client, url: &str, tokens: &[String], rate: u32, seconds: f64) -> Stats {
    let total = (rate as f64 * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut pending = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (http, url, errors) = (http.clone(), url.to_string(), Arc::clone(&errors));
        let body = review_body(&tokens[i % tokens.len()]);
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            if answered(http.post(&url).body(body).send().await).await {
                Some(sent.elapsed())
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }));
    }
    let mut all = Vec::new();
    for task in pending {
        all.extend(task.await.unwrap());
    }
    all.sort();
    Stats {
        per_second: all.len() as f64 / started.elapsed().as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn row(name: &str, s: &Stats) {
    println!(
        "  {name:<52} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        s.per_second,
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0,
        s.errors
    );
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    path
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // WEBHOOK_LOG=filter shows the server's log (e.g. `info`), as CREDBROKER_LOG does.
    if let Ok(filter) = std::env::var("WEBHOOK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let seconds: f64 = std::env::var("WEBHOOK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let ca = write(dir.path(), "ca.crt", &pki.ca);
    let cert = write(dir.path(), "tls.crt", &pki.server.0);
    let key = write(dir.path(), "tls.key", &pki.server.1);
    let mut csv = String::new();
    for i in 0..TOKENS {
        csv.push_str(&format!("token-{i:04},user-{i},{i},\"devs,ops\"\n"));
    }
    let csv_path = write(dir.path(), "tokens.csv", &csv);
    let tokens: Vec<String> = (0..TOKENS).map(|i| format!("token-{i:04}")).collect();
    let signing =
        write(dir.path(), "signing.pem", &KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem());
    let token_file = format!(
        "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n[validators.limits]\ncpu-ms = 200\n",
        csv = csv_path.display().to_string(),
    );
    let config = |positive_ttl: u32, validators: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls-cert-file = {cert:?}\ntls-key-file = {key:?}\nclient-ca-file = {ca:?}\nmax-concurrent-reviews = 64\nmax-plugin-memory-mib = 512\n\
             [cache]\npositive-ttl-seconds = {positive_ttl}\nnegative-ttl-seconds = 0\n{validators}",
            cert = cert.display().to_string(),
            key = key.display().to_string(),
            ca = ca.display().to_string(),
        )
    };
    // A configuration file of its own for every server: a server reloads when
    // its file changes, and one written for the next server would replace the
    // validators a case set in code.
    let servers = AtomicUsize::new(0);
    let serve_with = |ttl: u32, validators: String| {
        let n = servers.fetch_add(1, Ordering::Relaxed);
        let path = write(dir.path(), &format!("serve-{n}.toml"), &config(ttl, &validators));
        let artifacts = dir.path().join("artifacts");
        let plugin_store = dir.path().join("oci");
        async move {
            Server::bind(ServeOptions {
                config: path,
                plugin_dirs: Vec::new(),
                plugin_store,
                artifact_dir: Some(artifacts),
                listen: None,
                insecure_plain_http: false,
            })
            .await
            .expect("server")
        }
    };
    let serve = |ttl: u32| serve_with(ttl, token_file.clone());
    let http = client(&pki);
    let start = |server: Server| {
        let url = format!("https://{}/authenticate", server.local_addr().unwrap());
        let handle = tokio::spawn(server.run(std::future::pending()));
        (url, handle)
    };

    println!("credbroker serve, {} s per case, concurrency 64 unless noted:", seconds);
    // (a) wasm token-file, no response cache; (h) the same validator with a
    // one-line file: what a fresh instance per review costs, apart from the
    // validator's own work; (b) the same logic natively; (c) the floor. In
    // turns, for their ratios.
    let (url_a, a_handle) = start(serve(0).await);
    let one_line = write(dir.path(), "one.csv", "token-0007,user-7,7,\"devs,ops\"\n");
    let (url_h, h_handle) = start(
        serve_with(0, token_file.replace(&csv_path.display().to_string(), &one_line.display().to_string())).await,
    );
    let server = serve(0).await;
    server.replace_validators(|slots| {
        let mut table = std::collections::HashMap::new();
        for pair in credbroker_plugin_token_file::table_entries(&csv) {
            let (key, value) = pair.unwrap();
            table.entry(key).or_insert(value);
        }
        one_validator("native", Some(Arc::new(NativeTokenFile { table })), None, slots)
    });
    let (url_b, b_handle) = start(server);
    let server = serve(0).await;
    server.replace_validators(|slots| one_validator("fixed", Some(Arc::new(Fixed)), None, slots));
    let (url_c, c_handle) = start(server);
    let one_token = [tokens[7].clone()];
    let [a, h, b, c] = <[Stats; 4]>::try_from(
        interleaved(&http, &[(&url_a, &tokens), (&url_h, &one_token), (&url_b, &tokens), (&url_c, &tokens)], seconds)
            .await,
    )
    .unwrap_or_else(|_| unreachable!());
    row("(a) token-file validator in wasm", &a);
    row("(h) token-file, one-line file (wasm instance)", &h);
    row("(b) the same logic compiled natively", &b);
    row("(c) fixed answer (the stack's floor)", &c);
    // Fresh connections first: those left idle while the other cases ran may
    // be closed by the server just as the client reuses them.
    closed_loop(&http, &url_a, &tokens, 64, 0.5).await;
    let a_rate = open_loop(&http, &url_a, &tokens, 1000, seconds).await;
    row("(a) at 1000 reviews/s", &a_rate);
    for handle in [h_handle, b_handle, c_handle] {
        handle.abort();
    }

    // (d) response-cache hits: one token, cached.
    let (url, handle) = start(serve(300).await);
    let one = vec![tokens[7].clone()];
    let d = measure(&http, &url, &one, 64, seconds).await;
    row("(d) response-cache hits", &d);
    handle.abort();

    // (e) a server-issued token: signature check + cached re-check.
    let login: LoginConfig =
        toml::from_str(&format!("signing-key-file = {:?}\nrecheck-seconds = 3600", signing.display().to_string()))
            .unwrap();
    let issuer = Arc::new(TokenIssuer::new(&login).unwrap());
    let issued: Vec<String> = (0..64)
        .map(|i| {
            let user =
                credbroker_host::webhook::review::UserInfo { username: format!("user-{i}"), ..Default::default() };
            issuer.mint(&user, "directory").unwrap().0
        })
        .collect();
    let server = serve(0).await;
    server.replace_validators(|slots| {
        one_validator("directory", None, Some(Arc::new(Directory)), slots).with_issuer(Arc::clone(&issuer))
    });
    let (url, handle) = start(server);
    let e = measure(&http, &url, &issued, 64, seconds).await;
    row("(e) server-issued token (Ed25519 + cached re-check)", &e);
    let e_rate = open_loop(&http, &url, &issued, 1000, seconds).await;
    row("(e) at 1000 reviews/s", &e_rate);
    handle.abort();

    // (f) RS256 JWTs through the `jwt` validator, JWKS cached (fetched once
    // from an issuer on loopback).
    let (rsa, jwk) = rsa_key(dir.path());
    let issuer_url = serve_issuer(jwk.clone(), None).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench".into());
    let jwts: Vec<String> = (0..64)
        .map(|i| {
            let claims = serde_json::json!({
                "iss": issuer_url, "aud": "bench", "sub": format!("user-{i}"),
                "iat": now, "exp": now + 3600, "groups": ["devs", "ops"],
            });
            jsonwebtoken::encode(&header, &claims, &rsa).unwrap()
        })
        .collect();
    let jwt_validator = format!(
        "[[validators]]\nname = \"idp\"\nplugin = \"jwt\"\n[validators.settings]\nissuer = {issuer_url:?}\naudiences = \"bench\"\n[validators.grants]\nhttp = [{issuer_url:?}]\n"
    );
    let (url_f, f_handle) = start(serve_with(0, jwt_validator).await);

    // (i) the same JWTs through an AuthenticationConfiguration of two issuers
    // (https, as the file requires) and 8 CEL expressions.
    let tls_issuer = serve_issuer(jwk, Some(tls_acceptor(&pki))).await;
    let cel_jwts: Vec<String> = (0..64)
        .map(|i| {
            let claims = serde_json::json!({
                "iss": tls_issuer, "aud": "bench", "sub": format!("user-{i}"), "iat": now, "exp": now + 3600,
                "email": format!("user-{i}@bench.example"), "email_verified": true,
                "groups": ["devs", "ops"], "scope": "openid api:read api:write", "tenant": "blue",
            });
            jsonwebtoken::encode(&header, &claims, &rsa).unwrap()
        })
        .collect();
    let authn = write(dir.path(), "authn.yaml", &authentication_configuration(&tls_issuer));
    let cel_validator = format!(
        "[[validators]]\nname = \"idp\"\nplugin = \"jwt\"\n[validators.settings]\nauthentication-config = \"file:{authn}\"\n[validators.grants]\nhttp = [{tls_issuer:?}]\nca-file = {ca:?}\n",
        authn = authn.display(),
        ca = ca.display().to_string(),
    );
    let (url_cel, cel_handle) = start(serve_with(0, cel_validator).await);
    let [f, cel] = <[Stats; 2]>::try_from(interleaved(&http, &[(&url_f, &jwts), (&url_cel, &cel_jwts)], seconds).await)
        .unwrap_or_else(|_| unreachable!());
    row("(f) RS256 JWT, jwt validator in wasm", &f);
    row("(i) jwt, AuthenticationConfiguration, 2 issuers, 8 CEL", &cel);
    closed_loop(&http, &url_f, &jwts, 64, 0.5).await;
    let f_rate = open_loop(&http, &url_f, &jwts, 1000, seconds).await;
    row("(f) at 1000 reviews/s", &f_rate);
    f_handle.abort();
    cel_handle.abort();

    // (g) a `credbroker serve` process of its own, 256 connections busy.
    let (g, peak_rss_kib) =
        serve_process_rss(&http, write(dir.path(), "serve-rss.toml", &config(0, &token_file)), &tokens, seconds).await;
    row("(g) 256 connections, token-file (own process)", &g);

    // (i) token-file with 100,000 lines, (j) with 1,000,000: indexed once per
    // load by the validator's setup; each review is one hash probe.
    let big_validator = |path: &std::path::Path| {
        format!(
            "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {p:?}\n[validators.grants]\nfiles = [{p:?}]\n[validators.limits]\ncpu-ms = 60000\ntimeout-ms = 120000\nmax-call-bytes = 134217728\nmemory-mib = 512\n",
            p = path.display().to_string()
        )
    };
    let (csv_100k, tokens_100k) = generated_token_file(dir.path(), 100_000);
    let loaded = Instant::now();
    let (url, handle) = start(serve_with(0, big_validator(&csv_100k)).await);
    let load_100k = loaded.elapsed();
    // In turns with (a) again, for their ratio.
    let [a_again, i] =
        <[Stats; 2]>::try_from(interleaved(&http, &[(&url_a, &tokens), (&url, &tokens_100k)], seconds).await)
            .unwrap_or_else(|_| unreachable!());
    row("(a) again, in turns with (i)", &a_again);
    row("(i) token-file, 100,000 lines", &i);
    // Reviews while the file changes under them, reloaded every ~2 s.
    let rewriting = Arc::new(AtomicBool::new(true));
    let rewriter = {
        let (rewriting, path) = (Arc::clone(&rewriting), csv_100k.clone());
        tokio::task::spawn_blocking(move || {
            let original = std::fs::read_to_string(&path).unwrap();
            let mut round = 0;
            while rewriting.load(Ordering::Relaxed) {
                round += 1;
                let staged = path.with_extension("new");
                std::fs::write(&staged, format!("{original}tok-extra-{round},extra,{round}\n")).unwrap();
                std::fs::rename(&staged, &path).unwrap();
                std::thread::sleep(Duration::from_millis(2500));
            }
            round
        })
    };
    let during = open_loop(&http, &url, &tokens_100k, 1000, seconds.max(6.0)).await;
    rewriting.store(false, Ordering::Relaxed);
    let rewrites = rewriter.await.unwrap();
    row("(i) 100,000 lines at 1000/s while the file reloads", &during);
    let reloads = metric(&http, &url, "credbroker_reloads_total{result=\"success\"}").await;
    handle.abort();
    let reload = reload_time(&dir.path().join("artifacts"), &config(0, &big_validator(&csv_100k)), dir.path());

    let (csv_1m, tokens_1m) = generated_token_file(dir.path(), 1_000_000);
    let loaded = Instant::now();
    let (url, handle) = start(serve_with(0, big_validator(&csv_1m)).await);
    let load_1m = loaded.elapsed();
    let [a_third, j] =
        <[Stats; 2]>::try_from(interleaved(&http, &[(&url_a, &tokens), (&url, &tokens_1m)], seconds).await)
            .unwrap_or_else(|_| unreachable!());
    row("(a) again, in turns with (j)", &a_third);
    row("(j) token-file, 1,000,000 lines", &j);
    handle.abort();
    a_handle.abort();
    let (i_rss, rss_100k) = serve_process_rss(
        &http,
        write(dir.path(), "serve-rss-100k.toml", &config(0, &big_validator(&csv_100k))),
        &tokens_100k,
        seconds,
    )
    .await;
    row("(i) 256 connections, 100,000 lines (own process)", &i_rss);

    // (k) two validators stalled in host calls (their backends accept and
    // never answer) take reviews all the time, while good reviews and
    // probes come at a steady rate. The stalled tokens pass each validator's
    // local checks, so every one of them waits in an HTTP call: the jwt
    // validator for its issuer's discovery document, aws-iam in the TLS
    // handshake with "STS".
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let silent_url = format!("http://{silent_addr}");
    let silent_sts = format!("https://{silent_addr}");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let stalling = format!(
        "[[validators]]\nname = \"stalled-jwt\"\nplugin = \"jwt\"\ntoken-prefix = \"eyJ\"\n[validators.settings]\nissuer = {silent_url:?}\naudiences = \"x\"\n[validators.grants]\nhttp = [{silent_url:?}]\n[validators.limits]\ntimeout-ms = 3000\n\
         [[validators]]\nname = \"stalled-aws\"\nplugin = \"aws-iam\"\ntoken-prefix = \"k8s-aws-v1.\"\n[validators.settings]\ncluster-id = \"c\"\nsts-hosts = \"{silent_addr}\"\n[validators.grants]\nhttp = [{silent_sts:?}]\n[validators.limits]\ntimeout-ms = 3000\n{token_file}"
    );
    let (url, handle) = start(serve_with(0, stalling).await);
    let stalled_jwts: Vec<String> = (0..16)
        .map(|i| {
            let claims = serde_json::json!({
                "iss": silent_url, "aud": "x", "sub": format!("user-{i}"), "iat": now, "exp": now + 3600,
            });
            jsonwebtoken::encode(&header, &claims, &rsa).unwrap()
        })
        .collect();
    let amz_date: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let presigned = |i: usize| {
        use base64::Engine as _;
        let url = format!(
            "https://{silent_addr}/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIABENCH{i:04}%2F{day}%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date={amz_date}\
             &X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=00",
            day = &amz_date[..8],
        );
        format!("k8s-aws-v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
    };
    let attack = {
        let (http, url) = (http.clone(), url.clone());
        let stalled: Vec<String> =
            (0..32).map(|i| if i % 2 == 0 { stalled_jwts[i / 2].clone() } else { presigned(i) }).collect();
        tokio::spawn(async move { closed_loop(&http, &url, &stalled, 32, seconds + 2.0).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let k = open_loop(&http, &url, &tokens, 500, seconds).await;
    row("(k) good reviews at 500/s, 32 stalled in host calls", &k);
    let health = health_latency(&http, &url.replace("/authenticate", "/healthz"), 200).await;
    // Each stalled review ends at its validator's timeout-ms (3 s), as an error.
    row("(k) the stalled reviews themselves", &attack.await.unwrap());
    handle.abort();

    println!("ratios:");
    println!("  (a) wasm / (b) native          = {:.2} (target >= 0.8)", a.per_second / b.per_second);
    println!(
        "  (h) one-line wasm / (c) floor  = {:.2} (the cost of an instance per review)",
        h.per_second / c.per_second
    );
    println!("  (d) cache hits / (c) floor     = {:.2} (target >= 0.8)", d.per_second / c.per_second);
    println!("  (e) issued token / (a)         = {:.2} (target >= 0.5)", e.per_second / a.per_second);
    println!("  (i) jwt with 8 CEL / (f) jwt   = {:.2} (target >= 0.8)", cel.per_second / f.per_second);
    println!(
        "  p99 at 1000/s: token-file {:.2} ms, issued token {:.2} ms, RS256 JWT {:.2} ms (target <= 5 ms)",
        a_rate.p99.as_secs_f64() * 1000.0,
        e_rate.p99.as_secs_f64() * 1000.0,
        f_rate.p99.as_secs_f64() * 1000.0
    );
    println!(
        "  peak RSS of credbroker serve at 256 connections = {:.1} MB (target <= 150 MB)",
        peak_rss_kib as f64 / 1024.0
    );
    println!("  (i) 100,000 lines / (a) 1,000 lines = {:.2} (target >= 0.8)", i.per_second / a_again.per_second);
    println!("  (j) 1,000,000 lines / (a) 1,000 lines = {:.2} (loads and serves)", j.per_second / a_third.per_second);
    println!(
        "  load with setup: 100,000 lines {:.0} ms, 1,000,000 lines {:.0} ms; reload of 100,000 lines {:.0} ms (target <= 200 ms)",
        load_100k.as_secs_f64() * 1000.0,
        load_1m.as_secs_f64() * 1000.0,
        reload.as_secs_f64() * 1000.0
    );
    println!(
        "  p99 during {reloads} reloads ({rewrites} rewrites) at 1000/s = {:.2} ms (target <= 5 ms)",
        during.p99.as_secs_f64() * 1000.0
    );
    println!(
        "  peak RSS with 100,000 lines at 256 connections = {:.1} MB (target <= 150 MB)",
        rss_100k as f64 / 1024.0
    );
    println!(
        "  with 32 reviews stalled in host calls: good reviews p99 {:.2} ms (target <= 50 ms), /healthz p99 {:.2} ms (target <= 100 ms)",
        k.p99.as_secs_f64() * 1000.0,
        health.as_secs_f64() * 1000.0
    );
}

/// A token file of `lines` users in `dir`, and 1,000 of its tokens spread over it.
fn generated_token_file(dir: &std::path::Path, lines: usize) -> (std::path::PathBuf, Vec<String>) {
    let path = dir.join(format!("tokens-{lines}.csv"));
    let mut text = String::with_capacity(lines * 48);
    for i in 0..lines {
        text.push_str(&format!("tok-{i:08}-{:08x},user-{i},{i},\"team{}\"\n", i.wrapping_mul(2_654_435_761), i % 17));
    }
    std::fs::write(&path, text).unwrap();
    let tokens = (0..1000)
        .map(|k| k * (lines / 1000))
        .map(|i| format!("tok-{i:08}-{:08x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    (path, tokens)
}

/// How long loading `config` again takes (as a reload does: the plugin is
/// compiled already, its setup runs and is snapshotted): the second of two loads.
fn reload_time(artifacts: &std::path::Path, config: &str, dir: &std::path::Path) -> Duration {
    use credbroker_host::runtime::{Allocation, Runtime, RuntimeOptions};
    let path = write(dir, "reload.toml", config);
    let parsed = credbroker_host::webhook::config::ServerConfig::load(&path).unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeOptions {
            allocation: Allocation::Pooling { instances: 8, memory_bytes: 512 * 1024 * 1024 },
            artifact_dir: Some(artifacts.to_path_buf()),
        })
        .unwrap(),
    );
    let load = || {
        let started = Instant::now();
        let slots = credbroker_host::webhook::validators::PluginSlots::new(8, Duration::from_secs(5));
        let sources = credbroker_host::plugin::prepare::PluginSources {
            plugin_dirs: Vec::new(),
            store: credbroker_host::plugin::store::PluginStore::new(artifacts.join("oci")),
        };
        let set = ValidatorSet::load(&parsed, &runtime, &sources, slots).unwrap();
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio.block_on(set.setup()).unwrap();
        started.elapsed()
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                load();
                load()
            })
            .join()
            .unwrap()
    })
}

/// The value of the metric line starting with `name` on the server behind `url`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = http.get(url.replace("/authenticate", "/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// p99 of `count` GET /healthz, one every 10 ms.
async fn health_latency(http: &reqwest::Client, url: &str, count: usize) -> Duration {
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let _ = http.get(url).send().await.map(|r| r.status());
        all.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    all.sort();
    percentile(&all, 0.99)
}

/// An RSA key made by `openssl` for RS256, and its public JWK (`kid` bench).
fn rsa_key(dir: &std::path::Path) -> (jsonwebtoken::EncodingKey, serde_json::Value) {
    use base64::Engine as _;
    let pem = dir.join("rsa.pem");
    let made = std::process::Command::new("openssl").arg("genrsa").arg("-out").arg(&pem).arg("2048").output().unwrap();
    assert!(made.status.success(), "openssl genrsa: {}", String::from_utf8_lossy(&made.stderr));
    let modulus = std::process::Command::new("openssl")
        .arg("rsa")
        .arg("-in")
        .arg(&pem)
        .args(["-noout", "-modulus"])
        .output()
        .unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let jwk = serde_json::json!({
        "kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
        "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n), "e": "AQAB",
    });
    (jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&pem).unwrap()).unwrap(), jwk)
}

/// An OpenID issuer on loopback, over HTTPS when `tls` is given: its
/// discovery document and a JWKS holding `jwk`, and a second issuer at
/// `/second` with the same keys. Returns the (first) issuer URL.
async fn serve_issuer(jwk: serde_json::Value, tls: Option<tokio_rustls::TlsAcceptor>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let document =
        |issuer: &str| serde_json::json!({ "issuer": issuer, "jwks_uri": format!("{base}/jwks") }).to_string();
    let answers = Arc::new((
        document(&base),
        document(&format!("{base}/second")),
        serde_json::json!({ "keys": [jwk] }).to_string(),
    ));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answers, tls) = (Arc::clone(&answers), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            answer_issuer(stream, &answers).await;
                        }
                    }
                    None => answer_issuer(stream, &answers).await,
                }
            });
        }
    });
    base
}

/// One request to [`serve_issuer`]: the JWKS, or a discovery document.
async fn answer_issuer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    answers: &(String, String, String),
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut request = vec![0u8; 4096];
    let read = stream.read(&mut request).await.unwrap_or(0);
    let request = &request[..read];
    let body = if request.starts_with(b"GET /jwks") {
        &answers.2
    } else if request.starts_with(b"GET /second/") {
        &answers.1
    } else {
        &answers.0
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// TLS for the bench issuer, with the server certificate for 127.0.0.1.
fn tls_acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Two issuers and 8 CEL expressions: rules, mappings, an extra attribute and
/// a user rule for the first (the one the bench's tokens come from), a rule
/// and a mapping for the second.
fn authentication_configuration(issuer: &str) -> String {
    include_str!("../plugins/jwt/src/tests/bench-config.yaml").replace("ISSUER", issuer)
}

/// Run `credbroker serve --config CONFIG` as a process of its own, keep 256
/// connections busy for `seconds`, and return the figures with the server's
/// peak RSS in KiB (VmHWM).
async fn serve_process_rss(
    http: &reqwest::Client,
    config: std::path::PathBuf,
    tokens: &[String],
    seconds: f64,
) -> (Stats, u64) {
    use tokio::io::AsyncBufReadExt as _;
    let cache = config.with_file_name("rss-cache");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_credbroker"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("XDG_CACHE_HOME", &cache)
        .env("CREDBROKER_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("credbroker serve ended before serving");
        if let Some(rest) = line.split_once("serving TokenReviews on ").map(|(_, r)| r.to_string()) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stats = measure(http, &url, tokens, 256, seconds).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let _ = child.kill().await;
    (stats, peak)
}
