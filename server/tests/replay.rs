//! A subscription that asks for a replay (`since`), as a remote client's does after every
//! reconnect, gets every event the server's ring still holds, however many more than a
//! connection's event queue; and the client resumes from the last event it delivered,
//! never from a head some connection reported. (Found by tests/scenarios: events were
//! skipped for good after a long cut.)

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interlock::wire::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
use interlock::{AcquireOptions, ConnectOptions, Event, EventKind, Handle, SessionSpec};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::serve;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_replay_longer_than_the_connection_queue_arrives_whole() {
    let (engine, server) = serve();
    // 5,001 events: five times the connection's queue (1,024), half the ring (10,000).
    let s = engine.open_session(SessionSpec::named("burster")).unwrap();
    for _ in 0..2500 {
        s.acquire("r", &AcquireOptions::default())
            .unwrap()
            .release()
            .unwrap();
    }
    let head = engine.history(None, None, Some(1)).unwrap()[0].seq;
    let options = ConnectOptions {
        subscriber_buffer: 100_000,
        ..ConnectOptions::default()
    };
    let remote = Handle::connect(server.url(), options).unwrap();
    let sub = remote.subscribe(None, Some(0)).unwrap();
    let mut seqs = Vec::new();
    while seqs.last() != Some(&head) {
        let event = sub
            .recv_timeout(WAIT)
            .unwrap_or_else(|| panic!("the replay stalled after {} events", seqs.len()));
        assert_ne!(
            event.kind,
            EventKind::Lagged,
            "a gap after {} events",
            seqs.len()
        );
        seqs.push(event.seq);
    }
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
}

/// What the fake server of [`a_resumed_subscription_goes_on_from_the_last_event_it_delivered`]
/// does on one connection: the head its `subscribed` reports, the seqs of the events it
/// sends then; it closes the connection after them, except on the last one.
const SCRIPT: [(u64, &[u64]); 3] = [(100, &[101, 102]), (500, &[103]), (900, &[104])];

#[test]
fn a_resumed_subscription_goes_on_from_the_last_event_it_delivered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sinces, asked) = mpsc::channel();
    std::thread::spawn(move || fake_server(listener, sinces));
    let remote = Handle::connect(&url, ConnectOptions::default()).unwrap();
    let sub = remote.subscribe(None, None).unwrap();
    let got: Vec<u64> = (0..4)
        .map(|_| sub.recv_timeout(WAIT).expect("an event").seq)
        .collect();
    assert_eq!(got, [101, 102, 103, 104]);
    let asked: Vec<Option<u64>> = (0..3).map(|_| asked.recv_timeout(WAIT).unwrap()).collect();
    // Live at first; then after what it got, not after the head of the connection before
    // (500 would skip 103..=500 without a marker).
    assert_eq!(asked, [None, Some(102), Some(103)]);
}

/// A server of the protocol that serves only a subscription, by [`SCRIPT`]; it reports
/// each `since` it is asked for.
fn fake_server(listener: TcpListener, sinces: mpsc::Sender<Option<u64>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        for (i, (head, seqs)) in SCRIPT.iter().enumerate() {
            let (stream, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let (mut sink, mut stream) = ws.split();
            // Reads on to the subscribe (the client says hello first), answering as a
            // server would.
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                match serde_json::from_str::<ClientMsg>(text.as_str()).unwrap() {
                    ClientMsg::Hello { .. } => {
                        let welcome = ServerMsg::Welcome {
                            version: PROTOCOL_VERSION,
                            server: "fake".into(),
                            durable: false,
                            quiet_releases: false,
                            engine_id: None,
                        };
                        sink.send(text_of(&welcome)).await.unwrap();
                    }
                    ClientMsg::Subscribe { id, since, .. } => {
                        sinces.send(since).unwrap();
                        let subscribed = ServerMsg::Subscribed { id, head: *head };
                        sink.send(text_of(&subscribed)).await.unwrap();
                        for &seq in *seqs {
                            let msg = ServerMsg::Event {
                                sub: id,
                                event: event(seq),
                            };
                            sink.send(text_of(&msg)).await.unwrap();
                        }
                        break;
                    }
                    other => panic!("not part of the script: {other:?}"),
                }
            }
            if i + 1 < SCRIPT.len() {
                sink.close().await.unwrap();
            } else {
                // Stays up until the client goes.
                while stream.next().await.is_some() {}
            }
        }
    });
}

fn text_of(msg: &ServerMsg) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap().into())
}

fn event(seq: u64) -> Event {
    serde_json::from_value(serde_json::json!({
        "seq": seq, "at": 0.0, "kind": "acquired", "resource": "r",
    }))
    .unwrap()
}
