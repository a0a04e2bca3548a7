//! The CPU-time account of one plugin call.
//!
//! A plugin call is one future: wasmtime runs the plugin's code on a fiber
//! inside that future's `poll`, and the host functions it calls are polled
//! from there too. So the time of the thread inside `poll` is the time the
//! plugin's code ran plus the time the host worked on its behalf (redacting a
//! log line, checking a signature, parsing a response, generating random
//! bytes), while every wait (a network answer, a sleep, the user typing, a
//! free worker thread) happens between polls and is not counted.
//! [`Metered`] measures; the engine's epoch callback checks the account while
//! wasm runs and stops the plugin once it is over budget.
//!
//! Two clocks time a poll. The thread's own CPU clock is exact (a busy machine
//! that preempts the thread is not charged to the plugin), but reading it is
//! a system call: two per poll were a sixth of the host's cost of a
//! token-file review. The monotonic clock is read without entering the kernel
//! and never runs slower than the thread's CPU clock, so it can only
//! overcharge, by the time the thread was preempted during the poll. A call
//! is timed by the monotonic clock until it has been charged
//! [`CpuMeter::PRECISE_AFTER`] (or a tenth of a smaller budget), by the CPU
//! clock from then on: a review that takes microseconds costs no system call,
//! and a plugin near its budget is charged exactly but for at most that
//! first stretch.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The monotonic clock in nanoseconds since the first reading (a vDSO read on
/// Linux, no system call).
fn monotonic_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

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
    monotonic_nanos()
}

/// CPU time used by one plugin call, updated as its future is polled.
#[derive(Debug)]
pub struct CpuMeter {
    budget: Duration,
    /// Charged time past which polls are timed by the thread's CPU clock.
    precise_after: u64,
    /// Nanoseconds used in polls that have finished.
    used: AtomicU64,
    /// Whether polls are timed by the thread's CPU clock. Only the end of a
    /// poll sets it, so it is the same from a poll's start to its end.
    precise: AtomicBool,
    /// The clock's reading when the poll in progress started (plus one, so
    /// that zero means "not polling").
    polling_since: AtomicU64,
}

impl CpuMeter {
    /// How much of a call is timed by the monotonic clock at most before the
    /// thread's CPU clock takes over (a tenth of a smaller budget).
    pub const PRECISE_AFTER: Duration = Duration::from_millis(10);

    /// A meter allowing `budget`.
    pub fn new(budget: Duration) -> Arc<Self> {
        let precise_after = Self::PRECISE_AFTER.min(budget / 10);
        Arc::new(Self {
            budget,
            precise_after: u64::try_from(precise_after.as_nanos()).unwrap_or(u64::MAX),
            used: AtomicU64::new(0),
            precise: AtomicBool::new(precise_after.is_zero()),
            polling_since: AtomicU64::new(0),
        })
    }

    fn now(precise: bool) -> u64 {
        if precise { thread_cpu_nanos() } else { monotonic_nanos() }
    }

    /// CPU time used so far, the poll in progress included (when asked from
    /// the polling thread, as the epoch callback and host calls do).
    pub fn used(&self) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let since = self.polling_since.load(Ordering::Relaxed);
        if since != 0 {
            let now = Self::now(self.is_precise());
            used = used.saturating_add(now.saturating_sub(since - 1));
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

    /// Whether polls are timed by the thread's CPU clock by now.
    pub fn is_precise(&self) -> bool {
        self.precise.load(Ordering::Relaxed)
    }

    fn enter(&self) {
        self.polling_since.store(Self::now(self.is_precise()).saturating_add(1), Ordering::Relaxed);
    }

    fn leave(&self) {
        let since = self.polling_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let spent = Self::now(self.is_precise()).saturating_sub(since - 1);
            let used = self.used.fetch_add(spent, Ordering::Relaxed).saturating_add(spent);
            if used >= self.precise_after {
                self.precise.store(true, Ordering::Relaxed);
            }
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
        // Charging the sleep would make it 120 ms or more.
        assert!(used >= Duration::from_millis(20) && used < Duration::from_millis(100), "{used:?}");
        assert!(!meter.over_budget());
    }

    // Elsewhere the monotonic clock times every poll.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_first_stretch_is_timed_by_the_monotonic_clock_and_the_rest_by_the_cpu_clock() {
        let meter = CpuMeter::new(Duration::from_secs(2));
        assert!(!meter.is_precise());
        let work = Metered::new(
            async {
                // A poll that blocks its thread for 15 ms without using CPU,
                // past PRECISE_AFTER: charged by the monotonic clock.
                std::thread::sleep(Duration::from_millis(15));
                tokio::task::yield_now().await;
                // The same again, now timed by the thread's CPU clock.
                std::thread::sleep(Duration::from_millis(15));
            },
            Arc::clone(&meter),
        );
        work.await;
        assert!(meter.is_precise());
        let used = meter.used();
        // Charging the second sleep too would make it 30 ms or more.
        assert!(used >= Duration::from_millis(15) && used < Duration::from_millis(30), "{used:?}");
    }

    #[test]
    fn a_small_budget_is_timed_by_the_cpu_clock_after_a_tenth_of_it() {
        let meter = CpuMeter::new(Duration::from_millis(1));
        assert_eq!(meter.precise_after, 100_000);
        assert!(!CpuMeter::new(Duration::from_secs(2)).is_precise());
        assert!(CpuMeter::new(Duration::ZERO).is_precise());
    }
}
