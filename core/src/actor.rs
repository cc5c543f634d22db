//! The actor: one thread that owns the [`State`], and the dispatcher thread that runs
//! callbacks so that no user code ever runs on the actor thread.
//!
//! Shutdown order: a `Close` message (or the last handle dropping) makes the actor fail
//! every pending wait with `EngineClosed`, close every subscription and return; that
//! drops the command receiver (later calls see `EngineClosed`) and the dispatcher's
//! sender, so the dispatcher finishes the callbacks already queued and returns too.
//! `Handle::close` joins the actor first, then the dispatcher.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::reply;
use crate::state::{AcquireRequest, Command, Effects, Grants, Reply, State, WaitId};
use crate::subscription::SubQueue;
use crate::table::{HashMap, HashSet};
use crate::types::{Event, EventKind, LeaseCell, LeaseState, LostReason, SessionId};

/// Told to an acquirer's `on_lost` callback, on the dispatcher thread.
#[derive(Debug, Clone)]
pub struct LostNotice {
    pub resource: Arc<str>,
    pub fence: u64,
    pub session_id: SessionId,
    pub reason: LostReason,
}

/// Called once, on the dispatcher thread, if a lease is lost (not on a normal release).
pub type LostCallback = Arc<dyn Fn(&LostNotice) + Send + Sync>;

/// How long the actor polls for more work before it parks.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// Capacity of the events buffer kept from one command to the next.
const EVENTS_KEPT: usize = 1024;

/// Messages handled before held-back wake-ups go out even if more are queued.
const WAKE_BATCH: u32 = 64;

/// Messages taken from the channel at once, so that loading their data overlaps.
const INBOX: usize = 16;

pub(crate) type GrantResult = Result<Grants>;

pub(crate) enum Msg {
    Call {
        cmd: Command,
        reply: Option<reply::Sender<Result<Reply>>>,
    },
    Acquire {
        req: AcquireRequest,
        done: reply::Sender<GrantResult>,
        /// For `enqueue`: told at once whether the request waits (`Some(position)`),
        /// was settled at once (`None`: the outcome is in `done`), or failed.
        ack: Option<reply::Sender<Result<Option<u64>>>>,
        on_lost: Option<LostCallback>,
    },
    Subscribe {
        queue: Arc<SubQueue>,
        since: Option<u64>,
        reply: reply::Sender<Result<()>>,
    },
    Close,
}

impl Msg {
    /// Starts loading what the caller's thread wrote and the actor reads or writes
    /// first: an acquire's list of names and its reply slot, a release's name. (The
    /// bytes of an acquire's first name are asked for once its list is in, in `poll`.)
    fn prefetch(&self) {
        match self {
            Msg::Acquire { req, done, .. } => {
                crate::prefetch::arc(&req.resources);
                done.prefetch();
            }
            Msg::Call {
                cmd: Command::Release { resource, .. },
                ..
            } => crate::prefetch::arc(resource),
            _ => {}
        }
    }
}

pub(crate) enum Job {
    Lost(LostCallback, LostNotice),
    Drain(Arc<SubQueue>),
}

struct Waiter {
    done: reply::Sender<GrantResult>,
    on_lost: Option<LostCallback>,
}

struct Watched {
    cell: LeaseCell,
    notice: LostNotice,
    callback: LostCallback,
}

pub(crate) struct Actor {
    state: State,
    clock: Arc<dyn Clock>,
    rx: Receiver<Msg>,
    /// Messages taken from `rx` whose data is being loaded, oldest first.
    inbox: VecDeque<Msg>,
    /// When the batch of the message being handled was taken: the time of its command.
    now: Duration,
    waiters: HashMap<WaitId, Waiter>,
    subscribers: Vec<Arc<SubQueue>>,
    /// Leases with an `on_lost` callback, by fence.
    watched: HashMap<u64, Watched>,
    jobs: Sender<Job>,
    /// Messages handled since held-back wake-ups last went out.
    unflushed: u32,
    /// The events buffer of `State::apply_into`, empty between commands.
    events: Vec<Arc<Event>>,
}

impl Actor {
    pub(crate) fn new(
        state: State,
        clock: Arc<dyn Clock>,
        rx: Receiver<Msg>,
        jobs: Sender<Job>,
    ) -> Self {
        Actor {
            state,
            clock,
            rx,
            inbox: VecDeque::with_capacity(INBOX),
            now: Duration::ZERO,
            waiters: HashMap::default(),
            subscribers: Vec::new(),
            watched: HashMap::default(),
            jobs,
            unflushed: 0,
            events: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        reply::defer_wakes(true);
        loop {
            let msg = self.next_message();
            match msg {
                None | Some(Msg::Close) => break,
                Some(msg) => self.handle(msg),
            }
        }
        self.now = self.clock.now();
        let _ = self.apply(Command::Close);
    }

    /// The next message, or a `Tick` when a deadline is due; `None` once every handle
    /// is gone. A message comes with `now` set to the time its batch was taken. After a
    /// message the actor polls for `IDLE_SPIN` before it parks, so a caller that sends
    /// again soon is served without a thread wake-up (which costs several microseconds,
    /// more than the work).
    fn next_message(&mut self) -> Option<Msg> {
        let tick = || Msg::Call {
            cmd: Command::Tick,
            reply: None,
        };
        self.unflushed += 1;
        match self.poll() {
            Some(m) => {
                if self.unflushed >= WAKE_BATCH {
                    self.flush_wakes();
                }
                return m;
            }
            // Caught up: wake the async callers answered since the last time.
            None => self.flush_wakes(),
        }
        let mut next = None;
        reply::spin_until(IDLE_SPIN, || {
            next = self.poll();
            next.is_some()
        });
        if let Some(m) = next {
            return m;
        }
        let msg = match self.state.next_deadline() {
            None => self.rx.recv().ok(),
            Some(at) => match at.checked_sub(self.clock.now()).filter(|d| !d.is_zero()) {
                None => Some(tick()),
                Some(wait) => match self.rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => Some(tick()),
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            },
        };
        self.now = self.clock.now();
        msg
    }

    /// A queued message (`Some(Some)`), the end of every handle (`Some(None)`), or
    /// nothing yet (`None`).
    ///
    /// When the inbox is empty, takes the channel's first message and up to `INBOX - 1`
    /// more behind it, and starts loading the data of each: the actor then waits for the
    /// other threads' cache lines once per batch rather than once per message. Reads the
    /// clock once for the batch: each of its commands was sent before that time and is
    /// applied after it.
    fn poll(&mut self) -> Option<Option<Msg>> {
        if let Some(m) = self.inbox.pop_front() {
            return Some(Some(m));
        }
        let first = match self.rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => return Some(None),
        };
        first.prefetch();
        // `is_empty` is two loads; a `try_recv` that finds nothing costs a fence, which a
        // lone caller waiting for its reply would feel.
        while self.inbox.len() < INBOX - 1 && !self.rx.is_empty() {
            let Ok(m) = self.rx.try_recv() else { break };
            m.prefetch();
            self.inbox.push_back(m);
        }
        self.now = self.clock.now();
        // A name can be loaded once its `String` is: ask for it in a second pass.
        for m in std::iter::once(&first).chain(&self.inbox) {
            if let Msg::Acquire { req, .. } = m {
                let name = req.resources.first().map_or("", String::as_str);
                crate::prefetch::bytes(name.as_ptr(), name.len());
            }
        }
        Some(Some(first))
    }

    fn flush_wakes(&mut self) {
        self.unflushed = 0;
        reply::flush_wakes();
    }

    fn apply(&mut self, cmd: Command) -> Result<Reply> {
        let (reply, completions) = self.step(cmd);
        self.complete(completions);
        reply
    }

    /// Applies one command and publishes its events; returns its reply and the outcomes
    /// of queued requests that it settled, for the caller to deliver.
    fn step(&mut self, cmd: Command) -> (Result<Reply>, Vec<(WaitId, GrantResult)>) {
        // The events buffer is kept from one command to the next.
        let mut fx = Effects {
            events: std::mem::take(&mut self.events),
            completions: Vec::new(),
        };
        let reply = self.state.apply_into(self.now, cmd, &mut fx);
        self.publish(&fx.events);
        fx.events.clear();
        // A burst (a session closing with many leases) does not pin its memory.
        fx.events.shrink_to(EVENTS_KEPT);
        self.events = fx.events;
        (reply, fx.completions)
    }

    /// Delivers the outcomes of queued requests, and of the undos they cause.
    fn complete(&mut self, completions: Vec<(WaitId, GrantResult)>) {
        if completions.is_empty() {
            return;
        }
        let mut pending: VecDeque<_> = completions.into();
        while let Some((id, outcome)) = pending.pop_front() {
            pending.extend(self.complete_one(id, outcome));
        }
    }

    /// Delivers one outcome to its waiter, if it still has one; returns the outcomes of
    /// the undo this caused, if any.
    fn complete_one(&mut self, id: WaitId, outcome: GrantResult) -> Vec<(WaitId, GrantResult)> {
        match self.waiters.remove(&id) {
            Some(w) => self.deliver(id, w, outcome),
            None => Vec::new(),
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Call { cmd, reply } => {
                let result = self.apply(cmd);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Msg::Acquire {
                req,
                done,
                ack,
                on_lost,
            } => {
                let wait = req.wait;
                let waiter = Waiter { done, on_lost };
                let (reply, completions) = self.step(Command::Acquire(req));
                // What `enqueue` is told at once. The grant goes straight to the waiter:
                // routing it through a common path costs a copy of the grant.
                let answer = match reply {
                    Ok(Reply::Queued { position }) => {
                        // Registered before this command's outcomes go out: the undo of
                        // one of them may grant it.
                        self.waiters.insert(wait, waiter);
                        self.complete(completions);
                        Ok(Some(position))
                    }
                    Ok(Reply::Granted(grants)) => {
                        self.complete(completions);
                        let undone = self.deliver(wait, waiter, Ok(grants));
                        self.complete(undone);
                        Ok(None)
                    }
                    failed => {
                        self.complete(completions);
                        let e = match failed {
                            Ok(r) => Error::Internal(format!("acquire answered {r:?}")),
                            Err(e) => e,
                        };
                        match ack {
                            Some(_) => Err(e),
                            // Without an ack, the failure is the request's outcome.
                            None => {
                                let _ = waiter.done.send(Err(e));
                                Ok(None)
                            }
                        }
                    }
                };
                if let Some(ack) = ack {
                    let _ = ack.send(answer);
                }
            }
            Msg::Subscribe {
                queue,
                since,
                reply,
            } => {
                let result = match since.map(|since| self.apply(Command::Replay { since })) {
                    Some(Ok(Reply::Replay { events, missed })) => {
                        queue.replay(missed, events);
                        Ok(())
                    }
                    Some(Ok(r)) => Err(Error::Internal(format!("replay answered {r:?}"))),
                    Some(Err(e)) => Err(e),
                    None => Ok(()),
                };
                if result.is_ok() {
                    self.schedule(&queue);
                    self.subscribers.push(queue);
                }
                let _ = reply.send(result);
            }
            Msg::Close => {}
        }
    }

    /// Hands a grant (or failure) to its waiter. A grant whose waiter is gone is undone
    /// at once; the undo's own completions are returned for the caller to deliver.
    fn deliver(
        &mut self,
        wait: WaitId,
        waiter: Waiter,
        outcome: GrantResult,
    ) -> Vec<(WaitId, GrantResult)> {
        let Waiter { done, on_lost } = waiter;
        let watch: Vec<(u64, LeaseCell, LostNotice)> = match (&outcome, &on_lost) {
            (Ok(grants), Some(_)) => grants
                .iter()
                .map(|g| {
                    let notice = LostNotice {
                        resource: g.resource.clone(),
                        fence: g.fence,
                        session_id: g.session_id,
                        reason: LostReason::Expired,
                    };
                    (g.fence, g.cell.clone(), notice)
                })
                .collect(),
            _ => Vec::new(),
        };
        match done.send(outcome) {
            Ok(()) => {
                if let Some(callback) = on_lost {
                    for (fence, cell, notice) in watch {
                        self.watched.insert(
                            fence,
                            Watched {
                                cell,
                                notice,
                                callback: callback.clone(),
                            },
                        );
                    }
                }
                Vec::new()
            }
            Err(Ok(grants)) => {
                let resources = grants.iter().map(|g| g.resource.to_string()).collect();
                self.step(Command::Cancel { wait, resources }).1
            }
            Err(Err(_)) => Vec::new(),
        }
    }

    fn publish(&mut self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        self.subscribers.retain(|s| !s.is_closed());
        for sub in &self.subscribers {
            let mut any = false;
            for ev in events.iter().filter(|e| sub.wants(e)) {
                sub.push(ev.clone());
                any = true;
            }
            if any {
                self.schedule(sub);
            }
        }
        if !self.watched.is_empty() {
            for ev in events {
                self.notice_loss(ev);
            }
        }
    }

    /// Queues a drain job for a callback subscription that has events and none queued.
    fn schedule(&self, sub: &Arc<SubQueue>) {
        if sub.callback.is_some() && !sub.is_empty() && !sub.scheduled.swap(true, Ordering::AcqRel)
        {
            let _ = self.jobs.send(Job::Drain(sub.clone()));
        }
    }

    fn notice_loss(&mut self, ev: &Event) {
        let ends = matches!(
            ev.kind,
            EventKind::Released
                | EventKind::Expired
                | EventKind::Preempted
                | EventKind::ForceReleased
        );
        let Some(fence) = ev.fence().filter(|_| ends) else {
            return;
        };
        if let Some(w) = self.watched.remove(&fence) {
            if let LeaseState::Lost(reason) = w.cell.get() {
                let _ = self
                    .jobs
                    .send(Job::Lost(w.callback, LostNotice { reason, ..w.notice }));
            }
        }
    }
}

/// Subscriptions end when the actor does, also if it panicked; waiters still pending,
/// and callers whose messages were taken but not handled, are told (their senders drop)
/// and woken.
impl Drop for Actor {
    fn drop(&mut self) {
        self.inbox.clear();
        self.waiters.clear();
        reply::defer_wakes(false);
        for sub in &self.subscribers {
            sub.close();
        }
    }
}

/// The dispatcher thread: runs callbacks in order until the actor is gone. A callback
/// that panics is caught and does not stop later ones.
pub(crate) fn dispatch(jobs: Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Lost(callback, notice) => {
                let _ = catch_unwind(AssertUnwindSafe(|| callback(&notice)));
            }
            Job::Drain(sub) => drain(&sub),
        }
    }
}

fn drain(sub: &SubQueue) {
    let Some(callback) = &sub.callback else {
        return;
    };
    loop {
        while let Some(ev) = sub.try_pop() {
            if sub.is_closed() {
                return;
            }
            let mut f = callback.lock().unwrap_or_else(|e| e.into_inner());
            let _ = catch_unwind(AssertUnwindSafe(|| f(&ev)));
        }
        sub.scheduled.store(false, Ordering::Release);
        // An event pushed after the last pop finds `scheduled` false and queues a new
        // job; if it came before, we take it here.
        if sub.is_empty() || sub.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

/// The resource filter of a subscription.
pub(crate) fn filter_of(resources: Option<&[String]>) -> Option<HashSet<Arc<str>>> {
    resources.map(|rs| rs.iter().map(|r| Arc::from(r.as_str())).collect())
}
