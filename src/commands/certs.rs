//! `credbroker certs`: a development PKI for the webhook.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use credbroker_host::fsutil;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use super::webhook_kubeconfig::{self, Pem};

/// Certificate subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a CA, the webhook's server certificate, kube-apiserver's client
    /// certificate, a token signing key and the webhook kubeconfig.
    #[command(after_help = "Files (all 0600, in a 0700 directory):\n  \
        ca.crt ca.key                      the CA (keep ca.key offline)\n  \
        server.crt server.key              credbroker serve's TLS: [server] tls-cert-file / tls-key-file\n  \
        apiserver-client.crt/.key          kube-apiserver's client certificate (client-ca-file = ca.crt)\n  \
        signing.pem                        Ed25519 key for issued tokens: [login] signing-key-file\n  \
        webhook-kubeconfig.yaml            --authentication-token-webhook-config-file\n\n\
        For development and small clusters; in production use your own CA (cert-manager, Vault...).")]
    Init(InitArgs),
}

/// Arguments of `credbroker certs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the files (created 0700).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A DNS name or IP address kube-apiserver reaches the webhook at; repeatable.
    #[arg(long = "server-name", value_name = "NAME", required = true)]
    server_names: Vec<String>,
    /// The webhook URL in the kubeconfig [default: https://FIRST-SERVER-NAME:8443/authenticate].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Validity of the certificates, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Replace files that already exist.
    #[arg(long)]
    force: bool,
}

const FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "apiserver-client.crt",
    "apiserver-client.key",
    "signing.pem",
    "webhook-kubeconfig.yaml",
];

/// Run a certs subcommand.
pub fn run(command: CertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::Init(args) => init(&args),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let existing: Vec<&str> = FILES.iter().copied().filter(|f| args.dir.join(f).exists()).collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already holds {}; pass --force to replace them (tokens signed with the old signing.pem stop working)",
            args.dir.display(),
            existing.join(", ")
        );
    }
    let sans = args.server_names.iter().map(|name| san(name)).collect::<anyhow::Result<Vec<_>>>()?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let host = &args.server_names[0];
            let host = if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.clone() };
            format!("https://{host}:8443/authenticate")
        }
    };
    let now = SystemTime::now();
    let until = now + Duration::from_secs(u64::from(args.days) * 86_400);

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "credbroker development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now.into();
    // The CA outlives the leaves so they can be re-issued without touching
    // every trust store.
    ca_params.not_after = (now + Duration::from_secs(u64::from(args.days) * 2 * 86_400)).into();
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA certificate")?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose, sans: Vec<SanType>| -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.not_before = now.into();
        params.not_after = until.into();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().with_context(|| format!("generating the key of {cn}"))?;
        let cert = params.signed_by(&key, &issuer).with_context(|| format!("signing the certificate of {cn}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_crt, server_key) = leaf(&args.server_names[0], ExtendedKeyUsagePurpose::ServerAuth, sans)?;
    let (client_crt, client_key) = leaf("kube-apiserver", ExtendedKeyUsagePurpose::ClientAuth, Vec::new())?;
    let signing = signing_key_pem()?;
    let kubeconfig = webhook_kubeconfig::render(
        &url,
        Some(Pem::Data(ca_cert.pem().as_bytes())),
        Some((Pem::Data(client_crt.as_bytes()), Pem::Data(client_key.as_bytes()))),
    )?;

    fsutil::ensure_private_dir(&args.dir)?;
    let contents =
        [ca_cert.pem(), ca_key.serialize_pem(), server_crt, server_key, client_crt, client_key, signing, kubeconfig];
    for (name, content) in FILES.iter().zip(contents) {
        fsutil::write_private_atomic(&args.dir, name, content.as_bytes())
            .with_context(|| format!("writing {}", args.dir.join(name).display()))?;
    }
    let dir = args.dir.display();
    eprintln!(
        "wrote {} files to {dir} (mode 0600); the server certificate names {} and is valid for {} days\n\n\
         credbroker serve:\n  \
           [server]\n  \
           tls-cert-file = \"{dir}/server.crt\"\n  \
           tls-key-file = \"{dir}/server.key\"\n  \
           client-ca-file = \"{dir}/ca.crt\"\n  \
           [login]            # only with login backends\n  \
           signing-key-file = \"{dir}/signing.pem\"\n\n\
         kube-apiserver (reaches {url}):\n  \
           --authentication-token-webhook-config-file=/path/to/webhook-kubeconfig.yaml\n  \
           --authentication-token-webhook-version=v1",
        FILES.len(),
        args.server_names.join(", "),
        args.days,
    );
    Ok(ExitCode::SUCCESS)
}

/// A subject alternative name: an IP address when it parses as one.
fn san(name: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
        });
    if !valid {
        bail!("--server-name `{name}` is neither an IP address nor a DNS name");
    }
    Ok(SanType::DnsName(name.try_into().with_context(|| format!("--server-name `{name}`"))?))
}

/// A new Ed25519 private key, PKCS#8 PEM (what `[login] signing-key-file` reads).
fn signing_key_pem() -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("generating the Ed25519 signing key failed"))?;
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|chunk| std::str::from_utf8(chunk).unwrap_or_default()).collect();
    Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
}
