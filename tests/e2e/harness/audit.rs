//! The secret-leak audit. Every `credbroker` process of the suite runs at the
//! most verbose logging there is (trace, for credbroker and every library it
//! uses, except the compiler's own listing of generated code), and nothing a
//! test knows to be secret (passwords, client secrets, API and access keys,
//! every credential `credbroker get` printed, every token the webhook
//! reviewed or issued) may appear in anything a process logged.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// `CREDBROKER_LOG` for every process: trace everywhere; the code generators
/// only at info (at trace they print the machine code they emit, which holds
/// no secret and would take minutes).
pub const MAX_VERBOSITY: &str = "trace,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,winch_codegen=info,wasmtime_cranelift=info,wasmtime_internal_cranelift=info,wasmtime_internal_winch=info";

/// Shorter values are not tracked: they occur by chance.
const MIN_LEN: usize = 6;

/// Whether `value` is specific enough to track: long enough, and not a plain
/// word (tests use tokens such as `installed`, which prose holds by chance).
fn trackable(value: &str) -> bool {
    value.len() >= MIN_LEN && !value.chars().all(|c| c.is_ascii_alphabetic())
}

static SECRETS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Remember `value` as a secret no log may show.
pub fn secret(value: impl Into<String>) {
    let value = value.into();
    if trackable(&value) {
        SECRETS.lock().unwrap_or_else(|e| e.into_inner()).insert(value);
    }
}

/// Fail when `log` (what `source` wrote) holds a known secret.
#[track_caller]
pub fn check(source: &str, log: &str) {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for secret in secrets {
        if let Some(at) = log.find(&secret) {
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
            panic!(
                "{source} logged a secret ({}…, {} bytes) in this line:\n{}",
                &secret[..3],
                secret.len(),
                log[start..end].replace(&secret, "<SECRET>")
            );
        }
    }
}
