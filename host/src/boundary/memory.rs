//! The memory account of one plugin run: its linear memory and what the host
//! holds on its behalf, against one limit (`memory-mib`).
//!
//! A plugin can make the host keep memory it does not see in its own linear
//! memory: secrets it marked (and the automaton that finds them), buffered
//! output, connections and listeners, a response being read. Those bytes are
//! charged here as they are taken and released when they are dropped, and the
//! engine's resource limiter refuses growth of linear memory past what is
//! left, so `memory-mib` bounds both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::limits::{LimitExceeded, Limits};

#[derive(Debug)]
struct Account {
    limit: usize,
    mib: u64,
    /// Bytes of linear memory the plugin's instances have.
    linear: AtomicUsize,
    /// Bytes the host holds for the plugin.
    held: AtomicUsize,
}

/// One run's memory account. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryAccount(Arc<Account>);

/// Host memory taken from an account, given back when dropped.
#[derive(Debug)]
#[must_use = "the memory is released when this is dropped"]
pub struct Held {
    account: MemoryAccount,
    bytes: usize,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hold `bytes` in total from now on (more or less than before).
    ///
    /// # Errors
    ///
    /// [`LimitExceeded::Memory`] when growing past the account's limit; what
    /// was held stays held.
    pub fn resize(&mut self, bytes: usize) -> Result<(), LimitExceeded> {
        if bytes > self.bytes {
            self.account.take(bytes - self.bytes)?;
        } else {
            self.account.0.held.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.account.0.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl MemoryAccount {
    /// An account with the run's `memory-mib`.
    pub fn new(limits: &Limits) -> Self {
        Self(Arc::new(Account {
            limit: usize::try_from(limits.memory_bytes()).unwrap_or(usize::MAX),
            mib: limits.memory_mib,
            linear: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
        }))
    }

    fn take(&self, bytes: usize) -> Result<(), LimitExceeded> {
        let account = &self.0;
        let mut held = account.held.load(Ordering::Relaxed);
        loop {
            let total = held.saturating_add(bytes).saturating_add(account.linear.load(Ordering::Relaxed));
            if total > account.limit {
                return Err(LimitExceeded::Memory(account.mib));
            }
            match account.held.compare_exchange_weak(held, held + bytes, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => held = now,
            }
        }
    }

    /// Take `bytes` for as long as the returned [`Held`] lives.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded::Memory`] when the run's memory would exceed its limit.
    pub fn hold(&self, bytes: usize) -> Result<Held, LimitExceeded> {
        self.take(bytes)?;
        Ok(Held { account: self.clone(), bytes })
    }

    /// Bytes held for the plugin by the host right now.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Relaxed)
    }

    /// Whether linear memory may grow from `current` to `desired` bytes.
    fn grow_linear(&self, current: usize, desired: usize) -> Result<(), LimitExceeded> {
        let account = &self.0;
        let others = account.linear.load(Ordering::Relaxed).saturating_sub(current);
        if desired.saturating_add(others).saturating_add(self.held()) > account.limit {
            return Err(LimitExceeded::Memory(account.mib));
        }
        account.linear.store(others + desired, Ordering::Relaxed);
        Ok(())
    }
}

/// Enforces memory, table and instance limits for one store, with linear
/// memory and host-held memory in one account.
pub struct ResourceGuard {
    memory: MemoryAccount,
    table_elements: u32,
    instances: usize,
}

impl ResourceGuard {
    /// The guard for `limits`, charging `memory`.
    pub fn new(limits: &Limits, memory: MemoryAccount) -> Self {
        Self { memory, table_elements: limits.table_elements, instances: limits.instances as usize }
    }
}

impl wasmtime::ResourceLimiter for ResourceGuard {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // An error (not `Ok(false)`) traps at the grow, so the plugin cannot
        // mistake the limit for an allocator failure and the host can name it.
        self.memory.grow_linear(current, desired)?;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements as usize {
            return Err(LimitExceeded::TableElements(self.table_elements).into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_holdings_and_linear_memory_share_the_limit() {
        let limits = Limits { memory_mib: 1, ..Limits::default() };
        let account = MemoryAccount::new(&limits);
        let held = account.hold(600 * 1024).unwrap();
        assert!(account.grow_linear(0, 512 * 1024).is_err(), "600 KiB held + 512 KiB linear > 1 MiB");
        assert!(account.grow_linear(0, 256 * 1024).is_ok());
        assert_eq!(account.hold(400 * 1024).unwrap_err(), LimitExceeded::Memory(1));
        drop(held);
        assert_eq!(account.held(), 0);
        let mut growing = account.hold(1024).unwrap();
        growing.resize(512 * 1024).unwrap();
        assert!(growing.resize(900 * 1024).is_err());
        growing.resize(10).unwrap();
        assert_eq!(account.held(), 10);
    }
}
