//! interlock-server: serves one interlock engine ([`interlock::Handle`]) to other
//! processes and PCs, over
//! - the HTTP API under `/v1` (JSON; long-poll acquire) with its OpenAPI document,
//! - Server-Sent Events at `/v1/events`,
//! - the WebSocket protocol of remote engines at `/v1/ws` (`docs/protocol.md`),
//! - Prometheus metrics at `/metrics`, and the dashboard at `/`.
//!
//! The server is a binding like the others: each route or message is one translation
//! into one engine call. Its own state is the handle, the routes of lease notices to
//! connections, and counters.

mod auth;
mod dashboard;
mod error;
mod http;
mod metrics;
mod notices;
mod openapi;
mod sse;
mod stall;
mod ws;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use interlock::{Error, Handle, Result};

pub use auth::{Role, Tokens};
pub use http::{DEFAULT_MAX_WAIT, SECRET_HEADER};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::notices::Notices;

/// How much one client may ask of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body: usize,
    /// Largest WebSocket message, in bytes.
    pub message: usize,
    /// Open WebSocket connections, and HTTP requests in flight.
    pub connections: usize,
    /// Sessions one WebSocket connection may act as.
    pub sessions_per_connection: usize,
    /// Acquires one WebSocket connection may have in flight.
    pub waits_per_connection: usize,
    /// Subscription events queued for one connection before its subscriptions fall
    /// behind (and get `lagged`).
    pub event_queue: usize,
    /// A subscription that falls behind more often than this within a minute is
    /// hopeless: its connection is closed.
    pub lag_strikes: usize,
    /// A connection that has not sent a whole request head within this time (from its
    /// start, or from the end of its last answer) is closed.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body: 1 << 20,
            message: interlock::wire::MAX_MESSAGE,
            connections: 10_000,
            sessions_per_connection: 1_000,
            waits_per_connection: 10_000,
            event_queue: 1024,
            lag_strikes: 3,
            header_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Every limit lets something through: a server that would refuse everything is
    /// refused at its start instead.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("body", self.body),
            ("message", self.message),
            ("connections", self.connections),
            ("sessions per connection", self.sessions_per_connection),
            ("waits per connection", self.waits_per_connection),
            ("event queue", self.event_queue),
            ("lag strikes", self.lag_strikes),
        ];
        if let Some((what, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(Error::InvalidArgument(format!(
                "the limit of {what} must be at least 1"
            )));
        }
        if self.header_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the header timeout must be more than zero".into(),
            ));
        }
        Ok(())
    }
}

/// A certificate chain and its private key, PEM files, for HTTPS and WSS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `HOST:PORT`; port 0 picks a free port.
    pub bind: String,
    /// No tokens: no authentication, and only a loopback address may be bound.
    pub tokens: Tokens,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    /// The longest an HTTP acquire waits, whatever its `timeout`.
    pub max_wait: Duration,
    /// The TTL of a session opened over the network without one.
    pub session_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:7411".into(),
            tokens: Tokens::default(),
            tls: None,
            limits: Limits::default(),
            max_wait: DEFAULT_MAX_WAIT,
            session_ttl: Duration::from_secs(15),
        }
    }
}

/// Open WebSocket connections, bounded.
struct Seats {
    taken: AtomicUsize,
    limit: usize,
}

/// One open connection; gives its seat back when dropped.
struct Seat(Arc<Shared>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.connections.taken.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connection(false);
    }
}

/// One HTTP request in flight; gives its place back when dropped.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Shared {
    handle: Handle,
    config: ServerConfig,
    notices: Notices,
    metrics: Arc<Metrics>,
    connections: Seats,
    /// HTTP requests in flight (long polls among them), bounded like the connections.
    requests: Seats,
    /// Long polls (acquires that may wait), at most half of `requests`: the other half
    /// stays for the short requests (a holder's heartbeat, its release), which waiting
    /// clients must not crowd out.
    long_polls: Seats,
    /// Turns true when the server stops: streams and connections end then, so that the
    /// answers in flight are all the graceful shutdown waits for.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// The state every route gets.
#[derive(Clone)]
struct App(Arc<Shared>);

impl std::ops::Deref for App {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// Comes once the server stops.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }
}

impl App {
    fn seat(&self) -> std::result::Result<Seat, ApiError> {
        self.connections.take("connections")?;
        self.metrics.connection(true);
        Ok(Seat(self.0.clone()))
    }

    fn place(&self) -> std::result::Result<Place<'_>, ApiError> {
        self.requests.take("requests in flight")?;
        Ok(Place(&self.requests.taken))
    }

    /// A place for an acquire that may wait (besides its place as a request).
    fn long_poll(&self) -> std::result::Result<Place<'_>, ApiError> {
        self.long_polls
            .take("acquires waiting (half its requests)")?;
        Ok(Place(&self.long_polls.taken))
    }
}

impl Seats {
    /// Takes one, or refuses: there are `what` already.
    fn take(&self, what: &str) -> std::result::Result<(), ApiError> {
        if self.taken.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Busy(format!(
                "the server has its {} {what} already",
                self.limit
            )));
        }
        Ok(())
    }
}

/// Every HTTP request holds a place while it is in flight. One over the limit is refused
/// at once with 503: waiting for a place could take as long as a long poll (minutes), and
/// the requests so queued would pile up without bound. (A layer of the router is cloned
/// for each route, so the count lives in the shared state, not in the layer.)
async fn in_flight(State(app): State<App>, req: Request, next: Next) -> Response {
    let place = match app.place() {
        Ok(place) => place,
        Err(e) => return e.into_response(),
    };
    let response = next.run(req).await;
    drop(place);
    response
}

/// The engine's and the server's counters, as Prometheus text.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn metrics(
    State(app): State<App>,
    caller: auth::Caller,
) -> std::result::Result<Response, ApiError> {
    caller.require(Role::Read)?;
    let text = app.metrics.render(&app.handle).await?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

/// Routes that serve a caller who has not logged in yet: the dashboard's page and files,
/// and its login.
const PUBLIC: [&str; 6] = [
    "/",
    "/assets/app.js",
    "/assets/app.css",
    "/v1/whoami",
    "/v1/login",
    "/v1/logout",
];

/// Every caller must authenticate (when the server has tokens), but for [`PUBLIC`].
async fn authenticated(caller: auth::Caller, req: Request, next: Next) -> Response {
    if caller.0.is_none() && !PUBLIC.contains(&req.uri().path()) {
        return ApiError::Unauthenticated.into_response();
    }
    next.run(req).await
}

/// A route that exists, asked with a method it does not take: 405 in the server's format
/// (axum's own answer has an empty body).
async fn wrong_method(req: Request) -> ApiError {
    ApiError::Http(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {}", req.uri().path(), req.method()),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::Engine(Error::NotFound(format!(
        "no route {} {}",
        req.method(),
        req.uri().path()
    )))
}

fn router(app: App) -> Router {
    let tokens = app.config.tokens.clone();
    let limits = app.config.limits.clone();
    let places = app.clone();
    Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::style))
        .route("/v1/whoami", get(dashboard::whoami))
        .route("/v1/login", post(dashboard::login))
        .route("/v1/logout", post(dashboard::logout))
        .route("/metrics", get(metrics))
        .route("/v1/health", get(http::health))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/sessions", post(http::open_session).get(http::sessions))
        .route(
            "/v1/sessions/{id}",
            get(http::session).delete(http::close_session),
        )
        .route("/v1/sessions/{id}/heartbeat", post(http::heartbeat))
        .route("/v1/sessions/{id}/acquire", post(http::acquire))
        .route("/v1/release", post(http::release))
        .route("/v1/renew", post(http::renew))
        .route("/v1/locks", get(http::locks))
        .route(
            "/v1/locks/{*resource}",
            get(http::status).post(http::force_release),
        )
        .route("/v1/check", get(http::check))
        .route("/v1/check-fence", get(http::check_fence))
        .route("/v1/history", get(http::history))
        .route("/v1/events", get(sse::events))
        .route("/v1/ws", get(ws::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(authenticated))
        .layer(middleware::from_fn_with_state(tokens, auth::authenticate))
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(middleware::from_fn_with_state(places, in_flight))
        .with_state(app)
}

/// A running server. Closing it (or dropping it) stops accepting, lets the answers in
/// flight finish (up to a few seconds), and drops its handle of the engine.
pub struct Server {
    url: String,
    addr: SocketAddr,
    app: App,
    shutdown: axum_server::Handle<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds and starts serving `handle` on threads of its own.
    pub fn start(handle: Handle, config: ServerConfig) -> Result<Server> {
        config.limits.validate()?;
        let addr = resolve(&config.bind)?;
        if config.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(Error::InvalidArgument(format!(
                "refusing to serve {addr} without tokens: anyone who can reach it could \
                 take every lock. Give a tokens file (interlock serve --tokens FILE, one \
                 \"ROLE TOKEN\" a line, roles read, client, admin; in Python \
                 eng.serve(addr, tokens={{token: role}})), or bind 127.0.0.1"
            )));
        }
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::InvalidArgument(format!("cannot bind {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let metrics = Arc::new(Metrics::new());
        let header_timeout = config.limits.header_timeout;
        let app = App(Arc::new(Shared {
            notices: Notices::default(),
            connections: Seats {
                taken: AtomicUsize::new(0),
                limit: config.limits.connections,
            },
            requests: Seats {
                taken: AtomicUsize::new(0),
                limit: config.limits.connections,
            },
            long_polls: Seats {
                taken: AtomicUsize::new(0),
                limit: (config.limits.connections / 2).max(1),
            },
            metrics,
            config,
            handle: handle.clone(),
            stopping: tokio::sync::watch::Sender::new(false),
        }));
        let shutdown = axum_server::Handle::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("interlock-server")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the server's runtime: {e}")))?;
        let notice_app = app.clone();
        let subscription = handle.subscribe_callback(None, None, move |ev| {
            notice_app.notices.on_event(&notice_app.metrics, ev)
        })?;
        let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server_shutdown = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("interlock-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Small messages both ways: without TCP_NODELAY, Nagle's algorithm and
                    // delayed acknowledgements hold each answer back for tens of ms.
                    let nodelay = axum_server::accept::NoDelayAcceptor::new();
                    let tcp = stall::Deadlines {
                        inner: nodelay,
                        first_byte: header_timeout,
                    };
                    let served = match axum_server::from_tcp(listener) {
                        Ok(mut s) => {
                            // A connection that has not sent a whole request head by then
                            // is closed, rather than held open for ever (hyper's own
                            // timeout, which axum-server turns off).
                            s.http_builder().http1().header_read_timeout(header_timeout);
                            match tls {
                                Some(tls) => {
                                    let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls);
                                    let s = s.acceptor(tls.acceptor(tcp));
                                    s.handle(server_shutdown).serve(service).await
                                }
                                None => {
                                    let s = s.acceptor(tcp);
                                    s.handle(server_shutdown).serve(service).await
                                }
                            }
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the server stopped");
                    }
                });
                drop(subscription);
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| Error::Internal(format!("cannot start the server's thread: {e}")))?;
        tracing::info!(url = %url, "serving");
        Ok(Server {
            url,
            addr,
            app,
            shutdown,
            thread: Some(thread),
        })
    }

    /// `http://HOST:PORT` (or `https://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server (see [`Server`]); closing twice is harmless.
    pub fn close(&mut self) {
        self.app.stopping.send_replace(true);
        self.shutdown
            .graceful_shutdown(Some(Duration::from_secs(3)));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until the server stops (it is closed from another thread or fails).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

fn resolve(bind: &str) -> Result<SocketAddr> {
    bind.to_socket_addrs()
        .map_err(|e| Error::InvalidArgument(format!("cannot resolve {bind:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::InvalidArgument(format!("{bind:?} names no address")))
}

fn tls_config(files: &TlsFiles) -> Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("TLS {what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("certificate", &files.cert, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("certificate", &files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad("key", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &files.cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}
