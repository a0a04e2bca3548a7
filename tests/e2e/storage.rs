//! Where `credbroker get` keeps credentials: the OS keyring (a real Secret
//! Service: GNOME Keyring on a private session bus) with a copy in the
//! kernel keyring, private files, or nothing; `auto` falls back to files with a notice said once; `logout` and
//! `cache clear` remove what they say from every storage.

use std::process::Stdio;

use crate::harness::keyring::{SecretService, invalidate_kernel_key, kernel_key_found, kernel_keys_holding};
use crate::harness::{Answer, HttpStub, Run, UserEnv, files_holding, probe};

/// A profile `counted` (storage `storage`, if given) whose provider fetches
/// its token from `stub`'s `/token`: the stub's hit count is the number of
/// provider runs.
fn counted_profile(env: &UserEnv, stub: &HttpStub, storage: Option<&str>) {
    let storage = storage.map(|s| format!("storage = {s:?}\n")).unwrap_or_default();
    env.write_config(&format!(
        "[profiles.counted]\nplugin = {:?}\n{storage}[profiles.counted.settings]\nbehavior = \"http\"\nurl = \"{}/token\"\nexpires-in = \"3600\"\n[profiles.counted.grants]\nhttp = [{:?}]\n",
        probe().display().to_string(),
        stub.origin(),
        stub.origin()
    ));
}

fn get(env: &UserEnv, keyring: Option<&SecretService>, args: &[&str]) -> Run {
    let mut command = env.credbroker(&[&["get", "--provider", "counted"], args].concat());
    if let Some(keyring) = keyring {
        keyring.attach(&mut command);
    }
    Run::of(command.output().unwrap())
}

#[test]
fn keyring_storage_keeps_the_credential_in_the_keyring_and_nothing_secret_on_disk() {
    let keyring = SecretService::start();
    let stub = HttpStub::start(vec![("/token", Answer::ok("kept-in-the-keyring"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("keyring"));
    assert_eq!(get(&env, Some(&keyring), &[]).token(), "200:kept-in-the-keyring");
    assert_eq!(get(&env, Some(&keyring), &[]).token(), "200:kept-in-the-keyring");
    assert_eq!(stub.hits("/token"), 1, "the second run was a cache hit from the keyring");

    let items = keyring.search(&[("application", "credbroker"), ("kind", "credential"), ("profile", "counted")]);
    assert!(items.contains("kept-in-the-keyring"), "secret-tool finds the cached credential: {items}");
    assert!(items.contains("label = credbroker: cached credential of profile counted"), "{items}");
    assert_eq!(files_holding(env.home(), "kept-in-the-keyring"), Vec::<String>::new(), "nothing secret on disk");
    assert_eq!(files_holding(keyring.data_dir(), "kept-in-the-keyring"), Vec::<String>::new(), "the keyring encrypts");

    // The command line picks the storage too: files now, so a new login.
    assert_eq!(get(&env, Some(&keyring), &["--storage", "file"]).token(), "200:kept-in-the-keyring");
    assert_eq!(stub.hits("/token"), 2);
    assert_eq!(files_holding(&env.cache_dir().join("credentials"), "kept-in-the-keyring").len(), 1);

    // cache clear removes it from both, and says refresh tokens stay.
    let run =
        Run::of(keyring.attach(&mut env.credbroker(&["cache", "clear", "--provider", "counted"])).output().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("removed 2 cached credentials of provider `counted` (and 1 copy in the kernel keyring)"),
        "{}",
        run.stderr
    );
    assert!(kernel_keys_holding("kept-in-the-keyring").is_empty(), "the kernel's copy went too");
    assert!(run.stderr.contains("`credbroker logout` removes them too"), "{}", run.stderr);
    assert!(keyring.secrets(&[("application", "credbroker")]).is_empty());
    assert!(files_holding(env.home(), "kept-in-the-keyring").is_empty());
}

#[test]
fn a_keyring_hit_comes_from_the_kernel_keyring_without_the_bus_and_logout_removes_it() {
    let keyring = SecretService::start();
    let token = format!("kernel-copy-{}", std::process::id());
    let stub = HttpStub::start(vec![("/token", Answer::ok(&token))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("keyring"));
    assert_eq!(get(&env, Some(&keyring), &[]).token(), format!("200:{token}"));

    // keyctl finds the copy: the credential as payload, under a description
    // of hashes that names neither the profile nor the secret, for its owner only.
    let keys = kernel_keys_holding(&token);
    assert_eq!(keys.len(), 1, "one copy in @u: {keys:?}");
    let key = &keys[0];
    assert!(key.payload.contains(&format!("\"token\":\"200:{token}\"")), "{}", key.payload);
    assert!(key.description().starts_with("credbroker:"), "{}", key.described);
    assert!(!key.described.contains("counted") && !key.described.contains(&token), "{}", key.described);
    assert_eq!(key.described.split(';').nth(3), Some("2f2f0000"), "possessor and user only: {}", key.described);
    assert_eq!(files_holding(env.home(), &token), Vec::<String>::new(), "nothing secret on disk");

    // No bus, no GNOME Keyring: the next run is still a hit, from the kernel.
    let address = keyring.address.clone();
    drop(keyring);
    let without_bus =
        |args: &[&str]| Run::of(env.credbroker(args).env("DBUS_SESSION_BUS_ADDRESS", &address).output().unwrap());
    let run = without_bus(&["get", "--provider", "counted"]);
    assert_eq!(run.token(), format!("200:{token}"), "{}", run.stderr);
    assert_eq!(stub.hits("/token"), 1, "no new login");

    // logout removes the copy even with the keyring away, and says so.
    let logout = without_bus(&["logout", "--provider", "counted"]);
    assert_eq!(logout.code, Some(0), "{}", logout.stderr);
    assert!(
        logout
            .stdout
            .starts_with("logged out of `counted`:\n  removed cached credentials: 1 copy in the kernel keyring\n"),
        "{}",
        logout.stdout
    );
    assert!(logout.stdout.contains("the OS keyring was not searched"), "{}", logout.stdout);
    assert!(!kernel_key_found(key.description()), "keyctl no longer finds {}", key.description());
    let run = without_bus(&["get", "--provider", "counted"]);
    assert!(run.error().contains("storage = \"keyring\""), "no copy left to serve: {}", run.stderr);
}

#[test]
fn the_kernel_copy_is_refilled_from_the_keyring_and_logout_all_removes_only_this_users() {
    let keyring = SecretService::start();
    let (mine, theirs) = (format!("mine-{}", std::process::id()), format!("theirs-{}", std::process::id()));
    let stub = HttpStub::start(vec![("/token", Answer::ok(&mine)), ("/other", Answer::ok(&theirs))]);
    // Two homes of one uid (two users' configs, two test environments).
    let (env, other) = (UserEnv::new(), UserEnv::new());
    counted_profile(&env, &stub, Some("keyring"));
    other.write_config(&format!(
        "[profiles.counted]\nplugin = {:?}\nstorage = \"keyring\"\n[profiles.counted.settings]\nbehavior = \"http\"\nurl = \"{}/other\"\nexpires-in = \"3600\"\n[profiles.counted.grants]\nhttp = [{:?}]\n",
        probe().display().to_string(),
        stub.origin(),
        stub.origin()
    ));
    assert_eq!(get(&env, Some(&keyring), &[]).token(), format!("200:{mine}"));
    let private = SecretService::start();
    assert_eq!(get(&other, Some(&private), &[]).token(), format!("200:{theirs}"));

    // A copy that went (here by keyctl) is refilled by the next hit, which
    // asks the Secret Service.
    let copy = kernel_keys_holding(&mine);
    assert_eq!(copy.len(), 1, "{copy:?}");
    invalidate_kernel_key(&copy[0].id);
    assert!(kernel_keys_holding(&mine).is_empty());
    assert_eq!(get(&env, Some(&keyring), &[]).token(), format!("200:{mine}"));
    assert_eq!(stub.hits("/token"), 1, "a hit from the Secret Service");
    let refilled = kernel_keys_holding(&mine);
    assert_eq!(refilled.len(), 1, "{refilled:?}");
    assert_eq!(refilled[0].description(), copy[0].description());

    let logout = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--all"])).output().unwrap());
    assert_eq!(
        logout.stdout,
        "logged out of every provider:\n  removed cached credentials: 1 keyring item, 1 copy in the kernel keyring\n"
    );
    assert!(!kernel_key_found(refilled[0].description()));
    assert_eq!(kernel_keys_holding(&theirs).len(), 1, "the other home's copy stays");
    let logout = Run::of(private.attach(&mut other.credbroker(&["logout", "--all"])).output().unwrap());
    assert!(logout.stdout.contains("1 copy in the kernel keyring"), "{}", logout.stdout);
    assert!(kernel_keys_holding(&theirs).is_empty());
}

/// `command` run by `keyctl session -`: in a session keyring of its own that
/// does not hold the user keyring, as in a container or a service with a
/// private keyring. credbroker does not possess the keys it adds to `@u`
/// there, so the kernel refuses to narrow their permissions.
fn in_a_session_without_the_user_keyring(command: &std::process::Command) -> std::process::Command {
    let mut wrapped = std::process::Command::new("keyctl");
    wrapped.args(["session", "-"]).arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

#[test]
fn where_the_kernel_refuses_the_copy_the_keyring_alone_serves_hits_silently() {
    let keyring = SecretService::start();
    let token = format!("no-kernel-copy-{}", std::process::id());
    let stub = HttpStub::start(vec![("/token", Answer::ok(&token))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("keyring"));
    for _ in 0..2 {
        let mut command = env.credbroker(&["get", "--provider", "counted"]);
        keyring.attach(&mut command);
        let run = Run::of(in_a_session_without_the_user_keyring(&command).output().unwrap());
        assert_eq!(run.token(), format!("200:{token}"), "{}", run.stderr);
        // A debug line at most (the tests log at debug level).
        let said: Vec<&str> = run.stderr.lines().filter(|l| l.contains("kernel keyring")).collect();
        assert!(said.iter().all(|l| l.starts_with("DEBUG ")), "only debug lines: {said:?}");
    }
    assert_eq!(stub.hits("/token"), 1, "the second run was a hit from the Secret Service");
    assert!(kernel_keys_holding(&token).is_empty(), "no copy left behind, not even one without a timeout");
    // The same home in a session with the user keyring: copied, and served from there.
    let run = get(&env, Some(&keyring), &[]);
    assert_eq!(run.token(), format!("200:{token}"));
    assert_eq!(kernel_keys_holding(&token).len(), 1);
    let logout = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--all"])).output().unwrap());
    assert!(logout.stdout.contains("1 copy in the kernel keyring"), "{}", logout.stdout);
}

#[test]
fn parallel_gets_with_keyring_storage_log_in_once() {
    let keyring = SecretService::start();
    let stub = HttpStub::start(vec![("/token", Answer::ok("shared-via-keyring"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("keyring"));
    let children: Vec<_> = (0..20)
        .map(|_| {
            keyring
                .attach(&mut env.credbroker(&["get", "--provider", "counted"]))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    for run in &runs {
        assert_eq!(run.token(), "200:shared-via-keyring", "{}", run.stderr);
    }
    assert_eq!(stub.hits("/token"), 1, "the provider ran once");
    assert_eq!(keyring.secrets(&[("application", "credbroker"), ("kind", "credential")]).len(), 1);
}

#[test]
fn auto_uses_the_keyring_when_one_answers_and_files_with_a_notice_said_once_when_none_does() {
    let keyring = SecretService::start();
    let stub = HttpStub::start(vec![("/token", Answer::ok("auto-token"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, None);
    let run = get(&env, Some(&keyring), &[]);
    assert_eq!(run.token(), "200:auto-token");
    assert!(!run.stderr.contains("notice"), "{}", run.stderr);
    assert_eq!(keyring.secrets(&[("application", "credbroker")]).len(), 1, "auto chose the keyring");

    // No session bus (a container, an SSH session): files, said once.
    let other = UserEnv::new();
    other.forget_keyring_notice();
    counted_profile(&other, &stub, None);
    let first = get(&other, None, &["--no-cache"]);
    assert_eq!(first.token(), "200:auto-token");
    assert!(first.stderr.contains("storage = auto: no OS keyring answers"), "{}", first.stderr);
    assert!(first.stderr.contains("This notice is shown once."), "{}", first.stderr);
    let second = get(&other, None, &[]);
    assert_eq!(second.token(), "200:auto-token");
    assert!(!second.stderr.contains("This notice is shown once."), "said once: {}", second.stderr);
    assert_eq!(files_holding(&other.cache_dir().join("credentials"), "auto-token").len(), 1);
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(other.cache_dir().join("credentials")).unwrap());
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn keyring_storage_without_a_keyring_is_a_clear_error() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("never"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("keyring"));
    let run = get(&env, None, &[]);
    assert!(run.error().contains("storage = \"keyring\": no OS keyring answers"), "{}", run.stderr);
    assert!(run.stderr.contains("use storage = \"file\""), "{}", run.stderr);
    assert_eq!(stub.hits("/token"), 0, "no login whose result could not be kept");

    let run = Run::of(
        env.credbroker(&["get", "--provider", "counted", "--storage", "keyring"])
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .output()
            .unwrap(),
    );
    assert!(run.error().contains("cannot reach the D-Bus session bus"), "{}", run.stderr);

    let run = get(&env, None, &["--storage", "disk"]);
    assert!(run.error().contains("`disk` is not auto, keyring, file or none"), "{}", run.stderr);
    env.write_config("[profiles.counted]\nplugin = \"static\"\nstorage = \"disk\"\n");
    let run = get(&env, None, &[]);
    assert!(
        run.error().contains("unknown variant `disk`, expected one of `auto`, `keyring`, `file`, `none`"),
        "{}",
        run.stderr
    );
}

#[test]
fn storage_none_keeps_nothing() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("fleeting"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, Some("none"));
    assert_eq!(get(&env, None, &[]).token(), "200:fleeting");
    assert_eq!(get(&env, None, &[]).token(), "200:fleeting");
    assert_eq!(stub.hits("/token"), 2, "every run logs in");
    assert!(files_holding(env.home(), "fleeting").is_empty());
}
