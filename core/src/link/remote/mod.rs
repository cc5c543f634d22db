//! The remote link: the engine is a server's (`interlock serve`, or any program that
//! serves its engine), reached over its WebSocket protocol (`docs/protocol.md`).
//!
//! One thread of the link runs the connection (a tokio runtime of its own): it writes
//! what callers send, reads what the server answers and hands each answer to its
//! caller's reply slot, heartbeats every session the link opened every TTL/3, and
//! reconnects with backoff when the connection drops, resuming its sessions by their
//! secrets and its subscriptions from their last seq. Each session's TTL is also counted
//! here, from the moment the last acknowledged heartbeat was *sent*: when it runs out
//! without a new acknowledgement, the session's leases turn lost (`connection_lost`)
//! before the server, whose clock started later, can give them to anyone else.

mod io;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::{Held, Link, Outcome, Started};
use crate::cell::{Cells, LeaseCell};
use crate::dispatch::Jobs;
use crate::error::{Error, LostReason, Result};
use crate::event::Event;
use crate::fork::Birth;
use crate::protocol::{AcquireRequest, Command, Grants, LostCallback, LostNotice, Reply};
use crate::reply;
use crate::subscription::{filter_of, EventCallback, SubQueue};
use crate::table::Recent;
use crate::types::{LeaseState, Secret, SessionId, Token};
use crate::wire::ClientMsg;

/// How a remote engine connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The bearer token, if the server has tokens.
    pub token: Option<String>,
    /// The TTL of a session opened without one: remote sessions always have one.
    pub session_ttl: Duration,
    /// A PEM file of certificates to trust for `https://` besides the public roots (a
    /// lab's own CA, or a server's self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// How long the first connection may take before `connect` gives up.
    pub connect_timeout: Duration,
    /// The longest pause between two attempts to reconnect.
    pub max_backoff: Duration,
    /// How long a caller polls for its reply before it parks.
    pub spin: Duration,
    /// Events a subscription may have unread before its oldest are dropped.
    pub subscriber_buffer: usize,
    /// Whether the link heartbeats its sessions by itself (every TTL/3). A gateway that
    /// acts for clients of its own sets false: a session opened with a TTL then lives by
    /// the calls made for it (heartbeat, acquire), as an embedded one does, and its TTL is
    /// still counted here from the send of the last one the server acknowledged. A session
    /// opened without a TTL (given `session_ttl`, since a remote one needs one) is
    /// heartbeated either way: it asked never to time out.
    pub keepalive: bool,
    /// A connection the server has sent nothing on for this long is taken for dead (a
    /// peer gone without a word: powered off, a cable pulled, a half-open connection),
    /// and the link reconnects; it pings a quiet server every third of this.
    pub idle_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: None,
            session_ttl: Duration::from_secs(15),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            spin: Duration::ZERO,
            subscriber_buffer: 1024,
            keepalive: true,
            idle_timeout: Duration::from_secs(15),
        }
    }
}

/// How many lease ends of unknown fences are kept (a notice that overtook its grant), and
/// how many tokens of leases given up here.
const RECENT_ENDS: usize = 4096;

/// A session this link opened or resumed.
struct RemoteSession {
    secret: Secret,
    ttl: Duration,
    /// When the last heartbeat (or open, or resume) that the server acknowledged was
    /// sent: the server's clock for the session started after this.
    acked: Instant,
    /// When the last heartbeat was sent.
    sent: Instant,
    /// The session's TTL ran out here: its leases were given up.
    lapsed: bool,
    /// The link heartbeats it (see `ConnectOptions::keepalive`).
    beat: bool,
    /// Its close was asked for: no more heartbeats, and a resume closes it (the close may
    /// have gone down with a connection). If the link never comes back, the server
    /// expires it after its TTL.
    closing: bool,
}

/// A lease handed out through this link and not known to have ended.
struct Watched {
    cell: LeaseCell,
    on_lost: Option<LostCallback>,
    session: SessionId,
    resource: Arc<str>,
    token: Token,
    /// Its holder let go of it here: its release was posted (set with the post, under
    /// the link's lock, so that a resume sees it whatever the holder's thread does next).
    let_go: bool,
    /// Its TTL (from its grant or its last renew), and when that runs out by this link's
    /// clock: counted from the send of that acquire or renew, so never after the server's
    /// (which counts from its arrival). Then it turns lost (`expired`) here, even with no
    /// word from the server (a cut connection), as an embedded lease does.
    ttl: Option<Duration>,
    expires: Option<Instant>,
}

/// A lease this link let go of without watching it (given up when its session lapsed,
/// or granted to a caller that went away).
struct Unwatched {
    resource: Arc<str>,
    token: Token,
    session: SessionId,
}

/// What the answer to a call also means to the link.
enum CallKind {
    Plain,
    /// A session opens: it is this link's from `sent` on; `beat`: the link heartbeats it.
    Adopt {
        sent: Instant,
        beat: bool,
    },
    /// A session is taken up by its secret: it is this link's from `sent` on.
    Resume {
        secret: Secret,
        sent: Instant,
    },
    /// A heartbeat of the link's own, sent at `sent`.
    Heartbeat {
        session: SessionId,
        sent: Instant,
    },
    /// A session closes.
    Close {
        session: SessionId,
    },
    /// A lease is renewed (for `ttl`, or its own), sent at `sent`: its session's
    /// activity then, as a heartbeat, and the start of its new TTL.
    Renew {
        token: Token,
        ttl: Option<Duration>,
        sent: Instant,
    },
}

struct Call {
    reply: Option<reply::Sender<Result<Reply>>>,
    kind: CallKind,
}

struct Acquiring {
    done: reply::Sender<Outcome>,
    ack: Option<reply::Sender<Result<Option<u64>>>>,
    on_lost: Option<LostCallback>,
    /// Its session, and when it was sent: a grant is the session's activity then.
    session: SessionId,
    sent: Instant,
}

/// A subscription of a caller, kept across reconnects.
struct Sub {
    queue: Arc<SubQueue>,
    resources: Option<Vec<String>>,
    /// The seq of the newest event it delivered (or, for one that began live, the head
    /// its first connection gave): it resumes after that. `None` until a live-only one
    /// has been told its head. Only what was delivered counts: a later connection's head
    /// says nothing about what this subscription got (its replay may have been cut off).
    last: Option<u64>,
    /// The id the current connection knows it by.
    wire_id: u64,
    /// Told the head once the first connection has it live.
    started: Option<reply::Sender<Result<u64>>>,
}

/// Everything the callers and the connection share.
struct LinkState {
    /// Where to send on the current connection, once it has resumed; `None` while
    /// disconnected.
    conn: Option<mpsc::UnboundedSender<ClientMsg>>,
    closed: bool,
    next_id: u64,
    calls: HashMap<u64, Call>,
    acquires: HashMap<u64, Acquiring>,
    /// By the caller's id; `wire` maps a connection's id to it.
    subs: HashMap<u64, Sub>,
    wire_subs: HashMap<u64, u64>,
    sessions: HashMap<SessionId, RemoteSession>,
    leases: HashMap<u64, Watched>,
    cells: Cells,
    /// Ends of leases whose grant has not come yet, by fence.
    early_ends: Recent<u64, LeaseState>,
    /// Leases this link gave up itself (their session lapsed by its clock): the server
    /// knows them only as released, so a release or renew by their token is answered
    /// here, `LockLost`, as the engine answers for a lease lost there.
    given_up: Recent<Token, (Arc<str>, LostReason)>,
    /// The server takes a release's fence and then sends no notice of it (its welcome
    /// says so).
    quiet: bool,
    /// The id of the server's engine, as its last welcome gave it.
    engine_id: Option<u64>,
    /// Releases posted with their fence, not yet known to be applied: (the id of the
    /// first message sent after it, the fence). The server handles a connection's
    /// messages in order, so an answer to that message or a later one means it was; until
    /// then the lease stays watched, so that a notice of an end that came first still
    /// reaches it, and a release lost with its connection is sent again on resume.
    releasing: VecDeque<(u64, u64)>,
    /// Leases let go of here and no longer watched, by fence: released on the server
    /// (those of a lapsed session once it resumes, and all again after each reconnect)
    /// until an answer shows the release applied, so that server and holder agree.
    to_release: HashMap<u64, Unwatched>,
    /// Why the link is disconnected (for the error callers get).
    down: String,
}

pub(crate) struct Shared {
    state: Mutex<LinkState>,
    /// The server's engine keeps a journal (its `welcome` says).
    durable: std::sync::atomic::AtomicBool,
    jobs: Jobs,
    options: ConnectOptions,
    /// Turns true when the link closes: its thread ends the connection (with a close
    /// frame) and stops.
    closing: tokio::sync::watch::Sender<bool>,
}

pub(crate) struct RemoteLink {
    shared: Arc<Shared>,
    birth: Birth,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl RemoteLink {
    /// Connects to the server at `url` (`http://HOST:PORT` or `https://`), or fails if it
    /// cannot be reached within `options.connect_timeout`.
    pub(crate) fn connect(url: &str, options: ConnectOptions) -> Result<Self> {
        if options.subscriber_buffer < 2 {
            return Err(Error::invalid("subscriber_buffer must be at least 2"));
        }
        if options.session_ttl.is_zero() {
            return Err(Error::invalid("session_ttl must be more than zero"));
        }
        if options.idle_timeout < Duration::from_millis(3) {
            return Err(Error::invalid("idle_timeout must be at least 3 ms"));
        }
        let target = io::Target::parse(url, &options)?;
        let spawn_err = |e: std::io::Error| Error::Internal(format!("cannot start a thread: {e}"));
        let (jobs, dispatcher) = Jobs::start("interlock-dispatch").map_err(spawn_err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(LinkState {
                conn: None,
                closed: false,
                next_id: 1,
                calls: HashMap::new(),
                acquires: HashMap::new(),
                subs: HashMap::new(),
                wire_subs: HashMap::new(),
                sessions: HashMap::new(),
                leases: HashMap::new(),
                cells: Cells::default(),
                early_ends: Recent::new(RECENT_ENDS),
                given_up: Recent::new(RECENT_ENDS),
                quiet: false,
                engine_id: None,
                releasing: VecDeque::new(),
                to_release: HashMap::default(),
                down: "not connected yet".into(),
            }),
            durable: Default::default(),
            jobs,
            options,
            closing: tokio::sync::watch::Sender::new(false),
        });
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("interlock-remote".into())
            .spawn(move || io::run(runner, target, first_tx))
            .map_err(spawn_err)?;
        let link = RemoteLink {
            shared,
            birth: Birth::now(),
            threads: Mutex::new(Some((thread, dispatcher))),
        };
        // The first connection's fate: connected and resumed, or why not.
        match first_rx.recv() {
            Ok(Ok(())) => Ok(link),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal("the connection thread ended".into())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.shared.lock()
    }

    /// Sends `msg` (made with a fresh id) on the current connection, registering what
    /// its answer is for first.
    fn send_new(&self, make: impl FnOnce(u64, &mut LinkState) -> ClientMsg) -> Result<()> {
        self.birth.check()?;
        let mut st = self.lock();
        st.usable()?;
        let id = st.fresh_id();
        let msg = make(id, &mut st);
        st.send(msg)
    }

    fn call(&self, cmd: Command) -> Result<reply::Receiver<Result<Reply>>> {
        self.lock().given_up_by(&cmd)?;
        if let Command::CloseSession { session } = &cmd {
            if let Some(s) = self.lock().sessions.get_mut(session) {
                s.beat = false;
                s.closing = true;
            }
        }
        let (tx, rx) = reply::channel(self.shared.options.spin);
        let (ttl, keepalive) = (
            self.shared.options.session_ttl,
            self.shared.options.keepalive,
        );
        self.send_new(|id, st| {
            let (cmd, kind) = prepare(cmd, ttl, keepalive);
            st.calls.insert(
                id,
                Call {
                    reply: Some(tx),
                    kind,
                },
            );
            match cmd {
                // The protocol's own message, so that the connection acts as the session
                // from then on (as for a session it opened).
                Command::Resume { session, secret } => ClientMsg::Resume {
                    id,
                    session,
                    secret,
                },
                cmd => ClientMsg::Call { id, cmd },
            }
        })?;
        Ok(rx)
    }
}

/// Gives a session opened remotely its TTL, and says what the answer means to the link.
fn prepare(mut cmd: Command, ttl: Duration, keepalive: bool) -> (Command, CallKind) {
    let kind = match &mut cmd {
        Command::OpenSession(spec) => {
            let beat = keepalive || spec.ttl.is_none();
            spec.ttl = Some(spec.ttl.unwrap_or(ttl));
            CallKind::Adopt {
                sent: Instant::now(),
                beat,
            }
        }
        Command::Resume { secret, .. } => CallKind::Resume {
            secret: *secret,
            sent: Instant::now(),
        },
        Command::CloseSession { session } => CallKind::Close { session: *session },
        Command::Heartbeat { session } => CallKind::Heartbeat {
            session: *session,
            sent: Instant::now(),
        },
        Command::Renew { token, ttl, .. } => CallKind::Renew {
            token: *token,
            ttl: *ttl,
            sent: Instant::now(),
        },
        _ => CallKind::Plain,
    };
    (cmd, kind)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LinkState {
    /// A server's welcome gave `engine_id`. Another id than the last connection's (a
    /// server restarted without its journal, say) is another history: what the
    /// subscriptions had not yet got of the old one is gone, and the new one counts its
    /// seqs from 1 again. Each subscription is told so by a `lagged` marker without a
    /// count (how many it missed is unknown), and resumes from the new engine's first
    /// event.
    pub(super) fn welcomed(&mut self, jobs: &Jobs, engine_id: Option<u64>) {
        let before = std::mem::replace(&mut self.engine_id, engine_id);
        if before.is_none() || engine_id.is_none() || before == engine_id {
            return;
        }
        // Ends the old engine told of before their grants came are not this one's (whose
        // fences may be the same numbers).
        self.early_ends = Recent::new(RECENT_ENDS);
        for s in self.subs.values_mut().filter(|s| s.last.is_some()) {
            s.last = Some(0);
            s.queue.push(Arc::new(Event::lagged(None)));
            jobs.schedule(&s.queue);
        }
    }

    /// The server acknowledged activity of `session` sent at `sent`: its TTL counts from
    /// there at the latest.
    fn active(&mut self, session: SessionId, sent: Instant) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.acked = s.acked.max(sent);
        }
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Calls may be sent: not closed, and connected.
    fn usable(&self) -> Result<()> {
        match (self.closed, &self.conn) {
            (true, _) => Err(Error::EngineClosed),
            (false, None) => Err(Error::ConnectionLost(self.down.clone())),
            (false, Some(_)) => Ok(()),
        }
    }

    fn send(&self, msg: ClientMsg) -> Result<()> {
        match &self.conn {
            Some(conn) => conn
                .send(msg)
                .map_err(|_| Error::ConnectionLost(self.down.clone())),
            None => Err(Error::ConnectionLost(self.down.clone())),
        }
    }

    /// A session's answer came: it is this link's, counted from `sent`.
    fn adopt(
        &mut self,
        session: SessionId,
        secret: Secret,
        ttl: Duration,
        sent: Instant,
        beat: bool,
    ) {
        self.sessions.insert(
            session,
            RemoteSession {
                secret,
                ttl,
                acked: sent,
                sent,
                lapsed: false,
                beat,
                closing: false,
            },
        );
    }

    /// Makes the cells of granted leases and watches them.
    fn hold(
        &mut self,
        grants: Grants,
        on_lost: &Option<LostCallback>,
        sent: Instant,
    ) -> SmallVec<[Held; 1]> {
        grants
            .into_iter()
            .map(|grant| {
                let cell = self.cells.fresh();
                if let Some(end) = self.early_ends.remove(&grant.fence) {
                    cell.leave_held(end);
                } else {
                    self.leases.insert(
                        grant.fence,
                        Watched {
                            cell: cell.clone(),
                            on_lost: on_lost.clone(),
                            session: grant.session_id,
                            resource: grant.resource.clone(),
                            token: grant.token,
                            let_go: false,
                            ttl: grant.ttl,
                            expires: grant.ttl.and_then(|t| sent.checked_add(t)),
                        },
                    );
                }
                Held { grant, cell }
            })
            .collect()
    }

    /// A lease ended as `end`: its cell says so and its `on_lost` runs (unless its holder
    /// released it first). A fence not yet known is remembered for its grant.
    fn end_lease(&mut self, jobs: &Jobs, fence: u64, end: LeaseState) {
        let Some(w) = self.leases.remove(&fence) else {
            self.early_ends.insert(fence, end);
            return;
        };
        tell_end(jobs, &w, fence, end);
    }

    /// The leases of `session` that are still held.
    fn leases_of(&self, session: SessionId) -> Vec<u64> {
        self.leases
            .iter()
            .filter(|(_, w)| w.session == session)
            .map(|(f, _)| *f)
            .collect()
    }

    /// Ends the leases of a session that ended, or that lapsed here.
    fn lose_session(&mut self, jobs: &Jobs, session: SessionId, reason: LostReason) {
        for fence in self.leases_of(session) {
            if let Some(w) = self.leases.get(&fence) {
                // One its holder let go of was released, not lost: a second release of
                // it is answered by the server, as the engine answers.
                if !w.let_go {
                    self.given_up.insert(w.token, (w.resource.clone(), reason));
                }
                if reason == LostReason::ConnectionLost {
                    let lease = Unwatched {
                        resource: w.resource.clone(),
                        token: w.token,
                        session,
                    };
                    self.to_release.insert(fence, lease);
                }
            }
            self.end_lease(jobs, fence, LeaseState::Lost(reason));
        }
    }

    /// `LockLost`, if `cmd` hands back the token of a lease given up here.
    fn given_up_by(&self, cmd: &Command) -> Result<()> {
        match cmd {
            Command::Release { token, .. } | Command::Renew { token, .. } => {
                self.given_up_token(token)
            }
            _ => Ok(()),
        }
    }

    /// `LockLost`, if `token` is of a lease given up here.
    fn given_up_token(&self, token: &Token) -> Result<()> {
        match self.given_up.get(token) {
            Some((resource, reason)) => Err(Error::LockLost {
                resource: resource.to_string(),
                reason: *reason,
            }),
            None => Ok(()),
        }
    }

    /// A lease's TTL ran out by the link's clock: it turns lost (`expired`) here, and
    /// stays watched until the server's own word of its end (which says `expired` in the
    /// history, as the server saw it), or a renew that was on its way (see `renewed`).
    fn expire_here(&mut self, jobs: &Jobs, fence: u64) {
        if let Some(w) = self.leases.get_mut(&fence) {
            w.expires = None;
            tell_end(jobs, w, fence, LeaseState::Lost(LostReason::Expired));
        }
    }

    /// The server renewed the lease of `token` at `sent`, for `ttl` (or its own). If the
    /// link had already let it expire here, the renew came too late for its holder: the
    /// lease is released there too, and the renew fails as lost.
    pub(super) fn renewed(
        &mut self,
        token: Token,
        ttl: Option<Duration>,
        sent: Instant,
    ) -> Result<()> {
        // Not watched: given up here while the renew was on its way (the server renewed
        // a lease the link had already ended and arranged to release), or not this
        // link's.
        let Some((&fence, w)) = self.leases.iter_mut().find(|(_, w)| w.token == token) else {
            return self.given_up_token(&token);
        };
        if w.cell.get() == LeaseState::Held {
            w.ttl = ttl.or(w.ttl);
            w.expires = w.ttl.and_then(|t| sent.checked_add(t));
            let session = w.session;
            self.active(session, sent);
            return Ok(());
        }
        let resource = w.resource.clone();
        let tx = self.conn.clone();
        let _ = self.post_release(tx.as_ref(), resource.clone(), token, fence);
        Err(Error::LockLost {
            resource: resource.to_string(),
            reason: LostReason::Expired,
        })
    }

    /// An event of a lease of this link's sessions.
    fn lease_event(&mut self, jobs: &Jobs, ev: &Event) {
        if let Some((fence, end)) = ev.lease_end() {
            self.end_lease(jobs, fence, end);
        }
    }

    /// Posts on `tx` (the connection, if there is one) the release of the lease `fence`
    /// by `token` (see `releasing`). Only the token the lease was handed out with lets it
    /// go here: a release with another fails on the server, and ends nothing. A lease of
    /// this link's let go of while its connection is gone (or going: the send fails) is
    /// `ConnectionLost`, but released all the same by the next connection's resume
    /// (`io::check_leases`, `post_let_go`); if the link never comes back, the server
    /// expires its session after its TTL.
    fn post_release(
        &mut self,
        tx: Option<&mpsc::UnboundedSender<ClientMsg>>,
        resource: Arc<str>,
        token: Token,
        fence: u64,
    ) -> Result<()> {
        let watched = self.leases.get_mut(&fence).filter(|w| w.token == token);
        let ours = match watched {
            Some(w) => {
                w.let_go = true;
                true
            }
            None => self
                .to_release
                .get(&fence)
                .is_some_and(|u| u.token == token),
        };
        let msg = ClientMsg::Post {
            cmd: Command::Release { resource, token },
            fence: self.quiet.then_some(fence),
        };
        let sent = tx.is_some_and(|tx| tx.send(msg).is_ok());
        if !sent {
            return Err(Error::ConnectionLost(self.down.clone()));
        }
        if ours {
            self.releasing.push_back((self.next_id, fence));
        }
        Ok(())
    }

    /// Posts on `tx`, a connection about to open to callers, every release let go of here
    /// and not yet posted on it: one let go of during its resume, after the resume had
    /// looked at that lease.
    pub(super) fn post_let_go(&mut self, tx: &mpsc::UnboundedSender<ClientMsg>) {
        let posted: HashSet<u64> = self.releasing.iter().map(|(_, f)| *f).collect();
        let watched = self
            .leases
            .iter()
            .filter(|(_, w)| w.let_go)
            .map(|(f, w)| (*f, w.resource.clone(), w.token));
        let unwatched = self
            .to_release
            .iter()
            .map(|(f, u)| (*f, u.resource.clone(), u.token));
        let posts: Vec<_> = watched
            .chain(unwatched)
            .filter(|(f, _, _)| !posted.contains(f))
            .collect();
        for (fence, resource, token) in posts {
            let _ = self.post_release(Some(tx), resource, token, fence);
        }
    }

    /// Posts on `tx` the releases of `to_release` (of every lease in it, or of
    /// `session`'s).
    fn post_unwatched(
        &mut self,
        tx: &mpsc::UnboundedSender<ClientMsg>,
        session: Option<SessionId>,
    ) {
        let posts: Vec<(Arc<str>, Token, u64)> = self
            .to_release
            .iter()
            .filter(|(_, u)| session.is_none_or(|s| u.session == s))
            .map(|(f, u)| (u.resource.clone(), u.token, *f))
            .collect();
        for (resource, token, fence) in posts {
            let _ = self.post_release(Some(tx), resource, token, fence);
        }
    }

    /// The message `id` was answered: the releases posted before it were applied, and
    /// no notice of them will come.
    fn confirm(&mut self, id: u64) {
        while let Some(&(after, fence)) = self.releasing.front() {
            if after > id {
                break;
            }
            self.releasing.pop_front();
            self.to_release.remove(&fence);
            if self.quiet {
                // No notice of it will come: its holder learns it here.
                if let Some(w) = self.leases.remove(&fence) {
                    w.cell.leave_held(LeaseState::Released);
                }
            }
        }
    }

    /// The connection is gone: every call and wait in flight fails with `err`.
    fn fail_in_flight(&mut self, err: &Error) {
        self.conn = None;
        // Whether these got through is unknown: their leases stay watched, and the
        // resume checks them (`io::check_leases`).
        self.releasing.clear();
        self.fail_waits(err);
        self.wire_subs.clear();
    }

    /// Every call and wait in flight fails with `err`; their answers are ignored.
    fn fail_waits(&mut self, err: &Error) {
        for (_, call) in self.calls.drain() {
            if let Some(reply) = call.reply {
                let _ = reply.send(Err(err.clone()));
            }
        }
        for (_, a) in self.acquires.drain() {
            if let Some(ack) = a.ack {
                let _ = ack.send(Err(err.clone()));
            }
            let _ = a.done.send(Err(err.clone()));
        }
    }
}

impl Link for RemoteLink {
    fn callbacks_done(&self) -> Result<reply::Receiver<()>> {
        self.birth.check()?;
        Ok(self.shared.jobs.barrier())
    }

    fn durable(&self) -> bool {
        self.shared
            .durable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn engine_id(&self) -> Option<u64> {
        self.lock().engine_id
    }

    fn request(&self, cmd: Command) -> Result<reply::Receiver<Result<Reply>>> {
        self.call(cmd)
    }

    fn release(&self, cmd: Command, fence: u64) -> Result<()> {
        self.birth.check()?;
        let mut st = self.lock();
        if st.closed {
            return Err(Error::EngineClosed);
        }
        let Command::Release { resource, token } = cmd else {
            return Err(Error::invalid("only a release is posted"));
        };
        let tx = st.conn.clone();
        st.post_release(tx.as_ref(), resource, token, fence)
    }

    fn acquire(&self, mut req: AcquireRequest, ack: bool) -> Result<Started> {
        let spin = self.shared.options.spin;
        let (done, done_rx) = reply::channel(spin);
        let (ack_tx, ack_rx) = match ack {
            true => {
                let (t, r) = reply::channel(spin);
                (Some(t), Some(r))
            }
            false => (None, None),
        };
        let on_lost = req.options.on_lost.take();
        let mut key = 0;
        self.send_new(|id, st| {
            key = id;
            st.acquires.insert(
                id,
                Acquiring {
                    done,
                    ack: ack_tx,
                    on_lost,
                    session: req.session,
                    sent: Instant::now(),
                },
            );
            ClientMsg::Acquire {
                id,
                request: req,
                ack,
            }
        })?;
        Ok(Started {
            key,
            done: done_rx,
            ack: ack_rx,
        })
    }

    fn cancel(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>> {
        let (tx, rx) = reply::channel(self.shared.options.spin);
        self.send_new(|id, st| {
            st.calls.insert(
                id,
                Call {
                    reply: Some(tx),
                    kind: CallKind::Plain,
                },
            );
            ClientMsg::Cancel { id, of: key }
        })?;
        Ok(rx)
    }

    fn position(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>> {
        let (tx, rx) = reply::channel(self.shared.options.spin);
        self.send_new(|id, st| {
            st.calls.insert(
                id,
                Call {
                    reply: Some(tx),
                    kind: CallKind::Plain,
                },
            );
            ClientMsg::Position { id, of: key }
        })?;
        Ok(rx)
    }

    fn subscribe(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
        callback: Option<EventCallback>,
    ) -> Result<(Arc<SubQueue>, u64)> {
        let queue = Arc::new(SubQueue::new(
            filter_of(resources),
            self.shared.options.subscriber_buffer,
            callback,
        ));
        let (tx, rx) = reply::channel(self.shared.options.spin);
        let resources = resources.map(<[String]>::to_vec);
        let sub_queue = queue.clone();
        self.send_new(|id, st| {
            st.subs.insert(
                id,
                Sub {
                    queue: sub_queue,
                    resources: resources.clone(),
                    last: since,
                    wire_id: id,
                    started: Some(tx),
                },
            );
            st.wire_subs.insert(id, id);
            ClientMsg::Subscribe {
                id,
                resources,
                since,
            }
        })?;
        let head = rx.recv().map_err(|_| Error::EngineClosed)??;
        Ok((queue, head))
    }

    fn close(&self) {
        if self.birth.forked() {
            return;
        }
        // To its callers the engine closes at once, as an embedded one does: waits fail
        // with `EngineClosed` (left waiting, the closing of the sessions below could grant
        // them), leases end as closed, subscriptions end before any event of that
        // closing. Then the sessions this link opened end with it (their locks go at
        // once, not after their TTL), and the connection closes.
        let closing: Vec<_> = {
            let mut st = self.lock();
            st.closed = true;
            st.fail_waits(&Error::EngineClosed);
            for (_, w) in st.leases.drain() {
                w.cell.leave_held(LeaseState::Closed);
            }
            for (_, s) in st.subs.drain() {
                s.queue.close();
            }
            let sessions: Vec<SessionId> = st.sessions.keys().copied().collect();
            sessions
                .into_iter()
                .filter_map(|session| {
                    let (tx, rx) = reply::channel(self.shared.options.spin);
                    let id = st.fresh_id();
                    let call = Call {
                        reply: Some(tx),
                        kind: CallKind::Close { session },
                    };
                    st.calls.insert(id, call);
                    let cmd = Command::CloseSession { session };
                    st.send(ClientMsg::Call { id, cmd }).ok().map(|()| rx)
                })
                .collect()
        };
        for rx in closing {
            let _ = rx.recv_timeout(Some(Duration::from_secs(2)));
        }
        self.lock().fail_in_flight(&Error::EngineClosed);
        self.shared.closing.send_replace(true);
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((io, dispatcher)) = threads {
            // The link's state keeps a sender of the dispatcher's: it is told to stop.
            self.shared.jobs.stop();
            let me = std::thread::current().id();
            if me != io.thread().id() {
                let _ = io.join();
            }
            if me != dispatcher.thread().id() {
                let _ = dispatcher.join();
            }
        }
    }
}

impl Drop for RemoteLink {
    fn drop(&mut self) {
        self.close();
        if self.birth.forked() {
            if let Some(threads) = self.threads.get_mut().ok().and_then(Option::take) {
                std::mem::forget(threads);
            }
        }
    }
}

/// A tick of the link's clock: heartbeats are sent and TTLs checked this often.
fn tick_of(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// How long before its TTL runs out (counted from the send of the last acknowledged
/// heartbeat) a session's leases are given up: two ticks, or a twentieth of the TTL,
/// whichever is longer, so that a late tick still comes before the server's expiry.
fn margin_of(ttl: Duration) -> Duration {
    (2 * tick_of(ttl)).max(ttl / 20).min(ttl / 2)
}

/// Ids of sessions due a heartbeat of the link's own now; sessions that lapsed have
/// their leases given up here.
fn due(st: &mut LinkState, jobs: &Jobs, now: Instant) -> Vec<SessionId> {
    let mut beat = Vec::new();
    let mut lapsed = Vec::new();
    for (id, s) in st.sessions.iter_mut() {
        if !s.lapsed && now >= s.acked + s.ttl - margin_of(s.ttl) {
            s.lapsed = true;
            lapsed.push(*id);
        }
        if s.beat && now >= s.sent + s.ttl / 3 {
            s.sent = now;
            beat.push(*id);
        }
    }
    for id in lapsed {
        st.lose_session(jobs, id, LostReason::ConnectionLost);
    }
    let expired: Vec<u64> = st
        .leases
        .iter()
        .filter(|(_, w)| !w.let_go && w.expires.is_some_and(|at| now >= at - lease_margin(w)))
        .map(|(fence, _)| *fence)
        .collect();
    for fence in expired {
        st.expire_here(jobs, fence);
    }
    beat
}

/// A lease ended as `end`: its cell says so and its `on_lost` runs (unless it had ended
/// already, or its holder released it first).
fn tell_end(jobs: &Jobs, w: &Watched, fence: u64, end: LeaseState) {
    let before = w.cell.leave_held(end);
    if let (LeaseState::Held, LeaseState::Lost(reason), Some(callback)) = (before, end, &w.on_lost)
    {
        let notice = LostNotice {
            resource: w.resource.clone(),
            fence,
            session_id: w.session,
            reason,
        };
        jobs.lost(callback.clone(), notice);
    }
}

/// How long before its TTL runs out by the link's clock a lease turns lost: a twentieth
/// of its TTL, at most 50 ms, so that a timer that fires late still comes first.
fn lease_margin(w: &Watched) -> Duration {
    w.ttl
        .map_or(Duration::ZERO, |t| (t / 20).min(Duration::from_millis(50)))
}

/// How long the link's clock sleeps: a tick of its shortest session TTL, and no later
/// than the next lease's TTL runs out.
fn next_tick(st: &LinkState, now: Instant) -> Duration {
    let tick = st
        .sessions
        .values()
        .map(|s| tick_of(s.ttl))
        .min()
        .unwrap_or(Duration::from_millis(100));
    st.leases
        .values()
        .filter(|w| !w.let_go)
        .filter_map(|w| {
            w.expires
                .map(|at| (at - lease_margin(w)).saturating_duration_since(now))
        })
        .fold(tick, Duration::min)
}

/// The sessions and their secrets, to resume on a new connection.
fn to_resume(st: &LinkState) -> Vec<(SessionId, Secret, bool)> {
    st.sessions
        .iter()
        .map(|(id, s)| (*id, s.secret, s.closing))
        .collect()
}
