//! The server's one subscription to its engine: it counts events for the metrics, and
//! tells each WebSocket connection when a lease of a session it acts as ends, so that
//! the remote holder learns it at once. A release the connection itself sent with its
//! lease's fence (`post` with `fence`) is not told back: its client knows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use interlock::wire::ServerMsg;
use interlock::{Event, EventKind, SessionId};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// How many fences of its own releases a connection's set holds. A fence leaves it when
/// its lease's end comes by; one whose end went elsewhere (the session was taken up by
/// another connection, the subscription lagged, the lease was another session's) stays,
/// harmlessly (a lease ends once), until the set is full and starts again empty: the
/// releases then in flight are told, as without a fence.
const QUIET_MAX: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where one connection's lease notices go, and the fences of the releases it sent
/// itself, whose `released` notices it does not need.
#[derive(Clone)]
pub struct Route {
    out: UnboundedSender<ServerMsg>,
    quiet: Arc<Mutex<HashSet<u64>>>,
}

impl Route {
    pub fn new(out: UnboundedSender<ServerMsg>) -> Self {
        Route {
            out,
            quiet: Arc::default(),
        }
    }

    /// The connection is about to release the lease `fence` itself.
    pub fn releasing(&self, fence: u64) {
        let mut quiet = lock(&self.quiet);
        if quiet.len() >= QUIET_MAX {
            quiet.clear();
        }
        quiet.insert(fence);
    }

    /// The connection's release of the lease `fence` failed: that lease ended otherwise
    /// (or is not its to release), and its end is told as usual.
    pub fn not_released(&self, fence: u64) {
        lock(&self.quiet).remove(&fence);
    }

    /// Sends the notice of a lease's end, unless it is the connection's own release.
    /// Whatever the end, the lease's fence leaves the set: a lease ends once.
    fn ended(&self, fence: u64, ev: &Event) {
        let own = lock(&self.quiet).remove(&fence);
        if !(own && ev.kind == EventKind::Released) {
            let _ = self.out.send(ServerMsg::Lease { event: ev.clone() });
        }
    }
}

/// Where the lease notices of each session go: the connection that last took it up.
#[derive(Default)]
pub struct Notices {
    routes: Mutex<HashMap<SessionId, Route>>,
}

impl Notices {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Route>> {
        lock(&self.routes)
    }

    /// Sends `session`'s notices to `to` from now on.
    pub fn route(&self, session: SessionId, to: &Route) {
        self.lock().insert(session, to.clone());
    }

    /// Stops sending the notices of `sessions` to `to` (a connection that ended), unless
    /// another connection has taken them up since.
    pub fn forget(&self, sessions: &HashSet<SessionId>, to: &Route) {
        let mut routes = self.lock();
        for s in sessions {
            if routes.get(s).is_some_and(|r| r.out.same_channel(&to.out)) {
                routes.remove(s);
            }
        }
    }

    /// Handles one event of the server's subscription.
    pub fn on_event(&self, metrics: &Metrics, ev: &Event) {
        metrics.count(ev);
        if ev.kind == EventKind::Lagged {
            // Some lease notices may be among the missed: every client checks its leases.
            // Their ends may be among them too: those fences are forgotten.
            for to in self.lock().values() {
                lock(&to.quiet).clear();
                let _ = to.out.send(ServerMsg::Resync);
            }
            return;
        }
        let Some(session) = ev.session_id() else {
            return;
        };
        if matches!(
            ev.kind,
            EventKind::SessionClosed | EventKind::SessionExpired
        ) {
            // Its last lease notice went before this event: the route is no longer needed.
            self.lock().remove(&session);
            return;
        }
        let Some((fence, _)) = ev.lease_end() else {
            return;
        };
        if let Some(to) = self.lock().get(&session) {
            to.ended(fence, ev);
        }
    }
}
