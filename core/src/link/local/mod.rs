//! The local link: an actor thread in this process owns the engine's [`State`]; calls
//! reach it through a channel, and each waits for its reply in a one-shot slot,
//! spinning briefly first (a reply usually comes within a microsecond or two, and
//! parking would cost several more).

mod actor;

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::Sender;

use self::actor::{Actor, Msg, Waiter};
use super::{Link, Started};
use crate::clock::Clock;
use crate::dispatch::Jobs;
use crate::error::{Error, Result};
use crate::fork::Birth;
use crate::protocol::{AcquireRequest, Command, Reply};
use crate::reply;
use crate::state::Config;
use crate::subscription::{filter_of, EventCallback, SubQueue};

/// How long a caller polls for its reply before it parks.
const SPIN: Duration = Duration::from_micros(50);

pub(crate) struct LocalLink {
    /// The engine has a journal: a release is done once written.
    durable: bool,
    engine_id: u64,
    /// Dropped only in the process that made the link: after a fork the channel may have
    /// been locked by a thread the child does not have.
    tx: ManuallyDrop<Sender<Msg>>,
    next_key: AtomicU64,
    subscriber_buffer: usize,
    /// The dispatcher's queue, for `callbacks_done` (the actor has its own sender).
    jobs: Jobs,
    birth: Birth,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    actor: ThreadId,
    dispatcher: ThreadId,
}

impl LocalLink {
    /// Starts the actor and dispatcher threads of an engine: a new one, or (with a
    /// journal in `config`) the one its journal kept.
    pub(crate) fn start(config: Config, clock: Arc<dyn Clock>, seed: [u8; 32]) -> Result<Self> {
        if config.subscriber_buffer < 2 {
            return Err(Error::invalid("subscriber_buffer must be at least 2"));
        }
        let subscriber_buffer = config.subscriber_buffer;
        let crate::journal::Start {
            state,
            clock,
            journal,
            engine_id,
        } = crate::journal::open(config, clock, seed)?;
        let durable = journal.is_some();
        let (tx, rx) = crossbeam_channel::unbounded();
        let spawn_err = |e: std::io::Error| Error::Internal(format!("cannot start a thread: {e}"));
        let (jobs, dispatcher) = Jobs::start("interlock-dispatch").map_err(spawn_err)?;
        let actor = Actor::new(state, clock, rx, jobs.clone(), journal);
        let actor = std::thread::Builder::new()
            .name("interlock-actor".into())
            .spawn(move || actor.run())
            .map_err(spawn_err)?;
        Ok(LocalLink {
            durable,
            engine_id,
            tx: ManuallyDrop::new(tx),
            next_key: AtomicU64::new(1),
            subscriber_buffer,
            jobs,
            birth: Birth::now(),
            actor: actor.thread().id(),
            dispatcher: dispatcher.thread().id(),
            threads: Mutex::new(Some((actor, dispatcher))),
        })
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.birth.check()?;
        self.tx.send(msg).map_err(|_| Error::EngineClosed)
    }

    fn ask(
        &self,
        make: impl FnOnce(reply::Sender<Result<Reply>>) -> Msg,
    ) -> Result<reply::Receiver<Result<Reply>>> {
        let (tx, rx) = reply::channel(SPIN);
        self.send(make(tx))?;
        Ok(rx)
    }
}

impl Link for LocalLink {
    fn durable(&self) -> bool {
        self.durable
    }

    fn engine_id(&self) -> Option<u64> {
        Some(self.engine_id)
    }

    fn request(&self, cmd: Command) -> Result<reply::Receiver<Result<Reply>>> {
        self.ask(|reply| Msg::Call {
            cmd,
            reply: Some(reply),
        })
    }

    fn release(&self, cmd: Command, _fence: u64) -> Result<()> {
        self.send(Msg::Call { cmd, reply: None })
    }

    fn acquire(&self, mut req: AcquireRequest, ack: bool) -> Result<Started> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (done, done_rx) = reply::channel(SPIN);
        let (ack_tx, ack_rx) = match ack {
            true => {
                let (t, r) = reply::channel(SPIN);
                (Some(t), Some(r))
            }
            false => (None, None),
        };
        let waiter = Waiter {
            key,
            done,
            on_lost: req.options.on_lost.take(),
        };
        self.send(Msg::Acquire {
            waiter,
            cmd: Command::Acquire(req),
            ack: ack_tx,
        })?;
        Ok(Started {
            key,
            done: done_rx,
            ack: ack_rx,
        })
    }

    fn cancel(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>> {
        self.ask(|reply| Msg::Cancel { key, reply })
    }

    fn position(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>> {
        self.ask(|reply| Msg::Position { key, reply })
    }

    fn subscribe(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
        callback: Option<EventCallback>,
    ) -> Result<(Arc<SubQueue>, u64)> {
        let queue = Arc::new(SubQueue::new(
            filter_of(resources),
            self.subscriber_buffer,
            callback,
        ));
        let (tx, rx) = reply::channel(SPIN);
        self.send(Msg::Subscribe {
            queue: queue.clone(),
            since,
            reply: tx,
        })?;
        let head = rx.recv().map_err(|_| Error::EngineClosed)??;
        Ok((queue, head))
    }

    fn callbacks_done(&self) -> Result<reply::Receiver<()>> {
        self.birth.check()?;
        Ok(self.jobs.barrier())
    }

    fn close(&self) {
        if self.birth.forked() {
            // The threads are not in this process: there is nothing to stop or join.
            return;
        }
        let _ = self.tx.send(Msg::Close);
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A thread cannot join itself: the last handle may drop on the actor thread (held
        // by a grant it discards), and a callback that closes the engine runs on the
        // dispatcher. Each of them ends on its own after `Close` (the dispatcher once the
        // actor and this link have dropped their senders of its queue).
        let me = std::thread::current().id();
        if let Some((actor, dispatcher)) = threads {
            if me != self.actor {
                let _ = actor.join();
                // Every callback of the actor is queued now: the dispatcher ends after
                // them (this link's sender of its queue would keep it waiting).
                self.jobs.stop();
                if me != self.dispatcher {
                    let _ = dispatcher.join();
                }
            }
        }
    }
}

impl Drop for LocalLink {
    fn drop(&mut self) {
        self.close();
        if self.birth.forked() {
            // Leaked on purpose, with the join handles of threads that are not here.
            if let Some(threads) = self.threads.get_mut().ok().and_then(Option::take) {
                std::mem::forget(threads);
            }
            return;
        }
        // SAFETY: `tx` is dropped once, here, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.tx) };
    }
}
