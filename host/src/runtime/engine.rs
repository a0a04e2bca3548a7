//! The one wasmtime `Engine` configuration credbroker uses.
//!
//! Every setting that affects compiled code is pinned here, so a precompiled
//! artifact stays valid exactly as long as this binary does. Wasmtime's defaults
//! are not good enough for that: some read environment variables
//! (`WASMTIME_BACKTRACE_DETAILS`) and would silently change what the
//! compatibility hash says.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Strategy,
    WasmBacktraceDetails,
};

/// Maximum native stack a plugin may use for wasm frames before it traps with
/// "call stack exhausted".
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// How much of a pooled instance's dirtied linear memory stays mapped for the
/// next instance in its slot (the rest is discarded). A validator's review
/// touches tens to a few hundred KiB; with up to `instances * 2` slots this
/// bounds what idle slots keep resident.
const KEEP_RESIDENT_BYTES: usize = 512 * 1024;

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Allocate on demand: the cheapest start for a short-lived process such as
    /// `credbroker get`.
    OnDemand,
    /// Pre-reserve slots for up to `instances` concurrent instances, each with
    /// at most `memory_bytes` of linear memory: cheap instantiation per request
    /// in `credbroker serve`.
    Pooling {
        /// Concurrent instances.
        instances: u32,
        /// Largest linear memory of one instance.
        memory_bytes: u64,
    },
}

/// Build the engine.
///
/// # Errors
///
/// Fails when wasmtime rejects the configuration (it does not on supported
/// platforms) or the host CPU is not supported.
pub fn new_engine(allocation: Allocation) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .cranelift_nan_canonicalization(false)
        .wasm_component_model(true)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20))
        // Pinned: the default reads WASMTIME_BACKTRACE_DETAILS.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable)
        .generate_address_map(true)
        .debug_info(false)
        .epoch_interruption(true)
        .consume_fuel(false)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + 1024 * 1024)
        .parallel_compilation(true)
        .table_lazy_init(true)
        .signals_based_traps(true);
    config.native_unwind_info(true);
    if let Allocation::Pooling { instances, memory_bytes } = allocation {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX));
        // By default a slot's memory is reset by discarding it (madvise): the
        // next review in that slot page-faults its working set back in, and
        // every discard interrupts the other cores to flush their TLBs. Where
        // Linux (6.7+) can report exactly which pages an instance dirtied,
        // rewrite just those instead and keep them mapped (in a profile of
        // the token-file benchmark, discarding and faulting back in took about
        // a tenth of the server's CPU time). Without that report wasmtime would
        // rewrite the lowest pages blindly, which suits no Rust plugin (the
        // low megabyte is its mostly untouched stack), so it stays off.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pooling
                .pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(64 * 1024);
        }
        // Copy-on-write memory images make each of many instantiations cheap,
        // and a long-running server compiles once: optimise the code.
        // Validators with a setup are recompiled at every reload as the
        // image of their new state; their functions are unchanged, so the
        // incremental cache answers for those and only the data is new.
        config
            .cranelift_opt_level(OptLevel::Speed)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        config.enable_incremental_compilation(Arc::new(CompiledFunctions::default()))?;
    } else {
        // One instance per process: copying the data segments is cheaper than
        // building a memory image for it. A provider mostly waits on I/O, and
        // its first run compiles it while kubectl waits: compile fast. Winch,
        // wasmtime's baseline compiler (tier 1 on x86_64, epoch interruption
        // supported), compiles about twice as fast as Cranelift at opt-level
        // none; elsewhere Cranelift it is.
        config
            .strategy(if cfg!(target_arch = "x86_64") { Strategy::Winch } else { Strategy::Cranelift })
            .cranelift_opt_level(OptLevel::None)
            .memory_init_cow(false)
            .allocation_strategy(InstanceAllocationStrategy::OnDemand);
    }
    Engine::new(&config)
}

/// Cranelift's incremental compilation cache, in memory: one entry per
/// function ever compiled by this engine (bounded by the plugins loaded).
#[derive(Debug, Default)]
struct CompiledFunctions(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

impl wasmtime::CacheStore for CompiledFunctions {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).map(|v| Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_vec(), value);
        true
    }
}

/// A stable fingerprint of everything that makes a precompiled artifact
/// loadable by `engine`: wasmtime's version, its configuration and the host CPU
/// features. Artifacts are filed under it, so a different build never even
/// tries a foreign artifact.
pub fn compatibility_fingerprint(engine: &Engine) -> String {
    // DefaultHasher::new() uses fixed keys, so the value is stable for one build
    // of this binary, which is all the artifact cache needs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
