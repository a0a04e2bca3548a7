//! Resource limits of one plugin run. Always on; the operator can tighten or
//! loosen them per plugin.

use std::time::Duration;

use serde::Deserialize;

/// Limits of one plugin run, as configured (`[profiles.NAME.limits]` or a
/// validator's `limits`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// Time the plugin's own code may run, in milliseconds. Time spent waiting
    /// (in host calls, sleeping, or for a worker thread) does not count; see
    /// `timeout-ms` for that.
    pub cpu_ms: u64,
    /// Wall-clock time for the whole call, host calls included, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory, in MiB.
    pub memory_mib: u64,
    /// Bytes the plugin may pass into, or receive from, one host call.
    pub max_call_bytes: u64,
    /// Timeout of one outbound network operation (an HTTP request, an LDAP
    /// connect, bind or search), in milliseconds.
    pub network_timeout_ms: u64,
    /// Bytes of log output (log calls and stdout/stderr) kept per run.
    pub log_bytes: u64,
    /// Wasm instances (core and component) the plugin may create.
    pub instances: u32,
    /// Elements across the plugin's tables.
    pub table_elements: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_ms: 2_000,
            timeout_ms: 60_000,
            memory_mib: 64,
            max_call_bytes: 1024 * 1024,
            network_timeout_ms: 10_000,
            log_bytes: 64 * 1024,
            instances: 32,
            table_elements: 100_000,
        }
    }
}

impl Limits {
    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib.saturating_mul(1024 * 1024)
    }

    /// CPU time budget.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }

    /// Wall-clock budget of the whole call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Check the values make sense.
    ///
    /// # Errors
    ///
    /// A message naming the offending limit.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("cpu-ms", self.cpu_ms),
            ("timeout-ms", self.timeout_ms),
            ("memory-mib", self.memory_mib),
            ("max-call-bytes", self.max_call_bytes),
            ("network-timeout-ms", self.network_timeout_ms),
            ("instances", u64::from(self.instances)),
            ("table-elements", u64::from(self.table_elements)),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("limit `{name}` must be greater than 0"));
            }
        }
        if self.memory_mib > 4096 {
            return Err("limit `memory-mib` must be at most 4096 (32-bit wasm memory)".into());
        }
        Ok(())
    }
}

/// A limit a plugin ran into. Carried through wasmtime as the trap's error so
/// the host can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The plugin's code ran longer than `cpu-ms`.
    #[error("exceeded its CPU time limit of {0} ms")]
    CpuTime(u64),
    /// The plugin tried to grow its memory past `memory-mib`.
    #[error("exceeded its memory limit of {0} MiB")]
    Memory(u64),
    /// The plugin tried to grow its tables past `table-elements`.
    #[error("exceeded its table limit of {0} elements")]
    TableElements(u32),
}

/// Enforces memory, table and instance limits for one store.
pub struct ResourceGuard {
    memory_bytes: u64,
    memory_mib: u64,
    table_elements: u32,
    instances: usize,
}

impl ResourceGuard {
    /// The guard for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes(),
            memory_mib: limits.memory_mib,
            table_elements: limits.table_elements,
            instances: limits.instances as usize,
        }
    }
}

impl wasmtime::ResourceLimiter for ResourceGuard {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            // An error (not `Ok(false)`) traps at the grow, so the plugin cannot
            // mistake the limit for an allocator failure and the host can name it.
            return Err(LimitExceeded::Memory(self.memory_mib).into());
        }
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
