//! `credbroker kubeconfig`: the kubeconfig entry it writes is one the real
//! kubectl uses, and nothing else in the file changes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::harness::apiserver::ApiServer;
use crate::harness::{UserEnv, kubectl};

/// A kubeconfig as a user already has one: another user with a static token,
/// two clusters, a current context and a comment.
fn existing_kubeconfig(env: &UserEnv, server: &ApiServer) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(&server.ca_pem);
    let text = format!(
        "# my clusters\napiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n\
         - name: standin\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n\
         - name: elsewhere\n  cluster:\n    server: https://elsewhere.example:6443\n\
         users:\n- name: other\n  user:\n    token: keep-me\n\
         contexts:\n- name: other\n  context:\n    cluster: elsewhere\n    user: other\n\
         current-context: other\n",
        server.url
    );
    let path = env.home().join(".kube/config");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn view(env: &UserEnv, path: &Path) -> Value {
    let run = kubectl::run(env, "1.33", &path.to_path_buf(), &["config", "view", "--raw", "-o", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn named<'a>(config: &'a Value, list: &str, name: &str) -> &'a Value {
    config[list].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or(&Value::Null)
}

#[test]
fn kubeconfig_adds_a_user_and_context_kubectl_uses_and_keeps_everything_else() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("tok-setup");
    let path = existing_kubeconfig(&env, &server);
    let before = std::fs::read(&path).unwrap();
    let path_str = path.to_str().unwrap();
    let args = [
        "kubeconfig",
        "--kubeconfig",
        path_str,
        "--provider",
        "static",
        "--set",
        "token=env:SETUP_TOKEN",
        "--context",
        "dev",
        "--cluster",
        "standin",
        "--use-context",
    ];

    // A dry run prints the result and touches nothing; --output writes a copy.
    let dry = env.run(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(dry.stdout.contains("name: credbroker-static"), "{}", dry.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let copy = env.home().join("copy.yaml");
    let copied = env.run(&[&args[..], &["--output", copy.to_str().unwrap()]].concat());
    assert_eq!(copied.code, Some(0), "{}", copied.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(named(&view(&env, &copy), "users", "credbroker-static")["name"], "credbroker-static");

    let run = env.run(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("user \"credbroker-static\": added (runs: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("context \"dev\": added (cluster \"standin\", user \"credbroker-static\")"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("current-context: \"other\" -> \"dev\""), "{}", run.stderr);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the mode is kept");

    let config = view(&env, &path);
    assert_eq!(config["current-context"], "dev");
    assert_eq!(named(&config, "users", "other")["user"]["token"], "keep-me");
    assert_eq!(named(&config, "contexts", "other")["context"]["cluster"], "elsewhere");
    assert_eq!(named(&config, "clusters", "elsewhere")["cluster"]["server"], "https://elsewhere.example:6443");
    let exec = &named(&config, "users", "credbroker-static")["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["interactiveMode"], "IfAvailable");
    assert_eq!(exec["provideClusterInfo"], true);
    assert_eq!(exec["args"], serde_json::json!(["get", "--provider", "static", "--set", "token=env:SETUP_TOKEN"]));

    // kubectl (both versions) runs the entry and reaches the cluster with it.
    for version in kubectl::VERSIONS {
        let out = kubectl::command(&env, version, &path, &["get", "--raw", "/version"])
            .env("SETUP_TOKEN", "tok-setup")
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {version}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let seen = server.tokens_seen();
    assert!(!seen.is_empty() && seen.iter().all(|t| t == "tok-setup"), "{seen:?}");

    // Running it again changes nothing.
    let written = std::fs::read(&path).unwrap();
    let again = env.run(&args);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("already up to date"), "{}", again.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), written);

    // Re-pointing an existing user replaces its old credentials, and says so.
    let run = env.run(&["kubeconfig", "--kubeconfig", path_str, "--provider", "static", "--user", "other"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("user \"other\": updated"), "{}", run.stderr);
    assert!(run.stderr.contains("removed its other credentials: token"), "{}", run.stderr);
    assert_eq!(named(&view(&env, &path), "users", "other")["user"]["token"], Value::Null);
}

#[test]
fn kubeconfig_refuses_bad_input_without_touching_the_file() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("x");
    let path = existing_kubeconfig(&env, &server);
    let before = std::fs::read(&path).unwrap();
    let path_str = path.to_str().unwrap();

    let unknown = env.run(&["kubeconfig", "--kubeconfig", path_str, "--provider", "ldapp"]);
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("unknown provider `ldapp`"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("ldap"), "lists the choices: {}", unknown.stderr);

    let no_cluster = env.run(&["kubeconfig", "--kubeconfig", path_str, "--provider", "static", "--context", "new"]);
    assert_eq!(no_cluster.code, Some(1));
    assert!(no_cluster.stderr.contains("name its cluster with --cluster"), "{}", no_cluster.stderr);
    assert!(no_cluster.stderr.contains("standin, elsewhere"), "{}", no_cluster.stderr);

    let literal =
        env.run(&["kubeconfig", "--kubeconfig", path_str, "--provider", "static", "--set", "token=abc", "--dry-run"]);
    assert!(literal.stderr.contains("puts the value in the kubeconfig in clear"), "{}", literal.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    std::fs::write(&path, "users: [unclosed\n").unwrap();
    let broken = env.run(&["kubeconfig", "--kubeconfig", path_str, "--provider", "static"]);
    assert_eq!(broken.code, Some(1));
    assert!(broken.stderr.contains("is not a kubeconfig"), "{}", broken.stderr);
    assert!(broken.stderr.contains("nothing was changed"), "{}", broken.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "users: [unclosed\n");
}

#[test]
fn kubeconfig_follows_kubeconfig_to_the_file_holding_the_user() {
    let env = UserEnv::new();
    let first = env.home().join("a.yaml");
    let second = env.home().join("b.yaml");
    std::fs::write(&first, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
    std::fs::write(&second, "apiVersion: v1\nkind: Config\nusers:\n- name: credbroker-static\n  user: {}\n").unwrap();
    let joined = format!("{}:{}", first.display(), second.display());
    let out = env.credbroker(&["kubeconfig", "--provider", "static"]).env("KUBECONFIG", &joined).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "apiVersion: v1\nkind: Config\nusers: []\n");
    assert!(std::fs::read_to_string(&second).unwrap().contains("exec:"));
}

#[test]
fn doctor_says_what_is_wrong_and_what_to_do() {
    let env = UserEnv::new();
    let backend = ApiServer::with_token("x");
    let ca = env.home().join("backend-ca.pem");
    std::fs::write(&ca, &backend.ca_pem).unwrap();
    let profile = |with_ca: bool| {
        format!(
            "[profiles.corp]\nplugin = \"static\"\n[profiles.corp.settings]\ntoken = \"env:DOCTOR_TOKEN\"\n\
             [profiles.corp.grants]\nhttp = [{:?}]\n{}",
            backend.url,
            if with_ca { format!("ca-file = {:?}\n", ca.display().to_string()) } else { String::new() }
        )
    };
    env.write_config(&profile(false));
    std::fs::create_dir_all(env.cache_dir()).unwrap();
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = env.home().join(".kube/config");
    std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nusers:\n- name: dev\n  user:\n    exec:\n      command: credbroker\n      args: [get, --provider, crop]\n",
    )
    .unwrap();

    let sick = env.run(&["doctor"]);
    assert_eq!(sick.code, Some(1), "{}", sick.stdout);
    for expected in [
        "has mode 0755: other users can read it",
        &format!("fix: chmod 700 {}", env.cache_dir().display()),
        "environment variable `DOCTOR_TOKEN` is not set",
        "TLS with 127.0.0.1",
        "grant the CA that signed the server's certificate with `ca-file`",
        "user dev runs provider crop, which does not exist",
    ] {
        assert!(sick.stdout.contains(expected), "missing {expected:?} in:\n{}", sick.stdout);
    }

    env.write_config(&profile(true));
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nusers:\n- name: dev\n  user:\n    exec:\n      command: credbroker\n      args: [get, --provider, corp]\n",
    )
    .unwrap();
    let well = env.credbroker(&["doctor", "--run"]).env("DOCTOR_TOKEN", "t0k3n-value").output().unwrap();
    let stdout = String::from_utf8(well.stdout).unwrap();
    assert!(well.status.success(), "{stdout}");
    assert!(stdout.contains("TLS verified"), "{stdout}");
    assert!(stdout.contains("user dev runs provider corp"), "{stdout}");
    assert!(stdout.contains("got a token"), "{stdout}");
    assert!(!stdout.contains("t0k3n-value"), "the credential is never shown");
    assert!(stdout.contains("0 problem(s), 0 warning(s): all good"), "{stdout}");
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let env = UserEnv::new();
    let script = env.run(&["completions", "bash"]);
    assert_eq!(script.code, Some(0), "{}", script.stderr);
    let path = env.home().join("credbroker.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    let complete = |words: &str| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _credbroker credbroker \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(complete("credbroker pl").split_whitespace().any(|w| w == "plugin"));
    let flags = complete("credbroker get --pro");
    assert!(flags.split_whitespace().any(|w| w == "--provider"), "{flags}");
}
