//! SiFive/RISC-V PLIC with the register layout of QEMU `virt`: 96 sources
//! with 3-bit priorities, two contexts per hart (2h = M-mode, 2h+1 =
//! S-mode), claim/complete per context.
//!
//! Sources are level-sensitive like QEMU's: a source is pending while its
//! line is high and it is not in service; claiming takes it into service,
//! completing releases it (and it pends again if the line is still high).
//! [`Plic::pulse`] is for edge-like notifications with no line to lower.

use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};

/// Highest source number; `riscv,ndev` in the device tree.
pub const NUM_SOURCES: u32 = 96;
const WORDS: usize = (NUM_SOURCES as usize + 1).div_ceil(32);
const PRIORITY_MASK: u32 = 7;

const PRIORITY_END: u64 = 0x1000;
const PENDING: u64 = 0x1000;
const ENABLE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plic {
    priority: Vec<u32>,
    level: Vec<bool>,
    pending: Vec<bool>,
    in_service: Vec<bool>,
    /// Enable bits per context, 32 sources per word.
    enable: Vec<[u32; WORDS]>,
    threshold: Vec<u32>,
}

/// The PLIC's saved state: per source (0 unused) and per context (two
/// per hart: M and S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlicState {
    pub priority: Vec<u32>,
    pub level: Vec<bool>,
    pub pending: Vec<bool>,
    pub in_service: Vec<bool>,
    pub enable: Vec<[u32; WORDS]>,
    pub threshold: Vec<u32>,
}

impl Persist for Plic {
    type State = PlicState;

    fn save(&self) -> PlicState {
        PlicState {
            priority: self.priority.clone(),
            level: self.level.clone(),
            pending: self.pending.clone(),
            in_service: self.in_service.clone(),
            enable: self.enable.clone(),
            threshold: self.threshold.clone(),
        }
    }

    /// Every source table as long as the board's sources, every context
    /// table as its contexts.
    fn restore(state: &PlicState, board: &BoardShape<'_>) -> Result<Self, StateError> {
        let sources = NUM_SOURCES as usize + 1;
        let per_source = [
            state.priority.len(),
            state.level.len(),
            state.pending.len(),
            state.in_service.len(),
        ];
        if per_source.iter().any(|&n| n != sources) {
            return Err(StateError::PlicSources {
                found: per_source,
                expected: sources,
            });
        }
        let contexts = [state.enable.len(), state.threshold.len()];
        if contexts != [2 * board.harts; 2] {
            return Err(StateError::PlicContexts {
                found: contexts,
                harts: board.harts,
            });
        }
        Ok(Self {
            priority: state.priority.clone(),
            level: state.level.clone(),
            pending: state.pending.clone(),
            in_service: state.in_service.clone(),
            enable: state.enable.clone(),
            threshold: state.threshold.clone(),
        })
    }
}

impl Plic {
    pub fn new(harts: usize) -> Self {
        let sources = NUM_SOURCES as usize + 1;
        let contexts = 2 * harts;
        Self {
            priority: vec![0; sources],
            level: vec![false; sources],
            pending: vec![false; sources],
            in_service: vec![false; sources],
            enable: vec![[0; WORDS]; contexts],
            threshold: vec![0; contexts],
        }
    }

    /// Drive the interrupt line of `source` (1..=NUM_SOURCES).
    pub fn set_level(&mut self, source: u32, high: bool) {
        let s = source as usize;
        if s == 0 || s >= self.level.len() {
            return;
        }
        self.level[s] = high;
        if !self.in_service[s] {
            self.pending[s] = high;
        }
    }

    /// Make `source` pending once, without holding its line high.
    pub fn pulse(&mut self, source: u32) {
        let s = source as usize;
        if s != 0 && s < self.pending.len() && !self.in_service[s] {
            self.pending[s] = true;
        }
    }

    /// Whether `context` has an interrupt to take (its line to the hart).
    pub fn context_pending(&self, context: usize) -> bool {
        self.best_candidate(context).is_some()
    }

    /// The pending, enabled source of highest priority above the context's
    /// threshold; ties go to the lowest source number.
    fn best_candidate(&self, context: usize) -> Option<usize> {
        let threshold = *self.threshold.get(context)?;
        let mut best: Option<(u32, usize)> = None;
        for s in 1..self.pending.len() {
            let prio = self.priority[s];
            if self.pending[s]
                && self.enabled(context, s)
                && prio > threshold
                && best.is_none_or(|(p, _)| prio > p)
            {
                best = Some((prio, s));
            }
        }
        best.map(|(_, s)| s)
    }

    fn enabled(&self, context: usize, source: usize) -> bool {
        self.enable
            .get(context)
            .is_some_and(|words| words[source / 32] >> (source % 32) & 1 != 0)
    }

    fn claim(&mut self, context: usize) -> u32 {
        match self.best_candidate(context) {
            Some(s) => {
                self.pending[s] = false;
                self.in_service[s] = true;
                s as u32
            }
            None => 0,
        }
    }

    fn complete(&mut self, context: usize, source: u32) {
        let s = source as usize;
        // The spec ignores completions for sources not enabled in this context.
        if s != 0 && s < self.in_service.len() && self.enabled(context, s) {
            self.in_service[s] = false;
            self.pending[s] = self.level[s];
        }
    }

    fn pending_word(&self, word: usize) -> u32 {
        (0..32)
            .filter(|bit| self.pending.get(word * 32 + bit).copied().unwrap_or(false))
            .fold(0, |acc, bit| acc | 1 << bit)
    }

    /// A 32-bit load at `offset`; `None` is a bus error (only 4-byte
    /// accesses exist, as on QEMU).
    pub fn load(&mut self, offset: u64, size: u8) -> Option<u64> {
        if size != 4 {
            return None;
        }
        let value = match offset {
            0..PRIORITY_END => self
                .priority
                .get((offset / 4) as usize)
                .copied()
                .unwrap_or(0),
            PENDING..ENABLE => {
                let word = ((offset - PENDING) / 4) as usize;
                if word < WORDS {
                    self.pending_word(word)
                } else {
                    0
                }
            }
            ENABLE..CONTEXT => {
                let (context, word) = enable_slot(offset);
                self.enable
                    .get(context)
                    .and_then(|w| w.get(word))
                    .copied()
                    .unwrap_or(0)
            }
            _ => {
                let (context, reg) = context_slot(offset);
                match reg {
                    0 => self.threshold.get(context).copied().unwrap_or(0),
                    4 if context < self.threshold.len() => self.claim(context),
                    _ => 0,
                }
            }
        };
        Some(u64::from(value))
    }

    /// A 32-bit store at `offset`; `None` is a bus error.
    pub fn store(&mut self, offset: u64, size: u8, val: u64) -> Option<()> {
        if size != 4 {
            return None;
        }
        let val = val as u32;
        match offset {
            0..PRIORITY_END => {
                let s = (offset / 4) as usize;
                if s != 0 {
                    if let Some(p) = self.priority.get_mut(s) {
                        *p = val & PRIORITY_MASK;
                    }
                }
            }
            PENDING..ENABLE => {}
            ENABLE..CONTEXT => {
                let (context, word) = enable_slot(offset);
                if let Some(w) = self.enable.get_mut(context).and_then(|w| w.get_mut(word)) {
                    *w = val & valid_bits(word);
                }
            }
            _ => {
                let (context, reg) = context_slot(offset);
                match reg {
                    0 => {
                        if let Some(t) = self.threshold.get_mut(context) {
                            *t = val & PRIORITY_MASK;
                        }
                    }
                    4 => self.complete(context, val),
                    _ => {}
                }
            }
        }
        Some(())
    }
}

fn enable_slot(offset: u64) -> (usize, usize) {
    let rel = offset - ENABLE;
    (
        (rel / ENABLE_STRIDE) as usize,
        ((rel % ENABLE_STRIDE) / 4) as usize,
    )
}

fn context_slot(offset: u64) -> (usize, u64) {
    let rel = offset - CONTEXT;
    ((rel / CONTEXT_STRIDE) as usize, rel % CONTEXT_STRIDE)
}

/// Enable bits that name real sources in `word` (source 0 does not exist).
fn valid_bits(word: usize) -> u32 {
    (0..32u32)
        .filter(|bit| {
            let s = word as u32 * 32 + bit;
            (1..=NUM_SOURCES).contains(&s)
        })
        .fold(0, |acc, bit| acc | 1 << bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIM0: u64 = CONTEXT + 4;
    const CLAIM1: u64 = CONTEXT + CONTEXT_STRIDE + 4;

    fn plic_with(sources: &[(u32, u32)], context: usize) -> Plic {
        let mut p = Plic::new(1);
        for &(s, prio) in sources {
            p.store(4 * u64::from(s), 4, u64::from(prio)).unwrap();
            let word = ENABLE + ENABLE_STRIDE * context as u64 + 4 * u64::from(s / 32);
            let old = p.load(word, 4).unwrap();
            p.store(word, 4, old | 1 << (s % 32)).unwrap();
        }
        p
    }

    #[test]
    fn claim_takes_highest_priority_then_lowest_id() {
        let mut p = plic_with(&[(10, 1), (11, 3), (12, 3)], 0);
        for s in [10, 11, 12] {
            p.set_level(s, true);
        }
        assert!(p.context_pending(0));
        assert_eq!(p.load(CLAIM0, 4), Some(11));
        assert_eq!(p.load(CLAIM0, 4), Some(12));
        assert_eq!(p.load(CLAIM0, 4), Some(10));
        assert_eq!(p.load(CLAIM0, 4), Some(0));
        assert!(!p.context_pending(0));
    }

    #[test]
    fn complete_repends_while_line_high() {
        let mut p = plic_with(&[(10, 1)], 0);
        p.set_level(10, true);
        assert_eq!(p.load(CLAIM0, 4), Some(10));
        // In service: the line stays high but nothing is pending.
        p.set_level(10, true);
        assert!(!p.context_pending(0));
        p.store(CLAIM0, 4, 10).unwrap();
        assert!(p.context_pending(0), "line still high after complete");
        assert_eq!(p.load(CLAIM0, 4), Some(10));
        p.set_level(10, false);
        p.store(CLAIM0, 4, 10).unwrap();
        assert!(!p.context_pending(0));
        assert_eq!(p.load(PENDING, 4), Some(0));
    }

    #[test]
    fn threshold_masks_low_priorities() {
        let mut p = plic_with(&[(10, 2)], 0);
        p.set_level(10, true);
        p.store(CONTEXT, 4, 2).unwrap();
        assert!(!p.context_pending(0));
        assert_eq!(p.load(CLAIM0, 4), Some(0));
        p.store(CONTEXT, 4, 1).unwrap();
        assert_eq!(p.load(CONTEXT, 4), Some(1));
        assert!(p.context_pending(0));
    }

    #[test]
    fn enable_is_per_context() {
        let mut p = plic_with(&[(10, 1)], 1);
        p.set_level(10, true);
        assert!(!p.context_pending(0));
        assert!(p.context_pending(1));
        assert_eq!(p.load(CLAIM0, 4), Some(0));
        assert_eq!(p.load(CLAIM1, 4), Some(10));
        // Completion through a context where the source is disabled is ignored.
        p.store(CLAIM0, 4, 10).unwrap();
        p.set_level(10, true);
        assert!(!p.context_pending(1));
        p.store(CLAIM1, 4, 10).unwrap();
        assert!(p.context_pending(1));
    }

    #[test]
    fn priority_zero_never_interrupts_and_pending_bits_show() {
        let mut p = plic_with(&[(33, 0)], 0);
        p.set_level(33, true);
        assert!(!p.context_pending(0));
        assert_eq!(p.load(PENDING + 4, 4), Some(1 << 1));
    }

    #[test]
    fn pulse_pends_once_and_source_zero_is_inert() {
        let mut p = plic_with(&[(12, 1)], 0);
        p.pulse(12);
        assert_eq!(p.load(CLAIM0, 4), Some(12));
        p.store(CLAIM0, 4, 12).unwrap();
        assert!(!p.context_pending(0));
        p.set_level(0, true);
        p.store(0, 4, 7).unwrap();
        assert_eq!(p.load(0, 4), Some(0));
        p.store(ENABLE, 4, u64::from(u32::MAX)).unwrap();
        assert_eq!(p.load(ENABLE, 4), Some(u64::from(u32::MAX - 1)));
    }

    #[test]
    fn only_word_accesses() {
        let mut p = Plic::new(1);
        assert_eq!(p.load(0, 8), None);
        assert_eq!(p.store(CONTEXT, 1, 0), None);
        assert_eq!(p.load(PENDING, 4), Some(0));
    }
}
