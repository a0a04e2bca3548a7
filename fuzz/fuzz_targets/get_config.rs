//! The TOML configuration files: `credbroker get`'s profiles
//! (`credbroker_host::config::ClientConfig::parse`, what `load` uses) and
//! `credbroker serve`'s `ServerConfig::load` (from a file in tmpfs: it has no
//! string entry point).
//!
//! Besides "never panics", checks that an accepted configuration holds what
//! the loaders promise:
//! - `get`: every profile's limits validate; a plugin given as a path is made
//!   absolute against an absolute configuration directory; acceptance does not
//!   depend on where the file lives;
//! - `serve`: at least one validator, unique names, valid limits within the
//!   server's plugin memory cap, TLS (or explicit plain HTTP), positive
//!   concurrency limits, a positive login token lifetime, and every file path
//!   absolute.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use credbroker_host::config::ClientConfig;
use credbroker_host::webhook::config::ServerConfig;
use libfuzzer_sys::fuzz_target;

/// A private directory in tmpfs (or the temp dir) for the serve config file.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = root.join(format!("credbroker-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fn check_client(text: &str) {
    let at = Path::new("/etc/credbroker/config.toml");
    let result = ClientConfig::parse(text, at);
    let elsewhere = ClientConfig::parse(text, Path::new("relative/dir/config.toml"));
    assert_eq!(result.is_ok(), elsewhere.is_ok(), "acceptance depends on the file's location");
    match result {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            for (name, profile) in &config.profiles {
                assert!(profile.limits.validate().is_ok(), "profile {name:?} has invalid limits");
                if credbroker_host::plugin::is_path(&profile.plugin) {
                    assert!(Path::new(&profile.plugin).is_absolute(), "plugin path {:?} is relative", profile.plugin);
                }
                let _ = profile.spec();
            }
            // A second parse gives the same result (nothing depends on state).
            assert_eq!(ClientConfig::parse(text, at).expect("parses twice"), config);
        }
    }
}

fn check_server(text: &str) {
    let path = scratch().join("serve.toml");
    std::fs::write(&path, text).expect("writing the scratch config");
    match ServerConfig::load(&path) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            assert!(!config.validators.is_empty());
            let mut names = std::collections::HashSet::new();
            for validator in &config.validators {
                assert!(names.insert(validator.name.as_str()), "duplicate validator {:?}", validator.name);
                assert!(validator.limits.validate().is_ok());
                assert!(validator.limits.memory_mib <= config.server.max_plugin_memory_mib);
                if credbroker_host::plugin::is_path(&validator.plugin) {
                    assert!(Path::new(&validator.plugin).is_absolute(), "plugin {:?} is relative", validator.plugin);
                }
                let _ = validator.spec();
            }
            let server = &config.server;
            assert!(server.insecure_plain_http || (server.tls_cert_file.is_some() && server.tls_key_file.is_some()));
            assert!(server.max_concurrent_reviews >= 1 && server.max_connections >= 1);
            for file in [&server.tls_cert_file, &server.tls_key_file, &server.client_ca_file].into_iter().flatten() {
                assert!(file.is_absolute(), "{file:?} is relative");
            }
            if let Some(login) = &config.login {
                assert!(login.token_lifetime_seconds >= 1);
                assert!(login.signing_key_file.is_absolute());
                assert!(login.verification_key_files.iter().all(|f| f.is_absolute()));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_client(text);
    check_server(text);
});
