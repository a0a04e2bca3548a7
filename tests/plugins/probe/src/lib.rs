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
        "env" => {
            let variables: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            log::info(&format!("my environment: {}", variables.join(" ")));
            variables.join(",")
        }
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
        // Waiting is not working: many short naps.
        "naps" => {
            for _ in 0..config::parse_or("count", 2000u32)? {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            "rested".to_string()
        }
        // Make the host redact huge lines against a few hundred secrets.
        "log-storm" => {
            for i in 0..config::parse_or("secrets", 300u32)? {
                log::mark_secret(&format!("storm-secret-{i:04}"));
            }
            let line = "s".repeat(config::parse_or("size", 4 * 1024 * 1024usize)?);
            for _ in 0..config::parse_or("lines", 5u32)? {
                log::warn(&line);
            }
            "stormed".to_string()
        }
        // Make the host keep secrets until something gives.
        "mark-many" => {
            let size = config::parse_or("size", 1024 * 1024usize)?;
            for i in 0..config::parse_or("count", 1000u32)? {
                log::mark_secret(&format!("{i:08}{}", "m".repeat(size.saturating_sub(8))));
            }
            "marked".to_string()
        }
        // An error written to drive the terminal that shows it.
        "evil-error" => {
            let pad = "e".repeat(config::parse_or("size", 0usize)?);
            return Err(Error::denied(format!(
                "nope\x1b]0;owned\x07\x1b[2J\rcredbroker: all good \u{202e}txt.exe{pad}"
            )));
        }
        // A secret split across the 4096-byte line cut of its stderr.
        "stderr-split" => {
            let secret = config::require("secret")?;
            eprintln!("{}{secret} tail", "x".repeat(4096 - secret.len() / 2));
            "split".to_string()
        }
        // A secret inside a logged JSON body and a logged form body.
        "log-escaped" => {
            let secret = config::require("secret")?;
            let json = format!("{{\"password\":{}}}", escape_json(&secret));
            log::info(&format!("sending {json}"));
            log::info(&format!("sending password={}&user=alice", form_encode(&secret)));
            "logged".to_string()
        }
        // A question that quotes a secret.
        "prompt-quoting" => {
            let secret = config::require("secret")?;
            prompt::text(&format!("Type {secret} to confirm:"))?
        }
        "show-flood" => {
            for i in 0..config::parse_or("count", 200u32)? {
                prompt::show(&format!("message {i} {}", "s".repeat(1000)))?;
            }
            "shown".to_string()
        }
        "exit" => std::process::exit(config::parse_or("code", 0i32)?),
        // Ask the host for random bytes, `size` at a time, forever.
        "random-flood" => {
            let mut buffer = vec![0u8; config::parse_or("size", 64 * 1024 * 1024usize)?];
            loop {
                let _ = getrandom_fill(&mut buffer);
                std::hint::black_box(&buffer);
            }
        }
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

fn escape_json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Fill `buffer` from wasi:random, as large as it is, in one host call.
fn getrandom_fill(buffer: &mut [u8]) -> Result<(), ()> {
    #[cfg(target_arch = "wasm32")]
    {
        let bytes = wasip2::random::random::get_random_bytes(buffer.len() as u64);
        let n = bytes.len().min(buffer.len());
        buffer[..n].copy_from_slice(&bytes[..n]);
    }
    let _ = buffer;
    Ok(())
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
                let value = config::require("value")?;
                credbroker_sdk::table::insert("setup", &value)?;
                *SET_UP.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                Ok(())
            }
            Some("fail") => Err(Error::misconfigured("setup refuses this configuration")),
            // Writing to stderr opens a WASI stream that stays open.
            Some("print") => {
                eprintln!("setting up");
                let value = config::require("value")?;
                credbroker_sdk::table::insert("setup", &value)?;
                *SET_UP.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                Ok(())
            }
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some(other) => Err(Error::misconfigured(format!("unknown setup `{other}`"))),
        }
    }

    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        match config::get("behavior").as_deref() {
            // Millions of groups, each costing nothing by character count.
            Some("many-groups") => {
                let groups = vec![String::new(); config::parse_or("count", 3_000_000usize)?];
                return Ok(ReviewOutcome::authenticated(UserInfo::new("many", groups)));
            }
            Some("huge-reject") => {
                return Ok(ReviewOutcome::rejected("r".repeat(config::parse_or("size", 16 * 1024 * 1024usize)?)));
            }
            // A rejection reason that quotes the token under review.
            Some("reject-quoting") => {
                return Ok(ReviewOutcome::rejected(format!("the token {} is not one of mine", review.token)));
            }
            // Who this review sees: what setup left, and the token of any
            // earlier review (there must be none), in its memory and in the
            // host's table (the groups).
            Some("remember-token") => {
                let set_up = SET_UP.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "none".into());
                let previous = PREVIOUS_TOKEN.lock().unwrap_or_else(|e| e.into_inner()).replace(review.token.clone());
                let user = format!("setup-{set_up}.previous-{}", previous.unwrap_or_else(|| "none".into()));
                let text =
                    |value: Option<Vec<u8>>| value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned());
                let table_previous = text(credbroker_sdk::table::get("previous"));
                let inserted = match credbroker_sdk::table::insert("previous", &review.token) {
                    Ok(_) => "accepted".to_string(),
                    Err(e) => format!("refused: {}", e.describe()),
                };
                let groups = vec![
                    format!("table-setup-{}", text(credbroker_sdk::table::get("setup"))),
                    format!("table-previous-{table_previous}"),
                    format!("table-insert-{inserted}"),
                ];
                return Ok(ReviewOutcome::authenticated(UserInfo::new(user, groups)));
            }
            _ => {}
        }
        if config::get("behavior").as_deref() == Some("identity") {
            let groups = config::get("groups").unwrap_or_default();
            let groups = groups.split(',').filter(|g| !g.is_empty()).map(str::to_string).collect();
            return Ok(ReviewOutcome::authenticated(UserInfo::new(config::require("username")?, groups)));
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
