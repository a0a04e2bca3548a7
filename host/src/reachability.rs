//! Whether this machine can reach a backend a plugin is granted: TCP, then a
//! TLS handshake with the roots the plugin's connections would use (so a wrong
//! `ca-file` shows up here, not in the middle of a login). For `credbroker doctor`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// A backend that answered.
#[derive(Debug, Clone)]
pub struct Reached {
    /// The address connected to.
    pub address: SocketAddr,
    /// Whether a TLS handshake completed too.
    pub tls: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Connect to the origin of `url` (`https`, `http`, `ldaps`, `ldap`) within
/// `timeout`; for `https` and `ldaps`, complete a TLS handshake verifying the
/// server against `ca_file` (or the system roots).
///
/// # Errors
///
/// A sentence saying which step failed and why.
pub fn check(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Reached, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("`{url}` has no host"))?.to_string();
    let (default_port, tls) = match parsed.scheme() {
        "https" => (443, true),
        "http" => (80, false),
        "ldaps" => (636, true),
        "ldap" => (389, false),
        other => return Err(format!("`{url}`: cannot check scheme `{other}`")),
    };
    let port = parsed.port().unwrap_or(default_port);
    let started = Instant::now();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let address = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address} ({host}:{port}): {e}"))?;
    if tls {
        handshake(&mut stream, bare, ca_file, timeout).map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
    }
    Ok(Reached { address, tls, elapsed: started.elapsed() })
}

fn handshake(stream: &mut TcpStream, host: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<(), String> {
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let config = crate::capabilities::tls::client_config(ca_file)?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while connection.is_handshaking() {
        connection.complete_io(stream).map_err(|e| e.to_string())?;
    }
    // Close politely; the server sees a finished handshake and nothing else.
    connection.send_close_notify();
    let _ = connection.complete_io(stream);
    let _ = stream.flush();
    Ok(())
}
