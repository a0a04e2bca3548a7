//! A timing harness for the per-review CEL work (not a test: `#[ignore]`d).
//! It maps the webhook benchmark's claims (benches/webhook.rs, case (i))
//! with the benchmark's AuthenticationConfiguration, and with flat settings
//! mapping the same claims without CEL, and prints the time and the heap
//! allocated per review; the allocation volume is what a fresh wasm
//! instance dirties. Run it optimised:
//!
//! `cargo test --release -p credbroker-plugin-jwt cel_speed -- --ignored --nocapture`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::load;
use crate::mapping;
use crate::review::Authenticator;

/// The system allocator, counting what is allocated (never what is freed).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

const ISSUER: &str = "https://bench.example";

/// The AuthenticationConfiguration of the webhook benchmark's case (i).
fn bench_config() -> String {
    include_str!("bench-config.yaml").replace("ISSUER", ISSUER)
}

/// The claims of one of the benchmark's tokens.
fn bench_claims(i: usize) -> Map<String, Value> {
    let claims = json!({
        "iss": ISSUER, "aud": "bench", "sub": format!("user-{i}"), "iat": 1_700_000_000, "exp": 1_700_003_600,
        "email": format!("user-{i}@bench.example"), "email_verified": true,
        "groups": ["devs", "ops"], "scope": "openid api:read api:write", "tenant": "blue",
    });
    match claims {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

struct Figures {
    ns: f64,
    allocations: f64,
    bytes: f64,
}

/// Map `claims` under the first issuer of `authenticator` `rounds` times.
fn time(authenticator: &Authenticator, claims: &[Map<String, Value>], rounds: usize) -> Figures {
    let issuer = &authenticator.issuers[0];
    let mut i = 0;
    let mut review = || {
        let user = mapping::user(&authenticator.cel, issuer, &claims[i % claims.len()]);
        assert!(user.is_ok(), "{:?}", user.err());
        black_box(user.ok());
        i += 1;
    };
    (0..rounds / 10).for_each(|_| review());
    fastest(rounds, review)
}

#[test]
#[ignore = "a timing harness: run it with --release --ignored --nocapture"]
fn cel_speed() {
    let rounds: usize = std::env::var("CEL_SPEED_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200_000);
    let claims: Vec<_> = (0..64).map(bench_claims).collect();
    let with_cel = load(&[("authentication-config", &bench_config())]).unwrap();
    let without_cel = load(&[
        ("issuer", ISSUER),
        ("audiences", "bench"),
        ("username-claim", "email"),
        ("username-prefix", "oidc:"),
        ("groups-prefix", "oidc:"),
        ("extra:bench.example/tenant", "tenant"),
    ])
    .unwrap();
    let mut rows = Vec::new();
    for (name, authenticator) in [("8 CEL expressions", &with_cel), ("no CEL (claims)", &without_cel)] {
        let f = time(authenticator, &claims, rounds);
        println!("{name:<20} {:>8.0} ns/review {:>6.1} allocations {:>7.0} bytes", f.ns, f.allocations, f.bytes);
        rows.push(f);
    }
    println!("CEL cost over no CEL: {:.0} ns/review", rows[0].ns - rows[1].ns);
    parts(&with_cel, &claims[0], rounds);
}

/// `f` run `rounds` times: ns, allocations and bytes per run.
fn measure(rounds: usize, mut f: impl FnMut()) -> Figures {
    let (allocations, bytes) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64;
    let per = |after: u64, before: u64| (after - before) as f64 / rounds as f64;
    Figures {
        ns: ns / rounds as f64,
        allocations: per(ALLOCATIONS.load(Ordering::Relaxed), allocations),
        bytes: per(BYTES.load(Ordering::Relaxed), bytes),
    }
}

/// The fastest of five runs of `f`, `rounds / 5` times each.
fn fastest(rounds: usize, mut f: impl FnMut()) -> Figures {
    let mut best = measure(rounds / 5, &mut f);
    for _ in 1..5 {
        let next = measure(rounds / 5, &mut f);
        if next.ns < best.ns {
            best = next;
        }
    }
    best
}

/// The review's CEL work one part at a time: the conversion of the claims,
/// then each expression.
fn parts(authenticator: &Authenticator, claims: &Map<String, Value>, rounds: usize) {
    use crate::cel::{Expression, Input};
    use crate::review::{Groups, Username};
    let issuer = &authenticator.issuers[0];
    let cel = &authenticator.cel;
    let show = |name: &str, f: Figures| {
        println!("  {name:<60} {:>6.0} ns {:>5.1} allocations {:>6.0} bytes", f.ns, f.allocations, f.bytes);
    };
    let Some(wanted) = &issuer.cel_claims else { return };
    show("claims conversion", fastest(rounds, || drop(black_box(Input::claims(claims, wanted)))));
    let input = Input::claims(claims, wanted);
    let mut expressions: Vec<&Expression> = issuer.claim_rules.iter().map(|r| &r.expression).collect();
    if let Username::Expression(e) = &issuer.username {
        expressions.push(e);
    }
    if let Groups::Expression(e) = &issuer.groups {
        expressions.push(e);
    }
    expressions.extend(issuer.extra.iter().map(|x| &x.expression));
    for e in expressions {
        show(&e.source, fastest(rounds, || drop(black_box(e.evaluate(cel, &input)))));
    }
    let (groups, extra) = (vec!["oidc:devs".to_string(), "oidc:ops".to_string()], Default::default());
    show("user conversion", fastest(rounds, || drop(black_box(Input::user("oidc:u", "u", &groups, &extra)))));
    let user = Input::user("oidc:u", "u", &groups, &extra);
    for rule in &issuer.user_rules {
        show(&rule.expression.source, fastest(rounds, || drop(black_box(rule.expression.evaluate(cel, &user)))));
    }
}
