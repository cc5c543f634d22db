//! The `interlock` command: `serve` runs a server; `status`, `locks`, `sessions`,
//! `history`, `watch` and `force-release` look at or act on one. The same code runs as
//! the `interlock` binary and, through the Python package, as its console script.

mod show;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use interlock::journal::JournalConfig;
use interlock::{Config, ConnectOptions, Error, Handle, Result};
use interlock_server::{Limits, Server, ServerConfig, TlsFiles, Tokens};

#[derive(Parser)]
#[command(
    name = "interlock",
    version,
    about = "Serve an interlock lock engine, or look at one"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a server (prints its URL, then serves until Ctrl-C or SIGTERM).
    Serve(Serve),
    /// A resource's holders and queue (every held resource without RESOURCE).
    Status {
        resource: Option<String>,
        #[command(flatten)]
        client: Client,
    },
    /// Every held resource with its holders and queue.
    Locks {
        #[command(flatten)]
        client: Client,
    },
    /// Every open session.
    Sessions {
        #[command(flatten)]
        client: Client,
    },
    /// Recorded events, oldest first: of a resource, of a session, or of the engine.
    History {
        resource: Option<String>,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// The last N events.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        client: Client,
    },
    /// The live table of resources, redrawn at every change (with --json: the events,
    /// one JSON object a line).
    Watch {
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        #[command(flatten)]
        client: Client,
    },
    /// Releases every holder of RESOURCE (admin); each holder learns it lost its lease.
    ForceRelease {
        resource: String,
        /// Why; shown in the events and the history.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: Client,
    },
}

/// How a client command reaches its server.
#[derive(Args)]
struct Client {
    /// The server's URL.
    #[arg(long, env = "INTERLOCK_URL", default_value = "http://127.0.0.1:7411")]
    url: String,
    /// The bearer token (better given as INTERLOCK_TOKEN: a command line is visible to
    /// other users of the machine).
    #[arg(long, env = "INTERLOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of certificates to trust for https (the server's own, or a lab CA).
    #[arg(long, env = "INTERLOCK_CA")]
    ca: Option<PathBuf>,
    /// JSON instead of tables, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Serve {
    /// HOST:PORT to listen on (port 0 picks a free one). Without tokens only a loopback
    /// address may be bound.
    #[arg(long, default_value = "127.0.0.1:7411")]
    bind: String,
    /// A file of tokens, one "ROLE TOKEN" a line; roles read, client, admin.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Certificate chain (PEM) for HTTPS/WSS; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for HTTPS/WSS; needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The longest an HTTP acquire waits, in seconds, whatever its timeout.
    #[arg(long, default_value_t = 300.0)]
    max_wait: f64,
    /// TTL in seconds of a session opened over the network without one.
    #[arg(long, default_value_t = 15.0)]
    session_ttl: f64,
    /// Keeps a journal in this SQLite file: a restart loses no acknowledged lock, and the
    /// history is a table `sqlite3 FILE` can query.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// History rows the journal keeps (older ones are deleted).
    #[arg(long, default_value_t = 1_000_000, requires = "journal")]
    keep_rows: u64,
    /// Days of history the journal keeps (default: no limit by age).
    #[arg(long, requires = "journal")]
    keep_days: Option<f64>,
    /// After a restart, seconds every session has (at least; its TTL if longer) to
    /// heartbeat or resume before it expires.
    #[arg(long, default_value_t = 15.0, requires = "journal")]
    grace: f64,
    /// TTL in seconds of a lease whose acquire gives none (default: none).
    #[arg(long)]
    lock_ttl: Option<f64>,
    /// Events kept per resource and per session.
    #[arg(long, default_value_t = 100)]
    history_limit: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Largest WebSocket message, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_message: usize,
    /// Open WebSocket connections (and HTTP requests in flight).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Sessions one WebSocket connection may act as.
    #[arg(long, default_value_t = 1_000)]
    max_sessions_per_connection: usize,
    /// Acquires one WebSocket connection may have in flight.
    #[arg(long, default_value_t = 10_000)]
    max_waits_per_connection: usize,
    /// Seconds a connection has to send a whole request head (from its start, or from
    /// the end of its last answer) before it is closed.
    #[arg(long, default_value_t = 30.0)]
    header_timeout: f64,
}

/// Runs the command line `args` (the program's name first); returns the exit code.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match execute(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("interlock: {e}");
            1
        }
    }
}

fn secs(what: &str, v: f64) -> Result<Duration> {
    interlock::ttl_from_secs(what, v)?
        .ok_or_else(|| Error::InvalidArgument(format!("{what} must be finite")))
}

fn execute(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Serve(s) => serve(s),
        Cmd::Status { resource, client } => {
            let h = client.connect()?;
            match resource {
                Some(r) => client.show(&h.status(&r)?, show::status),
                None => client.show(h.locks()?.as_slice(), show::locks),
            }
        }
        Cmd::Locks { client } => {
            let h = client.connect()?;
            client.show(h.locks()?.as_slice(), show::locks)
        }
        Cmd::Sessions { client } => {
            let h = client.connect()?;
            client.show(h.sessions()?.as_slice(), show::sessions)
        }
        Cmd::History {
            resource,
            session,
            limit,
            client,
        } => {
            let session = session.map(|s| s.parse()).transpose()?;
            let h = client.connect()?;
            client.show(
                h.history(resource.as_deref(), session, limit)?.as_slice(),
                show::events,
            )
        }
        Cmd::Watch { resource, client } => {
            show::watch(&client.connect()?, &client.url, resource, client.json)
        }
        Cmd::ForceRelease {
            resource,
            reason,
            client,
        } => {
            let h = client.connect()?;
            let n = h.force_release(&resource, Some(&reason))?;
            match client.json {
                true => show::print(&format!("{}\n", serde_json::json!({ "released": n }))),
                false => show::print(&format!("released {n} holder(s) of {resource}\n")),
            }
            Ok(())
        }
    }
}

impl Client {
    fn connect(&self) -> Result<Handle> {
        Handle::connect(
            &self.url,
            ConnectOptions {
                token: self.token.clone(),
                ca_file: self.ca.clone(),
                ..ConnectOptions::default()
            },
        )
    }

    fn show<T: serde::Serialize + ?Sized>(&self, value: &T, table: fn(&T) -> String) -> Result<()> {
        match self.json {
            true => {
                let text = serde_json::to_string_pretty(value)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                show::print(&format!("{text}\n"));
            }
            false => show::print(&table(value)),
        }
        Ok(())
    }
}

fn serve(s: Serve) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INTERLOCK_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    let tokens = match &s.tokens {
        Some(path) => Tokens::from_file(path)?,
        None => Tokens::default(),
    };
    let journal = match &s.journal {
        Some(path) => Some(JournalConfig {
            path: path.clone(),
            keep_rows: Some(s.keep_rows),
            keep_for: s
                .keep_days
                .map(|d| secs("--keep-days", d * 86_400.0))
                .transpose()?,
            grace: secs("--grace", s.grace)?,
        }),
        None => None,
    };
    let config = Config {
        lock_ttl: s.lock_ttl.map(|t| secs("--lock-ttl", t)).transpose()?,
        history_limit: s.history_limit,
        journal,
        ..Config::default()
    };
    let server_config = ServerConfig {
        bind: s.bind,
        tokens,
        tls: match (s.tls_cert, s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        },
        limits: Limits {
            body: s.max_body,
            message: s.max_message,
            connections: s.max_connections,
            sessions_per_connection: s.max_sessions_per_connection,
            waits_per_connection: s.max_waits_per_connection,
            header_timeout: secs("--header-timeout", s.header_timeout)?,
            ..Limits::default()
        },
        max_wait: secs("--max-wait", s.max_wait)?,
        session_ttl: secs("--session-ttl", s.session_ttl)?,
    };
    let stop = Stop::listen()?;
    let engine = Handle::new(config)?;
    let server = Server::start(engine.clone(), server_config)?;
    // Nobody may read it (`serve | head -1` ends at once): the server goes on regardless.
    let _ = writeln!(std::io::stdout(), "interlock serving at {}", server.url());
    stop.wait();
    drop(server);
    engine.close();
    Ok(())
}

/// Ctrl-C and SIGTERM, listened for from the moment it is made: one that comes as the
/// server starts stops it cleanly too, rather than killing the process.
struct Stop {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
}

impl Stop {
    fn listen() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("no runtime to wait for signals: {e}")))?;
        #[cfg(unix)]
        let signals = {
            use tokio::signal::unix::{signal, SignalKind};
            let _in_runtime = runtime.enter();
            let listen = |kind| {
                signal(kind).map_err(|e| Error::Internal(format!("cannot listen for signals: {e}")))
            };
            [
                listen(SignalKind::interrupt())?,
                listen(SignalKind::terminate())?,
            ]
        };
        Ok(Stop {
            runtime,
            #[cfg(unix)]
            signals,
        })
    }

    /// Blocks until one comes.
    fn wait(self) {
        #[cfg(unix)]
        {
            let [mut int, mut term] = self.signals;
            self.runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
        }
        #[cfg(not(unix))]
        self.runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
}
