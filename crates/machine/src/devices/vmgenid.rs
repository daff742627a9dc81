//! VM generation id: 16 read-only bytes at the start of a page, and an
//! interrupt (a PLIC pulse) whenever the host changes them (clone, revert,
//! restore). Linux's `vmgenid` driver reseeds its RNG when it sees a new id.

use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmGenId {
    id: [u8; 16],
}

/// The generation id as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmGenIdState {
    pub id: [u8; 16],
}

impl Persist for VmGenId {
    type State = VmGenIdState;

    fn save(&self) -> VmGenIdState {
        VmGenIdState { id: self.id }
    }

    /// Any id is valid.
    fn restore(state: &VmGenIdState, _: &BoardShape<'_>) -> Result<Self, StateError> {
        Ok(Self::new(state.id))
    }
}

impl VmGenId {
    pub fn new(id: [u8; 16]) -> Self {
        Self { id }
    }

    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    pub fn set(&mut self, id: [u8; 16]) {
        self.id = id;
    }

    /// A little-endian load of `size` bytes at `offset`; zero past the id.
    pub fn load(&self, offset: u64, size: u8) -> u64 {
        (0..u64::from(size))
            .map(|i| {
                let byte = usize::try_from(offset + i)
                    .ok()
                    .and_then(|o| self.id.get(o));
                u64::from(byte.copied().unwrap_or(0)) << (8 * i)
            })
            .fold(0, |acc, b| acc | b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_little_endian() {
        let id: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
        let g = VmGenId::new(id);
        assert_eq!(g.load(0, 8), 0x0807_0605_0403_0201);
        assert_eq!(g.load(8, 8), 0x100f_0e0d_0c0b_0a09);
        assert_eq!(g.load(15, 1), 0x10);
        assert_eq!(g.load(16, 8), 0);
    }
}
