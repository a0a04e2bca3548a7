//! `loopback`: one OAuth redirect received on 127.0.0.1 (RFC 8252), for the
//! authorization-code flow. The host shows the user the URL to open (and opens
//! a browser if the operator allows), answers the browser with a short page,
//! and hands the plugin the redirect's query.
//!
//! Which browser runs is the operator's choice, never the plugin's: the
//! system's opener with `open-browser = true`, or the command
//! `browser-command` names, started by the host without a shell, with the
//! URL (an `http(s)` URL the host parsed) as its last argument and its
//! stdin and stdout closed, so it cannot read the user's answers or write to
//! the stdout kubectl reads.
//!
//! Any local process can connect to the port, so the host accepts only the
//! redirect that carries the `state` of the authorization URL it was asked to
//! show (anything else gets 400 and the wait goes on), reads several
//! connections at once so a silent one cannot hold the real browser back, and
//! ends the whole wait at its deadline however the bytes trickle in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;
use wasmtime::component::{Linker, Resource, ResourceTable};

use super::prompt::Terminal;
use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::loopback::{Host, HostRedirectListener, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};

/// The path the browser is redirected to.
const CALLBACK: &str = "/callback";
/// Largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;
/// Connections read at once while waiting.
const MAX_PENDING: usize = 8;
/// Most listeners one run may hold.
const MAX_LISTENERS: usize = 2;

/// The `loopback` capability.
pub struct Loopback;

/// What the operator granted: whether to listen, on which port, and which
/// browser to open, if any.
#[derive(Debug, Default)]
pub struct LoopbackPolicy {
    redirect_listener: bool,
    redirect_port: u16,
    browser: Option<Vec<String>>,
}

/// The system's opener of URLs (`open-browser = true`): the URL is its last
/// argument. On Windows, url.dll's handler (as Go's pkg/browser, which
/// kubelogin uses): unlike `cmd /c start`, it takes the URL as one argument,
/// with no shell to reinterpret its `&`s.
fn system_opener() -> Vec<String> {
    let opener: &[&str] = if cfg!(windows) {
        &["rundll32.exe", "url.dll,FileProtocolHandler"]
    } else if cfg!(target_os = "macos") {
        &["open"]
    } else {
        &["xdg-open"]
    };
    opener.iter().map(|s| s.to_string()).collect()
}

/// The browser to open: `browser-command` (program and leading arguments),
/// else the system's opener when `open-browser`, else none.
fn browser(open_browser: bool, command: Option<Vec<String>>) -> Result<Option<Vec<String>>, GrantError> {
    let invalid = |message: &str| GrantError::Invalid { key: "browser-command", message: message.to_string() };
    match command {
        Some(command) => {
            let Some(program) = command.first() else {
                return Err(invalid("name the program, e.g. [\"firefox\", \"--new-window\"]; the URL is added last"));
            };
            if program.trim().is_empty() {
                return Err(invalid("the program is empty"));
            }
            if command.iter().any(|arg| arg.contains('\0')) {
                return Err(invalid("an argument holds a NUL character"));
            }
            Ok(Some(command))
        }
        None if open_browser => Ok(Some(system_opener())),
        None => Ok(None),
    }
}

impl Capability for Loopback {
    const INTERFACE: &'static str = "loopback";
    const WHAT: &'static str = "receive an OAuth redirect on 127.0.0.1";
    const GRANT: &'static str = "grants.redirect-listener = true";
    type Policy = (LoopbackPolicy, Arc<dyn Terminal>);
    type State = LoopbackRun;

    fn configure(grants: &mut GrantTable, plugin: &PluginSetup) -> Result<Self::Policy, GrantError> {
        let open_browser = grants.take("open-browser")?;
        let policy = LoopbackPolicy {
            redirect_listener: grants.take("redirect-listener")?,
            redirect_port: grants.take("redirect-port")?,
            browser: browser(open_browser, grants.take("browser-command")?)?,
        };
        Ok((policy, Arc::clone(&plugin.terminal)))
    }

    fn open_resources(state: &LoopbackRun) -> usize {
        usize::from(!state.listeners.is_empty())
    }

    fn prepare(policy: &Arc<Self::Policy>) -> LoopbackRun {
        let mut listeners = ResourceTable::new();
        listeners.set_max_capacity(MAX_LISTENERS);
        LoopbackRun { policy: Arc::clone(policy), listeners }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// A listening socket waiting for one redirect (the `redirect-listener` resource).
pub struct RedirectListener {
    listener: TcpListener,
    uri: String,
}

/// A run's listeners.
pub struct LoopbackRun {
    policy: Arc<(LoopbackPolicy, Arc<dyn Terminal>)>,
    listeners: ResourceTable,
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>credbroker</title></head>\
<body><h1>Logged in</h1><p>You can close this window and return to the terminal.</p></body></html>";

/// Read one request head before `deadline`; its target (path and query).
async fn read_target(mut stream: TcpStream, deadline: Instant) -> Option<(TcpStream, String)> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await.ok()?.ok()?;
        if read == 0 || head.len() + read > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let target = line.lines().next()?.split(' ').nth(1)?.to_string();
    Some((stream, target))
}

async fn answer(mut stream: TcpStream, status: &str, body: &str, deadline: Instant) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout_at(deadline.into(), stream.write_all(response.as_bytes())).await;
}

/// The value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

impl LoopbackRun {
    fn open_browser(&self, url: &Url) {
        let Some((program, arguments)) = self.policy.0.browser.as_ref().and_then(|c| c.split_first()) else {
            return;
        };
        let spawned = std::process::Command::new(program)
            .args(arguments)
            .arg(url.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            // Reaped in the background: a browser may outlive the login.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(e) => tracing::warn!(
                "cannot open a browser with `{}`: {e}; open the URL shown yourself",
                crate::boundary::text::name(program)
            ),
        }
    }

    async fn listen(&mut self) -> Result<Resource<RedirectListener>, HostError> {
        let policy = &self.policy.0;
        if !policy.redirect_listener {
            return Err(HostError::Denied(
                "this plugin may not receive OAuth redirects (grant it with grants.redirect-listener = true)".into(),
            ));
        }
        let listener = TcpListener::bind(("127.0.0.1", policy.redirect_port))
            .await
            .map_err(|e| HostError::Unreachable(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let uri = format!("http://127.0.0.1:{port}{CALLBACK}");
        self.listeners
            .push(RedirectListener { listener, uri })
            .map_err(|_| HostError::Invalid(format!("at most {MAX_LISTENERS} redirect listeners at once")))
    }

    async fn wait(
        &mut self,
        boundary: &Boundary,
        listener: &Resource<RedirectListener>,
        url: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<String, HostError>> {
        let parsed = match Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => parsed,
            _ => return Ok(Err(HostError::Invalid("the authorization URL must be an http(s) URL".into()))),
        };
        let Some(expected) = parsed.query().and_then(|q| query_param(q, "state")).filter(|s| !s.is_empty()) else {
            return Ok(Err(HostError::Invalid(
                "the authorization URL has no `state` parameter: the host needs it to tell the browser's redirect \
                 from a forged one (RFC 6749 10.12)"
                    .into(),
            )));
        };
        let message = format!("\nOpen this URL in your browser to log in:\n\n    {url}\n");
        if let Some(shown) = boundary.output().for_terminal(&message) {
            let framed = super::prompt::frame(boundary.plugin(), &shown, false);
            if let Err(e) = self.policy.1.show(&framed) {
                return Ok(Err(HostError::Unreachable(format!("cannot show the URL: {e}"))));
            }
        }
        self.open_browser(&parsed);
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        let listener = self.listeners.get_mut(listener)?;
        let mut pending: JoinSet<Option<(TcpStream, String)>> = JoinSet::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => {
                    return Ok(Err(HostError::Timeout("nobody completed the login in the browser".into())));
                }
                accepted = listener.listener.accept(), if pending.len() < MAX_PENDING => match accepted {
                    Ok((stream, _)) => {
                        pending.spawn(read_target(stream, deadline));
                    }
                    Err(e) => return Ok(Err(HostError::Unreachable(format!("the redirect listener failed: {e}")))),
                },
                Some(read) = pending.join_next() => {
                    let Ok(Some((stream, target))) = read else { continue };
                    let Some(query) = target.strip_prefix(CALLBACK).map(|q| q.strip_prefix('?').unwrap_or_default())
                    else {
                        answer(stream, "404 Not Found", "not found", deadline).await;
                        continue;
                    };
                    if query_param(query, "state").as_deref() != Some(expected.as_str()) {
                        tracing::warn!("ignored a redirect whose state does not match the login's");
                        answer(stream, "400 Bad Request", "this is not the login credbroker is waiting for", deadline).await;
                        continue;
                    }
                    answer(stream, "200 OK", PAGE, deadline).await;
                    return Ok(Ok(query.to_string()));
                }
            }
        }
    }
}

impl Host for CapView<'_, LoopbackRun> {
    async fn listen(&mut self) -> wasmtime::Result<Result<Resource<RedirectListener>, HostError>> {
        self.call("loopback.listen", 0, async |loopback, _| Ok(loopback.listen().await)).await
    }
}

impl HostRedirectListener for CapView<'_, LoopbackRun> {
    async fn redirect_uri(&mut self, listener: Resource<RedirectListener>) -> wasmtime::Result<String> {
        Ok(self.state.listeners.get(&listener)?.uri.clone())
    }

    async fn wait(
        &mut self,
        listener: Resource<RedirectListener>,
        authorization_url: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<String, HostError>> {
        let size = 4 + authorization_url.wire_size() + 4;
        self.call("loopback.redirect-listener.wait", size, async |loopback, boundary| {
            loopback.wait(boundary, &listener, authorization_url, timeout_ms).await
        })
        .await
    }

    async fn drop(&mut self, listener: Resource<RedirectListener>) -> wasmtime::Result<()> {
        self.state.listeners.delete(listener)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::capabilities::testing::Run;

    fn port_of(uri: &str) -> u16 {
        uri.trim_start_matches("http://127.0.0.1:").trim_end_matches(CALLBACK).parse().unwrap()
    }

    #[tokio::test]
    async fn only_the_redirect_with_the_login_state_is_accepted_and_the_deadline_holds() {
        let mut run = Run::builder().grants("redirect-listener = true").build();
        let mut view = run.view::<Loopback>();
        let listener = view.listen().await.unwrap().unwrap();
        let uri = view.redirect_uri(Resource::new_borrow(listener.rep())).await.unwrap();
        let port = port_of(&uri);
        std::thread::spawn(move || {
            // A local process that connects and trickles bytes, one that forges
            // a callback, then the real browser.
            let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = slow.write_all(b"GE");
            let mut forged = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            forged.write_all(b"GET /callback?code=evil&state=guess HTTP/1.1\r\n\r\n").unwrap();
            let mut answer = String::new();
            let _ = forged.read_to_string(&mut answer);
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            let mut real = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            real.write_all(b"GET /callback?code=good&state=s3cret HTTP/1.1\r\n\r\n").unwrap();
            let _ = real.read_to_string(&mut answer);
            std::thread::sleep(Duration::from_secs(2));
            drop(slow);
        });
        let url = "https://idp.example/authorize?client_id=k&state=s3cret".to_string();
        let query = view.wait(Resource::new_borrow(listener.rep()), url, 5000).await.unwrap().unwrap();
        assert_eq!(query, "code=good&state=s3cret");

        // Trickled bytes do not stretch the wait past its deadline.
        let trickle = std::thread::spawn(move || {
            let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            for _ in 0..40 {
                if slow.write_all(b"G").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let url = "https://idp.example/authorize?state=other".to_string();
        let timeout = view.wait(Resource::new_borrow(listener.rep()), url, 1000).await.unwrap().unwrap_err();
        assert!(matches!(timeout, HostError::Timeout(_)));
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        let _ = trickle.join();

        let no_state = view.wait(Resource::new_borrow(listener.rep()), "https://idp/a".into(), 100).await.unwrap();
        assert!(matches!(no_state, Err(HostError::Invalid(m)) if m.contains("no `state`")));
    }

    // The browser is a shell script.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_operators_browser_command_gets_the_url_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("browser");
        let seen = dir.path().join("seen");
        std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n", seen.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let grants = format!(
            "redirect-listener = true\nbrowser-command = [{:?}, \"--new-window\"]",
            script.display().to_string()
        );
        let mut run = Run::builder().grants(&grants).build();
        let mut view = run.view::<Loopback>();
        let listener = view.listen().await.unwrap().unwrap();
        let uri = view.redirect_uri(Resource::new_borrow(listener.rep())).await.unwrap();
        let port = port_of(&uri);
        let url = "https://idp.example/authorize?client_id=k&state=st8&x=$(id)".to_string();
        let waiting = view.wait(Resource::new_borrow(listener.rep()), url, 5000);
        let browser = async {
            // The "browser" saw the URL as one argument, after the operator's own.
            for _ in 0..100 {
                if let Ok(args) = std::fs::read_to_string(&seen)
                    && args.ends_with('\n')
                {
                    assert_eq!(args, "--new-window\nhttps://idp.example/authorize?client_id=k&state=st8&x=$(id)\n");
                    let mut real = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    real.write_all(b"GET /callback?code=c&state=st8 HTTP/1.1\r\n\r\n").await.unwrap();
                    let mut answer = Vec::new();
                    let _ = real.read_to_end(&mut answer).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the browser command never ran");
        };
        let (query, ()) = tokio::join!(waiting, browser);
        assert_eq!(query.unwrap().unwrap(), "code=c&state=st8");
    }

    #[test]
    fn a_browser_command_must_name_a_program() {
        let policy = |grants: &str| {
            let mut table = GrantTable::new(&crate::capabilities::Grants::from_table(toml::from_str(grants).unwrap()));
            let open = table.take("open-browser").unwrap();
            browser(open, table.take("browser-command").unwrap())
        };
        assert_eq!(policy("").unwrap(), None);
        assert_eq!(policy("open-browser = true").unwrap(), Some(system_opener()));
        assert_eq!(policy("open-browser = false\nbrowser-command = [\"w3m\"]").unwrap(), Some(vec!["w3m".into()]));
        for bad in ["browser-command = []", "browser-command = [\" \"]", "browser-command = [\"a\", \"b\\u0000\"]"] {
            let refused = policy(bad).unwrap_err().to_string();
            assert!(refused.starts_with("grants.browser-command: "), "{bad}: {refused}");
        }
    }

    #[tokio::test]
    async fn listening_needs_the_grant() {
        let mut run = Run::builder().build();
        let denied = run.view::<Loopback>().listen().await.unwrap().unwrap_err();
        assert!(matches!(denied, HostError::Denied(m) if m.contains("grants.redirect-listener")));
    }
}
