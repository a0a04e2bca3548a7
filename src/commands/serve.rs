//! `credbroker serve`: the webhook token authenticator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use credbroker_host::dirs::Dirs;
use credbroker_host::webhook::config::{ListenerOverrides, ServerConfig};
use credbroker_host::webhook::server::REVIEW_PATH;
use credbroker_host::webhook::{ServeOptions, Server};

use super::webhook_kubeconfig::{self, Pem};
use crate::logging::LogFormat;

/// Arguments of `credbroker serve`.
#[derive(Debug, Args)]
#[command(after_help = "kube-apiserver flags to use it:\n  \
    --authentication-token-webhook-config-file=<the output of --print-apiserver-config>\n  \
    --authentication-token-webhook-version=v1")]
pub struct ServeArgs {
    /// The server configuration (listener, TLS, validators).
    #[arg(long, env = "CREDBROKER_SERVE_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Listen here instead of `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve plain HTTP (tokens in the clear), as `[server] insecure-plain-http
    /// = true` does, in place of the TLS files: only for local testing.
    #[arg(long)]
    insecure_plain_http: bool,
    /// Log lines as text or as one JSON object per line (default:
    /// CREDBROKER_LOG_FORMAT, else text).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Load the configuration, TLS files, keys and every validator, say what
    /// was found, and exit without listening.
    #[arg(long, conflicts_with = "print_apiserver_config")]
    check: bool,
    /// Print the webhook kubeconfig kube-apiserver needs, then exit.
    #[arg(long)]
    print_apiserver_config: bool,
    /// With --print-apiserver-config: the URL kube-apiserver reaches this server at.
    #[arg(long, value_name = "URL", requires = "print_apiserver_config")]
    url: Option<String>,
    /// With --print-apiserver-config: the CA that signed this server's certificate.
    #[arg(long, value_name = "FILE", requires = "print_apiserver_config")]
    ca_file: Option<PathBuf>,
    /// With --print-apiserver-config: kube-apiserver's client certificate.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// With --print-apiserver-config: kube-apiserver's client key.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl ServeArgs {
    /// `--log-format`.
    pub fn log_format(&self) -> Option<LogFormat> {
        self.log_format
    }
}

/// Run `credbroker serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.print_apiserver_config {
        print!("{}", apiserver_config(&args)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dirs = Dirs::of_user().map_err(anyhow::Error::msg)?;
    let options = ServeOptions {
        config: args.config,
        plugin_dirs: vec![dirs.plugins.clone()],
        plugin_store: dirs.store.clone(),
        artifact_dir: Some(dirs.artifacts()),
        listen: args.listen,
        insecure_plain_http: args.insecure_plain_http,
    };
    if args.check {
        let validators = Server::check(&options)?;
        println!("{}: OK", options.config.display());
        for line in validators {
            println!("  {line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async {
        let server = Server::bind(options).await?;
        server.run(shutdown_signal()).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

/// The kubeconfig kube-apiserver's `--authentication-token-webhook-config-file` reads.
fn apiserver_config(args: &ServeArgs) -> anyhow::Result<String> {
    let overrides = ListenerOverrides { listen: args.listen, insecure_plain_http: args.insecure_plain_http };
    let config = ServerConfig::load_with(&args.config, &overrides)?;
    let scheme = if config.server.insecure_plain_http { "http" } else { "https" };
    let url = match &args.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("{scheme}://{}", config.server.listen),
    };
    let url = if url.ends_with(REVIEW_PATH) { url } else { format!("{url}{REVIEW_PATH}") };
    let ca = args.ca_file.as_deref().map(Pem::File);
    let client = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some((Pem::File(cert), Pem::File(key))),
        _ => None,
    };
    webhook_kubeconfig::render(&url, ca, client)
}
