//! Plain data types shared by the state machine, the links, the wire and the bindings:
//! names, modes, ids, secrets, listings, and the checks of what a client sends.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_LEN: usize = 1024;
/// Longest session name, in bytes.
pub const MAX_SESSION_NAME_LEN: usize = 256;
/// Largest session metadata, as compact JSON, in bytes.
pub const MAX_METADATA_LEN: usize = 64 * 1024;
/// Most levels of nesting in session metadata: every answer that carries it (a listing
/// nests it some levels deeper) stays within what a JSON reader takes (serde_json's 128).
pub const MAX_METADATA_DEPTH: usize = 64;
/// Priority of a request that does not say (0 is most important, 255 least).
pub const DEFAULT_PRIORITY: u8 = 100;

/// How a lease holds its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Conflicts with everything.
    Exclusive,
    /// Compatible with other shared holders (alias `observer`).
    #[serde(alias = "observer")]
    Shared,
}

/// The schema lists the alias too, which a request may use (an answer never does): the
/// derived one would leave it out.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Mode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["exclusive", "shared", "observer"]))
            .description(Some(
                "`exclusive` conflicts with everything; `shared` (alias `observer`, accepted \
                 in requests; answers say `shared`) is compatible with `shared`.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Mode {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Mode")
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }

    pub fn compatible(self, other: Mode) -> bool {
        self == Mode::Shared && other == Mode::Shared
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exclusive" => Ok(Mode::Exclusive),
            "shared" | "observer" => Ok(Mode::Shared),
            _ => Err(Error::invalid(format!(
                "unknown mode {s:?} (expected \"exclusive\", \"shared\" or \"observer\")"
            ))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `check` asks about a session and a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    /// True iff the session holds the resource exclusively.
    Control,
    /// True iff the session holds the resource in any mode.
    Observe,
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "control" => Ok(Action::Control),
            "observe" => Ok(Action::Observe),
            _ => Err(Error::invalid(format!(
                "unknown action {s:?} (expected \"control\" or \"observe\")"
            ))),
        }
    }
}

/// What happens to a session whose TTL runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OnExpire {
    /// The session ends and its leases are released.
    #[default]
    Release,
    /// The session turns stale; its leases stay held until broken or revived.
    Keep,
}

impl FromStr for OnExpire {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "release" => Ok(OnExpire::Release),
            "keep" => Ok(OnExpire::Keep),
            _ => Err(Error::invalid(format!(
                "unknown on_expire {s:?} (expected \"release\" or \"keep\")"
            ))),
        }
    }
}

/// A session's public id: a UUIDv4, shown as its hyphenated string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub(crate) fn from_random(bytes: [u8; 16]) -> Self {
        SessionId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(SessionId)
            .map_err(|_| Error::invalid(format!("{s:?} is not a session id")))
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret that proves who may act: a 122-bit random value written as a UUIDv4 string.
/// It is shown only through [`Token::expose`] (and to its owner on the wire); its `Debug`
/// and `Display` print `***`, so that it never reaches a log by accident.
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, $malformed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub(crate) fn from_random(bytes: [u8; 16]) -> Self {
                $name(uuid::Builder::from_random_bytes(bytes).into_uuid())
            }

            /// The secret itself, for its owner to keep and hand back.
            pub fn expose(&self) -> String {
                self.0.hyphenated().to_string()
            }

            /// The one-way form that the engine keeps where it must not keep the secret
            /// (the journal, and leases restored from it).
            pub fn hash(&self) -> SecretHash {
                SecretHash::of(self.0.as_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(***)", stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                uuid::Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| $malformed)
            }
        }

        /// Serialized as the secret itself: only ever sent to its owner.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

secret_type!(
    /// A lease's secret token: it releases and renews the lease. Never shown in status,
    /// listings, events or history.
    Token,
    // A malformed token is not current either: every binding says so alike.
    Error::InvalidToken("a token that is not a UUID string".into())
);

secret_type!(
    /// A session's secret, returned once when the session opens: it lets a client resume
    /// the session (after a reconnect or a restart) and act as it over the network.
    Secret,
    Error::PermissionDenied("a session secret that is not a UUID string".into())
);

/// The first 16 bytes of a secret's SHA-256: enough to check a 122-bit random secret,
/// useless for finding it. Compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct SecretHash([u8; 16]);

impl SecretHash {
    fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        SecretHash(out)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Result<Self> {
        let bad = || Error::invalid("a secret hash is 32 hexadecimal digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(SecretHash(out))
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl std::hash::Hash for SecretHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

/// One holder of a resource, as `status` shows it (no token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HolderInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_name: Arc<str>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Arc<serde_json::Value>,
    pub mode: Mode,
    pub fence: u64,
    pub priority: u8,
    pub acquired_at: f64,
    pub expires_at: Option<f64>,
    /// Seconds left before the lease expires, if it has a TTL.
    pub remaining: Option<f64>,
    /// True while the holder's session is stale.
    pub stale: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub reason: Option<Arc<str>>,
}

/// One waiter on a resource, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaiterInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_name: Arc<str>,
    pub mode: Mode,
    pub priority: u8,
    /// 1-based place in this resource's queue.
    pub position: u64,
    pub queued_at: f64,
}

/// A resource's holders and queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceStatus {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub resource: Arc<str>,
    pub locked: bool,
    pub mode: Option<Mode>,
    pub holders: Vec<HolderInfo>,
    pub waiters: Vec<WaiterInfo>,
}

/// A session, as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Arc<str>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Arc<serde_json::Value>,
    pub created_at: f64,
    pub last_seen: f64,
    pub expires_at: Option<f64>,
    pub stale: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub leases: Vec<Arc<str>>,
}

/// Checks a resource name: non-empty UTF-8, at most [`MAX_RESOURCE_LEN`] bytes, no NUL.
pub fn validate_resource(name: &str) -> Result<()> {
    validate_name("resource name", name, MAX_RESOURCE_LEN)
}

/// Checks a session name: non-empty, at most [`MAX_SESSION_NAME_LEN`] bytes, no NUL.
pub fn validate_session_name(name: &str) -> Result<()> {
    validate_name("session name", name, MAX_SESSION_NAME_LEN)
}

fn validate_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if name.len() > max {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long (at most {max})",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(Error::invalid(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Checks session metadata: a JSON object of at most [`MAX_METADATA_LEN`] bytes and
/// [`MAX_METADATA_DEPTH`] levels.
pub fn validate_metadata(metadata: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    if !metadata.is_object() {
        return Err(Error::invalid("metadata must be a JSON object"));
    }
    // Each array or object, with how many levels of them it is in (itself included).
    let mut open = vec![(metadata, 1)];
    while let Some((value, depth)) = open.pop() {
        let inside: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        if depth > MAX_METADATA_DEPTH {
            return Err(Error::invalid(format!(
                "metadata is nested more than {MAX_METADATA_DEPTH} levels deep"
            )));
        }
        open.extend(inside.map(|v| (v, depth + 1)));
    }
    let len = serde_json::to_vec(metadata)
        .map_err(|e| Error::invalid(format!("metadata: {e}")))?
        .len();
    if len > MAX_METADATA_LEN {
        return Err(Error::invalid(format!(
            "metadata is {len} bytes of JSON (at most {MAX_METADATA_LEN})"
        )));
    }
    Ok(())
}

/// Turns seconds from a binding (float) into a duration: NaN and negative numbers are
/// errors, infinity means "no limit" (`None`). The one conversion every binding uses.
pub fn duration_from_secs(what: &str, secs: f64) -> Result<Option<Duration>> {
    if secs.is_nan() || secs < 0.0 {
        return Err(Error::invalid(format!(
            "{what} must be a non-negative number of seconds, not {secs}"
        )));
    }
    if secs.is_infinite() {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{what}: {e}")))
}

/// Like [`duration_from_secs`] for a TTL, which must also be more than zero.
pub fn ttl_from_secs(what: &str, secs: f64) -> Result<Option<Duration>> {
    match duration_from_secs(what, secs)? {
        Some(d) if d.is_zero() => Err(Error::invalid(format!("{what} must be more than zero"))),
        d => Ok(d),
    }
}

/// Serde of an optional duration as seconds (a float; `null` for none), as the wire and
/// the bindings count time. A negative or non-finite number is refused.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(secs) => {
                super::duration_from_secs("a duration", secs).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// Where a lease stands, as its holder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held,
    Released,
    Lost(crate::error::LostReason),
    /// The engine closed while it was held.
    Closed,
}
