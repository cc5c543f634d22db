//! The OpenAPI 3 document of the HTTP API, generated from the routes' annotations and the
//! engine's own types, at `/v1/openapi.json`.

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::{http, sse, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "interlock",
        description = "A lock engine for lab and hardware-control software: \
        who may drive which instrument, session, device or folder. Send `Authorization: Bearer \
        <token>` when the server has tokens; act as a session with its secret in the \
        `Interlock-Session-Secret` header."
    ),
    paths(
        http::health,
        http::open_session,
        http::heartbeat,
        http::close_session,
        http::acquire,
        http::release,
        http::renew,
        http::force_release,
        http::locks,
        http::status,
        http::sessions,
        http::session,
        http::check,
        http::check_fence,
        http::history,
        sse::events,
        ws::upgrade,
        document,
        crate::metrics,
    ),
    // `Event`'s schema is written by hand in the engine and names `EventKind` without
    // collecting it: without this the document would refer to a schema it lacks.
    components(schemas(interlock::EventKind)),
    modifiers(&Common)
)]
struct Doc;

/// What every operation shares, written once rather than on each route: the bearer
/// token, the answers of the one status table that any route can give (401 without a
/// good token, 413 for a body over the limit, 503 when the server is closing or at a limit),
/// and a description for every answer (OpenAPI requires one).
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                complete(op);
                link(op);
            }
        }
    }
}

fn complete(op: &mut Operation) {
    let mut errors = vec!["400", "401", "503"];
    if op.request_body.is_some() {
        errors.push("413");
    }
    let responses = &mut op.responses.responses;
    for status in errors {
        responses.entry(status.to_string()).or_insert_with(|| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let mut r = Response::new("");
            r.content.insert("application/json".into(), RefOr::T(body));
            RefOr::T(r)
        });
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(r) = response {
            if r.description.is_empty() {
                r.description = describe(status).into();
            }
        }
    }
}

/// The links from a session to what acts as it, and from a lease to what takes its
/// token: they say how the answers feed the next requests (and let a generator of
/// requests, such as schemathesis, reach past "no such session").
fn link(op: &mut Operation) {
    let session = |to: &str, secret: bool| {
        let mut l = LinkBuilder::new()
            .operation_id(to)
            .parameter("path.id", "$response.body#/id");
        if secret {
            l = l.parameter(
                format!("header.{}", http::SECRET_HEADER),
                "$response.body#/secret",
            );
        }
        (to.to_string(), l.build())
    };
    let lease = |to: &str, body: Option<serde_json::Value>| {
        let l = LinkBuilder::new()
            .operation_id(to)
            .request_body(body)
            .parameter("path.resource", "$response.body#/leases/0/resource");
        (to.to_string(), l.build())
    };
    let token = serde_json::json!({
        "resource": "$response.body#/leases/0/resource",
        "token": "$response.body#/leases/0/token",
    });
    let (status, links) = match op.operation_id.as_deref() {
        Some("open_session") => (
            "201",
            vec![
                session("heartbeat", true),
                session("acquire", true),
                session("close_session", true),
                session("session", false),
            ],
        ),
        Some("acquire") => (
            "200",
            vec![
                lease("release", Some(token.clone())),
                lease("renew", Some(token)),
                lease("status", None),
                lease("force_release", None),
            ],
        ),
        _ => return,
    };
    if let Some(RefOr::T(r)) = op.responses.responses.get_mut(status) {
        for (name, l) in links {
            r.links.insert(name, RefOr::T(l));
        }
    }
}

/// The status table of `error.rs`, in words.
fn describe(status: &str) -> &'static str {
    match status {
        "101" => "switching to the WebSocket protocol",
        "200" => "done",
        "201" => "created",
        "400" => "bad input (the error says what); nothing was changed",
        "401" => "no token, or one the server does not know",
        "403" => "the token's role, or the session secret, does not allow this",
        "404" => "no such session (or route)",
        "409" => "timed out, deadlock, already held, or not the lease's token",
        "410" => "the lease was lost, or the session expired",
        "413" => "the body is over the server's limit",
        "503" => "the server is closing, or at its limit of requests or of waiting acquires",
        _ => "see the error body",
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json")))]
pub async fn document(caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Read)?;
    Ok(Json(Doc::openapi()))
}
