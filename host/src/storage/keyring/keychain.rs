//! The macOS login Keychain: generic passwords of service `credbroker`, one
//! per item, its account `<kind>/<profile>/<key>` (profile and key
//! percent-escaped, so accounts never collide). The Keychain holds secrets of
//! any size and replaces one in a single call, so an item is one entry.
//!
//! The first time credbroker reads an entry another build of it wrote,
//! macOS may ask the user to allow it (the entry's access list names the
//! program that created it).

use std::collections::HashMap;

use security_framework::item::{ItemClass, ItemSearchOptions, Limit};
use security_framework::passwords::{
    PasswordOptions, delete_generic_password_options, generic_password, set_generic_password_options,
};

use super::{APPLICATION, ItemId, KeyringError, Selector, escape};

/// `errSecItemNotFound`.
const NOT_FOUND: i32 = -25300;

/// The user's login Keychain. Its calls are local, so they run where they
/// are awaited.
#[derive(Debug, Clone)]
pub struct Keyring {
    _private: (),
}

fn account(kind: &str, profile: &str, key: &str) -> String {
    format!("{kind}/{}/{}", escape(profile), escape(key))
}

fn refused(call: &'static str) -> impl Fn(security_framework::base::Error) -> KeyringError {
    move |error| KeyringError::Call { call, message: error.to_string() }
}

/// The accounts of every credbroker entry.
fn accounts() -> Result<Vec<String>, KeyringError> {
    let found = ItemSearchOptions::new()
        .class(ItemClass::generic_password())
        .service(APPLICATION)
        .load_attributes(true)
        .limit(Limit::All)
        .search();
    match found {
        Ok(results) => Ok(results
            .iter()
            .filter_map(|result| result.simplify_dict())
            .filter_map(|attributes| attributes.get("acct").cloned())
            .collect()),
        Err(e) if e.code() == NOT_FOUND => Ok(Vec::new()),
        Err(e) => Err(refused("listing secrets")(e)),
    }
}

fn remove(account: &str) -> Result<bool, KeyringError> {
    match delete_generic_password_options(PasswordOptions::new_generic_password(APPLICATION, account)) {
        Ok(()) => Ok(true),
        Err(e) if e.code() == NOT_FOUND => Ok(false),
        Err(e) => Err(refused("removing a secret")(e)),
    }
}

impl Keyring {
    /// The login Keychain is part of every macOS session.
    ///
    /// # Errors
    ///
    /// Never.
    pub fn check_bus() -> Result<(), KeyringError> {
        Ok(())
    }

    /// The user's login Keychain.
    ///
    /// # Errors
    ///
    /// Never: a locked or refusing Keychain says so at its first call.
    pub async fn connect(_first_read: Option<&ItemId>) -> Result<Self, KeyringError> {
        Ok(Self { _private: () })
    }

    /// The secret of `item`, if there is one.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Keychain refuses.
    pub async fn get(&self, item: &ItemId) -> Result<Option<Vec<u8>>, KeyringError> {
        let account = account(item.kind, &item.profile, &item.key);
        match generic_password(PasswordOptions::new_generic_password(APPLICATION, &account)) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) if e.code() == NOT_FOUND => Ok(None),
            Err(e) => Err(refused("reading a secret")(e)),
        }
    }

    /// Store `secret` as `item` (replacing it), labelled `label` for people
    /// who browse Keychain Access.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Keychain refuses.
    pub async fn put(&self, item: &ItemId, label: &str, secret: &[u8]) -> Result<(), KeyringError> {
        let mut options =
            PasswordOptions::new_generic_password(APPLICATION, &account(item.kind, &item.profile, &item.key));
        options.set_label(label);
        set_generic_password_options(secret, options).map_err(refused("storing a secret"))
    }

    /// Remove `item`; whether there was one.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Keychain refuses.
    pub async fn delete(&self, item: &ItemId) -> Result<bool, KeyringError> {
        remove(&account(item.kind, &item.profile, &item.key))
    }

    /// Remove every item `selector` picks; how many there were, by kind.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Keychain refuses.
    pub async fn delete_all(&self, selector: Selector<'_>) -> Result<HashMap<&'static str, usize>, KeyringError> {
        let all = accounts()?;
        let mut removed = HashMap::new();
        for kind in ["credential", "state"] {
            if selector.kind.is_some_and(|k| k != kind) {
                continue;
            }
            let mut count = 0;
            for account in &all {
                let mut parts = account.splitn(3, '/');
                let (Some(of_kind), Some(profile), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                let wanted = of_kind == kind
                    && selector.profile.is_none_or(|p| escape(p) == profile)
                    && selector.key.is_none_or(|k| escape(k) == key);
                if wanted && remove(account)? {
                    count += 1;
                }
            }
            removed.insert(kind, count);
        }
        Ok(removed)
    }
}
