//! Prometheus metrics at `/metrics`: counters from the engine's events, gauges read from
//! the engine when scraped, and the latency of the commands the server runs.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use interlock::{Event, EventKind, Handle};

pub struct Metrics {
    registry: Registry,
    grants: Counter,
    waits: Counter,
    timeouts: Counter,
    preemptions: Counter,
    force_releases: Counter,
    sessions: Gauge,
    connections: Gauge,
    queue_depth: Gauge,
    pub command_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("interlock");
        let m = Metrics {
            grants: Counter::default(),
            waits: Counter::default(),
            timeouts: Counter::default(),
            preemptions: Counter::default(),
            force_releases: Counter::default(),
            sessions: Gauge::default(),
            connections: Gauge::default(),
            queue_depth: Gauge::default(),
            // 10 µs to about 20 s.
            command_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 11)),
            registry: Registry::default(),
        };
        registry.register("grants", "Leases granted", m.grants.clone());
        registry.register("waits", "Acquires that had to wait", m.waits.clone());
        registry.register("timeouts", "Waits that timed out", m.timeouts.clone());
        registry.register(
            "preemptions",
            "Leases taken by preemption",
            m.preemptions.clone(),
        );
        registry.register(
            "force_releases",
            "Leases ended by force release",
            m.force_releases.clone(),
        );
        registry.register("sessions", "Open sessions", m.sessions.clone());
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting in the queues of held resources",
            m.queue_depth.clone(),
        );
        registry.register(
            "command_seconds",
            "Time the engine took to answer a command of the server",
            m.command_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts what an event says happened.
    pub fn count(&self, ev: &Event) {
        let counter = match ev.kind {
            EventKind::Acquired => &self.grants,
            EventKind::Queued => &self.waits,
            EventKind::Dequeued if ev.reason() == Some("timeout") => &self.timeouts,
            EventKind::Preempted => &self.preemptions,
            EventKind::ForceReleased => &self.force_releases,
            _ => return,
        };
        counter.inc();
    }

    pub fn connection(&self, open: bool) {
        match open {
            true => self.connections.inc(),
            false => self.connections.dec(),
        };
    }

    /// The Prometheus text form, with the gauges read from the engine now.
    pub async fn render(&self, handle: &Handle) -> interlock::Result<String> {
        let sessions = handle.execute_async(interlock::Command::Sessions).await?;
        let locks = handle.execute_async(interlock::Command::Locks).await?;
        if let interlock::Reply::Sessions(s) = sessions {
            self.sessions.set(s.len() as i64);
        }
        if let interlock::Reply::Locks(l) = locks {
            self.queue_depth
                .set(l.iter().map(|s| s.waiters.len() as i64).sum());
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)
            .map_err(|e| interlock::Error::Internal(format!("metrics: {e}")))?;
        Ok(out)
    }
}
