//! Builds the first-party plugins in `plugins/` into WebAssembly components and
//! generates the table that embeds them, so one `cargo build` yields a
//! `credbroker` that works out of the box.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

struct PluginCrate {
    /// Bundled name: the crate name without `credbroker-plugin-`.
    name: String,
    package: String,
    description: String,
    /// From `[package.metadata.credbroker] worlds`: provider, validator, login.
    worlds: Vec<String>,
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    // The root manifest holds `[profile.plugin]`, which the plugins are built with.
    for watched in ["plugins", "guest-sdk", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let plugins = plugin_crates(&root.join("plugins"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
        .join("plugin-build");
    build_plugins(&root, &target_dir, &plugins);

    let mut table = String::from("/// Every bundled plugin, by name.\npub static ALL: &[BundledPlugin] = &[\n");
    for plugin in &plugins {
        let wasm = target_dir.join(TARGET).join(PROFILE).join(format!("{}.wasm", plugin.package.replace('-', "_")));
        let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm.display()));
        let digest = hex(&Sha256::digest(&bytes));
        writeln!(
            table,
            "    BundledPlugin {{ name: {:?}, description: {:?}, worlds: &[{}], sha256: {:?}, wasm: include_bytes!({:?}) }},",
            plugin.name,
            plugin.description,
            plugin
                .worlds
                .iter()
                .map(|w| match w.as_str() {
                    "provider" => "World::Provider",
                    "validator" => "World::Validator",
                    _ => "World::Login",
                })
                .collect::<Vec<_>>()
                .join(", "),
            digest,
            wasm.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("bundled_plugins.rs"), table).expect("writing OUT_DIR/bundled_plugins.rs");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn plugin_crates(dir: &Path) -> Vec<PluginCrate> {
    let mut plugins = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let manifest = path.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let parsed: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let package = &parsed["package"];
        let package_name = package["name"].as_str().expect("package.name").to_string();
        let name = package_name
            .strip_prefix("credbroker-plugin-")
            .unwrap_or_else(|| panic!("{}: plugin crates are named credbroker-plugin-NAME", manifest.display()))
            .to_string();
        let description = package.get("description").and_then(|d| d.as_str()).unwrap_or_default().to_string();
        let worlds: Vec<String> = package
            .get("metadata")
            .and_then(|m| m.get("credbroker"))
            .and_then(|c| c.get("worlds"))
            .and_then(|w| w.as_array())
            .map(|list| list.iter().filter_map(|w| w.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if worlds.is_empty() || worlds.iter().any(|w| !["provider", "validator", "login"].contains(&w.as_str())) {
            panic!(
                "{}: set [package.metadata.credbroker] worlds to a list of provider, validator, login",
                manifest.display()
            );
        }
        plugins.push(PluginCrate { name, package: package_name, description, worlds });
    }
    plugins
}

fn build_plugins(root: &Path, target_dir: &Path, plugins: &[PluginCrate]) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists() {
        panic!(
            "the {TARGET} target is not installed; credbroker compiles its bundled plugins for it.\n\
             Install it with: rustup target add {TARGET}"
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One `cargo rustc` per plugin, each asking for a cdylib (a component, on
    // wasm32-wasip2): the crates themselves stay plain libraries, so that
    // their native builds (unit tests), linked statically on x86_64 Linux,
    // do not ask for a crate type that cannot be.
    for plugin in plugins {
        let mut command = Command::new(&cargo);
        command
            .current_dir(root)
            .args(["rustc", "--lib", "--crate-type", "cdylib", "--profile", PROFILE, "--target", TARGET])
            .args(["-p", &plugin.package, "--target-dir"])
            .arg(target_dir);
        // The outer build's settings are for the host, not for wasm.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_MAKEFLAGS",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_PROFILE_RELEASE_DEBUG",
        ] {
            command.env_remove(var);
        }
        let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
        if !status.success() {
            panic!("building the bundled plugin {} failed ({status}); see the cargo output above", plugin.package);
        }
    }
}
