//! Lease notices over the WebSocket protocol: a connection hears of every end of a lease
//! of its sessions, except a release it posted itself with that lease's fence (its client
//! knows; that notice was a third of the messages of every acquire-release pair).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interlock::wire::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
use interlock::{
    AcquireOptions, AcquireRequest, Command, EventKind, Grant, Handle, Reply, SessionId,
    SessionSpec,
};
use interlock_server::Server;

mod common;
use common::serve;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: SessionId,
    /// Lease notices as they came: (kind, fence).
    notices: Vec<(EventKind, u64)>,
    quiet_releases: bool,
}

impl Client {
    async fn open(server: &Server) -> Client {
        let url = format!("ws://{}/v1/ws", server.url().trim_start_matches("http://"));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = Client {
            ws,
            next_id: 0,
            // Until the session below is opened.
            session: "00000000-0000-0000-0000-000000000000".parse().unwrap(),
            notices: Vec::new(),
            quiet_releases: false,
        };
        c.send(ClientMsg::Hello {
            version: PROTOCOL_VERSION,
        })
        .await;
        match c.next().await {
            ServerMsg::Welcome { quiet_releases, .. } => c.quiet_releases = quiet_releases,
            other => panic!("expected welcome, got {other:?}"),
        }
        match c
            .call(Command::OpenSession(SessionSpec::named("raw")))
            .await
        {
            Reply::Opened { session, .. } => c.session = session.id,
            other => panic!("expected opened, got {other:?}"),
        }
        c
    }

    async fn send(&mut self, msg: ClientMsg) {
        let text = serde_json::to_string(&msg).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next message that is not a lease notice (those are recorded).
    async fn next(&mut self) -> ServerMsg {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message in time")
                .expect("the server closed the connection")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            match serde_json::from_str(&text).unwrap() {
                ServerMsg::Lease { event } => {
                    let (fence, _) = event.lease_end().expect("a notice of a lease's end");
                    self.notices.push((event.kind, fence));
                }
                msg => return msg,
            }
        }
    }

    async fn call(&mut self, cmd: Command) -> Reply {
        self.next_id += 1;
        let id = self.next_id;
        self.send(ClientMsg::Call { id, cmd }).await;
        loop {
            if let ServerMsg::Reply { id: got, result } = self.next().await {
                if got == id {
                    return interlock::Result::<Reply>::from(result).unwrap();
                }
            }
        }
    }

    async fn acquire(&mut self, resource: &str) -> Grant {
        self.next_id += 1;
        let id = self.next_id;
        let request = AcquireRequest {
            session: self.session,
            resources: vec![resource.to_string()].into(),
            options: AcquireOptions::default(),
        };
        self.send(ClientMsg::Acquire {
            id,
            request,
            ack: false,
        })
        .await;
        loop {
            if let ServerMsg::Done { id: got, result } = self.next().await {
                if got == id {
                    let grants = interlock::Result::<interlock::Grants>::from(result).unwrap();
                    return grants.into_iter().next().unwrap();
                }
            }
        }
    }

    async fn post_release(&mut self, grant: &Grant, fence: Option<u64>) {
        let cmd = Command::Release {
            resource: grant.resource.clone(),
            token: grant.token,
        };
        self.send(ClientMsg::Post { cmd, fence }).await;
    }

    /// Waits until a notice of `fence` has come.
    async fn notice_of(&mut self, fence: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.notices.iter().any(|&(_, f)| f == fence) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no notice of fence {fence}; notices: {:?}",
                self.notices
            );
            // A round trip lets the notices that are on their way arrive.
            self.call(Command::Locks).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test]
async fn a_release_posted_with_its_fence_is_not_told_back_and_every_other_end_is() {
    let (engine, server) = serve();
    let mut c = Client::open(&server).await;
    assert!(c.quiet_releases);
    // Released by this connection, with the fence: no notice.
    let quiet = c.acquire("a").await;
    c.post_release(&quiet, Some(quiet.fence)).await;
    // Released by this connection without a fence (an older client): told.
    let plain = c.acquire("b").await;
    c.post_release(&plain, None).await;
    // Released with a fence that is not the lease's: the lease's release is told.
    let wrong = c.acquire("c").await;
    c.post_release(&wrong, Some(wrong.fence + 1000)).await;
    // Released by someone else (the engine, by token): told.
    let theirs = c.acquire("d").await;
    engine.release(&theirs.resource, theirs.token).unwrap();
    // Force-released, then released by this connection with its fence (which fails):
    // the force release is told.
    let forced = c.acquire("e").await;
    assert_eq!(engine.force_release("e", Some("test")).unwrap(), 1);
    c.post_release(&forced, Some(forced.fence)).await;
    // Released with its fence but a token that is not its own: that release fails, the
    // fence does not make the lease quiet, and a release by someone else afterwards is
    // told.
    let failed = c.acquire("f").await;
    let not_its: interlock::Token = "6f1e8f1c-2b1a-4c3d-9e8f-0a1b2c3d4e5f".parse().unwrap();
    let cmd = Command::Release {
        resource: failed.resource.clone(),
        token: not_its,
    };
    c.send(ClientMsg::Post {
        cmd,
        fence: Some(failed.fence),
    })
    .await;
    // Answered after the post was handled: the server takes a connection's messages in
    // order.
    c.call(Command::Locks).await;
    engine.release(&failed.resource, failed.token).unwrap();
    c.notice_of(failed.fence).await;
    // Notices come in the engine's order: had the first release been told, it would be
    // here before the others.
    assert_eq!(
        c.notices,
        vec![
            (EventKind::Released, plain.fence),
            (EventKind::Released, wrong.fence),
            (EventKind::Released, theirs.fence),
            (EventKind::ForceReleased, forced.fence),
            (EventKind::Released, failed.fence),
        ]
    );
    // Every lease is free again: the quiet release did release.
    match c.call(Command::Locks).await {
        Reply::Locks(locks) => assert!(locks.is_empty(), "{locks:?}"),
        other => panic!("expected locks, got {other:?}"),
    }
}

#[test]
fn a_remote_engine_that_releases_its_own_leases_still_hears_of_one_taken_away() {
    // Through the client library, which posts each release with its fence.
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), interlock::ConnectOptions::default()).unwrap();
    let s = remote.open_session(SessionSpec::named("lib")).unwrap();
    for _ in 0..200 {
        let lease = s.acquire("psu", &AcquireOptions::default()).unwrap();
        lease.release().unwrap();
        assert_eq!(lease.state(), interlock::LeaseState::Released);
    }
    let kept = s.acquire("psu", &AcquireOptions::default()).unwrap();
    assert_eq!(engine.force_release("psu", None).unwrap(), 1);
    let deadline = std::time::Instant::now() + WAIT;
    while kept.is_valid() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        kept.state(),
        interlock::LeaseState::Lost(interlock::LostReason::ForceReleased)
    );
}
