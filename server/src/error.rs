//! How an error becomes an HTTP answer: one status table for every route, and the one
//! body `{"error": {"kind", "message"}}`. A client's bad request is never a 5xx.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use interlock::{Error, ErrorKind, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Everything a route can answer instead of its result.
#[derive(Debug)]
pub enum ApiError {
    /// The engine refused (or the request was bad input for it).
    Engine(Error),
    /// No token, or one the server does not know.
    Unauthenticated,
    /// The body is larger than the server accepts.
    TooLarge(String),
    /// The server is at its limit of connections.
    Busy(String),
    /// A request the HTTP layer itself refused (a wrong method, an upgrade without its
    /// headers), with the status it gave.
    Http(StatusCode, String),
}

impl ApiError {
    /// The engine error a WebSocket client is told.
    pub fn into_engine(self) -> Error {
        match self {
            ApiError::Engine(e) => e,
            ApiError::Unauthenticated => Error::PermissionDenied("no token".into()),
            ApiError::TooLarge(m) => Error::InvalidArgument(m),
            ApiError::Busy(m) => Error::ConnectionLost(m),
            ApiError::Http(_, m) => Error::InvalidArgument(m),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Engine(e)
    }
}

/// The error body, as the OpenAPI document describes it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: WireError,
}

/// The status of an engine error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::LockTimeout
        | ErrorKind::Deadlock
        | ErrorKind::AlreadyHeld
        | ErrorKind::InvalidToken
        | ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::LockLost | ErrorKind::SessionExpired => StatusCode::GONE,
        ErrorKind::EngineClosed | ErrorKind::ConnectionLost => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            ApiError::Engine(e) => (status_of(e.kind()), WireError::from(&e)),
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                WireError {
                    kind: ErrorKind::PermissionDenied,
                    message: "a token this server knows is needed: send \"Authorization: \
                              Bearer <token>\""
                        .into(),
                    detail: None,
                    reason: None,
                },
            ),
            ApiError::TooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                WireError {
                    kind: ErrorKind::InvalidArgument,
                    message,
                    detail: None,
                    reason: None,
                },
            ),
            // Not the caller's fault and not for good: the kind a client retries on.
            ApiError::Busy(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                WireError {
                    kind: ErrorKind::ConnectionLost,
                    message,
                    detail: None,
                    reason: None,
                },
            ),
            ApiError::Http(status, message) => (
                status,
                WireError {
                    kind: ErrorKind::InvalidArgument,
                    message,
                    detail: None,
                    reason: None,
                },
            ),
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(kind = ?error.kind, message = %error.message, "internal error");
        }
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Engine(Error::InvalidArgument(message.into()))
}

/// A JSON body, read whatever its content type says (curl users often send none); an
/// empty body reads as `null`. A body that is not JSON, or not of the expected shape, is
/// 400; one over the size limit, 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(e.body_text()),
                _ => invalid(e.body_text()),
            })?;
        let text: &[u8] = match bytes.is_empty() {
            true => b"null",
            false => &bytes,
        };
        serde_json::from_slice(text)
            .map(Body)
            .map_err(|e| invalid(format!("the body is not the JSON this route takes: {e}")))
    }
}

/// A query string, with rejections answered as 400 in the server's format.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| invalid(e.body_text()))
    }
}

/// A path parameter, percent-decoded, with rejections (not UTF-8 once decoded) answered
/// as 400 in the server's format rather than axum's plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| invalid(e.body_text()))
    }
}

/// Any other rejection of the HTTP layer, with its status, in the server's format.
pub fn rejected(e: impl IntoResponse + std::fmt::Display) -> ApiError {
    let message = e.to_string();
    ApiError::Http(e.into_response().status(), message)
}
