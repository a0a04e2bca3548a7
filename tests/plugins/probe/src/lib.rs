//! A test-only plugin that is both a provider and a validator. The `behavior`
//! setting picks what it does, from well-behaved (echo a setting, use a
//! capability) to hostile (loop, grow memory, recurse, panic, escape the
//! sandbox). Tests assert what the host makes of each.

use credbroker_sdk::{
    Credential, CredentialRequest, Error, Provider, ReviewOutcome, TokenReview, UserInfo, Validator, config, files,
    http, log, prompt,
};

/// What the plugin does, by behaviour; `Ok(text)` becomes the token or username.
fn act(request: Option<&CredentialRequest>) -> Result<Credential, Error> {
    let behavior = config::require("behavior")?;
    let text = match behavior.as_str() {
        "echo" => config::require("value")?,
        "http" => {
            let url = config::require("url")?;
            let follow = config::flag("follow", false)?;
            let response = http::Request::get(&url).follow_redirects(follow).send()?;
            format!("{}:{}", response.status, response.text()?.trim())
        }
        "file" => files::read_to_string(&config::require("path")?)?.trim().to_string(),
        "ambient" => ambient_report(),
        "prompt" => prompt::text("Your name?")?,
        "secret-prompt" => prompt::secret("Password:")?,
        "log-secret" => {
            let secret = config::require("secret")?;
            log::info(&format!("the secret is {secret}"));
            let minted = format!("minted-{secret}");
            log::mark_secret(&minted);
            log::info(&format!("minted {minted}"));
            "logged".to_string()
        }
        "cluster" => match request.and_then(|r| r.cluster.as_ref()) {
            Some(cluster) => format!(
                "{}|{}|{}",
                cluster.server,
                cluster.config.clone().unwrap_or_default(),
                cluster.certificate_authority_data.as_ref().map_or(0, Vec::len)
            ),
            None => "no-cluster".to_string(),
        },
        "interactive" => format!("{}", request.is_some_and(|r| r.interactive)),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(config::parse_or("ms", 1000u64)?));
            "rested".to_string()
        }
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1024 * 1024]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => format!("{}", recurse(std::hint::black_box(1))),
        "recurse-shadow" => format!("{}", recurse_shadow(std::hint::black_box(1))),
        "panic" => panic!("probe panicked on purpose"),
        "stdout" => {
            for i in 0..1000 {
                println!("{{\"kind\":\"ExecCredential\",\"junk\":{i}}}");
            }
            eprintln!("stderr from the probe");
            "after-stdout".to_string()
        }
        "log-flood" => {
            for i in 0..100_000 {
                log::warn(&format!("flood line {i} {}", "x".repeat(100)));
            }
            "after-flood".to_string()
        }
        "huge-token" => "x".repeat(config::parse_or("size", 2 * 1024 * 1024usize)?),
        "bad-pem" => return Ok(Credential::client_certificate("not a certificate", "not a key")),
        "expired" => return Ok(Credential::token("old").expires_at(1)),
        "absurd-expiry" => return Ok(Credential::token("forever").expires_at(i64::MAX / 2)),
        "fail" => return Err(Error::denied(config::get("message").unwrap_or_else(|| "no such user".into()))),
        "unavailable" => return Err(Error::unavailable("backend is down")),
        other => return Err(Error::misconfigured(format!("unknown behavior `{other}`"))),
    };
    let credential = Credential::token(text);
    match config::get("expires-in") {
        Some(_) => Ok(credential.expires_in(config::parse_or("expires-in", 0i64)?)),
        None => Ok(credential),
    }
}

/// Recursion that only grows wasm's own (native) stack.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return depth;
    }
    recurse(std::hint::black_box(depth + 1)).wrapping_add(depth)
}

/// Recursion with addressable locals, which grows Rust's shadow stack in
/// linear memory until it runs off its start.
fn recurse_shadow(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return frame[0];
    }
    recurse_shadow(depth + 1).wrapping_add(frame[1])
}

/// Try every ambient authority a WASI program might have; report what worked.
fn ambient_report() -> String {
    let fs = match std::fs::read("/etc/passwd") {
        Ok(_) => "READ",
        Err(_) => "denied",
    };
    let dir = match std::fs::read_dir("/") {
        Ok(_) => "LISTED",
        Err(_) => "denied",
    };
    let env = if std::env::vars().next().is_some() { "VISIBLE" } else { "empty" };
    let args = if std::env::args().next().is_some() { "VISIBLE" } else { "empty" };
    let net = match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => "CONNECTED",
        Err(_) => "denied",
    };
    let mut line = String::new();
    let stdin = match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => "closed",
        Ok(_) => "READ",
    };
    format!("fs={fs},dir={dir},env={env},args={args},net={net},stdin={stdin}")
}

struct Probe;

impl Provider for Probe {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        act(Some(&request))
    }
}

/// What `setup` left for the reviews (setting `setup = "remember"`), and what
/// an earlier review tried to leave for later ones (behaviour `remember-token`).
static SET_UP: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
static PREVIOUS_TOKEN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Validator for Probe {
    fn setup() -> Result<(), Error> {
        match config::get("setup").as_deref() {
            None => Ok(()),
            Some("remember") => {
                *SET_UP.lock().unwrap_or_else(|e| e.into_inner()) = Some(config::require("value")?);
                Ok(())
            }
            Some("fail") => Err(Error::misconfigured("setup refuses this configuration")),
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some(other) => Err(Error::misconfigured(format!("unknown setup `{other}`"))),
        }
    }

    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        // Who this review sees: what setup left, and the token of any
        // earlier review (there must be none).
        if config::get("behavior").as_deref() == Some("remember-token") {
            let set_up = SET_UP.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "none".into());
            let previous = PREVIOUS_TOKEN.lock().unwrap_or_else(|e| e.into_inner()).replace(review.token.clone());
            let user = format!("setup-{set_up}.previous-{}", previous.unwrap_or_else(|| "none".into()));
            return Ok(ReviewOutcome::authenticated(UserInfo::new(user, Vec::new())));
        }
        if config::get("behavior").as_deref() == Some("echo-token") {
            return Ok(match review.token.strip_prefix("ok-") {
                Some(user) => ReviewOutcome::authenticated(UserInfo::new(user, vec!["probers".into()])),
                None => ReviewOutcome::rejected("token does not start with ok-"),
            });
        }
        let credential = act(None)?;
        match credential.secret {
            credbroker_sdk::CredentialSecret::Token(name) => {
                Ok(ReviewOutcome::authenticated(UserInfo::new(name, Vec::new())))
            }
            credbroker_sdk::CredentialSecret::ClientCertificate(_) => Ok(ReviewOutcome::rejected("no user")),
        }
    }
}

credbroker_sdk::export_provider!(Probe);
credbroker_sdk::export_validator!(Probe);
