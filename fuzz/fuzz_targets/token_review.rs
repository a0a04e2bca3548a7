//! The TokenReview body the webhook receives from kube-apiserver:
//! `credbroker_host::webhook::review::parse`.
//!
//! Besides "never panics", checks that:
//! - an accepted review is kind `TokenReview` in one of the two supported
//!   apiVersions, and a rejection names the offending kind/version;
//! - anything accepted (or rejected only for its kind/version) is valid UTF-8
//!   JSON, and the typed parse agrees with a generic JSON parse of the same
//!   bytes on the fields the webhook uses (no parser differential);
//! - the response the webhook builds for an accepted review serialises and
//!   reads back unchanged, in the request's apiVersion.
#![no_main]

use credbroker_host::webhook::review::{
    self, BadReview, KIND, TokenReviewResponse, TokenReviewStatus, UserInfo, V1, V1BETA1,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The body as untyped JSON. `None` when the body nests deeper than
/// serde_json's recursion limit for `Value`, or holds a number beyond `f64`
/// (the typed parse skips unknown fields without those checks, so it may accept
/// such a body); any other failure is returned as an error.
fn generic_json(data: &[u8]) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(Some(value)),
        Err(e) if ["recursion limit exceeded", "number out of range"].iter().any(|m| e.to_string().contains(m)) => {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// serde's derived `Deserialize` also accepts a struct written as a JSON array
/// of its fields in declaration order (`["authentication.k8s.io/v1",
/// "TokenReview", {"token": "t"}]`); view such an array as the object it stands for.
fn as_object(value: &Value, fields: &[&str]) -> Value {
    match value {
        Value::Array(items) => Value::Object(fields.iter().map(|f| f.to_string()).zip(items.iter().cloned()).collect()),
        other => other.clone(),
    }
}

/// The request, untyped, with positional (array) forms turned into objects.
fn normalise(value: &Value) -> Value {
    let mut request = as_object(value, &["apiVersion", "kind", "spec"]);
    if let Some(spec) = request.get("spec").map(|s| as_object(s, &["token", "audiences"])) {
        request["spec"] = spec;
    }
    request
}

fuzz_target!(|data: &[u8]| {
    let result = review::parse(data);
    // Error messages are logged and returned to the API server: formatting must not panic.
    if let Err(e) = &result {
        let _ = e.to_string();
    }
    let generic = generic_json(data).map(|g| g.as_ref().map(normalise));
    match result {
        Ok(request) => {
            assert_eq!(request.kind, KIND);
            assert!(request.api_version == V1 || request.api_version == V1BETA1, "{:?}", request.api_version);
            // What the server answers with: echoes the version, never the token.
            let status = TokenReviewStatus {
                authenticated: !request.spec.token.is_empty(),
                user: Some(UserInfo { username: request.spec.token.clone(), ..Default::default() }),
                audiences: request.spec.audiences.clone(),
                error: None,
            };
            let response = TokenReviewResponse::new(&request.api_version, status);
            let json = serde_json::to_string(&response).expect("a response serialises");
            let back: TokenReviewResponse = serde_json::from_str(&json).expect("a response reads back");
            assert_eq!(back, response);
            assert_eq!(back.api_version, request.api_version);
            let Some(generic) = generic.expect("an accepted review is valid JSON") else { return };
            assert_eq!(generic["kind"], KIND);
            assert_eq!(generic["apiVersion"].as_str(), Some(request.api_version.as_str()));
            match &generic["spec"]["token"] {
                Value::String(token) => assert_eq!(token, &request.spec.token),
                Value::Null => assert!(request.spec.token.is_empty()),
                other => panic!("typed parse accepted a non-string token {other:?}"),
            }
            match &generic["spec"]["audiences"] {
                Value::Array(audiences) => {
                    let audiences: Vec<&str> = audiences.iter().map(|a| a.as_str().expect("string")).collect();
                    assert_eq!(audiences, request.spec.audiences);
                }
                Value::Null => assert!(request.spec.audiences.is_empty()),
                other => panic!("typed parse accepted non-array audiences {other:?}"),
            }
        }
        Err(BadReview::WrongKind(kind)) => {
            assert_ne!(kind, KIND);
            let Some(generic) = generic.expect("a review of the wrong kind is valid JSON") else { return };
            match &generic["kind"] {
                Value::String(k) => assert_eq!(k, &kind),
                Value::Null => assert!(kind.is_empty()),
                other => panic!("typed parse accepted a non-string kind {other:?}"),
            }
        }
        Err(BadReview::WrongVersion(version)) => {
            assert!(version != V1 && version != V1BETA1);
            let Some(generic) = generic.expect("a review of the wrong version is valid JSON") else { return };
            assert_eq!(generic["kind"], KIND);
        }
        Err(BadReview::Malformed(_)) => {}
    }
});
