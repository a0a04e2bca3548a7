//! `credbroker whoami` against the stand-in API server, which answers
//! `SelfSubjectReview` with the user the webhook (`credbroker serve`) answered.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::webhook::Webhook;
use crate::harness::{Run, UserEnv};

/// A webhook whose token-file validator knows `token` as alice (uid 1001,
/// groups devs and ops) and tok-bob as bob.
fn webhook(env: &UserEnv, token: &str) -> Webhook {
    let csv = env.home().join("tokens.csv");
    std::fs::write(&csv, format!("{token},alice,1001,\"devs,ops\"\ntok-bob,bob,1002\n")).unwrap();
    Webhook::start(
        env,
        &format!(
            "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n",
            csv = csv.display().to_string()
        ),
    )
}

fn whoami(env: &UserEnv, args: &[&str]) -> Run {
    env.run(&[&["whoami"], args].concat())
}

#[test]
fn whoami_prints_who_the_api_server_says_the_kubeconfig_user_is() {
    let env = UserEnv::new();
    let webhook = webhook(&env, "tok-alice");
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let config =
        kubectl::kubeconfig(&env, &apiserver, &Exec::v1(&["get", "--provider", "static", "--set", "token=tok-alice"]));
    let config = config.display().to_string();

    let run = whoami(&env, &["--kubeconfig", &config]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "username  alice\nuid       1001\ngroups    devs, ops\n");
    assert_eq!(users.lock().unwrap().as_slice(), ["alice"], "the server was asked");

    let run = whoami(&env, &["--kubeconfig", &config, "--context", "standin", "-o", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let review: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(review["status"]["userInfo"]["username"], "alice");
    assert_eq!(review["status"]["userInfo"]["groups"], json!(["devs", "ops"]));

    // KUBECONFIG is read as kubectl reads it.
    let run = Run::of(env.credbroker(&["whoami"]).env("KUBECONFIG", &config).output().unwrap());
    assert!(run.stdout.starts_with("username  alice\n"), "{}{}", run.stdout, run.stderr);
}

#[test]
fn whoami_with_a_provider_asks_with_that_providers_credential() {
    let env = UserEnv::new();
    let webhook = webhook(&env, "tok-alice");
    let (apiserver, _) = ApiServer::with_webhook(&webhook);
    // The kubeconfig's own user would be alice; the provider is bob.
    let config =
        kubectl::kubeconfig(&env, &apiserver, &Exec::v1(&["get", "--provider", "static", "--set", "token=tok-alice"]));
    env.write_config("[profiles.bob]\nplugin = \"static\"\n[profiles.bob.settings]\ntoken = \"tok-bob\"\n");
    let run = whoami(&env, &["--provider", "bob", "--kubeconfig", &config.display().to_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "username  bob\nuid       1002\n");
}

#[test]
fn whoami_falls_back_to_older_review_versions_and_then_to_the_tokens_claims() {
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let jwt = format!(
        "{}.{}.c2ln",
        encode(json!({"alg": "RS256"})),
        encode(json!({"iss": "https://idp.example", "sub": "alice", "groups": ["devs"]}))
    );
    let env = UserEnv::new();
    let webhook = webhook(&env, &jwt);
    let exec = Exec::v1(&["get", "--provider", "static", "--set", &format!("token={jwt}")]);

    // Kubernetes 1.27: v1beta1 only.
    let (beta, _) = ApiServer::with_webhook_reviews(&webhook, &["v1beta1"]);
    let config = kubectl::kubeconfig(&env, &beta, &exec).display().to_string();
    let run = whoami(&env, &["--kubeconfig", &config, "-o", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let review: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(review["status"]["userInfo"]["username"], "alice");

    // Older still: no SelfSubjectReview at all. The token's own claims, said to be such.
    let (old, _) = ApiServer::with_webhook_reviews(&webhook, &[]);
    let config = kubectl::kubeconfig(&env, &old, &exec).display().to_string();
    let run = whoami(&env, &["--kubeconfig", &config]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("the API server has no SelfSubjectReview API"), "{}", run.stdout);
    assert!(run.stdout.contains("the token's own claims, which the server did not confirm:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  sub: alice\n") && run.stdout.contains("  groups: [\"devs\"]\n"), "{}", run.stdout);
    let run = whoami(&env, &["--kubeconfig", &config, "-o", "json"]);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["source"], "credential");
    assert_eq!(answer["claims"]["sub"], "alice");
}

#[test]
fn whoami_says_when_the_server_refuses_the_credential_or_the_kubeconfig_is_wrong() {
    let env = UserEnv::new();
    let webhook = webhook(&env, "tok-alice");
    let (apiserver, _) = ApiServer::with_webhook(&webhook);
    let config = kubectl::kubeconfig(
        &env,
        &apiserver,
        &Exec::v1(&["get", "--provider", "static", "--set", "token=tok-mallory"]),
    );
    let config = config.display().to_string();
    let run = whoami(&env, &["--kubeconfig", &config]);
    assert!(run.error().contains("does not accept the credential (401 Unauthorized)"), "{}", run.stderr);

    let run = whoami(&env, &["--kubeconfig", &config, "--context", "nope"]);
    assert!(run.error().contains("the kubeconfig has no context `nope`; contexts: standin"), "{}", run.stderr);
    let run = whoami(&env, &["--kubeconfig", &env.home().join("missing").display().to_string()]);
    assert!(run.error().contains("kubeconfig: cannot read"), "{}", run.stderr);
}
