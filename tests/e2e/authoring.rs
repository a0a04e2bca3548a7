//! Writing a plugin outside this repository, as a stranger would: the SDK as
//! `cargo package` ships it, the projects `credbroker plugin new` writes,
//! built offline in temporary directories outside the workspace (each with
//! its own Cargo.lock, from crates already in the local cargo cache), their
//! own unit tests as written, and the commands their READMEs give run
//! through `credbroker get` and `credbroker serve`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl;
use crate::harness::pki::{Issued, TestCa};
use crate::harness::registry::Registry;
use crate::harness::webhook::Webhook;
use crate::harness::{Answer, HttpStub, Run, UserEnv, audit, root};

/// Where cargo builds for this suite go (`CARGO_TARGET_DIR` or `target/`).
fn build_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
}

/// The SDK's version, from its manifest.
fn sdk_version() -> String {
    let manifest: toml::Table = std::fs::read_to_string(root().join("guest-sdk/Cargo.toml")).unwrap().parse().unwrap();
    manifest["package"]["version"].as_str().expect("an explicit version").to_string()
}

/// Cargo as a plugin author runs it in `dir`: offline (only crates in the
/// local cache), with none of this test run's cargo settings, building into
/// a target directory these tests share (dependencies compile once).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    cargo_with(dir, args, &[])
}

/// [`cargo`] with environment variables `vars` set.
fn cargo_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(dir).args(args).arg("--offline");
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    command.env("CARGO_TARGET_DIR", build_root().join("outside-workspace")).env("CARGO_NET_OFFLINE", "true");
    command.envs(vars.iter().copied());
    command.output().expect("running cargo")
}

/// Assert that cargo succeeded; its stdout.
#[track_caller]
fn succeeded(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The SDK as `cargo package` ships it, unpacked once per test run.
fn packaged_sdk() -> &'static Path {
    static SDK: OnceLock<PathBuf> = OnceLock::new();
    SDK.get_or_init(|| {
        let out = build_root().join("sdk-package");
        // No verification build: the plugin builds below are that, for
        // wasm32-wasip2 and natively, against exactly what is unpacked.
        succeeded(
            "cargo package -p credbroker-sdk",
            cargo(
                &root(),
                &[
                    "package",
                    "-p",
                    "credbroker-sdk",
                    "--allow-dirty",
                    "--no-verify",
                    "--target-dir",
                    out.to_str().unwrap(),
                ],
            ),
        );
        let file = out.join(format!("package/credbroker-sdk-{}.crate", sdk_version()));
        let unpacked = out.join("unpacked");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).unwrap();
        let status = Command::new("tar").arg("xzf").arg(&file).arg("-C").arg(&unpacked).status().expect("tar");
        assert!(status.success(), "unpacking {}", file.display());
        unpacked.join(format!("credbroker-sdk-{}", sdk_version()))
    })
}

/// A temporary directory outside the workspace.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(!dir.path().starts_with(root()), "{} is inside the workspace", dir.path().display());
    dir
}

/// `credbroker plugin new NAME --dir DIR ARGS` (Rust projects build against
/// the packaged SDK); the project directory.
fn plugin_new(env: &UserEnv, parent: &Path, name: &str, args: &[&str]) -> PathBuf {
    let dir = parent.join(name);
    let mut all = vec!["plugin", "new", name, "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    if !args.contains(&"python") {
        all.extend_from_slice(&["--sdk", packaged_sdk().to_str().unwrap()]);
    }
    let run = env.run(&all);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    dir
}

/// `cargo test` and the wasm build, as the project's README says.
fn build_rust(dir: &Path) -> PathBuf {
    assert!(!dir.join("Cargo.lock").exists());
    let tests = succeeded("cargo test", cargo(dir, &["test"]));
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).expect("the project's own Cargo.lock");
    assert!(lock.contains(&format!("name = \"credbroker-sdk\"\nversion = \"{}\"", sdk_version())), "{lock}");
    succeeded("cargo build", cargo(dir, &["build", "--release", "--target", "wasm32-wasip2"]));
    let name = dir.file_name().unwrap().to_str().unwrap().replace('-', "_");
    let built = build_root().join(format!("outside-workspace/wasm32-wasip2/release/{name}.wasm"));
    // Where cargo puts it without the shared target directory, and where the
    // README's commands look.
    let wasm = dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"));
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(&built, &wasm).unwrap_or_else(|e| panic!("{} was not built: {e}", built.display()));
    wasm
}

/// The shell command in `readme` that starts with `start` (continuation
/// lines joined), with `replacements` made.
fn readme_command(readme: &str, start: &str, replacements: &[(&str, &str)]) -> String {
    let mut lines = readme.lines().skip_while(|line| !line.trim_start().starts_with(start));
    let mut command = String::new();
    for line in lines.by_ref() {
        command.push_str(line.trim_end().trim_end_matches('\\'));
        command.push(' ');
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    assert!(!command.is_empty(), "the README has no `{start}` command:\n{readme}");
    replacements.iter().fold(command, |command, (from, to)| command.replace(from, to))
}

/// The file a README writes with `cat > NAME <<'TOML'`.
fn readme_file(readme: &str, name: &str) -> String {
    let start = format!("cat > {name} <<'TOML'\n");
    let at = readme.find(&start).unwrap_or_else(|| panic!("the README writes no {name}:\n{readme}")) + start.len();
    readme[at..].split("\nTOML\n").next().unwrap().to_string() + "\n"
}

/// `sh -c command` in `dir` as `env`'s user, with `credbroker` on PATH.
fn sh(env: &UserEnv, dir: &Path, command: &str, vars: &[(&str, &str)]) -> Output {
    let template = env.credbroker(&[]);
    let mut sh = Command::new("sh");
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    let bin = crate::harness::credbroker_bin();
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    sh.env("PATH", path).envs(vars.iter().copied()).current_dir(dir).arg("-c").arg(command);
    sh.stdin(std::process::Stdio::null()).output().expect("running sh")
}

/// The webhook as the README runs it: `credbroker certs init`, its
/// serve.toml (on a free port, `replacements` made), `serve --check`, serve.
fn serve_as_the_readme_says(env: &UserEnv, dir: &Path, replacements: &[(&str, &str)]) -> Webhook {
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let init = readme_command(&readme, "credbroker certs init", &[]);
    assert!(sh(env, dir, &init, &[]).status.success(), "{init}");
    let mut config = readme_file(&readme, "serve.toml").replace("127.0.0.1:8443", "127.0.0.1:0");
    for (from, to) in replacements {
        config = config.replace(from, to);
    }
    std::fs::write(dir.join("serve.toml"), &config).unwrap();
    let check =
        Run::of(sh(env, dir, &readme_command(&readme, "credbroker serve --config serve.toml --check", &[]), &[]));
    assert_eq!(check.code, Some(0), "serve --check: {}\n{config}", check.stderr);
    let pki = |file: &str| std::fs::read_to_string(dir.join("pki").join(file)).unwrap();
    let apiserver = Issued { cert_pem: pki("apiserver-client.crt"), key_pem: pki("apiserver-client.key") };
    Webhook::spawn(env, dir.join("serve.toml"), dir.to_path_buf(), TestCa::from_cert_pem(&pki("ca.crt")), apiserver)
}

/// A stranger's view of the SDK: the package stands alone and carries the
/// contract, and `cargo doc` shows every type a plugin touches with each
/// field and case documented.
#[test]
fn the_packaged_sdk_stands_alone_and_documents_the_contract() {
    let sdk = packaged_sdk();
    let original = std::fs::read_to_string(sdk.join("Cargo.toml.orig")).unwrap();
    assert!(
        !original.contains(".workspace") && !original.contains("workspace = true"),
        "the packaged manifest inherits from the workspace:\n{original}"
    );
    let contract = std::fs::read_to_string(root().join("wit/credbroker.wit")).unwrap();
    assert_eq!(std::fs::read_to_string(sdk.join("wit/credbroker.wit")).unwrap(), contract, "the WIT it ships");
    assert!(!sdk.join("wit/credbroker.wit").is_symlink());

    // A plugin author's `cargo doc`, in a crate depending on the package.
    let env = UserEnv::new();
    let work = outside();
    let dir = plugin_new(&env, work.path(), "doc-reader", &[]);
    // Warnings (a broken link in the docs) fail it.
    succeeded(
        "cargo doc",
        cargo_with(&dir, &["doc", "--no-deps", "-p", "credbroker-sdk"], &[("RUSTDOCFLAGS", "-D warnings")]),
    );
    let html = build_root().join("outside-workspace/doc/credbroker_sdk");
    let mut pages = Vec::new();
    for page in [
        "struct.CredentialRequest.html",
        "struct.ClusterInfo.html",
        "struct.Credential.html",
        "struct.TokenReview.html",
        "struct.UserInfo.html",
        "struct.Authenticated.html",
        "enum.ReviewOutcome.html",
        "enum.LoginOutcome.html",
        "enum.Error.html",
        "enum.HostError.html",
        "http/struct.Response.html",
        "ldap/struct.Entry.html",
        "log/enum.Level.html",
        "crypto/enum.PublicKey.html",
    ] {
        let text = std::fs::read_to_string(html.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        pages.push((page, text));
    }
    let mut undocumented = Vec::new();
    for (page, text) in &pages {
        let mut members = 0;
        for (at, _) in text.match_indices("id=\"structfield.").chain(text.match_indices("id=\"variant.")) {
            members += 1;
            let rest = &text[at..];
            let name = rest.split('"').nth(1).unwrap_or_default();
            // rustdoc closes a member's heading, then opens its docblock.
            let heading_end = if name.starts_with("structfield.") { "</span>" } else { "</section>" };
            let after = rest.split_once(heading_end).map(|(_, after)| after).unwrap_or_default();
            if !after.starts_with("<div class=\"docblock\">") {
                undocumented.push(format!("{page} {name}"));
            }
        }
        assert!(members > 0, "{page} shows no fields or cases");
    }
    assert!(undocumented.is_empty(), "members without docs: {undocumented:?}");
}

/// `plugin new` → `cargo test` → a wasm build, outside the workspace → the
/// README's `credbroker get` gets a token from the service.
#[test]
fn a_new_rust_provider_builds_tests_and_runs_outside_the_workspace() {
    let env = UserEnv::new();
    let work = outside();
    let dir = plugin_new(&env, work.path(), "corp-tokens", &["--world", "provider"]);
    let wasm = build_rust(&dir);
    let service = HttpStub::start(vec![("/v1/token", Answer::ok(r#"{"token":"svc-tok-5e1f","expiresIn":600}"#))]);
    let key = "k3y-for-corp-tokens";
    audit::secret(key);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let origin = service.origin();
    let get = readme_command(&readme, "credbroker get", &[("https://tokens.corp.example", &origin)]);
    let run = Run::of(sh(&env, &dir, &get, &[("API_KEY", key)]));
    assert_eq!(run.token(), "svc-tok-5e1f", "{get}: {}", run.stderr);
    assert!(run.credential()["status"]["expirationTimestamp"].is_string());
    assert!(run.stderr.contains("got a token valid for 600 s"), "the plugin's log (-vv): {}", run.stderr);
    let request = &service.requests("/v1/token")[0];
    assert_eq!(request.header("authorization"), Some(format!("Bearer {key}").as_str()));
    assert_eq!(request.body, br#"{"cluster":null}"#);

    // The service refuses: a denial, nothing on stdout.
    let refusing = HttpStub::start(vec![(
        "/v1/token",
        Answer { status: 401, headers: Vec::new(), body: String::new(), hang_first: false },
    )]);
    let origin = refusing.origin();
    let get = readme_command(&readme, "credbroker get", &[("https://tokens.corp.example", &origin)]);
    let run = Run::of(sh(&env, &dir, &get, &[("API_KEY", key)]));
    assert!(run.error().contains("denied: the server answered HTTP 401 (Unauthorized)"), "{}", run.stderr);

    // Published: pushed to a registry, named by its tag in a profile, pulled
    // and run by `credbroker get` under the real kubectl (tests/e2e/oci.rs
    // has the rest of distribution).
    let registry = Registry::start_tls();
    registry.login(&env, crate::harness::registry::PASSWORD);
    env.write_config(&registry.policy(""));
    let tag = registry.reference("corp/corp-tokens:1.0");
    let push = env.run(&["plugin", "push", wasm.to_str().unwrap(), &tag]);
    assert_eq!(push.code, Some(0), "{}", push.stderr);
    let origin = service.origin();
    env.write_config(&format!(
        "{}[profiles.corp-tokens]\nplugin = {tag:?}\n[profiles.corp-tokens.settings]\nurl = {origin:?}\napi-key = \"env:API_KEY\"\n[profiles.corp-tokens.grants]\nhttp = [{origin:?}]\n",
        registry.policy("")
    ));
    let server = ApiServer::with_token("svc-tok-5e1f");
    let kubeconfig = kubectl::kubeconfig(&env, &server, &kubectl::Exec::v1(&["get", "--provider", "corp-tokens"]));
    let run = Run::of(
        kubectl::command(&env, "1.33", &kubeconfig, &["get", "--raw", "/version"])
            .env("API_KEY", key)
            .output()
            .expect("kubectl"),
    );
    assert_eq!(run.code, Some(0), "kubectl: {}", run.stderr);
    assert_eq!(server.tokens_seen(), ["svc-tok-5e1f"]);
}

/// `plugin new --world validator` → tests → build → the README's serve.toml
/// and `curl` TokenReview: the introspection endpoint's user comes back.
#[test]
fn a_new_rust_validator_answers_the_readmes_token_review() {
    let env = UserEnv::new();
    let work = outside();
    let dir = plugin_new(&env, work.path(), "corp-introspect", &["--world", "validator"]);
    build_rust(&dir);
    let endpoint = HttpStub::start(vec![(
        "/introspect",
        Answer::ok(r#"{"active":true,"username":"ada","groups":["devs","oncall"]}"#),
    )]);
    let secret = "introspection-s3cret";
    audit::secret(secret);
    std::fs::write(dir.join("client-secret"), secret).unwrap();
    let origin = endpoint.origin();
    let url = format!("{origin}/introspect");
    let secret_file = format!("file:{}", dir.join("client-secret").display());
    let webhook = serve_as_the_readme_says(
        &env,
        &dir,
        &[
            ("https://idp.corp.example/oauth2/introspect", &url),
            ("https://idp.corp.example", &origin),
            ("env:INTROSPECTION_SECRET", &secret_file),
        ],
    );
    let token = "opaque-access-token-7c2";
    audit::secret(token);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let curl = readme_command(&readme, "curl", &[("https://127.0.0.1:8443", &webhook.url), ("THE-TOKEN", token)]);
    let output = sh(&env, &dir, &curl, &[]);
    let answer: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{curl}: {e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(answer["status"]["authenticated"], true, "{answer}\n{}", webhook.log());
    assert_eq!(answer["status"]["user"]["username"], "ada");
    assert_eq!(answer["status"]["user"]["groups"], serde_json::json!(["devs", "oncall"]));
    let request = &endpoint.requests("/introspect")[0];
    assert_eq!(
        String::from_utf8_lossy(&request.body),
        format!("token={token}&token_type_hint=access_token"),
        "the token is sent in a form"
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("kubernetes-webhook:{secret}"));
    assert_eq!(request.header("authorization"), Some(format!("Basic {basic}").as_str()));
}

/// `plugin new --world login` → tests → build → the README's serve.toml and
/// login: the directory's user gets a token the same server then accepts.
#[test]
fn a_new_rust_login_backend_issues_tokens_the_webhook_accepts() {
    let env = UserEnv::new();
    let work = outside();
    let dir = plugin_new(&env, work.path(), "corp-directory", &["--world", "login"]);
    build_rust(&dir);
    let user = r#"{"username":"ada","groups":["devs"]}"#;
    let directory =
        HttpStub::start(vec![("/v1/authenticate", Answer::ok(user)), ("/v1/users?name=ada", Answer::ok(user))]);
    let key = "directory-k3y-51";
    audit::secret(key);
    std::fs::write(dir.join("api-key"), key).unwrap();
    let origin = directory.origin();
    let key_file = format!("file:{}", dir.join("api-key").display());
    let webhook = serve_as_the_readme_says(
        &env,
        &dir,
        &[("https://directory.corp.example", &origin), ("env:DIRECTORY_API_KEY", &key_file)],
    );
    let password = "ada-pa55-word";
    audit::secret(password);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let curl = readme_command(
        &readme,
        "curl",
        &[("https://127.0.0.1:8443", &webhook.url), ("\"...\"", &format!("{password:?}"))],
    );
    let output = sh(&env, &dir, &curl, &[]);
    let login: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{curl}: {e}: {}", String::from_utf8_lossy(&output.stderr)));
    let token = login["token"].as_str().unwrap_or_else(|| panic!("{login}\n{}", webhook.log())).to_string();
    audit::secret(&token);
    assert_eq!(login["user"]["username"], "ada", "{login}");
    let check = &directory.requests("/v1/authenticate")[0];
    assert_eq!(check.header("authorization"), Some(format!("Bearer {key}").as_str()));
    let body: Value = serde_json::from_slice(&check.body).unwrap();
    assert_eq!(body, serde_json::json!({ "username": "ada", "password": password }));

    let (status, review) = webhook.review("v1", &token, &[]);
    assert_eq!(status, 200);
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["groups"], serde_json::json!(["devs"]));
}

/// componentize-py from plugins-python's virtualenv (scripts/install-test-deps).
fn componentize_py() -> PathBuf {
    let path = root().join("plugins-python/.venv/bin/componentize-py");
    assert!(path.exists(), "componentize-py is not installed: run scripts/install-test-deps");
    path
}

/// A Python project: its unit tests as written (`python3 -m unittest`), then
/// its build script; the component.
fn build_python(dir: &Path) -> PathBuf {
    let tests = Command::new("python3").args(["-m", "unittest"]).current_dir(dir).output().expect("python3");
    let report = String::from_utf8_lossy(&tests.stderr);
    assert!(tests.status.success() && report.contains("Ran 3 tests") && report.contains("OK"), "{report}");
    let build = Command::new(dir.join("build")).env("COMPONENTIZE_PY", componentize_py()).output().expect("./build");
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let name = dir.file_name().unwrap().to_str().unwrap();
    dir.join(format!("{name}.wasm"))
}

/// `plugin new --lang python` → its tests → its build → the README's
/// `credbroker get`.
#[test]
fn a_new_python_provider_builds_tests_and_runs() {
    let env = UserEnv::new();
    let work = outside();
    let dir = plugin_new(&env, work.path(), "py-tokens", &["--lang", "python"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("wit/credbroker.wit")).unwrap(),
        std::fs::read_to_string(root().join("wit/credbroker.wit")).unwrap(),
        "the project builds against this credbroker's contract"
    );
    build_python(&dir);
    let service = HttpStub::start(vec![("/v1/token", Answer::ok(r#"{"token":"py-tok-90ab","expiresIn":300}"#))]);
    let key = "py-k3y-value";
    audit::secret(key);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let origin = service.origin();
    let get = readme_command(&readme, "credbroker get", &[("https://tokens.corp.example", &origin)]);
    let run = Run::of(sh(&env, &dir, &get, &[("API_KEY", key)]));
    assert_eq!(run.token(), "py-tok-90ab", "{}", run.stderr);
    assert!(run.stderr.contains("got a token valid for 300 s"), "{}", run.stderr);
    let request = &service.requests("/v1/token")[0];
    assert_eq!(request.header("authorization"), Some(format!("Bearer {key}").as_str()));
}

/// The Python validator and login backend: their tests, their builds, and
/// both in one `credbroker serve`: a TokenReview and a password login.
#[test]
fn new_python_validators_and_login_backends_serve() {
    let env = UserEnv::new();
    let work = outside();
    let mut built = Vec::new();
    for (name, world) in [("py-introspect", "validator"), ("py-directory", "login")] {
        let dir = plugin_new(&env, work.path(), name, &["--lang", "python", "--world", world]);
        let wasm = build_python(&dir);
        let inspect = env.run(&["plugin", "inspect", "--json", wasm.to_str().unwrap()]);
        let info: Value = serde_json::from_str(&inspect.stdout).unwrap_or_else(|_| panic!("{}", inspect.stderr));
        assert_eq!(info["worlds"], serde_json::json!([world]), "{info}");
        built.push(wasm);
    }
    let user = r#"{"username":"ada","groups":["devs"]}"#;
    let backend = HttpStub::start(vec![
        ("/introspect", Answer::ok(r#"{"active":true,"sub":"svc-build","groups":["ci"]}"#)),
        ("/v1/authenticate", Answer::ok(user)),
        ("/v1/users?name=ada", Answer::ok(user)),
    ]);
    let (secret, key, password) = ("py-introspection-s3cret", "py-directory-k3y", "py-ada-pa55");
    for value in [secret, key, password] {
        audit::secret(value);
    }
    std::fs::write(
        work.path().join("signing.pem"),
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem(),
    )
    .unwrap();
    std::fs::write(work.path().join("secret"), secret).unwrap();
    std::fs::write(work.path().join("key"), key).unwrap();
    let origin = backend.origin();
    let webhook = Webhook::start(
        &env,
        &format!(
            r#"[login]
signing-key-file = {signing:?}

[[validators]]
name = "py-introspect"
plugin = {validator:?}
[validators.settings]
url = "{origin}/introspect"
client-id = "kubernetes-webhook"
client-secret = "file:{secret}"
[validators.grants]
http = ["{origin}"]

[[validators]]
name = "py-directory"
plugin = {login:?}
[validators.settings]
url = "{origin}"
api-key = "file:{key}"
[validators.grants]
http = ["{origin}"]
"#,
            signing = work.path().join("signing.pem").display().to_string(),
            validator = built[0].display().to_string(),
            login = built[1].display().to_string(),
            secret = work.path().join("secret").display(),
            key = work.path().join("key").display(),
        ),
    );
    let token = "py-opaque-token-31";
    audit::secret(token);
    let (status, review) = webhook.review("v1", token, &[]);
    assert_eq!(status, 200, "{review}");
    assert_eq!(review["status"]["user"]["username"], "svc-build", "{review}\n{}", webhook.log());
    assert_eq!(review["status"]["user"]["groups"], serde_json::json!(["ci"]));

    let login: Value = crate::harness::webhook::client(&webhook.server_ca.cert_pem, None)
        .post(format!("{}/v1/login/py-directory", webhook.url))
        .json(&serde_json::json!({ "username": "ada", "password": password }))
        .send()
        .expect("login")
        .json()
        .expect("JSON");
    let issued = login["token"].as_str().unwrap_or_else(|| panic!("{login}\n{}", webhook.log())).to_string();
    audit::secret(&issued);
    let (_, review) = webhook.review("v1", &issued, &[]);
    assert_eq!(review["status"]["user"]["username"], "ada", "{review}");
    let check: Value = serde_json::from_slice(&backend.requests("/v1/authenticate")[0].body).unwrap();
    assert_eq!(check, serde_json::json!({ "username": "ada", "password": password }));
}

/// Names are checked, occupied directories refused unless told, and a
/// failure leaves nothing behind.
#[test]
fn plugin_new_checks_what_it_is_asked_and_leaves_nothing_half_written() {
    let env = UserEnv::new();
    let work = outside();
    let new = |args: &[&str]| {
        let mut all = vec!["plugin", "new"];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let listing = || {
        let mut names: Vec<String> =
            std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    };
    let at = |name: &str| work.path().join(name).display().to_string();

    for bad in ["Corp", "corp_tokens", "../up", "x-", ""] {
        let run = new(&[bad, "--dir", &at("bad")]);
        assert_eq!(run.code, Some(1));
        assert!(run.stderr.contains("cannot name a plugin: use 1 to 64 lowercase letters"), "{bad}: {}", run.stderr);
    }
    let run = new(&["self", "--dir", &at("self")]);
    assert!(run.stderr.contains("`self` is reserved"), "{}", run.stderr);
    let run = new(&["x", "--world", "webhook"]);
    assert!(run.stderr.contains("invalid value 'webhook' for '--world"), "{}", run.stderr);
    let run = new(&["x", "--dir", &at("x"), "--sdk", work.path().to_str().unwrap()]);
    assert!(run.stderr.contains("--sdk names the directory of credbroker-sdk"), "{}", run.stderr);
    let run = new(&["x", "--dir", &at("x"), "--lang", "python", "--sdk", "/x"]);
    assert!(run.stderr.contains("--sdk is for Rust plugins"), "{}", run.stderr);
    assert_eq!(listing(), Vec::<String>::new(), "nothing is written for a refused request");

    // An empty directory is used; a directory with files is not, unless told.
    std::fs::create_dir(work.path().join("empty")).unwrap();
    assert_eq!(new(&["empty", "--dir", &at("empty")]).code, Some(0));
    assert!(work.path().join("empty/src/lib.rs").exists());
    std::fs::create_dir(work.path().join("mine")).unwrap();
    std::fs::write(work.path().join("mine/notes.txt"), "keep me").unwrap();
    let run = new(&["mine", "--dir", &at("mine")]);
    assert!(run.stderr.contains("exists and is not empty; choose another --dir, or pass --force"), "{}", run.stderr);
    assert!(!work.path().join("mine/Cargo.toml").exists());
    assert_eq!(new(&["mine", "--dir", &at("mine"), "--force", "--lang", "python"]).code, Some(0));
    assert!(work.path().join("mine/app.py").exists() && work.path().join("mine/wit/credbroker.wit").exists());
    assert_eq!(std::fs::read_to_string(work.path().join("mine/notes.txt")).unwrap(), "keep me");

    // A failure while writing: nothing of the new project is left, nor the
    // directory it was staged in.
    std::fs::create_dir_all(work.path().join("blocked/README.md")).unwrap();
    std::fs::write(work.path().join("blocked/other"), "").unwrap();
    let run = new(&["blocked", "--dir", &at("blocked"), "--force"]);
    assert!(run.stderr.contains("README.md is a directory; the plugin needs a file there"), "{}", run.stderr);
    assert!(!work.path().join("blocked/Cargo.toml").exists() && !work.path().join("blocked/src").exists());
    std::fs::write(work.path().join("blocked/wit"), "a file where the project needs a directory").unwrap();
    let run = new(&["blocked", "--dir", &at("blocked"), "--force", "--lang", "python"]);
    assert!(run.stderr.contains("wit is not a directory; the plugin needs one there"), "{}", run.stderr);
    assert!(!work.path().join("blocked/app.py").exists());
    assert_eq!(listing(), ["blocked", "empty", "mine"]);
    let run = new(&["y", "--dir", &format!("{}/missing/y", work.path().display())]);
    assert!(run.stderr.contains("missing does not exist; create it first"), "{}", run.stderr);
    assert_eq!(listing(), ["blocked", "empty", "mine"]);
}
