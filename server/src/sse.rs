//! `GET /v1/events`: the engine's events as Server-Sent Events. Each event's `id:` is its
//! seq, so a client that reconnects with `Last-Event-ID` (browsers do) resumes with no
//! gap, or gets a `lagged` event saying how many it missed.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use interlock::{EventKind, Subscription};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, Query};
use crate::{App, Seat};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this resource's events.
    resource: Option<String>,
    /// First the events after this seq that the engine still has (`Last-Event-ID` wins).
    since: Option<u64>,
}

/// Live events as Server-Sent Events (`id:` = seq; `event:` = kind; `data:` = the event).
#[utoipa::path(get, path = "/v1/events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream")))]
pub async fn events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    // A stream is a connection as long-lived as a WebSocket: it takes a seat of those.
    let seat = app.seat()?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let resources = q.resource.map(|r| vec![r]);
    // The engine answers a subscribe once it has written what it had to (a journal's
    // commit): this worker thread's other tasks move on meanwhile.
    let since = last_id.or(q.since);
    let sub = tokio::task::block_in_place(|| app.handle.subscribe(resources.as_deref(), since))?;
    let strikes = app.config.limits.lag_strikes;
    let stream = sse_stream(sub, strikes, seat, app.clone());
    Ok(axum::response::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The subscription as SSE events; it ends (the client is disconnected) when it falls
/// behind more than `strikes` times within a minute.
fn sse_stream(
    sub: Subscription,
    strikes: usize,
    seat: Seat,
    app: App,
) -> impl Stream<Item = Result<Sse, Infallible>> {
    stream::unfold(
        (sub, Vec::<Instant>::new(), seat),
        move |(sub, mut lags, seat)| {
            let stopped = app.stopped();
            async move {
                // A server that stops ends its streams (the browser reconnects by itself).
                let ev = tokio::select! {
                    ev = sub.next_async() => ev?,
                    _ = stopped => return None,
                };
                // Browsers wait 3 s to reconnect unless told otherwise.
                let sse = Sse::default()
                    .event(ev.kind.as_str())
                    .retry(Duration::from_secs(1));
                let sse = match (ev.kind, ev.position()) {
                    // Another history: the browser resumes from its start next time.
                    (EventKind::Lagged, None) => sse.id("0"),
                    (EventKind::Lagged, Some(_)) => {
                        lags.retain(|t| t.elapsed() < Duration::from_secs(60));
                        lags.push(Instant::now());
                        if lags.len() > strikes {
                            tracing::info!("too slow: an event stream fell behind again and again");
                            return None;
                        }
                        sse
                    }
                    _ => sse.id(ev.seq.to_string()),
                };
                let data = serde_json::to_string(&*ev).unwrap_or_default();
                Some((Ok(sse.data(data)), (sub, lags, seat)))
            }
        },
    )
}
