//! The HTTP API under `/v1` (for curl, MATLAB `webwrite`, LabVIEW, scripts): each route
//! is one translation into one engine command, authorized by the one table in `auth`.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use interlock::{
    AcquireOptions, AcquireRequest, Action, Command, Error, Event, Grant, Reply, ResourceStatus,
    Secret, SessionId, SessionInfo, SessionSpec, Token,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{authorize, redact, Caller, Owns, Role};
use crate::error::{ApiError, Body, ErrorBody, Path, Query};
use crate::App;

/// The header that carries a session's secret, to act as that session.
pub const SECRET_HEADER: &str = "interlock-session-secret";

type Answer<T> = Result<Json<T>, ApiError>;

/// Authorizes and runs one command, and shows its reply as the caller may see it.
pub(crate) async fn run(
    app: &App,
    role: Role,
    own: &impl Owns,
    cmd: Command,
) -> Result<Reply, ApiError> {
    authorize(role, own, &cmd)?;
    let started = Instant::now();
    let reply = app.handle.execute_async(cmd).await;
    app.metrics
        .command_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(redact(role, own, reply?))
}

fn unexpected(r: Reply) -> ApiError {
    ApiError::Engine(Error::Internal(format!("unexpected reply {r:?}")))
}

fn session_id(id: &str) -> Result<SessionId, ApiError> {
    Ok(id.parse()?)
}

/// The session a request acts as: the one its `Interlock-Session-Secret` proves. Proving
/// it counts as the session's activity.
async fn act_as(
    app: &App,
    caller: Caller,
    id: SessionId,
    headers: &HeaderMap,
) -> Result<(Role, Option<SessionId>), ApiError> {
    let role = caller.require(Role::Client)?;
    let secret = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::PermissionDenied(format!(
                "acting as session {id} needs its secret in the {SECRET_HEADER} header"
            ))
        })?;
    let secret: Secret = secret.parse()?;
    let own = Some(id);
    run(
        app,
        role,
        &own,
        Command::Resume {
            session: id,
            secret,
        },
    )
    .await?;
    Ok((role, own))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness and version.
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health), (status = 401, body = ErrorBody)))]
pub async fn health(caller: Caller) -> Answer<Health> {
    caller.require(Role::Read)?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// A session as `POST /v1/sessions` answers it: the only place its secret appears.
#[derive(Serialize, ToSchema)]
pub struct Opened {
    #[schema(value_type = String)]
    id: SessionId,
    #[schema(value_type = String)]
    secret: Secret,
    name: String,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    ttl: Option<f64>,
    expires_at: Option<f64>,
}

/// Opens a session. A session opened over the network always has a TTL (the server's
/// default if none is given): heartbeat it, or it expires.
#[utoipa::path(post, path = "/v1/sessions", request_body = SessionSpec,
    responses((status = 201, body = Opened), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn open_session(
    State(app): State<App>,
    caller: Caller,
    Body(mut spec): Body<SessionSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let role = caller.require(Role::Client)?;
    spec.ttl = Some(spec.ttl.unwrap_or(app.config.session_ttl));
    match run(&app, role, &None, Command::OpenSession(spec)).await? {
        Reply::Opened {
            session,
            secret,
            ttl,
        } => Ok((
            StatusCode::CREATED,
            Json(Opened {
                id: session.id,
                secret,
                name: session.name.to_string(),
                metadata: (*session.metadata).clone(),
                ttl: ttl.map(|t| t.as_secs_f64()),
                expires_at: session.expires_at,
            }),
        )),
        r => Err(unexpected(r)),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Expiry {
    expires_at: Option<f64>,
}

/// Records the session's activity (and revives it if stale); needs its secret.
#[utoipa::path(post, path = "/v1/sessions/{id}/heartbeat", params(("id" = String, Path, format = "uuid"), ("interlock-session-secret" = String, Header, format = "uuid")),
    responses((status = 200, body = Expiry), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn heartbeat(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Expiry> {
    let id = session_id(&id)?;
    let (role, own) = act_as(&app, caller, id, &headers).await?;
    match run(&app, role, &own, Command::Session { session: id }).await? {
        Reply::Session(s) => Ok(Json(Expiry {
            expires_at: s.expires_at,
        })),
        r => Err(unexpected(r)),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    released: usize,
}

/// Closes a session (releasing its leases); needs its secret, or an admin token.
#[utoipa::path(delete, path = "/v1/sessions/{id}", params(("id" = String, Path, format = "uuid"), ("interlock-session-secret" = Option<String>, Header, format = "uuid")),
    responses((status = 200, body = Released), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn close_session(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Released> {
    let id = session_id(&id)?;
    let (role, own) = match (caller.0, headers.contains_key(SECRET_HEADER)) {
        (Some(Role::Admin), false) => (Role::Admin, None),
        _ => act_as(&app, caller, id, &headers).await?,
    };
    match run(&app, role, &own, Command::CloseSession { session: id }).await? {
        Reply::Count(released) => Ok(Json(Released { released })),
        r => Err(unexpected(r)),
    }
}

/// An acquire's body: the resources, and the options of every acquire.
#[derive(Deserialize)]
pub struct AcquireBody {
    resources: Vec<String>,
    #[serde(flatten)]
    options: serde_json::Map<String, serde_json::Value>,
}

/// The body's schema is the options' own with `resources` added: the options are read
/// from the flattened map (serde cannot refuse unknown fields through a flatten), and
/// the document must show their fields rather than an open map.
impl utoipa::PartialSchema for AcquireBody {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, Object, Type};
        let mut body = match AcquireOptions::schema() {
            RefOr::T(Schema::Object(o)) => o,
            _ => Object::new(),
        };
        let names = ArrayBuilder::new()
            .items(Object::with_type(Type::String))
            .min_items(Some(1))
            .description(Some("the resources, granted all at once or none"));
        body.properties.insert("resources".into(), names.into());
        body.required.insert(0, "resources".into());
        body.description =
            Some("An acquire: its resources, and the options of every acquire.".into());
        RefOr::T(Schema::Object(body))
    }
}

impl ToSchema for AcquireBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <AcquireOptions as ToSchema>::schemas(schemas);
    }
}

#[derive(Serialize, ToSchema)]
pub struct Leases {
    leases: Vec<Grant>,
}

/// Acquires all of `resources` at once, or none; waits up to `timeout` seconds (a long
/// poll, capped at the server's `--max-wait`). A client that hangs up withdraws its wait.
#[utoipa::path(post, path = "/v1/sessions/{id}/acquire", request_body = AcquireBody,
    params(("id" = String, Path, format = "uuid"), ("interlock-session-secret" = String, Header, format = "uuid")),
    responses((status = 200, body = Leases), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn acquire(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<AcquireBody>,
) -> Answer<Leases> {
    let id = session_id(&id)?;
    let mut options: AcquireOptions = serde_json::from_value(body.options.into())
        .map_err(|e| Error::InvalidArgument(format!("acquire options: {e}")))?;
    let cap = app.config.max_wait;
    options.timeout = Some(options.timeout.map_or(cap, |t| t.min(cap)));
    let request = AcquireRequest {
        session: id,
        resources: body.resources.into(),
        options,
    };
    // Bad input changes nothing: not even the session's activity, which acting as it
    // (by its secret) counts. (Only a caller who may act as a session is told so.)
    caller.require(Role::Client)?;
    request.validate()?;
    let (role, own) = act_as(&app, caller, id, &headers).await?;
    authorize(role, &own, &Command::Acquire(request.clone()))?;
    let _polling = match request.options.timeout {
        Some(t) if t.is_zero() => None,
        _ => Some(app.long_poll()?),
    };
    let names: Vec<&str> = request.resources.iter().map(String::as_str).collect();
    let ticket = app.handle.request(id, &names, &request.options)?;
    // Dropped with this future when the client hangs up (or the server stops, which
    // ends the wait as closing an engine does): the wait is withdrawn.
    let leases = tokio::select! {
        leases = ticket.wait_async() => leases?,
        () = app.stopped() => {
            return Err(Error::EngineClosed.into());
        }
    };
    Ok(Json(Leases {
        leases: leases.iter().map(|l| l.grant().clone()).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    resource: String,
    #[schema(value_type = String, format = "uuid")]
    token: Token,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    resource: String,
    #[schema(value_type = String, format = "uuid")]
    token: Token,
    /// Seconds from now (the lease's own TTL if absent).
    #[serde(default)]
    ttl: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct Done {
    released: bool,
}

/// Releases a lease by its token.
#[utoipa::path(post, path = "/v1/release", request_body = TokenBody,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn release(
    State(app): State<App>,
    caller: Caller,
    Body(b): Body<TokenBody>,
) -> Answer<Done> {
    let role = caller.require(Role::Client)?;
    let cmd = Command::Release {
        resource: b.resource.into(),
        token: b.token,
    };
    run(&app, role, &None, cmd).await?;
    Ok(Json(Done { released: true }))
}

/// Extends a lease by its token.
#[utoipa::path(post, path = "/v1/renew", request_body = RenewBody,
    responses((status = 200, body = Expiry), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn renew(
    State(app): State<App>,
    caller: Caller,
    Body(b): Body<RenewBody>,
) -> Answer<Expiry> {
    let role = caller.require(Role::Client)?;
    let ttl = b
        .ttl
        .map(|t| interlock::ttl_from_secs("ttl", t))
        .transpose()?
        .flatten();
    let cmd = Command::Renew {
        resource: b.resource,
        token: b.token,
        ttl,
    };
    match run(&app, role, &None, cmd).await? {
        Reply::Renewed { expires_at } => Ok(Json(Expiry { expires_at })),
        r => Err(unexpected(r)),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
    /// Only the lease that carries this fence (none if it is no longer current).
    #[serde(default)]
    fence: Option<u64>,
}

/// Releases every holder of a resource (admin); each holder learns it lost its lease.
#[utoipa::path(post, path = "/v1/locks/{resource}/force-release", request_body = Option<ReasonBody>,
    params(("resource" = String, Path, description = "percent-encoded; a `/` inside works encoded or not")),
    responses((status = 200, body = Released), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn force_release(
    State(app): State<App>,
    caller: Caller,
    uri: Uri,
    Body(b): Body<Option<ReasonBody>>,
) -> Answer<Released> {
    let role = caller.require(Role::Read)?;
    let resource = force_release_target(uri.path())?;
    let (reason, fence) = b.map_or((None, None), |b| (b.reason, b.fence));
    let cmd = Command::ForceRelease {
        resource,
        reason,
        fence,
    };
    match run(&app, role, &None, cmd).await? {
        Reply::Count(released) => Ok(Json(Released { released })),
        r => Err(unexpected(r)),
    }
}

/// The resource of `POST /v1/locks/{resource}/force-release`. The suffix is found in the
/// path as sent, before percent-decoding: `x%2Fforce-release` names the resource
/// `x/force-release`, never a force release of `x`.
fn force_release_target(path: &str) -> Result<String, Error> {
    let raw = path
        .strip_prefix("/v1/locks/")
        .and_then(|p| p.strip_suffix("/force-release"))
        .ok_or_else(|| Error::NotFound(format!("no route POST {path}")))?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(String::from)
        .map_err(|_| {
            Error::InvalidArgument(
                "the resource in the path is not UTF-8 once percent-decoded".into(),
            )
        })
}

/// Every held resource, by name, with its holders and queue.
#[utoipa::path(get, path = "/v1/locks", responses((status = 200, body = Vec<ResourceStatus>), (status = 401, body = ErrorBody)))]
pub async fn locks(State(app): State<App>, caller: Caller) -> Answer<Vec<ResourceStatus>> {
    match run(&app, caller.require(Role::Read)?, &None, Command::Locks).await? {
        Reply::Locks(l) => Ok(Json(l)),
        r => Err(unexpected(r)),
    }
}

/// One resource's holders and queue (an unknown one is not locked).
#[utoipa::path(get, path = "/v1/locks/{resource}",
    params(("resource" = String, Path, description = "percent-encoded; a `/` inside works encoded or not")),
    responses((status = 200, body = ResourceStatus), (status = 400, body = ErrorBody)))]
pub async fn status(
    State(app): State<App>,
    caller: Caller,
    Path(resource): Path<String>,
) -> Answer<ResourceStatus> {
    match run(
        &app,
        caller.require(Role::Read)?,
        &None,
        Command::Status { resource },
    )
    .await?
    {
        Reply::Status(s) => Ok(Json(s)),
        r => Err(unexpected(r)),
    }
}

/// Every open session, oldest first (never a secret; metadata for admins only).
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = Vec<SessionInfo>)))]
pub async fn sessions(State(app): State<App>, caller: Caller) -> Answer<Vec<SessionInfo>> {
    match run(&app, caller.require(Role::Read)?, &None, Command::Sessions).await? {
        Reply::Sessions(s) => Ok(Json(s)),
        r => Err(unexpected(r)),
    }
}

/// One open session.
#[utoipa::path(get, path = "/v1/sessions/{id}", params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = SessionInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn session(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<SessionInfo> {
    let cmd = Command::Session {
        session: session_id(&id)?,
    };
    match run(&app, caller.require(Role::Read)?, &None, cmd).await? {
        Reply::Session(s) => Ok(Json(s)),
        r => Err(unexpected(r)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    resource: String,
    #[param(format = "uuid")]
    session_id: String,
    /// `control` (the default: holds it exclusively) or `observe` (holds it at all).
    #[param(value_type = Option<String>)]
    action: Option<Action>,
}

#[derive(Serialize, ToSchema)]
pub struct Allowed {
    allowed: bool,
}

/// May the session act on the resource?
#[utoipa::path(get, path = "/v1/check", params(CheckQuery), responses((status = 200, body = Allowed), (status = 400, body = ErrorBody)))]
pub async fn check(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<CheckQuery>,
) -> Answer<Allowed> {
    let cmd = Command::Check {
        resource: q.resource,
        session: session_id(&q.session_id)?,
        action: q.action.unwrap_or(Action::Control),
    };
    match run(&app, caller.require(Role::Read)?, &None, cmd).await? {
        Reply::Bool(allowed) => Ok(Json(Allowed { allowed })),
        r => Err(unexpected(r)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FenceQuery {
    resource: String,
    fence: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Current {
    current: bool,
}

/// Does a current lease on the resource carry this fence? (For device drivers.)
#[utoipa::path(get, path = "/v1/check-fence", params(FenceQuery), responses((status = 200, body = Current), (status = 400, body = ErrorBody)))]
pub async fn check_fence(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<FenceQuery>,
) -> Answer<Current> {
    let cmd = Command::CheckFence {
        resource: q.resource,
        fence: q.fence,
    };
    match run(&app, caller.require(Role::Read)?, &None, cmd).await? {
        Reply::Bool(current) => Ok(Json(Current { current })),
        r => Err(unexpected(r)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    resource: Option<String>,
    #[param(format = "uuid")]
    session_id: Option<String>,
    limit: Option<usize>,
}

/// Recorded events, oldest first: of a resource, of a session, or of the engine.
#[utoipa::path(get, path = "/v1/history", params(HistoryQuery), responses((status = 200, body = Vec<Event>), (status = 400, body = ErrorBody)))]
pub async fn history(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<HistoryQuery>,
) -> Answer<Vec<std::sync::Arc<Event>>> {
    let cmd = Command::History {
        resource: q.resource,
        session: q.session_id.as_deref().map(session_id).transpose()?,
        limit: q.limit,
    };
    match run(&app, caller.require(Role::Read)?, &None, cmd).await? {
        Reply::History(h) => Ok(Json(h)),
        r => Err(unexpected(r)),
    }
}

/// The longest any HTTP wait may last, whatever its `timeout` says.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
