//! Decisions beyond kube-apiserver's own cases: the flat settings, several
//! issuers in one file, what the file may not say, the key cache, distributed
//! claims (caching, bearer, bounds), algorithms and the CEL cost limit.

use credbroker_sdk::HostError;
use serde_json::{Value, json};

use super::{Decision, FakeHost, NOW, TestKey, VALID, config, decide, load, load_err, load_yaml, user};
use crate::host::Response;

const ISS: &str = "https://idp.example";

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": "k8s", "exp": VALID, "sub": "alice"});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    c
}

fn one_issuer(rest: &str) -> String {
    format!("- issuer:\n    url: {ISS}\n    audiences: [k8s]\n{rest}")
}

const SUB: &str = "  claimMappings:\n    username:\n      claim: sub\n      prefix: \"\"\n";

#[test]
fn the_flat_settings_keep_their_meaning() {
    let key = TestKey::rsa(0, "k", "RS256");
    let host = FakeHost::default();
    host.issuer(ISS, &[&key]);
    let flat = load(&[
        ("issuer", "https://idp.example/"),
        ("audiences", "other, k8s"),
        ("username-prefix", "oidc:"),
        ("groups-prefix", "g:"),
        ("required-claims", "roles=admin"),
        ("extra:example.org/team", "team"),
    ])
    .unwrap();
    let token = key.sign(&claims(
        json!({"iss": "https://idp.example/", "groups": ["devs"], "roles": ["admin", "x"], "team": "blue"}),
    ));
    assert_eq!(
        decide(&flat, &host, &token),
        Decision::User {
            name: "oidc:alice".into(),
            uid: Some("alice".into()),
            groups: vec!["g:devs".into()],
            extra: vec![("example.org/team".into(), vec!["blue".into()])],
        },
        "a trailing slash in iss, a list claim holding the required value, extra from a claim"
    );
    let missing = key.sign(&claims(json!({"roles": "user"})));
    assert!(
        matches!(decide(&flat, &host, &missing), Decision::Rejected(why) if why.contains("required claim `roles`"))
    );
    // Sixty seconds of skew on expiry, by default.
    let skewed = key.sign(&claims(json!({"exp": NOW - 30, "roles": "admin"})));
    assert!(matches!(decide(&flat, &host, &skewed), Decision::User { .. }));

    let expressions = load(&[
        ("issuer", ISS),
        ("audiences", "k8s"),
        ("claim-validation-rules", r#"[{"expression": "claims.sub != 'mallory'", "message": "not mallory"}]"#),
        ("username-expression", "'robot:' + claims.sub"),
        ("groups-expression", "claims.scope.split(' ').filter(s, s.startsWith('team:'))"),
    ])
    .unwrap();
    let token = key.sign(&claims(json!({"scope": "api:read team:a team:b"})));
    assert_eq!(decide(&expressions, &host, &token), user("robot:alice", &["team:a", "team:b"]));
    // Mappings come first (kube-apiserver's order): they must hold for the rule to speak.
    let mallory = key.sign(&claims(json!({"sub": "mallory", "scope": ""})));
    assert_eq!(decide(&expressions, &host, &mallory), Decision::Rejected("not mallory".into()));
}

#[test]
fn flat_setting_mistakes_are_load_errors() {
    assert!(load_err(&[("issuer", ISS)]).contains("`audiences` is required"));
    assert!(
        load_err(&[("issuer", ISS), ("audiences", "a"), ("audience", "b")]).contains("unknown setting(s) `audience`")
    );
    let err = load_err(&[("issuer", ISS), ("audiences", "a"), ("username-expression", "claims.(")]);
    assert!(err.contains("setting `username-expression`: `claims.(` does not parse"), "{err}");
    let err =
        load_err(&[("issuer", ISS), ("audiences", "a"), ("claim-validation-rules", r#"[{"expression": "claims.x"}]"#)]);
    assert!(err.contains("claim-validation-rules[0]") && err.contains("must evaluate to bool"), "{err}");
    assert!(load_err(&[("issuer", ISS), ("audiences", "a"), ("algorithms", "RS256,none")]).contains("`alg: none`"));
    assert!(load_err(&[]).contains("set `authentication-config`"));
    let both = load_err(&[("authentication-config", &config(&one_issuer(SUB))), ("issuer", ISS)]);
    assert!(both.contains("`issuer` belong to the flat settings"), "{both}");
}

#[test]
fn one_file_holds_several_issuers_chosen_by_iss() {
    let (a, b) = (TestKey::rsa(0, "a", "RS256"), TestKey::ec("b", "ES256"));
    let host = FakeHost::default();
    host.issuer(ISS, &[&a]);
    host.issuer("https://other.example", &[&b]);
    let file = format!(
        "{}- issuer:\n    url: https://other.example\n    audiences: [k8s]\n  claimMappings:\n    username:\n      expression: \"'other:' + claims.sub\"\n",
        one_issuer(SUB)
    );
    let both = load_yaml(&file).unwrap();
    assert_eq!(decide(&both, &host, &a.sign(&claims(json!({})))), user("alice", &[]));
    let other = b.sign(&claims(json!({"iss": "https://other.example"})));
    assert_eq!(decide(&both, &host, &other), user("other:alice", &[]));
    // A key of one issuer does not sign for another.
    let forged = a.sign(&claims(json!({"iss": "https://other.example"})));
    assert!(matches!(decide(&both, &host, &forged), Decision::Rejected(why) if why.contains("https://other.example")));
    let v1beta1 = file.clone();
    let text =
        format!("apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n{v1beta1}");
    assert!(load(&[("authentication-config", &text)]).is_ok(), "v1beta1 reads the same");
}

#[test]
fn what_the_file_may_not_say_is_a_load_error() {
    let file = |text: &str| load(&[("authentication-config", text)]).map(|_| ()).unwrap_err();
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";
    assert!(file(&format!("{head}anonymous:\n  enabled: true\n")).contains("anonymous: not supported"));
    let egress = file(&config(&format!(
        "- issuer:\n    url: {ISS}\n    audiences: [k8s]\n    egressSelectorType: controlplane\n{SUB}"
    )));
    assert!(egress.contains("jwt[0].issuer.egressSelectorType: \"controlplane\": not supported"), "{egress}");
    let unknown = file(&config(&format!("- issuer:\n    url: {ISS}\n    audiences: [k8s]\n    audience: k8s\n{SUB}")));
    assert!(unknown.contains("unknown field `audience`"), "{unknown}");
    assert!(
        file("apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: AuthenticationConfiguration\n")
            .contains("apiVersion: \"apiserver.config.k8s.io/v1alpha1\" is not supported")
    );
    assert!(
        file("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\n")
            .contains("kind: \"AuthorizationConfiguration\"")
    );
    assert!(file("kind: AuthenticationConfiguration\n").contains("apiVersion: required"));
    assert!(file("jwt: [").contains("not an AuthenticationConfiguration"));
    let many: String =
        (0..65).map(|i| format!("- issuer:\n    url: https://i{i}.example\n    audiences: [a]\n{SUB}")).collect();
    assert!(file(&config(&many)).contains("jwt: 65 issuers, at most 64"));
    // Every problem is named, not just the first.
    let two =
        file(&config("- issuer:\n    url: http://a.example\n    audiences: []\n  claimMappings:\n    username: {}\n"));
    assert!(
        two.contains("jwt[0].issuer.url")
            && two.contains("jwt[0].issuer.audiences")
            && two.contains("jwt[0].claimMappings.username"),
        "{two}"
    );
}

#[test]
fn keys_are_fetched_once_and_again_for_a_new_key_id() {
    let (old, new) = (TestKey::rsa(0, "old", "RS256"), TestKey::rsa(1, "new", "RS256"));
    let host = FakeHost::default();
    host.issuer(ISS, &[&old]);
    let v = load(&[("authentication-config", &config(&one_issuer(SUB))), ("jwks-min-refresh-seconds", "30")]).unwrap();
    let jwks = format!("{ISS}/keys");
    for _ in 0..3 {
        assert_eq!(decide(&v, &host, &old.sign(&claims(json!({})))), user("alice", &[]));
    }
    assert_eq!(host.hits(&jwks), 1, "the parsed keys are kept in the state");
    // Rotation: the first token with the new kid fetches the keys again ...
    host.publish(&jwks, &[&new]);
    host.now.set(NOW + 31);
    assert_eq!(decide(&v, &host, &new.sign(&claims(json!({})))), user("alice", &[]));
    assert_eq!(host.hits(&jwks), 2);
    // ... but unknown key ids do not make the issuer be asked on every review.
    let stranger = TestKey::ec("stranger", "ES256");
    for _ in 0..3 {
        assert!(
            matches!(decide(&v, &host, &stranger.sign(&claims(json!({})))), Decision::Rejected(why) if why.contains("unknown key id stranger"))
        );
    }
    assert_eq!(host.hits(&jwks), 2, "at most once per jwks-min-refresh-seconds");
    // Old keys keep serving when a refresh fails.
    host.now.set(NOW + 4000);
    host.route(&jwks, |_| Err(HostError::Unreachable("connection refused".into())));
    let later = new.sign(&claims(json!({"exp": NOW + 9000})));
    assert_eq!(decide(&v, &host, &later), user("alice", &[]));
    assert!(host.log.borrow().iter().any(|l| l.contains("keeping the cached keys")));
    // Nothing cached and the issuer down: unavailable, retried by kube-apiserver.
    let cold = FakeHost::default();
    cold.route(&format!("{ISS}/.well-known/openid-configuration"), |_| Err(HostError::Timeout("10s".into())));
    assert!(
        matches!(decide(&v, &cold, &new.sign(&claims(json!({})))), Decision::Fault(f) if f.contains("Unavailable"))
    );
    // A discovery document for another issuer is a configuration problem.
    let wrong = FakeHost::default();
    wrong.issuer_at("https://elsewhere.example", &format!("{ISS}/.well-known/openid-configuration"), &[&old]);
    assert!(
        matches!(decide(&v, &wrong, &old.sign(&claims(json!({})))), Decision::Fault(f) if f.contains("Misconfigured") && f.contains("elsewhere"))
    );
}

#[test]
fn algorithms_follow_the_settings() {
    let host = FakeHost::default();
    let (es384, ed) = (TestKey::ec("e", "ES384"), TestKey::ed25519("d"));
    host.issuer(ISS, &[&es384, &ed]);
    let file = load_yaml(&one_issuer(SUB)).unwrap();
    assert_eq!(decide(&file, &host, &es384.sign(&claims(json!({})))), user("alice", &[]));
    assert!(
        matches!(decide(&file, &host, &ed.sign(&claims(json!({})))), Decision::Rejected(why) if why.contains("EdDSA, which this issuer does not accept")),
        "kube-apiserver accepts no EdDSA"
    );
    let with_ed = load(&[("authentication-config", &config(&one_issuer(SUB))), ("algorithms", "EdDSA")]).unwrap();
    assert_eq!(decide(&with_ed, &host, &ed.sign(&claims(json!({})))), user("alice", &[]));
    let none = ed.sign_with_header(&json!({"alg": "none"}), &claims(json!({})));
    assert!(
        matches!(decide(&file, &host, &none), Decision::Rejected(why) if why.contains("`alg: none` is never accepted"))
    );
}

#[test]
fn es512_is_refused_not_accepted() {
    let host = FakeHost::default();
    let key = TestKey::ec("e", "ES256");
    host.issuer(ISS, &[&key]);
    let file = load_yaml(&one_issuer(SUB)).unwrap();
    let es512 = key.sign_with_header(&json!({"alg": "ES512", "kid": "e"}), &claims(json!({})));
    assert!(matches!(decide(&file, &host, &es512), Decision::Rejected(why) if why.contains("ES512")));
    assert!(
        load_err(&[("authentication-config", &config(&one_issuer(SUB))), ("algorithms", "ES512")]).contains("P-521")
    );
}

fn distributed_claims(extra: Value) -> Value {
    claims(json!({"_claim_names": {"groups": "src"}, "_claim_sources": {"src": extra}}))
}

#[test]
fn distributed_claims_are_cached_bounded_and_sent_the_right_bearer() {
    let key = TestKey::rsa(0, "k", "RS256");
    let host = FakeHost::default();
    host.issuer(ISS, &[&key]);
    let groups = format!("{ISS}/claims/groups");
    let answer = key.sign(&json!({"iss": ISS, "aud": "k8s", "exp": VALID, "groups": ["a", "b"]}));
    let bearers = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = std::rc::Rc::clone(&bearers);
    host.route(&groups, move |bearer| {
        seen.borrow_mut().push(bearer.map(str::to_string));
        Ok(Response { status: 200, body: answer.clone().into_bytes() })
    });
    let v = load_yaml(&one_issuer(&format!("{SUB}    groups:\n      claim: groups\n      prefix: \"\"\n"))).unwrap();
    let with_access_token = key.sign(&distributed_claims(json!({"endpoint": groups, "access_token": "src-token"})));
    for _ in 0..2 {
        assert_eq!(decide(&v, &host, &with_access_token), user("alice", &["a", "b"]));
    }
    assert_eq!(host.hits(&groups), 1, "the answer is cached");
    // No access_token: the token under review is the bearer.
    let without = key.sign(&distributed_claims(json!({"endpoint": groups})));
    assert_eq!(decide(&v, &host, &without), user("alice", &["a", "b"]));
    assert_eq!(bearers.borrow().as_slice(), [Some("src-token".to_string()), Some(without.clone())]);
    // The cache expires with the distributed-claims-cache-seconds.
    host.now.set(NOW + 301);
    assert_eq!(decide(&v, &host, &with_access_token), user("alice", &["a", "b"]));
    assert_eq!(host.hits(&groups), 3);

    // An endpoint the grants refuse refuses the token; one that fails is retried.
    let denied = format!("{ISS}/denied");
    host.route(&denied, |_| {
        Err(HostError::Denied("`https://idp.example:443` is not in this plugin's allowlist".into()))
    });
    let token = key.sign(&distributed_claims(json!({"endpoint": denied, "access_token": "t"})));
    assert!(matches!(decide(&v, &host, &token), Decision::Rejected(why) if why.contains("is refused")));
    let down = format!("{ISS}/down");
    host.serve(&down, 503, "busy");
    let token = key.sign(&distributed_claims(json!({"endpoint": down, "access_token": "t"})));
    assert!(matches!(decide(&v, &host, &token), Decision::Fault(f) if f.contains("Unavailable") && f.contains("503")));
    let huge = format!("{ISS}/huge");
    host.serve(&huge, 200, vec![b'a'; crate::distributed::MAX_ANSWER + 1]);
    let token = key.sign(&distributed_claims(json!({"endpoint": huge, "access_token": "t"})));
    assert!(matches!(decide(&v, &host, &token), Decision::Rejected(why) if why.contains("more than")));
    let plain = format!("{ISS}/json");
    host.serve(&plain, 200, json!({"groups": ["admin"]}).to_string());
    let token = key.sign(&distributed_claims(json!({"endpoint": plain, "access_token": "t"})));
    assert!(
        matches!(decide(&v, &host, &token), Decision::Rejected(why) if why.contains("answered no JWT")),
        "unsigned answers are not trusted"
    );
    // A JWT signed by someone else is not trusted either.
    let forged = format!("{ISS}/forged");
    let mallory = TestKey::rsa(1, "k", "RS256");
    host.serve(&forged, 200, mallory.sign(&json!({"iss": ISS, "aud": "k8s", "exp": VALID, "groups": ["admin"]})));
    let token = key.sign(&distributed_claims(json!({"endpoint": forged, "access_token": "t"})));
    assert!(matches!(decide(&v, &host, &token), Decision::Rejected(why) if why.contains("invalid signature")));
}

#[test]
fn the_distributed_claims_cache_stays_within_its_share_of_the_state() {
    let key = TestKey::rsa(0, "k", "RS256");
    let host = FakeHost::default();
    host.issuer(ISS, &[&key]);
    let endpoint = format!("{ISS}/claims");
    let groups: Vec<String> = (0..150).map(|i| format!("a-fairly-long-group-name-{i:04}")).collect();
    host.serve(&endpoint, 200, key.sign(&json!({"iss": ISS, "aud": "k8s", "exp": VALID, "groups": groups})));
    let v = load_yaml(&one_issuer(&format!("{SUB}    groups:\n      claim: groups\n      prefix: \"\"\n"))).unwrap();
    for i in 0..100 {
        let token = key.sign(&distributed_claims(json!({"endpoint": endpoint, "access_token": format!("user-{i}")})));
        assert!(matches!(decide(&v, &host, &token), Decision::User { groups, .. } if groups.len() == 150));
    }
    let state = host.state.borrow();
    let cached: Vec<usize> = state.iter().filter(|(k, _)| k.starts_with("dclaims:")).map(|(_, v)| v.len()).collect();
    assert!(!cached.is_empty() && cached.len() <= 64, "{} answers kept", cached.len());
    assert!(cached.iter().sum::<usize>() <= 128 * 1024, "{} bytes kept", cached.iter().sum::<usize>());
    assert!(state.keys().any(|k| k.starts_with("jwks:")), "the keys stay cached");
}

#[test]
fn distributed_claims_resolve_every_claim_the_configuration_reads() {
    let key = TestKey::rsa(0, "k", "RS256");
    let host = FakeHost::default();
    host.issuer(ISS, &[&key]);
    let endpoint = format!("{ISS}/claims");
    host.serve(
        &endpoint,
        200,
        key.sign(&json!({"iss": ISS, "aud": "k8s", "exp": VALID, "email": "a@corp", "team": "blue"})),
    );
    let v = load_yaml(&one_issuer(
        "  claimValidationRules:\n  - expression: claims.team == 'blue'\n  claimMappings:\n    username:\n      claim: email\n      prefix: \"\"\n",
    ))
    .unwrap();
    let token = key.sign(&claims(
        json!({"_claim_names": {"email": "s", "team": "s"}, "_claim_sources": {"s": {"endpoint": endpoint}}}),
    ));
    assert_eq!(decide(&v, &host, &token), user("a@corp", &[]));
    assert_eq!(host.hits(&endpoint), 1, "one answer serves both claims");
}

#[test]
fn expressions_from_the_issue_work_and_runaway_ones_stop() {
    let key = TestKey::rsa(0, "k", "RS256");
    let host = FakeHost::default();
    host.issuer(ISS, &[&key]);
    let v = load_yaml(&one_issuer(&format!(
        "  claimValidationRules:\n  - expression: 'claims.scope.split(\" \").exists(s, s == \"api:read\")'\n    message: the token needs api:read\n{SUB}"
    )))
    .unwrap();
    assert_eq!(decide(&v, &host, &key.sign(&claims(json!({"scope": "api:read api:write"})))), user("alice", &[]));
    assert_eq!(
        decide(&v, &host, &key.sign(&claims(json!({"scope": "api:write"})))),
        Decision::Rejected("the token needs api:read".into())
    );
    let runaway = load_yaml(&one_issuer(&format!(
        "  claimValidationRules:\n  - expression: claims.l.all(a, claims.l.all(b, claims.l.all(c, a + b + c >= 0)))\n{SUB}"
    )))
    .unwrap();
    let big = key.sign(&claims(json!({"l": (0..200).collect::<Vec<_>>()})));
    assert!(matches!(decide(&runaway, &host, &big), Decision::Rejected(why) if why.contains("cost limit of 1000000")));
    let small = key.sign(&claims(json!({"l": [1, 2, 3]})));
    assert_eq!(decide(&runaway, &host, &small), user("alice", &[]));
}
