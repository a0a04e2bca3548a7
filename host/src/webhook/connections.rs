//! Connection budgets: how many connections each stage of the webhook's
//! listeners holds at once, and which connection gives way when one is full.
//!
//! Peers that have not proven who they are (TLS handshakes in progress,
//! connections without a client certificate, the plain-HTTP health listener)
//! each get a [`Budget`] of their own, separate from the connections of
//! clients with a verified certificate. A full budget never refuses the
//! newcomer: it cuts off the oldest idle connection of the source address
//! holding the most of the budget (or that address's oldest connection when
//! none is idle). Someone holding slots open on purpose (a slow-loris) is the
//! heaviest and oldest holder, so they lose their connections, not the API
//! server or a kubelet probe that just arrived.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// What a connection is doing, as its requests go by.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }
}

impl Activity {
    /// A request has started; it ends when the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }

    /// Whether no request is in progress.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Resolves once the connection has had no request in progress for
    /// `limit` (since it opened or since its last request ended).
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = if self.is_idle() {
                let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
                match limit.checked_sub(since.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            } else {
                limit
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in progress on a connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bounded set of connections of one kind.
pub struct Budget {
    /// What the connections are, for logs ("TLS handshakes").
    what: &'static str,
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// By admission order: the first is the oldest.
    open: BTreeMap<u64, Member>,
    per_address: HashMap<IpAddr, usize>,
}

struct Member {
    addr: IpAddr,
    activity: Arc<Activity>,
    cut: oneshot::Sender<()>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Member> {
        let member = self.open.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&member.addr) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&member.addr);
            }
        }
        Some(member)
    }

    /// The member to cut off for a newcomer: of the address holding the most,
    /// the oldest idle one, else its oldest.
    fn victim(&self) -> Option<u64> {
        let (heaviest, _) = self.per_address.iter().max_by_key(|(_, count)| **count)?;
        let mut oldest = None;
        for (id, member) in self.open.iter().filter(|(_, m)| m.addr == *heaviest) {
            if member.activity.is_idle() {
                return Some(*id);
            }
            oldest.get_or_insert(*id);
        }
        oldest
    }
}

impl Budget {
    /// A budget of `max` connections of the kind `what`.
    pub fn new(what: &'static str, max: u32) -> Arc<Self> {
        Arc::new(Self { what, max: (max as usize).max(1), state: Mutex::default() })
    }

    /// Take a place for a connection from `addr`, cutting another off if the
    /// budget is full.
    pub fn admit(self: &Arc<Self>, addr: IpAddr, activity: Arc<Activity>) -> Place {
        let addr = addr.to_canonical();
        let (cut, cut_off) = oneshot::channel();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.open.len() >= self.max {
            let Some(victim) = state.victim() else { break };
            if let Some(member) = state.remove(victim) {
                tracing::debug!(peer = %member.addr, "{} are at their limit ({}): closing the oldest", self.what, self.max);
                let _ = member.cut.send(());
            }
        }
        let id = state.next;
        state.next += 1;
        state.open.insert(id, Member { addr, activity, cut });
        *state.per_address.entry(addr).or_default() += 1;
        Place { budget: Arc::clone(self), id, cut_off }
    }

    /// How many places are taken.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).open.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place in a [`Budget`], given back when dropped.
pub struct Place {
    budget: Arc<Budget>,
    id: u64,
    cut_off: oneshot::Receiver<()>,
}

impl Place {
    /// Resolves when the budget cuts this connection off for a newer one.
    pub async fn cut_off(&mut self) {
        if (&mut self.cut_off).await.is_err() {
            // The budget only drops the sender after sending.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.budget.state.lock().unwrap_or_else(|e| e.into_inner()).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn is_cut(place: &mut Place) -> bool {
        place.cut_off.try_recv().is_ok()
    }

    #[test]
    fn a_full_budget_cuts_off_the_heaviest_address_oldest_idle_first() {
        let budget = Budget::new("test connections", 4);
        let busy = Arc::new(Activity::default());
        let _request = busy.request();
        let mut flood: Vec<Place> = vec![
            budget.admit(ip("10.0.0.9"), Arc::clone(&busy)),
            budget.admit(ip("10.0.0.9"), Arc::default()),
            budget.admit(ip("10.0.0.9"), Arc::default()),
        ];
        let mut apiserver = budget.admit(ip("10.0.0.1"), Arc::default());
        assert_eq!(budget.len(), 4);
        // A newcomer from anywhere: the flood's oldest idle place goes (not
        // its busy one, not the lone API server's).
        let mut probe = budget.admit(ip("10.0.0.2"), Arc::default());
        assert!(!is_cut(&mut flood[0]) && is_cut(&mut flood[1]) && !is_cut(&mut flood[2]));
        assert!(!is_cut(&mut apiserver) && !is_cut(&mut probe));
        let _newest = budget.admit(ip("10.0.0.9"), Arc::default());
        assert!(is_cut(&mut flood[2]), "the heaviest address pays again");
        assert_eq!(budget.len(), 4);
        drop(flood);
        assert_eq!(budget.len(), 3, "places are given back on drop, cut off or not");
    }

    #[tokio::test]
    async fn idleness_is_measured_from_the_last_request() {
        let limit = Duration::from_millis(200);
        let activity = Arc::new(Activity::default());
        let request = activity.request();
        let idle = activity.idle_for(limit);
        tokio::pin!(idle);
        assert!(tokio::time::timeout(limit * 3, &mut idle).await.is_err(), "busy is not idle");
        drop(request);
        let ended = Instant::now();
        idle.await;
        assert!(ended.elapsed() >= limit);
    }
}
