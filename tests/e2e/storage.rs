//! Where `credbroker get` keeps credentials: the OS keyring (a real Secret
//! Service: GNOME Keyring on a private session bus), private files, or
//! nothing; `auto` falls back to files with a notice said once; `logout` and
//! `cache clear` remove what they say from every storage.

use std::process::Stdio;

use crate::harness::keyring::SecretService;
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
    assert!(run.stderr.contains("removed 2 cached credentials of provider `counted`"), "{}", run.stderr);
    assert!(run.stderr.contains("`credbroker logout` removes them too"), "{}", run.stderr);
    assert!(keyring.secrets(&[("application", "credbroker")]).is_empty());
    assert!(files_holding(env.home(), "kept-in-the-keyring").is_empty());
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
