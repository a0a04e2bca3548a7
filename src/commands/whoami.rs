//! `credbroker whoami`: who the API server thinks you are.
//!
//! Gets a credential (with `--provider`, the way `credbroker get` does, cache
//! included; otherwise as kubectl would for the kubeconfig context's user,
//! running its exec entry), posts a `SelfSubjectReview` with it, and prints
//! the user the server answers. A server without that API (404 for v1,
//! v1beta1 and v1alpha1) gets the credential's own claims instead, said to be
//! such.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use credbroker_host::boundary::text;
use credbroker_host::exec::credential::{ApiVersion, ExecCredential, ExecCredentialStatus};
use credbroker_host::exec::{self, GetRequest, Selection};
use credbroker_host::fsutil;
use credbroker_host::storage::StorageKind;
use serde::Deserialize;
use serde_json::{Value, json};

/// Arguments of `credbroker whoami`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    credbroker whoami                              (the current context of the kubeconfig)\n  \
    credbroker whoami --context prod -o json\n  \
    credbroker whoami --provider corp-oidc         (a profile's credential, for the current context's cluster)")]
pub struct WhoamiArgs {
    /// Get the credential from this provider, as `credbroker get` does, instead of the context's user.
    #[arg(long)]
    provider: Option<String>,
    /// The kubeconfig [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context whose cluster (and user) to ask [default: the current context].
    #[arg(long)]
    context: Option<String>,
    /// The output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// With --provider: credbroker's configuration file.
    #[arg(long, value_name = "FILE", requires = "provider")]
    config: Option<PathBuf>,
    /// With --provider: where cached credentials and plugin state are kept.
    #[arg(long, value_name = "auto|keyring|file|none", value_parser = super::get::parse_storage, requires = "provider")]
    storage: Option<StorageKind>,
}

/// How `whoami` prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// The SelfSubjectReview as the server answered it (or the credential's claims).
    Json,
}

/// How long the API server may take to answer.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the API server, or from an exec plugin.
const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    body: T,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    exec: Option<ExecEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecEntry {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
    api_version: String,
    #[serde(default)]
    provide_cluster_info: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// A cluster to ask, with the directory of the kubeconfig that named it
/// (relative paths in it are relative to that).
struct Target {
    cluster: ClusterEntry,
    user: Option<UserEntry>,
    base: PathBuf,
}

/// Run `credbroker whoami`.
pub fn run(args: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args)?;
    let status = match &args.provider {
        Some(name) => {
            let request = GetRequest {
                selection: Selection::Provider(name.clone()),
                set: Vec::new(),
                config: args.config.clone(),
                api_version: Some(ApiVersion::V1),
                // As kubectl runs it with provideClusterInfo: the credential
                // (and its cache entry) of this cluster.
                exec_info: Some(cluster_exec_info(&target)?.to_string()),
                no_cache: false,
                storage: args.storage,
                allow_http: Vec::new(),
                allow_file: Vec::new(),
                stdin_is_terminal: std::io::stdin().is_terminal(),
            };
            exec::get(&request)?.status.unwrap_or_default()
        }
        None => user_credential(&target)?,
    };
    let answer = review(&target, &status)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer.json()).context("encoding")?),
        Output::Text => print!("{}", answer.text()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Read the kubeconfig files kubectl would and pick the context.
fn target(args: &WhoamiArgs) -> anyhow::Result<Target> {
    let files: Vec<PathBuf> = match &args.kubeconfig {
        Some(file) => vec![file.clone()],
        None => match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(list) => std::env::split_paths(&list).collect(),
            None => {
                let home = directories::BaseDirs::new().context("cannot determine the home directory")?;
                vec![home.home_dir().join(".kube/config")]
            }
        },
    };
    // As kubectl merges them: the first file to name a thing wins.
    let mut current = None;
    let mut clusters = BTreeMap::new();
    let mut users = BTreeMap::new();
    let mut contexts = BTreeMap::new();
    let mut read_any = false;
    for file in &files {
        let text = match fsutil::read_text_bounded(file, fsutil::bounds::KUBECONFIG) {
            Ok(text) => text,
            Err(e) if e.is_not_found() && args.kubeconfig.is_none() => continue,
            Err(e) => bail!("kubeconfig: {e}"),
        };
        read_any = true;
        let config: Kubeconfig =
            serde_yaml_ng::from_str(&text).with_context(|| format!("kubeconfig `{}`", file.display()))?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        current = current.or(config.current_context);
        for entry in config.clusters {
            clusters.entry(entry.name).or_insert((entry.body, base.clone()));
        }
        for entry in config.users {
            users.entry(entry.name).or_insert((entry.body, base.clone()));
        }
        for entry in config.contexts {
            contexts.entry(entry.name).or_insert(entry.body);
        }
    }
    if !read_any {
        bail!("no kubeconfig found (looked at {}); name one with --kubeconfig", list(&files));
    }
    let name =
        args.context.clone().or(current).context("the kubeconfig has no current context; name one with --context")?;
    let context = contexts.get(&name).with_context(|| {
        format!("the kubeconfig has no context `{}`; contexts: {}", text::name(&name), keys(&contexts))
    })?;
    let (cluster, base) = clusters.get(&context.cluster).cloned().with_context(|| {
        format!(
            "context `{}` names cluster `{}`, which the kubeconfig lacks",
            text::name(&name),
            text::name(&context.cluster)
        )
    })?;
    if cluster.insecure_skip_tls_verify {
        bail!(
            "cluster `{}` sets insecure-skip-tls-verify; whoami sends no credential without checking the server",
            text::name(&context.cluster)
        );
    }
    let user = match &args.provider {
        Some(_) => None,
        None => Some(users.get(&context.user).map(|(user, _)| user.clone()).with_context(|| {
            format!(
                "context `{}` names user `{}`, which the kubeconfig lacks",
                text::name(&name),
                text::name(&context.user)
            )
        })?),
    };
    Ok(Target { cluster, user, base })
}

fn list(files: &[PathBuf]) -> String {
    files.iter().map(|f| format!("`{}`", f.display())).collect::<Vec<_>>().join(", ")
}

fn keys<V>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        "none".into()
    } else {
        map.keys().map(|k| text::name(k).into_owned()).collect::<Vec<_>>().join(", ")
    }
}

fn read_file(base: &Path, path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let path = base.join(path);
    fsutil::read_bounded(&path, fsutil::bounds::SMALL).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn decode(data: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(data.trim()).with_context(|| format!("{what} is not base64"))
}

/// The credential of the context's user, got as kubectl gets it.
fn user_credential(target: &Target) -> anyhow::Result<ExecCredentialStatus> {
    let user = target.user.clone().unwrap_or_default();
    let base = &target.base;
    if let Some(exec) = &user.exec {
        return run_exec(exec, target);
    }
    let mut status = ExecCredentialStatus::default();
    if let Some(token) = &user.token {
        status.token = Some(token.clone());
    } else if let Some(file) = &user.token_file {
        let bytes = read_file(base, file, "token-file")?;
        status.token = Some(String::from_utf8(bytes).context("token-file is not UTF-8")?.trim().to_string());
    }
    let cert = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => Some(decode(data, "client-certificate-data")?),
        (None, Some(file)) => Some(read_file(base, file, "client-certificate")?),
        (None, None) => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(data), _) => Some(decode(data, "client-key-data")?),
        (None, Some(file)) => Some(read_file(base, file, "client-key")?),
        (None, None) => None,
    };
    if let (Some(cert), Some(key)) = (cert, key) {
        status.client_certificate_data = Some(String::from_utf8(cert).context("the client certificate is not PEM")?);
        status.client_key_data = Some(String::from_utf8(key).context("the client key is not PEM")?);
    }
    if status.token.is_none() && status.client_certificate_data.is_none() {
        bail!("the context's user has no credential (token, client certificate or exec) that whoami can use");
    }
    Ok(status)
}

/// KUBERNETES_EXEC_INFO as kubectl sets it for an exec entry with
/// provideClusterInfo: true.
fn cluster_exec_info(target: &Target) -> anyhow::Result<Value> {
    let mut info = exec_info("client.authentication.k8s.io/v1");
    let ca = match (&target.cluster.certificate_authority_data, &target.cluster.certificate_authority) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(file)) => Some(base64::engine::general_purpose::STANDARD.encode(read_file(
            &target.base,
            file,
            "certificate-authority",
        )?)),
        (None, None) => None,
    };
    let mut cluster = json!({ "server": target.cluster.server });
    if let Some(ca) = ca {
        cluster["certificate-authority-data"] = json!(ca);
    }
    if let Some(name) = &target.cluster.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    info["spec"]["cluster"] = cluster;
    Ok(info)
}

/// KUBERNETES_EXEC_INFO without cluster information.
fn exec_info(api_version: &str) -> Value {
    let interactive = std::io::stdin().is_terminal();
    json!({ "kind": "ExecCredential", "apiVersion": api_version, "spec": { "interactive": interactive } })
}

/// Run the user's exec plugin as kubectl does and read its ExecCredential.
fn run_exec(entry: &ExecEntry, target: &Target) -> anyhow::Result<ExecCredentialStatus> {
    let interactive = std::io::stdin().is_terminal();
    let mut info = if entry.provide_cluster_info { cluster_exec_info(target)? } else { exec_info(&entry.api_version) };
    info["apiVersion"] = json!(entry.api_version);
    // A relative command with a slash is relative to the kubeconfig, as in kubectl.
    let command =
        if entry.command.contains('/') { target.base.join(&entry.command) } else { PathBuf::from(&entry.command) };
    let mut process = Command::new(&command);
    process.args(&entry.args).env("KUBERNETES_EXEC_INFO", info.to_string()).stdout(Stdio::piped());
    process.stdin(if interactive { Stdio::inherit() } else { Stdio::null() });
    for var in entry.env.iter().flatten() {
        process.env(&var.name, &var.value);
    }
    let output = process.output().with_context(|| format!("running the exec plugin `{}`", command.display()))?;
    if !output.status.success() {
        bail!("the exec plugin `{}` failed ({})", command.display(), output.status);
    }
    if output.stdout.len() > MAX_ANSWER {
        bail!("the exec plugin `{}` printed over {MAX_ANSWER} bytes", command.display());
    }
    let credential: ExecCredential = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("the exec plugin `{}` printed no ExecCredential", command.display()))?;
    if credential.api_version != entry.api_version {
        bail!(
            "the exec plugin `{}` answered {}, not the {} the kubeconfig asks for",
            command.display(),
            text::name(&credential.api_version),
            text::name(&entry.api_version)
        );
    }
    credential.status.with_context(|| format!("the exec plugin `{}` printed no status", command.display()))
}

/// What the server (or, failing it, the credential) says.
enum Answer {
    /// The SelfSubjectReview the server answered.
    Review(Value),
    /// The server has no SelfSubjectReview API: the credential's own claims.
    Claims { claims: Option<Value>, kind: &'static str },
}

/// The SelfSubjectReview versions, newest first.
const REVIEW_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

fn review(target: &Target, status: &ExecCredentialStatus) -> anyhow::Result<Answer> {
    let client = client(target, status)?;
    let server = target.cluster.server.trim_end_matches('/');
    if !server.starts_with("https://") {
        bail!("the cluster's server `{}` is not https://; whoami sends credentials only over TLS", text::name(server));
    }
    for version in REVIEW_VERSIONS {
        let url = format!("{server}/apis/authentication.k8s.io/{version}/selfsubjectreviews");
        let body = json!({ "apiVersion": format!("authentication.k8s.io/{version}"), "kind": "SelfSubjectReview" });
        let mut request = client.post(&url).header("content-type", "application/json").body(body.to_string());
        if let Some(token) = &status.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().with_context(|| format!("asking {server}"))?;
        let code = response.status();
        let bytes = response.bytes().with_context(|| format!("reading the answer of {server}"))?;
        if bytes.len() > MAX_ANSWER {
            bail!("{server} answered over {MAX_ANSWER} bytes");
        }
        match code.as_u16() {
            200 | 201 => {
                return serde_json::from_slice(&bytes)
                    .map(Answer::Review)
                    .with_context(|| format!("{server} answered no SelfSubjectReview"));
            }
            // No such API in this version (or the server's API discovery
            // lists none): try the next one.
            404 => continue,
            401 => bail!("{server} does not accept the credential (401 Unauthorized)"),
            _ => {
                let message = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                bail!("{server} answered {code}: {}", text::one_line(&message));
            }
        }
    }
    Ok(match &status.token {
        Some(token) => Answer::Claims { claims: jwt_claims(token), kind: "token" },
        None => Answer::Claims { claims: None, kind: "client certificate" },
    })
}

/// The payload of a JWT, unverified; `None` for a token that is not one.
fn jwt_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

/// An HTTPS client that trusts the cluster's CA (else the system's roots) and
/// presents the client certificate, if the credential is one.
fn client(target: &Target, status: &ExecCredentialStatus) -> anyhow::Result<reqwest::blocking::Client> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = match (&target.cluster.certificate_authority_data, &target.cluster.certificate_authority) {
        (Some(data), _) => Some(decode(data, "certificate-authority-data")?),
        (None, Some(file)) => Some(read_file(&target.base, file, "certificate-authority")?),
        (None, None) => None,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.context("the cluster's CA is not PEM")?).context("the cluster's CA")?;
            }
            if roots.is_empty() {
                bail!("the cluster's certificate authority holds no certificate");
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS")?
        .with_root_certificates(roots);
    let tls = match (&status.client_certificate_data, &status.client_key_data) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("the client certificate is not PEM")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("the client key is not PEM")?;
            builder.with_client_auth_cert(chain, key).context("the client certificate")?
        }
        _ => builder.with_no_client_auth(),
    };
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(REVIEW_TIMEOUT)
        .no_proxy()
        .build()
        .context("HTTPS client")
}

impl Answer {
    fn json(&self) -> Value {
        match self {
            Self::Review(review) => review.clone(),
            Self::Claims { claims, kind } => json!({
                "source": "credential",
                "reason": "the API server has no SelfSubjectReview API",
                "credential": kind,
                "claims": claims,
            }),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Review(review) => {
                let user = &review["status"]["userInfo"];
                let mut out = String::new();
                let field = |out: &mut String, name: &str, value: &Value| {
                    if let Some(value) = value.as_str() {
                        out.push_str(&format!("{name:<10}{}\n", text::one_line(value)));
                    }
                };
                field(&mut out, "username", &user["username"]);
                field(&mut out, "uid", &user["uid"]);
                let joined = |values: &Value| {
                    values
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .filter_map(Value::as_str)
                                .map(|s| text::one_line(s).into_owned())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                        .join(", ")
                };
                let groups = joined(&user["groups"]);
                if !groups.is_empty() {
                    out.push_str(&format!("{:<10}{groups}\n", "groups"));
                }
                if let Some(extra) = user["extra"].as_object().filter(|e| !e.is_empty()) {
                    out.push_str("extra\n");
                    for (key, values) in extra {
                        out.push_str(&format!("  {}: {}\n", text::one_line(key), joined(values)));
                    }
                }
                out
            }
            Self::Claims { claims, kind } => {
                let mut out = String::from(
                    "the API server has no SelfSubjectReview API (404 for authentication.k8s.io/v1, v1beta1 and \
                     v1alpha1: Kubernetes before 1.28 without the feature gate)\n",
                );
                match claims {
                    Some(Value::Object(claims)) => {
                        out.push_str("the token's own claims, which the server did not confirm:\n");
                        for (key, value) in claims {
                            let value = match value {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            out.push_str(&format!("  {}: {}\n", text::one_line(key), text::one_line(&value)));
                        }
                    }
                    _ => out.push_str(&format!("the {kind} carries no claims whoami can read\n")),
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_payloads_are_read_and_other_tokens_are_not() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","groups":["devs"]}"#);
        let claims = jwt_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(jwt_claims("opaque-token"), None);
        assert_eq!(jwt_claims("a.b.c.d"), None);
        assert_eq!(jwt_claims("e30.bm90IGpzb24.sig"), None);
    }

    #[test]
    fn reviews_are_printed_for_people() {
        let review = json!({"kind":"SelfSubjectReview","status":{"userInfo":{
            "username":"alice","uid":"42","groups":["devs","system:authenticated"],"extra":{"scopes":["a","b"]}}}});
        assert_eq!(
            Answer::Review(review).text(),
            "username  alice\nuid       42\ngroups    devs, system:authenticated\nextra\n  scopes: a, b\n"
        );
    }
}
