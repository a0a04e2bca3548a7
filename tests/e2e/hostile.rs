//! Hostile plugins, through both halves: each attack ends in a clear error
//! naming the plugin and the cause, within its deadline, and the server keeps
//! answering everyone else meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::webhook::Webhook;
use crate::harness::{HttpStub, UserEnv, probe};

const LIMITS: &str = "cpu-ms = 300\nmemory-mib = 24\ntimeout-ms = 1500\n";

/// (behavior, extra settings, what the error says, whether it must end by the deadline)
fn attacks(stub: &HttpStub) -> Vec<(&'static str, String, &'static str, bool)> {
    vec![
        // 300 ms of the thread's own CPU; on a machine too busy to give the
        // loop that much within the wall-clock limit, that limit ends it.
        ("loop", String::new(), "CPU time limit of 300 ms|time limit of 1500 ms", true),
        ("grow", String::new(), "exceeded its memory limit of 24 MiB", false),
        ("recurse", String::new(), "exhausted its stack", false),
        ("recurse-shadow", String::new(), "out-of-bounds memory access", false),
        ("panic", String::new(), "probe panicked on purpose", false),
        ("http", format!("url = \"{}/hang\"", stub.origin()), "did not finish within its time limit of 1500 ms", true),
        ("http", "url = \"http://not-allowed.invalid/\"".to_string(), "is not in this plugin's allowlist", false),
        ("prompt", String::new(), "cannot ask the user: not running interactively", false),
        ("unavailable", String::new(), "backend is down", false),
    ]
}

fn toml_settings(behavior: &str, extra: &str) -> String {
    format!("behavior = {behavior:?}\n{extra}\n")
}

#[test]
fn attacks_through_credbroker_get_end_in_clear_errors() {
    let stub = HttpStub::start(vec![]);
    let env = UserEnv::new();
    let plugin = probe().display().to_string();
    let mut config = String::new();
    for (i, (behavior, extra, _, _)) in attacks(&stub).iter().enumerate() {
        config.push_str(&format!(
            "[profiles.a{i}]\nplugin = {plugin:?}\n[profiles.a{i}.settings]\n{}[profiles.a{i}.grants]\nhttp = [{:?}]\n[profiles.a{i}.limits]\n{LIMITS}\n",
            toml_settings(behavior, extra),
            stub.origin()
        ));
    }
    env.write_config(&config);
    for (i, (behavior, _, reason, bounded)) in attacks(&stub).into_iter().enumerate() {
        let started = Instant::now();
        let run = env.run(&["get", "--provider", &format!("a{i}")]);
        let elapsed = started.elapsed();
        let error = run.error();
        assert!(error.contains(&format!("plugin `{plugin}`")), "{behavior}: names the plugin: {error}");
        assert!(reason.split('|').any(|r| error.contains(r)), "{behavior}: {error}");
        if bounded {
            assert!(elapsed < Duration::from_millis(1500 + 1000 + 2000), "{behavior} took {elapsed:?}");
        }
    }
}

#[test]
fn attacks_through_credbroker_serve_leave_everyone_else_served() {
    let stub = HttpStub::start(vec![]);
    let env = UserEnv::new();
    let csv = env.home().join("tokens.csv");
    std::fs::write(&csv, "good-token,alice,1,devs\n").unwrap();
    let plugin = probe().display().to_string();
    let mut config = String::from("[cache]\npositive-ttl-seconds = 0\nnegative-ttl-seconds = 0\n");
    for (i, (behavior, extra, _, _)) in attacks(&stub).iter().enumerate() {
        config.push_str(&format!(
            "[[validators]]\nname = \"attack{i}\"\nplugin = {plugin:?}\ntoken-prefix = \"a{i}-\"\n[validators.settings]\n{}[validators.grants]\nhttp = [{:?}]\n[validators.limits]\n{LIMITS}\n",
            toml_settings(behavior, extra),
            stub.origin()
        ));
    }
    config.push_str(&format!(
        "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n",
        csv = csv.display().to_string()
    ));
    let webhook = Arc::new(Webhook::start(&env, &config));
    let attacking = Arc::new(AtomicBool::new(true));
    let attackers: Vec<_> = attacks(&stub)
        .into_iter()
        .enumerate()
        .map(|(i, (behavior, _, reason, bounded))| {
            let (webhook, attacking) = (Arc::clone(&webhook), Arc::clone(&attacking));
            std::thread::spawn(move || {
                let mut rounds = 0;
                while attacking.load(Ordering::SeqCst) || rounds == 0 {
                    let started = Instant::now();
                    let (status, answer) = webhook.review("v1", &format!("a{i}-token"), &[]);
                    let elapsed = started.elapsed();
                    assert!(matches!(status, 200 | 503), "{behavior}: {status} {answer}");
                    assert_eq!(answer["kind"], "TokenReview", "{behavior}: well-formed");
                    assert_eq!(answer["status"]["authenticated"], false, "{behavior}: {answer}");
                    let error = answer["status"]["error"].as_str().unwrap_or_default();
                    assert!(error.contains(&format!("attack{i}:")), "{behavior}: names the validator: {error}");
                    assert!(reason.split('|').any(|r| error.contains(r)), "{behavior}: {error}");
                    if bounded {
                        assert!(elapsed < Duration::from_millis(1500 + 1000 + 2000), "{behavior} took {elapsed:?}");
                    }
                    rounds += 1;
                }
            })
        })
        .collect();
    let mut served = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (status, answer) = webhook.review("v1", "good-token", &[]);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"]["user"]["username"], "alice");
        served += 1;
    }
    attacking.store(false, Ordering::SeqCst);
    for attacker in attackers {
        attacker.join().expect("every attack answered well");
    }
    assert!(served > 10, "the good reviews kept flowing: {served}");
    let health = webhook.client().get(format!("{}/healthz", webhook.url)).send().unwrap();
    assert_eq!(health.status(), 200, "the server is unharmed");
}
