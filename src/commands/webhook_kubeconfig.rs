//! The kubeconfig kube-apiserver reads to reach the webhook
//! (`--authentication-token-webhook-config-file`).

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// A certificate or key, by path or embedded.
pub enum Pem<'a> {
    /// Referenced by absolute path (kube-apiserver reads it when it starts).
    /// Only `serve --print-kubeconfig` refers to files, and `serve` is Unix-only.
    #[cfg_attr(not(unix), allow(dead_code))]
    File(&'a Path),
    /// Embedded as `*-data` (the file can be copied anywhere).
    Data(&'a [u8]),
}

impl Pem<'_> {
    fn put(&self, map: &mut Map<String, Value>, field: &str) -> anyhow::Result<()> {
        match self {
            Self::File(path) => {
                let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
                map.insert(field.into(), Value::String(path.display().to_string()));
            }
            Self::Data(bytes) => {
                map.insert(format!("{field}-data"), Value::String(STANDARD.encode(bytes)));
            }
        }
        Ok(())
    }
}

/// The kubeconfig: the webhook at `url` (its path included), verified with
/// `ca`, with kube-apiserver's client certificate and key.
pub fn render(url: &str, ca: Option<Pem<'_>>, client: Option<(Pem<'_>, Pem<'_>)>) -> anyhow::Result<String> {
    let mut cluster = Map::new();
    cluster.insert("server".into(), Value::String(url.into()));
    if let Some(ca) = ca {
        ca.put(&mut cluster, "certificate-authority")?;
    }
    let mut user = Map::new();
    if let Some((cert, key)) = client {
        cert.put(&mut user, "client-certificate")?;
        key.put(&mut user, "client-key")?;
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "credbroker", "cluster": cluster}],
        "users": [{"name": "kube-apiserver", "user": user}],
        "contexts": [{"name": "webhook", "context": {"cluster": "credbroker", "user": "kube-apiserver"}}],
        "current-context": "webhook",
    });
    let yaml = serde_yaml_ng::to_string(&config).context("encoding the webhook kubeconfig")?;
    Ok(format!(
        "# kube-apiserver --authentication-token-webhook-config-file=THIS_FILE --authentication-token-webhook-version=v1\n{yaml}"
    ))
}
