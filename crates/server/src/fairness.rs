//! Per-workspace fair admission: a workspace sending far more than its
//! share gets 429 with `Retry-After`, while a quiet workspace keeps its
//! latency.
//!
//! There are `max_in_flight` slots for all workspaces together, and one
//! workspace holds at most `workspace_max_in_flight` of them. When no slot
//! is free a request waits in its workspace's queue (at most `queue_length`
//! long, else 429 at once; at most `queue_timeout`, else 429). A freed slot
//! goes to the next workspace in a round-robin ring of workspaces with
//! waiters, so each waiting workspace gets one slot per turn however many
//! requests it queued; a workspace that had nothing in flight joins the
//! ring ahead of the busy ones (behind other such workspaces, in arrival
//! order: many idle workspaces arriving at once are served first come
//! first served, none starved by later arrivals), so a quiet workspace
//! waits for about one freed slot.
//!
//! Inside a workspace the same again, per user: each user with waiters has
//! its own queue, and the workspace's turn goes to its users round-robin, so
//! one user's burst does not delay a colleague by more than one slot per
//! busy user. When the workspace's queue is full, a newcomer whose own
//! queue is shorter than the longest pushes out that user's newest waiter
//! (429) instead of being refused: a burst can fill the queue, but not
//! lock the workspace's other users out of it.
//!
//! Long-running requests ([`is_long_running`]: watches, exec, logs...)
//! must not be admitted here, or they would hold slots for hours.
//!
//! Cost: one mutex-protected map lookup per request, the lock held for a
//! few map operations (the request's own work runs outside it). Only
//! workspaces with requests in flight or waiting have an entry; it is
//! removed when the last one finishes, so a million idle workspaces cost
//! nothing. `wsgate bench fairness` measures the whole path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use registry::status::{ApiError, Reason, StatusDetails};
use tokio::sync::oneshot;

use crate::config::FairnessSection;
use crate::metrics::RejectReason;

/// Whether a request is long-running (kube-apiserver's rule): watches and
/// the streaming subresources. Those skip fair admission.
pub fn is_long_running(verb: &str, subresource: Option<&str>) -> bool {
    verb == "watch"
        || matches!(
            subresource,
            Some("exec" | "attach" | "portforward" | "proxy" | "log")
        )
}

/// Why a request was not admitted; answer 429 with [`Rejected::to_api_error`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("workspace {workspace}: too many requests ({})", reason.as_str())]
pub struct Rejected {
    pub reason: RejectReason,
    pub retry_after: Duration,
    pub workspace: String,
}

impl Rejected {
    /// 429 TooManyRequests with `retryAfterSeconds` (the server's error
    /// writer turns it into a `Retry-After` header).
    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(
            Reason::TooManyRequests,
            "Too many requests, please try again later.",
        )
        .with_details(StatusDetails {
            retry_after_seconds: Some(self.retry_after.as_secs().max(1)),
            ..StatusDetails::default()
        })
    }
}

/// Current occupancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FairnessStats {
    pub in_flight: u32,
    pub waiting: usize,
    /// Workspaces with an entry (something in flight or waiting).
    pub workspaces: usize,
}

#[derive(Clone, Debug)]
struct Settings {
    enabled: bool,
    max_in_flight: u32,
    workspace_max_in_flight: u32,
    queue_length: usize,
    queue_timeout: Duration,
    retry_after: Duration,
    exempt_users: HashSet<String>,
}

struct Waiter {
    id: u64,
    /// `true`: admitted; `false`: pushed out of a full queue.
    grant: oneshot::Sender<bool>,
}

#[derive(Default)]
struct Workspace {
    in_flight: u32,
    /// Per-user queues; a user has an entry only while it has waiters.
    users: HashMap<Arc<str>, VecDeque<Waiter>>,
    /// Users with waiters, in serving order (each exactly once).
    user_ring: VecDeque<Arc<str>>,
    /// Waiters over all users.
    waiting: usize,
    /// Whether the workspace is in `State::ring` (exactly once if so).
    in_ring: bool,
}

impl Workspace {
    fn idle(&self) -> bool {
        self.in_flight == 0 && self.waiting == 0
    }

    /// The next waiter, round-robin over users.
    fn pop(&mut self) -> Option<Waiter> {
        let user = self.user_ring.pop_front()?;
        let queue = self.users.get_mut(&user)?;
        let waiter = queue.pop_front();
        if queue.is_empty() {
            self.users.remove(&user);
        } else {
            self.user_ring.push_back(user);
        }
        if waiter.is_some() {
            self.waiting -= 1;
        }
        waiter
    }

    /// Removes waiter `id` of `user`; `false` if it is not queued.
    fn remove(&mut self, user: &Arc<str>, id: u64) -> bool {
        let Some(queue) = self.users.get_mut(user) else {
            return false;
        };
        let Some(pos) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        queue.remove(pos);
        if queue.is_empty() {
            self.users.remove(user);
            self.user_ring.retain(|u| u != user);
        }
        self.waiting -= 1;
        true
    }

    /// Makes room in a full queue for `user`: pushes out the newest waiter
    /// of the user with the longest queue, if that is longer than `user`'s
    /// would become. `false` when `user` is (one of) the longest itself.
    fn push_out_for(&mut self, user: &str) -> bool {
        let mine = self.users.get(user).map_or(0, VecDeque::len);
        let Some((longest, len)) = self
            .users
            .iter()
            .map(|(u, q)| (u.clone(), q.len()))
            .max_by_key(|(_, len)| *len)
        else {
            return false;
        };
        if len <= mine + 1 {
            return false;
        }
        let Some(victim) = self.users.get_mut(&longest).and_then(VecDeque::pop_back) else {
            return false;
        };
        self.waiting -= 1;
        // Its receiver is alive while it is queued (see `Wait`); the waiter
        // answers 429 queue_full.
        let _ = victim.grant.send(false);
        true
    }
}

#[derive(Default)]
struct State {
    in_use: u32,
    waiting: usize,
    workspaces: HashMap<Arc<str>, Workspace>,
    /// Workspaces with waiters, in serving order.
    ring: VecDeque<Arc<str>>,
    /// How many entries at the front of `ring` joined with nothing in
    /// flight (they go ahead of busy workspaces, in arrival order).
    fresh: usize,
    next_id: u64,
}

struct Shared {
    settings: Settings,
    state: Mutex<State>,
    gauges: Option<(Gauge, Gauge)>,
}

/// The admission controller; cheap to clone.
#[derive(Clone)]
pub struct FairAdmission {
    shared: Arc<Shared>,
    /// The separate pool for reads ([`FairAdmission::admit_read`]); `None`
    /// means reads share `shared`.
    reads: Option<Arc<FairAdmission>>,
}

impl std::fmt::Debug for FairAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairAdmission")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A slot; freed when dropped. Hold it until the response is written.
#[must_use = "the slot is released when the permit is dropped"]
pub struct Permit {
    held: Option<(Arc<Shared>, Arc<str>)>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Some((_, ws)) => write!(f, "Permit({ws})"),
            None => f.write_str("Permit(exempt)"),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((shared, ws)) = self.held.take() {
            let mut state = shared.lock();
            shared.release(&mut state, &ws);
        }
    }
}

impl FairAdmission {
    /// `gauges` (in flight, waiting) come from
    /// [`crate::metrics::Metrics::fairness_gauges`].
    pub fn new(config: &FairnessSection, gauges: Option<(Gauge, Gauge)>) -> Self {
        FairAdmission {
            shared: Arc::new(Shared {
                settings: Settings {
                    enabled: config.enabled,
                    max_in_flight: config.max_in_flight.max(1),
                    workspace_max_in_flight: config.workspace_max_in_flight.max(1),
                    queue_length: config.queue_length as usize,
                    queue_timeout: config.queue_timeout,
                    retry_after: config.retry_after,
                    exempt_users: config.exempt_users.iter().cloned().collect(),
                },
                state: Mutex::new(State::default()),
                gauges,
            }),
            reads: None,
        }
    }

    /// Two pools, as upstream's priority levels split seats: reads (get,
    /// list, discovery) are answered from memory and bound by CPU, so their
    /// pool has about as many seats as cores ([`FairnessSection::read_seats`])
    /// and one workspace holds a fraction of them; writes wait on storage
    /// I/O and keep the large `max_in_flight` pool. The gauges follow the
    /// write pool; [`FairAdmission::stats`] sums both.
    pub fn with_read_pool(config: &FairnessSection, gauges: Option<(Gauge, Gauge)>) -> Self {
        let (max_in_flight, workspace_max_in_flight) = config.read_seats();
        let reads = FairAdmission::new(
            &FairnessSection {
                max_in_flight,
                workspace_max_in_flight,
                ..config.clone()
            },
            None,
        );
        FairAdmission {
            reads: Some(Arc::new(reads)),
            ..FairAdmission::new(config, gauges)
        }
    }

    /// Like [`FairAdmission::admit`], in the read pool when there is one.
    pub async fn admit_read(&self, workspace: &str, user: &str) -> Result<Permit, Rejected> {
        match &self.reads {
            Some(reads) => reads.admit(workspace, user).await,
            None => self.admit(workspace, user).await,
        }
    }

    pub fn stats(&self) -> FairnessStats {
        let reads = self.reads.as_ref().map(|r| r.stats()).unwrap_or_default();
        let state = self.shared.lock();
        FairnessStats {
            in_flight: state.in_use + reads.in_flight,
            waiting: state.waiting + reads.waiting,
            workspaces: state.workspaces.len() + reads.workspaces,
        }
    }

    /// Waits for a slot for `workspace` (a workspace path or cluster id)
    /// on behalf of `user`.
    pub async fn admit(&self, workspace: &str, user: &str) -> Result<Permit, Rejected> {
        let s = &self.shared.settings;
        if !s.enabled || s.exempt_users.contains(user) {
            return Ok(Permit { held: None });
        }
        let (key, user_key, id, rx) = {
            let mut state = self.shared.lock();
            let state = &mut *state;
            let key = match state.workspaces.get_key_value(workspace) {
                Some((k, _)) => k.clone(),
                None => Arc::from(workspace),
            };
            let ws = state.workspaces.entry(key.clone()).or_default();
            if state.in_use < s.max_in_flight
                && ws.waiting == 0
                && ws.in_flight < s.workspace_max_in_flight
            {
                ws.in_flight += 1;
                state.in_use += 1;
                self.shared.update_gauges(state);
                return Ok(self.permit(key));
            }
            if ws.waiting >= s.queue_length {
                if ws.push_out_for(user) {
                    state.waiting -= 1;
                } else {
                    if ws.idle() {
                        state.workspaces.remove(&key);
                    }
                    return Err(self.rejected(RejectReason::QueueFull, workspace));
                }
            }
            let (grant, rx) = oneshot::channel();
            let id = state.next_id;
            state.next_id += 1;
            let user_key = match ws.users.get_key_value(user) {
                Some((u, _)) => u.clone(),
                None => {
                    let u: Arc<str> = Arc::from(user);
                    ws.user_ring.push_back(u.clone());
                    u
                }
            };
            ws.users
                .entry(user_key.clone())
                .or_default()
                .push_back(Waiter { id, grant });
            ws.waiting += 1;
            state.waiting += 1;
            if !ws.in_ring {
                ws.in_ring = true;
                // Nothing running: ahead of the busy workspaces, behind
                // the others that had nothing running either (pushing to
                // the very front would serve the latest first and starve
                // the earliest when many idle workspaces arrive at once).
                if ws.in_flight == 0 {
                    state.ring.insert(state.fresh, key.clone());
                    state.fresh += 1;
                } else {
                    state.ring.push_back(key.clone());
                }
            }
            self.shared.update_gauges(state);
            (key, user_key, id, rx)
        };
        let mut wait = Wait {
            shared: self.shared.clone(),
            key: key.clone(),
            user: user_key.clone(),
            id,
            rx,
            finished: false,
        };
        let outcome = tokio::time::timeout(s.queue_timeout, &mut wait.rx).await;
        wait.finished = true;
        match outcome {
            Ok(Ok(true)) => Ok(self.permit(key)),
            Ok(Ok(false)) => Err(self.rejected(RejectReason::QueueFull, workspace)),
            // The sender lives in the queue until it answers; a closed
            // channel would be a bug, and refusing is the safe answer.
            Ok(Err(_)) => Err(self.rejected(RejectReason::QueueTimeout, workspace)),
            Err(_) => {
                let mut state = self.shared.lock();
                if self.shared.dequeue(&mut state, &key, &user_key, id) {
                    Err(self.rejected(RejectReason::QueueTimeout, workspace))
                } else {
                    // Answered between the timer firing and the lock.
                    drop(state);
                    match wait.rx.try_recv() {
                        Ok(false) => Err(self.rejected(RejectReason::QueueFull, workspace)),
                        _ => Ok(self.permit(key)),
                    }
                }
            }
        }
    }

    fn permit(&self, key: Arc<str>) -> Permit {
        Permit {
            held: Some((self.shared.clone(), key)),
        }
    }

    fn rejected(&self, reason: RejectReason, workspace: &str) -> Rejected {
        Rejected {
            reason,
            retry_after: self.shared.settings.retry_after,
            workspace: workspace.to_owned(),
        }
    }
}

/// A queued request; if its future is dropped (client gone) it leaves the
/// queue, or gives back the slot it was granted meanwhile.
struct Wait {
    shared: Arc<Shared>,
    key: Arc<str>,
    user: Arc<str>,
    id: u64,
    rx: oneshot::Receiver<bool>,
    finished: bool,
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.shared.lock();
        if !self
            .shared
            .dequeue(&mut state, &self.key, &self.user, self.id)
            && matches!(self.rx.try_recv(), Ok(true))
        {
            // Granted but never taken: free the slot.
            self.shared.release(&mut state, &self.key);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere
        // while holding the lock does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, state: &State) {
        if let Some((in_flight, waiting)) = &self.gauges {
            in_flight.set(i64::from(state.in_use));
            waiting.set(i64::try_from(state.waiting).unwrap_or(i64::MAX));
        }
    }

    /// Removes waiter `id` if it is still queued; `false` if it was
    /// answered (granted or pushed out).
    fn dequeue(&self, state: &mut State, key: &Arc<str>, user: &Arc<str>, id: u64) -> bool {
        let Some(ws) = state.workspaces.get_mut(key) else {
            return false;
        };
        if !ws.remove(user, id) {
            return false;
        }
        state.waiting -= 1;
        if ws.waiting == 0 && ws.in_ring {
            ws.in_ring = false;
            if let Some(pos) = state.ring.iter().position(|k| k == key) {
                state.ring.remove(pos);
                if pos < state.fresh {
                    state.fresh -= 1;
                }
            }
        }
        if ws.idle() {
            state.workspaces.remove(key);
        }
        self.update_gauges(state);
        true
    }

    fn release(&self, state: &mut State, key: &Arc<str>) {
        state.in_use = state.in_use.saturating_sub(1);
        if let Some(ws) = state.workspaces.get_mut(key) {
            ws.in_flight = ws.in_flight.saturating_sub(1);
            // A workspace skipped at its cap rejoins now it has room.
            if ws.waiting > 0 && !ws.in_ring {
                ws.in_ring = true;
                state.ring.push_back(key.clone());
            }
        }
        self.dispatch(state);
        if state.workspaces.get(key).is_some_and(Workspace::idle) {
            state.workspaces.remove(key);
        }
        self.update_gauges(state);
    }

    /// Hands free slots to waiting workspaces, one per turn.
    fn dispatch(&self, state: &mut State) {
        let s = &self.settings;
        while state.in_use < s.max_in_flight {
            let Some(key) = state.ring.pop_front() else {
                break;
            };
            state.fresh = state.fresh.saturating_sub(1);
            let Some(ws) = state.workspaces.get_mut(&key) else {
                continue;
            };
            ws.in_ring = false;
            // At its cap: off the ring until one of its own slots frees.
            if ws.in_flight >= s.workspace_max_in_flight {
                continue;
            }
            let Some(waiter) = ws.pop() else {
                continue;
            };
            state.waiting -= 1;
            // The receiver lives as long as the waiter is queued (its drop
            // dequeues under this lock), so this send cannot fail; if it
            // did, the slot simply stays free.
            if waiter.grant.send(true).is_ok() {
                ws.in_flight += 1;
                state.in_use += 1;
            }
            if ws.waiting > 0 {
                ws.in_ring = true;
                state.ring.push_back(key);
            } else if ws.idle() {
                state.workspaces.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    fn settings(max: u32, per_ws: u32, queue: u32) -> FairnessSection {
        FairnessSection {
            enabled: true,
            max_in_flight: max,
            workspace_max_in_flight: per_ws,
            queue_length: queue,
            queue_timeout: Duration::from_secs(15),
            retry_after: Duration::from_secs(2),
            exempt_users: vec!["admin".into()],
            ..FairnessSection::default()
        }
    }

    /// Polls a future once without a runtime's help.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    fn ready<T, F: Future<Output = T> + Unpin>(f: &mut F) -> Option<T> {
        match poll_once(f) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    /// Polls each pending future once; removes and returns the first ready one.
    fn take_ready<T, F: Future<Output = T> + Unpin>(fs: &mut Vec<F>) -> Option<T> {
        let i = (0..fs.len()).find_map(|i| ready(&mut fs[i]).map(|v| (i, v)))?;
        fs.remove(i.0);
        Some(i.1)
    }

    #[tokio::test]
    async fn a_quiet_workspace_gets_the_next_free_slot() {
        let fair = FairAdmission::new(&settings(4, 4, 100), None);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(fair.admit("noisy", "bob").await.expect("free slot"));
        }
        // The noisy workspace queues many more.
        let mut noisy: Vec<_> = (0..20)
            .map(|_| Box::pin(fair.admit("noisy", "bob")))
            .collect();
        for f in &mut noisy {
            assert!(ready(f).is_none());
        }
        let mut quiet = Box::pin(fair.admit("quiet", "alice"));
        assert!(ready(&mut quiet).is_none());
        assert_eq!(fair.stats().waiting, 21);

        // One slot frees: it goes to the quiet workspace, not the noisy queue.
        held.pop();
        let permit = ready(&mut quiet)
            .expect("admitted after one slot")
            .expect("not rejected");
        assert!(noisy.iter_mut().all(|f| ready(f).is_none()));

        // The next slots alternate back to the noisy workspace.
        drop(permit);
        // (Held, or each dropped permit would admit the next.)
        let admitted: Vec<_> = noisy.iter_mut().filter_map(ready).collect();
        assert_eq!(admitted.len(), 1);
    }

    /// Many noisy tasks on two threads, with timeouts and cancellations
    /// racing grants: the quiet workspace is never refused, and no slot
    /// or entry leaks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_load_the_quiet_workspace_is_served_and_nothing_leaks() {
        let fair = FairAdmission::new(
            &FairnessSection {
                // Long enough that a stalled test machine does not turn
                // the quiet workspace's wait into a refusal; the ordering
                // itself is checked exactly by `a_quiet_workspace_gets_the_next_free_slot`.
                queue_timeout: Duration::from_secs(2),
                ..settings(8, 8, 16)
            },
            None,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let fair = fair.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut rejected) = (0u32, 0u32);
                while tokio::time::Instant::now() < deadline {
                    // Every third attempt gives up early (a client going away).
                    let admit = fair.admit("noisy", "bob");
                    let outcome = if i % 3 == 0 {
                        tokio::time::timeout(Duration::from_millis(2), admit).await
                    } else {
                        Ok(admit.await)
                    };
                    match outcome {
                        Ok(Ok(_p)) => {
                            ok += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        // A refused client backs off, as over HTTP: an
                        // instant retry loop never yields and would starve
                        // the runtime's timers on a 2-core machine.
                        Ok(Err(_)) => {
                            rejected += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(_) => {}
                    }
                }
                (ok, rejected)
            }));
        }
        let mut quiet_worst = Duration::ZERO;
        while tokio::time::Instant::now() < deadline {
            let start = tokio::time::Instant::now();
            let p = fair
                .admit("quiet", "alice")
                .await
                .expect("the quiet workspace is never refused");
            quiet_worst = quiet_worst.max(start.elapsed());
            drop(p);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (mut ok, mut rejected) = (0, 0);
        for t in tasks {
            let (o, r) = t.await.expect("task");
            ok += o;
            rejected += r;
        }
        assert!(
            ok > 0 && rejected > 0,
            "the noisy workspace was throttled: ok {ok}, rejected {rejected}"
        );
        // Wall-clock waits are reported, not asserted (they flake on a busy
        // machine); the queue timeout above bounds them and the expect()
        // fails the test if the quiet workspace was ever refused.
        eprintln!("quiet workspace's longest wait: {quiet_worst:?}");
        assert_eq!(
            fair.stats(),
            FairnessStats {
                in_flight: 0,
                waiting: 0,
                workspaces: 0
            }
        );
    }

    #[tokio::test]
    async fn round_robin_between_busy_workspaces() {
        let fair = FairAdmission::new(&settings(1, 1, 100), None);
        let first = fair.admit("a", "u").await.expect("slot");
        let mut a: Vec<_> = (0..3).map(|_| Box::pin(fair.admit("a", "u"))).collect();
        let mut b: Vec<_> = (0..3).map(|_| Box::pin(fair.admit("b", "u"))).collect();
        for f in a.iter_mut().chain(b.iter_mut()) {
            assert!(ready(f).is_none());
        }
        drop(first);
        // Serve order: b (nothing in flight, so first), then a, then b...
        let mut order = String::new();
        for _ in 0..6 {
            let pa = take_ready(&mut a);
            let pb = take_ready(&mut b);
            let p = match (pa, pb) {
                (Some(p), None) => {
                    order.push('a');
                    p
                }
                (None, Some(p)) => {
                    order.push('b');
                    p
                }
                other => panic!("exactly one should be admitted, got {other:?}"),
            };
            drop(p);
        }
        assert_eq!(order, "bababa");
    }

    /// Many idle workspaces queue at once (a client touching workspace
    /// after workspace): they are served in arrival order, so none waits
    /// behind every later arrival; a busy one keeps its turn behind them.
    #[tokio::test]
    async fn idle_workspaces_are_served_in_arrival_order() {
        let fair = FairAdmission::new(&settings(1, 1, 100), None);
        let first = fair.admit("busy", "u").await.expect("slot");
        let names = ["w0", "w1", "w2", "w3", "w4"];
        let mut waiting: Vec<(&str, _)> = vec![("busy", Box::pin(fair.admit("busy", "u")))];
        for name in names {
            waiting.push((name, Box::pin(fair.admit(name, "u"))));
        }
        for (_, f) in &mut waiting {
            assert!(ready(f).is_none());
        }
        drop(first);
        // Each permit dropped at once hands the slot to the next in line.
        let mut order = Vec::new();
        while !waiting.is_empty() {
            let i = (0..waiting.len()).find_map(|i| ready(&mut waiting[i].1).map(|p| (i, p)));
            let (i, p) = i.expect("one admitted per freed slot");
            drop(p.expect("not rejected"));
            order.push(waiting.remove(i).0);
        }
        assert_eq!(order, ["w0", "w1", "w2", "w3", "w4", "busy"]);
        assert_eq!(fair.stats().workspaces, 0);
    }

    #[tokio::test]
    async fn users_of_one_workspace_take_turns() {
        let fair = FairAdmission::new(&settings(1, 1, 100), None);
        let first = fair.admit("ws", "bob").await.expect("slot");
        // bob queues a burst first; alice asks after it.
        let mut bob: Vec<_> = (0..4).map(|_| Box::pin(fair.admit("ws", "bob"))).collect();
        let mut alice: Vec<_> = (0..2)
            .map(|_| Box::pin(fair.admit("ws", "alice")))
            .collect();
        for f in bob.iter_mut().chain(alice.iter_mut()) {
            assert!(ready(f).is_none());
        }
        drop(first);
        let mut order = String::new();
        for _ in 0..6 {
            let p = match (take_ready(&mut bob), take_ready(&mut alice)) {
                (Some(p), None) => {
                    order.push('b');
                    p
                }
                (None, Some(p)) => {
                    order.push('a');
                    p
                }
                other => panic!("exactly one should be admitted, got {other:?}"),
            };
            drop(p.expect("admitted"));
        }
        // alice waits one of bob's slots, not his whole burst; nobody starves.
        assert_eq!(order, "bababb");
        assert_eq!(fair.stats().workspaces, 0);
    }

    #[tokio::test]
    async fn a_full_queue_pushes_out_the_longest_users_newest_waiter() {
        let fair = FairAdmission::new(&settings(1, 1, 3), None);
        let held = fair.admit("ws", "bob").await.expect("slot");
        let mut bob: Vec<_> = (0..3).map(|_| Box::pin(fair.admit("ws", "bob"))).collect();
        for f in &mut bob {
            assert!(ready(f).is_none());
        }
        // bob's fourth is refused: he is the longest queue himself.
        let err = fair
            .admit("ws", "bob")
            .await
            .expect_err("bob's queue is full");
        assert_eq!(err.reason, RejectReason::QueueFull);
        // alice gets in, and bob's newest waiter answers 429.
        let mut alice = Box::pin(fair.admit("ws", "alice"));
        assert!(ready(&mut alice).is_none());
        let pushed = ready(&mut bob[2])
            .expect("answered")
            .expect_err("pushed out");
        assert_eq!(pushed.reason, RejectReason::QueueFull);
        assert!(ready(&mut bob[0]).is_none() && ready(&mut bob[1]).is_none());
        assert_eq!(fair.stats().waiting, 3);
        // Served in turns: bob's oldest, then alice.
        drop(held);
        let b = ready(&mut bob[0]).expect("bob first").expect("ok");
        assert!(ready(&mut alice).is_none());
        drop(b);
        let _a = ready(&mut alice).expect("then alice").expect("ok");
        assert!(ready(&mut bob[1]).is_none());
    }

    #[tokio::test]
    async fn a_full_queue_is_429_with_retry_after() {
        let fair = FairAdmission::new(&settings(1, 1, 2), None);
        let _p = fair.admit("ws", "u").await.expect("slot");
        let mut q1 = Box::pin(fair.admit("ws", "u"));
        let mut q2 = Box::pin(fair.admit("ws", "u"));
        assert!(ready(&mut q1).is_none() && ready(&mut q2).is_none());
        let err = fair.admit("ws", "u").await.expect_err("queue full");
        assert_eq!(err.reason, RejectReason::QueueFull);
        assert_eq!(err.workspace, "ws");
        let api = err.to_api_error();
        assert_eq!(api.code(), 429);
        assert_eq!(api.retry_after(), Some(2));
        // Another workspace can still queue.
        let mut other = Box::pin(fair.admit("other", "u"));
        assert!(ready(&mut other).is_none());
    }

    #[tokio::test]
    async fn waiting_too_long_is_429_and_leaves_no_entry() {
        let fair = FairAdmission::new(
            &FairnessSection {
                queue_timeout: Duration::from_millis(20),
                ..settings(1, 1, 10)
            },
            None,
        );
        let p = fair.admit("busy", "u").await.expect("slot");
        let err = fair.admit("late", "u").await.expect_err("times out");
        assert_eq!(err.reason, RejectReason::QueueTimeout);
        assert_eq!(fair.stats().waiting, 0);
        assert_eq!(fair.stats().workspaces, 1, "only the busy workspace");
        drop(p);
        assert_eq!(
            fair.stats(),
            FairnessStats {
                in_flight: 0,
                waiting: 0,
                workspaces: 0
            }
        );
    }

    #[tokio::test]
    async fn idle_workspaces_cost_nothing() {
        let fair = FairAdmission::new(&settings(8, 8, 10), None);
        for i in 0..10_000 {
            let p = fair.admit(&format!("ws-{i}"), "u").await.expect("slot");
            drop(p);
        }
        assert_eq!(fair.stats().workspaces, 0);

        // A cancelled waiter (client gone) leaves too.
        let p = (0..8)
            .map(|_| fair.admit("x", "u"))
            .collect::<futures::future::JoinAll<_>>()
            .await;
        let mut waiting = Box::pin(fair.admit("y", "u"));
        assert!(ready(&mut waiting).is_none());
        assert_eq!(fair.stats().workspaces, 2);
        drop(waiting);
        assert_eq!(fair.stats().workspaces, 1);
        drop(p);
        assert_eq!(fair.stats().workspaces, 0);
        assert_eq!(fair.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn a_granted_but_abandoned_slot_is_given_back() {
        let fair = FairAdmission::new(&settings(1, 1, 10), None);
        let p = fair.admit("a", "u").await.expect("slot");
        let mut w = Box::pin(fair.admit("b", "u"));
        assert!(ready(&mut w).is_none());
        drop(p); // grants to b's waiter...
        drop(w); // ...which is gone before taking it.
        assert_eq!(fair.stats().in_flight, 0);
        assert!(fair.admit("c", "u").await.is_ok());
    }

    #[tokio::test]
    async fn the_per_workspace_cap_leaves_room_for_others() {
        let fair = FairAdmission::new(&settings(10, 2, 10), None);
        let _a1 = fair.admit("a", "u").await.expect("slot");
        let _a2 = fair.admit("a", "u").await.expect("slot");
        let mut a3 = Box::pin(fair.admit("a", "u"));
        assert!(ready(&mut a3).is_none(), "a is at its cap");
        let _b = fair.admit("b", "u").await.expect("b is not");
        drop(_a1);
        assert!(ready(&mut a3).is_some(), "a's own slot freed");
    }

    #[tokio::test]
    async fn reads_have_their_own_smaller_pool() {
        let fair = FairAdmission::with_read_pool(
            &FairnessSection {
                read_max_in_flight: 2,
                read_workspace_max_in_flight: 1,
                ..settings(8, 4, 4)
            },
            None,
        );
        let r1 = fair.admit_read("noisy", "bob").await.expect("read seat");
        // The noisy workspace's share of the read pool is used up...
        let mut r2 = Box::pin(fair.admit_read("noisy", "bob"));
        assert!(ready(&mut r2).is_none(), "noisy is at its read share");
        // ...but another workspace still reads, and writes are untouched.
        let q = fair
            .admit_read("quiet", "alice")
            .await
            .expect("quiet reads");
        let w: Vec<_> = futures::future::join_all((0..4).map(|_| fair.admit("noisy", "bob")))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("writes have their own seats");
        assert_eq!(fair.stats().in_flight, 2 + 4);
        assert_eq!(fair.stats().waiting, 1);
        drop(r1);
        let r2 = ready(&mut r2).expect("granted").expect("ok");
        drop((r2, q, w));
        assert_eq!(fair.stats(), FairnessStats::default());
    }

    #[test]
    fn read_seats_are_derived_from_the_cores_unless_set() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let (total, share) = FairnessSection::default().read_seats();
        assert_eq!(total, (2 * cores).max(2));
        assert_eq!(share, (cores / 2).max(1));
        let set = FairnessSection {
            read_max_in_flight: 7,
            read_workspace_max_in_flight: 3,
            ..FairnessSection::default()
        };
        assert_eq!(set.read_seats(), (7, 3));
    }

    #[tokio::test]
    async fn exempt_users_and_disabled_skip_queueing() {
        let fair = FairAdmission::new(&settings(1, 1, 0), None);
        let _p = fair.admit("ws", "u").await.expect("slot");
        assert!(fair.admit("ws", "admin").await.is_ok());
        let off = FairAdmission::new(
            &FairnessSection {
                enabled: false,
                ..settings(1, 1, 0)
            },
            None,
        );
        let _x = off.admit("ws", "u").await.expect("no limit");
        assert!(off.admit("ws", "u").await.is_ok());
        assert!(is_long_running("watch", None));
        assert!(is_long_running("get", Some("log")));
        assert!(!is_long_running("list", None));
    }

    #[tokio::test]
    async fn gauges_follow_the_state() {
        let (in_flight, waiting) = (Gauge::default(), Gauge::default());
        let fair = FairAdmission::new(
            &settings(1, 1, 5),
            Some((in_flight.clone(), waiting.clone())),
        );
        let p = fair.admit("a", "u").await.expect("slot");
        let mut w = Box::pin(fair.admit("a", "u"));
        assert!(ready(&mut w).is_none());
        assert_eq!((in_flight.get(), waiting.get()), (1, 1));
        drop(p);
        let _q = ready(&mut w).expect("granted").expect("ok");
        assert_eq!((in_flight.get(), waiting.get()), (1, 0));
    }
}
