//! Plugins distributed over OCI: pushed to a real registry (docker-registry
//! with TLS and htpasswd auth), signed the way cosign signs, named by a
//! profile as `oci://…`, pulled, verified and run by `credbroker get` under
//! the real kubectl, then run from the store with the registry gone; and
//! each way a registry, the store or the policy can refuse, refused with its
//! cause and nothing on stdout.
//!
//! The plugins are first-party components the build already made (the
//! bundled `static` provider and the `jwt` validator): nothing is compiled
//! for these tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::harness::apiserver::ApiServer;
use crate::harness::registry::{self, Registry};
use crate::harness::{UserEnv, audit, kubectl};

/// A first-party plugin's component, as the host's build script built it.
fn first_party(name: &str) -> PathBuf {
    let path = crate::harness::plugin_target_dir()
        .join("wasm32-wasip2/plugin")
        .join(format!("credbroker_plugin_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} is built by host/build.rs", path.display());
    path
}

/// The registry's password is a secret no log may show, nor its basic-auth form.
fn guard_credentials() {
    audit::secret(registry::PASSWORD);
    audit::secret(base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        registry::USER,
        registry::PASSWORD
    )));
}

/// `credbroker plugin push WASM REFERENCE` as `env`; the pinned reference it
/// prints (stdout) and the component's digest it reports.
fn push(env: &UserEnv, wasm: &Path, reference: &str) -> (String, String) {
    let run = env.run(&["plugin", "push", wasm.to_str().expect("utf-8"), reference]);
    assert_eq!(run.code, Some(0), "push: {}", run.stderr);
    let pinned = run.stdout.trim().to_string();
    assert!(pinned.starts_with(&format!("{}@sha256:", reference.rsplit_once(':').expect("tag").0)), "{pinned}");
    let component = run.stderr.split("component sha256 ").nth(1).and_then(|rest| rest.get(..64)).expect("digest");
    (pinned, format!("sha256:{component}"))
}

/// An ECDSA P-256 key pair (cosign's default kind) in `env`'s home: `NAME.pem`, `NAME.pub`.
fn keygen(env: &UserEnv, name: &str) -> (PathBuf, PathBuf) {
    let out = env.home().join(name);
    let run = env.run(&["plugin", "keygen", "--kind", "ecdsa-p256", "--out", out.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "keygen: {}", run.stderr);
    (out.with_extension("pem"), out.with_extension("pub"))
}

fn sign(env: &UserEnv, reference: &str, key: &Path) {
    let run = env.run(&["plugin", "sign", reference, "--key", key.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "sign: {}", run.stderr);
    assert!(run.stderr.contains(".sig"), "{}", run.stderr);
}

/// A profile `NAME` running the static provider from `plugin`, handing out `abc`.
fn profile(name: &str, plugin: &str) -> String {
    format!("[profiles.{name}]\nplugin = {plugin:?}\n[profiles.{name}.settings]\ntoken = \"abc\"\n")
}

fn store_dir(env: &UserEnv) -> PathBuf {
    env.home().join(".local/share/credbroker/oci")
}

fn stored_refs(env: &UserEnv) -> usize {
    std::fs::read_dir(store_dir(env).join("refs")).map(|d| d.count()).unwrap_or(0)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_signed_plugin_from_a_registry_runs_under_kubectl_and_then_without_the_registry() {
    guard_credentials();
    let mut registry = Registry::start_tls();
    let env = UserEnv::new();
    registry.login(&env, registry::PASSWORD);
    let (private, public) = keygen(&env, "signer");
    let tag = registry.reference("credbroker/static:1");
    env.write_config(&format!(
        "{}{}",
        registry.policy(&format!("require-signatures = true\ntrusted-keys = [{:?}]", public.display().to_string())),
        profile("corp", &tag)
    ));
    let (pinned, _) = push(&env, &first_party("static"), &tag);

    // Not signed yet: refused, and nothing lands in the store.
    let run = env.run(&["get", "--provider", "corp"]);
    let error = run.error();
    assert!(error.contains("is refused: it is not signed (no signature under the tag `sha256-"), "{error}");
    assert_eq!(stored_refs(&env), 0);

    sign(&env, &tag, &private);
    let server = ApiServer::with_token("abc");
    let kubeconfig = kubectl::kubeconfig(&env, &server, &kubectl::Exec::v1(&["get", "--provider", "corp"]));
    let run = kubectl::run(&env, "1.33", &kubeconfig, &["get", "--raw", "/version"]);
    assert_eq!(run.code, Some(0), "kubectl: {}", run.stderr);
    assert_eq!(server.tokens_seen(), ["abc"]);

    // What is in the store verifies and inspects like a file.
    let run = env.run(&["plugin", "verify", &tag]);
    assert_eq!(run.code, Some(0), "verify: {}", run.stderr);
    assert!(run.stdout.contains("signature: valid, by trusted key"), "{}", run.stdout);
    let run = env.run(&["plugin", "inspect", &tag]);
    assert_eq!(run.code, Some(0), "inspect: {}", run.stderr);
    assert!(run.stdout.contains(&format!("source:    {tag}")), "{}", run.stdout);
    assert!(run.stdout.contains("worlds:    provider"), "{}", run.stdout);
    let run = env.run(&["plugin", "list"]);
    let line = run.stdout.lines().find(|l| l.starts_with(&tag)).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("provider") && line.ends_with(&tag), "{line}");

    // The store is private: 0700 directories, 0600 files, the component by its digest.
    let store = store_dir(&env);
    assert_eq!(mode(&store), 0o700);
    let blobs: Vec<PathBuf> =
        std::fs::read_dir(store.join("blobs/sha256")).expect("blobs").map(|e| e.expect("entry").path()).collect();
    assert_eq!(blobs.len(), 1);
    assert_eq!(mode(&blobs[0]), 0o600);
    assert_eq!(std::fs::read(&blobs[0]).expect("blob"), std::fs::read(first_party("static")).expect("wasm"));
    assert_eq!(stored_refs(&env), 1);

    // The registry gone: the stored copy runs (no cache, so the plugin runs),
    // and an update is a warning (not a failure) that keeps it.
    registry.stop();
    assert_eq!(env.run(&["get", "--provider", "corp", "--no-cache"]).token(), "abc");
    let run = env.run(&["plugin", "update"]);
    assert_eq!(run.code, Some(0), "an unreachable registry is a warning: {}", run.stderr);
    assert!(
        run.stderr.contains(&format!("warning: {tag}: cannot reach the registry {}", registry.host)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("the stored copy stays in use"), "{}", run.stderr);
    assert_eq!(env.run(&["get", "--provider", "corp", "--no-cache"]).token(), "abc");

    // The tag moves (to a validator, which is no provider): `plugin update`
    // picks it up; a profile pinned to the old digest keeps it.
    registry.launch();
    env.write_config(&format!(
        "{}{}{}",
        registry.policy(&format!("require-signatures = true\ntrusted-keys = [{:?}]", public.display().to_string())),
        profile("corp", &tag),
        profile("pinned", &pinned)
    ));
    assert_eq!(env.run(&["get", "--provider", "pinned", "--no-cache"]).token(), "abc");
    let (moved, _) = push(&env, &first_party("jwt"), &tag);
    sign(&env, &tag, &private);
    assert_eq!(env.run(&["get", "--provider", "corp", "--no-cache"]).token(), "abc", "no update, no change");
    let run = env.run(&["plugin", "update", &tag]);
    assert_eq!(run.code, Some(0), "update: {}", run.stderr);
    let new_digest = moved.split('@').nth(1).expect("digest");
    assert!(run.stderr.contains(&format!("-> {new_digest}")), "{}", run.stderr);
    let run = env.run(&["get", "--provider", "corp", "--no-cache"]);
    let error = run.error();
    assert!(error.contains(&format!("plugin `{tag}`: it does not implement the `provider` world")), "{error}");
    assert!(error.contains("exports credbroker:plugin/validator-setup"), "{error}");
    assert_eq!(env.run(&["get", "--provider", "pinned", "--no-cache"]).token(), "abc");
    let run = env.run(&["plugin", "update", &pinned]);
    assert_eq!(run.code, Some(0), "update: {}", run.stderr);
    assert!(run.stderr.contains("unchanged"), "{}", run.stderr);
}

#[test]
fn what_a_registry_the_store_or_the_policy_refuses_is_refused_naming_the_cause() {
    guard_credentials();
    let registry = Registry::start_tls();
    let publisher = UserEnv::new();
    registry.login(&publisher, registry::PASSWORD);
    publisher.write_config(&registry.policy(""));
    let (_, trusted) = keygen(&publisher, "trusted");
    let (other_key, _) = keygen(&publisher, "other");
    let tag = registry.reference("credbroker/static:1");
    push(&publisher, &first_party("static"), &tag);
    sign(&publisher, &tag, &other_key);
    let signed = format!("require-signatures = true\ntrusted-keys = [{:?}]", trusted.display().to_string());

    // Signed, but by a key the policy does not trust.
    let user = UserEnv::new();
    registry.login(&user, registry::PASSWORD);
    user.write_config(&format!("{}{}", registry.policy(&signed), profile("corp", &tag)));
    let run = user.run(&["get", "--provider", "corp"]);
    let error = run.error();
    assert!(error.contains("none of its 1 signature(s) is by a trusted key"), "{error}");
    assert_eq!(stored_refs(&user), 0);

    // No credentials, and wrong ones: the registry's 401, with what to do.
    let anonymous = UserEnv::new();
    anonymous.write_config(&format!("{}{}", registry.policy(""), profile("corp", &tag)));
    let run = anonymous.run(&["get", "--provider", "corp"]);
    let error = run.error();
    assert!(
        error.contains(&format!("the registry {} refused access to credbroker/static (HTTP 401", registry.host)),
        "{error}"
    );
    assert!(error.contains("no credentials for it in docker's config.json"), "{error}");
    registry.login(&anonymous, "wrong-password");
    let run = anonymous.run(&["get", "--provider", "corp"]);
    assert!(run.error().contains("were not accepted (docker login"), "{}", run.stderr);

    // A pin the artifact does not match.
    user.write_config(&format!(
        "{}[profiles.corp]\nplugin = {tag:?}\nsha256 = \"{}\"\n",
        registry.policy(""),
        "0".repeat(64)
    ));
    let run = user.run(&["get", "--provider", "corp"]);
    assert!(run.error().contains(&format!("but the configuration pins {}", "0".repeat(64))), "{}", run.stderr);

    // The stored component altered after the pull: refused when it is read to compile.
    user.write_config(&format!("{}{}", registry.policy(""), profile("corp", &tag)));
    assert_eq!(user.run(&["get", "--provider", "corp", "--no-cache"]).token(), "abc");
    let blob = std::fs::read_dir(store_dir(&user).join("blobs/sha256")).expect("blobs").next().expect("a blob");
    let blob = blob.expect("entry").path();
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    std::fs::remove_dir_all(user.cache_dir().join("artifacts")).expect("artifact cache");
    let run = user.run(&["get", "--provider", "corp", "--no-cache"]);
    assert!(run.error().contains("the store was tampered with; refusing to run it"), "{}", run.stderr);

    // A blob altered in the registry: the pull refuses it, and stores nothing.
    let jwt = registry.reference("credbroker/jwt:1");
    let (pinned, digest) = push(&publisher, &first_party("jwt"), &jwt);
    let wasm = std::fs::read(first_party("jwt")).expect("jwt");
    let mut altered = wasm.clone();
    altered[100] ^= 0xff;
    std::fs::write(registry.blob_file(&digest), altered).expect("alter the registry's blob");
    let fresh = UserEnv::new();
    registry.login(&fresh, registry::PASSWORD);
    fresh.write_config(&registry.policy(""));
    let run = fresh.run(&["plugin", "pull", &pinned]);
    let error = run.error();
    assert!(error.contains("the component does not match its digest"), "{error}");
    assert!(error.contains(&format!("expected {digest}")), "{error}");
    assert_eq!(stored_refs(&fresh), 0);

    // A manifest altered in the registry: its tag no longer leads to what was pushed.
    let other = registry.reference("credbroker/manifest:1");
    let (pinned, _) = push(&publisher, &first_party("static"), &other);
    let manifest = registry.blob_file(pinned.split('@').nth(1).expect("digest"));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replace("\"schemaVersion\":2", "\"schemaVersion\": 2")).expect("alter");
    let run = fresh.run(&["plugin", "pull", &other]);
    let error = run.error();
    assert!(error.contains("the manifest does not match its digest"), "{error}");
    assert_eq!(stored_refs(&fresh), 0);

    // A plain-HTTP registry is not spoken to as one unless it is a loopback
    // registry marked insecure; a remote one cannot be marked so at all.
    let plain = Registry::start_plain();
    let plain_tag = plain.reference("credbroker/static:1");
    publisher.write_config(&plain.policy(""));
    push(&publisher, &first_party("static"), &plain_tag);
    fresh.write_config(&profile("corp", &plain_tag));
    let run = fresh.run(&["get", "--provider", "corp"]);
    let error = run.error();
    assert!(
        error.contains(&format!("the registry {} does not speak TLS (it answered in plain HTTP)", plain.host)),
        "{error}"
    );
    fresh.write_config(&format!(
        "[plugins.registries.\"registry.example\"]\ninsecure = true\n{}",
        profile("corp", "oci://registry.example/credbroker/static:1")
    ));
    let run = fresh.run(&["get", "--provider", "corp"]);
    let error = run.error();
    assert!(error.contains("insecure (plain HTTP) is allowed only for a loopback registry"), "{error}");
}

/// `wasm` with a custom section naming `build` appended: the same plugin,
/// other bytes (a new digest).
fn rebuilt(wasm: &[u8], build: &str) -> Vec<u8> {
    let name = b"credbroker-test-build";
    let payload = build.as_bytes();
    let mut out = wasm.to_vec();
    out.push(0); // a custom section
    out.push(u8::try_from(1 + name.len() + payload.len()).expect("short section"));
    out.push(u8::try_from(name.len()).expect("short name"));
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[test]
fn serve_picks_up_a_new_signed_digest_of_its_validators_tag_on_update_and_at_its_interval_without_dropping_a_review() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use crate::harness::webhook::Webhook;

    guard_credentials();
    let registry = Registry::start_tls();
    let env = UserEnv::new();
    registry.login(&env, registry::PASSWORD);
    env.write_config(&registry.policy(""));
    let (private, public) = keygen(&env, "signer");
    let tag = registry.reference("credbroker/tokens:1");
    let (_, first) = push(&env, &first_party("token-file"), &tag);
    sign(&env, &tag, &private);
    let csv = env.home().join("tokens.csv");
    std::fs::write(&csv, "tok-alice,alice,1001,\"devs,ops\"\n").expect("tokens");
    let serve_toml = |interval: &str| {
        format!(
            "[plugins]\n{interval}\n{}[[validators]]\nname = \"tokens\"\nplugin = {tag:?}\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n",
            registry.policy(&format!("require-signatures = true\ntrusted-keys = [{:?}]", public.display().to_string())),
            csv = csv.display().to_string()
        )
    };
    let webhook = Arc::new(Webhook::start(&env, &serve_toml("")));
    let loaded = |digest: &str| format!("loaded {tag} (sha256 {})", digest.trim_start_matches("sha256:"));
    assert!(webhook.log().contains(&loaded(&first)), "{}", webhook.log());

    // Reviews run all along; none may fail.
    let running = Arc::new(AtomicBool::new(true));
    let (reviews, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reviewer = {
        let (webhook, running, reviews, failures) =
            (Arc::clone(&webhook), Arc::clone(&running), Arc::clone(&reviews), Arc::clone(&failures));
        std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                let (status, answer) = webhook.review("v1", "tok-alice", &[]);
                if status != 200 || answer["status"]["user"]["username"] != "alice" {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                reviews.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let build = |n: &str| {
        let path = env.home().join(format!("token-file-{n}.wasm"));
        std::fs::write(&path, rebuilt(&std::fs::read(first_party("token-file")).expect("wasm"), n)).expect("build");
        path
    };

    // Without an interval the tag moves for the server only on `plugin update`
    // (with the server's policy), which it then loads.
    let (_, second) = push(&env, &build("2"), &tag);
    sign(&env, &tag, &private);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!webhook.log().contains(&loaded(&second)), "no update, no change: {}", webhook.log());
    let run = env.run(&["plugin", "update", &tag, "--serve-config", webhook.config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "update: {}", run.stderr);
    webhook.wait_for("the updated digest loaded", || webhook.log().contains(&loaded(&second)));

    // With one, a new build on the tag, not yet signed: refused, the old one keeps serving.
    webhook.rewrite(&serve_toml("update-interval-seconds = 1"));
    webhook.wait_for("the interval configured", || webhook.log().matches("reloaded the configuration").count() >= 2);
    let (_, third) = push(&env, &build("3"), &tag);
    assert_ne!(second, third);
    webhook.wait_for("the unsigned digest refused", || {
        webhook.log().contains(&format!("not updating {tag}, the stored copy keeps serving"))
    });
    assert!(webhook.log().contains("is refused: it is not signed"), "{}", webhook.log());
    assert!(!webhook.log().contains(&loaded(&third)), "{}", webhook.log());

    // Signed: pulled at the next interval and loaded beside the serving set.
    sign(&env, &tag, &private);
    webhook.wait_for("the signed digest loaded", || webhook.log().contains(&loaded(&third)));
    webhook.wait_for("the new set swapped in", || {
        webhook.log().split(&loaded(&third)).nth(1).is_some_and(|after| after.contains("reloaded the configuration"))
    });
    let before = reviews.load(Ordering::SeqCst);
    webhook.wait_for("reviews on the new set", || reviews.load(Ordering::SeqCst) > before + 3);
    running.store(false, Ordering::SeqCst);
    reviewer.join().expect("reviewer");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "of {} reviews", reviews.load(Ordering::SeqCst));
}
