//! A validator's state after `validator-setup`, kept as the image every
//! review starts from (the Wizer idea, with wasmtime's own `wasmtime-wizer`).
//!
//! At load the host instruments the component (exports that read its
//! memories and globals), runs `setup` in it with the validator's sandbox,
//! reads the resulting state and writes it into a new component whose data
//! segments are that state. Compiled, with copy-on-write memory images, each
//! review instantiates it in microseconds whatever the setup built (a parsed
//! token file, compiled CEL): the configuration costs once per load, and
//! every review still starts from a pristine copy, seeing nothing another
//! review did.
//!
//! The state is all that is kept: a host resource the setup opened (a
//! stream, a connection) would be a dangling handle in every review, so a
//! setup that leaves one open is refused a snapshot (its setup then runs in
//! each review, and the load says so).

use std::sync::Arc;

use wasmtime::component::{Component, Instance, Lift, WasmList};
use wasmtime::{Engine, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::capabilities::HostState;

/// Why a validator's setup could not be snapshotted.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The component has a shape the pre-initializer does not handle.
    #[error("the component cannot be instrumented for a snapshot: {0}")]
    Instrument(String),
    /// Setup left host resources open (how many kinds of them).
    #[error(
        "its setup left host resources open (a stream it wrote stdout or stderr with, a connection, a listener), \
         which a snapshot cannot keep"
    )]
    OpenResources(usize),
    /// Reading the state or building the new component failed.
    #[error("taking the snapshot failed: {0}")]
    Snapshot(String),
    /// The snapshot does not compile.
    #[error("the snapshot does not compile: {0}")]
    Compile(String),
}

/// The component, instrumented for reading its state after setup.
pub struct Instrumented<'a> {
    context: wasmtime_wizer::ComponentContext<'a>,
    /// The instrumented component's bytes.
    pub wasm: Vec<u8>,
}

/// Instrument `wasm` (a component) so its state can be read after setup.
///
/// # Errors
///
/// [`SnapshotError::Instrument`] for a component the pre-initializer cannot handle.
pub fn instrument(wasm: &[u8]) -> Result<Instrumented<'_>, SnapshotError> {
    let (context, wasm) =
        Wizer::new().instrument_component(wasm).map_err(|e| SnapshotError::Instrument(format!("{e:#}")))?;
    Ok(Instrumented { context, wasm })
}

/// A set-up instance, read through the instrumentation's exports.
struct SetUp<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
}

impl SetUp<'_> {
    async fn call<R: Lift + Send + Sync + 'static, T>(
        &mut self,
        instance: &str,
        func: &str,
        take: impl FnOnce(&Store<HostState>, R) -> T,
    ) -> Result<T, String> {
        let (_, exported) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .ok_or_else(|| format!("no export `{instance}`"))?;
        let (_, func_index) = self
            .instance
            .get_export(&mut *self.store, Some(&exported), func)
            .ok_or_else(|| format!("no export `{instance}#{func}`"))?;
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, func_index)
            .map_err(|e| format!("{instance}#{func}: {e:#}"))?;
        let (value,) = typed.call_async(&mut *self.store, ()).await.map_err(|e| format!("{instance}#{func}: {e:#}"))?;
        Ok(take(self.store, value))
    }
}

// The trait cannot fail: the instrumentation's accessors exist by
// construction; a failure is kept and reported after the snapshot.
struct Reader<'a, 'b> {
    set_up: SetUp<'a>,
    failure: &'b mut Option<String>,
}

impl Reader<'_, '_> {
    async fn call<R: Lift + Send + Sync + 'static, T: Default>(
        &mut self,
        instance: &str,
        func: &str,
        take: impl FnOnce(&Store<HostState>, R) -> T,
    ) -> T {
        match self.set_up.call(instance, func, take).await {
            Ok(value) => value,
            Err(e) => {
                self.failure.get_or_insert(e);
                T::default()
            }
        }
    }
}

impl ComponentInstanceState for Reader<'_, '_> {
    async fn call_func_ret_list_u8(&mut self, instance: &str, func: &str, contents: impl FnOnce(&[u8]) + Send) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        })
        .await;
        if let Some(contents) = contents {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, value: i32| value).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, value: i64| value).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, value: f32| value.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, value: f64| value.to_bits()).await
    }
}

/// Read the state of `instance` (set up in `store`, instantiated from
/// `instrumented`) into a new component, and compile it.
///
/// # Errors
///
/// [`SnapshotError`] saying which step failed.
pub async fn take(
    engine: &Engine,
    instrumented: &Instrumented<'_>,
    store: &mut Store<HostState>,
    instance: Instance,
) -> Result<Arc<Component>, SnapshotError> {
    let open = store.data().open_resources();
    if open > 0 {
        return Err(SnapshotError::OpenResources(open));
    }
    // The snapshot reads each linear memory whole through one export of the
    // instrumented component, and wasmtime caps what one call may copy out of
    // a guest at its hostcall fuel (128 MiB by default): a setup that built
    // more (a token file of a million lines) could not be snapshotted. The
    // copy is of memory the plugin's memory-mib already bounds, read by our
    // own instrumentation, so lift the cap for it alone.
    let fuel = store.hostcall_fuel();
    store.set_hostcall_fuel(usize::MAX);
    let mut failure = None;
    let mut reader = Reader { set_up: SetUp { store: &mut *store, instance }, failure: &mut failure };
    let wasm = Wizer::new().snapshot_component(&instrumented.context, &mut reader).await;
    store.set_hostcall_fuel(fuel);
    let wasm = wasm.map_err(|e| SnapshotError::Snapshot(format!("{e:#}")))?;
    if let Some(failure) = failure {
        return Err(SnapshotError::Snapshot(failure));
    }
    // Compiled here, not cached on disk: the image is this load's state. The
    // engine's incremental compilation cache knows every function already
    // (they are the instrumented component's), so this is mostly the data.
    let component = Component::new(engine, &wasm).map_err(|e| SnapshotError::Compile(format!("{e:#}")))?;
    Ok(Arc::new(component))
}
