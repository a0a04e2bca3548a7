//! The `client.authentication.k8s.io` ExecCredential, exactly as client-go
//! reads and writes it.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `client.authentication.k8s.io/v1`.
pub const V1: &str = "client.authentication.k8s.io/v1";
/// `client.authentication.k8s.io/v1beta1`.
pub const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";
/// The kind of both.
pub const KIND: &str = "ExecCredential";

/// The ExecCredential API versions credbroker speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `client.authentication.k8s.io/v1`.
    V1,
    /// `client.authentication.k8s.io/v1beta1`.
    V1Beta1,
}

impl ApiVersion {
    /// The full `apiVersion` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => V1,
            Self::V1Beta1 => V1BETA1,
        }
    }

    /// Parse a full apiVersion or its short form (`v1`, `v1beta1`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            V1 | "v1" => Some(Self::V1),
            V1BETA1 | "v1beta1" => Some(Self::V1Beta1),
            _ => None,
        }
    }
}

/// The cluster kubectl talks to (`spec.cluster`), present when the kubeconfig
/// sets `provideClusterInfo: true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// The API server URL.
    pub server: String,
    /// Name to check the server certificate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Whether TLS verification is off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,
    /// Base64 of the PEM CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Proxy to reach the cluster through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Whether response compression is off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_compression: bool,
    /// The `client.authentication.k8s.io/exec` extension of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

impl Cluster {
    /// The CA bundle, decoded.
    ///
    /// # Errors
    ///
    /// When `certificate-authority-data` is not base64.
    pub fn ca_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.certificate_authority_data
            .as_deref()
            .map(|data| base64::engine::general_purpose::STANDARD.decode(data.trim()))
            .transpose()
    }
}

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecCredentialSpec {
    /// The cluster, when provided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// Whether the plugin may prompt the user.
    #[serde(default)]
    pub interactive: bool,
}

/// `status`: the credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecCredentialStatus {
    /// RFC 3339 UTC time after which the credential is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<String>,
    /// A bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
}

/// The whole object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecCredential {
    /// Always `ExecCredential`.
    pub kind: String,
    /// v1 or v1beta1.
    pub api_version: String,
    /// The request part.
    #[serde(default)]
    pub spec: ExecCredentialSpec,
    /// The credential, in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecCredentialStatus>,
}

/// `KUBERNETES_EXEC_INFO` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExecInfoError {
    /// Not JSON of the expected shape.
    #[error("KUBERNETES_EXEC_INFO is not a valid ExecCredential: {0}")]
    Malformed(String),
    /// Another kind.
    #[error("KUBERNETES_EXEC_INFO has kind `{0}`, expected `ExecCredential`")]
    WrongKind(String),
    /// An apiVersion credbroker does not speak.
    #[error("KUBERNETES_EXEC_INFO has apiVersion `{0}`; credbroker speaks {V1} and {V1BETA1}")]
    UnknownVersion(String),
    /// Not UTF-8 text (so not JSON).
    #[error("KUBERNETES_EXEC_INFO is not valid UTF-8, so not an ExecCredential")]
    NotUtf8,
    /// Too large to be real.
    #[error("KUBERNETES_EXEC_INFO is {0} bytes; refusing anything over 1 MiB")]
    TooLarge(usize),
    /// Bad certificate-authority-data.
    #[error("KUBERNETES_EXEC_INFO spec.cluster.certificate-authority-data is not base64")]
    BadCaData,
}

/// The largest KUBERNETES_EXEC_INFO accepted (a CA bundle plus a config).
const MAX_EXEC_INFO: usize = 1024 * 1024;

/// Parse `KUBERNETES_EXEC_INFO`.
///
/// # Errors
///
/// [`ExecInfoError`] saying what is wrong.
pub fn parse_exec_info(text: &str) -> Result<(ApiVersion, ExecCredentialSpec), ExecInfoError> {
    if text.len() > MAX_EXEC_INFO {
        return Err(ExecInfoError::TooLarge(text.len()));
    }
    let info: ExecCredential = serde_json::from_str(text).map_err(|e| ExecInfoError::Malformed(e.to_string()))?;
    if info.kind != KIND {
        return Err(ExecInfoError::WrongKind(info.kind));
    }
    let version = ApiVersion::parse(&info.api_version).ok_or(ExecInfoError::UnknownVersion(info.api_version))?;
    if let Some(cluster) = &info.spec.cluster {
        cluster.ca_bytes().map_err(|_| ExecInfoError::BadCaData)?;
    }
    Ok((version, info.spec))
}

/// RFC 3339 in UTC with second precision, as Kubernetes' `metav1.Time` writes it.
pub fn rfc3339(unix_seconds: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_exec_info_parses() {
        let (version, spec) = parse_exec_info(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"cluster":{"server":"https://127.0.0.1:6443","certificate-authority-data":"Y2E=","config":{"audience":"x"}},"interactive":true}}"#,
        )
        .unwrap();
        assert_eq!(version, ApiVersion::V1);
        assert!(spec.interactive);
        let cluster = spec.cluster.unwrap();
        assert_eq!(cluster.server, "https://127.0.0.1:6443");
        assert_eq!(cluster.ca_bytes().unwrap().unwrap(), b"ca");
        assert_eq!(cluster.config.unwrap()["audience"], "x");
    }

    #[test]
    fn bad_exec_info_is_named() {
        assert!(matches!(parse_exec_info("{"), Err(ExecInfoError::Malformed(_))));
        assert!(matches!(parse_exec_info(r#"{"kind":"Pod","apiVersion":"v1"}"#), Err(ExecInfoError::WrongKind(_))));
        assert!(matches!(
            parse_exec_info(r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1"}"#),
            Err(ExecInfoError::UnknownVersion(_))
        ));
        let huge = format!(r#"{{"kind":"ExecCredential","x":"{}"}}"#, "a".repeat(MAX_EXEC_INFO));
        assert!(matches!(parse_exec_info(&huge), Err(ExecInfoError::TooLarge(_))));
    }

    #[test]
    fn output_matches_client_go() {
        let credential = ExecCredential {
            kind: KIND.into(),
            api_version: V1.into(),
            spec: ExecCredentialSpec::default(),
            status: Some(ExecCredentialStatus {
                expiration_timestamp: Some(rfc3339(1_700_000_000)),
                token: Some("abc".into()),
                ..Default::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&credential).unwrap(),
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false},"status":{"expirationTimestamp":"2023-11-14T22:13:20Z","token":"abc"}}"#
        );
    }
}
