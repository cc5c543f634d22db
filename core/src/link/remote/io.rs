//! The connection of a remote link: connecting (TLS, bearer token), the handshake,
//! reading and writing, resuming after a reconnect, and the clock that heartbeats
//! sessions and gives up the leases of one whose TTL ran out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::Connector;

use super::{due, to_resume, Call, CallKind, ConnectOptions, LinkState, Shared, Unwatched};
use crate::error::{Error, ErrorKind, LostReason, Result};
use crate::protocol::{Command, Reply};
use crate::reply;
use crate::types::{LeaseState, SessionId};
use crate::wire::{ClientMsg, ServerMsg, MAX_MESSAGE, PROTOCOL_VERSION};

/// Where and how to connect.
pub(super) struct Target {
    request: Request<()>,
    connector: Option<Connector>,
    url: String,
}

impl Target {
    pub(super) fn parse(url: &str, options: &ConnectOptions) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::invalid(format!("{url:?} is not a URL (http://HOST:PORT)")))?;
        let (ws, tls) = match scheme {
            "http" | "ws" => ("ws", false),
            "https" | "wss" => ("wss", true),
            _ => {
                return Err(Error::invalid(format!(
                    "{url:?}: an interlock server's URL starts with http:// or https://"
                )))
            }
        };
        let mut request = format!("{ws}://{rest}/v1/ws")
            .into_client_request()
            .map_err(|e| Error::invalid(format!("{url:?} is not a usable URL: {e}")))?;
        if let Some(token) = &options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::invalid("the token has characters a header cannot carry"))?;
            request.headers_mut().insert("authorization", value);
        }
        let connector = match tls {
            true => Some(Connector::Rustls(Arc::new(tls_config(options)?))),
            false => None,
        };
        Ok(Target {
            request,
            connector,
            url: url.to_string(),
        })
    }
}

fn tls_config(options: &ConnectOptions) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca_file {
        let bad =
            |e: &dyn std::fmt::Display| Error::invalid(format!("CA file {}: {e}", path.display()));
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// How long a closed link waits for its connection to end with a close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The link's thread: connects, and reconnects whenever the connection drops, until the
/// link closes. The first connection's outcome goes to `first`.
pub(super) fn run(shared: Arc<Shared>, target: Target, first: std::sync::mpsc::Sender<Result<()>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = first.send(Err(Error::Internal(format!("no runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let mut closing = shared.closing.subscribe();
        let connections = connections(&shared, &target, first);
        tokio::pin!(connections);
        tokio::select! {
            _ = closing.wait_for(|closed| *closed) => {
                // Closed: the connection ends by itself, with a close frame, so that the
                // server sees a client that left rather than a broken connection (a
                // stuck one is not waited for long).
                let _ = tokio::time::timeout(CLOSE_WAIT, &mut connections).await;
            }
            _ = clock(&shared) => {}
            _ = &mut connections => {}
        }
    });
}

/// Connects again and again, with backoff.
async fn connections(
    shared: &Arc<Shared>,
    target: &Target,
    first: std::sync::mpsc::Sender<Result<()>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(50);
    // A link closed while it is not connected has no connection to end: it stops at once.
    let mut closing = shared.closing.subscribe();
    loop {
        // Each attempt, not only the first: a server that takes the connection and then
        // says nothing (a hung process, a route that drops everything) is tried again.
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(shared.options.connect_timeout, connect(target)) => {
                attempt.unwrap_or_else(|_| {
                    Err(Error::ConnectionLost(format!("{}: no answer in time", target.url)))
                })
            }
            _ = closing.wait_for(|closed| *closed) => return,
        };
        let ended = match attempt {
            Ok(ws) => {
                backoff = Duration::from_millis(50);
                connection(shared, ws, &mut first).await
            }
            Err(e) => e,
        };
        if let Some(first) = first.take() {
            let _ = first.send(Err(ended));
            return;
        }
        {
            let mut st = shared.lock();
            st.down = ended.to_string();
            let err = Error::ConnectionLost(st.down.clone());
            st.fail_in_flight(&err);
            if st.closed {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = closing.wait_for(|closed| *closed) => return,
        }
        backoff = (backoff * 2).min(shared.options.max_backoff);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(target: &Target) -> Result<Ws> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(4 * MAX_MESSAGE))
        .max_frame_size(Some(4 * MAX_MESSAGE));
    let connected = tokio_tungstenite::connect_async_tls_with_config(
        target.request.clone(),
        Some(config),
        true,
        target.connector.clone(),
    )
    .await;
    match connected {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let text = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            Err(match status.as_u16() {
                401 | 403 => Error::PermissionDenied(format!("{}: {status} {text}", target.url)),
                _ => Error::ConnectionLost(format!("{}: {status} {text}", target.url)),
            })
        }
        Err(e) => Err(Error::ConnectionLost(format!(
            "cannot reach {}: {e}",
            target.url
        ))),
    }
}

fn text(msg: &ClientMsg) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

/// One connection, from the handshake until it ends; returns why it ended.
async fn connection(
    shared: &Arc<Shared>,
    ws: Ws,
    first: &mut Option<std::sync::mpsc::Sender<Result<()>>>,
) -> Error {
    let (mut sink, mut stream) = ws.split();
    let lost = |what: String| Error::ConnectionLost(what);
    if sink
        .send(text(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
        }))
        .await
        .is_err()
    {
        return lost("the server closed the connection".into());
    }
    let welcome = tokio::time::timeout(shared.options.connect_timeout, stream.next());
    match welcome.await.unwrap_or(None) {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
            Ok(ServerMsg::Welcome {
                durable,
                quiet_releases,
                engine_id,
                ..
            }) => {
                shared
                    .durable
                    .store(durable, std::sync::atomic::Ordering::Relaxed);
                let mut st = shared.lock();
                st.quiet = quiet_releases;
                st.welcomed(&shared.jobs, engine_id);
            }
            Ok(ServerMsg::Bye { error }) => return error.into(),
            _ => {
                return lost(format!(
                    "the server did not speak protocol {PROTOCOL_VERSION}"
                ))
            }
        },
        _ => return lost("the server closed the connection, or did not greet it in time".into()),
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<ClientMsg>();
    let idle = shared.options.idle_timeout;
    let ping_every = idle / 3;
    let ping = tokio::sync::Notify::new();
    let mut closing = shared.closing.subscribe();
    let writer = async {
        // Made once, polled by each turn: it comes when the link closes.
        let closed = closing.wait_for(|closed| *closed);
        tokio::pin!(closed);
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = &mut closed => None,
                () = ping.notified() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            // What callers queued while the last write went out leaves in one write (a
            // release and the next acquire, say): one system call, and the server reads
            // both at once.
            let mut batch = sink.feed(text(&msg)).await;
            while batch.is_ok() {
                let Ok(msg) = rx.try_recv() else { break };
                batch = sink.feed(text(&msg)).await;
            }
            if batch.is_err() || sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    let reader = async {
        let mut why = lost("the server closed the connection".into());
        // Quiet for a third of `idle`: a ping (the server's pong, or anything else it
        // sends, ends the quiet). Quiet for all of it: the connection is dead.
        let mut quiet = Duration::ZERO;
        loop {
            let frame = match tokio::time::timeout(ping_every, stream.next()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    quiet += ping_every;
                    if quiet >= idle {
                        why = lost(format!("the server sent nothing for {idle:?}"));
                        break;
                    }
                    ping.notify_one();
                    continue;
                }
            };
            quiet = Duration::ZERO;
            match frame {
                Ok(Message::Text(t)) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                    Ok(ServerMsg::Bye { error }) => why = error.into(),
                    Ok(msg) => receive(shared, &tx, msg),
                    // A message of a later protocol version: not for this client.
                    Err(e) if crate::wire::of_a_later_version(&e) => {}
                    // Not JSON this client can read: what it answers is lost with it, so
                    // the connection is given up rather than a caller left waiting.
                    Err(e) => {
                        why = lost(format!("the server sent a message it cannot read: {e}"));
                        break;
                    }
                },
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    why = lost(format!("the connection broke: {e}"));
                    break;
                }
            }
        }
        why
    };
    let resumed = async {
        match resume(shared, &tx).await {
            Ok(()) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
            }
            // The connection ended during the resume; the reader says why.
            Err(_) => std::future::pending::<()>().await,
        }
        std::future::pending::<Error>().await
    };
    tokio::select! {
        why = reader => why,
        why = resumed => why,
        _ = writer => lost("the connection broke".into()),
    }
}

/// Sends an internal call on a connection that is not yet open to callers, and waits for
/// its answer.
async fn internal(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<ClientMsg>,
    kind: CallKind,
    make: impl FnOnce(u64) -> ClientMsg,
) -> Result<Reply> {
    let (reply_tx, reply_rx) = reply::channel(Duration::ZERO);
    {
        let mut st = shared.lock();
        let id = st.fresh_id();
        st.calls.insert(
            id,
            Call {
                reply: Some(reply_tx),
                kind,
            },
        );
        tx.send(make(id))
            .map_err(|_| Error::ConnectionLost("the connection broke".into()))?;
    }
    reply_rx
        .await
        .map_err(|_| Error::ConnectionLost("the connection broke".into()))?
}

/// After a (re)connect, before callers may use the connection: take up every session by
/// its secret, release what was given up, check the leases it still holds, and resume
/// every subscription after the last event it got.
async fn resume(shared: &Shared, tx: &mpsc::UnboundedSender<ClientMsg>) -> Result<()> {
    let sessions = to_resume(&shared.lock());
    for (session, secret, closing) in sessions {
        let sent = Instant::now();
        let msg = |id| ClientMsg::Resume {
            id,
            session,
            secret,
        };
        match internal(shared, tx, CallKind::Plain, msg).await {
            Ok(_) => {
                if let Some(s) = shared.lock().sessions.get_mut(&session) {
                    s.acked = sent;
                    s.sent = sent;
                    s.lapsed = false;
                }
                if closing {
                    let cmd = Command::CloseSession { session };
                    let close = |id| ClientMsg::Call { id, cmd };
                    match internal(shared, tx, CallKind::Close { session }, close).await {
                        Err(e) if e.kind() == ErrorKind::ConnectionLost => return Err(e),
                        // Closed now, or gone already: no longer this link's.
                        _ => drop(shared.lock().sessions.remove(&session)),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionLost => return Err(e),
            Err(_) => {
                let mut st = shared.lock();
                st.sessions.remove(&session);
                let jobs = shared.jobs.clone();
                st.lose_session(&jobs, session, LostReason::SessionExpired);
            }
        }
    }
    shared.lock().post_unwatched(tx, None);
    check_leases(shared, tx).await?;
    let mut st = shared.lock();
    let subs: Vec<(u64, Option<Vec<String>>, Option<u64>)> = st
        .subs
        .iter()
        .map(|(id, s)| (*id, s.resources.clone(), s.last))
        .collect();
    for (sub, resources, last) in subs {
        let wire_id = st.fresh_id();
        st.wire_subs.insert(wire_id, sub);
        if let Some(s) = st.subs.get_mut(&sub) {
            s.wire_id = wire_id;
        }
        let _ = tx.send(ClientMsg::Subscribe {
            id: wire_id,
            resources,
            since: last,
        });
    }
    st.post_let_go(tx);
    st.conn = Some(tx.clone());
    st.down.clear();
    Ok(())
}

/// Asks the server about every lease this link still holds: one that ended while the
/// link could not hear of it turns lost, with the reason its history gives.
async fn check_leases(shared: &Shared, tx: &mpsc::UnboundedSender<ClientMsg>) -> Result<()> {
    let held: Vec<(u64, std::sync::Arc<str>)> = shared
        .lock()
        .leases
        .iter()
        .map(|(f, w)| (*f, w.resource.clone()))
        .collect();
    for (fence, resource) in held {
        let cmd = Command::CheckFence {
            resource: resource.to_string(),
            fence,
        };
        if let Reply::Bool(true) = internal(shared, tx, CallKind::Plain, |id| ClientMsg::Call {
            id,
            cmd,
        })
        .await?
        {
            // Still held there. If its holder let go here, the release went down with the
            // last connection: it is sent again.
            let mut st = shared.lock();
            let let_go = st
                .leases
                .get(&fence)
                .and_then(|w| w.let_go.then(|| (w.resource.clone(), w.token)));
            if let Some((resource, token)) = let_go {
                st.post_release(Some(tx), resource, token, fence)?;
            }
            continue;
        }
        let cmd = Command::History {
            resource: Some(resource.to_string()),
            session: None,
            limit: None,
        };
        let end = match internal(shared, tx, CallKind::Plain, |id| ClientMsg::Call {
            id,
            cmd,
        })
        .await?
        {
            Reply::History(events) => events
                .iter()
                .filter_map(|e| e.lease_end())
                .find(|(f, _)| *f == fence)
                .map(|(_, end)| end),
            _ => None,
        };
        let mut st = shared.lock();
        let jobs = shared.jobs.clone();
        st.end_lease(
            &jobs,
            fence,
            end.unwrap_or(LeaseState::Lost(LostReason::Expired)),
        );
    }
    Ok(())
}

/// Handles one message of the server.
fn receive(shared: &Arc<Shared>, tx: &mpsc::UnboundedSender<ClientMsg>, msg: ServerMsg) {
    let jobs = &shared.jobs;
    let mut st = shared.lock();
    if let ServerMsg::Reply { id, .. }
    | ServerMsg::Ack { id, .. }
    | ServerMsg::Done { id, .. }
    | ServerMsg::Subscribed { id, .. } = &msg
    {
        st.confirm(*id);
    }
    match msg {
        ServerMsg::Welcome { .. } | ServerMsg::Bye { .. } => {}
        ServerMsg::Reply { id, result } => {
            let Some(call) = st.calls.remove(&id) else {
                return;
            };
            let result = answered(&mut st, shared, call.kind, result.into());
            if let Some(reply) = call.reply {
                let _ = reply.send(result);
            }
        }
        ServerMsg::Ack { id, result } => {
            let result: Result<Option<u64>> = result.into();
            let failed = result.is_err();
            if let Some(a) = st.acquires.get_mut(&id) {
                if let Some(ack) = a.ack.take() {
                    let _ = ack.send(result);
                }
            }
            if failed {
                st.acquires.remove(&id);
            }
        }
        ServerMsg::Done { id, result } => {
            let Some(a) = st.acquires.remove(&id) else {
                return;
            };
            let result: Result<crate::protocol::Grants> = result.into();
            if result.is_ok() {
                st.active(a.session, a.sent);
            }
            let outcome = result.map(|grants| st.hold(grants, &a.on_lost, a.sent));
            if let Err(Ok(held)) = a.done.send(outcome) {
                // The caller went away before its grant came: nobody holds it.
                for h in held {
                    let g = h.grant;
                    st.leases.remove(&g.fence);
                    let lease = Unwatched {
                        resource: g.resource.clone(),
                        token: g.token,
                        session: g.session_id,
                    };
                    st.to_release.insert(g.fence, lease);
                    let _ = st.post_release(Some(tx), g.resource, g.token, g.fence);
                }
            }
        }
        ServerMsg::Subscribed { id, head } => {
            let Some(&sub) = st.wire_subs.get(&id) else {
                return;
            };
            if let Some(s) = st.subs.get_mut(&sub) {
                // Only a live-only subscription starts at the head; one that resumes
                // (or asked for a replay) goes on from what it delivered, whatever head
                // this connection reports. A head below that is another history's (the
                // server replays all of it): its seqs count from the start again.
                match s.last {
                    Some(last) if head < last => s.last = Some(0),
                    Some(_) => {}
                    None => s.last = Some(head),
                }
                if let Some(started) = s.started.take() {
                    let _ = started.send(Ok(head));
                }
            }
        }
        ServerMsg::Event { sub, event } => {
            let Some(&id) = st.wire_subs.get(&sub) else {
                return;
            };
            let Some(s) = st.subs.get_mut(&id) else {
                return;
            };
            if s.queue.is_closed() {
                st.subs.remove(&id);
                st.wire_subs.remove(&sub);
                let _ = tx.send(ClientMsg::Unsubscribe { sub });
                return;
            }
            // A subscription's seqs increase, except after a `since` of another history
            // (a lagged marker without a count): the last event is where it goes on from.
            if event.kind != crate::event::EventKind::Lagged {
                s.last = Some(event.seq);
            }
            s.queue.push(Arc::new(event));
            jobs.schedule(&s.queue);
        }
        ServerMsg::Lease { event } => st.lease_event(jobs, &event),
        ServerMsg::Resync => {
            let (shared, tx) = (shared.clone(), tx.clone());
            drop(st);
            tokio::spawn(async move {
                let _ = check_leases(&shared, &tx).await;
            });
        }
    }
}

/// What the answer to a call means to the link's own records.
fn answered(
    st: &mut LinkState,
    shared: &Shared,
    kind: CallKind,
    result: Result<Reply>,
) -> Result<Reply> {
    match (kind, &result) {
        (
            CallKind::Adopt { sent, beat },
            Ok(Reply::Opened {
                session,
                secret,
                ttl,
            }),
        ) => {
            let ttl = ttl.unwrap_or(shared.options.session_ttl);
            st.adopt(session.id, *secret, ttl, sent, beat);
        }
        (CallKind::Resume { secret, sent }, Ok(Reply::Session(info))) => {
            // Its TTL runs from the resume, which counts as its activity.
            let ttl = info
                .expires_at
                .and_then(|at| Duration::try_from_secs_f64(at - info.last_seen).ok())
                .filter(|ttl| !ttl.is_zero())
                .unwrap_or(shared.options.session_ttl);
            st.adopt(info.id, secret, ttl, sent, shared.options.keepalive);
        }
        (CallKind::Heartbeat { session, sent }, Ok(_)) => {
            if let Some(s) = st.sessions.get_mut(&session) {
                s.acked = s.acked.max(sent);
                if s.lapsed {
                    // Its leases were given up here while the server kept the session:
                    // release them there too.
                    s.lapsed = false;
                    if let Some(tx) = st.conn.clone() {
                        st.post_unwatched(&tx, Some(session));
                    }
                }
            }
        }
        (CallKind::Heartbeat { session, .. }, Err(e))
            if matches!(e.kind(), ErrorKind::SessionExpired | ErrorKind::NotFound) =>
        {
            forget_session(st, shared, session);
        }
        (CallKind::Close { session }, Ok(_)) => {
            st.sessions.remove(&session);
        }
        (CallKind::Renew { token, ttl, sent }, Ok(_)) => {
            st.renewed(token, ttl, sent)?;
        }
        _ => {}
    }
    result
}

fn forget_session(st: &mut LinkState, shared: &Shared, session: SessionId) {
    st.sessions.remove(&session);
    // The server ended its leases with it.
    st.to_release.retain(|_, u| u.session != session);
    let jobs = shared.jobs.clone();
    st.lose_session(&jobs, session, LostReason::SessionExpired);
}

/// The link's clock: sends the heartbeats that are due, and gives up the leases of
/// sessions whose TTL ran out without an acknowledged heartbeat.
async fn clock(shared: &Arc<Shared>) {
    loop {
        let tick = {
            let mut st = shared.lock();
            let jobs = shared.jobs.clone();
            let beats = due(&mut st, &jobs, Instant::now());
            if st.conn.is_some() {
                for session in beats {
                    let id = st.fresh_id();
                    let kind = CallKind::Heartbeat {
                        session,
                        sent: Instant::now(),
                    };
                    st.calls.insert(id, Call { reply: None, kind });
                    let _ = st.send(ClientMsg::Call {
                        id,
                        cmd: Command::Heartbeat { session },
                    });
                }
            }
            super::next_tick(&st, Instant::now())
        };
        tokio::time::sleep(tick).await;
    }
}
