//! The cell that a [`crate::Lease`] reads to know whether it is still held. Its link (the
//! local actor, or the remote link from the server's notices) moves it out of `Held` when
//! the lease ends; the holder's own `release` moves it too, without waiting for the
//! engine. Whichever comes first wins; the engine's `State` never sees a cell.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::error::LostReason;
use crate::types::LeaseState;

/// Cells come in pages of 64, one allocation for 64 leases. A cell is never reused: a page
/// is freed when the last lease on it is gone.
#[derive(Debug, Clone)]
pub struct LeaseCell {
    page: Arc<CellPage>,
    slot: u8,
}

const CELLS_PER_PAGE: usize = 64;

#[derive(Debug)]
struct CellPage([AtomicU8; CELLS_PER_PAGE]);

impl Default for CellPage {
    fn default() -> Self {
        CellPage(std::array::from_fn(|_| AtomicU8::new(HELD)))
    }
}

/// Hands out fresh cells, each held.
#[derive(Debug, Default)]
pub(crate) struct Cells {
    page: Arc<CellPage>,
    used: usize,
}

impl Cells {
    pub(crate) fn fresh(&mut self) -> LeaseCell {
        if self.used == CELLS_PER_PAGE {
            *self = Cells::default();
        }
        self.used += 1;
        LeaseCell {
            page: self.page.clone(),
            slot: (self.used - 1) as u8,
        }
    }
}

const HELD: u8 = 0;

fn encode(state: LeaseState) -> u8 {
    match state {
        LeaseState::Held => HELD,
        LeaseState::Released => 1,
        LeaseState::Lost(LostReason::Preempted) => 2,
        LeaseState::Lost(LostReason::Expired) => 3,
        LeaseState::Lost(LostReason::ForceReleased) => 4,
        LeaseState::Lost(LostReason::SessionExpired) => 5,
        LeaseState::Lost(LostReason::ConnectionLost) => 6,
        LeaseState::Closed => 7,
    }
}

fn decode(v: u8) -> LeaseState {
    match v {
        HELD => LeaseState::Held,
        1 => LeaseState::Released,
        2 => LeaseState::Lost(LostReason::Preempted),
        3 => LeaseState::Lost(LostReason::Expired),
        4 => LeaseState::Lost(LostReason::ForceReleased),
        5 => LeaseState::Lost(LostReason::SessionExpired),
        6 => LeaseState::Lost(LostReason::ConnectionLost),
        _ => LeaseState::Closed,
    }
}

impl LeaseCell {
    pub fn get(&self) -> LeaseState {
        decode(self.page.0[usize::from(self.slot)].load(Ordering::Acquire))
    }

    /// Moves a held lease to `to`, once: returns where it stood before (`Held` iff this
    /// call moved it).
    pub(crate) fn leave_held(&self, to: LeaseState) -> LeaseState {
        let cell = &self.page.0[usize::from(self.slot)];
        match cell.compare_exchange(HELD, encode(to), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => LeaseState::Held,
            Err(v) => decode(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_survives_its_encoding() {
        let reasons = [
            LostReason::Preempted,
            LostReason::Expired,
            LostReason::ForceReleased,
            LostReason::SessionExpired,
            LostReason::ConnectionLost,
        ];
        let states = [LeaseState::Held, LeaseState::Released, LeaseState::Closed]
            .into_iter()
            .chain(reasons.map(LeaseState::Lost));
        for s in states {
            assert_eq!(decode(encode(s)), s);
        }
    }

    #[test]
    fn a_cell_leaves_held_once_and_pages_do_not_share_slots() {
        let mut cells = Cells::default();
        let all: Vec<LeaseCell> = (0..130).map(|_| cells.fresh()).collect();
        assert_eq!(all[0].leave_held(LeaseState::Released), LeaseState::Held);
        let lost = LeaseState::Lost(LostReason::Expired);
        assert_eq!(all[0].leave_held(lost), LeaseState::Released);
        assert!(all[1..].iter().all(|c| c.get() == LeaseState::Held));
        assert!(!Arc::ptr_eq(&all[0].page, &all[64].page));
    }
}
