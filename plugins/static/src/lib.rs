//! The `static` provider: hands kubectl a credential the operator configured.
//!
//! Settings:
//! - `token`: the bearer token (use `env:NAME` or `file:PATH` to keep it out of
//!   the config), or
//! - `client-certificate` + `client-key`: a PEM client certificate and key;
//! - `expires-in`: seconds until the credential expires (optional), or
//! - `expires-at`: the expiry as seconds since the Unix epoch (optional).

use credbroker_sdk::{Credential, CredentialRequest, Error, Provider, config};

struct Static;

impl Provider for Static {
    fn get_credential(_request: CredentialRequest) -> Result<Credential, Error> {
        let credential = match (config::get("token"), config::get("client-certificate")) {
            (Some(_), Some(_)) => {
                return Err(Error::misconfigured("set either `token` or `client-certificate`, not both"));
            }
            (Some(_), None) => Credential::token(config::require("token")?),
            (None, Some(_)) => {
                Credential::client_certificate(config::require("client-certificate")?, config::require("client-key")?)
            }
            (None, None) => {
                return Err(Error::misconfigured(
                    "setting `token` is required (e.g. --set token=env:MY_TOKEN), \
                     or `client-certificate` and `client-key`",
                ));
            }
        };
        match (config::get("expires-in"), config::get("expires-at")) {
            (Some(_), Some(_)) => Err(Error::misconfigured("set either `expires-in` or `expires-at`, not both")),
            (Some(_), None) => Ok(credential.expires_in(config::parse_or("expires-in", 0i64)?)),
            (None, Some(_)) => Ok(credential.expires_at(config::parse_or("expires-at", 0i64)?)),
            (None, None) => Ok(credential),
        }
    }
}

credbroker_sdk::export_provider!(Static);
