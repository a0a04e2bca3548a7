//! AWS IAM end to end: aws-iam-authenticator-compatible tokens from the
//! `aws-iam` provider (byte for byte what botocore presigns), through the real
//! kubectl, validated by the `aws-iam` validator against an STS-compatible
//! server built on moto that checks presignatures.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::sts::{Sts, botocore_presigned_url};
use crate::harness::webhook::Webhook;
use crate::harness::{Run, UserEnv};

const CLUSTER: &str = "prod-eu";

fn seeded_sts() -> Sts {
    Sts::start(&json!({
        "account": "123456789012",
        "users": ["alice", "bob"],
        "roles": [{ "name": "k8s-admins", "path": "/teams/" }],
    }))
}

/// The URL inside a `k8s-aws-v1.` token.
fn url_of(token: &str) -> String {
    let encoded = token.strip_prefix("k8s-aws-v1.").expect("prefix");
    String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
}

fn token_of(url: &str) -> String {
    format!("k8s-aws-v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
}

#[test]
fn tokens_are_byte_for_byte_what_botocore_presigns() {
    let env = UserEnv::new();
    let cases: [(&str, Option<&str>, u64); 3] = [
        ("us-east-1", None, 1_714_564_800),
        ("eu-west-1", Some("FwoGZXIvYXdzEBYaDH/+session/token=="), 1_767_225_599),
        ("ap-southeast-2", None, 1_600_000_000),
    ];
    for (region, session, time) in cases {
        let mut args = vec![
            "get".to_string(),
            "--provider".into(),
            "aws-iam".into(),
            "--no-cache".into(),
            "--set".into(),
            format!("cluster-id={CLUSTER}"),
            "--set".into(),
            format!("region={region}"),
            "--set".into(),
            "access-key-id=AKIDEXAMPLE".into(),
            "--set".into(),
            "secret-access-key=env:TEST_AWS_SECRET".into(),
            "--set".into(),
            format!("signing-time={time}"),
        ];
        if let Some(token) = session {
            args.extend(["--set".to_string(), format!("session-token={token}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Run::of(
            env.credbroker(&args).env("TEST_AWS_SECRET", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").output().unwrap(),
        );
        let ours = url_of(&run.token());
        let reference = botocore_presigned_url(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session,
            region,
            CLUSTER,
            time,
        );
        assert_eq!(ours, reference, "region {region}");
        // The credential lasts 14 minutes from now, whatever the signing time.
        assert!(run.credential()["status"]["expirationTimestamp"].is_string());
    }
}

/// `credbroker serve` with the aws-iam validator for this STS.
fn webhook(env: &UserEnv, sts: &Sts) -> Webhook {
    webhook_with(env, sts, "")
}

/// [`webhook`] with more validator TOML (`extra`, e.g. limits).
fn webhook_with(env: &UserEnv, sts: &Sts, extra: &str) -> Webhook {
    let account = sts.out["account"].as_str().unwrap();
    let map_users =
        json!([{ "userarn": format!("arn:aws:iam::{account}:user/alice"), "username": "alice", "groups": ["devs"] }]);
    let map_roles = json!([{
        "rolearn": format!("arn:aws:iam::{account}:role/teams/k8s-admins"),
        "username": "admin:{{SessionName}}",
        "groups": ["system:masters", "acct-{{AccountID}}"],
    }]);
    Webhook::start(
        env,
        &format!(
            r#"[cache]
positive-ttl-seconds = 0
negative-ttl-seconds = 0

[[validators]]
name = "aws"
plugin = "aws-iam"
token-prefix = "k8s-aws-v1."
[validators.settings]
cluster-id = "{CLUSTER}"
sts-hosts = {host:?}
map-users = '{map_users}'
map-roles = '{map_roles}'
[validators.grants]
http = [{url:?}]
ca-file = {ca:?}
# The role mapping makes cluster admins: a reserved group, granted here.
[validators.identities]
groups = ["system:masters"]
{extra}
"#,
            host = sts.host(),
            url = sts.url,
            ca = sts.ca_file().display().to_string(),
        ),
    )
}

/// A profile `aws` signing for the test STS, with `extra` settings.
fn aws_profile(env: &UserEnv, sts: &Sts, extra: &str) {
    env.write_config(&format!(
        "[profiles.aws]\nplugin = \"aws-iam\"\n[profiles.aws.settings]\ncluster-id = \"{CLUSTER}\"\nsts-endpoint = {url:?}\naccess-key-id = \"env:AWS_ACCESS_KEY_ID\"\nsecret-access-key = \"env:AWS_SECRET_ACCESS_KEY\"\n{extra}\n[profiles.aws.grants]\nhttp = [{url:?}]\nca-file = {ca:?}\n",
        url = sts.url,
        ca = sts.ca_file().display().to_string(),
    ));
}

fn kubectl_as(env: &UserEnv, sts: &Sts, user: &str, apiserver: &ApiServer, version: &str) -> Run {
    let (key, secret) = sts.keys(user);
    let config = kubectl::kubeconfig(env, apiserver, &Exec::v1beta1(&["get", "--provider", "aws"]));
    Run::of(
        kubectl::command(env, version, &config, &["get", "--raw", "/version"])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap(),
    )
}

#[test]
fn an_iam_user_token_maps_to_its_user() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    aws_profile(&env, &sts, "");
    let run = kubectl_as(&env, &sts, "alice", &apiserver, "1.27");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["alice"]);
    let token = apiserver.tokens_seen()[0].clone();
    let (_, answer) = webhook.review("v1", &token, &[]);
    let user = &answer["status"]["user"];
    assert_eq!(user["groups"], json!(["devs"]));
    assert!(user["uid"].as_str().unwrap().starts_with("aws-iam-authenticator:123456789012:"), "{user}");
    assert_eq!(user["extra"]["arn"], json!(["arn:aws:iam::123456789012:user/alice"]));
    assert_eq!(user["extra"]["accessKeyId"], json!([sts.keys("alice").0]));

    // bob is a real IAM user, but nothing maps him.
    let run = kubectl_as(&env, &sts, "bob", &apiserver, "1.33");
    assert_ne!(run.code, Some(0));
    let (_, answer) = webhook.review("v1", apiserver.tokens_seen().last().unwrap(), &[]);
    assert_eq!(
        answer["status"]["error"],
        "aws: ARN arn:aws:iam::123456789012:user/bob is not mapped to a Kubernetes user"
    );
}

#[test]
fn an_assumed_role_maps_with_its_session_name() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let role = sts.out["roles"]["k8s-admins"]["arn"].as_str().unwrap().to_string();
    aws_profile(&env, &sts, &format!("role-arn = {role:?}\nsession-name = \"alice@corp\""));
    let run = kubectl_as(&env, &sts, "alice", &apiserver, "1.33");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["admin:alice-corp"]);
    let (_, answer) = webhook.review("v1", &apiserver.tokens_seen()[0], &[]);
    let user = &answer["status"]["user"];
    assert_eq!(user["groups"], json!(["system:masters", "acct-123456789012"]));
    assert_eq!(user["extra"]["canonicalArn"], json!(["arn:aws:iam::123456789012:role/k8s-admins"]));
    assert_eq!(user["extra"]["sessionName"], json!(["alice@corp"]));
}

#[test]
fn bad_tokens_are_denied_with_reasons() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (key, secret) = sts.keys("alice");
    let token = |extra: &[&str]| {
        let mut args = vec!["get", "--provider", "aws", "--no-cache"];
        args.extend_from_slice(extra);
        Run::of(
            env.credbroker(&args)
                .env("AWS_ACCESS_KEY_ID", &key)
                .env("AWS_SECRET_ACCESS_KEY", &secret)
                .output()
                .unwrap(),
        )
        .token()
    };
    aws_profile(&env, &sts, "");
    let good = token(&[]);
    assert_eq!(webhook.review("v1", &good, &[]).1["status"]["user"]["username"], "alice");

    let url = url_of(&good);
    let signature_at = url.rfind("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[signature_at..signature_at + 1] == "a" { "b" } else { "a" };
    tampered.replace_range(signature_at..signature_at + 1, flipped);
    let twenty_minutes_ago =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1200).to_string();
    let expired = token(&["--set", &format!("signing-time={twenty_minutes_ago}")]);
    let other_cluster = token(&["--set", "cluster-id=someone-elses"]);
    let cases = [
        (token_of(&tampered), "STS rejected the token: SignatureDoesNotMatch"),
        (other_cluster, "STS rejected the token: SignatureDoesNotMatch"),
        (expired, "the token has expired (X-Amz-Date is over 15 minutes old)"),
        (token_of(&url.replace(&sts.host(), "sts.amazonaws.com.evil.example")), "unexpected hostname"),
        (token_of(&format!("{url}&X-Amz-Extra=1")), "unexpected query parameter \"x-amz-extra\""),
        ("k8s-aws-v1.not%base64".to_string(), "not base64url"),
    ];
    for (token, reason) in cases {
        let (status, answer) = webhook.review("v1", &token, &[]);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"]["authenticated"], false);
        assert!(answer["status"]["error"].as_str().unwrap().contains(reason), "{reason}: {answer}");
    }
}

/// The token `credbroker get --provider aws` prints for alice's keys.
fn alice_token(env: &UserEnv, sts: &Sts) -> String {
    let (key, secret) = sts.keys("alice");
    Run::of(
        env.credbroker(&["get", "--provider", "aws"])
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .output()
            .unwrap(),
    )
    .token()
}

#[test]
fn sts_trouble_is_retryable() {
    let mut sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    aws_profile(&env, &sts, "");
    let good = alice_token(&env, &sts);
    sts.throttle(1);
    let (status, answer): (u16, Value) = webhook.review("v1", &good, &[]);
    assert_eq!(status, 429, "throttling: {answer}");
    assert_eq!(webhook.review("v1", &good, &[]).0, 200, "then fine again");

    sts.stop();
    let (status, answer) = webhook.review("v1", &good, &[]);
    assert_eq!(status, 503, "STS down: {answer}");
    assert!(answer["status"]["error"].as_str().unwrap().contains("cannot reach STS"), "{answer}");
}

#[test]
fn a_hung_sts_fails_reviews_transiently_and_they_recover() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook_with(&env, &sts, "[validators.limits]\nnetwork-timeout-ms = 1500");
    aws_profile(&env, &sts, "");
    let token = alice_token(&env, &sts);
    assert_eq!(webhook.review("v1", &token, &[]).0, 200);

    // Frozen mid-flight: connections open, nothing answers.
    sts.signal(libc::SIGSTOP);
    let (status, answer) = webhook.review("v1", &token, &[]);
    sts.signal(libc::SIGCONT);
    assert_eq!(status, 503, "kube-apiserver retries: {answer}");
    assert!(answer["status"]["error"].as_str().unwrap().contains("aws"), "names the validator: {answer}");
    let (status, answer) = webhook.review("v1", &token, &[]);
    assert_eq!(status, 200, "back: {answer}");
    assert_eq!(answer["status"]["user"]["username"], "alice");
}
