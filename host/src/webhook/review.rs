//! The `authentication.k8s.io` TokenReview, exactly as kube-apiserver sends and
//! reads it (v1 and v1beta1 share one shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `authentication.k8s.io/v1`.
pub const V1: &str = "authentication.k8s.io/v1";
/// `authentication.k8s.io/v1beta1`.
pub const V1BETA1: &str = "authentication.k8s.io/v1beta1";
/// The kind.
pub const KIND: &str = "TokenReview";

/// The request kube-apiserver POSTs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewRequest {
    /// v1 or v1beta1.
    #[serde(default)]
    pub api_version: String,
    /// `TokenReview`.
    #[serde(default)]
    pub kind: String,
    /// What to review.
    #[serde(default)]
    pub spec: TokenReviewSpec,
}

/// `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenReviewSpec {
    /// The bearer token.
    #[serde(default)]
    pub token: String,
    /// Audiences the API server wants the token valid for.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `status.user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name.
    pub username: String,
    /// A unique, stable id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<crate::bindings::types::UserInfo> for UserInfo {
    fn from(user: crate::bindings::types::UserInfo) -> Self {
        Self {
            username: user.username,
            uid: user.uid.unwrap_or_default(),
            groups: user.groups,
            extra: user.extra.into_iter().collect(),
        }
    }
}

/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReviewStatus {
    /// Whether the token is valid.
    pub authenticated: bool,
    /// Whose it is, when authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// Audiences the token is valid for (a subset of those requested).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The response body. The token is never echoed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewResponse {
    /// The version the request used.
    pub api_version: String,
    /// `TokenReview`.
    pub kind: String,
    /// The verdict.
    pub status: TokenReviewStatus,
}

impl TokenReviewResponse {
    /// A response in `api_version` with `status`.
    pub fn new(api_version: &str, status: TokenReviewStatus) -> Self {
        Self { api_version: api_version.to_string(), kind: KIND.to_string(), status }
    }
}

/// A request body that is not a TokenReview this server can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    /// Not JSON, or JSON of the wrong shape.
    #[error("the body is not a TokenReview: {0}")]
    Malformed(String),
    /// Another kind.
    #[error("kind `{0}` is not TokenReview")]
    WrongKind(String),
    /// An unknown apiVersion.
    #[error("apiVersion `{0}` is not {V1} or {V1BETA1}")]
    WrongVersion(String),
}

/// Parse a request body.
///
/// # Errors
///
/// [`BadReview`] saying what is wrong.
pub fn parse(body: &[u8]) -> Result<TokenReviewRequest, BadReview> {
    let text = std::str::from_utf8(body).map_err(|_| BadReview::Malformed("it is not UTF-8".into()))?;
    let review: TokenReviewRequest = serde_json::from_str(text).map_err(|e| BadReview::Malformed(e.to_string()))?;
    if review.kind != KIND {
        return Err(BadReview::WrongKind(review.kind));
    }
    if review.api_version != V1 && review.api_version != V1BETA1 {
        return Err(BadReview::WrongVersion(review.api_version));
    }
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apiserver_requests_parse() {
        let review = parse(
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"creationTimestamp":null},"spec":{"token":"t","audiences":["https://kubernetes.default.svc"]},"status":{"user":{}}}"#,
        )
        .unwrap();
        assert_eq!(review.spec.token, "t");
        assert_eq!(review.spec.audiences, ["https://kubernetes.default.svc"]);
        assert_eq!(
            parse(br#"{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{}}"#)
                .unwrap()
                .spec
                .token,
            ""
        );
    }

    #[test]
    fn bad_requests_are_named() {
        assert!(matches!(parse(b"{"), Err(BadReview::Malformed(_))));
        assert!(matches!(parse(b"\xff\xfe"), Err(BadReview::Malformed(_))));
        assert_eq!(
            parse(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview"}"#).unwrap_err(),
            BadReview::WrongKind("SubjectAccessReview".into())
        );
        assert_eq!(
            parse(br#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview"}"#).unwrap_err(),
            BadReview::WrongVersion("authentication.k8s.io/v2".into())
        );
    }

    #[test]
    fn responses_match_kubernetes() {
        let response = TokenReviewResponse::new(
            V1,
            TokenReviewStatus {
                authenticated: true,
                user: Some(UserInfo {
                    username: "alice".into(),
                    uid: "42".into(),
                    groups: vec!["devs".into()],
                    extra: BTreeMap::from([("team".to_string(), vec!["a".to_string()])]),
                }),
                audiences: vec!["api".into()],
                error: None,
            },
        );
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"alice","uid":"42","groups":["devs"],"extra":{"team":["a"]}},"audiences":["api"]}}"#
        );
    }
}
