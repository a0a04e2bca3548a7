//! The deployment: the Kubernetes manifests build, and the configuration they
//! mount serves TokenReviews with the files `credbroker certs init` writes.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::harness::pki::{Issued, TestCa};
use crate::harness::webhook::{Webhook, review_body};
use crate::harness::{UserEnv, kubectl, root};

/// `kubectl kustomize deploy/kubernetes`, one JSON value per document.
fn kustomize() -> Vec<Value> {
    let output = std::process::Command::new(kubectl::binary("1.33"))
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes"))
        .output()
        .expect("running kubectl kustomize");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_yaml_ng::Deserializer::from_str(&stdout).map(|doc| Value::deserialize(doc).expect("YAML")).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {docs:#?}");
    found[0]
}

#[test]
fn the_manifests_run_the_webhook_replicated_unprivileged_and_probed() {
    let docs = kustomize();
    let deployment = of_kind(&docs, "Deployment");
    let config_map = of_kind(&docs, "ConfigMap");
    let service = of_kind(&docs, "Service");
    let budget = of_kind(&docs, "PodDisruptionBudget");
    of_kind(&docs, "Namespace");
    for doc in &docs {
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "credbroker", "{doc}");
        }
    }

    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2, "stateless: at least two replicas");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports: Vec<&str> = container["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "health");
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert!(ports.contains(&port["targetPort"].as_str().unwrap()), "service port {port} targets a container port");
    }
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
    assert!(budget["spec"]["minAvailable"].as_u64().unwrap() >= 1);

    // The ConfigMap (its name carries a content hash, so a change rolls the
    // pods) holds deploy/kubernetes/serve.toml byte for byte, mounted where
    // the container's arguments look for it.
    let name = config_map["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("credbroker-config-"), "{name}");
    let volumes = pod["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["configMap"]["name"] == name).expect("the ConfigMap is mounted");
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount_of = |volume: &Value| -> String {
        let mount = mounts.iter().find(|m| m["name"] == volume["name"]).expect("volume mounted");
        mount["mountPath"].as_str().unwrap().to_string()
    };
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["serve", "--config", &format!("{}/serve.toml", mount_of(config_volume))]);
    let serve_toml = std::fs::read_to_string(root().join("deploy/kubernetes/serve.toml")).unwrap();
    assert_eq!(config_map["data"]["serve.toml"], serve_toml.as_str());

    // Every file the configuration names lies in a mounted volume.
    let mount_paths: Vec<String> = volumes.iter().map(mount_of).collect();
    let config: toml::Value = toml::from_str(&serve_toml).unwrap();
    let mut files = Vec::new();
    collect_paths(&config, &mut files);
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        assert!(
            mount_paths.iter().any(|m| file.starts_with(&format!("{m}/"))),
            "{file} is in no volume of {mount_paths:?}"
        );
    }
}

/// Every string in `value` that is an absolute path (or a `file:` setting).
fn collect_paths(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => {
            let s = s.strip_prefix("file:").unwrap_or(s);
            if s.starts_with('/') {
                out.push(s.to_string());
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_paths(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| collect_paths(v, out)),
        _ => {}
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write(path: PathBuf, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Lay out what the Deployment mounts under `etc` (instead of /etc/credbroker):
/// the ConfigMap's serve.toml and the Secrets, from `credbroker certs init`.
fn mount_like_the_deployment(env: &UserEnv, etc: &Path, https: u16, health: u16) -> PathBuf {
    let pki = env.home().join("pki");
    let run = env.run(&[
        "certs",
        "init",
        "--dir",
        pki.to_str().unwrap(),
        "--server-name",
        "credbroker.credbroker.svc",
        "--server-name",
        "127.0.0.1",
        "--url",
        &format!("https://127.0.0.1:{https}/authenticate"),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("--authentication-token-webhook-version=v1"), "{}", run.stderr);
    let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
    write(etc.join("tls/tls.crt"), &read("server.crt"));
    write(etc.join("tls/tls.key"), &read("server.key"));
    write(etc.join("tls/client-ca.crt"), &read("ca.crt"));
    write(etc.join("keys/signing.pem"), &read("signing.pem"));
    write(etc.join("tokens/tokens.csv"), b"tok-deploy-ada,ada,uid-ada,\"ops,dev\"\n");
    write(etc.join("ldap/bind-password"), b"not-used-until-a-login\n");
    write(etc.join("ldap/ca.crt"), &read("ca.crt"));
    let serve_toml = std::fs::read_to_string(root().join("deploy/kubernetes/serve.toml")).unwrap();
    let serve_toml = serve_toml
        .replace("/etc/credbroker/", &format!("{}/", etc.display()))
        .replace("0.0.0.0:8443", &format!("127.0.0.1:{https}"))
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{health}"));
    let config = etc.join("config/serve.toml");
    write(config.clone(), serve_toml.as_bytes());
    config
}

#[test]
fn the_mounted_configuration_checks_and_serves_with_the_certs_init_pki() {
    let env = UserEnv::new();
    let etc = env.home().join("etc-credbroker");
    let (https, health) = (free_port(), free_port());
    let config = mount_like_the_deployment(&env, &etc, https, health);

    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(check.stdout.contains(": OK"), "{}", check.stdout);
    assert!(check.stdout.contains("tokens: validates tokens"), "{}", check.stdout);
    assert!(check.stdout.contains("corp-ldap: logs users in"), "{}", check.stdout);

    // A Secret that was not created: the check names the validator and the file.
    let password = etc.join("ldap/bind-password");
    std::fs::rename(&password, etc.join("ldap/elsewhere")).unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(check.code, Some(1));
    assert!(check.stderr.contains("validator `corp-ldap`"), "{}", check.stderr);
    assert!(check.stderr.contains("bind-password"), "{}", check.stderr);
    std::fs::rename(etc.join("ldap/elsewhere"), &password).unwrap();

    // kube-apiserver's side: the webhook kubeconfig certs init wrote.
    let kubeconfig: Value =
        serde_yaml_ng::from_slice(&std::fs::read(env.home().join("pki/webhook-kubeconfig.yaml")).unwrap()).unwrap();
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    let user = &kubeconfig["users"][0]["user"];
    let data = |v: &Value| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
    let server_ca = TestCa::from_cert_pem(&data(&cluster["certificate-authority-data"]));
    let apiserver =
        Issued { cert_pem: data(&user["client-certificate-data"]), key_pem: data(&user["client-key-data"]) };
    let url = cluster["server"].as_str().unwrap().to_string();
    let webhook = Webhook::spawn(&env, config, etc.clone(), server_ca, apiserver);
    assert_eq!(format!("{}/authenticate", webhook.url), url);

    let (status, review) = webhook.review("v1", "tok-deploy-ada", &[]);
    assert_eq!(status, 200, "{review}");
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["username"], "ada");
    assert_eq!(review["status"]["user"]["groups"], serde_json::json!(["ops", "dev"]));

    // Probes and Prometheus use the plain-HTTP port, which carries no tokens.
    let http = crate::harness::webhook::client(&webhook.server_ca.cert_pem, None);
    let probe = |path: &str| http.get(format!("http://127.0.0.1:{health}{path}")).send().unwrap();
    assert_eq!(probe("/readyz").status(), 200);
    assert_eq!(probe("/healthz").text().unwrap(), "ok\n");
    assert!(probe("/metrics").text().unwrap().contains("credbroker_"));
    let review_over_http = http
        .post(format!("http://127.0.0.1:{health}/authenticate"))
        .body(review_body("v1", "tok-deploy-ada", &[]))
        .send()
        .unwrap();
    assert_eq!(review_over_http.status(), 404);
    assert_eq!(webhook.terminate(), Some(0));
}

#[test]
fn the_container_image_runs_unprivileged() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let runtime_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(runtime_stage.contains("USER nonroot"), "the runtime stage drops root");
    assert!(runtime_stage.contains("distroless"), "no shell or package manager in the runtime image");
    assert!(dockerfile.contains("rustup target add wasm32-wasip2"), "the build stage can bundle the plugins");
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|l| l.trim_end_matches('/') == "target"), "the build context skips target/");
}
