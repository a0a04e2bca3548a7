//! The configuration validation cases of kube-apiserver
//! (`pkg/apis/apiserver/validation/validation_test.go`: authentication
//! configuration, issuer URL, discovery URL, audiences, certificate authority,
//! claim validation rules, claim mappings, user validation rules), in our own
//! form: the same configuration loads, or fails to load at the same field.
//!
//! Of its 103 authentication cases, 94 are here. Left out: the two
//! disallowed-issuer cases (kube-apiserver's own service-account issuer;
//! credbroker has none) and the seven that run with the
//! StructuredAuthenticationConfiguration feature gate off (there is no gate
//! here: the structured configuration is the only one the file has). Where the
//! upstream case checks internal state (whether `email_verified` is used), the
//! case here checks the decision that state drives: whether a username
//! expression using `claims.email` loads next to it. The authorization
//! configuration cases of the same file are not about authentication.

use super::{config, load};

/// Load an AuthenticationConfiguration whose `jwt` list is `jwt`, with other settings.
fn check_with(jwt: &str, settings: &[(&str, &str)]) -> Result<(), String> {
    let file = config(jwt);
    let mut all = vec![("authentication-config", file.as_str())];
    all.extend_from_slice(settings);
    load(&all).map(|_| ())
}

fn check(jwt: &str) -> Result<(), String> {
    check_with(jwt, &[])
}

/// A valid entry of kube's tests, with `issuer` lines and `rest` swapped in.
fn entry(issuer: &str, rest: &str) -> String {
    format!("- issuer:\n{issuer}\n{rest}")
}

const ISSUER: &str = "    url: https://issuer-url\n    audiences: [audience]";
const RULES: &str = "  claimValidationRules:\n  - claim: foo\n    requiredValue: bar\n";
const USERNAME: &str = "  claimMappings:\n    username:\n      claim: sub\n      prefix: prefix\n";

fn valid() -> String {
    entry(ISSUER, &format!("{RULES}{USERNAME}"))
}

/// An entry whose username is the expression `username` (quoted for YAML).
fn username_expression(username: &str, rest: &str) -> String {
    entry(ISSUER, &format!("{RULES}  claimMappings:\n    username:\n      expression: {username}\n{rest}"))
}

#[track_caller]
fn fails(result: Result<(), String>, path: &str, why: &str) {
    match result {
        Ok(()) => panic!("loads, but {path} should fail with {why:?}"),
        Err(e) => assert!(e.contains(&format!("{path}: ")) && e.contains(why), "{e}\n  want {path}: ...{why}..."),
    }
}

#[track_caller]
fn loads(result: Result<(), String>) {
    if let Err(e) = result {
        panic!("does not load: {e}");
    }
}

const EMAIL_RULE: &str = "claims.email_verified must be used";

#[test]
fn authentication_configuration() {
    loads(
        load(&[(
            "authentication-config",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n",
        )])
        .map(|_| ()),
    );
    fails(check(&format!("{}{}", valid(), valid())), "jwt[1].issuer.url", "duplicate issuer \"https://issuer-url\"");
    let discovery = |url: &str| {
        entry(
            &format!(
                "    url: {url}\n    discoveryURL: https://discovery-url/.well-known/openid-configuration\n    audiences: [audience]"
            ),
            &format!("{RULES}{USERNAME}"),
        )
    };
    fails(
        check(&format!("{}{}", discovery("https://issuer-url"), discovery("https://different-issuer-url"))),
        "jwt[1].issuer.discoveryURL",
        "duplicate discoveryURL",
    );
    fails(
        check(&entry("    url: invalid-url\n    audiences: [audience]", USERNAME)),
        "jwt[0].issuer.url",
        "scheme must be https",
    );
    fails(
        check(&entry(ISSUER, &format!("{RULES}  - claim: foo\n    requiredValue: baz\n{USERNAME}"))),
        "jwt[0].claimValidationRules[1].claim",
        "duplicate claim \"foo\"",
    );
    fails(
        check(&entry(ISSUER, &format!("{RULES}  claimMappings:\n    username:\n      prefix: prefix\n"))),
        "jwt[0].claimMappings.username",
        "claim or expression is required",
    );
    fails(
        check(&entry(
            ISSUER,
            &format!(
                "{RULES}{USERNAME}  userValidationRules:\n  - expression: user.username == 'foo'\n  - expression: user.username == 'foo'\n"
            ),
        )),
        "jwt[0].userValidationRules[1].expression",
        "duplicate expression",
    );
    let email = "jwt[0].claimMappings.username.expression";
    fails(check(&username_expression("claims.email", "")), email, EMAIL_RULE);
    loads(check(&username_expression("claims.email_", "")));
    fails(check(&username_expression("\"['yay', string(claims.email), 'panda'].join(' ')\"", "")), email, EMAIL_RULE);
    fails(check(&username_expression("claims.?email", "")), email, EMAIL_RULE);
    fails(check(&username_expression("'{claims.?email: \"panda\"}'", "")), email, EMAIL_RULE);
    fails(check(&username_expression("'{\"fancy\": claims.?email}'", "")), email, EMAIL_RULE);
    fails(check(&username_expression("'[\"a\"].map(i, i + claims.email)'", "")), email, EMAIL_RULE);
    loads(check(&entry(
        ISSUER,
        "  claimValidationRules:\n  - expression: 'string(claims.email_verified) == \"panda\"'\n  claimMappings:\n    username:\n      expression: \"['yay', string(claims.email), 'panda'].join(' ')\"\n",
    )));
    loads(check(&username_expression(
        "\"['yay', string(claims.email), 'panda'].join(' ')\"",
        "    extra:\n    - key: panda.io/foo\n      valueExpression: claims.email_verified.upperAscii()\n",
    )));
    loads(check(&username_expression(
        "\"['yay', string(claims.email), 'panda'].join(' ')\"",
        "    extra:\n    - key: panda.io/foo\n      valueExpression: claims.?email_verified\n",
    )));
    loads(check(&username_expression("'claims.?email_verified.orValue(true) ? claims.email : claims.sub'", "")));
    loads(check(&username_expression("'claims.?email_verified.orValue(false) ? claims.email : claims.sub'", "")));
    loads(check(&valid()));
}

fn issuer_url(url: &str) -> Result<(), String> {
    check(&entry(&format!("    url: {url:?}\n    audiences: [audience]"), USERNAME))
}

#[test]
fn issuer_url_rules() {
    let path = "jwt[0].issuer.url";
    fails(issuer_url(""), path, "the issuer URL is required");
    fails(issuer_url("https://issuer-url:invalid-port"), path, "invalid port \":invalid-port\" after host");
    fails(issuer_url("http://issuer-url"), path, "the URL scheme must be https");
    fails(issuer_url("https://user:pass@issuer-url"), path, "must not contain a username or password");
    fails(issuer_url("https://issuer-url?query"), path, "must not contain a query");
    fails(issuer_url("https://issuer-url#fragment"), path, "must not contain a fragment");
    loads(issuer_url("https://issuer-url"));
}

fn discovery_url(issuer: &str, discovery: &str) -> Result<(), String> {
    check(&entry(&format!("    url: {issuer:?}\n    discoveryURL: {discovery:?}\n    audiences: [audience]"), USERNAME))
}

#[test]
fn discovery_url_rules() {
    let path = "jwt[0].issuer.discoveryURL";
    let svc = "https://oidc.oidc-namespace.svc";
    loads(discovery_url("https://issuer-url", ""));
    fails(discovery_url("https://issuer-url", &format!("{svc}:invalid-port")), path, "invalid port");
    fails(discovery_url("https://issuer-url", "http://oidc.oidc-namespace.svc"), path, "scheme must be https");
    fails(
        discovery_url("https://issuer-url", "https://user:pass@oidc.oidc-namespace.svc"),
        path,
        "username or password",
    );
    fails(discovery_url("https://issuer-url", &format!("{svc}?query")), path, "must not contain a query");
    fails(discovery_url("https://issuer-url", &format!("{svc}#fragment")), path, "must not contain a fragment");
    loads(discovery_url("https://issuer-url", svc));
    loads(discovery_url("https://issuer-url", &format!("{svc}/path")));
    fails(discovery_url("https://issuer-url", "https://issuer-url"), path, "discoveryURL must be different from URL");
    fails(discovery_url("https://issuer-url", "https://issuer-url/"), path, "discoveryURL must be different from URL");
    fails(
        discovery_url("https://issuer-url", "https://issuer-url///"),
        path,
        "discoveryURL must be different from URL",
    );
    fails(discovery_url("https://issuer-url/", "https://issuer-url"), path, "discoveryURL must be different from URL");
}

fn audiences(list: &str, policy: &str) -> Result<(), String> {
    let policy = if policy.is_empty() { String::new() } else { format!("\n    audienceMatchPolicy: {policy}") };
    check(&entry(&format!("    url: https://issuer-url\n    audiences: {list}{policy}"), USERNAME))
}

#[test]
fn audience_rules() {
    let path = "jwt[0].issuer.audiences";
    let policy = "jwt[0].issuer.audienceMatchPolicy";
    fails(audiences("[]", ""), path, "at least one audience is required");
    fails(audiences("[\"\"]", ""), "jwt[0].issuer.audiences[0]", "an audience can't be empty");
    fails(audiences("[audience]", "MatchExact"), policy, "must be empty or MatchAny for a single audience");
    loads(audiences("[audience]", ""));
    loads(audiences("[audience]", "MatchAny"));
    fails(
        audiences("[audience, audience]", "MatchAny"),
        "jwt[0].issuer.audiences[1]",
        "duplicate audience \"audience\"",
    );
    fails(audiences("[audience1, audience2]", ""), policy, "must be MatchAny for multiple audiences");
    loads(audiences("[audience1, audience2]", "MatchAny"));
}

/// A self-signed CA certificate from openssl.
fn ca_pem() -> String {
    let dir = std::env::temp_dir().join(format!("jwt-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn with_ca(pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("      {l}\n")).collect();
    entry(
        &format!("    url: https://issuer-url\n    audiences: [audience]\n    certificateAuthority: |\n{indented}"),
        USERNAME,
    )
}

#[test]
fn certificate_authority_rules() {
    let path = "jwt[0].issuer.certificateAuthority";
    fails(
        check(&entry(
            "    url: https://issuer-url\n    audiences: [audience]\n    certificateAuthority: invalid",
            USERNAME,
        )),
        path,
        "does not contain any PEM certificate",
    );
    loads(check(&valid()));
    let pem = ca_pem();
    loads(check_with(&with_ca(&pem), &[("granted-ca", &pem)]));
    // The host's TLS roots are what is trusted: a CA the grants do not hold is an error.
    fails(check(&with_ca(&pem)), path, "set the setting granted-ca");
    let other = ca_pem();
    fails(check_with(&with_ca(&pem), &[("granted-ca", &other)]), path, "certificate 1 of 1 is not in granted-ca");
    assert!(check_with(&valid(), &[("granted-ca", "junk")]).unwrap_err().contains("setting `granted-ca`"));
}

fn rules(rules: &str) -> Result<(), String> {
    check(&entry(ISSUER, &format!("  claimValidationRules:\n{rules}{USERNAME}")))
}

/// A claim validation rule next to a username expression using `claims.email`:
/// it loads when the rules use `claims.email_verified`.
fn rules_with_email_username(rules: &str) -> Result<(), String> {
    check(&entry(
        ISSUER,
        &format!("  claimValidationRules:\n{rules}  claimMappings:\n    username:\n      expression: claims.email\n"),
    ))
}

#[test]
fn claim_validation_rules() {
    let at = "jwt[0].claimValidationRules[0]";
    fails(rules("  - {}\n"), at, "claim or expression is required");
    fails(rules("  - claim: claim\n    expression: expression\n"), at, "claim and expression can't both be set");
    fails(
        rules("  - claim: claim\n    message: message\n"),
        &format!("{at}.message"),
        "message can't be set when claim is set",
    );
    fails(
        rules("  - expression: claims.foo == 'bar'\n    requiredValue: value\n"),
        &format!("{at}.requiredValue"),
        "requiredValue can't be set when expression is set",
    );
    fails(
        rules("  - claim: claim\n  - claim: claim\n"),
        "jwt[0].claimValidationRules[1].claim",
        "duplicate claim \"claim\"",
    );
    fails(
        rules("  - expression: claims.foo == 'bar'\n  - expression: claims.foo == 'bar'\n"),
        "jwt[0].claimValidationRules[1].expression",
        "duplicate expression",
    );
    fails(
        rules("  - expression: foo.bar\n"),
        &format!("{at}.expression"),
        "`foo.bar` does not compile: undeclared reference to `foo`",
    );
    fails(rules("  - expression: claims.foo\n"), &format!("{at}.expression"), "must evaluate to bool");
    loads(rules("  - expression: claims.foo == 'bar'\n"));
    let claims_rules = "  - claim: claim1\n    requiredValue: value1\n  - claim: claim2\n    requiredValue: value2\n";
    loads(rules_with_email_username(&format!("{claims_rules}  - expression: has(claims.email_verified)\n")));
    fails(
        rules_with_email_username(&format!("{claims_rules}  - expression: has(claims.email_verified_)\n")),
        "jwt[0].claimMappings.username.expression",
        EMAIL_RULE,
    );
    fails(
        rules_with_email_username(
            "  - claim: claim1\n    requiredValue: value1\n  - claim: claim2\n    requiredValue: claims.email_verified\n",
        ),
        "jwt[0].claimMappings.username.expression",
        EMAIL_RULE,
    );
}

fn mappings(yaml: &str) -> Result<(), String> {
    check(&entry(ISSUER, &format!("  claimMappings:\n{yaml}")))
}

const USER_CLAIM: &str = "    username:\n      claim: claim\n      prefix: prefix\n";
const EXPRESSIONS: &str =
    "    username:\n      expression: claims.username\n    groups:\n      expression: claims.groups\n";

#[test]
fn claim_mapping_rules() {
    let m = "jwt[0].claimMappings";
    fails(
        mappings("    username:\n      claim: claim\n      expression: claims.username\n"),
        &format!("{m}.username"),
        "can't both be set",
    );
    fails(mappings("    username: {}\n"), &format!("{m}.username"), "claim or expression is required");
    fails(
        mappings("    username:\n      expression: claims.username\n      prefix: prefix\n"),
        &format!("{m}.username.prefix"),
        "prefix can't be set when expression is set",
    );
    fails(
        mappings("    username:\n      claim: claim\n"),
        &format!("{m}.username.prefix"),
        "prefix is required when claim is set",
    );
    fails(
        mappings("    username:\n      expression: foo.bar\n"),
        &format!("{m}.username.expression"),
        "does not compile",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    groups:\n      claim: claim\n      expression: claims.groups\n")),
        &format!("{m}.groups"),
        "can't both be set",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    groups:\n      expression: claims.groups\n      prefix: prefix\n")),
        &format!("{m}.groups.prefix"),
        "prefix can't be set when expression is set",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    groups:\n      claim: claim\n")),
        &format!("{m}.groups.prefix"),
        "prefix is required when claim is set",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    groups:\n      expression: foo.bar\n")),
        &format!("{m}.groups.expression"),
        "does not compile",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    uid:\n      claim: claim\n      expression: claims.uid\n")),
        &format!("{m}.uid"),
        "can't both be set",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    uid:\n      expression: foo.bar\n")),
        &format!("{m}.uid.expression"),
        "does not compile",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    extra:\n    - key: \"\"\n      valueExpression: claims.extra\n")),
        &format!("{m}.extra[0].key"),
        "the key is required",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    extra:\n    - key: example.org/foo\n      valueExpression: \"\"\n")),
        &format!("{m}.extra[0].valueExpression"),
        "valueExpression is required",
    );
    fails(
        mappings(&format!("{USER_CLAIM}    extra:\n    - key: example.org/foo\n      valueExpression: foo.bar\n")),
        &format!("{m}.extra[0].valueExpression"),
        "does not compile",
    );
    let extra = |items: &str| mappings(&format!("{EXPRESSIONS}    extra:\n{items}"));
    fails(
        extra(
            "    - key: example.org/foo\n      valueExpression: claims.extra\n    - key: example.org/foo\n      valueExpression: claims.extras\n",
        ),
        &format!("{m}.extra[1].key"),
        "duplicate key",
    );
    fails(
        extra("    - key: foo\n      valueExpression: claims.extra\n"),
        &format!("{m}.extra[0].key"),
        "must be a domain-prefixed path",
    );
    fails(
        extra("    - key: example.org/Foo\n      valueExpression: claims.extra\n"),
        &format!("{m}.extra[0].key"),
        "must be lowercase",
    );
    let with = |username: &str, extra_expression: &str| {
        mappings(&format!(
            "    username:\n      expression: {username}\n    groups:\n      expression: claims.groups\n    uid:\n      expression: claims.uid\n    extra:\n    - key: example.org/foo\n      valueExpression: {extra_expression}\n"
        ))
    };
    let email = "jwt[0].claimMappings.username.expression";
    fails(with("claims.email", "claims.extra"), email, EMAIL_RULE);
    fails(with("'has(claims.email) ? claims.email : claims.sub'", "claims.extra"), email, EMAIL_RULE);
    fails(with("claims.email.trim()", "claims.extra"), email, EMAIL_RULE);
    loads(with("claims.email", "claims.email_verified"));
    loads(with("claims.email", "'has(claims.email_verified) ? string(claims.email_verified) : \"false\"'"));
    fails(
        with("claims.email", "'has(claims.email_verified_) ? string(claims.email_verified_) : \"false\"'"),
        email,
        EMAIL_RULE,
    );
    // kube's "verification via hasVerifiedEmail": a claim validation rule already reads it.
    loads(check(&entry(
        ISSUER,
        "  claimValidationRules:\n  - expression: claims.email_verified == true\n  claimMappings:\n    username:\n      expression: claims.email\n    extra:\n    - key: example.org/foo\n      valueExpression: claims.extra\n",
    )));
    loads(with("claims.email_", "claims.extra"));
    loads(with("claims.other.claims.email", "claims.extra"));
    loads(with("claims.username", "claims.extra"));
}

fn user_rules(rules: &str) -> Result<(), String> {
    check(&entry(ISSUER, &format!("{USERNAME}  userValidationRules:\n{rules}")))
}

#[test]
fn user_validation_rules() {
    let at = "jwt[0].userValidationRules[0].expression";
    fails(user_rules("  - {}\n"), at, "expression is required");
    fails(
        user_rules("  - expression: user.username == 'foo'\n  - expression: user.username == 'foo'\n"),
        "jwt[0].userValidationRules[1].expression",
        "duplicate expression",
    );
    fails(user_rules("  - expression: foo.bar\n"), at, "does not compile");
    fails(user_rules("  - expression: user.username\n"), at, "must evaluate to bool");
    loads(user_rules(
        "  - expression: user.username == 'foo'\n  - expression: \"!user.username.startsWith('system:')\"\n    message: \"username cannot used reserved system: prefix\"\n",
    ));
}
