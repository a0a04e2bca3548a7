//! Host-side bindings generated from `wit/`.

/// The `provider` world, and with it every host interface and shared type.
pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "credbroker:plugin/ldap.connection": crate::capabilities::ldap::LdapConnection,
            "credbroker:plugin/loopback.redirect-listener": crate::capabilities::loopback::RedirectListener,
        },
    });
}

/// The `validator` world; its imports are the same interfaces as the provider's.
pub mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "credbroker:plugin/types": super::provider::credbroker::plugin::types,
            "credbroker:plugin/config": super::provider::credbroker::plugin::config,
            "credbroker:plugin/log": super::provider::credbroker::plugin::log,
            "credbroker:plugin/prompt": super::provider::credbroker::plugin::prompt,
            "credbroker:plugin/http": super::provider::credbroker::plugin::http,
            "credbroker:plugin/files": super::provider::credbroker::plugin::files,
            "credbroker:plugin/ldap": super::provider::credbroker::plugin::ldap,
            "credbroker:plugin/state": super::provider::credbroker::plugin::state,
            "credbroker:plugin/loopback": super::provider::credbroker::plugin::loopback,
            "credbroker:plugin/crypto": super::provider::credbroker::plugin::crypto,
            "credbroker:plugin/credential-process": super::provider::credbroker::plugin::credential_process,
            "credbroker:plugin/table": super::provider::credbroker::plugin::table,
        },
    });
}

/// The `validator-with-setup` world (0.1.3): a validator that also exports
/// `validator-setup`; same imports again.
pub mod validator_with_setup {
    wasmtime::component::bindgen!({
        world: "validator-with-setup",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "credbroker:plugin/types": super::provider::credbroker::plugin::types,
            "credbroker:plugin/config": super::provider::credbroker::plugin::config,
            "credbroker:plugin/log": super::provider::credbroker::plugin::log,
            "credbroker:plugin/prompt": super::provider::credbroker::plugin::prompt,
            "credbroker:plugin/http": super::provider::credbroker::plugin::http,
            "credbroker:plugin/files": super::provider::credbroker::plugin::files,
            "credbroker:plugin/ldap": super::provider::credbroker::plugin::ldap,
            "credbroker:plugin/state": super::provider::credbroker::plugin::state,
            "credbroker:plugin/loopback": super::provider::credbroker::plugin::loopback,
            "credbroker:plugin/crypto": super::provider::credbroker::plugin::crypto,
            "credbroker:plugin/credential-process": super::provider::credbroker::plugin::credential_process,
            "credbroker:plugin/table": super::provider::credbroker::plugin::table,
        },
    });
}

/// The `login` world; same imports again.
pub mod login {
    wasmtime::component::bindgen!({
        world: "login",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "credbroker:plugin/types": super::provider::credbroker::plugin::types,
            "credbroker:plugin/config": super::provider::credbroker::plugin::config,
            "credbroker:plugin/log": super::provider::credbroker::plugin::log,
            "credbroker:plugin/prompt": super::provider::credbroker::plugin::prompt,
            "credbroker:plugin/http": super::provider::credbroker::plugin::http,
            "credbroker:plugin/files": super::provider::credbroker::plugin::files,
            "credbroker:plugin/ldap": super::provider::credbroker::plugin::ldap,
            "credbroker:plugin/state": super::provider::credbroker::plugin::state,
            "credbroker:plugin/loopback": super::provider::credbroker::plugin::loopback,
            "credbroker:plugin/crypto": super::provider::credbroker::plugin::crypto,
            "credbroker:plugin/credential-process": super::provider::credbroker::plugin::credential_process,
            "credbroker:plugin/table": super::provider::credbroker::plugin::table,
        },
    });
}

pub use login::exports::credbroker::plugin::password_login::LoginOutcome;
pub use provider::credbroker::plugin::types;
pub use provider::credbroker::plugin::{
    config, credential_process, crypto, files, http, ldap, log, loopback, prompt, state, table,
};
