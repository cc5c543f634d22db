//! The dashboard: one page at `/` whose files are built into the server (a lab network
//! has no internet: nothing is loaded from elsewhere), and its login. A token entered
//! once becomes an HttpOnly, SameSite=Strict cookie that the server issues (see
//! `Tokens::cookie_for`); the token is never put in a URL or in the page's storage.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{unix_now, Caller, COOKIE};
use crate::error::{ApiError, Body};
use crate::App;

/// What the page may do: only its own files, only its own server. Whatever a user
/// controls (names, metadata, reasons) is shown as text; this policy is the second
/// line of defence if a bug ever put it into HTML.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub async fn page() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    )
}

pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("../assets/app.css"))
}

#[derive(Serialize)]
pub struct Whoami {
    /// The caller's role, or null if it must log in.
    role: Option<&'static str>,
    /// Whether the server has tokens (then a login is needed).
    tokens: bool,
}

/// Who the page's caller is.
pub async fn whoami(State(app): State<App>, caller: Caller) -> Json<Whoami> {
    Json(Whoami {
        role: caller.0.map(|r| r.as_str()),
        tokens: !app.config.tokens.is_empty(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

fn set_cookie(app: &App, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = match app.config.tls {
        Some(_) => "; Secure",
        None => "",
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| ApiError::Engine(interlock::Error::Internal(e.to_string())))
}

/// Logs in with a token: answers the role and sets the cookie.
pub async fn login(State(app): State<App>, Body(login): Body<Login>) -> Result<Response, ApiError> {
    let (value, role) = app
        .config
        .tokens
        .cookie_for(&login.token, unix_now())
        .ok_or(ApiError::Unauthenticated)?;
    let mut r = Json(serde_json::json!({ "role": role.as_str() })).into_response();
    r.headers_mut()
        .insert(SET_COOKIE, set_cookie(&app, &value, 7 * 24 * 3600)?);
    Ok(r)
}

/// Logs out: the cookie is dropped.
pub async fn logout(State(app): State<App>) -> Result<Response, ApiError> {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(SET_COOKIE, set_cookie(&app, "", 0)?);
    Ok(r)
}
