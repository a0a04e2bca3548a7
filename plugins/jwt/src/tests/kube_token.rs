//! The decision cases of kube-apiserver's JWT authenticator tests
//! (`plugin/pkg/authenticator/token/oidc/oidc_test.go`, `TestToken`), in our
//! own form: the same configuration (as an AuthenticationConfiguration
//! file), claims, keys and expected decision (the user, or refused, or a load
//! error), not the same error strings.
//!
//! Of its 85 cases, 81 are here. Left out: `es512` (ES512 / P-521 is not an
//! algorithm the host's `crypto` checks; ES512 tokens are refused instead, see
//! `decisions::es512_is_refused_not_accepted`), `client and ca mutually
//! exclusive` and `keyset and discovery URL mutually exclusive` (options of
//! the Go API, not of the configuration), and `disallowed issuer via
//! configured value` (kube-apiserver forbids its own service-account issuer;
//! credbroker has none). `health check failure` is here as an unreachable
//! issuer, which makes the review fail as unavailable (503, retried).

use serde_json::{Value, json};

use super::{Decision, EXPIRED, FakeHost, TestKey, VALID, decide, load};

const AUTH: &str = "https://auth.example.com";
/// The issuer the distributed-claims cases run on (kube's test server).
const CLAIMS: &str = "https://claims.example";

/// What a case expects.
enum Want {
    /// This user.
    User(Decision),
    /// Refused, the reason containing this.
    Refused(&'static str),
    /// The configuration does not load, the error containing this.
    LoadError(&'static str),
    /// A fault (unavailable), the message containing this.
    Fault(&'static str),
}

struct Case {
    name: &'static str,
    /// The `jwt` list of the AuthenticationConfiguration.
    jwt: String,
    /// Other settings (`algorithms`).
    settings: Vec<(&'static str, &'static str)>,
    claims: Value,
    /// Which key signs (index into [`keys`]).
    signer: usize,
    /// Which keys the issuer publishes.
    published: Vec<usize>,
    /// Answers of the distributed claims endpoints: path, bearer expected, claims signed.
    endpoints: Vec<(&'static str, &'static str, Value)>,
    /// A discovery URL serving the issuer's document instead of the well-known one.
    discovery: Option<&'static str>,
    /// The issuer cannot be reached at all.
    unreachable: bool,
    want: Want,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            jwt: String::new(),
            settings: Vec::new(),
            claims: json!({}),
            signer: 0,
            published: vec![0],
            endpoints: Vec::new(),
            discovery: None,
            unreachable: false,
            want: Want::Refused(""),
        }
    }
}

/// kube's keys: rsa_1 and rsa_2 (RS256), rsa_1 for PS256, ECDSA keys.
fn keys() -> Vec<TestKey> {
    vec![
        TestKey::rsa(0, "rsa1", "RS256"),
        TestKey::rsa(1, "rsa2", "RS256"),
        TestKey::with_alg(0, "rsa1", "PS256"),
        TestKey::with_alg(0, "rsa1-ps", "PS256"),
    ]
}

/// A `jwt` entry for `url` and audience `my-client`, then `rest` (indented by 2).
fn entry(url: &str, rest: &str) -> String {
    format!("- issuer:\n    url: {url}\n    audiences: [my-client]\n{rest}")
}

fn username_claim(claim: &str, prefix: &str) -> String {
    format!("  claimMappings:\n    username:\n      claim: {claim}\n      prefix: {prefix:?}\n")
}

fn username_and_groups(prefix: &str, groups_claim: &str, groups_prefix: &str) -> String {
    format!(
        "  claimMappings:\n    username:\n      claim: username\n      prefix: {prefix:?}\n    groups:\n      claim: {groups_claim}\n      prefix: {groups_prefix:?}\n"
    )
}

fn u(name: &str, uid: Option<&str>, groups: &[&str], extra: &[(&str, &[&str])]) -> Want {
    Want::User(Decision::User {
        name: name.into(),
        uid: uid.map(str::to_string),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: extra.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
    })
}

fn run(case: Case, keys: &[TestKey]) {
    let host = FakeHost::default();
    // The issuer the configuration names serves discovery and its keys.
    let configured = case.jwt.split("url: ").nth(1).and_then(|rest| rest.lines().next()).unwrap_or(AUTH).to_string();
    let published: Vec<&TestKey> = case.published.iter().map(|i| &keys[*i]).collect();
    if case.unreachable {
        host.route(&format!("{configured}/.well-known/openid-configuration"), |_| {
            Err(credbroker_sdk::HostError::Unreachable("dns error: no such host".into()))
        });
    } else {
        match case.discovery {
            Some(discovery) => host.issuer_at(&configured, discovery, &published),
            None => host.issuer(&configured, &published),
        }
    }
    host.route(&format!("{CLAIMS}/broken"), |_| {
        Err(credbroker_sdk::HostError::Unreachable("some unexpected oidc error".into()))
    });
    for (path, bearer, claims) in case.endpoints {
        let token = keys[case.signer].sign(&claims);
        let bearer = bearer.to_string();
        host.route(&format!("{CLAIMS}{path}"), move |got| {
            assert_eq!(got, Some(bearer.as_str()), "the bearer sent to the claims endpoint");
            Ok(crate::host::Response { status: 200, body: token.clone().into_bytes() })
        });
    }
    let mut settings = vec![("authentication-config", super::config(&case.jwt))];
    settings.extend(case.settings.iter().map(|(k, v)| (*k, v.to_string())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let authenticator = match (load(&settings), &case.want) {
        (Err(e), Want::LoadError(want)) => {
            assert!(e.contains(want), "{}: load error {e:?} should say {want:?}", case.name);
            return;
        }
        (Err(e), _) => panic!("{}: does not load: {e}", case.name),
        (Ok(_), Want::LoadError(want)) => panic!("{}: loads, but should fail with {want:?}", case.name),
        (Ok(a), _) => a,
    };
    let token = keys[case.signer].sign(&case.claims);
    let got = decide(&authenticator, &host, &token);
    match (&case.want, &got) {
        (Want::User(want), got) => assert_eq!(got, want, "{}", case.name),
        (Want::Refused(want), Decision::Rejected(why)) => {
            assert!(why.contains(want), "{}: refused with {why:?}, want {want:?}", case.name)
        }
        (Want::Fault(want), Decision::Fault(why)) => {
            assert!(why.contains(want), "{}: fault {why:?}, want {want:?}", case.name)
        }
        (_, got) => panic!("{}: got {got:?}", case.name),
    }
}

fn claims(extra: Value) -> Value {
    let mut base = json!({"iss": AUTH, "aud": "my-client", "exp": VALID});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    base
}

fn distributed(extra: Value) -> Value {
    let mut c = claims(extra);
    c["iss"] = json!(CLAIMS);
    c
}

fn groups_source(endpoint: &str, token: &str) -> Value {
    json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": format!("{CLAIMS}{endpoint}"), "access_token": token}}})
}

fn merge(a: Value, b: Value) -> Value {
    let mut a = a;
    for (k, v) in b.as_object().cloned().unwrap_or_default() {
        a[k] = v;
    }
    a
}

fn answer(extra: Value) -> Value {
    merge(json!({"iss": CLAIMS, "aud": "my-client", "exp": VALID}), extra)
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let auth = |rest: &str| entry(AUTH, rest);
    let dist = |rest: &str| entry(CLAIMS, rest);
    let plain = username_claim("username", "");
    let with_groups = username_and_groups("", "groups", "");
    let deep = json!({"turtle": {"foo": {"1": "a", "2": "b", "other1": {"bit1": true, "bit2": false, "bit3": 1},
        "bar": {"3": "c", "4": "d", "other1": {"bit1": true, "bit2": false, "bit3": 1},
            "baz": {"5": "e", "6": "f", "panda": ["snorlax", "007", "santa", "claus"], "other1": {"bit1": true, "bit2": false, "bit3": 1}}}}}});
    let deep_config = |groups: &str| {
        auth(&format!(
            "  claimValidationRules:\n  - expression: claims.turtle.foo.other1.bit1 && !claims.turtle.foo.bar.other1.bit2\n  claimMappings:\n    username:\n      expression: claims.turtle.foo.bar.baz.panda[0]\n    uid:\n      expression: claims.turtle.foo.bar.baz.panda[1]\n    groups:\n      expression: {groups:?}\n    extra:\n    - key: bio.snorlax.org/1\n      valueExpression: string(claims.turtle.foo.bar.other1.bit2)\n    - key: bio.snorlax.org/2\n      valueExpression: string(claims.turtle.foo.bar.baz.other1.bit3)\n    - key: bio.snorlax.org/3\n      valueExpression: \"[string(claims.turtle.foo.bar.baz.other1.bit1)] + ['a', 'b', 'c']\"\n  userValidationRules:\n  - expression: user.username != \"bad\"\n  - expression: user.uid == \"007\"\n  - expression: '\"claus\" in user.groups'\n  - expression: user.extra.bio__dot__snorlax__dot__org__slash__3.size() == 4\n"
        ))
    };
    let snorlax_extra: &[(&str, &[&str])] = &[
        ("bio.snorlax.org/1", &["false"]),
        ("bio.snorlax.org/2", &["1"]),
        ("bio.snorlax.org/3", &["true", "a", "b", "c"]),
    ];
    let expression_mappings = "  claimMappings:\n    username:\n      expression: claims.username\n    groups:\n      expression: claims.groups\n";
    vec![
        Case {
            name: "token",
            jwt: auth(&plain),
            claims: claims(json!({"username": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "no-username",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({})),
            want: Want::Refused("no `username` claim"),
            ..Default::default()
        },
        Case {
            name: "email",
            jwt: auth(&username_claim("email", "")),
            claims: claims(json!({"email": "jane@example.com", "email_verified": true})),
            want: u("jane@example.com", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "email-not-verified",
            jwt: auth(&username_claim("email", "")),
            claims: claims(json!({"email": "jane@example.com", "email_verified": false})),
            want: Want::Refused("not verified"),
            ..Default::default()
        },
        Case {
            name: "no-email-verified-claim",
            jwt: auth(&username_claim("email", "")),
            claims: claims(json!({"email": "jane@example.com"})),
            want: u("jane@example.com", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "invalid-email-verified-claim",
            jwt: auth(&username_claim("email", "")),
            claims: claims(json!({"email": "jane@example.com", "email_verified": "false"})),
            want: Want::Refused("`email_verified` claim is not a boolean"),
            ..Default::default()
        },
        Case {
            name: "groups",
            jwt: auth(&with_groups),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"]})),
            want: u("jane", None, &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups-distributed",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({"groups": ["team1", "team2"]})))],
            want: u("jane", None, &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups-distributed invalid client",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/broken", "groups_token"))),
            want: Want::Fault("some unexpected oidc error"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-malformed-claim-names",
            jwt: dist(&with_groups),
            claims: distributed(json!({"username": "jane", "_claim_names": {"groups": "nonexistent-claim-source"},
                "_claim_sources": {"src1": {"endpoint": format!("{CLAIMS}/groups"), "access_token": "groups_token"}}})),
            want: Want::Refused("which `_claim_sources` does not have"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-malformed-names-and-sources",
            jwt: dist(&with_groups),
            claims: distributed(json!({"username": "jane", "_claim_names": {"groups": "src1"}})),
            want: Want::Refused("which `_claim_sources` does not have"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-malformed-distributed-claim",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({})))],
            want: Want::Refused("has no `groups` claim"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-unusual-name",
            jwt: dist(&username_and_groups("", "rabbits", "")),
            claims: distributed(json!({"username": "jane", "_claim_names": {"rabbits": "src1"},
                "_claim_sources": {"src1": {"endpoint": format!("{CLAIMS}/rabbits"), "access_token": "rabbits_token"}}})),
            endpoints: vec![("/rabbits", "rabbits_token", answer(json!({"rabbits": ["team1", "team2"]})))],
            want: u("jane", None, &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-wrong-audience",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({"aud": "your-client", "groups": ["team1"]})))],
            want: Want::Refused("audience"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-expired-token",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({"groups": ["team1"], "exp": EXPIRED})))],
            want: Want::Refused("expired"),
            ..Default::default()
        },
        Case {
            name: "groups-distributed-normal-claim-wins",
            jwt: dist(&with_groups),
            claims: distributed(merge(
                json!({"username": "jane", "groups": "team1"}),
                groups_source("/groups", "groups_token"),
            )),
            endpoints: vec![("/groups", "groups_token", answer(json!({"groups": ["team2"]})))],
            want: u("jane", None, &["team1"], &[]),
            ..Default::default()
        },
        Case {
            name: "group-string-claim",
            jwt: auth(&with_groups),
            claims: claims(json!({"username": "jane", "groups": "team1"})),
            want: u("jane", None, &["team1"], &[]),
            ..Default::default()
        },
        Case {
            name: "group-string-claim-distributed",
            jwt: dist(&with_groups),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({"groups": "team1"})))],
            want: u("jane", None, &["team1"], &[]),
            ..Default::default()
        },
        Case {
            name: "group-string-claim-aggregated-not-supported",
            jwt: auth(&with_groups),
            claims: claims(
                json!({"username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"JWT": "some.jwt.token"}}}),
            ),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "no-groups-claim",
            jwt: auth(&with_groups),
            claims: claims(json!({"username": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "invalid-groups-claim",
            jwt: auth(&with_groups),
            claims: claims(json!({"username": "jane", "groups": 42})),
            want: Want::Refused("not a string or a list of strings"),
            ..Default::default()
        },
        Case {
            name: "required-claim",
            jwt: auth(&format!(
                "{with_groups}  claimValidationRules:\n  - claim: hd\n    requiredValue: example.com\n  - claim: sub\n    requiredValue: test\n"
            )),
            claims: claims(json!({"username": "jane", "hd": "example.com", "sub": "test"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "no-required-claim",
            jwt: auth(&format!(
                "{with_groups}  claimValidationRules:\n  - claim: hd\n    requiredValue: example.com\n"
            )),
            claims: claims(json!({"username": "jane"})),
            want: Want::Refused("required claim `hd` is missing"),
            ..Default::default()
        },
        Case {
            name: "invalid-required-claim",
            jwt: auth(&format!(
                "{with_groups}  claimValidationRules:\n  - claim: hd\n    requiredValue: example.com\n"
            )),
            claims: claims(json!({"username": "jane", "hd": "example.org"})),
            want: Want::Refused("required claim `hd` is not \"example.com\""),
            ..Default::default()
        },
        Case {
            name: "invalid-signature",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({"username": "jane"})),
            published: vec![1],
            want: Want::Refused("unknown key id rsa1"),
            ..Default::default()
        },
        Case {
            name: "expired",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({"username": "jane", "exp": EXPIRED})),
            want: Want::Refused("expired"),
            ..Default::default()
        },
        Case {
            name: "invalid-aud",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({"username": "jane", "aud": "not-my-client"})),
            want: Want::Refused("audience"),
            ..Default::default()
        },
        Case {
            name: "multiple-audiences",
            jwt: auth(&plain),
            claims: claims(json!({"username": "jane", "aud": ["not-my-client", "my-client"], "azp": "not-my-client"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "multiple-audiences in authentication config",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    audiences: [random-client, my-client]\n    audienceMatchPolicy: MatchAny\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "aud": ["not-my-client", "my-client"], "azp": "not-my-client"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "multiple-audiences in authentication config, multiple matches",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    audiences: [random-client, my-client, other-client]\n    audienceMatchPolicy: MatchAny\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "aud": ["not-my-client", "my-client", "other-client"]})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "multiple-audiences in authentication config, no match",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    audiences: [random-client, my-client]\n    audienceMatchPolicy: MatchAny\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "aud": ["not-my-client"]})),
            want: Want::Refused("audience"),
            ..Default::default()
        },
        Case {
            name: "nuanced audience validation using claim validation rules",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    audiences: [bar, foo, baz]\n    audienceMatchPolicy: MatchAny\n{plain}  claimValidationRules:\n  - expression: 'sets.equivalent(claims.aud, [\"bar\", \"foo\", \"baz\"])'\n    message: audience must exactly contain [bar, foo, baz]\n"
            ),
            claims: claims(json!({"username": "jane", "aud": ["foo", "bar", "baz"]})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "audience validation using claim validation rules fails",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    audiences: [bar, foo, baz]\n    audienceMatchPolicy: MatchAny\n{plain}  claimValidationRules:\n  - expression: 'sets.equivalent(claims.aud, [\"bar\", \"foo\", \"baz\"])'\n    message: audience must exactly contain [bar, foo, baz]\n"
            ),
            claims: claims(json!({"username": "jane", "aud": ["foo", "baz"]})),
            want: Want::Refused("audience must exactly contain [bar, foo, baz]"),
            ..Default::default()
        },
        Case {
            name: "invalid-issuer",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({"username": "jane", "iss": "https://example.com"})),
            want: Want::Refused("is not one this validator accepts"),
            ..Default::default()
        },
        Case {
            name: "username-prefix",
            jwt: auth(&username_claim("username", "oidc:")),
            claims: claims(json!({"username": "jane"})),
            want: u("oidc:jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "groups-prefix",
            jwt: auth(&username_and_groups("oidc:", "groups", "groups:")),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"]})),
            want: u("oidc:jane", None, &["groups:team1", "groups:team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups-prefix-distributed",
            jwt: dist(&username_and_groups("oidc:", "groups", "groups:")),
            claims: distributed(merge(json!({"username": "jane"}), groups_source("/groups", "groups_token"))),
            endpoints: vec![("/groups", "groups_token", answer(json!({"groups": ["team1", "team2"]})))],
            want: u("oidc:jane", None, &["groups:team1", "groups:team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "invalid-signing-alg",
            jwt: auth(&username_claim("username", "prefix:")),
            settings: vec![("algorithms", "RS256")],
            signer: 2,
            claims: claims(json!({"username": "jane"})),
            want: Want::Refused("signed with PS256, which this issuer does not accept"),
            ..Default::default()
        },
        Case {
            name: "ps256",
            jwt: auth(&plain),
            settings: vec![("algorithms", "PS256")],
            signer: 3,
            published: vec![3],
            claims: claims(json!({"username": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "not-https",
            jwt: entry("http://auth.example.com", &username_claim("username", "prefix:")),
            want: Want::LoadError("jwt[0].issuer.url: \"http://auth.example.com\": the URL scheme must be https"),
            ..Default::default()
        },
        Case {
            name: "no-username-claim",
            jwt: auth("  claimMappings:\n    username:\n      prefix: \"\"\n"),
            want: Want::LoadError("jwt[0].claimMappings.username: claim or expression is required"),
            ..Default::default()
        },
        Case {
            name: "invalid-sig-alg",
            jwt: auth(&username_claim("username", "prefix:")),
            settings: vec![("algorithms", "HS256")],
            want: Want::LoadError("HMAC (HS256) is never accepted"),
            ..Default::default()
        },
        Case {
            name: "health check failure",
            jwt: entry("https://this-will-not-work.notatld", &username_claim("username", "prefix:")),
            claims: json!({"iss": "https://this-will-not-work.notatld", "aud": "my-client", "exp": VALID, "username": "jane"}),
            unreachable: true,
            want: Want::Fault("Unavailable"),
            ..Default::default()
        },
        Case {
            name: "accounts.google.com issuer",
            jwt: entry("https://accounts.google.com", &username_claim("email", "")),
            claims: json!({"iss": "accounts.google.com", "email": "thomas.jefferson@gmail.com", "aud": "my-client", "exp": VALID}),
            discovery: Some("https://accounts.google.com/.well-known/openid-configuration"),
            want: u("thomas.jefferson@gmail.com", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "good token with bad client id",
            jwt: auth(&username_claim("username", "prefix:")),
            claims: claims(json!({"username": "jane", "aud": "my-wrong-client"})),
            want: Want::Refused("audience"),
            ..Default::default()
        },
        Case {
            name: "user validation rule fails for user.username",
            jwt: auth(&format!(
                "{}  userValidationRules:\n  - expression: \"!user.username.startsWith('system:')\"\n    message: \"username cannot used reserved system: prefix\"\n",
                username_claim("username", "system:")
            )),
            claims: claims(json!({"username": "jane"})),
            want: Want::Refused("username cannot used reserved system: prefix"),
            ..Default::default()
        },
        Case {
            name: "user validation rule fails for user.groups",
            jwt: auth(
                "  claimMappings:\n    username:\n      expression: claims.username\n    groups:\n      claim: groups\n      prefix: \"system:\"\n  userValidationRules:\n  - expression: \"user.groups.all(group, !group.startsWith('system:'))\"\n    message: \"groups cannot used reserved system: prefix\"\n",
            ),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"]})),
            want: Want::Refused("groups cannot used reserved system: prefix"),
            ..Default::default()
        },
        Case {
            name: "claim validation rule with expression fails",
            jwt: auth(&format!(
                "{plain}  claimValidationRules:\n  - expression: 'claims.hd == \"example.com\"'\n    message: hd claim must be example.com\n"
            )),
            claims: claims(json!({"username": "jane"})),
            want: Want::Refused("no such key: hd"),
            ..Default::default()
        },
        Case {
            name: "claim validation rule with expression",
            jwt: auth(&format!(
                "{plain}  claimValidationRules:\n  - expression: 'claims.hd == \"example.com\"'\n    message: hd claim must be example.com\n"
            )),
            claims: claims(json!({"username": "jane", "hd": "example.com"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "claim validation rule with expression and nested claims",
            jwt: auth(&format!(
                "{plain}  claimValidationRules:\n  - expression: 'claims.foo.bar == \"baz\"'\n    message: foo.bar claim must be baz\n"
            )),
            claims: claims(json!({"username": "jane", "hd": "example.com", "foo": {"bar": "baz"}})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "claim validation rule with mix of expression and claim",
            jwt: auth(&format!(
                "{plain}  claimValidationRules:\n  - expression: 'claims.foo.bar == \"baz\"'\n    message: foo.bar claim must be baz\n  - claim: hd\n    requiredValue: example.com\n"
            )),
            claims: claims(json!({"username": "jane", "hd": "example.com", "foo": {"bar": "baz"}})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "username claim mapping with expression",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.username\n"),
            claims: claims(json!({"username": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "username claim mapping with expression and nested claim",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.foo.username\n"),
            claims: claims(json!({"username": "jane", "foo": {"username": "jane"}})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "claim mappings with expressions and deeply nested claim - success",
            jwt: deep_config("claims.turtle.foo.bar.baz.panda"),
            claims: claims(deep.clone()),
            want: u("snorlax", Some("007"), &["snorlax", "007", "santa", "claus"], snorlax_extra),
            ..Default::default()
        },
        Case {
            name: "claim mappings with expressions and deeply nested claim - success via optional",
            jwt: deep_config("claims.turtle.foo.bar.baz.?a.b.c.d.orValue([ 'claus' ])"),
            claims: claims(deep.clone()),
            want: u("snorlax", Some("007"), &["claus"], snorlax_extra),
            ..Default::default()
        },
        Case {
            name: "claim mappings with expressions and deeply nested claim - failure without optional",
            jwt: deep_config("claims.turtle.foo.bar.baz.a.b.c.d"),
            claims: claims(deep.clone()),
            want: Want::Refused("no such key: a"),
            ..Default::default()
        },
        Case {
            name: "claim mappings with expressions and deeply nested claim - success - service account payload",
            jwt: "- issuer:\n    url: https://kubernetes.default.svc\n    audiences: [\"https://kubernetes.default.svc\"]\n  claimValidationRules:\n  - expression: 'claims.sub == (\"system:serviceaccount:\" + claims.kubernetes__dot__io.namespace + \":\" + claims.kubernetes__dot__io.serviceaccount.name)'\n  - expression: has(claims.kubernetes__dot__io.pod.uid)\n  - expression: 'claims[\"kubernetes.io\"][\"node\"][\"uid\"] != \"\"'\n  - expression: 'claims[?\"kubernetes.io\"][\"node\"][\"ip\"].orValue(true)'\n  claimMappings:\n    username:\n      expression: '\"system:serviceaccount:\" + claims.kubernetes__dot__io.namespace + \":\" + claims.kubernetes__dot__io.serviceaccount.name'\n    uid:\n      expression: claims.kubernetes__dot__io.serviceaccount.uid\n    groups:\n      expression: '[ \"system:serviceaccounts\", \"system:serviceaccounts:\" + claims.kubernetes__dot__io.namespace ]'\n    extra:\n    - key: authentication.x-kubernetes.io/pod-name\n      valueExpression: claims.kubernetes__dot__io.pod.name\n    - key: authentication.x-kubernetes.io/pod-uid\n      valueExpression: claims.kubernetes__dot__io.pod.uid\n    - key: authentication.x-kubernetes.io/node-name\n      valueExpression: claims.kubernetes__dot__io.node.name\n    - key: authentication.x-kubernetes.io/node-uid\n      valueExpression: claims.kubernetes__dot__io.node.uid\n    - key: authentication.x-kubernetes.io/credential-id\n      valueExpression: '\"JTI=\" + claims.jti'\n    - key: test.x-kubernetes.io/warnafter\n      valueExpression: string(int(claims.kubernetes__dot__io.warnafter))\n    - key: test.x-kubernetes.io/namespace\n      valueExpression: claims.kubernetes__dot__io.namespace\n  userValidationRules:\n  - expression: 'user.username.startsWith(\"system:serviceaccount:\" + user.extra[\"test.x-kubernetes.io/namespace\"][0] + \":\")'\n  - expression: user.uid != \"\"\n  - expression: '\"system:serviceaccounts\" in user.groups && user.groups.size() == 2'\n  - expression: user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__node__dash__name[0] == \"127.0.0.1\"\n  - expression: user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__credential__dash__id[0] == user.extra.authentication__dot__kubernetes__dot__io__slash__credential__dash__id[0]\n  - expression: user.extra[\"test.x-kubernetes.io/warnafter\"][0] == \"1700081020\"\n  - expression: has(user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__pod__dash__name)\n  - expression: user.extra[?\"test.x-kubernetes.io/missing\"].orValue([]) == []\n"
                .to_string(),
            claims: json!({"aud": ["https://kubernetes.default.svc"], "exp": VALID, "iat": 1_700_077_413, "iss": "https://kubernetes.default.svc",
                "jti": "ea28ed49-2e11-4280-9ec5-bc3d1d84661a",
                "kubernetes.io": {"namespace": "kube-system", "node": {"name": "127.0.0.1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"},
                    "pod": {"name": "coredns-69cbfb9798-jv9gn", "uid": "778a530c-b3f4-47c0-9cd5-ab018fb64f33"},
                    "serviceaccount": {"name": "coredns", "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"}, "warnafter": 1_700_081_020},
                "nbf": super::NOW, "sub": "system:serviceaccount:kube-system:coredns"}),
            want: u(
                "system:serviceaccount:kube-system:coredns",
                Some("a087d5a0-e1dd-43ec-93ac-f13d89cd13af"),
                &["system:serviceaccounts", "system:serviceaccounts:kube-system"],
                &[
                    ("authentication.kubernetes.io/credential-id", &["JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"]),
                    ("authentication.x-kubernetes.io/credential-id", &["JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"]),
                    ("authentication.x-kubernetes.io/node-name", &["127.0.0.1"]),
                    ("authentication.x-kubernetes.io/node-uid", &["58456cb0-dd00-45ed-b797-5578fdceaced"]),
                    ("authentication.x-kubernetes.io/pod-name", &["coredns-69cbfb9798-jv9gn"]),
                    ("authentication.x-kubernetes.io/pod-uid", &["778a530c-b3f4-47c0-9cd5-ab018fb64f33"]),
                    ("test.x-kubernetes.io/namespace", &["kube-system"]),
                    ("test.x-kubernetes.io/warnafter", &["1700081020"]),
                ],
            ),
            ..Default::default()
        },
        Case {
            name: "claim mappings with expressions and deeply nested claim - success - claims payload with deep use of __dot__",
            jwt: auth(
                "  claimValidationRules:\n  - expression: has(claims.turtle.foo.bar.baz.username__dot__io)\n  - expression: has(claims.turtle.foo.bar.baz.link[0].uid__dot__io)\n  - expression: has(claims.data[0].groups__dot__io)\n  - expression: claims.turtle.foo.bar.bee.username__dot__io.company__dot__io == \"fun-corp\"\n  claimMappings:\n    username:\n      expression: claims.turtle.foo.bar.baz.username__dot__io\n    uid:\n      expression: claims.turtle.foo.bar.baz.link[0].uid__dot__io\n    groups:\n      expression: claims.data[0].groups__dot__io\n",
            ),
            claims: claims(
                json!({"data": [{"groups.io": "gen1"}], "turtle": {"foo": {"bar": {"bee": {"username.io": {"company.io": "fun-corp"}},
                "baz": {"username.io": "snorlax.io", "link": [{"uid.io": "143"}]}}}}}),
            ),
            want: u("snorlax.io", Some("143"), &["gen1"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups claim mapping with expression",
            jwt: auth(expression_mappings),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"]})),
            want: u("jane", None, &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "groups claim with expression",
            jwt: auth(
                "  claimMappings:\n    username:\n      claim: username\n      prefix: \"oidc:\"\n    groups:\n      expression: '(claims.roles.split(\",\") + claims.other_roles.split(\",\")).map(role, \"groups:\" + role)'\n",
            ),
            claims: claims(json!({"username": "jane", "roles": "foo,bar", "other_roles": "baz,qux"})),
            want: u("oidc:jane", None, &["groups:foo", "groups:bar", "groups:baz", "groups:qux"], &[]),
            ..Default::default()
        },
        Case {
            name: "uid claim mapping with expression",
            jwt: auth(&format!("{expression_mappings}    uid:\n      expression: claims.uid\n")),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"], "uid": "1234"})),
            want: u("jane", Some("1234"), &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "uid claim mapping with claim",
            jwt: auth(&format!("{expression_mappings}    uid:\n      claim: uid\n")),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"], "uid": "1234"})),
            want: u("jane", Some("1234"), &["team1", "team2"], &[]),
            ..Default::default()
        },
        Case {
            name: "extra claim mapping with expression",
            jwt: auth(&format!(
                "{expression_mappings}    uid:\n      expression: claims.uid\n    extra:\n    - key: example.org/foo\n      valueExpression: claims.foo\n    - key: example.org/bar\n      valueExpression: claims.bar\n"
            )),
            claims: claims(
                json!({"username": "jane", "groups": ["team1", "team2"], "uid": "1234", "foo": "bar", "bar": ["baz", "qux"]}),
            ),
            want: u(
                "jane",
                Some("1234"),
                &["team1", "team2"],
                &[("example.org/bar", &["baz", "qux"]), ("example.org/foo", &["bar"])],
            ),
            ..Default::default()
        },
        Case {
            name: "extra claim mapping, value derived from claim value",
            jwt: auth(
                "  claimMappings:\n    username:\n      expression: claims.username\n    extra:\n    - key: example.org/admin\n      valueExpression: '(has(claims.is_admin) && claims.is_admin) ? \"true\":\"\"'\n    - key: example.org/admin_1\n      valueExpression: 'claims.?is_admin.orValue(false) == true ? \"true\":\"\"'\n    - key: example.org/non_existent\n      valueExpression: 'claims.?non_existent.orValue(\"default\") == \"default\" ? \"true\":\"\"'\n",
            ),
            claims: claims(json!({"username": "jane", "is_admin": true})),
            want: u(
                "jane",
                None,
                &[],
                &[
                    ("example.org/admin", &["true"]),
                    ("example.org/admin_1", &["true"]),
                    ("example.org/non_existent", &["true"]),
                ],
            ),
            ..Default::default()
        },
        Case {
            name: "hardcoded extra claim mapping",
            jwt: auth(
                "  claimMappings:\n    username:\n      expression: claims.username\n    extra:\n    - key: example.org/admin\n      valueExpression: '\"true\"'\n",
            ),
            claims: claims(json!({"username": "jane", "is_admin": true})),
            want: u("jane", None, &[], &[("example.org/admin", &["true"])]),
            ..Default::default()
        },
        Case {
            name: "extra claim mapping, multiple expressions for same key",
            jwt: auth(&format!(
                "{expression_mappings}    uid:\n      expression: claims.uid\n    extra:\n    - key: example.org/foo\n      valueExpression: claims.foo\n    - key: example.org/bar\n      valueExpression: claims.bar\n    - key: example.org/foo\n      valueExpression: claims.bar\n"
            )),
            want: Want::LoadError("jwt[0].claimMappings.extra[2].key: duplicate key \"example.org/foo\""),
            ..Default::default()
        },
        Case {
            name: "extra claim mapping, empty string value for key",
            jwt: auth(&format!(
                "{expression_mappings}    uid:\n      expression: claims.uid\n    extra:\n    - key: example.org/foo\n      valueExpression: claims.foo\n    - key: example.org/bar\n      valueExpression: claims.bar\n"
            )),
            claims: claims(
                json!({"username": "jane", "groups": ["team1", "team2"], "uid": "1234", "foo": "", "bar": ["baz", "qux"]}),
            ),
            want: u("jane", Some("1234"), &["team1", "team2"], &[("example.org/bar", &["baz", "qux"])]),
            ..Default::default()
        },
        Case {
            name: "extra claim mapping with user validation rule succeeds",
            jwt: auth(&format!(
                "{expression_mappings}    uid:\n      expression: claims.uid\n    extra:\n    - key: example.org/foo\n      valueExpression: \"'bar'\"\n    - key: example.org/baz\n      valueExpression: claims.baz\n  userValidationRules:\n  - expression: \"'bar' in user.extra['example.org/foo'] && 'qux' in user.extra['example.org/baz']\"\n    message: example.org/foo must be bar and example.org/baz must be qux\n"
            )),
            claims: claims(json!({"username": "jane", "groups": ["team1", "team2"], "uid": "1234", "baz": "qux"})),
            want: u(
                "jane",
                Some("1234"),
                &["team1", "team2"],
                &[("example.org/baz", &["qux"]), ("example.org/foo", &["bar"])],
            ),
            ..Default::default()
        },
        Case {
            name: "groups expression returns null",
            jwt: auth(expression_mappings),
            claims: claims(json!({"username": "jane", "groups": null, "uid": "1234", "baz": "qux"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "test user validation rule doesn't fail when user info is empty except username",
            jwt: auth(&format!(
                "{expression_mappings}  userValidationRules:\n  - expression: user.username == \" \"\n    message: username must be single space\n  - expression: user.uid == \"\"\n    message: uid must be empty string\n  - expression: \"!('bar' in user.groups)\"\n    message: groups must not contain bar\n  - expression: \"!('bar' in user.extra)\"\n    message: extra must not contain bar\n"
            )),
            claims: claims(json!({"username": " ", "groups": null, "baz": "qux"})),
            want: u(" ", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "empty username is allowed via claim",
            jwt: auth(
                "  claimMappings:\n    username:\n      claim: username\n      prefix: \"\"\n    groups:\n      expression: claims.groups\n  userValidationRules:\n  - expression: user.username == \"\"\n    message: username must be empty string\n  - expression: user.uid == \"\"\n    message: uid must be empty string\n  - expression: \"!('bar' in user.groups)\"\n    message: groups must not contain bar\n  - expression: \"!('bar' in user.extra)\"\n    message: extra must not contain bar\n",
            ),
            claims: claims(json!({"username": "", "groups": null, "baz": "qux"})),
            want: u("", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "minimum valid jwt payload",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.user\n"),
            claims: claims(json!({"user": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "discovery-url",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    discoveryURL: {CLAIMS}/.well-known/openid-configuration\n    audiences: [my-client]\n{plain}"
            ),
            claims: claims(json!({"username": "jane"})),
            discovery: Some("https://claims.example/.well-known/openid-configuration"),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "discovery url, issuer has a path",
            jwt: format!(
                "- issuer:\n    url: {AUTH}/a/b/foo\n    discoveryURL: {CLAIMS}/.well-known/openid-configuration\n    audiences: [my-client]\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "iss": format!("{AUTH}/a/b/foo")})),
            discovery: Some("https://claims.example/.well-known/openid-configuration"),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "discovery url has a path, issuer url has no path",
            jwt: format!(
                "- issuer:\n    url: {AUTH}\n    discoveryURL: {CLAIMS}/c/d/bar/.well-known/openid-configuration\n    audiences: [my-client]\n{plain}"
            ),
            claims: claims(json!({"username": "jane"})),
            discovery: Some("https://claims.example/c/d/bar/.well-known/openid-configuration"),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "discovery url and issuer url have paths",
            jwt: format!(
                "- issuer:\n    url: {AUTH}/a/b/foo\n    discoveryURL: {CLAIMS}/c/d/bar/.well-known/openid-configuration\n    audiences: [my-client]\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "iss": format!("{AUTH}/a/b/foo")})),
            discovery: Some("https://claims.example/c/d/bar/.well-known/openid-configuration"),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "discovery url and issuer url have paths, issuer url has trailing slash",
            jwt: format!(
                "- issuer:\n    url: {AUTH}/a/b/foo/\n    discoveryURL: {CLAIMS}/c/d/bar/.well-known/openid-configuration\n    audiences: [my-client]\n{plain}"
            ),
            claims: claims(json!({"username": "jane", "iss": format!("{AUTH}/a/b/foo/")})),
            discovery: Some("https://claims.example/c/d/bar/.well-known/openid-configuration"),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "credential id set in extra even when no extra claim mappings are defined",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.username\n"),
            claims: claims(json!({"username": "jane", "jti": "1234"})),
            want: u("jane", None, &[], &[("authentication.kubernetes.io/credential-id", &["JTI=1234"])]),
            ..Default::default()
        },
        Case {
            name: "credential id set in extra when extra claim mappings are defined",
            jwt: auth(
                "  claimMappings:\n    username:\n      expression: claims.username\n    extra:\n    - key: example.org/foo\n      valueExpression: claims.foo\n    - key: example.org/bar\n      valueExpression: claims.bar\n",
            ),
            claims: claims(json!({"username": "jane", "jti": "1234", "foo": "bar", "bar": ["baz", "qux"]})),
            want: u(
                "jane",
                None,
                &[],
                &[
                    ("authentication.kubernetes.io/credential-id", &["JTI=1234"]),
                    ("example.org/bar", &["baz", "qux"]),
                    ("example.org/foo", &["bar"]),
                ],
            ),
            ..Default::default()
        },
        Case {
            name: "non-string jti claim does not set credential id in extra or error",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.username\n"),
            claims: claims(json!({"username": "jane", "jti": 1234})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
        Case {
            name: "missing jti claim does not set credential id in extra or error",
            jwt: auth("  claimMappings:\n    username:\n      expression: claims.username\n"),
            claims: claims(json!({"username": "jane"})),
            want: u("jane", None, &[], &[]),
            ..Default::default()
        },
    ]
}

#[test]
fn kube_apiserver_token_cases_decide_the_same() {
    let keys = keys();
    let cases = cases();
    assert_eq!(cases.len(), 81, "the ported TestToken cases (85 upstream, 4 left out: see the module doc)");
    for case in cases {
        run(case, &keys);
    }
}
