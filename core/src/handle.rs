//! The public face of an engine: [`Handle`] (cheap to clone, usable from any thread),
//! [`Session`], [`Lease`] and [`Ticket`]. Every call goes through the handle's link (the
//! actor in this process, or a server); blocking and async callers share the same path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cell::LeaseCell;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::fork::Birth;
use crate::link::local::LocalLink;
use crate::link::{Held, Link, Outcome};
use crate::protocol::{AcquireOptions, AcquireRequest, Command, Grant, Reply, SessionSpec};
use crate::reply;
use crate::state::Config;
use crate::subscription::{EventCallback, Subscription};
use crate::types::*;

/// A cheap, cloneable reference to one engine. The engine closes on [`Handle::close`]
/// or when the last handle (including those inside sessions, leases and tickets) drops.
#[derive(Clone)]
pub struct Handle {
    link: Arc<dyn Link>,
}

/// Tells `enqueue` whether its request waits, and where.
type Ack = reply::Receiver<Result<Option<u64>>>;

fn unexpected(r: Reply) -> Error {
    Error::Internal(format!("unexpected reply {r:?}"))
}

/// Fresh randomness for the ids, secrets and tokens of a new engine.
fn seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::Internal(format!("no randomness for the engine's secrets: {e}")))?;
    Ok(seed)
}

impl Handle {
    /// Starts an engine in this process, on the system clock.
    pub fn new(config: Config) -> Result<Handle> {
        Handle::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// Starts an engine in this process on the given clock (a [`crate::ManualClock`] in
    /// tests).
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Handle> {
        let link = LocalLink::start(config, clock, seed()?)?;
        Ok(Handle {
            link: Arc::new(link),
        })
    }

    /// Connects to the engine an interlock server serves at `url` (`http://HOST:PORT`
    /// or `https://`): the handle works as one of an engine in this process. Its
    /// sessions always have a TTL, heartbeated by the link; it reconnects by itself and
    /// resumes them. While it cannot reach the server, calls fail with
    /// `ConnectionLost`.
    #[cfg(feature = "remote")]
    pub fn connect(url: &str, options: crate::ConnectOptions) -> Result<Handle> {
        let link = crate::link::remote::RemoteLink::connect(url, options)?;
        Ok(Handle {
            link: Arc::new(link),
        })
    }

    /// Sends one command and waits for its reply: the engine's whole vocabulary, for
    /// code that forwards commands (a server). An acquire granted at once answers its
    /// grants (release them by token); one that would wait is refused, since nothing
    /// could wait for it: use [`Session::request`].
    pub fn execute(&self, cmd: Command) -> Result<Reply> {
        self.link
            .request(cmd)?
            .recv()
            .map_err(|_| Error::EngineClosed)?
    }

    /// [`Handle::execute`], awaited.
    pub async fn execute_async(&self, cmd: Command) -> Result<Reply> {
        self.link
            .request(cmd)?
            .await
            .map_err(|_| Error::EngineClosed)?
    }

    fn call(&self, cmd: Command) -> Result<Reply> {
        self.execute(cmd)
    }

    /// Returns once every callback (`on_lost`, callback subscriptions) that the engine
    /// queued before this call has run: a server uses it to tell a client of the leases
    /// its command ended before it answers the command.
    pub async fn callbacks_done_async(&self) -> Result<()> {
        self.link
            .callbacks_done()?
            .await
            .map_err(|_| Error::EngineClosed)
    }

    /// Whether the engine keeps a journal (then an answer means "written").
    pub fn is_durable(&self) -> bool {
        self.link.durable()
    }

    /// The id of the engine whose history this is: events of one id have one series of
    /// seqs. An engine restored from its journal keeps the id; any other engine has a
    /// new one. For a remote engine, the server's (`None` if it does not say).
    pub fn engine_id(&self) -> Option<u64> {
        self.link.engine_id()
    }

    /// Closes the engine: pending waits fail with `EngineClosed`, subscriptions end, the
    /// actor thread is joined. Later calls fail with `EngineClosed`. Closing twice is
    /// harmless. (For a remote engine: closes the connection.)
    pub fn close(&self) {
        self.link.close();
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

    /// Releases the lease `fence` (`token` on `resource`) without waiting for the
    /// engine's answer, as [`Lease::release`] does: for code that relays a holder's
    /// release (a server). Whatever is sent after it is applied after it. Fails only if
    /// the release cannot be sent; whether it was current is not told.
    pub fn post_release(&self, resource: &str, token: Token, fence: u64) -> Result<()> {
        let cmd = Command::Release {
            resource: resource.into(),
            token,
        };
        self.link.release(cmd, fence)
    }

    /// Extends the lease `token` on `resource` by `ttl` (by its own TTL if `None`); the
    /// new expiry. For a holder that kept only the token (across a restart, say).
    pub fn renew(
        &self,
        resource: &str,
        token: Token,
        ttl: Option<Duration>,
    ) -> Result<Option<f64>> {
        let cmd = Command::Renew {
            resource: resource.into(),
            token,
            ttl,
        };
        match self.call(cmd)? {
            Reply::Renewed { expires_at } => Ok(expires_at),
            r => Err(unexpected(r)),
        }
    }

    /// Releases every holder of `resource`; returns how many there were.
    pub fn force_release(&self, resource: &str, reason: Option<&str>) -> Result<usize> {
        self.force_release_only(resource, None, reason)
    }

    /// Releases the lease on `resource` that carries `fence`, if it is still current:
    /// 1 if it was, 0 if not (released already, or never that fence). For a tool that
    /// shows leases by fence and must not take away one granted after it looked.
    pub fn force_release_fence(
        &self,
        resource: &str,
        fence: u64,
        reason: Option<&str>,
    ) -> Result<usize> {
        self.force_release_only(resource, Some(fence), reason)
    }

    fn force_release_only(
        &self,
        resource: &str,
        fence: Option<u64>,
        reason: Option<&str>,
    ) -> Result<usize> {
        let cmd = Command::ForceRelease {
            resource: resource.into(),
            reason: reason.map(Into::into),
            fence,
        };
        match self.call(cmd)? {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    pub fn status(&self, resource: &str) -> Result<ResourceStatus> {
        let cmd = Command::Status {
            resource: resource.into(),
        };
        match self.call(cmd)? {
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
        let (queue, head) = self.link.subscribe(resources, since, callback)?;
        Ok(Subscription {
            queue,
            head,
            birth: Birth::now(),
        })
    }

    // ----- session calls, by session id (the C API names sessions by id) ----------

    /// Ends the session `id` (see [`Session::close`]); 0 if it had already ended.
    pub fn close_session(&self, id: SessionId) -> Result<usize> {
        match self.call(Command::CloseSession { session: id })? {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// A [`Session`] value for an id known from elsewhere (the C API, a listing).
    pub fn session(&self, id: SessionId) -> Result<Session> {
        self.session_from(self.call(Command::Session { session: id })?, None)
    }

    /// Opens a session.
    pub fn open_session(&self, spec: SessionSpec) -> Result<Session> {
        match self.call(Command::OpenSession(spec))? {
            Reply::Opened {
                session, secret, ..
            } => self.session_from(Reply::Session(session), Some(secret)),
            r => Err(unexpected(r)),
        }
    }

    /// Takes up a session by its id and secret: after a restart of a durable engine, or
    /// in another program. Counts as the session's activity.
    pub fn resume_session(&self, id: SessionId, secret: Secret) -> Result<Session> {
        let reply = self.call(Command::Resume {
            session: id,
            secret,
        })?;
        self.session_from(reply, Some(secret))
    }

    fn session_from(&self, reply: Reply, secret: Option<Secret>) -> Result<Session> {
        match reply {
            Reply::Session(info) => Ok(Session {
                handle: self.clone(),
                id: info.id,
                name: info.name,
                metadata: info.metadata,
                secret,
            }),
            r => Err(unexpected(r)),
        }
    }

    /// Sends an acquire for the session `id` and returns at once (see
    /// [`Session::request`]).
    pub fn request(
        &self,
        id: SessionId,
        resources: &[&str],
        opts: &AcquireOptions,
    ) -> Result<Ticket> {
        Ok(self.start(id, resources, opts, false)?.0)
    }

    /// Queues an acquire for the session `id` without waiting for it (see
    /// [`Session::enqueue`]), awaited.
    pub async fn enqueue_async(
        &self,
        id: SessionId,
        resources: &[&str],
        opts: &AcquireOptions,
    ) -> Result<Ticket> {
        let (ticket, ack) = self.start(id, resources, opts, true)?;
        if let Some(ack) = ack {
            ack.await.map_err(|_| Error::EngineClosed)??;
        }
        Ok(ticket)
    }

    fn start(
        &self,
        session: SessionId,
        resources: &[&str],
        opts: &AcquireOptions,
        ack: bool,
    ) -> Result<(Ticket, Option<Ack>)> {
        let resources: Arc<[String]> = resources.iter().map(|r| (*r).to_owned()).collect();
        let req = AcquireRequest {
            session,
            resources: resources.clone(),
            options: opts.clone(),
        };
        let started = self.link.acquire(req, ack)?;
        let ticket = Ticket {
            handle: self.clone(),
            key: started.key,
            resources,
            rx: started.done,
            state: Mutex::new(TicketState::Pending),
            birth: Birth::now(),
        };
        Ok((ticket, started.ack))
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
    secret: Option<Secret>,
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
    /// The session's secret, if this value opened or resumed it (see
    /// [`Handle::resume_session`]).
    pub fn secret(&self) -> Option<Secret> {
        self.secret
    }

    /// Records activity (and revives a stale session).
    pub fn heartbeat(&self) -> Result<()> {
        match self.handle.call(Command::Heartbeat { session: self.id })? {
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
        self.handle.request(self.id, resources, opts)
    }

    /// Queues an acquire without waiting for it: errors (bad input, `AlreadyHeld`,
    /// `Deadlock`, a `timeout` of zero that failed) come at once; the ticket tells its
    /// position and can be waited on or cancelled.
    pub fn enqueue(&self, resources: &[&str], opts: &AcquireOptions) -> Result<Ticket> {
        let (ticket, ack) = self.handle.start(self.id, resources, opts, true)?;
        if let Some(ack) = ack {
            ack.recv().map_err(|_| Error::EngineClosed)??;
        }
        Ok(ticket)
    }
}

fn one(mut leases: Vec<Lease>) -> Result<Lease> {
    leases
        .pop()
        .ok_or_else(|| Error::Internal("a grant without a lease".into()))
}

fn position_of(reply: std::result::Result<Result<Reply>, reply::Closed>) -> Result<Option<u64>> {
    match reply.map_err(|_| Error::EngineClosed)?? {
        Reply::Position(p) => Ok(p),
        r => Err(unexpected(r)),
    }
}

enum TicketState {
    Pending,
    Granted,
    /// Failed with this error, which every later wait gives again.
    Failed(Error),
    Cancelled,
}

/// A queued acquire: wait on it, ask its position, or cancel it. Dropping a ticket that
/// is still pending withdraws the request (and releases a grant that arrived unseen).
pub struct Ticket {
    handle: Handle,
    key: u64,
    resources: Arc<[String]>,
    rx: reply::Receiver<Outcome>,
    state: Mutex<TicketState>,
    /// A ticket inherited across a fork waits for nothing.
    birth: Birth,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.key)
            .field("resources", &self.resources)
            .finish()
    }
}

impl Ticket {
    /// The current 1-based place in the queue (the largest over its resources); `None`
    /// once granted, cancelled or failed.
    pub fn position(&self) -> Result<Option<u64>> {
        position_of(self.handle.link.position(self.key)?.recv())
    }

    /// [`Ticket::position`], awaited.
    pub async fn position_async(&self) -> Result<Option<u64>> {
        position_of(self.handle.link.position(self.key)?.await)
    }

    /// The resources asked for, in order.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// Waits up to `slice` (forever if `None`): `Ok(None)` if nothing came yet.
    pub fn poll(&self, slice: Option<Duration>) -> Result<Option<Vec<Lease>>> {
        self.may_wait()?;
        let got = self.rx.recv_timeout(slice).map_err(|_| self.gone())?;
        got.map(|outcome| self.settle(outcome)).transpose()
    }

    /// Waits for the outcome; after `timeout` gives `LockTimeout` and stays queued. A
    /// ticket whose request failed gives that error again on every later wait; one whose
    /// leases were taken gives `NotFound`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<Lease>> {
        self.poll(timeout)?
            .ok_or_else(|| Error::LockTimeout(self.resources.join(", ")))
    }

    /// Awaits the outcome; if this future is dropped the ticket stays queued.
    pub async fn wait_async(&self) -> Result<Vec<Lease>> {
        self.may_wait()?;
        let outcome = std::future::poll_fn(|cx| self.rx.poll_recv(cx)).await;
        self.settle(outcome.map_err(|_| self.gone())?)
    }

    /// A ticket inherited across a fork, or one cancelled, has nothing to wait for. A
    /// cancelled one answers so at once: over a remote link the request's own answer
    /// may still be on its way after `cancel` returned.
    fn may_wait(&self) -> Result<()> {
        self.birth.check()?;
        if matches!(*self.lock(), TicketState::Cancelled) {
            self.take_unseen();
            return Err(self.gone());
        }
        Ok(())
    }

    fn gone(&self) -> Error {
        match *self.lock() {
            TicketState::Cancelled => Error::Cancelled("ticket cancelled".into()),
            TicketState::Granted => Error::NotFound("ticket already granted".into()),
            TicketState::Failed(ref e) => e.clone(),
            TicketState::Pending => Error::EngineClosed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, outcome: Outcome) -> Result<Vec<Lease>> {
        let mut state = self.lock();
        if matches!(*state, TicketState::Cancelled) {
            drop(state);
            self.give_back(outcome);
            return Err(Error::Cancelled("ticket cancelled".into()));
        }
        let held = outcome.inspect_err(|e| *state = TicketState::Failed(e.clone()))?;
        *state = TicketState::Granted;
        Ok(held
            .into_iter()
            .map(|held| Lease::new(self.handle.clone(), held))
            .collect())
    }

    /// Releases the leases of a grant that nobody will use, without waiting (also on a
    /// durable engine: nobody saw them, so nobody waits for their release to be written;
    /// and this may run in a `Drop` on an async task).
    fn give_back(&self, outcome: Outcome) {
        for held in outcome.into_iter().flatten() {
            let _ = Lease::new(self.handle.clone(), held).post_release();
        }
    }

    /// Withdraws the request: its queue entry goes, or a grant it was sent but never
    /// returned is released. Later waits give `Cancelled`.
    pub fn cancel(&self) -> Result<()> {
        if !self.mark_cancelled() {
            return Ok(());
        }
        let done = self.handle.link.cancel(self.key)?.recv();
        self.take_unseen();
        done.map_err(|_| Error::EngineClosed)?.map(drop)
    }

    /// [`Ticket::cancel`], awaited.
    pub async fn cancel_async(&self) -> Result<()> {
        if !self.mark_cancelled() {
            return Ok(());
        }
        let done = self.handle.link.cancel(self.key)?.await;
        self.take_unseen();
        done.map_err(|_| Error::EngineClosed)?.map(drop)
    }

    /// Moves a pending ticket to cancelled; false if it was not pending.
    fn mark_cancelled(&self) -> bool {
        let mut state = self.lock();
        let pending = matches!(*state, TicketState::Pending);
        if pending {
            *state = TicketState::Cancelled;
        }
        pending
    }

    /// Closes the slot of a cancelled ticket: a grant already in it goes back, and one
    /// sent later is handed back to the engine, which releases it. (Taking what is there
    /// and then dropping the slot would lose a grant sent in between, held by nobody.)
    fn take_unseen(&self) {
        if let Some(Ok(outcome)) = self.rx.close() {
            self.give_back(outcome);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.mark_cancelled() {
            // Not waited for: the engine withdraws the request in its own time.
            let _ = self.handle.link.cancel(self.key);
            self.take_unseen();
        }
    }
}

/// One session's hold on one resource. Dropping a lease does not release it.
pub struct Lease {
    handle: Handle,
    grant: Grant,
    cell: LeaseCell,
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
    fn new(handle: Handle, held: Held) -> Self {
        Lease {
            handle,
            expires_at: Mutex::new(held.grant.expires_at),
            grant: held.grant,
            cell: held.cell,
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
    /// The lease as it was granted, token included (what a server hands its client).
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Held, released, lost (and why) or ended by the engine closing: exact as soon as
    /// the engine has acted.
    pub fn state(&self) -> LeaseState {
        self.cell.get()
    }
    pub fn is_valid(&self) -> bool {
        self.state() == LeaseState::Held
    }
    pub fn lost_reason(&self) -> Option<crate::LostReason> {
        match self.state() {
            LeaseState::Lost(r) => Some(r),
            _ => None,
        }
    }

    /// `LockLost` if the lease was lost, `EngineClosed` if the engine closed; whether it
    /// is still held otherwise.
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

    /// `LockLost` if the lease turned out lost meanwhile (its token stopped working), or `e`.
    fn lost_or(&self, e: Error) -> Error {
        match (self.precheck(), e) {
            (Err(lost), Error::InvalidToken(_)) => lost,
            (_, e) => e,
        }
    }

    /// Releases the lease. Releasing twice is harmless; a lost lease gives `LockLost`.
    ///
    /// Returns without waiting for the engine (unless it keeps a journal: then once the
    /// release is written). The release goes into the engine's queue first, so anything
    /// sent after this returns, or after another thread sees the lease no longer valid,
    /// comes behind it. Then the lease's cell turns released. If the engine ended the
    /// lease first (it expired, or was taken away), this is `LockLost`.
    pub fn release(&self) -> Result<()> {
        if !self.precheck()? {
            return Ok(());
        }
        if self.handle.link.durable() {
            // A durable engine's release is done once written: wait for it to say so.
            match self.handle.execute(self.release_command()) {
                Ok(_) => {}
                // Over a link that went down, whether it was written is not known: the
                // lease stays valid until the link, once back, has sent it again and
                // seen it applied (and if the link never comes back, the server expires
                // the session after its TTL, and the lease with it).
                Err(e @ Error::ConnectionLost(_)) => {
                    let cmd = self.release_command();
                    self.handle.link.release(cmd, self.grant.fence)?;
                    return Err(e);
                }
                Err(e) => return Err(self.lost_or(e)),
            }
            self.cell.leave_held(LeaseState::Released);
            return Ok(());
        }
        match self.post_release()? {
            // Released here, or already by the engine processing this release.
            LeaseState::Held | LeaseState::Released => Ok(()),
            _ => self.precheck().map(drop),
        }
    }

    /// Posts the release, without waiting for it, and turns the cell released; the
    /// cell's state before.
    fn post_release(&self) -> Result<LeaseState> {
        self.handle
            .link
            .release(self.release_command(), self.grant.fence)?;
        Ok(self.cell.leave_held(LeaseState::Released))
    }

    fn release_command(&self) -> Command {
        Command::Release {
            resource: self.grant.resource.clone(),
            token: self.token(),
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
        let expires_at = self
            .handle
            .renew(self.resource(), self.token(), ttl)
            .map_err(|e| self.lost_or(e))?;
        *self.expires_at.lock().unwrap_or_else(|e| e.into_inner()) = expires_at;
        Ok(expires_at)
    }
}
