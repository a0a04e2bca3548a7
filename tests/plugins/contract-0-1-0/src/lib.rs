//! A provider as a plugin author would have built it against contract 0.1.0:
//! bindings generated straight from the frozen WIT of that release. It reads
//! its `token` setting, logs, and returns a bearer token.

wit_bindgen::generate!({
    world: "provider",
    path: "../../compat/credbroker-0.1.0.wit",
    generate_all,
});

use credbroker::plugin::types::{Credential, CredentialRequest, CredentialSecret, PluginError};
use credbroker::plugin::{config, log};

struct Provider;

impl exports::credbroker::plugin::credential_provider::Guest for Provider {
    fn get_credential(_request: CredentialRequest) -> Result<Credential, PluginError> {
        log::log(log::Level::Info, "built against credbroker:plugin@0.1.0");
        let token =
            config::get("token").ok_or_else(|| PluginError::Misconfigured("set `token` (--set token=...)".into()))?;
        Ok(Credential { secret: CredentialSecret::Token(format!("{token}-from-0.1.0")), expires_at: None })
    }
}

export!(Provider);
