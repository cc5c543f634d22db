//! Decodes arbitrary bytes as each of the JSON messages that cross the wire: the
//! WebSocket protocol's `ClientMsg` and `ServerMsg` (`docs/protocol.md`), and the
//! engine's `Command`, `Reply` and `Event` inside them (also what the journal stores).
//! Decoding must never panic, whatever the bytes; a value that decodes must encode, and
//! decode again to an equal value (what one side sends, the other reads as it was meant).
//!
//! Seeds: `seeds/wire_decode/`, valid messages of every kind (the commands, replies and
//! events of a short run of `State`, serialized, and the protocol messages that carry
//! them); dictionary: `wire_decode.dict` (the protocol's field and variant names).
//! `run.sh` passes both.

#![no_main]

use std::fmt::Debug;

use interlock::wire::{ClientMsg, ServerMsg};
use interlock::{Command, Event, Reply};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientMsg>("ClientMsg", data);
    round_trip::<ServerMsg>("ServerMsg", data);
    round_trip::<Command>("Command", data);
    round_trip::<Reply>("Reply", data);
    round_trip::<Event>("Event", data);
});

/// If `data` decodes as a `T`, it must encode, and the encoding decode to the same value.
fn round_trip<T>(what: &str, data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(first) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = match serde_json::to_vec(&first) {
        Ok(text) => text,
        Err(e) => panic!("{what}: {first:?} decodes but does not encode: {e}"),
    };
    let shown = String::from_utf8_lossy(&text);
    match serde_json::from_slice::<T>(&text) {
        Ok(again) if again == first => {}
        Ok(again) => panic!(
            "{what}: decoded, encoded and decoded again, it differs:\n  first: {first:?}\n  \
             again: {again:?}\n  encoded: {shown}"
        ),
        Err(e) => panic!("{what}: {first:?} encodes as {shown}, which does not decode: {e}"),
    }
}
