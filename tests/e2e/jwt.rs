//! The `jwt` validator reading kube-apiserver's AuthenticationConfiguration
//! (`authentication-config = "file:..."`), against two real OpenID providers
//! (npm `oidc-provider`): kubectl through the stand-in API server, distributed
//! groups from the provider's claims endpoint, CEL mappings and rules, the
//! `jti` credential id, and the file's mistakes failing `serve --check`.

use serde_json::json;

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::oidc::OidcProvider;
use crate::harness::webhook::Webhook;
use crate::harness::{Run, UserEnv};
use crate::oidc::{device_approver, kubectl_acting, oidc_profile};

/// `pem` indented to sit under a YAML `|` block at `indent` spaces.
fn block(pem: &str, indent: usize) -> String {
    pem.lines().map(|l| format!("{}{l}\n", " ".repeat(indent))).collect()
}

/// Two issuers in one file: `a` maps claims (distributed groups included)
/// with prefixes, `b` maps access tokens with CEL.
fn authentication_configuration(a: &OidcProvider, b: &OidcProvider) -> String {
    format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {a_url}
    audiences: [public, confidential]
    audienceMatchPolicy: MatchAny
    certificateAuthority: |
{a_ca}  claimValidationRules:
  - expression: claims.?email_verified.orValue(true) == true
    message: verify your email first
  claimMappings:
    username:
      claim: sub
      prefix: "a:"
    groups:
      claim: groups
      prefix: "a:"
  userValidationRules:
  - expression: "!user.username.startsWith('system:')"
    message: no system users
- issuer:
    url: {b_url}
    audiences: ["https://kubernetes.example"]
    certificateAuthority: |
{b_ca}  claimValidationRules:
  - expression: 'claims.scope.split(" ").exists(s, s == "groups")'
    message: the token needs the groups scope
  claimMappings:
    username:
      expression: "'robot:' + claims.client_id"
    groups:
      expression: "claims.scope.split(' ').map(s, 'scope:' + s)"
    extra:
    - key: corp.example/client
      valueExpression: claims.client_id
"#,
        a_url = a.issuer,
        b_url = b.issuer,
        a_ca = block(&a.ca.cert_pem, 6),
        b_ca = block(&b.ca.cert_pem, 6),
    )
}

/// A `jwt` validator `corp` reading `file` (through `file:`), trusting the
/// CAs of `providers` for its HTTPS and granting their origins.
fn validator(env: &UserEnv, file: &str, providers: &[&OidcProvider]) -> String {
    let dir = env.home().join("authn");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("authn.yaml");
    std::fs::write(&yaml, file).unwrap();
    let bundle = dir.join("idp-cas.pem");
    std::fs::write(&bundle, providers.iter().map(|p| p.ca.cert_pem.clone()).collect::<String>()).unwrap();
    let origins = providers.iter().map(|p| format!("{:?}", p.issuer)).collect::<Vec<_>>().join(", ");
    format!(
        r#"[cache]
positive-ttl-seconds = 0
negative-ttl-seconds = 0

[[validators]]
name = "corp"
plugin = "jwt"
[validators.settings]
authentication-config = "file:{yaml}"
granted-ca = "file:{bundle}"
[validators.grants]
http = [{origins}]
ca-file = "{bundle}"
"#,
        yaml = yaml.display(),
        bundle = bundle.display(),
    )
}

#[test]
fn kubectl_logs_in_through_a_file_of_two_issuers_with_distributed_groups() {
    let (a, b) = (OidcProvider::start(&[]), OidcProvider::start(&[]));
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &validator(&env, &authentication_configuration(&a, &b), &[&a, &b]));
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    oidc_profile(&env, &a, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &apiserver, &Exec::v1(&["get", "--provider", "idp"]));

    // carol's groups overflow the token: it names a claims endpoint instead.
    let run = kubectl_acting(&env, &config, device_approver(&a, "carol"));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["a:carol"]);
    let token = apiserver.tokens_seen()[0].clone();
    let (_, answer) = webhook.review("v1", &token, &[]);
    let groups = answer["status"]["user"]["groups"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 200, "{answer}");
    assert_eq!((&groups[0], &groups[199]), (&json!("a:group-000"), &json!("a:group-199")));
    assert_eq!(a.claim_requests()["carol"], 1, "the claims endpoint answered once: the second review used the cache");

    // dave's source has no access token: the token under review is the bearer.
    let dave = a.device_id_token("dave");
    let (_, answer) = webhook.review("v1", &dave, &[]);
    assert_eq!(answer["status"]["user"]["username"], "a:dave", "{answer}");
    assert_eq!(answer["status"]["user"]["groups"], json!(["a:contractors"]));
    // alice carries her groups herself.
    let (_, answer) = webhook.review("v1", &a.device_id_token("alice"), &[]);
    assert_eq!(answer["status"]["user"]["groups"], json!(["a:devs", "a:ops"]), "{answer}");
}

#[test]
fn the_second_issuer_maps_access_tokens_with_cel_and_the_jti_credential_id() {
    let (a, b) = (OidcProvider::start(&[]), OidcProvider::start(&[]));
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &validator(&env, &authentication_configuration(&a, &b), &[&a, &b]));

    let token = b.client_credentials_token_for(Some("openid groups"));
    let (_, answer) = webhook.review("v1", &token, &[]);
    let user = &answer["status"]["user"];
    assert_eq!(user["username"], "robot:confidential", "{answer}");
    assert_eq!(user["groups"], json!(["scope:openid", "scope:groups"]));
    assert_eq!(user["extra"]["corp.example/client"], json!(["confidential"]));
    let credential = user["extra"]["authentication.kubernetes.io/credential-id"][0].as_str().unwrap_or_default();
    assert!(credential.starts_with("JTI="), "kube-apiserver's credential id from the jti: {answer}");

    let (_, answer) = webhook.review("v1", &b.client_credentials_token_for(Some("openid")), &[]);
    assert_eq!(answer["status"]["authenticated"], false);
    assert_eq!(answer["status"]["error"], "corp: the token needs the groups scope", "{answer}");
    // a's access tokens are for https://kubernetes.example, which a's entry does not accept.
    let (_, answer) = webhook.review("v1", &a.client_credentials_token(), &[]);
    assert!(answer["status"]["error"].as_str().unwrap_or_default().contains("audience"), "{answer}");
}

/// `serve --check` of the validator with `file` as its AuthenticationConfiguration.
fn check(env: &UserEnv, file: &str, providers: &[&OidcProvider], granted_ca: bool) -> Run {
    let mut validators = validator(env, file, providers);
    if !granted_ca {
        validators = validators.lines().filter(|l| !l.starts_with("granted-ca")).collect::<Vec<_>>().join("\n");
    }
    let config = env.home().join("check.toml");
    std::fs::write(&config, format!("[server]\ninsecure-plain-http = true\nlisten = \"127.0.0.1:0\"\n{validators}"))
        .unwrap();
    env.run(&["serve", "--config", config.to_str().unwrap(), "--check"])
}

#[test]
fn the_files_mistakes_fail_the_load_naming_the_field() {
    let (a, b) = (OidcProvider::start(&[]), OidcProvider::start(&[]));
    let env = UserEnv::new();
    let good = authentication_configuration(&a, &b);
    let ok = check(&env, &good, &[&a, &b], true);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);

    let cases = [
        (format!("{good}anonymous:\n  enabled: true\n"), "anonymous: not supported"),
        (
            good.replacen(
                "    audiences: [public, confidential]",
                "    audiences: [public, confidential]\n    egressSelectorType: cluster",
                1,
            ),
            "jwt[0].issuer.egressSelectorType: \"cluster\": not supported",
        ),
        (
            good.replace("\"'robot:' + claims.client_id\"", "\"'robot:' + user.username\""),
            "jwt[1].claimMappings.username.expression: `'robot:' + user.username` does not compile: undeclared reference to `user`",
        ),
        (
            good.replace("'claims.scope.split(\" \").exists(s, s == \"groups\")'", "claims.scope"),
            "jwt[1].claimValidationRules[0].expression: `claims.scope` must evaluate to bool, not dyn",
        ),
        (good.replace("    url: https://", "    url: http://"), "the URL scheme must be https"),
        (
            good.replace("kind: AuthenticationConfiguration", "kind: AuthorizationConfiguration"),
            "kind: \"AuthorizationConfiguration\"",
        ),
    ];
    for (file, want) in cases {
        let run = check(&env, &file, &[&a, &b], true);
        assert_eq!(run.code, Some(1), "{want}: {}", run.stderr);
        let error = run.error();
        assert!(error.contains("validator `corp`") && error.contains(want), "want {want:?} in: {error}");
    }
    // A certificateAuthority the grants cannot be shown to hold.
    let run = check(&env, &good, &[&a, &b], false);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.error().contains("jwt[0].issuer.certificateAuthority") && run.error().contains("granted-ca"),
        "{}",
        run.error()
    );
}
