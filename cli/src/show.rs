//! What the client commands print for people: plain text tables, and the live table of
//! `watch`, redrawn in place (the terminal's counterpart of the dashboard's resources
//! view).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use interlock::{ErrorKind, Event, Handle, ResourceStatus, Result, SessionId, SessionInfo};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A length of time as "12s", "3m", "2h".
fn dur(s: f64) -> String {
    match s.max(0.0) {
        s if s < 120.0 => format!("{s:.0}s"),
        s if s < 7200.0 => format!("{:.0}m", s / 60.0),
        s => format!("{:.0}h", s / 3600.0),
    }
}

/// How long before `now` the moment `at` (unix seconds) was.
fn ago(now: f64, at: f64) -> String {
    dur(now - at)
}

fn left(remaining: Option<f64>) -> String {
    remaining.map_or_else(|| "-".into(), |r| format!("{:.1}s", r.max(0.0)))
}

/// Text that a user controls, made harmless for a terminal: a control character (an
/// escape sequence in a resource name could move the cursor, recolour or retitle the
/// terminal, or hide what is printed after it) is shown escaped, as `\u{1b}`.
fn clean(s: &str) -> Cow<'_, str> {
    match s.chars().any(char::is_control) {
        false => Cow::Borrowed(s),
        true => Cow::Owned(
            s.chars()
                .map(|c| match c.is_control() {
                    true => c.escape_unicode().to_string(),
                    false => c.to_string(),
                })
                .collect(),
        ),
    }
}

/// Rows as aligned columns under a header; every cell goes through [`clean`].
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in &rows {
        line(&mut out, &mut row.iter().map(|c| c.as_ref()));
    }
    out
}

/// A session's metadata in a few words, as the dashboard shows it: "ana@lab-pc-3 pid 4242
/// optimizer 2.1" (user, host, pid, app; nothing for redacted or other metadata).
fn who(metadata: &serde_json::Value) -> String {
    let text = |k: &str| match metadata.get(k) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(v) => Some(v.to_string()),
    };
    let mut parts = Vec::new();
    match (text("user"), text("host")) {
        (Some(u), Some(h)) => parts.push(format!("{u}@{h}")),
        (Some(x), None) | (None, Some(x)) => parts.push(x),
        (None, None) => {}
    }
    if let Some(pid) = text("pid") {
        parts.push(format!("pid {pid}"));
    }
    parts.extend(text("app"));
    let s = parts.join(" ");
    match s.chars().count() > 40 {
        true => s.chars().take(39).chain(['…']).collect(),
        false => s,
    }
}

/// What the resource rows need besides the statuses: the time, the sessions (for how
/// long a stale holder has been silent) and how old the statuses are (TTLs count down
/// between two fetches).
struct Context<'a> {
    now: f64,
    sessions: HashMap<SessionId, &'a SessionInfo>,
    elapsed: f64,
}

impl Context<'_> {
    fn plain() -> Self {
        Context {
            now: now(),
            sessions: HashMap::new(),
            elapsed: 0.0,
        }
    }
}

/// One row per holder and per waiter of each resource.
fn resource_rows(st: &ResourceStatus, cx: &Context, rows: &mut Vec<Vec<String>>) {
    for h in &st.holders {
        let stale = match (h.stale, cx.sessions.get(&h.session_id)) {
            (false, _) => String::new(),
            (true, Some(s)) => format!("STALE: no heartbeat for {}", ago(cx.now, s.last_seen)),
            (true, None) => "STALE".into(),
        };
        rows.push(vec![
            st.resource.to_string(),
            "holds".into(),
            h.session_name.to_string(),
            who(&h.metadata),
            h.mode.to_string(),
            h.fence.to_string(),
            h.priority.to_string(),
            ago(cx.now, h.acquired_at),
            left(h.remaining.map(|r| r - cx.elapsed)),
            stale,
        ]);
    }
    for w in &st.waiters {
        rows.push(vec![
            st.resource.to_string(),
            format!("waits #{}", w.position),
            w.session_name.to_string(),
            String::new(),
            w.mode.to_string(),
            String::new(),
            w.priority.to_string(),
            ago(cx.now, w.queued_at),
            String::new(),
            String::new(),
        ]);
    }
}

const RESOURCE_HEADER: [&str; 10] = [
    "RESOURCE", "", "SESSION", "WHO", "MODE", "FENCE", "PRIO", "SINCE", "TTL LEFT", "",
];

fn resources(list: &[ResourceStatus], cx: &Context) -> String {
    if list
        .iter()
        .all(|s| s.holders.is_empty() && s.waiters.is_empty())
    {
        return "nothing is held\n".into();
    }
    let mut rows = Vec::new();
    for st in list {
        resource_rows(st, cx, &mut rows);
    }
    table(&RESOURCE_HEADER, &rows)
}

pub fn status(st: &ResourceStatus) -> String {
    locks(std::slice::from_ref(st))
}

pub fn locks(list: &[ResourceStatus]) -> String {
    resources(list, &Context::plain())
}

pub fn sessions(list: &[SessionInfo]) -> String {
    if list.is_empty() {
        return "no sessions\n".into();
    }
    let t = now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let expires = s
                .expires_at
                .map_or_else(|| "-".into(), |e| format!("{:.1}s", e - t));
            vec![
                s.name.to_string(),
                s.id.to_string(),
                s.metadata.to_string(),
                ago(t, s.created_at),
                ago(t, s.last_seen),
                expires,
                match s.stale {
                    true => "STALE".into(),
                    false => String::new(),
                },
                s.leases.join(", "),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ID",
            "METADATA",
            "CREATED",
            "SEEN",
            "EXPIRES IN",
            "",
            "HOLDS",
        ],
        &rows,
    )
}

fn event_line(e: &Event) -> String {
    if e.kind == interlock::EventKind::Lagged {
        return match e.position() {
            Some(n) => format!("lagged: {n} events were missed here"),
            None => "lagged: events were missed here, and the seqs begin again".to_string(),
        };
    }
    let mut parts = vec![format!("#{}", e.seq), e.kind.as_str().to_string()];
    if let Some(r) = &e.resource {
        parts.push(r.to_string());
    }
    if let Some(s) = e.session_name() {
        parts.push(format!("by {s}"));
    }
    if let Some(f) = e.fence() {
        parts.push(format!("fence {f}"));
    }
    if let Some(p) = e.position() {
        parts.push(format!("position {p}"));
    }
    if let Some(r) = e.reason() {
        parts.push(format!("({r})"));
    }
    clean(&parts.join(" ")).into_owned()
}

pub fn events(list: &[std::sync::Arc<Event>]) -> String {
    list.iter().map(|e| event_line(e) + "\n").collect()
}

/// How many of the latest events `watch` shows under its table.
const RECENT: usize = 5;

/// The screen of `watch`: a title line with the connection's state, the resources
/// table, and the latest events.
fn watch_screen(
    url: &str,
    list: &[ResourceStatus],
    cx: &Context,
    problem: Option<&str>,
    recent: &VecDeque<String>,
) -> String {
    let (state, why) = match problem {
        None => ("live", String::new()),
        Some(p) => {
            let mut p = p;
            while let Some(rest) = p.strip_prefix("connection lost: ") {
                p = rest;
            }
            ("DISCONNECTED, retrying", format!("{}\n", clean(p)))
        }
    };
    let mut out = format!(
        "interlock watch  {}  [{state}]  Ctrl-C to stop\n{why}\n",
        clean(url)
    );
    out += &resources(list, cx);
    if !recent.is_empty() {
        out += "\nlatest events:\n";
        for line in recent {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Draws `screen` over the previous one: from the top left, each line cleared to its
/// end, and whatever is left below cleared, so the table changes in place, without the
/// flicker of clearing the whole screen. Not a terminal (a pipe): screens one after the
/// other, without escape sequences.
fn draw(screen: &str, first: bool) {
    let mut out = String::new();
    let tty = std::io::stdout().is_terminal();
    match (tty, first) {
        (true, true) => out.push_str("\x1b[2J\x1b[H"),
        (true, false) => out.push_str("\x1b[H"),
        (false, _) => {}
    }
    for line in screen.lines() {
        out.push_str(line);
        if tty {
            out.push_str("\x1b[K");
        }
        out.push('\n');
    }
    match tty {
        true => out.push_str("\x1b[J"),
        false => out.push('\n'),
    }
    print(&out);
}

/// Writes `text` to stdout. A reader that went away (`interlock watch | head -1`) ends
/// the command, quietly, with the code a shell gives a command that SIGPIPE ended
/// (Rust ignores SIGPIPE, and `println!` would panic instead).
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + 13);
        }
    }
}

/// After this long without an event, `watch` fetches once anyway: the remote engine does
/// not tell its callers when its connection drops, so this is how an outage shows.
const PROBE: Duration = Duration::from_secs(5);

/// The live table. Like the dashboard, it is driven by the events: they say that
/// something changed, and each burst of them (gathered for 100 ms) fetches the statuses
/// once; a one-second tick redraws the countdowns from the last answer. Only after
/// [`PROBE`] of silence does it ask unprompted. While the server is away it says so,
/// keeps the last table, and tries again every second (the remote engine reconnects by
/// itself). Runs until Ctrl-C, or the engine closes.
pub fn watch(h: &Handle, url: &str, resource: Option<String>, json: bool) -> Result<()> {
    let filter = resource.map(|r| vec![r]);
    let sub = h.subscribe(filter.as_deref(), None)?;
    if json {
        for ev in sub {
            print(&format!(
                "{}\n",
                serde_json::to_string(&*ev).unwrap_or_default()
            ));
        }
        return Ok(());
    }
    let fetch = || -> Result<(Vec<ResourceStatus>, Vec<SessionInfo>)> {
        let list = match &filter {
            Some(r) => vec![h.status(&r[0])?],
            None => h.locks()?,
        };
        Ok((list, h.sessions()?))
    };
    let mut data: (Vec<ResourceStatus>, Vec<SessionInfo>) = (Vec::new(), Vec::new());
    let mut fetched = Instant::now();
    let mut refetch = true;
    let mut problem: Option<String> = None;
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut first = true;
    loop {
        if refetch {
            match fetch() {
                Ok(d) => {
                    data = d;
                    fetched = Instant::now();
                    problem = None;
                }
                Err(e) if e.kind() == ErrorKind::ConnectionLost => problem = Some(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let cx = Context {
            now: now(),
            sessions: data.1.iter().map(|s| (s.id, s)).collect(),
            elapsed: fetched.elapsed().as_secs_f64(),
        };
        draw(
            &watch_screen(url, &data.0, &cx, problem.as_deref(), &recent),
            first,
        );
        first = false;
        let mut note = |ev: &Event| {
            recent.push_back(event_line(ev));
            while recent.len() > RECENT {
                recent.pop_front();
            }
        };
        // While the server is away, every second is a retry; else events refetch, and
        // a long silence.
        refetch = problem.is_some() || fetched.elapsed() >= PROBE;
        if let Some(ev) = sub.recv_timeout(Duration::from_secs(1)) {
            note(&ev);
            std::thread::sleep(Duration::from_millis(100));
            while let Some(ev) = sub.try_recv() {
                note(&ev);
            }
            refetch = true;
        }
        if sub.is_closed() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ANA: &str = "6f1c2a9e-0d4b-4c3e-9a51-2b7d8e9f0a11";
    const BO: &str = "0a7e3b52-93c1-4f0d-8b6e-5c4d3e2f1a00";

    fn statuses() -> Vec<ResourceStatus> {
        serde_json::from_value(json!([{
            "resource": "reactor-1", "locked": true, "mode": "exclusive",
            "holders": [{"session_id": ANA, "session_name": "ReactorController",
                "metadata": {"user": "ana", "host": "lab-pc-3", "pid": 4242, "app": "optimizer"},
                "mode": "exclusive", "fence": 7, "priority": 100, "acquired_at": 1000.0,
                "expires_at": 1060.0, "remaining": 30.0, "stale": true, "reason": null}],
            "waiters": [{"session_id": BO, "session_name": "bluesky-plan", "mode": "exclusive",
                "priority": 3, "position": 1, "queued_at": 1020.0}]
        }]))
        .unwrap()
    }

    fn sessions() -> Vec<SessionInfo> {
        serde_json::from_value(json!([{
            "id": ANA, "name": "ReactorController", "metadata": {}, "created_at": 990.0,
            "last_seen": 1018.0, "expires_at": null, "stale": true, "leases": ["reactor-1"]
        }]))
        .unwrap()
    }

    #[test]
    fn the_watch_screen_shows_holders_queue_staleness_and_counts_ttls_down() {
        let (list, ses) = (statuses(), sessions());
        let cx = Context {
            now: 1030.0,
            sessions: ses.iter().map(|s| (s.id, s)).collect(),
            elapsed: 2.5,
        };
        let recent = VecDeque::from(["#9 queued reactor-1 by bluesky-plan".to_string()]);
        let screen = watch_screen("http://127.0.0.1:7411", &list, &cx, None, &recent);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[0].contains("http://127.0.0.1:7411") && lines[0].contains("[live]"));
        let holder = lines.iter().find(|l| l.contains("holds")).unwrap();
        for part in [
            "reactor-1",
            "ReactorController",
            "ana@lab-pc-3 pid 4242 optimizer",
            "exclusive",
            "7",
            "30s",   // since
            "27.5s", // 30 s left at the fetch, 2.5 s ago
            "STALE: no heartbeat for 12s",
        ] {
            assert!(holder.contains(part), "{part:?} not in {holder:?}");
        }
        let waiter = lines.iter().find(|l| l.contains("waits #1")).unwrap();
        assert!(
            waiter.contains("bluesky-plan") && waiter.contains("10s"),
            "{waiter}"
        );
        assert!(screen.ends_with("latest events:\n  #9 queued reactor-1 by bluesky-plan\n"));

        let problem = "connection lost: connection lost: cannot reach u: refused";
        let away = watch_screen("u", &list, &cx, Some(problem), &recent);
        assert!(away.starts_with("interlock watch  u  [DISCONNECTED, retrying]"));
        assert!(
            away.contains("\ncannot reach u: refused\n\nRESOURCE"),
            "{away}"
        );
        assert!(away
            .lines()
            .next()
            .unwrap()
            .contains("DISCONNECTED, retrying"));
        let empty = watch_screen("u", &[], &cx, None, &VecDeque::new());
        assert!(empty.ends_with("\n\nnothing is held\n"), "{empty}");
    }

    #[test]
    fn names_cannot_smuggle_escape_sequences_into_the_terminal() {
        let mut list = statuses();
        list[0].resource = "evil\x1b]0;pwned\x07\x1b[2J".into();
        let text = locks(&list);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(
            text.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
            "{text}"
        );
    }

    #[test]
    fn who_summarises_the_usual_metadata() {
        assert_eq!(who(&json!({})), "");
        assert_eq!(who(&json!({"host": "h", "pid": 1})), "h pid 1");
        assert_eq!(who(&json!({"user": "a".repeat(60)})).chars().count(), 40);
    }
}
