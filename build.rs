//! Link settings for the `credbroker` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // kubectl starts `credbroker get` before every command, so process start-up
    // is user-visible latency. A position-independent executable of this size
    // spends about half of a cached `credbroker get` in the dynamic loader,
    // applying ~37,000 relative relocations (and faulting in the pages they
    // touch). A fixed-address executable needs none. Go-built peers
    // (kubelogin, aws-iam-authenticator, gke-gcloud-auth-plugin) are
    // non-PIE executables by default too; heap, stacks and JIT code stay
    // randomised. (.cargo/config.toml also links statically, which implies
    // this; the flag keeps a dynamic build, `RUSTFLAGS= cargo build`, non-PIE
    // too.) Build with `RUSTFLAGS= cargo build --features pie` for a PIE.
    let target = std::env::var("TARGET").unwrap_or_default();
    let pie = std::env::var_os("CARGO_FEATURE_PIE").is_some();
    if target == "x86_64-unknown-linux-gnu" && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
