//! The dispatcher thread of a link: it runs callbacks (`on_lost`, callback
//! subscriptions) in order, so that no user code ever runs on the thread that owns the
//! engine's state or its connection.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::protocol::{LostCallback, LostNotice};
use crate::subscription::SubQueue;

pub(crate) enum Job {
    Lost(LostCallback, LostNotice),
    Drain(Arc<SubQueue>),
    /// Answers once the jobs before it are done.
    Barrier(crate::reply::Sender<()>),
    /// Ends the dispatcher once the jobs before it are done.
    Stop,
}

/// Where a link sends its callbacks.
#[derive(Clone)]
pub(crate) struct Jobs(Sender<Job>);

impl Jobs {
    /// Starts the dispatcher thread; it ends once every `Jobs` is gone, or at `stop`.
    pub(crate) fn start(name: &str) -> std::io::Result<(Jobs, std::thread::JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || dispatch(rx))?;
        Ok((Jobs(tx), thread))
    }

    /// A reply that comes once every callback queued before this call has run.
    pub(crate) fn barrier(&self) -> crate::reply::Receiver<()> {
        let (tx, rx) = crate::reply::channel(std::time::Duration::ZERO);
        let _ = self.0.send(Job::Barrier(tx));
        rx
    }

    /// Ends the dispatcher after the callbacks already queued.
    pub(crate) fn stop(&self) {
        let _ = self.0.send(Job::Stop);
    }

    pub(crate) fn lost(&self, callback: LostCallback, notice: LostNotice) {
        let _ = self.0.send(Job::Lost(callback, notice));
    }

    /// Queues a drain job for a callback subscription that has events and none queued.
    pub(crate) fn schedule(&self, sub: &Arc<SubQueue>) {
        if sub.callback.is_some() && !sub.is_empty() && !sub.scheduled.swap(true, Ordering::AcqRel)
        {
            let _ = self.0.send(Job::Drain(sub.clone()));
        }
    }
}

/// Runs callbacks in order until every sender is gone. A callback that panics is caught
/// and does not stop later ones.
fn dispatch(jobs: Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Lost(callback, notice) => {
                let _ = catch_unwind(AssertUnwindSafe(|| callback(&notice)));
            }
            Job::Drain(sub) => drain(&sub),
            Job::Barrier(done) => drop(done.send(())),
            Job::Stop => return,
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
