//! The WebSocket protocol of remote engines at `/v1/ws` (`docs/protocol.md`). A
//! connection reads its messages in order and hands each to the engine in that order (a
//! release sent before a call is applied before it); waits and subscriptions run as
//! tasks of the connection, and end with it: a client that vanishes never holds a wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use interlock::wire::{ClientMsg, Outcome, ServerMsg, PROTOCOL_VERSION};
use interlock::{
    Command, Error, ErrorKind, Event, EventKind, Grants, Reply, SessionId, Ticket, Token, WireError,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::auth::{authorize, Caller, Owns, Role};
use crate::error::{rejected, ApiError, ErrorBody};
use crate::http::run;
use crate::notices::Route;
use crate::stall::WRITE_TIMEOUT;
use crate::App;

/// Frames up to this many times the message limit are read, so that one a little over
/// the limit gets a clear answer; beyond it the connection just ends. (A multiple of the
/// server's own limit, not of the default: `--max-message` may be larger than that.)
const FRAME_FACTOR: usize = 4;

/// Bytes a connection reads from its socket at once.
const READ_BUFFER: usize = 4096;

/// Posted releases a connection hands the engine in a row without waiting: the next one
/// is awaited (and with it every one before), so that a client that posts faster than
/// the engine applies fills its own socket, not the engine's queue.
const POSTS_AHEAD: u32 = 32;

/// The WebSocket protocol of remote engines (`docs/protocol.md`): any role may connect,
/// and each message is authorized by role.
#[utoipa::path(get, path = "/v1/ws",
    responses((status = 101, description = "the WebSocket protocol of `docs/protocol.md`"), (status = 426, body = ErrorBody, description = "not a WebSocket upgrade")))]
pub async fn upgrade(
    State(app): State<App>,
    caller: Caller,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let role = caller.require(Role::Read)?;
    // A request without the upgrade's headers is answered in the server's format.
    let ws = ws.map_err(rejected)?;
    let seat = app.seat()?;
    let frames = app.config.limits.message.saturating_mul(FRAME_FACTOR);
    Ok(ws
        .max_message_size(frames)
        .max_frame_size(frames)
        // tungstenite's default, 128 KiB a connection, zeroed as it reads: 142 KiB of RSS
        // a connection and 18 % of the server's time (bench/RESULTS.md, run I). Messages
        // are a few hundred bytes; a larger one still arrives, in more reads.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            Conn::new(app, role).run(socket).await;
            drop(seat);
        }))
}

/// What the tasks of a connection report when they end.
enum Finished {
    Acquire(u64),
    Subscription(u64),
}

struct Conn {
    app: App,
    role: Role,
    /// Replies, acks, outcomes and lease notices: the client's own traffic, bounded by
    /// its own requests.
    out: mpsc::UnboundedSender<ServerMsg>,
    out_rx: Option<mpsc::UnboundedReceiver<ServerMsg>>,
    /// How the server's subscription reaches this connection (see `notices`).
    route: Route,
    /// Subscription events: bounded, so that a slow client slows only its own
    /// subscriptions (they fall behind and get `lagged`), never the engine.
    events: mpsc::Sender<ServerMsg>,
    events_rx: Option<mpsc::Receiver<ServerMsg>>,
    sessions: HashSet<SessionId>,
    /// Acquires in flight, and whether each one's `done` is on its way.
    acquires: HashMap<u64, (Arc<Ticket>, tokio::sync::watch::Receiver<bool>)>,
    subscriptions: HashMap<u64, tokio::task::AbortHandle>,
    tasks: JoinSet<Finished>,
    hello: bool,
    /// Posted releases handed on since a command of this connection was last awaited.
    posted: u32,
}

/// Ends a connection: the error its `bye` says.
struct Close(WireError);

fn bye(kind: ErrorKind, message: impl Into<String>) -> Close {
    Close(WireError {
        kind,
        message: message.into(),
        detail: None,
        reason: None,
    })
}

impl Conn {
    fn new(app: App, role: Role) -> Self {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(app.config.limits.event_queue);
        Conn {
            app,
            role,
            route: Route::new(out.clone()),
            out,
            out_rx: Some(out_rx),
            events,
            events_rx: Some(events_rx),
            sessions: HashSet::new(),
            acquires: HashMap::new(),
            subscriptions: HashMap::new(),
            tasks: JoinSet::new(),
            hello: false,
            posted: 0,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (sink, mut stream) = socket.split();
        let (Some(out_rx), Some(events_rx)) = (self.out_rx.take(), self.events_rx.take()) else {
            return;
        };
        let mut writer = tokio::spawn(write(sink, out_rx, events_rx));
        // A JoinHandle must not be polled again once it has finished (tokio panics).
        let mut written = false;
        let stopped = self.app.stopped();
        tokio::pin!(stopped);
        let ended = loop {
            tokio::select! {
                _ = &mut stopped => {
                    break Some(bye(ErrorKind::EngineClosed, "the server is shutting down"));
                }
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(close) = self.receive(text.as_str()).await {
                            break Some(close);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break Some(bye(ErrorKind::InvalidArgument, "binary frames are not part of the protocol: send JSON text"));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => break Some(bye(ErrorKind::InvalidArgument, format!("unreadable frame: {e}"))),
                },
                Some(done) = self.tasks.join_next() => match done {
                    Ok(Finished::Acquire(id)) => { self.acquires.remove(&id); }
                    Ok(Finished::Subscription(id)) => { self.subscriptions.remove(&id); }
                    Err(_) => {}
                },
                _ = &mut writer => {
                    written = true;
                    break None;
                }
            }
        };
        if let Some(Close(error)) = ended {
            tracing::info!(kind = ?error.kind, message = %error.message, "closing a WebSocket connection");
            let _ = self.out.send(ServerMsg::Bye { error });
        }
        // Waits and subscriptions end now; the sessions stay (they may be resumed).
        self.tasks.abort_all();
        self.acquires.clear();
        self.app.notices.forget(&self.sessions, &self.route);
        drop(self.out);
        drop(self.route);
        drop(self.events);
        if !written {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, writer).await;
        }
    }

    async fn receive(&mut self, text: &str) -> Result<(), Close> {
        if text.len() > self.app.config.limits.message {
            return Err(bye(
                ErrorKind::InvalidArgument,
                format!(
                    "a message of {} bytes is over the limit of {}",
                    text.len(),
                    self.app.config.limits.message
                ),
            ));
        }
        let msg: ClientMsg = serde_json::from_str(text).map_err(|e| {
            bye(
                ErrorKind::InvalidArgument,
                format!("not a message of protocol {PROTOCOL_VERSION}: {e}"),
            )
        })?;
        match (self.hello, msg) {
            (false, ClientMsg::Hello { version }) if version == PROTOCOL_VERSION => {
                self.hello = true;
                self.send(ServerMsg::Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("interlock {}", env!("CARGO_PKG_VERSION")),
                    durable: self.app.handle.is_durable(),
                    quiet_releases: true,
                    engine_id: self.app.handle.engine_id(),
                });
                Ok(())
            }
            (false, ClientMsg::Hello { version }) => Err(bye(
                ErrorKind::InvalidArgument,
                format!("protocol version {version} is not served here (this server speaks {PROTOCOL_VERSION})"),
            )),
            (false, _) => Err(bye(ErrorKind::InvalidArgument, "the first message must be hello")),
            (true, ClientMsg::Hello { .. }) => Err(bye(ErrorKind::InvalidArgument, "hello was already said")),
            (true, msg) => {
                self.handle(msg).await;
                Ok(())
            }
        }
    }

    fn send(&self, msg: ServerMsg) {
        let _ = self.out.send(msg);
    }

    fn reply(&self, id: u64, result: Result<Reply, ApiError>) {
        let result = result.map_err(ApiError::into_engine);
        self.send(ServerMsg::Reply {
            id,
            result: result.into(),
        });
    }

    async fn handle(&mut self, msg: ClientMsg) {
        match msg {
            ClientMsg::Hello { .. } => {}
            ClientMsg::Call { id, cmd } => {
                let result = self.call(cmd).await;
                self.reply(id, result);
            }
            ClientMsg::Post {
                cmd: Command::Release { resource, token },
                fence,
            } => self.post_release(resource, token, fence).await,
            ClientMsg::Post { cmd, .. } => {
                let _ = self.call(cmd).await;
            }
            ClientMsg::Resume {
                id,
                session,
                secret,
            } => {
                let result = match self.room_for_session(Some(session)) {
                    Ok(()) => self.call(Command::Resume { session, secret }).await,
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    self.adopt(session);
                }
                self.reply(id, result);
            }
            ClientMsg::Acquire { id, request, ack } => self.acquire(id, request, ack).await,
            ClientMsg::Cancel { id, of } => {
                let result = match self.acquires.get(&of) {
                    Some((t, _)) => t
                        .cancel_async()
                        .await
                        .map(|_| Reply::Unit)
                        .map_err(ApiError::from),
                    None => Ok(Reply::Unit),
                };
                self.reply(id, result);
            }
            ClientMsg::Position { id, of } => {
                let result = match self.acquires.get(&of) {
                    Some((t, told)) => {
                        let position = t.position_async().await;
                        if let Ok(None) = position {
                            // Not waiting any more: its outcome goes to the client before
                            // this answer, so that a client that sees no position finds
                            // the outcome there.
                            let mut told = told.clone();
                            let _ =
                                tokio::time::timeout(WRITE_TIMEOUT, told.wait_for(|t| *t)).await;
                        }
                        position.map(Reply::Position).map_err(ApiError::from)
                    }
                    None => Ok(Reply::Position(None)),
                };
                self.reply(id, result);
            }
            ClientMsg::Subscribe {
                id,
                resources,
                since,
            } => self.subscribe(id, resources, since),
            ClientMsg::Unsubscribe { sub } => {
                if let Some(task) = self.subscriptions.remove(&sub) {
                    task.abort();
                }
            }
        }
    }

    /// A release the client posted, handed on without waiting for the engine's answer
    /// (but for one in `POSTS_AHEAD`): the connection reads on at once, and its next
    /// message is applied after it all the same (one queue to the engine). With `fence`,
    /// and the token that lease was handed out with here, the lease's `released` notice
    /// is not told back (see `notices`).
    async fn post_release(&mut self, resource: Arc<str>, token: Token, fence: Option<u64>) {
        let own = Acting {
            sessions: &self.sessions,
            ended: None,
        };
        let cmd = Command::Release {
            resource: resource.clone(),
            token,
        };
        if authorize(self.role, &own, &cmd).is_err() {
            return;
        }
        if let Some(fence) = fence {
            self.route.releasing(fence, token);
        }
        self.posted += 1;
        if self.posted < POSTS_AHEAD {
            let _ = self
                .app
                .handle
                .post_release(&resource, token, fence.unwrap_or_default());
            return;
        }
        self.posted = 0;
        let _ = self.app.handle.execute_async(cmd).await;
    }

    /// One command, as the HTTP routes run it; a session this opens is this
    /// connection's.
    async fn call(&mut self, mut cmd: Command) -> Result<Reply, ApiError> {
        let mut closes = None;
        let mut ended = None;
        match &mut cmd {
            Command::OpenSession(spec) => {
                self.room_for_session(None)?;
                spec.ttl = Some(spec.ttl.unwrap_or(self.app.config.session_ttl));
            }
            Command::CloseSession { session } => {
                closes = Some(*session);
                ended = self.ended(*session).await;
            }
            Command::Heartbeat { session } => ended = self.ended(*session).await,
            _ => {}
        }
        let own = Acting {
            sessions: &self.sessions,
            ended,
        };
        let ends_leases = matches!(
            cmd,
            Command::ForceRelease { .. } | Command::CloseSession { .. }
        );
        let reply = run(&self.app, self.role, &own, cmd).await;
        // The posts before it were applied before it.
        self.posted = 0;
        let reply = reply?;
        if ends_leases {
            self.notices_first().await;
        }
        if let Some(session) = closes {
            self.sessions.remove(&session);
        }
        if let Reply::Opened { session, .. } = &reply {
            self.adopt(session.id);
        }
        Ok(reply)
    }

    /// Waits until the notices of the leases a command ended are on their way (the
    /// server's subscription runs on the engine's dispatcher, behind the command's
    /// events): a client that ended its own leases then hears of it before the answer,
    /// as an embedded caller would.
    async fn notices_first(&self) {
        let _ = self.app.handle.callbacks_done_async().await;
    }

    /// `session`, if this connection does not act as it because it has ended (closed,
    /// expired) or never was: a command for it may then go to the engine, which answers
    /// as it answers an embedded caller (`NotFound`, `SessionExpired`, 0 for a close), as
    /// nothing of the session is left to protect.
    async fn ended(&self, session: SessionId) -> Option<SessionId> {
        if self.sessions.contains(&session) {
            return None;
        }
        let known = self
            .app
            .handle
            .execute_async(Command::Session { session })
            .await;
        matches!(known, Err(Error::NotFound(_) | Error::SessionExpired(_))).then_some(session)
    }

    /// Room to act as one more session (`None`: a new one).
    fn room_for_session(&self, session: Option<SessionId>) -> Result<(), ApiError> {
        let limit = self.app.config.limits.sessions_per_connection;
        let known = session.is_some_and(|s| self.sessions.contains(&s));
        match self.sessions.len() >= limit && !known {
            true => Err(ApiError::Engine(Error::PermissionDenied(format!(
                "a connection may act as at most {limit} sessions"
            )))),
            false => Ok(()),
        }
    }

    /// From now on this connection acts as `session`, and is told when its leases end.
    fn adopt(&mut self, session: SessionId) {
        self.sessions.insert(session);
        self.app.notices.route(session, &self.route);
    }

    async fn acquire(&mut self, id: u64, request: interlock::AcquireRequest, ack: bool) {
        let limit = self.app.config.limits.waits_per_connection;
        let ended = self.ended(request.session).await;
        let started: Result<Ticket, ApiError> = async {
            let own = Acting {
                sessions: &self.sessions,
                ended,
            };
            authorize(self.role, &own, &Command::Acquire(request.clone()))?;
            if self.acquires.len() >= limit {
                return Err(ApiError::Engine(Error::PermissionDenied(format!(
                    "a connection may have at most {limit} acquires in flight"
                ))));
            }
            let names: Vec<&str> = request.resources.iter().map(String::as_str).collect();
            let handle = &self.app.handle;
            Ok(match ack {
                true => {
                    handle
                        .enqueue_async(request.session, &names, &request.options)
                        .await?
                }
                false => handle.request(request.session, &names, &request.options)?,
            })
        }
        .await;
        let ticket = match started {
            Ok(t) => Arc::new(t),
            Err(e) => {
                let result: interlock::Result<Option<u64>> = Err(e.into_engine());
                match ack {
                    true => self.send(ServerMsg::Ack {
                        id,
                        result: result.into(),
                    }),
                    false => self.send(ServerMsg::Done {
                        id,
                        result: result.map(|_| Grants::new()).into(),
                    }),
                }
                return;
            }
        };
        if ack {
            let position = ticket.position_async().await.ok().flatten();
            self.send(ServerMsg::Ack {
                id,
                result: Outcome::Ok(position),
            });
        }
        let (told, told_rx) = tokio::sync::watch::channel(false);
        self.acquires.insert(id, (ticket.clone(), told_rx));
        let out = self.out.clone();
        let route = self.route.clone();
        let handle = self.app.handle.clone();
        let takes = request.options.preempt || request.options.break_stale;
        self.tasks.spawn(async move {
            let result = ticket
                .wait_async()
                .await
                .map(|leases| leases.iter().map(|l| l.grant().clone()).collect::<Grants>());
            if let Ok(grants) = &result {
                route.granted(grants);
            }
            if takes {
                // The leases this grant took away may be this client's too.
                let _ = handle.callbacks_done_async().await;
            }
            let _ = out.send(ServerMsg::Done {
                id,
                result: result.into(),
            });
            told.send_replace(true);
            Finished::Acquire(id)
        });
    }

    fn subscribe(&mut self, id: u64, resources: Option<Vec<String>>, since: Option<u64>) {
        // As in `sse::events`: the other tasks of this worker go on while the engine writes.
        let handle = &self.app.handle;
        let sub =
            match tokio::task::block_in_place(|| handle.subscribe(resources.as_deref(), since)) {
                Ok(sub) => sub,
                Err(e) => return self.reply(id, Err(e.into())),
            };
        let head = sub.head();
        self.send(ServerMsg::Subscribed { id, head });
        let events = self.events.clone();
        let out = self.out.clone();
        let limits = &self.app.config.limits;
        let mut behind = Behind::new(limits.lag_strikes, limits.event_queue);
        // The replay (what the engine had up to `head`, after `since`) is paced by the
        // socket: the engine holds all of it for this subscription anyway (its ring
        // bounds it), so waiting for room costs the engine nothing, and dropping it to a
        // full connection queue would lose events a reconnecting client is owed.
        let mut replaying = since.is_some();
        let task = self.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    // Room again after events were dropped: the marker goes out at once,
                    // where the gap is, not with whatever event comes next (maybe none).
                    permit = events.reserve(), if behind.missed > 0 => match permit {
                        Ok(permit) => {
                            behind.mark(permit, id);
                            continue;
                        }
                        Err(_) => break,
                    },
                    event = sub.next_async() => match event {
                        Some(event) => event,
                        None => break,
                    },
                };
                replaying &= event.kind == EventKind::Lagged || event.seq <= head;
                if replaying {
                    let msg = ServerMsg::Event {
                        sub: id,
                        event: (*event).clone(),
                    };
                    if events.send(msg).await.is_err() {
                        break;
                    }
                    continue;
                }
                // Missed in the engine: the task itself fell behind (a busy server).
                let hopeless = match event.kind {
                    EventKind::Lagged => behind.strike(),
                    _ => false,
                };
                // Never wait for room in the connection's queue for live events: a
                // client that does not read would stall this task, and then nothing
                // would count how far behind it falls while its socket is stuck.
                let hopeless = hopeless
                    || match behind.queue(&events, id, (*event).clone()) {
                        Err(Closed) => break,
                        Ok(hopeless) => hopeless,
                    };
                if hopeless {
                    tracing::info!("too slow: closing a WebSocket connection whose subscription fell behind again and again");
                    let _ = out.send(ServerMsg::Bye {
                        error: bye(
                            ErrorKind::InvalidArgument,
                            "too slow: a subscription fell behind again and again",
                        )
                        .0,
                    });
                    break;
                }
            }
            Finished::Subscription(id)
        });
        self.subscriptions.insert(id, task);
    }
}

/// The sessions a connection acts as, and one that has ended (see [`Conn::ended`]).
struct Acting<'a> {
    sessions: &'a HashSet<SessionId>,
    ended: Option<SessionId>,
}

impl Owns for Acting<'_> {
    fn owns(&self, session: SessionId) -> bool {
        self.ended == Some(session) || self.sessions.contains(&session)
    }
}

/// A subscription that falls behind more than `lag_strikes` times within this window is
/// hopeless, and its connection is closed.
const LAG_WINDOW: Duration = Duration::from_secs(60);

/// The connection's queue of events has gone away (the connection ends).
struct Closed;

/// How far one subscription of a connection is behind its client. It falls behind when
/// the connection's queue is full and an event has to be dropped; while it stays behind,
/// each further queue's worth of dropped events counts as falling behind again, so that
/// a client that stopped reading altogether is found hopeless as surely as one that
/// keeps catching up too late.
struct Behind {
    /// When it fell behind, within the last `LAG_WINDOW`.
    strikes: Vec<Instant>,
    limit: usize,
    queue: u64,
    /// Events dropped since the last one queued.
    missed: u64,
}

impl Behind {
    fn new(limit: usize, queue: usize) -> Self {
        Behind {
            strikes: Vec::new(),
            limit,
            queue: queue.max(1) as u64,
            missed: 0,
        }
    }

    /// It fell behind once more; is it hopeless now?
    fn strike(&mut self) -> bool {
        self.strikes.retain(|t| t.elapsed() < LAG_WINDOW);
        self.strikes.push(Instant::now());
        self.strikes.len() > self.limit
    }

    /// Queues `event` for the client of subscription `sub`, after a `lagged` marker for
    /// those dropped before it; drops it if there is no room. Hopeless?
    fn queue(
        &mut self,
        events: &mpsc::Sender<ServerMsg>,
        sub: u64,
        event: Event,
    ) -> Result<bool, Closed> {
        if self.missed > 0 {
            match events.try_reserve() {
                Ok(permit) => self.mark(permit, sub),
                Err(mpsc::error::TrySendError::Closed(())) => return Err(Closed),
                Err(mpsc::error::TrySendError::Full(())) => {}
            }
        }
        if self.missed == 0 {
            match events.try_send(ServerMsg::Event { sub, event }) {
                Ok(()) => return Ok(false),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
                Err(mpsc::error::TrySendError::Full(_)) => {}
            }
        }
        self.missed += 1;
        Ok((self.missed == 1 || self.missed % self.queue == 0) && self.strike())
    }

    /// Sends the `lagged` marker of the events dropped so far into the room `permit`
    /// holds; the subscription is caught up again.
    fn mark(&mut self, permit: mpsc::Permit<'_, ServerMsg>, sub: u64) {
        if let Some(event) = lagged(self.missed) {
            permit.send(ServerMsg::Event { sub, event });
        }
        self.missed = 0;
    }
}

/// The marker of `missed` events, as the engine's subscriptions give it.
fn lagged(missed: u64) -> Option<Event> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // The engine makes its markers itself; a server builds one from its wire form.
    serde_json::from_value(serde_json::json!({
        "seq": 0, "at": at, "kind": "lagged", "position": missed,
    }))
    .ok()
}

/// Writes the connection's messages, its own traffic first; ends at a `bye` (after
/// sending it and a close frame), when both queues end, or when the client stops reading.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut out: mpsc::UnboundedReceiver<ServerMsg>,
    mut events: mpsc::Receiver<ServerMsg>,
) {
    loop {
        let msg = tokio::select! {
            biased;
            Some(m) = out.recv() => m,
            Some(m) = events.recv() => m,
            else => break,
        };
        let close = match &msg {
            ServerMsg::Bye { error } => Some(CloseFrame {
                code: match error.kind {
                    ErrorKind::InvalidArgument => 1008,
                    _ => 1011,
                },
                reason: error.message.chars().take(120).collect::<String>().into(),
            }),
            _ => None,
        };
        let text = match serde_json::to_string(&msg) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "a server message could not be written");
                continue;
            }
        };
        let sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        if let Some(frame) = close {
            let _ =
                tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
            break;
        }
    }
}
