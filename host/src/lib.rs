//! The credbroker host: a sandboxed WebAssembly plugin runtime, the host
//! capabilities it lends plugins, and the two halves built on it: the exec
//! credential plugin ([`exec`]) and the webhook token authenticator
//! ([`webhook`]).

pub mod bindings;
pub mod boundary;
pub mod bundled;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod contract;
pub mod dirs;
pub mod exec;
pub mod fsutil;
pub mod keys;
pub mod limits;
pub mod plugin;
pub mod reachability;
pub mod runtime;
pub mod settings;
pub mod signing;
pub mod storage;
// The webhook runs in pods, on Linux; it builds on every Unix but not on
// Windows, where only the client commands are.
#[cfg(unix)]
pub mod webhook;
