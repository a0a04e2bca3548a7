//! Resource limits of one plugin run. Always on; the operator can tighten or
//! loosen them per plugin.

use std::time::Duration;

use serde::Deserialize;

/// Limits of one plugin run, as configured (`[profiles.NAME.limits]` or a
/// validator's `limits`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// Time the plugin's code may run, with the host's work on its behalf
    /// (redacting its log lines, checking signatures, parsing what it sends and
    /// receives), in milliseconds. Time spent waiting (for the network, the
    /// user, a sleep, a worker thread) does not count; see `timeout-ms` for that.
    pub cpu_ms: u64,
    /// Wall-clock time for the whole call, host calls included, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory, with what the host holds for the plugin (marked
    /// secrets, buffers, connections), in MiB.
    pub memory_mib: u64,
    /// Bytes the plugin may pass into, or receive from, one host call, and the
    /// largest result of one of its exports, counted as encoded bytes.
    pub max_call_bytes: u64,
    /// Timeout of one outbound network operation (an HTTP request, an LDAP
    /// connect, bind or search) or run of a credential helper, in milliseconds.
    pub network_timeout_ms: u64,
    /// Bytes of output per run: log calls, stdout/stderr, prompts and messages
    /// for the terminal.
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

    /// Check every value is within its documented range ([`RANGES`]).
    ///
    /// # Errors
    ///
    /// A message naming the offending limit and its range.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            self.cpu_ms,
            self.timeout_ms,
            self.memory_mib,
            self.max_call_bytes,
            self.network_timeout_ms,
            self.log_bytes,
            u64::from(self.instances),
            u64::from(self.table_elements),
        ];
        for ((name, min, max), value) in RANGES.iter().zip(values) {
            if !(*min..=*max).contains(&value) {
                return Err(format!("limit `{name}` must be between {min} and {max}, not {value}"));
            }
        }
        Ok(())
    }
}

/// Every limit with its allowed range (inclusive), in the order of the fields.
pub const RANGES: &[(&str, u64, u64)] = &[
    ("cpu-ms", 1, 600_000),
    ("timeout-ms", 1, 3_600_000),
    ("memory-mib", 1, 4096),
    ("max-call-bytes", 1, 256 * 1024 * 1024),
    ("network-timeout-ms", 1, 600_000),
    ("log-bytes", 0, 64 * 1024 * 1024),
    ("instances", 1, 1000),
    ("table-elements", 1, 1_000_000),
];

/// A limit a plugin ran into. Carried through wasmtime as the trap's error so
/// the host can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The plugin's code (and the host's work on its behalf) ran longer than `cpu-ms`.
    #[error("exceeded its CPU time limit of {0} ms")]
    CpuTime(u64),
    /// The plugin's memory, with what the host holds for it, would pass `memory-mib`.
    #[error("exceeded its memory limit of {0} MiB")]
    Memory(u64),
    /// The plugin tried to grow its tables past `table-elements`.
    #[error("exceeded its table limit of {0} elements (table-elements)")]
    TableElements(u32),
    /// The plugin tried to create more wasm instances than `instances`.
    #[error("exceeded its limit of {0} wasm instances (instances)")]
    Instances(u32),
    /// A host call without an error channel got arguments or gave a result
    /// over `max-call-bytes`.
    #[error("passed {bytes} bytes through `{call}`, over its per-call limit (max-call-bytes) of {limit} bytes")]
    CallBytes {
        /// The host function.
        call: &'static str,
        /// The encoded size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The plugin marked more secrets than the host keeps for one run.
    #[error("marked more secrets than one run may hold ({})", crate::boundary::redact::TooManySecrets)]
    Secrets,
}
