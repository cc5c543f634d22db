//! The wire decoder and the server's message handling under random input (a proptest
//! now; a cargo-fuzz target of the decoder is to follow in core/fuzz): random bytes,
//! random JSON values and random messages shaped like the protocol's must never panic,
//! neither in `serde_json::from_slice::<ClientMsg>` nor anywhere in a server (its
//! connection tasks, its engine's actor) that gets them over a real WebSocket. Whatever
//! it is sent, a server answers it or says `bye`, and keeps serving.
//!
//! Deterministic: a fixed seed, and no failure file.

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interlock::wire::{ClientMsg, ServerMsg};
use interlock::{Config, Handle};
use interlock_server::{Server, ServerConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, RngAlgorithm, RngSeed, TestRng, TestRunner};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Panics anywhere in this process (tokio catches those of tasks: only a hook sees them).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn runner(cases: u32) -> TestRunner {
    let config = RunConfig {
        cases,
        failure_persistence: None,
        ..RunConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The session a case acts as; a message may name it, or something else.
const SESSION: &str = "$session";

/// Values of the kinds the protocol's fields take, the awkward ones often.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!(SESSION)),
        2 => prop_oneof![Just(""), Just("r"), Just("a/b"), Just("nul\0here")].prop_map(Value::from),
        1 => Just(Value::from("x".repeat(1025))),
        2 => prop_oneof![
            Just(json!(0)), Just(json!(-1)), Just(json!(0.001)), Just(json!(1e300)),
            Just(json!(1.8e19)), Just(json!(u64::MAX)), Just(json!(255)), Just(json!(256)),
            Just(json!(f64::MAX)), Just(json!(5e-324)),
        ],
        2 => prop_oneof![Just("exclusive"), Just("shared"), Just("observer"), Just("control"),
            Just("observe"), Just("release"), Just("keep")].prop_map(Value::from),
        1 => Just(json!("00000000-0000-0000-0000-000000000000")),
        3 => any_json(),
    ]
}

fn object(keys: &'static [&'static str]) -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::vec((prop::sample::select(keys), field()), 0..keys.len() + 2)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

const COMMANDS: &[&str] = &[
    "open_session",
    "resume",
    "close_session",
    "session",
    "heartbeat",
    "acquire",
    "cancel",
    "position",
    "release",
    "renew",
    "force_release",
    "status",
    "locks",
    "sessions",
    "check",
    "check_fence",
    "history",
    "replay",
    "close",
    "tick",
    "no_such_command",
];

const COMMAND_FIELDS: &[&str] = &[
    "name",
    "metadata",
    "ttl",
    "on_expire",
    "session",
    "secret",
    "resources",
    "options",
    "wait",
    "resource",
    "token",
    "reason",
    "action",
    "fence",
    "limit",
    "since",
    "extra",
];

const OPTION_FIELDS: &[&str] = &[
    "mode",
    "timeout",
    "ttl",
    "priority",
    "preempt",
    "reason",
    "break_stale",
    "on_lost",
];

fn command() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(COMMANDS),
        object(COMMAND_FIELDS),
        object(OPTION_FIELDS),
    )
        .prop_map(|(op, mut fields, options)| {
            fields.insert("op".into(), op.into());
            if op == "acquire" && !fields.contains_key("options") {
                fields.insert("options".into(), Value::Object(options));
            }
            Value::Object(fields)
        })
}

const OPS: &[&str] = &[
    "hello",
    "call",
    "post",
    "resume",
    "acquire",
    "cancel",
    "position",
    "subscribe",
    "unsubscribe",
    "welcome",
    "bye",
    "",
];

/// A message shaped like the protocol's, right or wrong in every field.
fn wild_message() -> impl Strategy<Value = Value> {
    let request = (field(), prop::collection::vec(field(), 0..4), object(OPTION_FIELDS))
        .prop_map(|(session, resources, options)| {
            json!({"session": session, "resources": resources, "options": options})
        });
    (
        prop::sample::select(OPS),
        prop_oneof![Just(json!(7)), Just(json!(0)), any_json()],
        command(),
        request,
        object(&[
            "of",
            "sub",
            "version",
            "ack",
            "secret",
            "session",
            "resources",
            "since",
        ]),
    )
        .prop_map(|(op, id, cmd, request, mut fields)| {
            fields.insert("op".into(), op.into());
            fields.insert("id".into(), id);
            match op {
                "call" | "post" => {
                    fields.insert("cmd".into(), cmd);
                }
                "acquire" => {
                    fields.insert("request".into(), request);
                }
                _ => {}
            }
            Value::Object(fields)
        })
}

fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(&["r", "psu", "a/b", "scope"][..]).prop_map(Value::from),
        1 => "[a-z/ ]{0,12}".prop_map(Value::from),
        1 => Just(Value::from("")),
        1 => Just(Value::from("x".repeat(1025))),
        1 => Just(Value::from("nul\0here")),
    ]
}

fn secs() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        Value::Null,
        json!(0),
        json!(0.001),
        json!(0.05),
        json!(1.0),
        json!(30.0),
        json!(-1.0),
        json!(1e300),
        json!(1.8e19),
        json!(5e-324),
        json!(f64::MAX),
    ])
}

fn uuid() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => Just(json!(SESSION)),
        1 => Just(json!("00000000-0000-0000-0000-000000000000")),
        1 => any::<u128>().prop_map(|n| json!(format!("{:032x}", n))),
        1 => "[0-9a-f-]{0,40}".prop_map(Value::from),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![0u64..12, Just(u64::MAX), any::<u64>(),].prop_map(Value::from)
}

fn options() -> impl Strategy<Value = Value> {
    let mode = prop::sample::select(&["exclusive", "shared", "observer", "both"][..]);
    (
        prop::option::of(mode),
        prop::option::of(secs()),
        prop::option::of(secs()),
        prop::option::of(0u16..300),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(name()),
    )
        .prop_map(
            |(mode, timeout, ttl, priority, preempt, break_stale, reason)| {
                let mut o = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                };
                put("mode", mode.map(Value::from));
                put("timeout", timeout);
                put("ttl", ttl);
                put("priority", priority.map(Value::from));
                put("preempt", preempt.map(Value::from));
                put("break_stale", break_stale.map(Value::from));
                put("reason", reason);
                Value::Object(o)
            },
        )
}

/// A command of the right shape, with values right or wrong.
fn good_command() -> impl Strategy<Value = Value> {
    let meta = prop_oneof![Just(Value::Null), any_json()];
    let on_expire = prop::sample::select(vec![
        Value::Null,
        json!("release"),
        json!("keep"),
        json!("x"),
    ]);
    prop_oneof![
        (name(), meta, secs(), on_expire).prop_map(|(n, m, t, e)| json!({"op": "open_session", "name": n, "metadata": m, "ttl": t, "on_expire": e})),
        (uuid(), uuid()).prop_map(|(s, k)| json!({"op": "resume", "session": s, "secret": k})),
        uuid().prop_map(|s| json!({"op": "close_session", "session": s})),
        uuid().prop_map(|s| json!({"op": "session", "session": s})),
        uuid().prop_map(|s| json!({"op": "heartbeat", "session": s})),
        // A call's acquire never waits (the engine refuses one that would).
        (uuid(), prop::collection::vec(name(), 0..3), options()).prop_map(|(s, r, o)| json!({"op": "acquire", "session": s, "resources": r, "options": o})),
        number().prop_map(|w| json!({"op": "cancel", "wait": w})),
        number().prop_map(|w| json!({"op": "position", "wait": w})),
        (name(), uuid()).prop_map(|(r, t)| json!({"op": "release", "resource": r, "token": t})),
        (name(), uuid(), secs()).prop_map(|(r, t, ttl)| json!({"op": "renew", "resource": r, "token": t, "ttl": ttl})),
        (name(), prop::option::of(name())).prop_map(|(r, why)| json!({"op": "force_release", "resource": r, "reason": why})),
        name().prop_map(|r| json!({"op": "status", "resource": r})),
        Just(json!({"op": "locks"})),
        Just(json!({"op": "sessions"})),
        (name(), uuid(), prop::sample::select(&["control", "observe", "drive"][..])).prop_map(|(r, s, a)| json!({"op": "check", "resource": r, "session": s, "action": a})),
        (name(), number()).prop_map(|(r, f)| json!({"op": "check_fence", "resource": r, "fence": f})),
        (prop::option::of(name()), prop::option::of(uuid()), prop::option::of(number())).prop_map(|(r, s, l)| json!({"op": "history", "resource": r, "session": s, "limit": l})),
        number().prop_map(|n| json!({"op": "replay", "since": n})),
        Just(json!({"op": "close"})),
        Just(json!({"op": "tick"})),
    ]
}

/// A message of the right shape, with values right or wrong.
fn good_message() -> impl Strategy<Value = Value> {
    let id = 1u64..20;
    prop_oneof![
        number().prop_map(|v| json!({"op": "hello", "version": v})),
        (id.clone(), good_command()).prop_map(|(i, c)| json!({"op": "call", "id": i, "cmd": c})),
        good_command().prop_map(|c| json!({"op": "post", "cmd": c})),
        (id.clone(), uuid(), uuid()).prop_map(|(i, s, k)| json!({"op": "resume", "id": i, "session": s, "secret": k})),
        (id.clone(), uuid(), prop::collection::vec(name(), 0..3), options(), any::<bool>()).prop_map(|(i, s, r, o, ack)| {
            json!({"op": "acquire", "id": i, "ack": ack, "request": {"session": s, "resources": r, "options": o}})
        }),
        (id.clone(), id.clone()).prop_map(|(i, of)| json!({"op": "cancel", "id": i, "of": of})),
        (id.clone(), id.clone()).prop_map(|(i, of)| json!({"op": "position", "id": i, "of": of})),
        (id.clone(), prop::option::of(prop::collection::vec(name(), 0..3)), prop::option::of(number())).prop_map(|(i, r, since)| {
            json!({"op": "subscribe", "id": i, "resources": r, "since": since})
        }),
        id.prop_map(|i| json!({"op": "unsubscribe", "sub": i})),
    ]
}

/// Mostly messages of the right shape (they reach the handling and the engine), some
/// wild ones (they test the decoder's refusals).
fn message() -> impl Strategy<Value = Value> {
    prop_oneof![5 => good_message(), 1 => wild_message()]
}

/// A message with the case's session put in where it is named.
fn with_session(v: &Value, session: &str) -> Value {
    match v {
        Value::String(s) if s == SESSION => Value::from(session),
        Value::Array(a) => Value::Array(a.iter().map(|v| with_session(v, session)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), with_session(v, session)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(RunConfig {
        cases: 2000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(20261202),
        ..RunConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<ClientMsg>(&bytes);
    }

    #[test]
    fn random_json_never_panics_the_decoder_and_what_decodes_reencodes(v in prop_oneof![any_json(), message()]) {
        let text = serde_json::to_vec(&v).unwrap();
        if let Ok(msg) = serde_json::from_slice::<ClientMsg>(&text) {
            let again = serde_json::to_vec(&msg).unwrap();
            prop_assert_eq!(serde_json::from_slice::<ClientMsg>(&again).unwrap(), msg);
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let url = url.replacen("http", "ws", 1) + "/v1/ws";
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

async fn next_msg(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(
                    serde_json::from_str(t.as_str()).expect("the server's messages decode"),
                )
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Sends `text`, then a call of its own, and reads until that call's reply; `false` if
/// the connection ended first (a `bye`, then the close).
async fn send_then_check(ws: &mut Ws, text: String) -> bool {
    if ws.send(Message::Text(text.into())).await.is_err() {
        return false;
    }
    let check = json!({"op": "call", "id": u64::MAX, "cmd": {"op": "tick"}}).to_string();
    if ws.send(Message::Text(check.into())).await.is_err() {
        return false;
    }
    while let Some(msg) = next_msg(ws).await {
        match msg {
            ServerMsg::Reply { id: u64::MAX, .. } => return true,
            ServerMsg::Bye { .. } => return false,
            _ => {}
        }
    }
    false
}

/// A connection that said hello and opened the session the case acts as.
async fn fresh(url: &str) -> (Ws, String) {
    let mut ws = connect(url).await;
    let hello = json!({"op": "hello", "version": 1}).to_string();
    ws.send(Message::Text(hello.into())).await.unwrap();
    assert!(matches!(
        next_msg(&mut ws).await,
        Some(ServerMsg::Welcome { .. })
    ));
    let open =
        json!({"op": "call", "id": 1, "cmd": {"op": "open_session", "name": "fuzz", "ttl": 60}});
    ws.send(Message::Text(open.to_string().into()))
        .await
        .unwrap();
    let session = loop {
        match next_msg(&mut ws).await {
            Some(ServerMsg::Reply { id: 1, result }) => {
                let reply: interlock::Result<interlock::Reply> = result.into();
                match reply.unwrap() {
                    interlock::Reply::Opened { session, .. } => break session.id.to_string(),
                    r => panic!("{r:?}"),
                }
            }
            Some(_) => {}
            None => panic!("the server closed a fresh connection"),
        }
    };
    (ws, session)
}

#[test]
fn random_messages_never_panic_the_server_and_it_keeps_serving() {
    count_panics();
    let engine = Handle::new(Config::default()).unwrap();
    let config = ServerConfig {
        bind: "127.0.0.1:0".into(),
        max_wait: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = Server::start(engine.clone(), config).unwrap();
    let url = server.url().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Counted in cells: the runner takes an `Fn`.
    let closed = std::cell::Cell::new(0);
    let answered = std::cell::Cell::new(0);
    let strategy = (
        prop::bool::weighted(0.8),
        prop::collection::vec(message(), 1..8),
    );
    runner(600)
        .run(&strategy, |(hello_first, msgs)| {
            rt.block_on(async {
                let (mut ws, session) = match hello_first {
                    true => fresh(&url).await,
                    // Before hello, anything but hello ends the connection.
                    false => (
                        connect(&url).await,
                        "00000000-0000-0000-0000-000000000000".into(),
                    ),
                };
                for msg in &msgs {
                    let text = with_session(msg, &session).to_string();
                    if send_then_check(&mut ws, text).await {
                        answered.set(answered.get() + 1);
                    } else {
                        closed.set(closed.get() + 1);
                        break;
                    }
                }
                let _ = ws.close(None).await;
            });
            prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic in the server");
            Ok(())
        })
        .unwrap();
    // Both ways were taken often: the messages reached the handling, not only the parser.
    let (answered, closed) = (answered.get(), closed.get());
    println!("{answered} messages answered, {closed} connections closed with bye");
    assert!(
        answered > 100 && closed > 100,
        "answered {answered}, closed {closed}"
    );
    // And the server still serves, and its engine still answers.
    rt.block_on(async {
        let (mut ws, _) = fresh(&url).await;
        assert!(
            send_then_check(
                &mut ws,
                json!({"op": "call", "id": 2, "cmd": {"op": "locks"}}).to_string()
            )
            .await
        );
    });
    assert!(TcpStream::connect(server.addr()).is_ok());
    assert!(engine.locks().is_ok());
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
