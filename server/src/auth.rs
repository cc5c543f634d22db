//! Who may do what: bearer tokens with roles, compared in constant time; the layer that
//! finds a request's role; and the one table of which role and which session a command
//! needs, shared by the HTTP routes and the WebSocket protocol.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use interlock::{Command, Error, Reply, ResourceStatus, SessionId, SessionInfo};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a caller may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, listings, history, events, the dashboard.
    Read,
    /// Read, plus its own sessions and leases.
    Client,
    /// Client, plus force release, closing any session, every session's metadata.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> interlock::Result<Self> {
        match s {
            "read" => Ok(Role::Read),
            "client" => Ok(Role::Client),
            "admin" => Ok(Role::Admin),
            // Not quoted: a token given where its role belongs would be shown.
            _ => Err(Error::InvalidArgument(
                "unknown role (expected read, client or admin; what was given is not \
                 shown, in case it is a token)"
                    .into(),
            )),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }
}

/// A bearer token as the server keeps it: only its hash, so that comparing takes the same
/// time whatever the length or content of what a client sent. Printed as `***`.
#[derive(Clone)]
struct TokenHash([u8; 32]);

impl TokenHash {
    fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The tokens a server accepts. Empty: no authentication (then the server binds only
/// loopback, and every caller is an admin).
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<Vec<(TokenHash, Role)>>);

impl Tokens {
    /// Tokens from `(token, role)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, Role)>) -> interlock::Result<Self> {
        let mut out = Vec::new();
        for (token, role) in pairs {
            if token.len() < 16 || token.chars().any(char::is_whitespace) {
                return Err(Error::InvalidArgument(
                    "a token must be at least 16 characters without spaces".into(),
                ));
            }
            out.push((TokenHash::of(token), role));
        }
        Ok(Tokens(Arc::new(out)))
    }

    /// Reads a tokens file: one `ROLE TOKEN` a line; blank lines and `#` comments are
    /// skipped. Errors name the line, never the token.
    pub fn from_file(path: &Path) -> interlock::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidArgument(format!("cannot read tokens file {}: {e}", path.display()))
        })?;
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                Error::InvalidArgument(format!(
                    "{} line {}: expected \"ROLE TOKEN\" (role read, client or admin)",
                    path.display(),
                    n + 1
                ))
            };
            let (role, token) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let role: Role = role.parse().map_err(|_| bad())?;
            pairs.push((token.trim(), role));
        }
        Tokens::new(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role of `token`, looked at in constant time per configured token.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.entry_of(&TokenHash::of(token)).map(|(_, role)| role)
    }

    fn entry_of(&self, given: &TokenHash) -> Option<(&TokenHash, Role)> {
        let mut found = None;
        for (hash, role) in self.0.iter() {
            if bool::from(hash.0.ct_eq(&given.0)) {
                found = Some((hash, *role));
            }
        }
        found
    }

    /// The dashboard's cookie for a token that logs in: `ROLE.EXPIRES.ID.MAC`, where ID
    /// names the token by its hash's first bytes and MAC is keyed by the token's hash,
    /// which only the server knows. The token itself is not in it, and it outlives a
    /// restart of the server (not a change of the tokens file). `None` for a bad token.
    pub fn cookie_for(&self, token: &str, now: u64) -> Option<(String, Role)> {
        let (hash, role) = self.entry_of(&TokenHash::of(token))?;
        let expires = now + COOKIE_LIFETIME;
        let body = format!("{}.{expires}.{}", role.as_str(), hex(&hash.0[..8]));
        Some((format!("{body}.{}", cookie_mac(hash, &body)), role))
    }

    /// The role a dashboard cookie carries, if it is one of this server's and current.
    pub fn role_of_cookie(&self, cookie: &str, now: u64) -> Option<Role> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (role, expires, id) = (parts.next()?, parts.next()?, parts.next()?);
        let role: Role = role.parse().ok()?;
        if parts.next().is_some() || expires.parse::<u64>().ok()? < now {
            return None;
        }
        let mut found = None;
        for (hash, r) in self.0.iter() {
            let ours = hex(&hash.0[..8]) == id && *r == role;
            if ours && bool::from(cookie_mac(hash, body).as_bytes().ct_eq(mac.as_bytes())) {
                found = Some(role);
            }
        }
        found
    }
}

/// How long a dashboard login lasts, in seconds.
const COOKIE_LIFETIME: u64 = 7 * 24 * 3600;

/// The name of the dashboard's cookie.
pub const COOKIE: &str = "interlock";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie_mac(key: &TokenHash, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"interlock dashboard cookie\0");
    h.update(key.0);
    h.update(body.as_bytes());
    hex(&h.finalize()[..16])
}

/// The role of the caller of a request, found by [`authenticate`]. `None`: it gave no
/// token, or one the server does not know.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Option<Role>);

impl Caller {
    /// `PermissionDenied` (403) unless the caller has at least `role`; 401 if it gave no
    /// good token at all.
    pub fn require(self, role: Role) -> Result<Role, ApiError> {
        match self.0 {
            None => Err(ApiError::Unauthenticated),
            Some(r) if r >= role => Ok(r),
            Some(r) => Err(ApiError::Engine(Error::PermissionDenied(format!(
                "this needs the {} role; the token has {}",
                role.as_str(),
                r.as_str()
            )))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller(None)))
    }
}

/// The token a request carries in `Authorization: Bearer <token>` (never in the URL; the
/// scheme's name in any case, as HTTP has it).
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let (scheme, token) = value.to_str().ok()?.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The dashboard's cookie, if the request carries it.
pub fn cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a server without tokens refuses a request that a web page could have made: every
/// caller of such a server is an admin, and a browser on the same machine reaches its
/// loopback address from any page it shows. A page of another site names itself in
/// `Origin` (a form's POST, a fetch, a WebSocket); a page that rebinds its own name to
/// 127.0.0.1 sends that name in `Host`. Programs (curl, the clients) send neither so.
fn from_a_web_page(parts: &Parts) -> Option<String> {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header(axum::http::header::HOST));
    if let Some(host) = host.filter(|h| !is_loopback_name(h)) {
        return Some(format!(
            "this server has no tokens, so it answers only requests addressed to a loopback \
             name (127.0.0.1, [::1], localhost), not to {host:?}"
        ));
    }
    let origin = header(axum::http::header::ORIGIN)?;
    let own = origin
        .split_once("://")
        .is_some_and(|(_, o)| host.is_some_and(|h| o.eq_ignore_ascii_case(h)));
    (!own).then(|| {
        format!(
            "this server has no tokens, so it answers no page of another origin ({origin:?}); \
             give it tokens (--tokens) to serve one"
        )
    })
}

/// A name of this machine's loopback (`localhost` and the names Debian's `/etc/hosts`
/// gives it), or a loopback address (IPv4 in IPv6 too), with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    [
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The layer that finds each request's role: from its bearer token, else from the
/// dashboard's cookie (no tokens configured: admin, unless a web page sent it).
pub async fn authenticate(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if tokens.is_empty() {
        if let Some(why) = from_a_web_page(&parts) {
            return ApiError::Engine(Error::PermissionDenied(why)).into_response();
        }
    }
    let caller = match tokens.is_empty() {
        true => Caller(Some(Role::Admin)),
        false => Caller(match bearer(&parts) {
            Some(t) => tokens.role_of(t),
            None => cookie(&parts).and_then(|c| tokens.role_of_cookie(c, unix_now())),
        }),
    };
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The sessions a caller acts as (a WebSocket connection's, or the one whose secret an
/// HTTP request gave).
pub trait Owns {
    fn owns(&self, session: SessionId) -> bool;
}

impl Owns for HashSet<SessionId> {
    fn owns(&self, session: SessionId) -> bool {
        self.contains(&session)
    }
}

impl Owns for Option<SessionId> {
    fn owns(&self, session: SessionId) -> bool {
        *self == Some(session)
    }
}

/// May a caller with `role`, acting as `own`, send `cmd`? The one table of the protocol.
pub fn authorize(role: Role, own: &impl Owns, cmd: &Command) -> Result<(), ApiError> {
    let caller = Caller(Some(role));
    let act_as = |session: SessionId| match own.owns(session) {
        true => caller.require(Role::Client).map(drop),
        false => Err(ApiError::Engine(Error::PermissionDenied(format!(
            "not acting as session {session}: open or resume it first"
        )))),
    };
    match cmd {
        Command::Status { .. }
        | Command::Locks
        | Command::Sessions
        | Command::Session { .. }
        | Command::Check { .. }
        | Command::CheckFence { .. }
        | Command::History { .. }
        | Command::Replay { .. } => caller.require(Role::Read).map(drop),
        Command::OpenSession(_)
        | Command::Resume { .. }
        | Command::Release { .. }
        | Command::Renew { .. } => caller.require(Role::Client).map(drop),
        Command::Heartbeat { session } => act_as(*session),
        Command::Acquire(req) => act_as(req.session),
        Command::CloseSession { session } => match role {
            Role::Admin => Ok(()),
            _ => act_as(*session),
        },
        Command::ForceRelease { .. } => caller.require(Role::Admin).map(drop),
        Command::Cancel { .. } | Command::Position { .. } | Command::Close | Command::Tick => {
            Err(ApiError::Engine(Error::PermissionDenied(
                "this command is not served over the network".into(),
            )))
        }
    }
}

/// What a caller may see of a reply: only an admin sees the metadata of sessions it does
/// not act as.
pub fn redact(role: Role, own: &impl Owns, reply: Reply) -> Reply {
    if role == Role::Admin {
        return reply;
    }
    let hidden = || Arc::new(serde_json::Value::Object(Default::default()));
    let session = |mut s: SessionInfo| {
        if !own.owns(s.id) {
            s.metadata = hidden();
        }
        s
    };
    let status = |mut st: ResourceStatus| {
        for h in &mut st.holders {
            if !own.owns(h.session_id) {
                h.metadata = hidden();
            }
        }
        st
    };
    match reply {
        Reply::Session(s) => Reply::Session(session(s)),
        Reply::Sessions(list) => Reply::Sessions(list.into_iter().map(session).collect()),
        Reply::Status(st) => Reply::Status(status(st)),
        Reply::Locks(list) => Reply::Locks(list.into_iter().map(status).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_gives_roles_and_its_errors_name_the_line_not_the_token() {
        let dir = std::env::temp_dir().join(format!("interlock-tokens-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# lab\nadmin a-very-long-admin-token\n\nread read-only-token-123456\n",
        )
        .unwrap();
        let t = Tokens::from_file(&dir).unwrap();
        assert_eq!(t.role_of("a-very-long-admin-token"), Some(Role::Admin));
        assert_eq!(t.role_of("read-only-token-123456"), Some(Role::Read));
        assert_eq!(t.role_of("read-only-token-12345"), None);
        let (cookie, role) = t.cookie_for("read-only-token-123456", 1000).unwrap();
        assert_eq!(role, Role::Read);
        assert!(!cookie.contains("read-only-token"), "{cookie}");
        assert_eq!(t.role_of_cookie(&cookie, 2000), Some(Role::Read));
        assert_eq!(
            t.role_of_cookie(&cookie, 1000 + COOKIE_LIFETIME + 1),
            None,
            "expired"
        );
        let forged = cookie.replacen("read", "admin", 1);
        assert_eq!(
            t.role_of_cookie(&forged, 2000),
            None,
            "a role cannot be raised"
        );
        assert!(t.cookie_for("not-a-token-at-all-x", 1000).is_none());
        std::fs::write(&dir, "writer secret-token-of-someone\n").unwrap();
        let e = Tokens::from_file(&dir).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("secret-token"), "{e}");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn loopback_names_are_told_from_others() {
        for host in [
            "127.0.0.1:7411",
            "127.3.4.5",
            "[::1]:80",
            "[::1]",
            "[::ffff:127.0.0.1]:7411",
            "LocalHost:1",
            "localhost",
            "localhost.:7411",
            "localhost.localdomain:7411",
            "ip6-localhost",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "evil.example:7411",
            "10.0.0.1:7411",
            "[fe80::1]:7411",
            "localhost.evil:1",
            "",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }

    #[test]
    fn a_role_that_is_not_one_is_not_quoted() {
        let e = "SuperSecretToken-1234567890"
            .parse::<Role>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown role") && !e.contains("SuperSecret"),
            "{e}"
        );
    }
}
