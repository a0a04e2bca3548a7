//! The real kubectl, driving `credbroker get` through a kubeconfig exec entry.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::{Run, UserEnv, credbroker_bin};

/// The kubectl versions the tests run: the oldest and newest on the machine.
pub const VERSIONS: &[&str] = &["1.27", "1.33"];

/// The kubectl binary of `version` (the `kubectl` on PATH is a dispatcher).
pub fn binary(version: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"))
}

/// How the kubeconfig's exec entry runs credbroker.
pub struct Exec<'a> {
    /// `client.authentication.k8s.io/v1` or `/v1beta1`.
    pub api_version: &'a str,
    /// Arguments after `credbroker`.
    pub args: Vec<String>,
    /// `provideClusterInfo`.
    pub provide_cluster_info: bool,
    /// The cluster's `client.authentication.k8s.io/exec` extension config.
    pub extension_config: Option<Value>,
    /// The program, when it is not the Linux `credbroker` (`args` follow it).
    pub program: Option<PathBuf>,
    /// The entry's `env`.
    pub env: Vec<(String, String)>,
}

impl<'a> Exec<'a> {
    /// A v1 entry (with `interactiveMode: IfAvailable`, which v1 requires).
    pub fn v1(args: &[&str]) -> Self {
        Self {
            api_version: "client.authentication.k8s.io/v1",
            args: args.iter().map(|a| a.to_string()).collect(),
            provide_cluster_info: true,
            extension_config: None,
            program: None,
            env: Vec::new(),
        }
    }

    /// A v1 entry that runs the Windows `credbroker.exe` under wine as `user`.
    pub fn windows(user: &UserEnv, args: &[&str]) -> Self {
        let wine = super::wine::wine();
        let mut exec = Self::v1(args);
        exec.program = Some(PathBuf::from(super::wine::WINE64));
        exec.args.insert(0, wine.exe.display().to_string());
        exec.env = wine.exec_env(user);
        exec
    }

    /// A v1beta1 entry.
    pub fn v1beta1(args: &[&str]) -> Self {
        Self { api_version: "client.authentication.k8s.io/v1beta1", ..Self::v1(args) }
    }
}

/// Write a kubeconfig for `server` whose user runs `exec`; returns its path.
pub fn kubeconfig(env: &UserEnv, server: &ApiServer, exec: &Exec<'_>) -> PathBuf {
    let mut exec_entry = json!({
        "apiVersion": exec.api_version,
        "command": exec.program.clone().unwrap_or_else(credbroker_bin),
        "args": exec.args,
        "provideClusterInfo": exec.provide_cluster_info,
    });
    if !exec.env.is_empty() {
        exec_entry["env"] = exec.env.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
    }
    if exec.api_version.ends_with("/v1") {
        exec_entry["interactiveMode"] = json!("IfAvailable");
    }
    let mut cluster = json!({
        "server": server.url,
        "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&server.ca_pem),
    });
    if let Some(config) = &exec.extension_config {
        cluster["extensions"] = json!([{
            "name": "client.authentication.k8s.io/exec",
            "extension": config,
        }]);
    }
    // JSON is YAML: no YAML library needed.
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": cluster}],
        "users": [{"name": "dev", "user": {"exec": exec_entry}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "dev"}}],
        "current-context": "standin",
    });
    let path = env.home().join(format!("kubeconfig-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("kubeconfig");
    path
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `kubectl.VERSION --kubeconfig KUBECONFIG ARGS` as the test user.
pub fn command(env: &UserEnv, version: &str, kubeconfig: &PathBuf, args: &[&str]) -> Command {
    // Start from the user's credbroker environment, so the plugin kubectl runs
    // sees the same isolated HOME and XDG directories.
    let mut command = env.credbroker(&[]);
    let program = binary(version);
    let mut kubectl = Command::new(program);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => kubectl.env(key, value),
            None => kubectl.env_remove(key),
        };
    }
    kubectl.env_remove("KUBECONFIG").arg("--kubeconfig").arg(kubeconfig).args(args);
    let _ = &mut command;
    kubectl
}

/// Run kubectl to completion.
pub fn run(env: &UserEnv, version: &str, kubeconfig: &PathBuf, args: &[&str]) -> Run {
    Run::of(command(env, version, kubeconfig, args).output().expect("running kubectl"))
}
