//! The Secret Service on Linux (GNOME Keyring, KWallet, KeePassXC), spoken to
//! over the user's D-Bus session bus.
//!
//! A cached credential is read on every kubectl command, so this is a lean,
//! blocking client of the few calls that takes, in three round trips:
//!
//! 1. one write carries the authentication (`AUTH EXTERNAL`, `BEGIN`, not
//!    waiting for the bus's `OK`, as sd-bus does), the bus's `Hello` and
//!    `OpenSession`, the only message to the Secret Service until it has
//!    answered (see [`Keyring::connect`] for why);
//! 2. the default collection's path and the search for the item read first;
//! 3. whether that collection is unlocked, and the secrets of the items found.
//!
//! zbus, which this replaced, waits for each step of the handshake, and its
//! connection lives on the async runtime: four round trips before the
//! secret, and twice the CPU time of a file cache hit. Messages are encoded
//! and decoded by `zvariant` (zbus's own encoding crate); only the framing is
//! written here.
//!
//! Secrets travel over the session bus in a `plain` session. The bus is a
//! socket only the user can open, and any process that can talk to it can ask
//! the Secret Service for the item itself, so an encrypted session would
//! guard against nobody this does not; it would cost a Diffie-Hellman key
//! exchange on every kubectl command.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use zvariant::serialized::{Context, Data};
use zvariant::{DynamicDeserialize, DynamicType, Endian, ObjectPath, OwnedObjectPath, OwnedValue, Signature, Value};

use super::{ItemId, KEYRING_TIMEOUT, KeyringError, Selector};

const DEST: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE: &str = "org.freedesktop.Secret.Service";
const COLLECTION: &str = "org.freedesktop.Secret.Collection";
const ITEM: &str = "org.freedesktop.Secret.Item";

/// The largest message accepted from the bus. The D-Bus limit is 128 MiB;
/// what credbroker stores is far smaller, and a peer that sends more is
/// refused rather than buffered.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A secret as the Secret Service hands it over: session, parameters,
/// value, content type.
type Secret = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

/// A connection to the Secret Service.
#[derive(Debug, Clone)]
pub struct Keyring {
    bus: Arc<Mutex<Bus>>,
    /// The `plain` session every secret is sent in, opened once.
    session: OwnedObjectPath,
    /// The default collection, where items are created.
    collection: OwnedObjectPath,
    /// What connecting found for the item the caller said it reads first,
    /// taken by its `get`.
    first_read: Arc<Mutex<Option<FirstRead>>>,
}

/// The items a search found: unlocked, locked.
type Search = (Vec<OwnedObjectPath>, Vec<OwnedObjectPath>);

/// Secrets by item.
type Secrets = HashMap<OwnedObjectPath, Secret>;

/// The search for an item, made while connecting, and the secrets of the
/// unlocked items it found, if they could be fetched.
#[derive(Debug)]
struct FirstRead {
    item: ItemId,
    search: Search,
    secrets: Option<Secrets>,
}

/// The secret of the first of `found` that `secrets` holds: with several
/// matches (another client wrote one too), any is ours.
fn first_secret(found: &[OwnedObjectPath], secrets: &Secrets) -> Option<Vec<u8>> {
    found.iter().find_map(|path| secrets.get(path)).map(|secret| secret.2.clone())
}

/// Where the session bus listens.
#[derive(Debug, PartialEq, Eq)]
enum BusAddress {
    /// `unix:path=`, or the default `$XDG_RUNTIME_DIR/bus`.
    Path(std::path::PathBuf),
    /// `unix:abstract=` (Linux's abstract socket namespace).
    Abstract(Vec<u8>),
}

/// The session bus's address: the first `unix:path=` or `unix:abstract=`
/// entry of `DBUS_SESSION_BUS_ADDRESS` (or the default `$XDG_RUNTIME_DIR/bus`).
fn session_address() -> Result<BusAddress, KeyringError> {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(address) if !address.is_empty() => parse_address(&address),
        _ => Ok(BusAddress::Path(default_socket())),
    }
}

fn parse_address(address: &str) -> Result<BusAddress, KeyringError> {
    // Alternatives are tried in order by other clients too; take the first
    // this client can use.
    for entry in address.split(';').filter(|e| !e.is_empty()) {
        let Some(rest) = entry.strip_prefix("unix:") else { continue };
        for pair in rest.split(',') {
            match pair.split_once('=') {
                Some(("path", value)) => return Ok(BusAddress::Path(unescape(value)?.into_string_lossy().into())),
                Some(("abstract", value)) => return Ok(BusAddress::Abstract(unescape(value)?.0)),
                _ => {}
            }
        }
    }
    Err(KeyringError::Unavailable(format!(
        "the D-Bus session bus address `{}` has no `unix:path=` or `unix:abstract=` entry, the only kinds this client uses",
        address.chars().take(200).collect::<String>()
    )))
}

/// An address value's bytes (`%XX` escapes decoded).
struct Unescaped(Vec<u8>);

impl Unescaped {
    fn into_string_lossy(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

fn unescape(value: &str) -> Result<Unescaped, KeyringError> {
    let bad = || KeyringError::Unavailable(format!("the D-Bus session bus address has a bad escape in `{value}`"));
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
            let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    Ok(Unescaped(out))
}

fn default_socket() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| format!("/run/user/{}", crate::fsutil::current_uid()).into())
        .join("bus")
}

/// Where a client would look without DBUS_SESSION_BUS_ADDRESS, said before
/// anything is set up: in a container or an SSH session there is usually
/// no bus at all, and `auto` should find that out at the cost of a stat.
fn no_session_bus() -> Result<(), KeyringError> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty()) {
        return Ok(());
    }
    let socket = default_socket();
    if socket.exists() {
        return Ok(());
    }
    Err(KeyringError::Unavailable(format!(
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and there is no `{}`)",
        socket.display()
    )))
}

/// One method call, encoded.
struct Call {
    /// What it is for, in errors ("a search").
    what: &'static str,
    bytes: Vec<u8>,
}

/// A method call's answer: its body, or the error it was refused with.
enum Reply {
    Return { endian: Endian, signature: Signature, body: Vec<u8> },
    Error { name: String, message: String },
}

/// Message types (the D-Bus specification's numbers).
const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// Header field codes.
const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// The primary header and its fields, as decoded: `(yyyyuua(yv))`.
type Header<'a> = (u8, u8, u8, u8, u32, u32, Vec<(u8, Value<'a>)>);

/// A little-endian message header with `fields` (code, type, value: all
/// strings), padded to the body's 8-byte boundary. Written by hand because
/// a signature field must hold the body's signature without the
/// parentheses zvariant writes around a tuple's.
fn header(kind: u8, serial: u32, body_len: u32, fields: &[(u8, char, &str)]) -> Vec<u8> {
    fn pad(bytes: &mut Vec<u8>, to: usize) {
        bytes.resize(bytes.len().next_multiple_of(to), 0);
    }
    let mut out = vec![b'l', kind, 0, 1];
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the fields' length, set below
    for &(code, kind, value) in fields {
        pad(&mut out, 8);
        out.extend_from_slice(&[code, 1, kind as u8, 0]);
        if kind == 'g' {
            // A signature is short: a byte of length.
            out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        } else {
            pad(&mut out, 4);
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    let fields_len = u32::try_from(out.len() - 16).unwrap_or(u32::MAX);
    out[12..16].copy_from_slice(&fields_len.to_le_bytes());
    pad(&mut out, 8);
    out
}

fn encoding_failed(what: &'static str) -> impl Fn(zvariant::Error) -> KeyringError {
    move |e| KeyringError::Call { call: what, message: format!("cannot encode the call: {e}") }
}

/// Encode a method call of `member` with the arguments `args` (a tuple).
fn method_call<B>(
    what: &'static str,
    serial: u32,
    destination: &str,
    path: &str,
    interface: &str,
    member: &str,
    args: &B,
) -> Result<Call, KeyringError>
where
    B: serde::Serialize + DynamicType,
{
    let context = Context::new_dbus(Endian::Little, 0);
    let body = zvariant::to_bytes(context, args).map_err(encoding_failed(what))?;
    // Checked here: the bus would drop the connection over a bad path.
    ObjectPath::try_from(path).map_err(encoding_failed(what))?;
    // The arguments' signature: the tuple's, without its parentheses.
    let signature = args.signature().to_string_no_parens();
    let mut fields = vec![
        (FIELD_PATH, 'o', path),
        (FIELD_INTERFACE, 's', interface),
        (FIELD_MEMBER, 's', member),
        (FIELD_DESTINATION, 's', destination),
    ];
    if !body.is_empty() {
        fields.push((FIELD_SIGNATURE, 'g', signature.as_str()));
    }
    let body_len =
        u32::try_from(body.len()).map_err(|_| KeyringError::Call { call: what, message: "too large".into() })?;
    let mut bytes = header(METHOD_CALL, serial, body_len, &fields);
    bytes.extend_from_slice(&body);
    Ok(Call { what, bytes })
}

impl Reply {
    /// The body, decoded as `T`, or the error the call was refused with.
    fn body<T>(self, what: &'static str) -> Result<T, KeyringError>
    where
        T: for<'d> DynamicDeserialize<'d>,
    {
        match self {
            Reply::Return { endian, signature, body } => {
                let bad = |e: zvariant::Error| KeyringError::Call { call: what, message: format!("a bad answer: {e}") };
                let data = Data::new(body.as_slice(), Context::new_dbus(endian, 0));
                data.deserialize_for_dynamic_signature::<_, T>(&signature).map(|(value, _)| value).map_err(bad)
            }
            Reply::Error { name, message } => Err(refused(what, &name, &message)),
        }
    }
}

fn refused(call: &'static str, name: &str, message: &str) -> KeyringError {
    match name {
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            KeyringError::Unavailable("no Secret Service on the D-Bus session bus".into())
        }
        "org.freedesktop.Secret.Error.IsLocked" => KeyringError::Locked,
        _ => KeyringError::Call { call, message: format!("{name}: {}", printable(message)) },
    }
}

/// `text` cut short and without control characters, for an error message
/// that reaches a terminal: it comes from another process on the bus.
fn printable(text: &str) -> String {
    text.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The connection: a socket, the next serial, and what was read past the
/// last message.
#[derive(Debug)]
struct Bus {
    stream: UnixStream,
    serial: u32,
    buffer: Vec<u8>,
}

impl Bus {
    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }

    /// Connect and authenticate, sending `calls` (made by `calls(bus)`) in
    /// the same write; their replies, in order.
    fn connect(
        deadline: Instant,
        calls: impl FnOnce(&mut Bus) -> Result<Vec<Call>, KeyringError>,
    ) -> Result<(Self, Vec<Reply>), KeyringError> {
        let address = session_address()?;
        let unreachable = |e: std::io::Error| {
            KeyringError::Unavailable(format!("cannot reach the D-Bus session bus at {address:?}: {e}"))
        };
        let stream = match &address {
            BusAddress::Path(path) => UnixStream::connect(path).map_err(unreachable)?,
            BusAddress::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(unreachable)?;
                UnixStream::connect_addr(&address).map_err(unreachable)?
            }
        };
        let mut bus = Bus { stream, serial: 0, buffer: Vec::with_capacity(4096) };
        let hello = Call {
            what: "the session bus's hello",
            bytes: method_call(
                "the session bus's hello",
                bus.next_serial(),
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &(),
            )?
            .bytes,
        };
        let mut calls = calls(&mut bus)?;
        calls.insert(0, hello);
        // EXTERNAL: the bus knows who we are from the socket; we name our uid.
        let uid: String = crate::fsutil::current_uid().to_string().bytes().map(|b| format!("{b:02x}")).collect();
        let mut bytes = format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").into_bytes();
        let replies = bus.exchange(deadline, &mut bytes, &calls, true)?;
        // The Hello's reply (our unique name) is not needed.
        Ok((bus, replies.into_iter().skip(1).collect()))
    }

    /// Send `calls` in one write, and read their replies.
    fn call(&mut self, deadline: Instant, calls: &[Call]) -> Result<Vec<Reply>, KeyringError> {
        self.exchange(deadline, &mut Vec::new(), calls, false)
    }

    /// Write `prefix` and `calls` at once; with `authenticating`, first read
    /// the answer to the `AUTH` the prefix holds.
    fn exchange(
        &mut self,
        deadline: Instant,
        prefix: &mut Vec<u8>,
        calls: &[Call],
        authenticating: bool,
    ) -> Result<Vec<Reply>, KeyringError> {
        let what = calls.first().map_or("a call", |c| c.what);
        let io = |e: std::io::Error| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => KeyringError::Timeout,
            _ => KeyringError::Call { call: what, message: format!("the session bus connection failed: {e}") },
        };
        for call in calls {
            prefix.extend_from_slice(&call.bytes);
        }
        self.stream.set_write_timeout(Some(remaining(deadline)?)).map_err(io)?;
        self.stream.write_all(prefix).map_err(io)?;
        if authenticating {
            self.read_auth_ok(deadline).map_err(|e| match e {
                ReadError::Io(e) => io(e),
                ReadError::Refused(e) => e,
            })?;
        }
        let serials: Vec<u32> =
            calls.iter().map(|c| u32::from_le_bytes([c.bytes[8], c.bytes[9], c.bytes[10], c.bytes[11]])).collect();
        let mut replies: Vec<Option<Reply>> = calls.iter().map(|_| None).collect();
        while replies.iter().any(Option::is_none) {
            let (serial, reply) = self.read_message(deadline).map_err(|e| match e {
                ReadError::Io(e) => io(e),
                ReadError::Refused(e) => e,
            })?;
            if let Some(at) = serials.iter().position(|s| Some(*s) == serial) {
                replies[at] = Some(reply);
            }
        }
        Ok(replies.into_iter().flatten().collect())
    }

    /// Read more bytes into the buffer, within `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let mut chunk = [0u8; 16 * 1024];
        self.stream.set_read_timeout(Some(remaining(deadline).map_err(ReadError::Refused)?)).map_err(ReadError::Io)?;
        let n = self.stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(std::io::Error::new(ErrorKind::UnexpectedEof, "the bus closed the connection")));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The server's answer to `AUTH`: `OK <guid>`, or a refusal.
    fn read_auth_ok(&mut self, deadline: Instant) -> Result<(), ReadError> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
                return if line.starts_with(b"OK ") {
                    Ok(())
                } else {
                    Err(ReadError::Refused(KeyringError::Unavailable(format!(
                        "the D-Bus session bus refused to authenticate us: {}",
                        printable(&String::from_utf8_lossy(&line))
                    ))))
                };
            }
            if self.buffer.len() > 4096 {
                return Err(ReadError::Refused(KeyringError::Unavailable(
                    "the D-Bus session bus answered the authentication with a line too long".into(),
                )));
            }
            self.fill(deadline)?;
        }
    }

    /// The next message that answers a call of ours: its reply serial and
    /// reply. Signals and calls from the bus are read and dropped.
    fn read_message(&mut self, deadline: Instant) -> Result<(Option<u32>, Reply), ReadError> {
        loop {
            while self.buffer.len() < 16 {
                self.fill(deadline)?;
            }
            let endian = match self.buffer[0] {
                b'l' => Endian::Little,
                b'B' => Endian::Big,
                _ => return Err(bad_message("it does not start with an endianness mark")),
            };
            let word = |at: usize| {
                let bytes = [self.buffer[at], self.buffer[at + 1], self.buffer[at + 2], self.buffer[at + 3]];
                match endian {
                    Endian::Little => u32::from_le_bytes(bytes),
                    Endian::Big => u32::from_be_bytes(bytes),
                }
            };
            let (body_len, fields_len) = (word(4) as usize, word(12) as usize);
            let header_len = (16 + fields_len).next_multiple_of(8);
            let total = header_len.saturating_add(body_len);
            if fields_len > MAX_MESSAGE_BYTES || total > MAX_MESSAGE_BYTES {
                return Err(bad_message("it is larger than 16 MiB"));
            }
            while self.buffer.len() < total {
                self.fill(deadline)?;
            }
            let message: Vec<u8> = self.buffer.drain(..total).collect();
            let context = Context::new_dbus(endian, 0);
            let header = Data::new(&message[..16 + fields_len], context);
            let (header, _): (Header<'_>, _) = header.deserialize().map_err(|e| bad_message_owned(e.to_string()))?;
            let (_, kind, _, _, _, _, fields) = header;
            if kind != METHOD_RETURN && kind != ERROR {
                continue;
            }
            let mut reply_serial = None;
            let mut signature = Signature::Unit;
            let mut error_name = String::new();
            for (code, value) in &fields {
                match (code, value) {
                    (&FIELD_REPLY_SERIAL, Value::U32(serial)) => reply_serial = Some(*serial),
                    (&FIELD_SIGNATURE, Value::Signature(s)) => signature = s.clone(),
                    (&FIELD_ERROR_NAME, Value::Str(name)) => error_name = name.to_string(),
                    _ => {}
                }
            }
            let body = message[header_len..].to_vec();
            let reply = if kind == ERROR {
                // An error's first argument, when it is a string, says why.
                let message = if signature.to_string_no_parens().starts_with('s') {
                    Data::new(body.as_slice(), context).deserialize::<String>().map(|(m, _)| m).unwrap_or_default()
                } else {
                    String::new()
                };
                Reply::Error { name: error_name, message }
            } else {
                Reply::Return { endian, signature, body }
            };
            return Ok((reply_serial, reply));
        }
    }
}

/// Why reading from the bus stopped.
enum ReadError {
    Io(std::io::Error),
    Refused(KeyringError),
}

fn bad_message(why: &str) -> ReadError {
    bad_message_owned(why.to_string())
}

fn bad_message_owned(why: String) -> ReadError {
    ReadError::Refused(KeyringError::Unavailable(format!(
        "the D-Bus session bus sent a message that is not D-Bus: {why}"
    )))
}

fn remaining(deadline: Instant) -> Result<std::time::Duration, KeyringError> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(KeyringError::Timeout),
    }
}

fn deadline() -> Instant {
    Instant::now() + KEYRING_TIMEOUT
}

impl Keyring {
    /// Whether a session bus may be there, found out at the cost of an
    /// environment lookup and a stat (without one, nothing else is tried).
    ///
    /// # Errors
    ///
    /// [`KeyringError::Unavailable`] when there is certainly none.
    pub fn check_bus() -> Result<(), KeyringError> {
        no_session_bus()
    }

    /// Connect to the Secret Service on the session bus and check that it
    /// has an unlocked default collection (where items are created). With
    /// `first_read`, the item the caller reads first is searched for and its
    /// secret fetched while connecting: a cache hit is these round trips.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Unavailable`] when nothing answers,
    /// [`KeyringError::Locked`], [`KeyringError::Timeout`].
    pub async fn connect(first_read: Option<&ItemId>) -> Result<Self, KeyringError> {
        Self::check_bus()?;
        let deadline = deadline();
        // Round trip 1: a session. It is sent alone: GNOME Keyring (46)
        // registers a client when its first message arrives, by asking the
        // bus for the client's pid, and messages that arrive before that
        // answer corrupt its memory (seen: the default alias resolved to
        // freed memory in one connection in 250, and the daemon crashing
        // after about 1,900 such connections).
        let (mut bus, replies) = Bus::connect(deadline, |bus| {
            Ok(vec![method_call(
                "a session",
                bus.next_serial(),
                DEST,
                SERVICE_PATH,
                SERVICE,
                "OpenSession",
                &("plain", Value::from("")),
            )?])
        })?;
        let (_, session) = replies
            .into_iter()
            .next()
            .ok_or(KeyringError::Timeout)?
            .body::<(OwnedValue, OwnedObjectPath)>("a session")?;
        // Round trip 2: the default collection, the search.
        let mut calls = vec![method_call(
            "the default collection",
            bus.next_serial(),
            DEST,
            SERVICE_PATH,
            SERVICE,
            "ReadAlias",
            &("default",),
        )?];
        if let Some(item) = first_read {
            calls.push(search_call(&mut bus, &item.attributes())?);
        }
        let mut replies = bus.call(deadline, &calls)?.into_iter();
        let mut next = || replies.next().ok_or(KeyringError::Timeout);
        let collection: OwnedObjectPath = next()?.body("the default collection")?;
        if collection.as_str() == "/" {
            return Err(KeyringError::Unavailable("the Secret Service has no default collection".into()));
        }
        // A failed search is asked again by `get`, which reports it.
        let searched = match first_read {
            Some(_) => next()?.body::<Search>("a search").ok(),
            None => None,
        };
        let keyring =
            Self { bus: Arc::new(Mutex::new(bus)), session, collection, first_read: Arc::new(Mutex::new(None)) };
        // Round trip 2: is the collection unlocked, and the secrets of the
        // unlocked items found.
        let mut calls = vec![keyring.method_call(
            "the default collection",
            keyring.collection.as_str(),
            "org.freedesktop.DBus.Properties",
            "Get",
            &(COLLECTION, "Locked"),
        )?];
        let fetch = searched.as_ref().is_some_and(|(unlocked, _)| !unlocked.is_empty());
        if let Some((unlocked, _)) = searched.as_ref().filter(|_| fetch) {
            calls.push(keyring.get_secrets(unlocked)?);
        }
        let mut replies = keyring.call(deadline, &calls)?.into_iter();
        let mut next = || replies.next().ok_or(KeyringError::Timeout);
        let locked = next()?.body::<OwnedValue>("the default collection").map_err(|e| match e {
            KeyringError::Call { message, .. } => {
                KeyringError::Unavailable(format!("the Secret Service has no default collection ({message})"))
            }
            other => other,
        })?;
        if bool::try_from(locked).unwrap_or(true) {
            return Err(KeyringError::Locked);
        }
        let secrets = if fetch { next()?.body::<Secrets>("reading a secret").ok() } else { None };
        if let (Some(item), Some(search)) = (first_read, searched) {
            *keyring.first_read.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(FirstRead { item: item.clone(), search, secrets });
        }
        Ok(keyring)
    }

    /// The call that fetches the secrets of `items`.
    fn get_secrets(&self, items: &[OwnedObjectPath]) -> Result<Call, KeyringError> {
        self.method_call("reading a secret", SERVICE_PATH, SERVICE, "GetSecrets", &(items, self.session.as_ref()))
    }

    /// Send `calls` and read their replies.
    fn call(&self, deadline: Instant, calls: &[Call]) -> Result<Vec<Reply>, KeyringError> {
        self.bus.lock().unwrap_or_else(|e| e.into_inner()).call(deadline, calls)
    }

    /// Make one call and decode its reply.
    fn call_one<T>(&self, deadline: Instant, call: Call) -> Result<T, KeyringError>
    where
        T: for<'d> DynamicDeserialize<'d>,
    {
        let what = call.what;
        let reply = self.call(deadline, std::slice::from_ref(&call))?.pop().ok_or(KeyringError::Timeout)?;
        reply.body(what)
    }

    fn next_serial(&self) -> u32 {
        self.bus.lock().unwrap_or_else(|e| e.into_inner()).next_serial()
    }

    fn method_call<B>(
        &self,
        what: &'static str,
        path: &str,
        interface: &str,
        member: &str,
        args: &B,
    ) -> Result<Call, KeyringError>
    where
        B: serde::Serialize + DynamicType,
    {
        method_call(what, self.next_serial(), DEST, path, interface, member, args)
    }

    /// The items with `attributes`, unlocking any that are locked (without a
    /// prompt: one that needs it is [`KeyringError::Locked`]).
    fn search(
        &self,
        deadline: Instant,
        attributes: &HashMap<&str, &str>,
    ) -> Result<Vec<OwnedObjectPath>, KeyringError> {
        let call = self.method_call("a search", SERVICE_PATH, SERVICE, "SearchItems", &(attributes,))?;
        let found = self.call_one(deadline, call)?;
        self.unlock_found(deadline, found)
    }

    fn unlock_found(
        &self,
        deadline: Instant,
        (mut unlocked, locked): Search,
    ) -> Result<Vec<OwnedObjectPath>, KeyringError> {
        if !locked.is_empty() {
            let call = self.method_call("unlocking", SERVICE_PATH, SERVICE, "Unlock", &(locked,))?;
            let (opened, prompt): (Vec<OwnedObjectPath>, OwnedObjectPath) = self.call_one(deadline, call)?;
            no_prompt(&prompt)?;
            unlocked.extend(opened);
        }
        Ok(unlocked)
    }

    /// The secret of `item`, if there is one.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn get(&self, item: &ItemId) -> Result<Option<Vec<u8>>, KeyringError> {
        let deadline = deadline();
        let prefetched = self.first_read.lock().unwrap_or_else(|e| e.into_inner()).take_if(|first| first.item == *item);
        let found = match prefetched {
            Some(FirstRead { search: (unlocked, locked), secrets: Some(secrets), .. }) if locked.is_empty() => {
                return Ok(first_secret(&unlocked, &secrets));
            }
            Some(FirstRead { search, .. }) => self.unlock_found(deadline, search)?,
            None => self.search(deadline, &item.attributes())?,
        };
        if found.is_empty() {
            return Ok(None);
        }
        let secrets: Secrets = self.call_one(deadline, self.get_secrets(&found)?)?;
        Ok(first_secret(&found, &secrets))
    }

    /// Store `secret` as `item` (replacing it), labelled `label` for people
    /// who browse the keyring.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn put(&self, item: &ItemId, label: &str, secret: &[u8]) -> Result<(), KeyringError> {
        let properties: HashMap<&str, Value<'_>> = HashMap::from([
            ("org.freedesktop.Secret.Item.Label", Value::from(label)),
            ("org.freedesktop.Secret.Item.Attributes", Value::from(item.attributes())),
        ]);
        let secret: (ObjectPath<'_>, &[u8], &[u8], &str) =
            (self.session.as_ref(), &[], secret, "application/octet-stream");
        let call = self.method_call(
            "storing a secret",
            self.collection.as_str(),
            COLLECTION,
            "CreateItem",
            &(properties, secret, true),
        )?;
        let (_, prompt): (OwnedObjectPath, OwnedObjectPath) = self.call_one(deadline(), call)?;
        no_prompt(&prompt)
    }

    /// Remove `item`; whether there was one.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn delete(&self, item: &ItemId) -> Result<bool, KeyringError> {
        let deadline = deadline();
        let found = self.search(deadline, &item.attributes())?;
        Ok(self.delete_found(deadline, found)? > 0)
    }

    /// Remove every item `selector` picks; how many there were, by kind.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn delete_all(&self, selector: Selector<'_>) -> Result<HashMap<&'static str, usize>, KeyringError> {
        let deadline = deadline();
        let mut removed = HashMap::new();
        for kind in ["credential", "state"] {
            if selector.kind.is_some_and(|k| k != kind) {
                continue;
            }
            let mut attributes = HashMap::from([("application", super::APPLICATION), ("kind", kind)]);
            if let Some(profile) = selector.profile {
                attributes.insert("profile", profile);
            }
            if let Some(key) = selector.key {
                attributes.insert("key", key);
            }
            let found = self.search(deadline, &attributes)?;
            removed.insert(kind, self.delete_found(deadline, found)?);
        }
        Ok(removed)
    }

    fn delete_found(&self, deadline: Instant, found: Vec<OwnedObjectPath>) -> Result<usize, KeyringError> {
        for path in &found {
            let call = self.method_call("removing a secret", path.as_str(), ITEM, "Delete", &())?;
            let prompt: OwnedObjectPath = self.call_one(deadline, call)?;
            no_prompt(&prompt)?;
        }
        Ok(found.len())
    }
}

fn search_call(bus: &mut Bus, attributes: &HashMap<&str, &str>) -> Result<Call, KeyringError> {
    method_call("a search", bus.next_serial(), DEST, SERVICE_PATH, SERVICE, "SearchItems", &(attributes,))
}

fn no_prompt(prompt: &ObjectPath<'_>) -> Result<(), KeyringError> {
    if prompt.as_str() == "/" { Ok(()) } else { Err(KeyringError::Locked) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_as_other_clients_read_them() {
        assert_eq!(
            parse_address("unix:path=/run/user/1000/bus").ok(),
            Some(BusAddress::Path("/run/user/1000/bus".into()))
        );
        assert_eq!(parse_address("unix:path=/tmp/a%20b,guid=0123").ok(), Some(BusAddress::Path("/tmp/a b".into())));
        assert_eq!(
            parse_address("tcp:host=localhost,port=1;unix:abstract=/tmp/dbus-x").ok(),
            Some(BusAddress::Abstract(b"/tmp/dbus-x".to_vec()))
        );
        let error = parse_address("tcp:host=localhost,port=1").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("no `unix:path=` or `unix:abstract=` entry"), "{error}");
        assert!(parse_address("unix:path=/tmp/%zz").is_err());
    }

    #[test]
    fn a_call_is_framed_as_the_specification_says() {
        let call =
            method_call("a search", 7, DEST, SERVICE_PATH, SERVICE, "SearchItems", &(HashMap::from([("a", "b")]),));
        let bytes = call.map(|c| c.bytes).unwrap_or_default();
        assert_eq!(&bytes[..4], &[b'l', METHOD_CALL, 0, 1]);
        assert_eq!(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]), 7);
        let body_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let fields_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        assert_eq!(bytes.len(), (16 + fields_len).next_multiple_of(8) + body_len);
        // The body signature is the arguments' (`a{ss}`), not a struct's.
        let fields = &bytes[16..16 + fields_len];
        assert!(fields.windows(7).any(|w| w == b"\x05a{ss}\0"), "{fields:?}");
    }

    /// A bus (here the other end of a socket pair) that says it sends more
    /// than the client accepts is refused before anything is buffered, and
    /// signals are read past.
    #[test]
    fn a_peer_is_bounded_and_signals_are_skipped() {
        let Ok((client, mut peer)) = UnixStream::pair() else { return };
        let mut bus = Bus { stream: client, serial: 0, buffer: Vec::new() };
        let signal = header(4, 1, 0, &[(FIELD_PATH, 'o', "/a"), (FIELD_MEMBER, 's', "Changed")]);
        // A method return answering serial 9 (a `u` field, which `header` does not write).
        let reply =
            [b'l', METHOD_RETURN, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, FIELD_REPLY_SERIAL, 1, b'u', 0, 9, 0, 0, 0];
        assert!(peer.write_all(&signal).is_ok());
        assert!(peer.write_all(&reply).is_ok());
        let answer = bus.read_message(deadline()).ok().map(|(serial, _)| serial);
        assert_eq!(answer, Some(Some(9)));

        let huge = header(METHOD_RETURN, 3, 100 * 1024 * 1024, &[]);
        assert!(peer.write_all(&huge).is_ok());
        let error = match bus.read_message(deadline()) {
            Err(ReadError::Refused(e)) => e.to_string(),
            _ => String::new(),
        };
        assert!(error.contains("larger than 16 MiB"), "{error}");
    }
}
