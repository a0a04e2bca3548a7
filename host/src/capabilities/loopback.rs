//! `loopback`: one OAuth redirect received on 127.0.0.1 (RFC 8252), for the
//! authorization-code flow. The host shows the user the URL to open (and opens
//! a browser if the operator allows), answers the browser with a short page,
//! and hands the plugin the redirect's query.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmtime::component::Resource;

use super::{PluginContext, sanitize};
use crate::runtime::bindings::loopback::{Host, HostRedirectListener};
use crate::runtime::bindings::types::HostError;

/// The path the browser is redirected to.
const CALLBACK: &str = "/callback";
/// Largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;

/// A listening socket waiting for one redirect (the `redirect-listener` resource).
pub struct RedirectListener {
    listener: TcpListener,
    uri: String,
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>credbroker</title></head>\
<body><h1>Logged in</h1><p>You can close this window and return to the terminal.</p></body></html>";

/// Read one request head from the browser and answer it; returns the target.
async fn answer_one(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.ok()?.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let target = line.lines().next()?.split(' ').nth(1)?.to_string();
    let (status, body) = if target.starts_with(CALLBACK) { ("200 OK", PAGE) } else { ("404 Not Found", "not found") };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    Some(target)
}

impl PluginContext {
    fn open_browser(&self, url: &str) {
        if !self.policy.open_browser {
            return;
        }
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        let spawned = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::debug!("cannot open a browser with {opener}: {e}");
        }
    }

    async fn wait_for_redirect(
        &mut self,
        listener: &Resource<RedirectListener>,
        url: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<String, HostError>> {
        if let Err(e) = self.check_call_size("authorization URL", url.len()) {
            return Ok(Err(e));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Ok(Err(HostError::Invalid("the authorization URL must be http(s)".into())));
        }
        let message = format!("\nOpen this URL in your browser to log in:\n\n    {}\n", sanitize(&url, false));
        if let Err(e) = self.terminal.show(&message) {
            return Ok(Err(HostError::Unreachable(format!("cannot show the URL: {e}"))));
        }
        self.open_browser(&url);
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        let listener = self.resources.get_mut(listener)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let accepted = match tokio::time::timeout(left, listener.listener.accept()).await {
                Err(_) => return Ok(Err(HostError::Timeout("nobody completed the login in the browser".into()))),
                Ok(Err(e)) => return Ok(Err(HostError::Unreachable(format!("the redirect listener failed: {e}")))),
                Ok(Ok((stream, _))) => stream,
            };
            let mut stream = accepted;
            if let Some(target) = answer_one(&mut stream).await
                && let Some(rest) = target.strip_prefix(CALLBACK)
            {
                return Ok(Ok(rest.strip_prefix('?').unwrap_or_default().to_string()));
            }
        }
    }
}

impl Host for PluginContext {
    async fn listen(&mut self) -> wasmtime::Result<Result<Resource<RedirectListener>, HostError>> {
        if !self.policy.redirect_listener {
            return Ok(Err(HostError::Denied(
                "this plugin may not receive OAuth redirects (grant it with grants.redirect-listener = true)".into(),
            )));
        }
        let listener = match TcpListener::bind(("127.0.0.1", self.policy.redirect_port)).await {
            Ok(listener) => listener,
            Err(e) => return Ok(Err(HostError::Unreachable(format!("cannot listen on 127.0.0.1: {e}")))),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let uri = format!("http://127.0.0.1:{port}{CALLBACK}");
        Ok(self
            .resources
            .push(RedirectListener { listener, uri })
            .map_err(|_| HostError::Invalid("too many open host resources in one run".into())))
    }
}

impl HostRedirectListener for PluginContext {
    async fn redirect_uri(&mut self, listener: Resource<RedirectListener>) -> wasmtime::Result<String> {
        Ok(self.resources.get(&listener)?.uri.clone())
    }

    async fn wait(
        &mut self,
        listener: Resource<RedirectListener>,
        authorization_url: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<String, HostError>> {
        self.wait_for_redirect(&listener, authorization_url, timeout_ms).await
    }

    async fn drop(&mut self, listener: Resource<RedirectListener>) -> wasmtime::Result<()> {
        self.resources.delete(listener)?;
        Ok(())
    }
}
