//! AWS IAM end to end: aws-iam-authenticator-compatible tokens from the
//! `aws-iam` provider (byte for byte what botocore presigns), through the real
//! kubectl, validated by the `aws-iam` validator against an STS-compatible
//! server built on moto that checks presignatures.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::sts::{Presign, Sts, aws_cli_token, botocore_presigned_url};
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

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Inputs for a reference signer, with the example key.
fn presign<'a>(
    region: &'a str,
    session_token: Option<&'a str>,
    unix_time: u64,
    endpoint: Option<&'a str>,
) -> Presign<'a> {
    Presign { access_key_id: KEY, secret: SECRET, session_token, region, cluster_id: CLUSTER, unix_time, endpoint }
}

/// The URL in the token `credbroker get --provider aws-iam` prints for `inputs`.
fn our_url(env: &UserEnv, inputs: &Presign<'_>) -> String {
    let mut settings = vec![
        format!("cluster-id={}", inputs.cluster_id),
        format!("region={}", inputs.region),
        format!("access-key-id={}", inputs.access_key_id),
        "secret-access-key=env:TEST_AWS_SECRET".into(),
        format!("signing-time={}", inputs.unix_time),
    ];
    settings.extend(inputs.session_token.map(|t| format!("session-token={t}")));
    settings.extend(inputs.endpoint.map(|e| format!("sts-endpoint={e}")));
    let mut args = vec!["get", "--provider", "aws-iam", "--no-cache"];
    for setting in &settings {
        args.extend(["--set", setting.as_str()]);
    }
    let run = Run::of(env.credbroker(&args).env("TEST_AWS_SECRET", inputs.secret).output().unwrap());
    // The credential lasts 14 minutes from now, whatever the signing time.
    assert!(run.credential()["status"]["expirationTimestamp"].is_string(), "{}", run.stderr);
    url_of(&run.token())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Regions of every partition botocore knows (by name and by pattern), the
/// global endpoint, and custom endpoints written in upper case or with the
/// default port: our token is the one botocore presigns and the AWS CLI's
/// `aws eks get-token` prints, byte for byte.
#[test]
fn tokens_are_byte_for_byte_what_botocore_and_the_aws_cli_make() {
    let env = UserEnv::new();
    let session = Some("FwoGZXIvYXdzEBYaDH/+session/token==");
    let cases = [
        presign("us-east-1", None, 1_714_564_800, None),
        presign("eu-west-1", session, 1_767_225_599, None),
        presign("ap-southeast-2", None, 1_600_000_000, None),
        presign("cn-north-1", None, 1_714_564_800, None),
        presign("cn-northwest-1", session, 1_714_564_800, None),
        presign("us-gov-west-1", None, 1_714_564_800, None),
        presign("us-iso-east-1", None, 1_714_564_800, None),
        presign("us-isob-east-1", session, 1_714_564_800, None),
        presign("eu-isoe-west-1", None, 1_714_564_800, None),
        presign("us-isof-south-1", None, 1_714_564_800, None),
        presign("eusc-de-east-1", None, 1_714_564_800, None),
        // sts.amazonaws.com, signed for us-east-1.
        presign("aws-global", None, 1_714_564_800, None),
        // Partitions by pattern, before botocore lists the region; the default.
        presign("cn-south-7", None, 1_714_564_800, None),
        presign("xx-new-1", None, 1_714_564_800, None),
        // Signed for the host lower-cased, without :443; the URL as written.
        presign("eu-west-1", None, 1_714_564_800, Some("https://STS.EU-West-1.AmazonAWS.com:443")),
        presign("eu-west-1", session, 1_714_564_800, Some("https://sts.eu-west-1.amazonaws.com:443/")),
        presign("us-east-1", None, 1_714_564_800, Some("https://VPCE-0ab.STS.us-east-1.vpce.amazonaws.com")),
        presign("us-east-1", None, 1_714_564_800, Some("https://Example.COM:8443/")),
    ];
    for inputs in cases {
        let ours = our_url(&env, &inputs);
        assert_eq!(ours, botocore_presigned_url(&inputs), "botocore: {inputs:?}");
        assert_eq!(token_of(&ours), aws_cli_token(&inputs), "the AWS CLI: {inputs:?}");
    }
}

/// A validator set for a partition takes that partition's tokens, ours and the
/// AWS CLI's alike, and replays them to that partition's STS (refused here by
/// the grants, before any connection: none of them is reachable from a test);
/// a token of another partition is refused as such.
#[test]
fn validators_take_the_tokens_of_their_partition() {
    let env = UserEnv::new();
    let partitions = [
        ("china", "aws-cn", "cn-north-1"),
        ("isob", "aws-iso-b", "us-isob-east-1"),
        ("gov", "aws-us-gov", "us-gov-west-1"),
    ];
    let validators: String = partitions
        .iter()
        .map(|(name, partition, _)| {
            format!(
                "[[validators]]\nname = \"{name}\"\nplugin = \"aws-iam\"\n[validators.settings]\n\
                 cluster-id = \"{CLUSTER}\"\npartition = \"{partition}\"\n"
            )
        })
        .collect();
    let webhook =
        Webhook::start(&env, &format!("[cache]\npositive-ttl-seconds = 0\nnegative-ttl-seconds = 0\n{validators}"));
    let signed_at = now();
    for (name, _, region) in partitions {
        let inputs = presign(region, None, signed_at, None);
        let theirs = aws_cli_token(&inputs);
        let host = url_of(&theirs).trim_start_matches("https://").split('/').next().unwrap().to_string();
        for token in [token_of(&our_url(&env, &inputs)), theirs.clone()] {
            let (status, answer) = webhook.review("v1", &token, &[]);
            assert_eq!(status, 503, "{region}: {answer}");
            let error = answer["status"]["error"].as_str().unwrap();
            assert!(error.starts_with(&format!("{name}: ")), "{region}: {error}");
            assert!(error.contains(&format!("cannot reach STS at {host}: ")), "{region}: {error}");
            assert!(error.contains(&format!("`https://{host}:443` is not in this plugin's allowlist")), "{error}");
            assert_eq!(token, theirs, "{region}");
        }
    }
    let elsewhere = token_of(&our_url(&env, &presign("eu-west-1", None, signed_at, None)));
    let (status, answer) = webhook.review("v1", &elsewhere, &[]);
    assert_eq!(status, 200, "{answer}");
    let error = answer["status"]["error"].as_str().unwrap();
    for (name, _, _) in partitions {
        assert!(error.contains(&format!("{name}: unexpected hostname \"sts.eu-west-1.amazonaws.com\"")), "{error}");
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
    let twenty_minutes_ago = (now() - 1200).to_string();
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

/// The AWS variables a test sets, removed from what it inherits.
const AWS_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

/// A profile `aws` whose credentials come from the chain (no key settings),
/// signing for the test STS, with `settings` and `grants` TOML lines.
fn chain_profile(env: &UserEnv, sts: &Sts, settings: &str, grants: &str) {
    env.write_config(&format!(
        "[profiles.aws]\nplugin = \"aws-iam\"\n[profiles.aws.settings]\ncluster-id = \"{CLUSTER}\"\nsts-endpoint = {url:?}\n{settings}\n\
         [profiles.aws.grants]\nhttp = [{url:?}]\nca-file = {ca:?}\n{grants}\n",
        url = sts.url,
        ca = sts.ca_file().display().to_string(),
    ));
}

/// kubectl (through the `aws` profile) with exactly the AWS variables `vars`.
fn kubectl_with(env: &UserEnv, apiserver: &ApiServer, vars: &[(&str, &str)]) -> Run {
    let config = kubectl::kubeconfig(env, apiserver, &Exec::v1beta1(&["get", "--provider", "aws"]));
    let mut command = kubectl::command(env, "1.33", &config, &["get", "--raw", "/version"]);
    for name in AWS_VARIABLES {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    Run::of(command.output().unwrap())
}

/// `credbroker get --provider aws` with exactly the AWS variables `vars`.
fn get_with(env: &UserEnv, vars: &[(&str, &str)]) -> Run {
    let mut command = env.credbroker(&["get", "--provider", "aws", "--no-cache"]);
    for name in AWS_VARIABLES {
        command.env_remove(name);
    }
    Run::of(command.envs(vars.iter().copied()).output().unwrap())
}

#[test]
fn the_environment_reaches_the_chain_only_through_the_env_grant() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let (key, secret) = sts.keys("alice");
    let keys = [("AWS_ACCESS_KEY_ID", key.as_str()), ("AWS_SECRET_ACCESS_KEY", secret.as_str())];

    chain_profile(&env, &sts, "", "");
    let refused = get_with(&env, &keys);
    let error = refused.error();
    assert!(error.contains("no AWS credentials found, in the AWS CLI's order"), "{error}");
    assert!(
        error.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not in the plugin's environment"),
        "{error}"
    );

    chain_profile(&env, &sts, "", "env = [\"AWS_*\"]");
    let run = kubectl_with(&env, &apiserver, &keys);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["alice"]);
}

#[test]
fn web_identity_like_irsa_assumes_the_role_with_the_granted_token_file() {
    let sts = Sts::start(&json!({
        "account": "123456789012",
        "users": ["alice"],
        "roles": [{ "name": "k8s-admins", "path": "/teams/" }],
        "web_identity_tokens": ["eyJ.pod-token.sig"],
    }));
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let token_file = env.home().join("serviceaccount-token");
    std::fs::write(&token_file, "eyJ.pod-token.sig\n").unwrap();
    crate::harness::audit::secret("eyJ.pod-token.sig");
    let role = sts.out["roles"]["k8s-admins"]["arn"].as_str().unwrap().to_string();
    let file = token_file.display().to_string();
    let irsa = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", file.as_str()),
        ("AWS_ROLE_ARN", role.as_str()),
        ("AWS_ROLE_SESSION_NAME", "pod-7"),
    ];

    chain_profile(&env, &sts, "", "env = [\"AWS_*\"]");
    let denied = get_with(&env, &irsa);
    assert!(
        denied.error().contains(
            "the web identity token file $AWS_WEB_IDENTITY_TOKEN_FILE is not granted: add it to grants.files"
        ),
        "{}",
        denied.stderr
    );

    chain_profile(&env, &sts, "", &format!("env = [\"AWS_*\"]\nfiles = [{file:?}]"));
    let run = kubectl_with(&env, &apiserver, &irsa);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["admin:pod-7"]);

    // A token STS does not take is STS's refusal, said as such.
    std::fs::write(&token_file, "eyJ.someone-elses.sig\n").unwrap();
    let refused = get_with(&env, &irsa);
    assert!(refused.error().contains("denied: AssumeRoleWithWebIdentity"), "{}", refused.stderr);
    assert!(refused.stderr.contains("InvalidIdentityToken"), "{}", refused.stderr);
}

/// The SHA-1 (hex) the AWS CLI names an SSO cache file by.
fn sha1_hex(text: &str) -> String {
    let mut child = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha1sum");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[test]
fn an_sso_profile_uses_the_cached_login_of_its_session() {
    let sts = Sts::start(&json!({
        "account": "123456789012",
        "users": ["alice"],
        "roles": [{ "name": "k8s-admins", "path": "/teams/" }],
        "sso": [{ "access_token": "aoa-cached-sso-token", "user": "alice@corp.example", "roles": ["k8s-admins"] }],
    }));
    crate::harness::audit::secret("aoa-cached-sso-token");
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let aws = env.home().join(".aws");
    std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile corp-admin]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = k8s-admins\n\
         region = eu-west-1\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .unwrap();
    let cache = aws.join(format!("sso/cache/{}.json", sha1_hex("corp")));
    let login = |expires: &str| {
        std::fs::write(
            &cache,
            json!({ "startUrl": "https://corp.awsapps.com/start", "region": "us-east-1",
                    "accessToken": "aoa-cached-sso-token", "expiresAt": expires })
            .to_string(),
        )
        .unwrap();
    };
    login("2099-01-01T00:00:00Z");
    let home = env.home().display().to_string();
    let grants = format!("env = [\"HOME\", \"AWS_PROFILE\"]\nfiles = [\"{home}/.aws/\"]");
    chain_profile(&env, &sts, &format!("sso-endpoint = {:?}", sts.url), &grants);
    let run = kubectl_with(&env, &apiserver, &[("AWS_PROFILE", "corp-admin")]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["admin:alice-corp.example"]);
    let (_, answer) = webhook.review("v1", &apiserver.tokens_seen()[0], &[]);
    assert_eq!(answer["status"]["user"]["extra"]["sessionName"], json!(["alice@corp.example"]));

    login("2020-01-01T00:00:00Z");
    let expired = get_with(&env, &[("AWS_PROFILE", "corp-admin")]);
    assert!(
        expired
            .error()
            .contains("profile $AWS_PROFILE: the SSO session has expired; run `aws sso login --sso-session corp`"),
        "{}",
        expired.stderr
    );
    // The cache not granted: what to grant.
    chain_profile(
        &env,
        &sts,
        &format!("sso-endpoint = {:?}", sts.url),
        &format!("env = [\"HOME\", \"AWS_PROFILE\"]\nfiles = [\"{home}/.aws/config\"]"),
    );
    let ungranted = get_with(&env, &[("AWS_PROFILE", "corp-admin")]);
    assert!(
        ungranted
            .error()
            .contains("is not granted: add the directory (the absolute path of ~/.aws/sso/cache/) to grants.files"),
        "{}",
        ungranted.stderr
    );
}

#[test]
fn a_shared_profile_assumes_its_role_from_its_source_profile() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let (key, secret) = sts.keys("alice");
    let role = sts.out["roles"]["k8s-admins"]["arn"].as_str().unwrap().to_string();
    let aws = env.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!("[base]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[profile admin]\nrole_arn = {role}\nsource_profile = base\nrole_session_name = alice-chained\n"),
    )
    .unwrap();
    let home = env.home().display().to_string();
    chain_profile(&env, &sts, "profile = \"admin\"", &format!("env = [\"HOME\"]\nfiles = [\"{home}/.aws/\"]"));
    let run = kubectl_with(&env, &apiserver, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["admin:alice-chained"]);
}

/// A profile's `credential_process` (as aws-vault or a company's helper
/// would be set up): the host runs it because the operator granted that exact
/// command line; the keys it prints sign a token the API server accepts, and
/// the token expires with them. Not granted, it never runs.
#[test]
fn a_granted_credential_process_supplies_the_keys_and_an_ungranted_one_never_runs() {
    let sts = seeded_sts();
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let (key, secret) = sts.keys("alice");
    crate::harness::audit::secret(&secret);
    let expires = now() + 600;
    let expiration =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires)).to_string();
    let helper = env.home().join("bin").join("corp-creds");
    let ran = env.home().join("helper-ran");
    std::fs::create_dir_all(helper.parent().unwrap()).unwrap();
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$#\" = 2 ] && [ \"$1\" = --profile ] && [ \"$2\" = 'dev team' ] || {{ echo \"bad arguments: $*\" >&2; exit 2; }}\n\
             touch {ran:?}\n\
             printf 'corp-creds: refreshing\\033[2J\\033]0;owned\\007\\n' >&2\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"%s\", \"Expiration\": \"%s\"}}' {key:?} {secret:?} {expiration:?}\n",
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let command_line = format!("{} --profile 'dev team'", helper.display());
    let aws = env.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(aws.join("config"), format!("[profile tool]\ncredential_process = {command_line}\n")).unwrap();
    let home = env.home().display().to_string();
    let files = format!("env = [\"HOME\"]\nfiles = [\"{home}/.aws/\"]");

    // Not granted: refused with the grant to add, nothing on stdout, and the
    // helper never ran.
    chain_profile(&env, &sts, "profile = \"tool\"", &files);
    let refused = get_with(&env, &[]);
    let error = refused.error();
    assert!(error.contains("the credential_process of profile `tool`: "), "{error}");
    // (The home directory is a granted variable's value, so it is redacted.)
    assert!(
        error.contains(
            "/bin/corp-creds --profile 'dev team'` is not granted to this plugin: add the command line, exactly as \
             written, to grants.credential-process"
        ),
        "{error}"
    );
    assert!(!ran.exists(), "an ungranted helper never runs");
    // Granted as some other text (the same words, quoted otherwise): refused too.
    let other = format!("{} --profile \"dev team\"", helper.display());
    chain_profile(&env, &sts, "profile = \"tool\"", &format!("{files}\ncredential-process = [{other:?}]"));
    assert!(get_with(&env, &[]).error().contains("grants.credential-process"));
    assert!(!ran.exists());

    chain_profile(&env, &sts, "profile = \"tool\"", &format!("{files}\ncredential-process = [{command_line:?}]"));
    let got = get_with(&env, &[]);
    let credential = got.credential();
    assert!(ran.exists(), "the granted helper ran");
    // A minute before the helper's credentials expire (sooner than 14 minutes).
    let expected =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires - 60));
    assert_eq!(credential["status"]["expirationTimestamp"], expected.to_string(), "{credential}");
    // Its standard error reached the log, with the terminal controls escaped.
    assert!(got.stderr.contains("corp-creds: corp-creds: refreshing\\x1b[2J\\x1b]0;owned\\x07"), "{}", got.stderr);
    assert!(!got.stderr.contains('\x1b'), "{}", got.stderr);

    let run = kubectl_with(&env, &apiserver, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["alice"]);
}

#[test]
fn the_container_endpoint_like_eks_pod_identity_comes_last_in_the_chain() {
    let sts = Sts::start(&json!({
        "account": "123456789012",
        "users": ["alice"],
        "roles": [{ "name": "k8s-admins", "path": "/teams/" }],
        "container": { "token": "pod-identity-token-123", "role": "k8s-admins" },
    }));
    crate::harness::audit::secret("pod-identity-token-123");
    let env = UserEnv::new();
    let webhook = webhook(&env, &sts);
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let token_file = env.home().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token-123\n").unwrap();
    let file = token_file.display().to_string();
    let endpoint = format!("{}/__test/container-credentials", sts.url);
    chain_profile(&env, &sts, "", &format!("env = [\"AWS_*\"]\nfiles = [{file:?}]"));
    let pod = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", file.as_str()),
    ];
    let run = kubectl_with(&env, &apiserver, &pod);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["admin:eks-pod-identity"]);

    // Plain http to anything but loopback or the ECS/EKS addresses is refused, as by the CLI.
    let refused = get_with(&env, &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/creds")]);
    assert!(refused.error().contains("must be a loopback address or the ECS/EKS endpoint"), "{}", refused.stderr);
}
