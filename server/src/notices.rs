//! The server's one subscription to its engine: it counts events for the metrics, and
//! tells each WebSocket connection when a lease it handed out, or a lease of a session it
//! acts as, ends, so that the remote holder learns it at once. A release the connection itself posted with its
//! lease's fence and token (`post` with `fence`) is not told back: its client knows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use interlock::wire::ServerMsg;
use interlock::{Event, EventKind, Grant, SessionId, Token};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// How many leases a connection's sets hold. A lease leaves them when its end comes by;
/// one whose end went elsewhere (the session was taken up by another connection, the
/// subscription lagged) stays, harmlessly (a lease ends once), until a set is full and
/// starts again empty: the releases then in flight are told, as without a fence.
const QUIET_MAX: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The leases a connection handed out and has not heard the end of, and those of them it
/// is releasing itself, whose `released` notices it does not need.
#[derive(Default)]
struct Quiet {
    granted: HashMap<u64, Token>,
    releasing: HashSet<u64>,
}

/// Where one connection's lease notices go.
#[derive(Clone)]
pub struct Route {
    out: UnboundedSender<ServerMsg>,
    quiet: Arc<Mutex<Quiet>>,
}

impl Route {
    pub fn new(out: UnboundedSender<ServerMsg>) -> Self {
        Route {
            out,
            quiet: Arc::default(),
        }
    }

    /// The connection hands out these grants (before it tells its client of them).
    pub fn granted(&self, grants: &[Grant]) {
        let mut quiet = lock(&self.quiet);
        for g in grants {
            if quiet.granted.len() >= QUIET_MAX {
                quiet.granted.clear();
            }
            quiet.granted.insert(g.fence, g.token);
        }
    }

    /// The connection's client posted the release of the lease `fence` by `token`: if
    /// that is the token the lease was handed out with, its `released` notice is not
    /// told. (A release with another token fails, and tells nothing.)
    pub fn releasing(&self, fence: u64, token: Token) {
        let mut quiet = lock(&self.quiet);
        if quiet.granted.get(&fence) != Some(&token) {
            return;
        }
        quiet.granted.remove(&fence);
        if quiet.releasing.len() >= QUIET_MAX {
            quiet.releasing.clear();
        }
        quiet.releasing.insert(fence);
    }

    /// Sends the notice of a lease's end, unless it is the connection's own release.
    /// Whatever the end, the lease leaves the sets: a lease ends once.
    fn ended(&self, fence: u64, ev: &Event) {
        let own = {
            let mut quiet = lock(&self.quiet);
            quiet.granted.remove(&fence);
            quiet.releasing.remove(&fence)
        };
        if !(own && ev.kind == EventKind::Released) {
            let _ = self.out.send(ServerMsg::Lease { event: ev.clone() });
        }
    }

    /// Whether this connection handed out the lease `fence` (and has not heard its end).
    fn handed_out(&self, fence: u64) -> bool {
        !self.out.is_closed() && lock(&self.quiet).granted.contains_key(&fence)
    }

    /// Some notices were missed: nothing is known to be quiet any more.
    fn forget_all(&self) {
        *lock(&self.quiet) = Quiet::default();
    }
}

/// Where lease notices go: to the connection that last took up the lease's session, or,
/// if an earlier one that is still open handed the lease out, to that one (its client
/// holds the lease).
#[derive(Default)]
pub struct Notices {
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    sessions: HashMap<SessionId, Route>,
    /// The connections that took a session up before its current one: the leases one of
    /// them handed out still end there while it is open.
    former: HashMap<SessionId, Vec<Route>>,
}

impl Notices {
    fn lock(&self) -> MutexGuard<'_, Routes> {
        lock(&self.routes)
    }

    /// Sends `session`'s notices to `to` from now on (those of the leases another open
    /// connection handed out go on to that one).
    pub fn route(&self, session: SessionId, to: &Route) {
        let mut routes = self.lock();
        if let Some(old) = routes.sessions.insert(session, to.clone()) {
            if !old.out.same_channel(&to.out) && !old.out.is_closed() {
                let former = routes.former.entry(session).or_default();
                former.retain(|r| !r.out.is_closed() && !r.out.same_channel(&to.out));
                former.push(old);
            }
        }
    }

    /// Stops sending the notices of `sessions` to `to` (a connection that ended), unless
    /// another connection has taken them up since.
    pub fn forget(&self, sessions: &HashSet<SessionId>, to: &Route) {
        let mut routes = self.lock();
        for s in sessions {
            if routes
                .sessions
                .get(s)
                .is_some_and(|r| r.out.same_channel(&to.out))
            {
                routes.sessions.remove(s);
            }
            if let Some(former) = routes.former.get_mut(s) {
                former.retain(|r| !r.out.same_channel(&to.out));
                if former.is_empty() {
                    routes.former.remove(s);
                }
            }
        }
    }

    /// Handles one event of the server's subscription.
    pub fn on_event(&self, metrics: &Metrics, ev: &Event) {
        metrics.count(ev);
        if ev.kind == EventKind::Lagged {
            // Some lease notices may be among the missed: every client checks its leases.
            // Their ends may be among them too: those fences are forgotten.
            let routes = self.lock();
            let mut told = HashSet::new();
            for to in routes
                .sessions
                .values()
                .chain(routes.former.values().flatten())
            {
                if told.insert(Arc::as_ptr(&to.quiet)) {
                    to.forget_all();
                    let _ = to.out.send(ServerMsg::Resync);
                }
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
            // Its last lease notice went before this event: the routes are no longer needed.
            let mut routes = self.lock();
            routes.sessions.remove(&session);
            routes.former.remove(&session);
            return;
        }
        let Some((fence, _)) = ev.lease_end() else {
            return;
        };
        let routes = self.lock();
        let mut former = routes.former.get(&session).into_iter().flatten();
        if let Some(to) = former
            .find(|r| r.handed_out(fence))
            .or_else(|| routes.sessions.get(&session))
        {
            to.ended(fence, ev);
        }
    }
}
