//! The Secret Service on Linux (GNOME Keyring, KWallet, KeePassXC), spoken to
//! over the user's D-Bus session bus.
//!
//! A cached credential is read on every kubectl command, so this is a lean
//! client of the calls that takes: connect (the socket directly, for a plain
//! `unix:path=` address), then in one round trip open a session, ask whether
//! the default collection is unlocked and search the item the caller reads
//! first, then fetch its secret. Proxies are not used: a zbus proxy fetches
//! and watches every property of its object, which costs round trips nothing
//! here needs.
//!
//! Secrets travel over the session bus in a `plain` session. The bus is a
//! socket only the user can open, and any process that can talk to it can ask
//! the Secret Service for the item itself, so an encrypted session would
//! guard against nobody this does not; it would cost a Diffie-Hellman key
//! exchange on every kubectl command.

use std::collections::HashMap;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use super::{ItemId, KEYRING_TIMEOUT, KeyringError, Selector};

const DEST: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE: &str = "org.freedesktop.Secret.Service";
const DEFAULT_COLLECTION: &str = "/org/freedesktop/secrets/aliases/default";
const COLLECTION: &str = "org.freedesktop.Secret.Collection";
const ITEM: &str = "org.freedesktop.Secret.Item";

/// A secret as the Secret Service hands it over: session, parameters,
/// value, content type.
type Secret = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

/// A connection to the Secret Service.
///
/// Its D-Bus connection is driven by the tokio runtime it was made on:
/// use it within that runtime (a current-thread runtime drives it while
/// something on it is blocked on).
#[derive(Debug, Clone)]
pub struct Keyring {
    conn: zbus::Connection,
    /// The `plain` session every secret is sent in, opened once.
    session: OwnedObjectPath,
    /// The search for the item the caller said it reads first, asked while
    /// connecting (one round trip less on a cache hit), taken by its `get`.
    first_read: std::sync::Arc<std::sync::Mutex<Option<Found>>>,
}

/// An item and the paths a search for it found.
type Found = (ItemId, Vec<OwnedObjectPath>);

/// The session bus's socket when it is a plain `unix:path=` address (or the
/// default `$XDG_RUNTIME_DIR/bus`): connected here, in one system call,
/// rather than by zbus, which starts a thread to connect.
fn session_socket() -> Option<std::path::PathBuf> {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(address) if !address.is_empty() => {
            // One address (no `;` alternatives), only a path (a `guid=` is optional).
            let rest = address.strip_prefix("unix:")?;
            if rest.contains(';') {
                return None;
            }
            let mut path = None;
            for pair in rest.split(',') {
                match pair.split_once('=')? {
                    ("path", value) if !value.contains('%') => path = Some(std::path::PathBuf::from(value)),
                    ("guid", _) => {}
                    _ => return None,
                }
            }
            path
        }
        _ => Some(default_socket()),
    }
}

fn default_socket() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| format!("/run/user/{}", crate::fsutil::current_uid()).into())
        .join("bus")
}

async fn connect_bus() -> Result<zbus::Connection, KeyringError> {
    let builder = match session_socket() {
        Some(path) => {
            let connected = std::os::unix::net::UnixStream::connect(&path)
                .and_then(|stream| stream.set_nonblocking(true).map(|()| stream))
                .and_then(tokio::net::UnixStream::from_std)
                .map_err(|e| {
                    KeyringError::Unavailable(format!(
                        "cannot reach the D-Bus session bus at `{}`: {e}",
                        path.display()
                    ))
                })?;
            zbus::connection::Builder::unix_stream(connected)
        }
        None => zbus::connection::Builder::session().map_err(unavailable)?,
    };
    builder.build().await.map_err(unavailable)
}

fn unavailable(error: zbus::Error) -> KeyringError {
    let unset = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty());
    KeyringError::Unavailable(format!(
        "cannot reach the D-Bus session bus{}: {error}",
        if unset { " (DBUS_SESSION_BUS_ADDRESS is unset)" } else { "" }
    ))
}

fn refused(call: &'static str) -> impl Fn(zbus::Error) -> KeyringError {
    move |error| match &error {
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            KeyringError::Unavailable("no Secret Service on the D-Bus session bus".into())
        }
        zbus::Error::MethodError(name, _, _) if name.as_str() == "org.freedesktop.Secret.Error.IsLocked" => {
            KeyringError::Locked
        }
        zbus::Error::MethodError(name, detail, _) => {
            KeyringError::Call { call, message: format!("{name}: {}", detail.as_deref().unwrap_or("")) }
        }
        _ => KeyringError::Call { call, message: error.to_string() },
    }
}

/// Where zbus would look without DBUS_SESSION_BUS_ADDRESS, said before
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

async fn call<B, R>(
    conn: &zbus::Connection,
    what: &'static str,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> Result<R, KeyringError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let reply = conn.call_method(Some(DEST), path, Some(interface), method, body).await.map_err(refused(what))?;
    reply.body().deserialize::<R>().map_err(|e| KeyringError::Call { call: what, message: e.to_string() })
}

async fn open_session(conn: &zbus::Connection) -> Result<OwnedObjectPath, KeyringError> {
    let (_, session): (OwnedValue, OwnedObjectPath) =
        call(conn, "a session", SERVICE_PATH, SERVICE, "OpenSession", &("plain", Value::from(""))).await?;
    Ok(session)
}

async fn bounded<T>(work: impl Future<Output = Result<T, KeyringError>>) -> Result<T, KeyringError> {
    tokio::time::timeout(KEYRING_TIMEOUT, work).await.unwrap_or(Err(KeyringError::Timeout))
}

/// The items with `attributes`, unlocking any that are locked (without a
/// prompt: one that needs it is [`KeyringError::Locked`]).
async fn search(
    conn: &zbus::Connection,
    attributes: HashMap<&str, &str>,
) -> Result<Vec<OwnedObjectPath>, KeyringError> {
    let (mut unlocked, locked): (Vec<OwnedObjectPath>, Vec<OwnedObjectPath>) =
        call(conn, "a search", SERVICE_PATH, SERVICE, "SearchItems", &(attributes,)).await?;
    if !locked.is_empty() {
        let (opened, prompt): (Vec<OwnedObjectPath>, OwnedObjectPath) =
            call(conn, "unlocking", SERVICE_PATH, SERVICE, "Unlock", &(locked,)).await?;
        no_prompt(&prompt)?;
        unlocked.extend(opened);
    }
    Ok(unlocked)
}

fn no_prompt(prompt: &ObjectPath<'_>) -> Result<(), KeyringError> {
    if prompt.as_str() == "/" { Ok(()) } else { Err(KeyringError::Locked) }
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
    /// `first_read`, the item the caller reads first is searched for in the
    /// same round trip.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Unavailable`] when nothing answers,
    /// [`KeyringError::Locked`], [`KeyringError::Timeout`].
    pub async fn connect(first_read: Option<&ItemId>) -> Result<Self, KeyringError> {
        Self::check_bus()?;
        bounded(async {
            let conn = connect_bus().await?;
            // All three questions at once: one round trip.
            let search = async {
                match first_read {
                    Some(item) => Some(search(&conn, item.attributes()).await),
                    None => None,
                }
            };
            let (session, locked, searched) = tokio::join!(
                open_session(&conn),
                call::<_, OwnedValue>(
                    &conn,
                    "the default collection",
                    DEFAULT_COLLECTION,
                    "org.freedesktop.DBus.Properties",
                    "Get",
                    &(COLLECTION, "Locked"),
                ),
                search
            );
            let locked = locked.map_err(|e| match e {
                KeyringError::Call { message, .. } => {
                    KeyringError::Unavailable(format!("the Secret Service has no default collection ({message})"))
                }
                other => other,
            })?;
            if bool::try_from(locked).unwrap_or(true) {
                return Err(KeyringError::Locked);
            }
            // A failed search is asked again by `get`, which reports it.
            let first = match (first_read, searched) {
                (Some(item), Some(Ok(found))) => Some((item.clone(), found)),
                _ => None,
            };
            Ok(Self { conn, session: session?, first_read: std::sync::Arc::new(std::sync::Mutex::new(first)) })
        })
        .await
    }

    async fn search(&self, attributes: HashMap<&str, &str>) -> Result<Vec<OwnedObjectPath>, KeyringError> {
        search(&self.conn, attributes).await
    }

    /// The secret of `item`, if there is one.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn get(&self, item: &ItemId) -> Result<Option<Vec<u8>>, KeyringError> {
        bounded(async {
            let prefetched = self
                .first_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take_if(|(first, _)| first == item)
                .map(|(_, found)| found);
            let found = match prefetched {
                Some(found) => found,
                None => self.search(item.attributes()).await?,
            };
            if found.is_empty() {
                return Ok(None);
            }
            let secrets: HashMap<OwnedObjectPath, Secret> =
                call(&self.conn, "reading a secret", SERVICE_PATH, SERVICE, "GetSecrets", &(&found, &self.session))
                    .await?;
            // Several matches (another client wrote one too): any is ours, take the first found.
            Ok(found.iter().find_map(|path| secrets.get(path)).map(|secret| secret.2.clone()))
        })
        .await
    }

    /// Store `secret` as `item` (replacing it), labelled `label` for people
    /// who browse the keyring.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn put(&self, item: &ItemId, label: &str, secret: &[u8]) -> Result<(), KeyringError> {
        bounded(async {
            let properties: HashMap<&str, Value<'_>> = HashMap::from([
                ("org.freedesktop.Secret.Item.Label", Value::from(label)),
                ("org.freedesktop.Secret.Item.Attributes", Value::from(item.attributes())),
            ]);
            let secret: (ObjectPath<'_>, &[u8], &[u8], &str) =
                (self.session.as_ref(), &[], secret, "application/octet-stream");
            let (_, prompt): (OwnedObjectPath, OwnedObjectPath) = call(
                &self.conn,
                "storing a secret",
                DEFAULT_COLLECTION,
                COLLECTION,
                "CreateItem",
                &(properties, secret, true),
            )
            .await?;
            no_prompt(&prompt)
        })
        .await
    }

    /// Remove `item`; whether there was one.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn delete(&self, item: &ItemId) -> Result<bool, KeyringError> {
        bounded(async { Ok(self.delete_found(self.search(item.attributes()).await?).await? > 0) }).await
    }

    /// Remove every item `selector` picks; how many there were, by kind.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when the Secret Service fails or does not answer.
    pub async fn delete_all(&self, selector: Selector<'_>) -> Result<HashMap<&'static str, usize>, KeyringError> {
        bounded(async {
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
                let found = self.search(attributes).await?;
                removed.insert(kind, self.delete_found(found).await?);
            }
            Ok(removed)
        })
        .await
    }

    async fn delete_found(&self, found: Vec<OwnedObjectPath>) -> Result<usize, KeyringError> {
        for path in &found {
            let prompt: OwnedObjectPath =
                call(&self.conn, "removing a secret", path.as_str(), ITEM, "Delete", &()).await?;
            no_prompt(&prompt)?;
        }
        Ok(found.len())
    }
}
