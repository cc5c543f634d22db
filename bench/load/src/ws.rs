//! A lean client of the WebSocket protocol (docs/protocol.md), for the rows that need
//! many connections from one async process: the client library (`Handle::connect`) runs
//! two threads per connection, which is right for a program and wrong for 10,000
//! sessions on two cores. It speaks the same messages, `interlock::wire`'s types.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interlock::wire::{ClientMsg, Outcome, ServerMsg, PROTOCOL_VERSION};
use interlock::{AcquireOptions, AcquireRequest, Command, Reply, SessionId, SessionSpec};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// One connection acting as the one session it opened.
pub struct Conn {
    link: Link,
    pub session: SessionId,
}

/// A connection after its handshake.
struct Link {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The server keeps a journal: a release is answered after its commit, and waited
    /// for, as the client library does.
    durable: bool,
    /// The server takes a posted release's fence (and then sends no notice of it).
    quiet: bool,
}

impl Conn {
    /// Connects to `url` (`http://HOST:PORT`) and opens a session with `ttl`.
    pub async fn open(url: &str, name: &str, ttl: Duration) -> Result<Conn> {
        let ws_url = format!("ws://{}/v1/ws", url.trim_start_matches("http://"));
        // A small read buffer: 10,000 connections in one process at tungstenite's 128 KiB
        // each would be a gigabyte of client memory; no message here is near 4 KiB.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(ws_url, Some(config), true).await?;
        let mut link = Link {
            ws,
            next_id: 1,
            durable: false,
            quiet: false,
        };
        link.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
        })
        .await?;
        match link.recv().await? {
            ServerMsg::Welcome {
                durable,
                quiet_releases,
                ..
            } => (link.durable, link.quiet) = (durable, quiet_releases),
            other => return Err(format!("expected welcome, got {other:?}").into()),
        }
        let mut spec = SessionSpec::named(name);
        spec.ttl = Some(ttl);
        match link.call(Command::OpenSession(spec)).await? {
            Reply::Opened { session, .. } => Ok(Conn {
                link,
                session: session.id,
            }),
            other => Err(format!("expected opened, got {other:?}").into()),
        }
    }

    /// Sends what is queued (a posted release) and closes the session, so that a later
    /// run finds its resources free.
    pub async fn close(mut self) -> Result<()> {
        let session = self.session;
        self.link.call(Command::CloseSession { session }).await?;
        Ok(())
    }

    pub async fn heartbeat(&mut self) -> Result<()> {
        let session = self.session;
        self.link.call(Command::Heartbeat { session }).await?;
        Ok(())
    }

    /// One uncontended acquire of `resource` and its release. Without a journal the
    /// release is posted, not waited for (as the client library does), and goes out in
    /// one write with the next acquire.
    pub async fn pair(&mut self, resource: &Arc<[String]>) -> Result<()> {
        let link = &mut self.link;
        let id = link.fresh_id();
        let request = AcquireRequest {
            session: self.session,
            resources: resource.clone(),
            options: AcquireOptions::default(),
        };
        link.send(&ClientMsg::Acquire {
            id,
            request,
            ack: false,
        })
        .await?;
        let grant = loop {
            if let ServerMsg::Done { id: got, result } = link.recv().await? {
                if got == id {
                    break outcome(result)?
                        .into_iter()
                        .next()
                        .ok_or("an empty grant")?;
                }
            }
        };
        let fence = grant.fence;
        let release = Command::Release {
            resource: grant.resource,
            token: grant.token,
        };
        if link.durable {
            link.call(release).await?;
        } else {
            // With its fence, as the client library posts it: no notice comes back.
            let fence = link.quiet.then_some(fence);
            link.feed(&ClientMsg::Post {
                cmd: release,
                fence,
            })
            .await?;
        }
        Ok(())
    }
}

impl Link {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues a message; `send` flushes it with everything queued before.
    async fn feed(&mut self, msg: &ClientMsg) -> Result<()> {
        let text = serde_json::to_string(msg)?;
        Ok(self.ws.feed(Message::text(text)).await?)
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        self.feed(msg).await?;
        Ok(self.ws.flush().await?)
    }

    /// The next message of the protocol (lease notices and other frames skipped: these
    /// sessions only hold what they are about to release).
    async fn recv(&mut self) -> Result<ServerMsg> {
        loop {
            let frame = self
                .ws
                .next()
                .await
                .ok_or("the server closed the connection")??;
            if let Message::Text(text) = frame {
                match serde_json::from_str(&text)? {
                    ServerMsg::Lease { .. } => continue,
                    ServerMsg::Bye { error } => return Err(format!("bye: {error:?}").into()),
                    msg => return Ok(msg),
                }
            }
        }
    }

    async fn call(&mut self, cmd: Command) -> Result<Reply> {
        let id = self.fresh_id();
        self.send(&ClientMsg::Call { id, cmd }).await?;
        loop {
            if let ServerMsg::Reply { id: got, result } = self.recv().await? {
                if got == id {
                    return outcome(result);
                }
            }
        }
    }
}

fn outcome<T>(o: Outcome<T>) -> Result<T> {
    match o {
        Outcome::Ok(v) => Ok(v),
        Outcome::Err(e) => Err(format!("{e:?}").into()),
    }
}
