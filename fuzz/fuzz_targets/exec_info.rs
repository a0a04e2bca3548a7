//! `KUBERNETES_EXEC_INFO`, as kubectl hands it to `credbroker get`:
//! `credbroker_host::exec::credential::parse_exec_info`.
//!
//! Besides "never panics", checks that:
//! - an accepted value is kind `ExecCredential` with an apiVersion credbroker
//!   speaks, and agrees with a generic JSON parse of the same text;
//! - an accepted cluster's `certificate-authority-data` decodes;
//! - the spec round-trips: serialised back as an ExecCredential it parses to the
//!   same spec (what a cache key or a plugin request is built from).
#![no_main]

use credbroker_host::exec::credential::{self, ApiVersion, ExecCredential, ExecInfoError, KIND};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// serde's derived `Deserialize` also accepts a struct written as a JSON array
/// of its fields in declaration order; view such an array as the object it stands for.
fn as_object(value: &Value, fields: &[&str]) -> Value {
    match value {
        Value::Array(items) => Value::Object(fields.iter().map(|f| f.to_string()).zip(items.iter().cloned()).collect()),
        other => other.clone(),
    }
}

/// The ExecCredential, untyped, with positional (array) forms turned into objects.
fn normalise(value: &Value) -> Value {
    let mut info = as_object(value, &["kind", "apiVersion", "spec", "status"]);
    if let Some(mut spec) = info.get("spec").map(|s| as_object(s, &["cluster", "interactive"])) {
        if let Some(cluster) = spec.get("cluster").map(|c| {
            as_object(
                c,
                &[
                    "server",
                    "tls-server-name",
                    "insecure-skip-tls-verify",
                    "certificate-authority-data",
                    "proxy-url",
                    "disable-compression",
                    "config",
                ],
            )
        }) {
            spec["cluster"] = cluster;
        }
        info["spec"] = spec;
    }
    info
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = credential::parse_exec_info(text);
    if let Err(e) = &result {
        let _ = e.to_string();
    }
    // Untyped parse of the same text. `Ok(None)`: deeper than serde_json's
    // recursion limit for `Value`, or a number beyond `f64` (the typed parse
    // skips unknown fields without those checks, so it may accept such text).
    let generic: Result<Option<Value>, String> = match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(Some(normalise(&value))),
        Err(e) if ["recursion limit exceeded", "number out of range"].iter().any(|m| e.to_string().contains(m)) => {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok((version, spec)) => {
            assert!(text.len() <= 1024 * 1024);
            assert_eq!(ApiVersion::parse(version.as_str()), Some(version));
            if let Some(cluster) = &spec.cluster {
                assert!(cluster.ca_bytes().is_ok(), "accepted CA data must decode");
            }
            if let Some(generic) = generic.expect("accepted exec info is valid JSON") {
                assert_eq!(generic["kind"], KIND);
                let api_version = generic["apiVersion"].as_str().expect("string apiVersion");
                assert_eq!(ApiVersion::parse(api_version), Some(version));
                assert_eq!(generic["spec"]["interactive"].as_bool().unwrap_or(false), spec.interactive);
                if let Some(cluster) = &spec.cluster {
                    assert_eq!(generic["spec"]["cluster"]["server"].as_str(), Some(cluster.server.as_str()));
                }
            }
            // Round trip. `config` is arbitrary JSON whose floats need not survive
            // serde_json's print/parse exactly, so it is compared as serialised text
            // after one normalising round.
            let again = ExecCredential {
                kind: KIND.into(),
                api_version: version.as_str().into(),
                spec: spec.clone(),
                status: None,
            };
            let json = serde_json::to_string(&again).expect("serialises");
            let (version2, spec2) = credential::parse_exec_info(&json).expect("re-serialised exec info parses");
            assert_eq!(version2, version);
            let strip = |s: &credential::ExecCredentialSpec| {
                let mut s = s.clone();
                if let Some(c) = &mut s.cluster {
                    c.config = None;
                }
                s
            };
            assert_eq!(strip(&spec2), strip(&spec));
            let config_text = |s: &credential::ExecCredentialSpec| {
                s.cluster.as_ref().and_then(|c| c.config.as_ref()).map(|v| serde_json::to_string(v).unwrap())
            };
            assert_eq!(config_text(&spec2).is_some(), config_text(&spec).is_some());
        }
        Err(ExecInfoError::WrongKind(kind)) => {
            assert_ne!(kind, KIND);
            assert!(generic.is_ok(), "{generic:?}");
        }
        Err(ExecInfoError::UnknownVersion(version)) => {
            assert!(ApiVersion::parse(&version).is_none());
            assert!(generic.is_ok(), "{generic:?}");
        }
        Err(ExecInfoError::BadCaData) => assert!(generic.is_ok(), "{generic:?}"),
        Err(ExecInfoError::TooLarge(n)) => assert!(n > 1024 * 1024),
        Err(ExecInfoError::Malformed(_)) => {}
    }
});
