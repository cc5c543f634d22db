//! The server's one subscription to its engine: it counts events for the metrics, and
//! tells each WebSocket connection when a lease of a session it acts as ends, so that
//! the remote holder learns it at once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use interlock::wire::ServerMsg;
use interlock::{Event, EventKind, SessionId};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// Where the lease notices of each session go: the connection that last took it up.
#[derive(Default)]
pub struct Notices {
    routes: Mutex<HashMap<SessionId, UnboundedSender<ServerMsg>>>,
}

impl Notices {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, UnboundedSender<ServerMsg>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `session`'s notices to `to` from now on.
    pub fn route(&self, session: SessionId, to: UnboundedSender<ServerMsg>) {
        self.lock().insert(session, to);
    }

    /// Stops sending the notices of `sessions` to `to` (a connection that ended), unless
    /// another connection has taken them up since.
    pub fn forget(&self, sessions: &HashSet<SessionId>, to: &UnboundedSender<ServerMsg>) {
        let mut routes = self.lock();
        for s in sessions {
            if routes.get(s).is_some_and(|r| r.same_channel(to)) {
                routes.remove(s);
            }
        }
    }

    /// Handles one event of the server's subscription.
    pub fn on_event(&self, metrics: &Metrics, ev: &Event) {
        metrics.count(ev);
        if ev.kind == EventKind::Lagged {
            // Some lease notices may be among the missed: every client checks its leases.
            for to in self.lock().values() {
                let _ = to.send(ServerMsg::Resync);
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
        if ev.lease_end().is_none() {
            return;
        }
        if let Some(to) = self.lock().get(&session) {
            let _ = to.send(ServerMsg::Lease { event: ev.clone() });
        }
    }
}
