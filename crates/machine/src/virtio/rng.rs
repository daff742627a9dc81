//! virtio-rng (device id 4): one request queue; the device fills the
//! driver's writable buffers with random bytes.
//!
//! The bytes come from a deterministic CSPRNG (ChaCha20) seeded with a
//! per-VM secret, not from the host's entropy pool:
//!
//! - Record/replay and fault tolerance stay cheap and exact. Entropy from
//!   the host would be an input event (DESIGN §3.3) whose every byte has to
//!   be logged and shipped to the backup; a seeded generator is part of the
//!   machine state instead, so the log carries nothing and a replay or a
//!   backup produces the same bytes by itself. Runs are reproducible.
//! - The seed is a VM secret chosen when the VM is created: fresh random
//!   bytes for every `lockstep run` unless `--rng-seed HEX` fixes it (for
//!   reproducible runs). Two VMs therefore never share an entropy stream.
//! - Clones and restored snapshots do share the generator's state with their
//!   origin, but each gets a new VM generation id; Linux's vmgenid driver
//!   then reseeds its RNG, mixing in fresh input, so clones diverge.
//!
//! The generator's position (ChaCha's word counter) is saved with the
//! device ([`RngState`]), so a snapshot resumes the stream exactly where it stopped, and a
//! reset keeps it (a rebooted guest never sees the same bytes again).

use super::queue::Chain;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use riscv::Ram;
use serde::{Deserialize, Serialize};

/// Largest number of bytes handed out per request; the guest just asks
/// again for more (the used length says how many it got).
pub const MAX_BYTES_PER_REQUEST: u64 = 64 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Rng {
    seed: [u8; 32],
    /// Position in the ChaCha20 stream, in 32-bit words.
    word_pos: u128,
}

/// The RNG's saved state: its seed (a VM secret) and stream position.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub word_pos: u128,
}

impl std::fmt::Debug for RngState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RngState")
            .field("seed", &"<secret>")
            .field("word_pos", &self.word_pos)
            .finish()
    }
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed is a secret: keep it out of logs and panic messages.
        f.debug_struct("Rng")
            .field("seed", &"<secret>")
            .field("word_pos", &self.word_pos)
            .finish()
    }
}

impl Rng {
    pub fn new(seed: [u8; 32]) -> Self {
        Self { seed, word_pos: 0 }
    }

    pub fn save(&self) -> RngState {
        RngState {
            seed: self.seed,
            word_pos: self.word_pos,
        }
    }

    pub fn from_state(state: &RngState) -> Self {
        Self {
            seed: state.seed,
            word_pos: state.word_pos,
        }
    }

    /// Fill the chain's writable buffers (up to [`MAX_BYTES_PER_REQUEST`]);
    /// returns the number of bytes written. Readable buffers are ignored.
    pub fn fill(&mut self, chain: &Chain, ram: &mut Ram) -> u32 {
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        rng.set_word_pos(self.word_pos);
        let mut written = 0u32;
        for seg in chain.writable.range(0, MAX_BYTES_PER_REQUEST) {
            // The queue checked that every buffer is RAM.
            if let Some(buf) = ram.slice_mut(seg.addr, seg.len as usize) {
                rng.fill_bytes(buf);
                written += seg.len;
            }
        }
        self.word_pos = rng.get_word_pos();
        written
    }
}
