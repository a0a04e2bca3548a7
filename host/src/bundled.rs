//! The first-party plugins compiled into this binary by `build.rs`, so
//! `credbroker` works out of the box.

use crate::contract::World;

/// A plugin compiled into the binary.
#[derive(Debug)]
pub struct BundledPlugin {
    /// The name users select it by (`--provider static`).
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The worlds it implements.
    pub worlds: &'static [World],
    /// Lowercase hex sha256 of `wasm`, computed at build time.
    pub sha256: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// The bundled plugin called `name`.
pub fn find(name: &str) -> Option<&'static BundledPlugin> {
    ALL.iter().find(|p| p.name == name)
}
