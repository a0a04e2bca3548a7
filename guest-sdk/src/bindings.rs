//! Raw bindings generated from the contract, `wit/credbroker.wit` (hidden:
//! plugins use the wrappers and re-exports, which carry the WIT's docs).

// The host interfaces and shared types, for every world. `PartialEq` lets
// plugins compare outcomes in their unit tests.
wit_bindgen::generate!({
    world: "host",
    path: "wit",
    generate_all,
    additional_derives: [PartialEq, Eq],
});

/// Export glue for one world: its own exports, using the host interfaces
/// generated above (one list of them for every world).
macro_rules! world_glue {
    ($world:tt, $export_macro:tt, $module:tt) => {
        wit_bindgen::generate!({
            world: $world,
            path: "wit",
            with: {
                "credbroker:plugin/types@0.1.5": crate::bindings::credbroker::plugin::types,
                "credbroker:plugin/config@0.1.5": crate::bindings::credbroker::plugin::config,
                "credbroker:plugin/log@0.1.5": crate::bindings::credbroker::plugin::log,
                "credbroker:plugin/prompt@0.1.5": crate::bindings::credbroker::plugin::prompt,
                "credbroker:plugin/http@0.1.5": crate::bindings::credbroker::plugin::http,
                "credbroker:plugin/files@0.1.5": crate::bindings::credbroker::plugin::files,
                "credbroker:plugin/ldap@0.1.5": crate::bindings::credbroker::plugin::ldap,
                "credbroker:plugin/state@0.1.5": crate::bindings::credbroker::plugin::state,
                "credbroker:plugin/loopback@0.1.5": crate::bindings::credbroker::plugin::loopback,
                "credbroker:plugin/crypto@0.1.5": crate::bindings::credbroker::plugin::crypto,
                "credbroker:plugin/credential-process@0.1.5": crate::bindings::credbroker::plugin::credential_process,
                "credbroker:plugin/table@0.1.5": crate::bindings::credbroker::plugin::table,
            },
            additional_derives: [PartialEq, Eq],
            pub_export_macro: true,
            export_macro_name: $export_macro,
            default_bindings_module: $module,
        });
    };
}

/// Export glue for the `provider` world.
pub mod provider {
    world_glue!("provider", "export_provider_world", "credbroker_sdk::bindings::provider");
}

/// Export glue for the `validator-with-setup` world: every validator the SDK
/// builds exports `validator-setup` (a no-op unless the plugin overrides
/// [`Validator::setup`](crate::Validator::setup)).
pub mod validator {
    world_glue!("validator-with-setup", "export_validator_world", "credbroker_sdk::bindings::validator");
}

/// Export glue for the `login` world.
pub mod login {
    world_glue!("login", "export_login_world", "credbroker_sdk::bindings::login");
}
