//! `credbroker serve`: the webhook token authenticator kube-apiserver asks
//! (`--authentication-token-webhook-config-file`).
//!
//! Every TokenReview runs through the configured validators in order, each a
//! plugin in a fresh sandboxed instance; answers are cached briefly, the
//! configuration and TLS files are reloaded when they change, and the server
//! drains gracefully on SIGTERM.

pub mod cache;
pub mod config;
pub mod connections;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod review;
pub mod server;
pub mod tls;
pub mod validators;

pub use self::server::{ServeError, ServeOptions, Server};
