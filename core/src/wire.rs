//! The messages of the WebSocket protocol between a remote engine and an interlock
//! server (`/v1/ws`, JSON text frames; written up in `docs/protocol.md`). Both sides use
//! these types, so there is one definition of the protocol. Commands, replies, events
//! and errors inside them are the engine's own serde types.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::protocol::{AcquireRequest, Command, Grants, Reply, WireError};
use crate::types::{Secret, SessionId};

/// The protocol's version. A server answers a `hello` of another version with an error
/// and closes; a later version adds messages and fields, never changes their meaning.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message either side accepts, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A message from a client. `id`s are chosen by the client, unique among its requests
/// still in flight on the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The first message: the client's protocol version.
    Hello {
        version: u32,
    },
    /// A command; its answer comes as `reply` with the same id.
    Call {
        id: u64,
        cmd: Command,
    },
    /// A command whose answer the client does not want (a release). With `fence`, the
    /// fence of the lease a `release` ends: the client knows of that release, and the
    /// server does not send this connection its lease notice.
    Post {
        cmd: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence: Option<u64>,
    },
    /// Takes up a session by its secret: the connection may act as it from then on. The
    /// answer is a `reply` (the session's listing entry).
    Resume {
        id: u64,
        session: SessionId,
        secret: Secret,
    },
    /// An acquire. With `ack`, an `ack` says at once whether it waits; its outcome comes
    /// as `done`. It is withdrawn by `cancel` or when the connection ends.
    Acquire {
        id: u64,
        request: AcquireRequest,
        #[serde(default)]
        ack: bool,
    },
    /// Withdraws the acquire `of` if it still waits; answered by a `reply` to `id`.
    Cancel {
        id: u64,
        of: u64,
    },
    /// Asks the place of the acquire `of` in its queues; answered by a `reply` to `id`.
    Position {
        id: u64,
        of: u64,
    },
    /// Subscribes to events (of `resources` only, if given; first those after `since`,
    /// if given); answered by `subscribed`, then `event`s with `sub` = `id`.
    Subscribe {
        id: u64,
        #[serde(default)]
        resources: Option<Vec<String>>,
        #[serde(default)]
        since: Option<u64>,
    },
    Unsubscribe {
        sub: u64,
    },
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The answer to `hello`: the server's protocol version and software version, and
    /// whether its engine keeps a journal (then a client waits for its releases too).
    Welcome {
        version: u32,
        server: String,
        #[serde(default)]
        durable: bool,
        /// The server takes a `post`'s `fence` (and then does not tell the connection of
        /// that release): a client sends one only when this says so.
        #[serde(default)]
        quiet_releases: bool,
        /// The id of the engine's history (`Handle::engine_id`): a client that meets
        /// another id after a reconnect knows that its seqs count another history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine_id: Option<u64>,
    },
    Reply {
        id: u64,
        #[serde(flatten)]
        result: Outcome<Reply>,
    },
    /// Whether an acquire sent with `ack` waits (`position`), or was settled at once
    /// (`position` null: its `done` follows), or failed.
    Ack {
        id: u64,
        #[serde(flatten)]
        result: Outcome<Option<u64>>,
    },
    /// The outcome of an acquire.
    Done {
        id: u64,
        #[serde(flatten)]
        result: Outcome<Grants>,
    },
    /// A subscription is live; `head` is the seq of the newest event before it.
    Subscribed {
        id: u64,
        head: u64,
    },
    Event {
        sub: u64,
        event: Event,
    },
    /// A lease of a session this connection acts as has ended (released, expired,
    /// preempted, force-released): the event that says so.
    Lease {
        event: Event,
    },
    /// The server lost track of some lease events (it fell behind): the client should
    /// check the leases it holds.
    Resync,
    /// The server is about to close the connection, and why (bad input, too slow, the
    /// server shutting down).
    Bye {
        error: WireError,
    },
}

/// A result as the wire carries it: `{"ok": value}` or `{"err": error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Ok(T),
    Err(WireError),
}

impl<T> From<crate::Result<T>> for Outcome<T> {
    fn from(r: crate::Result<T>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(WireError::from(&e)),
        }
    }
}

impl<T> From<Outcome<T>> for crate::Result<T> {
    fn from(o: Outcome<T>) -> Self {
        match o {
            Outcome::Ok(v) => Ok(v),
            Outcome::Err(e) => Err(e.into()),
        }
    }
}

/// Whether a server message failed to decode because it is of a later protocol version
/// (an op or a value this client does not know: it may pass it over), rather than
/// because it is not JSON this client can read at all (broken, or nested too deep).
#[cfg(feature = "remote")]
pub(crate) fn of_a_later_version(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_crosses_the_wire_exactly() {
        // Found by the fuzzer (seeds/wire_decode/server-53.json): without serde_json's
        // exact float parsing, a time read back was one unit in the last place off.
        let text = r#"{"op":"reply","id":5,"ok":{"reply":"renewed","value":{"expires_at":1070000014.511111111111111}}}"#;
        let first: ServerMsg = serde_json::from_str(text).unwrap();
        let again: ServerMsg =
            serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    #[cfg(feature = "remote")]
    fn a_message_of_a_later_version_is_told_from_one_that_cannot_be_read() {
        let failure = |text: &str| serde_json::from_str::<ServerMsg>(text).unwrap_err();
        assert!(of_a_later_version(&failure(r#"{"op":"teleport","id":1}"#)));
        let deep = format!(
            r#"{{"op":"reply","id":1,"ok":{{"reply":"bool","value":{}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(!of_a_later_version(&failure(&deep)));
        assert!(!of_a_later_version(&failure(r#"{"op":"reply","id":1,"ok"#)));
    }

    #[test]
    fn messages_look_as_the_protocol_document_says() {
        let m = ServerMsg::Reply {
            id: 3,
            result: Outcome::Ok(Reply::Bool(true)),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"op":"reply","id":3,"ok":{"reply":"bool","value":true}}"#
        );
        assert_eq!(serde_json::from_str::<ServerMsg>(&text).unwrap(), m);
        let c: ClientMsg =
            serde_json::from_str(r#"{"op":"call","id":1,"cmd":{"op":"locks"}}"#).unwrap();
        assert_eq!(
            c,
            ClientMsg::Call {
                id: 1,
                cmd: Command::Locks
            }
        );
        assert!(serde_json::from_str::<ClientMsg>(r#"{"op":"call","id":1}"#).is_err());
        // A `post` may name the fence of the lease it releases; without one it is as
        // protocol 1 first had it, and it is written so.
        let token = "6f1e8f1c-2b1a-4c3d-9e8f-0a1b2c3d4e5f";
        let release = format!(r#"{{"op":"release","resource":"psu","token":"{token}"}}"#);
        for (text, fence) in [
            (
                format!(r#"{{"op":"post","cmd":{release},"fence":7}}"#),
                Some(7),
            ),
            (format!(r#"{{"op":"post","cmd":{release}}}"#), None),
        ] {
            let msg: ClientMsg = serde_json::from_str(&text).unwrap();
            assert!(matches!(msg, ClientMsg::Post { fence: f, .. } if f == fence));
            assert_eq!(serde_json::to_string(&msg).unwrap(), text);
        }
    }
}
