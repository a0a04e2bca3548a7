//! Plugin management: listing, inspecting, installing, signatures, and
//! plugins built against an older contract.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{UserEnv, probe, test_plugin};

/// A private copy of a test plugin (tests sign and alter their copies).
fn copy_of(env: &UserEnv, plugin: PathBuf, name: &str) -> PathBuf {
    let path = env.home().join(name);
    std::fs::copy(plugin, &path).unwrap();
    path
}

fn json(run: &crate::harness::Run) -> Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn list_and_inspect_show_worlds_digests_and_capabilities() {
    let env = UserEnv::new();
    let listed = json(&env.run(&["plugin", "list", "--json"]));
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["aws-iam", "jwt", "ldap", "oidc", "static", "token-file"]);
    let oidc = &listed[3];
    assert_eq!(oidc["source"], "bundled");
    assert_eq!(oidc["worlds"], serde_json::json!(["provider"]));
    for capability in ["http", "loopback", "prompt", "state"] {
        assert!(oidc["capabilities"].as_array().unwrap().contains(&capability.into()), "{oidc}");
    }

    // The import of contract 0.1.4, with the grant it needs.
    let aws = env.run(&["plugin", "inspect", "aws-iam"]);
    assert_eq!(aws.code, Some(0), "{}", aws.stderr);
    let line = aws.stdout.lines().find(|l| l.trim_start().starts_with("credential-process ")).unwrap_or_default();
    assert!(line.contains("grants.credential-process: exact command lines"), "{}", aws.stdout);
    // And of 0.1.5, which needs none.
    let tokens = env.run(&["plugin", "inspect", "token-file"]);
    let line = tokens.stdout.lines().find(|l| l.trim_start().starts_with("table ")).unwrap_or_default();
    assert!(line.contains("always granted"), "{}", tokens.stdout);

    // The digest a user pins is the sha256 of the file they have.
    let path = copy_of(&env, probe(), "probe.wasm");
    let inspected = json(&env.run(&["plugin", "inspect", "--json", path.to_str().unwrap()]));
    let digest = credbroker_host::plugin::sha256_hex(&std::fs::read(&path).unwrap());
    assert_eq!(inspected["sha256"], digest.as_str());
    assert_eq!(inspected["source"], "file");

    let text = env.run(&["plugin", "inspect", path.to_str().unwrap()]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for line in ["worlds:    provider", "credbroker:plugin@0.1.5 (this credbroker's version)", "  http ", "grants.http"]
    {
        assert!(text.stdout.contains(line), "missing {line:?}:\n{}", text.stdout);
    }

    let command = env.run(&["plugin", "inspect", test_plugin("command").to_str().unwrap()]);
    assert_eq!(command.code, Some(1));
    assert!(command.stdout.contains("none usable: it does not implement"), "{}", command.stdout);
}

#[test]
fn a_plugin_built_against_the_older_contract_still_runs() {
    let env = UserEnv::new();
    let old = test_plugin("contract-0-1-0");
    let inspected = env.run(&["plugin", "inspect", old.to_str().unwrap()]);
    assert!(
        inspected.stdout.contains("credbroker:plugin@0.1.0 (older than this credbroker's, compatible: it runs)"),
        "{}",
        inspected.stdout
    );
    let run = env.run(&["get", "--plugin", old.to_str().unwrap(), "--set", "token=tok", "-v"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.token(), "tok-from-0.1.0");
    assert!(run.stderr.contains("built against credbroker:plugin@0.1.0"), "{}", run.stderr);
}

#[test]
fn install_checks_the_file_and_the_name_then_serves_it_by_name() {
    let env = UserEnv::new();
    let path = copy_of(&env, test_plugin("contract-0-1-0"), "acme-sso.wasm");

    let wrong_pin = env.run(&["plugin", "install", path.to_str().unwrap(), "--sha256", &"ab".repeat(32)]);
    assert_eq!(wrong_pin.code, Some(1));
    assert!(wrong_pin.stderr.contains("refusing to run it"), "{}", wrong_pin.stderr);
    assert!(!env.plugin_dir().join("acme-sso.wasm").exists(), "nothing installed");

    let digest = credbroker_host::plugin::sha256_hex(&std::fs::read(&path).unwrap());
    let installed = env.run(&["plugin", "install", path.to_str().unwrap(), "--sha256", &digest]);
    assert_eq!(installed.code, Some(0), "{}", installed.stderr);
    assert!(installed.stderr.contains("installed `acme-sso` (provider)"), "{}", installed.stderr);
    let run = env.run(&["get", "--provider", "acme-sso", "--set", "token=t"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.token(), "t-from-0.1.0");
    let listed = json(&env.run(&["plugin", "list", "--json"]));
    let entry = listed.as_array().unwrap().iter().find(|p| p["name"] == "acme-sso").expect("listed");
    assert_eq!(entry["source"], "installed");
    assert_eq!(entry["sha256"], digest.as_str());

    // Another plugin under the same name needs --force; a non-component never lands.
    let other = copy_of(&env, probe(), "acme-sso-2.wasm");
    let clash = env.run(&["plugin", "install", other.to_str().unwrap(), "--name", "acme-sso"]);
    assert_eq!(clash.code, Some(1));
    assert!(clash.stderr.contains("pass --force"), "{}", clash.stderr);
    let command = copy_of(&env, test_plugin("command"), "cmd.wasm");
    let refused = env.run(&["plugin", "install", command.to_str().unwrap()]);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("does not implement"), "{}", refused.stderr);
    assert!(!env.plugin_dir().join("cmd.wasm").exists());
}

#[test]
fn required_signatures_admit_signed_plugins_only() {
    let env = UserEnv::new();
    let key = env.home().join("release-key");
    let run = env.run(&["plugin", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let private = key.with_extension("pem");
    let public = key.with_extension("pub");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);

    let plugin = copy_of(&env, test_plugin("contract-0-1-0"), "signed.wasm");
    env.write_config(&format!(
        "[plugins]\nrequire-signatures = true\ntrusted-keys = [{:?}]\n[profiles.corp]\nplugin = {:?}\n[profiles.corp.settings]\ntoken = \"t\"\n",
        public.display().to_string(),
        plugin.display().to_string()
    ));
    let unsigned = env.run(&["get", "--provider", "corp"]);
    assert_eq!(unsigned.code, Some(1));
    assert!(unsigned.stderr.contains("is not signed"), "{}", unsigned.stderr);
    assert!(unsigned.stdout.is_empty());

    let signed = env.run(&["plugin", "sign", plugin.to_str().unwrap(), "--key", private.to_str().unwrap()]);
    assert_eq!(signed.code, Some(0), "{}", signed.stderr);
    let run = env.run(&["get", "--provider", "corp"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let verified = env.run(&["plugin", "verify", plugin.to_str().unwrap()]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    assert!(verified.stdout.contains("signature: valid, by trusted key"), "{}", verified.stdout);

    // One changed byte: refused, also for a credential cached before.
    let mut bytes = std::fs::read(&plugin).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&plugin, bytes).unwrap();
    let tampered = env.run(&["get", "--provider", "corp"]);
    assert_eq!(tampered.code, Some(1));
    assert!(tampered.stderr.contains("the signature is for sha256"), "{}", tampered.stderr);
    let verify = env.run(&["plugin", "verify", plugin.to_str().unwrap()]);
    assert_eq!(verify.code, Some(1));

    // Signed by a key nobody trusts.
    let rogue = env.home().join("rogue");
    assert_eq!(env.run(&["plugin", "keygen", "--out", rogue.to_str().unwrap()]).code, Some(0));
    let resigned =
        env.run(&["plugin", "sign", plugin.to_str().unwrap(), "--key", rogue.with_extension("pem").to_str().unwrap()]);
    assert_eq!(resigned.code, Some(0));
    let untrusted = env.run(&["get", "--provider", "corp"]);
    assert!(untrusted.stderr.contains("which is not among the trusted keys"), "{}", untrusted.stderr);

    // Bundled plugins are part of the binary and need no signature.
    let bundled = env.run(&["get", "--provider", "static", "--set", "token=b"]);
    assert_eq!(bundled.code, Some(0), "{}", bundled.stderr);
}

#[test]
fn serve_refuses_an_unsigned_validator_when_signatures_are_required() {
    let env = UserEnv::new();
    let (_, public) = {
        let key = env.home().join("k");
        assert_eq!(env.run(&["plugin", "keygen", "--out", key.to_str().unwrap()]).code, Some(0));
        (key.with_extension("pem"), key.with_extension("pub"))
    };
    let plugin = copy_of(&env, probe(), "probe.wasm");
    let config = env.home().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ninsecure-plain-http = true\n[plugins]\nrequire-signatures = true\ntrusted-keys = [{:?}]\n\
             [[validators]]\nname = \"probe\"\nplugin = {:?}\n",
            public.display().to_string(),
            plugin.display().to_string()
        ),
    )
    .unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(check.code, Some(1));
    assert!(check.stderr.contains("validator `probe`: plugin"), "{}", check.stderr);
    assert!(check.stderr.contains("is not signed"), "{}", check.stderr);
}
