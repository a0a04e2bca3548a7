//! End-to-end tests: the real `credbroker` binary, real plugins built from
//! source, real servers and the real kubectl.
//!
//! One test binary for everything (wasmtime links slowly); one module per area.

mod harness;

mod authoring;
mod aws;
mod boundary;
mod deploy;
mod docs;
mod exec;
mod hostile;
mod jwt;
mod kubectl;
mod ldap;
mod load;
mod logging;
mod oci;
mod oidc;
mod platforms;
mod plugins;
mod python;
mod runtime;
mod serve;
mod setup;
mod storage;
mod whoami;
mod windows;
