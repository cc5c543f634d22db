//! Listings: a resource's holders and queue, every held resource.

use std::sync::Arc;
use std::time::Duration;

use super::State;
use crate::types::{HolderInfo, ResourceStatus, WaiterInfo};

impl State {
    pub(super) fn status(&self, now: Duration, resource: &str) -> ResourceStatus {
        let Some(rec) = self.resources.get(resource) else {
            return ResourceStatus {
                resource: Arc::from(resource),
                locked: false,
                mode: None,
                holders: Vec::new(),
                waiters: Vec::new(),
            };
        };
        let name_of = |id| {
            self.sessions
                .get(id)
                .map_or_else(|| Arc::from(""), |s| s.tag.name.clone())
        };
        let holders = rec
            .holders
            .iter()
            .map(|h| {
                let s = self.sessions.get(&h.session);
                HolderInfo {
                    session_id: h.session,
                    session_name: name_of(&h.session),
                    metadata: s.map_or_else(Default::default, |s| s.metadata.clone()),
                    mode: h.mode,
                    fence: h.fence,
                    priority: h.priority,
                    acquired_at: h.acquired_at,
                    expires_at: h.expires.get().map(|d| self.unix(d)),
                    remaining: h.expires.get().map(|d| d.saturating_sub(now).as_secs_f64()),
                    stale: s.is_some_and(|s| s.stale),
                    reason: h.reason.clone(),
                }
            })
            .collect();
        let waiters = rec
            .queue
            .values()
            .enumerate()
            .map(|(i, id)| {
                let w = &self.waits[id];
                WaiterInfo {
                    session_id: w.session,
                    session_name: name_of(&w.session),
                    mode: w.mode,
                    priority: w.priority,
                    position: i as u64 + 1,
                    queued_at: w.queued_at,
                }
            })
            .collect();
        ResourceStatus {
            resource: rec.name.clone(),
            locked: !rec.holders.is_empty(),
            mode: rec.held_mode(),
            holders,
            waiters,
        }
    }

    pub(super) fn locks(&self, now: Duration) -> Vec<ResourceStatus> {
        let mut names: Vec<&Arc<str>> = self
            .resources
            .values()
            .filter(|r| !r.holders.is_empty())
            .map(|r| &r.name)
            .collect();
        names.sort();
        names.into_iter().map(|r| self.status(now, r)).collect()
    }
}
