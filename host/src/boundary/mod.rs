//! The host-call boundary: what every call from a plugin into the host goes
//! through, whichever capability it reaches.
//!
//! The wasm sandbox keeps a plugin from touching the host directly; this layer
//! keeps the host's side of each call from becoming the way around it:
//!
//! - **bytes**: every call's arguments and results are measured as encoded
//!   bytes ([`wire`]) against `max-call-bytes` ([`CapView::call`]);
//! - **time**: the time the host works on the plugin's behalf is charged to
//!   its CPU account, waiting is not ([`meter`]); long host loops check the
//!   run's deadline ([`Boundary::check_time`]);
//! - **memory**: what the host keeps for the plugin (secrets, buffers,
//!   connections) is charged to the same account as its linear memory
//!   ([`memory`]);
//! - **text**: everything the plugin says that a person may read is redacted,
//!   escaped and bounded on one channel ([`output`], [`text`], [`redact`]).
//!
//! Capabilities implement their WIT interface on a [`CapView`] (their own
//! state plus the run's [`Boundary`]) and run each call's body through
//! [`CapView::call`] or [`CapView::call_or_trap`], so none of them has its own
//! version of these checks.

pub mod memory;
pub mod meter;
pub mod output;
pub mod redact;
pub mod text;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use self::memory::MemoryAccount;
use self::meter::CpuMeter;
use self::output::PluginOutput;
use self::wire::WireSize;
use crate::bindings::types::HostError;
use crate::limits::{LimitExceeded, Limits};

/// What every host call of one run is checked and charged against.
pub struct Boundary {
    plugin: Arc<str>,
    limits: Limits,
    interactive: bool,
    output: PluginOutput,
    memory: MemoryAccount,
    meter: Arc<CpuMeter>,
    deadline: Instant,
}

/// A capability's view of one run, as its host functions see it: its own
/// state and the run's boundary.
pub struct CapView<'a, S> {
    /// The capability's state for this run.
    pub state: &'a mut S,
    /// The run's boundary.
    pub boundary: &'a mut Boundary,
}

/// The [`wasmtime::component::HasData`] marker of a capability whose state
/// is `S`: what its bindings' `add_to_linker` is instantiated with.
pub struct ViewOf<S>(std::marker::PhantomData<S>);

impl<S: 'static> wasmtime::component::HasData for ViewOf<S> {
    type Data<'a> = CapView<'a, S>;
}

impl Boundary {
    /// The boundary of one run of `plugin` under `limits`.
    pub fn new(
        plugin: Arc<str>,
        limits: Limits,
        interactive: bool,
        output: PluginOutput,
        memory: MemoryAccount,
        meter: Arc<CpuMeter>,
    ) -> Self {
        let deadline = Instant::now() + limits.timeout();
        Self { plugin, limits, interactive, output, memory, meter, deadline }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// The run's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the user may be asked for input.
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    /// The run's output channel (logs, terminal, errors).
    pub fn output(&self) -> &PluginOutput {
        &self.output
    }

    /// The run's memory account.
    pub fn memory(&self) -> &MemoryAccount {
        &self.memory
    }

    /// `max-call-bytes`, as a size.
    pub fn max_call_bytes(&self) -> usize {
        usize::try_from(self.limits.max_call_bytes).unwrap_or(usize::MAX)
    }

    /// Refuse arguments of `bytes` over `max-call-bytes`.
    ///
    /// # Errors
    ///
    /// [`HostError::Invalid`] naming the call, the size and the limit.
    pub fn accept(&self, call: &str, bytes: usize) -> Result<(), HostError> {
        if bytes > self.max_call_bytes() {
            return Err(HostError::Invalid(format!(
                "`{call}`: {bytes} bytes of arguments exceed the per-call limit (max-call-bytes) of {} bytes",
                self.limits.max_call_bytes
            )));
        }
        Ok(())
    }

    /// Refuse a result over `max-call-bytes`.
    ///
    /// # Errors
    ///
    /// [`HostError::Invalid`] naming the call, the size and the limit.
    pub fn deliver<R: WireSize>(&self, call: &str, result: R) -> Result<R, HostError> {
        let bytes = result.wire_size();
        if bytes > self.max_call_bytes() {
            return Err(HostError::Invalid(format!(
                "`{call}`: a result of {bytes} bytes exceeds the per-call limit (max-call-bytes) of {} bytes",
                self.limits.max_call_bytes
            )));
        }
        Ok(result)
    }

    /// Time left before the run's wall-clock deadline (`timeout-ms`).
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The timeout of one network operation: `network-timeout-ms`. (The
    /// run's own deadline cancels the call when it comes first, and the run
    /// then ends with the time-limit error.)
    pub fn network_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.network_timeout_ms)
    }

    /// For long host loops: stop once the run is over its CPU budget or past
    /// its deadline.
    ///
    /// # Errors
    ///
    /// [`HostError::Timeout`] saying which.
    pub fn check_time(&self) -> Result<(), HostError> {
        if self.meter.over_budget() {
            return Err(HostError::Timeout(format!(
                "the plugin's CPU time limit of {} ms ran out during host work",
                self.limits.cpu_ms
            )));
        }
        if self.time_left().is_zero() {
            return Err(HostError::Timeout(format!(
                "the plugin's time limit of {} ms ran out",
                self.limits.timeout_ms
            )));
        }
        Ok(())
    }
}

impl<S> CapView<'_, S> {
    /// Run one host call that has an error channel: arguments of `args`
    /// encoded bytes and the result are checked against `max-call-bytes`
    /// (either over it is an `invalid` error the plugin sees).
    ///
    /// # Errors
    ///
    /// Only the traps `body` itself raises.
    pub async fn call<R: WireSize>(
        &mut self,
        name: &'static str,
        args: usize,
        body: impl AsyncFnOnce(&mut S, &mut Boundary) -> wasmtime::Result<Result<R, HostError>>,
    ) -> wasmtime::Result<Result<R, HostError>> {
        if let Err(e) = self.boundary.accept(name, args) {
            return Ok(Err(e));
        }
        Ok(match body(self.state, self.boundary).await? {
            Ok(result) => self.boundary.deliver(name, result),
            Err(error) => Err(error),
        })
    }

    /// Run one host call that has no error channel: arguments or a result
    /// over `max-call-bytes` stop the plugin, naming the call and the limit.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded::CallBytes`] as a trap, and the traps of `body`.
    pub async fn call_or_trap<R: WireSize>(
        &mut self,
        name: &'static str,
        args: usize,
        body: impl AsyncFnOnce(&mut S, &mut Boundary) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let limit = self.boundary.limits.max_call_bytes;
        if args > self.boundary.max_call_bytes() {
            return Err(LimitExceeded::CallBytes { call: name, bytes: args as u64, limit }.into());
        }
        let result = body(self.state, self.boundary).await?;
        let bytes = result.wire_size();
        if bytes > self.boundary.max_call_bytes() {
            return Err(LimitExceeded::CallBytes { call: name, bytes: bytes as u64, limit }.into());
        }
        Ok(result)
    }
}
