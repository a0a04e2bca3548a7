//! The CPU-time account of one plugin call.
//!
//! A plugin call is one future: wasmtime runs the plugin's code on a fiber
//! inside that future's `poll`, and the host functions it calls are polled
//! from there too. So the CPU time of the thread inside `poll` is exactly the
//! time the plugin's code ran plus the time the host worked on its behalf
//! (redacting a log line, checking a signature, parsing a response,
//! generating random bytes), while every wait (a network answer, a sleep, the
//! user typing, a free worker thread) happens between polls and is not
//! counted. The thread's own CPU clock is read, not the wall clock, so a busy
//! machine that preempts the thread does not charge the plugin for it.
//! [`Metered`] measures; the engine's epoch callback checks the account while
//! wasm runs and stops the plugin once it is over budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
#[cfg(not(unix))]
use std::time::Instant;

/// The calling thread's CPU time in nanoseconds (a poll runs on one thread
/// from start to end).
#[cfg(unix)]
fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes a timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux and macOS.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// Elsewhere the wall clock stands in (preemption is then charged).
#[cfg(not(unix))]
fn thread_cpu_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time used by one plugin call, updated as its future is polled.
#[derive(Debug)]
pub struct CpuMeter {
    budget: Duration,
    /// Nanoseconds used in polls that have finished.
    used: AtomicU64,
    /// The polling thread's CPU clock when the poll in progress started
    /// (plus one, so that zero means "not polling").
    polling_since: AtomicU64,
}

impl CpuMeter {
    /// A meter allowing `budget`.
    pub fn new(budget: Duration) -> Arc<Self> {
        Arc::new(Self { budget, used: AtomicU64::new(0), polling_since: AtomicU64::new(0) })
    }

    fn now(&self) -> u64 {
        thread_cpu_nanos()
    }

    /// CPU time used so far, the poll in progress included (when asked from
    /// the polling thread, as the epoch callback and host calls do).
    pub fn used(&self) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let since = self.polling_since.load(Ordering::Relaxed);
        if since != 0 {
            used = used.saturating_add(self.now().saturating_sub(since - 1));
        }
        Duration::from_nanos(used)
    }

    /// The budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether the call has used more than its budget.
    pub fn over_budget(&self) -> bool {
        self.used() > self.budget
    }

    fn enter(&self) {
        self.polling_since.store(self.now().saturating_add(1), Ordering::Relaxed);
    }

    fn leave(&self) {
        let since = self.polling_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let spent = self.now().saturating_sub(since - 1);
            self.used.fetch_add(spent, Ordering::Relaxed);
        }
    }
}

/// A plugin call whose time inside `poll` is charged to a [`CpuMeter`].
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F: Future> Metered<F> {
    /// Charge `inner`'s polls to `meter`.
    pub fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self { inner: Box::pin(inner), meter }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.meter.enter();
        let result = self.inner.as_mut().poll(cx);
        self.meter.leave();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_are_charged_and_waits_are_not() {
        let meter = CpuMeter::new(Duration::from_millis(30));
        let work = Metered::new(
            async {
                // Busy for 20 ms of this thread's CPU in a poll (however long
                // a loaded machine takes for that), then asleep for 100 ms.
                let started = thread_cpu_nanos();
                while thread_cpu_nanos() - started < 20_000_000 {
                    std::hint::black_box(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
            Arc::clone(&meter),
        );
        work.await;
        let used = meter.used();
        assert!(used >= Duration::from_millis(20) && used < Duration::from_millis(60), "{used:?}");
        assert!(!meter.over_budget());
    }
}
