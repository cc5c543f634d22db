//! The actor: one thread that owns the [`State`]. It takes commands from its channel,
//! applies them, answers, hands events to subscribers, and keeps each lease's cell
//! exact from the events. No user code runs here (callbacks go to the dispatcher).
//!
//! What it owes callers (answers, grants, events) waits in `owed` until it may go out:
//! at once for an engine without a journal; with one, once the batch of commands that
//! changed something is written (group commit). A call that changes nothing is answered
//! at once if no change waits for the disk ahead of it.
//!
//! Shutdown order: a `Close` message (or the last handle dropping) makes the actor fail
//! every pending wait with `EngineClosed`, mark every lease closed, close every
//! subscription and return; that drops the command receiver (later calls see
//! `EngineClosed`) and the dispatcher's sender, so the dispatcher finishes the callbacks
//! already queued and returns too. `LocalLink::close` joins the actor, then the
//! dispatcher.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use smallvec::SmallVec;

use crate::cell::{Cells, LeaseCell};
use crate::clock::Clock;
use crate::dispatch::Jobs;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::journal::{Batch, Journal};
use crate::link::{Held, Outcome};
use crate::protocol::{Command, Grants, LostCallback, LostNotice, Reply, WaitId};
use crate::reply;
use crate::state::{Effects, State};
use crate::subscription::SubQueue;
use crate::table::HashMap;
use crate::types::LeaseState;

/// How long the actor polls for more work before it parks: a caller that sends again
/// soon is served without a thread wake-up (which costs several microseconds, more than
/// the work).
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// Messages handled before held-back wake-ups go out even if more are queued.
const WAKE_BATCH: u32 = 64;

/// Capacity of the events buffer kept from one command to the next.
const EVENTS_KEPT: usize = 1024;

/// Commands of one group commit, at most: a steady stream still gets its answers.
const COMMIT_BATCH: usize = 512;

pub(super) enum Msg {
    Call {
        cmd: Command,
        reply: Option<reply::Sender<Result<Reply>>>,
    },
    Acquire {
        waiter: Waiter,
        cmd: Command,
        ack: Option<reply::Sender<Result<Option<u64>>>>,
    },
    Cancel {
        key: u64,
        reply: reply::Sender<Result<Reply>>,
    },
    Position {
        key: u64,
        reply: reply::Sender<Result<Reply>>,
    },
    Subscribe {
        queue: Arc<SubQueue>,
        since: Option<u64>,
        /// Told the seq of the newest event before the subscription.
        reply: reply::Sender<Result<u64>>,
    },
    Close,
}

/// The caller of an acquire.
pub(super) struct Waiter {
    pub(super) key: u64,
    pub(super) done: reply::Sender<Outcome>,
    pub(super) on_lost: Option<LostCallback>,
}

/// Something a caller is owed once the batch that made it is durable.
enum Owed {
    Reply(reply::Sender<Result<Reply>>, Result<Reply>),
    Ack(reply::Sender<Result<Option<u64>>>, Result<Option<u64>>),
    Subscribed(reply::Sender<Result<u64>>, Result<u64>),
    Grant(reply::Sender<Outcome>, Outcome),
    Events(Vec<Arc<Event>>),
}

/// A lease handed out, whose cell the actor ends when the engine ends the lease.
struct Watched {
    cell: LeaseCell,
    on_lost: Option<LostCallback>,
}

pub(super) struct Actor {
    state: State,
    clock: Arc<dyn Clock>,
    rx: Receiver<Msg>,
    /// When the message being handled was taken: the time of its command.
    now: Duration,
    waiters: HashMap<WaitId, Waiter>,
    /// The wait of each queued request, by its caller's key.
    keys: HashMap<u64, WaitId>,
    /// Every lease handed out and not yet ended, by fence.
    leases: HashMap<u64, Watched>,
    cells: Cells,
    subscribers: Vec<Arc<SubQueue>>,
    jobs: Jobs,
    /// Grants whose caller was gone when they were delivered: to be released.
    undone: Vec<Held>,
    /// Messages handled since held-back wake-ups last went out.
    unflushed: u32,
    /// The events buffer of `State::apply_into`, empty between commands.
    events: Vec<Arc<Event>>,
    journal: Option<Box<dyn Journal>>,
    /// What callers are owed, in order, until the batch that made it is written.
    owed: Vec<Owed>,
    /// Messages in the batch that `owed` waits for.
    batched: usize,
}

impl Actor {
    pub(super) fn new(
        state: State,
        clock: Arc<dyn Clock>,
        rx: Receiver<Msg>,
        jobs: Jobs,
        journal: Option<Box<dyn Journal>>,
    ) -> Self {
        Actor {
            state,
            clock,
            rx,
            now: Duration::ZERO,
            waiters: HashMap::default(),
            keys: HashMap::default(),
            leases: HashMap::default(),
            cells: Cells::default(),
            subscribers: Vec::new(),
            jobs,
            undone: Vec::new(),
            unflushed: 0,
            events: Vec::new(),
            journal,
            owed: Vec::new(),
            batched: 0,
        }
    }

    pub(super) fn run(mut self) {
        reply::defer_wakes(true);
        while let Some(msg) = self.next_message() {
            if self.handle(msg).is_break() {
                break;
            }
            self.release_undone();
            if self.pay_when_due().is_err() {
                break;
            }
        }
        let _ = self.pay();
        self.now = self.clock.now();
        let _ = self.apply(Command::Close, None);
        self.owed.clear();
    }

    /// Pays what is owed unless a batch for the journal is still filling: the journal
    /// writes once for many commands while more are queued.
    fn pay_when_due(&mut self) -> std::result::Result<(), ()> {
        self.batched += 1;
        let waits = self.journal.is_some()
            && (self.state.has_changes() || !self.owed.is_empty())
            && self.batched < COMMIT_BATCH
            && !self.rx.is_empty();
        match waits {
            true => Ok(()),
            false => self.pay(),
        }
    }

    /// Writes the batch to the journal (if there is one and it changed anything), then
    /// hands every caller what it is owed. If the journal cannot be written, nothing of
    /// the batch is answered as done, and the engine stops.
    fn pay(&mut self) -> std::result::Result<(), ()> {
        self.batched = 0;
        if let Some(journal) = &mut self.journal {
            let events: Vec<Arc<Event>> = self
                .owed
                .iter()
                .filter_map(|o| match o {
                    Owed::Events(e) => Some(e.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect();
            if self.state.has_changes() || !events.is_empty() {
                let changes = self.state.take_changes();
                let (next_fence, next_seq) = self.state.counters();
                let batch = Batch {
                    changes: &changes,
                    events: &events,
                    next_fence,
                    next_seq,
                };
                if let Err(e) = journal.append(&batch) {
                    self.default(e);
                    return Err(());
                }
            }
        }
        for owed in std::mem::take(&mut self.owed) {
            match owed {
                Owed::Reply(to, r) => drop(to.send(r)),
                Owed::Ack(to, r) => drop(to.send(r)),
                Owed::Subscribed(to, r) => drop(to.send(r)),
                Owed::Events(events) => self.publish(&events),
                Owed::Grant(to, outcome) => {
                    if let Err(Ok(held)) = to.send(outcome) {
                        self.undone.extend(held);
                    }
                }
            }
        }
        Ok(())
    }

    /// The journal failed: every caller of the batch is told, and none is told it worked.
    fn default(&mut self, e: Error) {
        let e = Error::Internal(format!(
            "{e}; nothing of this was written, and the engine stopped rather than \
             promise what a restart would not keep"
        ));
        for owed in std::mem::take(&mut self.owed) {
            match owed {
                Owed::Reply(to, _) => drop(to.send(Err(e.clone()))),
                Owed::Ack(to, _) => drop(to.send(Err(e.clone()))),
                Owed::Subscribed(to, _) => drop(to.send(Err(e.clone()))),
                Owed::Grant(to, _) => drop(to.send(Err(e.clone()))),
                Owed::Events(_) => {}
            }
        }
    }

    /// The next message, or a `Tick` when a deadline is due; `None` once every handle is
    /// gone. Sets `now` to the time it was taken.
    fn next_message(&mut self) -> Option<Msg> {
        let msg = match self.rx.try_recv() {
            Ok(m) => {
                self.unflushed += 1;
                if self.unflushed >= WAKE_BATCH {
                    self.flush_wakes();
                }
                Some(m)
            }
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                // Caught up: the batch is done, and the async callers answered since the
                // last time are woken. A grant whose caller went away meanwhile is
                // released before the actor waits: nobody holds it until then.
                if self.pay().is_err() {
                    return None;
                }
                while !self.undone.is_empty() {
                    self.release_undone();
                    if self.pay().is_err() {
                        return None;
                    }
                }
                self.flush_wakes();
                self.wait_for_message()
            }
        };
        self.now = self.clock.now();
        msg
    }

    /// Polls for `IDLE_SPIN`, then parks until a message comes or a deadline is due.
    fn wait_for_message(&mut self) -> Option<Msg> {
        let mut next = None;
        let rx = &self.rx;
        reply::spin_until(IDLE_SPIN, || {
            next = rx.try_recv().ok();
            next.is_some()
        });
        if next.is_some() {
            return next;
        }
        let tick = || Msg::Call {
            cmd: Command::Tick,
            reply: None,
        };
        let Some(at) = self.state.next_deadline() else {
            return self.rx.recv().ok();
        };
        match at.checked_sub(self.clock.now()).filter(|d| !d.is_zero()) {
            None => Some(tick()),
            Some(wait) => match self.rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => Some(tick()),
                Err(RecvTimeoutError::Disconnected) => None,
            },
        }
    }

    fn flush_wakes(&mut self) {
        self.unflushed = 0;
        reply::flush_wakes();
    }

    fn handle(&mut self, msg: Msg) -> ControlFlow<()> {
        match msg {
            Msg::Call { cmd, reply } => {
                let result = match self.apply(cmd, None) {
                    // An acquire sent as a plain call has nobody to wait for its grant.
                    Ok(Reply::Queued { wait, .. }) => {
                        let _ = self.apply(Command::Cancel { wait }, None);
                        Err(Error::invalid(
                            "an acquire that has to wait needs a ticket (Session::request)",
                        ))
                    }
                    result => result,
                };
                if let Some(reply) = reply {
                    self.owed.push(Owed::Reply(reply, result));
                }
            }
            Msg::Acquire { waiter, cmd, ack } => {
                let result = self.apply(cmd, Some(waiter));
                if let Some(ack) = ack {
                    let position = result.map(|r| match r {
                        Reply::Queued { position, .. } => Some(position),
                        _ => None,
                    });
                    self.owed.push(Owed::Ack(ack, position));
                }
            }
            Msg::Cancel { key, reply } => {
                let result = match self.keys.get(&key) {
                    Some(&wait) => self.apply(Command::Cancel { wait }, None),
                    None => Ok(Reply::Unit),
                };
                self.owed.push(Owed::Reply(reply, result));
            }
            Msg::Position { key, reply } => {
                let result = match self.keys.get(&key) {
                    Some(&wait) => self.apply(Command::Position { wait }, None),
                    None => Ok(Reply::Position(None)),
                };
                self.owed.push(Owed::Reply(reply, result));
            }
            Msg::Subscribe {
                queue,
                since,
                reply,
            } => {
                // What is due by now ends first, and the events still owed go out
                // (written first): a new subscriber replays them from the history or not
                // at all, never twice, and never before they are written. (Its replay,
                // at the same time, then has nothing left to end.)
                let _ = self.apply(Command::Tick, None);
                if self.pay().is_err() {
                    return ControlFlow::Break(());
                }
                let result = self.subscribe(queue, since);
                self.owed.push(Owed::Subscribed(reply, result));
            }
            Msg::Close => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Applies one command; owes its events and the outcomes it settled.
    /// `waiter` is the caller of an acquire: it gets the grant, or waits (registered
    /// under the wait the state gave it), or, on an error, the error.
    fn apply(&mut self, cmd: Command, waiter: Option<Waiter>) -> Result<Reply> {
        let mut fx = Effects {
            events: std::mem::take(&mut self.events),
            completions: Vec::new(),
        };
        let mut reply = self.state.apply_into(self.now, cmd, &mut fx);
        let mut outcomes: Vec<(Waiter, Result<Grants>)> = Vec::new();
        if let Some(w) = waiter {
            match &mut reply {
                Ok(Reply::Queued { wait, .. }) => {
                    self.keys.insert(w.key, *wait);
                    self.waiters.insert(*wait, w);
                }
                Ok(Reply::Granted(grants)) => outcomes.push((w, Ok(std::mem::take(grants)))),
                Ok(other) => {
                    let e = Error::Internal(format!("acquire answered {other:?}"));
                    outcomes.push((w, Err(e)));
                }
                Err(e) => outcomes.push((w, Err(e.clone()))),
            }
        }
        for (id, outcome) in fx.completions {
            if let Some(w) = self.waiters.remove(&id) {
                self.keys.remove(&w.key);
                outcomes.push((w, outcome));
            }
        }
        // Cells for the new leases come first: an event of this command may end one.
        let deliveries: Vec<Owed> = outcomes
            .into_iter()
            .map(|(w, outcome)| {
                let held = outcome.map(|grants| self.hold(grants, &w.on_lost));
                Owed::Grant(w.done, held)
            })
            .collect();
        if !fx.events.is_empty() {
            self.owed.push(Owed::Events(fx.events.drain(..).collect()));
        }
        // A burst (a session closing with many leases) does not pin its memory.
        fx.events.shrink_to(EVENTS_KEPT);
        self.events = fx.events;
        self.owed.extend(deliveries);
        reply
    }

    /// Makes the cells of new leases and watches them.
    fn hold(&mut self, grants: Grants, on_lost: &Option<LostCallback>) -> SmallVec<[Held; 1]> {
        grants
            .into_iter()
            .map(|grant| {
                let cell = self.cells.fresh();
                let watched = Watched {
                    cell: cell.clone(),
                    on_lost: on_lost.clone(),
                };
                self.leases.insert(grant.fence, watched);
                Held { grant, cell }
            })
            .collect()
    }

    /// Releases the grants whose callers went away before they arrived: a vanished
    /// waiter never holds a lock.
    fn release_undone(&mut self) {
        while let Some(held) = self.undone.pop() {
            let cmd = Command::Release {
                resource: held.grant.resource,
                token: held.grant.token,
            };
            let _ = self.apply(cmd, None);
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
                self.jobs.schedule(sub);
            }
        }
        for ev in events {
            let Some((fence, end)) = ev.lease_end() else {
                continue;
            };
            if let Some(w) = self.leases.remove(&fence) {
                self.end(w, end, ev);
            }
        }
    }

    /// Ends a lease's cell (unless its holder released it first) and runs its `on_lost`.
    fn end(&self, w: Watched, end: LeaseState, ev: &Event) {
        let before = w.cell.leave_held(end);
        if let (LeaseState::Held, LeaseState::Lost(reason), Some(callback)) =
            (before, end, w.on_lost)
        {
            let (Some(resource), Some(session_id)) = (ev.resource.clone(), ev.session_id()) else {
                return;
            };
            let notice = LostNotice {
                resource,
                fence: ev.fence().unwrap_or(0),
                session_id,
                reason,
            };
            self.jobs.lost(callback, notice);
        }
    }

    fn subscribe(&mut self, queue: Arc<SubQueue>, since: Option<u64>) -> Result<u64> {
        if let Some(since) = since {
            match self.apply(Command::Replay { since }, None)? {
                Reply::Replay { events, missed } => queue.replay(missed, events),
                r => return Err(Error::Internal(format!("replay answered {r:?}"))),
            }
        }
        self.jobs.schedule(&queue);
        self.subscribers.push(queue);
        Ok(self.state.last_seq())
    }
}

/// The actor ends, also if it panicked: every lease still handed out turns closed,
/// waiters still pending are told (their senders drop) and woken, and subscriptions end.
impl Drop for Actor {
    fn drop(&mut self) {
        for (_, w) in self.leases.drain() {
            w.cell.leave_held(LeaseState::Closed);
        }
        self.waiters.clear();
        reply::defer_wakes(false);
        for sub in &self.subscribers {
            sub.close();
        }
    }
}
