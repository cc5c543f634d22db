//! Loom models of the reply slot's races: `core/loom.sh` runs them. Each model runs its
//! closure once per interleaving loom can tell apart (bounded by `LOOM_MAX_PREEMPTIONS`,
//! 3 when unset); a value lost or duplicated fails an assertion, a lost wake-up leaves
//! every thread blocked, which loom reports as a deadlock, and an unsynchronised access to
//! the value cell fails loom's own causality check.
//!
//! Time is not modelled: waits here have no timeout (std's tests cover `recv_timeout`).

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;

use super::{channel, defer_wakes, flush_wakes, Closed};

/// Runs `f` under loom and prints how many interleavings it took.
fn model(name: &str, f: impl Fn() + Send + Sync + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    let start = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    println!(
        "loom: {name}: {} interleavings in {:.2?}",
        runs.load(Relaxed),
        start.elapsed()
    );
}

/// A value that counts its drops: once means it was neither lost nor duplicated.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn token() -> (Token, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    (Token(drops.clone()), drops)
}

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Waker, std::sync::Arc<Count>) {
    let count = std::sync::Arc::new(Count(AtomicUsize::new(0)));
    (Waker::from(count.clone()), count)
}

/// (1) A blocking receiver gets the value exactly once, whether it comes before the
/// receiver looks, while it announces itself, or after it sleeps.
fn send_and_blocking_recv(spin: Duration) {
    let (value, drops) = token();
    let (tx, rx) = channel(spin);
    let sender = thread::spawn(move || assert!(tx.send(value).is_ok(), "the receiver is there"));
    let got = rx.recv();
    assert!(got.is_ok(), "the value arrives");
    assert!(matches!(rx.recv(), Err(Closed)), "and only once");
    sender.join().unwrap();
    assert_eq!(drops.load(SeqCst), 0);
    drop((got, rx));
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn send_and_blocking_recv_without_spin() {
    model("send_and_blocking_recv_without_spin", || {
        send_and_blocking_recv(Duration::ZERO)
    });
}

/// The same through the spin (loom's `spin_until` polls, yields and polls again).
#[test]
fn send_and_blocking_recv_after_spin() {
    model("send_and_blocking_recv_after_spin", || {
        send_and_blocking_recv(Duration::from_micros(50))
    });
}

/// (2) A send racing the receiver's drop (after one look): the value is delivered, or
/// handed back, or left in the slot and dropped with it; never lost or duplicated.
#[test]
fn send_races_receiver_drop() {
    model("send_races_receiver_drop", || {
        let (value, drops) = token();
        let (tx, rx) = channel(Duration::ZERO);
        let receiver = thread::spawn(move || rx.try_take());
        let sent = tx.send(value);
        let got = receiver.join().unwrap();
        match (&sent, &got) {
            // Handed back: the receiver saw nothing.
            (Err(_), None) => assert_eq!(drops.load(SeqCst), 0),
            // Delivered.
            (Ok(()), Some(Ok(_))) => assert_eq!(drops.load(SeqCst), 0),
            // Sent after the look, before the drop: the slot, gone now, dropped it.
            (Ok(()), None) => assert_eq!(drops.load(SeqCst), 1),
            (Err(_), Some(Ok(_))) => panic!("delivered and handed back"),
            (_, Some(Err(Closed))) => panic!("closed while the sender was alive"),
        }
        drop((sent, got));
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// (2, closed) A send racing `close` (a ticket cancelled as its grant comes): the value
/// is returned by `close` or handed back to the sender, never left in the slot.
#[test]
fn send_races_close() {
    model("send_races_close", || {
        let (value, drops) = token();
        let (tx, rx) = channel(Duration::ZERO);
        let receiver = thread::spawn(move || rx.close().map(|r| r.is_ok()));
        let sent = tx.send(value);
        let closed = receiver.join().unwrap();
        match (&sent, closed) {
            (Err(_), None) | (Ok(()), Some(true)) => {}
            (sent, closed) => panic!("send {:?}, close {closed:?}", sent.is_ok()),
        }
        // Returned (and dropped by the receiver's thread) or handed back: dropped once.
        drop(sent);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// (2, async) A send racing a cancelled wait: the receiver registers a waker, then is
/// dropped. Same outcomes, and the stored waker is released either way.
#[test]
fn send_races_cancelled_poll() {
    model("send_races_cancelled_poll", || {
        let (value, drops) = token();
        let (tx, rx) = channel(Duration::ZERO);
        let receiver = thread::spawn(move || {
            let (waker, _count) = counting_waker();
            match rx.poll_recv(&mut Context::from_waker(&waker)) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            }
        });
        let sent = tx.send(value);
        let got = receiver.join().unwrap();
        match (&sent, &got) {
            (Err(_), None) | (Ok(()), Some(Ok(_))) => assert_eq!(drops.load(SeqCst), 0),
            (Ok(()), None) => assert_eq!(drops.load(SeqCst), 1),
            (Err(_), Some(Ok(_))) => panic!("delivered and handed back"),
            (_, Some(Err(Closed))) => panic!("closed while the sender was alive"),
        }
        drop((sent, got));
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// (3) A sender dropped without sending wakes a blocking receiver with `Closed`.
#[test]
fn sender_drop_closes_blocking_recv() {
    model("sender_drop_closes_blocking_recv", || {
        let (tx, rx) = channel::<Token>(Duration::ZERO);
        let sender = thread::spawn(move || drop(tx));
        assert!(matches!(rx.recv(), Err(Closed)));
        sender.join().unwrap();
    });
}

/// (3, async) The same for an awaiting receiver.
#[test]
fn sender_drop_closes_awaiting_recv() {
    model("sender_drop_closes_awaiting_recv", || {
        let (tx, rx) = channel::<Token>(Duration::ZERO);
        let sender = thread::spawn(move || drop(tx));
        assert!(matches!(loom::future::block_on(rx), Err(Closed)));
        sender.join().unwrap();
    });
}

/// (4) One poll racing a send: if the poll saw nothing, its waker was woken exactly once
/// and the value waits in the slot.
#[test]
fn poll_races_send() {
    model("poll_races_send", || {
        let (tx, rx) = channel(Duration::ZERO);
        let sender = thread::spawn(move || tx.send(5).unwrap());
        let (waker, count) = counting_waker();
        let first = rx.poll_recv(&mut Context::from_waker(&waker));
        sender.join().unwrap();
        match first {
            Poll::Ready(r) => assert_eq!(r, Ok(5)),
            Poll::Pending => {
                assert_eq!(count.0.load(SeqCst), 1, "lost wake-up");
                assert_eq!(rx.try_take(), Some(Ok(5)));
            }
        }
    });
}

/// (4) An awaiting receiver (loom's executor parks between polls) gets the value.
#[test]
fn await_races_send() {
    model("await_races_send", || {
        let (tx, rx) = channel(Duration::ZERO);
        let sender = thread::spawn(move || tx.send(5).unwrap());
        assert_eq!(loom::future::block_on(rx), Ok(5));
        sender.join().unwrap();
    });
}

/// (4, deferred) A sender that defers its wakes (as the actor does) holds the wake-up
/// until it flushes, and then delivers it.
#[test]
fn poll_races_deferred_send() {
    model("poll_races_deferred_send", || {
        let (waker, count) = counting_waker();
        let (tx, rx) = channel(Duration::ZERO);
        let sender = {
            let count = count.clone();
            thread::spawn(move || {
                defer_wakes(true);
                tx.send(5).unwrap();
                assert_eq!(
                    count.0.load(SeqCst),
                    0,
                    "a deferred wake ran before the flush"
                );
                flush_wakes();
                defer_wakes(false);
            })
        };
        let first = rx.poll_recv(&mut Context::from_waker(&waker));
        sender.join().unwrap();
        match first {
            Poll::Ready(r) => assert_eq!(r, Ok(5)),
            Poll::Pending => {
                assert_eq!(count.0.load(SeqCst), 1, "lost wake-up");
                assert_eq!(rx.try_take(), Some(Ok(5)));
            }
        }
    });
}

/// (4, deferred) An awaiting receiver gets the value from a deferring sender.
#[test]
fn await_races_deferred_send() {
    model("await_races_deferred_send", || {
        let (tx, rx) = channel(Duration::ZERO);
        let sender = thread::spawn(move || {
            defer_wakes(true);
            tx.send(5).unwrap();
            defer_wakes(false);
        });
        assert_eq!(loom::future::block_on(rx), Ok(5));
        sender.join().unwrap();
    });
}

/// (5) Two blocking waiters on one slot (a ticket shared by two threads): both wake when
/// the value comes; one gets it, the other sees `Closed`.
#[test]
fn two_blocking_waiters() {
    model("two_blocking_waiters", || {
        let (value, drops) = token();
        let (tx, rx) = channel(Duration::ZERO);
        let rx = Arc::new(rx);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || rx.recv())
            })
            .collect();
        assert!(tx.send(value).is_ok(), "the receiver is there");
        drop(rx);
        let got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(
            got.iter().filter(|r| r.is_ok()).count(),
            1,
            "one gets the value"
        );
        assert_eq!(got.iter().filter(|r| matches!(r, Err(Closed))).count(), 1);
        drop(got);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// (5, mixed) A blocking waiter and an awaiting one on one slot.
#[test]
fn blocking_and_awaiting_waiters() {
    model("blocking_and_awaiting_waiters", || {
        let (tx, rx) = channel(Duration::ZERO);
        let rx = Arc::new(rx);
        let blocking = {
            let rx = rx.clone();
            thread::spawn(move || rx.recv())
        };
        let awaiting = {
            let rx = rx.clone();
            thread::spawn(move || {
                loom::future::block_on(std::future::poll_fn(|cx| rx.poll_recv(cx)))
            })
        };
        tx.send(5).unwrap();
        drop(rx);
        let mut got = [blocking.join().unwrap(), awaiting.join().unwrap()];
        got.sort_by_key(|r| r.is_err());
        assert_eq!(got, [Ok(5), Err(Closed)]);
    });
}
