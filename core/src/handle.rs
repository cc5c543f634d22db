//! The public face of an engine: [`Handle`] (cheap to clone, usable from any thread),
//! [`Session`], [`Lease`] and [`Ticket`]. Every call is a message to the actor and a
//! reply; blocking and async callers share the same path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::actor::{self, Actor, GrantResult, LostCallback, Msg};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::reply;
use crate::state::{AcquireRequest, Command, Config, Grant, Reply, SessionSpec, State, WaitId};
use crate::subscription::{EventCallback, SubQueue, Subscription};
use crate::types::*;

/// A cheap, cloneable reference to one engine. The engine closes on [`Handle::close`]
/// or when the last handle (including those inside sessions, leases and tickets) drops.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    next_wait: AtomicU64,
    subscriber_buffer: usize,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    actor: ThreadId,
    dispatcher: ThreadId,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A thread cannot join itself: the last handle may drop on the actor thread (held
        // by a callback it discards), and a callback that closes the engine runs on the
        // dispatcher. Each of them ends on its own after `Close`.
        let me = std::thread::current().id();
        if let Some((actor, dispatcher)) = threads {
            if me != self.actor {
                let _ = actor.join();
            }
            if me != self.dispatcher {
                let _ = dispatcher.join();
            }
        }
    }
}

/// Tells `enqueue` whether its request waits, and where.
type Ack = reply::Receiver<Result<Option<u64>>>;

fn unexpected(r: Reply) -> Error {
    Error::Internal(format!("unexpected reply {r:?}"))
}

fn closed<T>(_: T) -> Error {
    Error::EngineClosed
}

/// Options of an acquire. `AcquireOptions::default()` is an exclusive request that waits
/// forever at priority 100 with the engine's lock TTL.
#[derive(Clone)]
pub struct AcquireOptions {
    pub mode: Mode,
    /// `None` waits forever; zero tries once without queueing.
    pub timeout: Option<Duration>,
    /// `None`: the engine's `lock_ttl`.
    pub ttl: Option<Duration>,
    /// 0 is most important, 255 least.
    pub priority: u8,
    /// Revoke conflicting holders of strictly lower priority.
    pub preempt: bool,
    pub reason: Option<String>,
    /// Take over conflicting holders whose session is stale.
    pub break_stale: bool,
    /// Called on the dispatcher thread if a granted lease is lost.
    pub on_lost: Option<LostCallback>,
}

impl Default for AcquireOptions {
    fn default() -> Self {
        AcquireOptions {
            mode: Mode::Exclusive,
            timeout: None,
            ttl: None,
            priority: DEFAULT_PRIORITY,
            preempt: false,
            reason: None,
            break_stale: false,
            on_lost: None,
        }
    }
}

impl std::fmt::Debug for AcquireOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireOptions")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .field("preempt", &self.preempt)
            .field("reason", &self.reason)
            .field("break_stale", &self.break_stale)
            .field("on_lost", &self.on_lost.is_some())
            .finish()
    }
}

impl Handle {
    /// Starts an engine on the system clock.
    pub fn new(config: Config) -> Result<Handle> {
        Handle::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// Starts an engine on the given clock (a [`crate::ManualClock`] in tests).
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Handle> {
        if config.subscriber_buffer < 2 {
            return Err(Error::invalid("subscriber_buffer must be at least 2"));
        }
        let subscriber_buffer = config.subscriber_buffer;
        let state = State::new(config, clock.unix_base());
        let (tx, rx) = crossbeam_channel::unbounded();
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let spawn_err = |e: std::io::Error| Error::Internal(format!("cannot start a thread: {e}"));
        let dispatcher = std::thread::Builder::new()
            .name("interlock-dispatch".into())
            .spawn(move || actor::dispatch(jobs_rx))
            .map_err(spawn_err)?;
        let actor = Actor::new(state, clock, rx, jobs_tx);
        let actor = std::thread::Builder::new()
            .name("interlock-actor".into())
            .spawn(move || actor.run())
            .map_err(spawn_err)?;
        Ok(Handle {
            inner: Arc::new(Inner {
                tx,
                next_wait: AtomicU64::new(1),
                subscriber_buffer,
                actor: actor.thread().id(),
                dispatcher: dispatcher.thread().id(),
                threads: Mutex::new(Some((actor, dispatcher))),
            }),
        })
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.inner.tx.send(msg).map_err(closed)
    }

    fn request(&self, cmd: Command) -> Result<reply::Receiver<Result<Reply>>> {
        let (tx, rx) = reply::channel();
        self.send(Msg::Call {
            cmd,
            reply: Some(tx),
        })?;
        Ok(rx)
    }

    /// Sends one command and waits for its reply.
    pub(crate) fn call(&self, cmd: Command) -> Result<Reply> {
        self.request(cmd)?.recv().map_err(closed)?
    }

    /// Closes the engine: pending waits fail with `EngineClosed`, subscriptions end, the
    /// actor thread is joined. Later calls fail with `EngineClosed`. Closing twice is harmless.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Releases the lease `token` on `resource`; `InvalidToken` if it is not current.
    pub fn release(&self, resource: &str, token: Token) -> Result<()> {
        match self.call(Command::Release {
            resource: resource.into(),
            token,
        })? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Releases every holder of `resource`; returns how many there were.
    pub fn force_release(&self, resource: &str, reason: Option<&str>) -> Result<usize> {
        let cmd = Command::ForceRelease {
            resource: resource.into(),
            reason: reason.map(Into::into),
        };
        match self.call(cmd)? {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    pub fn status(&self, resource: &str) -> Result<ResourceStatus> {
        match self.call(Command::Status(resource.into()))? {
            Reply::Status(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    /// The status of every held resource, by name.
    pub fn locks(&self) -> Result<Vec<ResourceStatus>> {
        match self.call(Command::Locks)? {
            Reply::Locks(l) => Ok(l),
            r => Err(unexpected(r)),
        }
    }

    /// Every open session, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        match self.call(Command::Sessions)? {
            Reply::Sessions(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    pub fn check(&self, resource: &str, session: SessionId, action: Action) -> Result<bool> {
        self.ask_bool(Command::Check {
            resource: resource.into(),
            session,
            action,
        })
    }

    /// True iff a current lease on `resource` carries `fence`.
    pub fn check_fence(&self, resource: &str, fence: u64) -> Result<bool> {
        self.ask_bool(Command::CheckFence {
            resource: resource.into(),
            fence,
        })
    }

    fn ask_bool(&self, cmd: Command) -> Result<bool> {
        match self.call(cmd)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    /// Recorded events, oldest first: of one resource, of one session (or both at once),
    /// or the global ring; the last `limit` of them.
    pub fn history(
        &self,
        resource: Option<&str>,
        session: Option<SessionId>,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Event>>> {
        let cmd = Command::History {
            resource: resource.map(Into::into),
            session,
            limit,
        };
        match self.call(cmd)? {
            Reply::History(h) => Ok(h),
            r => Err(unexpected(r)),
        }
    }

    /// A live stream of events (of `resources` only, if given). With `since`, first the
    /// global ring's events after that `seq` (a `lagged` marker first if some are gone).
    pub fn subscribe(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
    ) -> Result<Subscription> {
        self.subscribe_with(resources, since, None)
    }

    /// Like [`Handle::subscribe`], but `callback` runs on the dispatcher thread for each
    /// event. Dropping or closing the returned subscription stops it.
    pub fn subscribe_callback(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
        callback: impl FnMut(&Event) + Send + 'static,
    ) -> Result<Subscription> {
        self.subscribe_with(resources, since, Some(Box::new(callback)))
    }

    fn subscribe_with(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
        callback: Option<EventCallback>,
    ) -> Result<Subscription> {
        for r in resources.into_iter().flatten() {
            validate_resource(r)?;
        }
        let queue = Arc::new(SubQueue::new(
            actor::filter_of(resources),
            self.inner.subscriber_buffer,
            callback,
        ));
        let (tx, rx) = reply::channel();
        self.send(Msg::Subscribe {
            queue: queue.clone(),
            since,
            reply: tx,
        })?;
        rx.recv().map_err(closed)??;
        Ok(Subscription { queue })
    }

    // ----- session calls, by session id (the C API names sessions by id) ----------

    /// Ends the session `id` (see [`Session::close`]); 0 if it had already ended.
    pub fn close_session(&self, id: SessionId) -> Result<usize> {
        match self.call(Command::CloseSession(id))? {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// A [`Session`] value for an id known from elsewhere (the C API, a listing).
    pub fn session(&self, id: SessionId) -> Result<Session> {
        self.session_from(self.call(Command::Session(id))?)
    }

    /// Opens a session.
    pub fn open_session(&self, spec: SessionSpec) -> Result<Session> {
        self.session_from(self.call(Command::OpenSession(spec))?)
    }

    fn session_from(&self, reply: Reply) -> Result<Session> {
        match reply {
            Reply::Session(info) => Ok(Session {
                handle: self.clone(),
                id: info.id,
                name: info.name,
                metadata: info.metadata,
            }),
            r => Err(unexpected(r)),
        }
    }

    fn start(
        &self,
        session: SessionId,
        resources: &[&str],
        opts: &AcquireOptions,
        ack: bool,
    ) -> Result<(Ticket, Option<Ack>)> {
        let wait = self.inner.next_wait.fetch_add(1, Ordering::Relaxed);
        let resources: Arc<[String]> = resources.iter().map(|r| (*r).to_owned()).collect();
        let req = AcquireRequest {
            wait,
            session,
            resources: resources.clone(),
            mode: opts.mode,
            timeout: opts.timeout,
            ttl: opts.ttl,
            priority: opts.priority,
            preempt: opts.preempt,
            reason: opts.reason.clone(),
            break_stale: opts.break_stale,
        };
        let (done, rx) = reply::channel();
        let (ack_tx, ack_rx) = match ack {
            true => {
                let (t, r) = reply::channel();
                (Some(t), Some(r))
            }
            false => (None, None),
        };
        self.send(Msg::Acquire {
            req,
            done,
            ack: ack_tx,
            on_lost: opts.on_lost.clone(),
        })?;
        let ticket = Ticket {
            handle: self.clone(),
            wait,
            resources,
            rx,
            state: Mutex::new(TicketState::Pending),
        };
        Ok((ticket, ack_rx))
    }
}

/// A client of the engine. Dropping it does not end the session: sessions end by
/// [`Session::close`], by TTL, or with the engine.
#[derive(Clone)]
pub struct Session {
    handle: Handle,
    id: SessionId,
    name: Arc<str>,
    metadata: Arc<serde_json::Value>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Session {
    pub fn id(&self) -> SessionId {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Records activity (and revives a stale session).
    pub fn heartbeat(&self) -> Result<()> {
        match self.handle.call(Command::Heartbeat(self.id))? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Ends the session: releases its leases (returns how many) and cancels its waits.
    /// Closing a closed session returns 0.
    pub fn close(&self) -> Result<usize> {
        self.handle.close_session(self.id)
    }

    /// Acquires one resource, waiting as `opts.timeout` says.
    pub fn acquire(&self, resource: &str, opts: &AcquireOptions) -> Result<Lease> {
        one(self.acquire_many(&[resource], opts)?)
    }

    /// Acquires all of `resources` at once or none; leases in the order given.
    pub fn acquire_many(&self, resources: &[&str], opts: &AcquireOptions) -> Result<Vec<Lease>> {
        self.request(resources, opts)?.wait(None)
    }

    pub async fn acquire_async(&self, resource: &str, opts: &AcquireOptions) -> Result<Lease> {
        one(self.acquire_many_async(&[resource], opts).await?)
    }

    /// Async [`Session::acquire_many`]; dropping the future withdraws the request.
    pub async fn acquire_many_async(
        &self,
        resources: &[&str],
        opts: &AcquireOptions,
    ) -> Result<Vec<Lease>> {
        self.request(resources, opts)?.wait_async().await
    }

    /// Sends an acquire and returns at once; its outcome (errors included) comes from the
    /// ticket. For bindings that wait in slices (to answer Ctrl-C) and for async callers.
    pub fn request(&self, resources: &[&str], opts: &AcquireOptions) -> Result<Ticket> {
        Ok(self.handle.start(self.id, resources, opts, false)?.0)
    }

    /// Queues an acquire without waiting for it: errors (bad input, `AlreadyHeld`,
    /// `Deadlock`, a `timeout` of zero that failed) come at once; the ticket tells its
    /// position and can be waited on or cancelled.
    pub fn enqueue(&self, resources: &[&str], opts: &AcquireOptions) -> Result<Ticket> {
        let (ticket, ack) = self.handle.start(self.id, resources, opts, true)?;
        if let Some(ack) = ack {
            ack.recv().map_err(closed)??;
        }
        Ok(ticket)
    }
}

fn one(mut leases: Vec<Lease>) -> Result<Lease> {
    leases
        .pop()
        .ok_or_else(|| Error::Internal("a grant without a lease".into()))
}

enum TicketState {
    Pending,
    Done,
    Cancelled,
}

/// A queued acquire: wait on it, ask its position, or cancel it. Dropping a ticket that
/// is still pending withdraws the request (and undoes a grant that arrived unseen).
pub struct Ticket {
    handle: Handle,
    wait: WaitId,
    resources: Arc<[String]>,
    rx: reply::Receiver<GrantResult>,
    state: Mutex<TicketState>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("wait", &self.wait)
            .field("resources", &self.resources)
            .finish()
    }
}

impl Ticket {
    /// The current 1-based place in the queue (the largest over its resources); `None`
    /// once granted, cancelled or failed.
    pub fn position(&self) -> Result<Option<u64>> {
        match self.handle.call(Command::Position(self.wait))? {
            Reply::Position(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    /// The resources asked for, in order.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// Waits up to `slice` (forever if `None`): `Ok(None)` if nothing came yet.
    pub fn poll(&self, slice: Option<Duration>) -> Result<Option<Vec<Lease>>> {
        let got = self.rx.recv_timeout(slice).map_err(|_| self.gone())?;
        got.map(|outcome| self.settle(outcome)).transpose()
    }

    /// Waits for the outcome; after `timeout` gives `LockTimeout` and stays queued.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<Lease>> {
        self.poll(timeout)?
            .ok_or_else(|| Error::LockTimeout(self.resources.join(", ")))
    }

    /// Awaits the outcome; if this future is dropped the ticket stays queued.
    pub async fn wait_async(&self) -> Result<Vec<Lease>> {
        let outcome = std::future::poll_fn(|cx| self.rx.poll_recv(cx)).await;
        self.settle(outcome.map_err(|_| self.gone())?)
    }

    fn gone(&self) -> Error {
        match *self.lock() {
            TicketState::Cancelled => Error::Cancelled("ticket cancelled".into()),
            TicketState::Done => Error::NotFound("ticket already completed".into()),
            TicketState::Pending => Error::EngineClosed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, outcome: GrantResult) -> Result<Vec<Lease>> {
        let mut state = self.lock();
        if matches!(*state, TicketState::Cancelled) {
            return Err(Error::Cancelled("ticket cancelled".into()));
        }
        *state = TicketState::Done;
        Ok(outcome?
            .into_iter()
            .map(|g| Lease::new(self.handle.clone(), g))
            .collect())
    }

    /// Withdraws the request: its queue entry goes, or a grant it was sent but never
    /// returned is released. Later waits give `Cancelled`.
    pub fn cancel(&self) -> Result<()> {
        {
            let mut state = self.lock();
            if !matches!(*state, TicketState::Pending) {
                return Ok(());
            }
            *state = TicketState::Cancelled;
        }
        match self.handle.call(self.cancel_command())? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn cancel_command(&self) -> Command {
        Command::Cancel {
            wait: self.wait,
            resources: self.resources.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if matches!(*self.lock(), TicketState::Pending) {
            let _ = self.handle.send(Msg::Call {
                cmd: self.cancel_command(),
                reply: None,
            });
        }
    }
}

/// One session's hold on one resource. Dropping a lease does not release it.
pub struct Lease {
    handle: Handle,
    grant: Grant,
    expires_at: Mutex<Option<f64>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &self.grant.resource)
            .field("mode", &self.grant.mode)
            .field("fence", &self.grant.fence)
            .field("session_id", &self.grant.session_id)
            .field("state", &self.state())
            .finish()
    }
}

impl Lease {
    fn new(handle: Handle, grant: Grant) -> Self {
        Lease {
            handle,
            expires_at: Mutex::new(grant.expires_at),
            grant,
        }
    }

    pub fn resource(&self) -> &str {
        &self.grant.resource
    }
    pub fn mode(&self) -> Mode {
        self.grant.mode
    }
    pub fn session_id(&self) -> SessionId {
        self.grant.session_id
    }
    /// The secret that releases this lease.
    pub fn token(&self) -> Token {
        self.grant.token
    }
    pub fn fence(&self) -> u64 {
        self.grant.fence
    }
    pub fn acquired_at(&self) -> f64 {
        self.grant.acquired_at
    }
    pub fn expires_at(&self) -> Option<f64> {
        *self.expires_at.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn ttl(&self) -> Option<Duration> {
        self.grant.ttl
    }
    pub fn priority(&self) -> u8 {
        self.grant.priority
    }
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Held, released, lost (and why) or ended by the engine closing: exact as soon as
    /// the engine has acted.
    pub fn state(&self) -> LeaseState {
        self.grant.cell.get()
    }
    pub fn is_valid(&self) -> bool {
        self.state() == LeaseState::Held
    }
    pub fn lost_reason(&self) -> Option<LostReason> {
        match self.state() {
            LeaseState::Lost(r) => Some(r),
            _ => None,
        }
    }

    /// `LockLost` if the lease was lost; an error about a token that is no longer
    /// current means the same once the cell says so.
    fn explain(&self, e: Error) -> Error {
        match (self.state(), e) {
            (LeaseState::Lost(reason), Error::InvalidToken(_)) => Error::LockLost {
                resource: self.resource().into(),
                reason,
            },
            (_, e) => e,
        }
    }

    fn precheck(&self) -> Result<bool> {
        match self.state() {
            LeaseState::Lost(reason) => Err(Error::LockLost {
                resource: self.resource().into(),
                reason,
            }),
            LeaseState::Released => Ok(false),
            LeaseState::Held => Ok(true),
            LeaseState::Closed => Err(Error::EngineClosed),
        }
    }

    /// Releases the lease. Releasing twice is harmless; a lost lease gives `LockLost`.
    ///
    /// Returns without waiting for the actor. The release goes into the engine's queue
    /// first, so anything sent after this returns, or after another thread sees the lease
    /// no longer valid, comes behind it. Then the lease's cell turns released: the moment
    /// the release takes effect. An expiry or preemption that the actor processes after
    /// that moment counts as this release; one it processed before makes this `LockLost`.
    pub fn release(&self) -> Result<()> {
        if !self.precheck()? {
            return Ok(());
        }
        self.handle.send(Msg::Call {
            cmd: Command::Release {
                resource: self.grant.resource.clone(),
                token: self.token(),
            },
            reply: None,
        })?;
        match self.grant.cell.leave_held(LeaseState::Released) {
            // Released here, or already by the actor processing this release.
            LeaseState::Held | LeaseState::Released => Ok(()),
            _ => self.precheck().map(drop),
        }
    }

    /// [`Lease::release`], which never waits.
    pub async fn release_async(&self) -> Result<()> {
        self.release()
    }

    /// Extends the lease by `ttl` (by its own TTL if `None`) from now; returns the new
    /// expiry. `LockLost` if it was lost, `InvalidToken` if it was released.
    pub fn renew(&self, ttl: Option<Duration>) -> Result<Option<f64>> {
        if !self.precheck()? {
            return Err(Error::InvalidToken(format!(
                "{} (released)",
                self.resource()
            )));
        }
        let cmd = Command::Renew {
            resource: self.resource().into(),
            token: self.token(),
            ttl,
        };
        match self.handle.call(cmd).map_err(|e| self.explain(e))? {
            Reply::Renewed { expires_at } => {
                *self.expires_at.lock().unwrap_or_else(|e| e.into_inner()) = expires_at;
                Ok(expires_at)
            }
            r => Err(unexpected(r)),
        }
    }
}
