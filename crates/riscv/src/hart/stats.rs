//! The translator's and the interpreter's counters, one type on every
//! host (the translator's stay zero where it does not exist).

/// Counters of the code cache (not state: they differ between engines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Blocks translated (including empty ones: an untranslatable first
    /// instruction).
    pub blocks: u64,
    /// Bytes of host code emitted.
    pub code_bytes: u64,
    /// Host time spent translating, in nanoseconds (a measurement for the
    /// counters only: nothing the guest sees depends on it).
    pub translate_ns: u64,
    /// Times the whole cache was dropped because it was full.
    pub flushes: u64,
    /// Blocks entered from the run loop.
    pub entered: u64,
    /// Jumps from one block straight into the next made direct.
    pub links: u64,
    /// Jumps from one block into the next found in the jump cache by
    /// generated code (`jalr`, targets on other pages).
    pub cache_jumps: u64,
    /// Guest instructions retired inside blocks.
    pub retired_in_blocks: u64,
    /// Why the run loop went back to the interpreter (each a count of
    /// returns from the translator to the interpreter): the page's code changed (the code
    /// epoch moved), the fetch TLB missed for a new page, the first
    /// instruction is not translated (an empty block), a block did not fit
    /// in the budget left (the fast loop ran the tail), a trap.
    pub exit_epoch: u64,
    pub exit_fetch_miss: u64,
    pub exit_empty: u64,
    pub exit_budget_tail: u64,
    pub exit_trap: u64,
    /// Blocks ended early by a helper (MMIO, a yield, a store to code).
    pub exit_helper: u64,
    /// TLB misses (slow-path translations) by kind, counted by the
    /// interpreter whichever engine runs.
    pub tlb_miss_fetch: u64,
    pub tlb_miss_load: u64,
    pub tlb_miss_store: u64,
    /// Instructions retired by the interpreter's general and fast loops.
    pub retired_general: u64,
    pub retired_fast: u64,
    /// Times decoded code was dropped (RAM's code epoch moved).
    pub code_epoch: u64,
    /// Data TLB misses served without a walk (`mmu::WalkCache`).
    pub walks_cached: u64,
}

impl JitStats {
    /// Sum of two harts' counters.
    pub fn add(&mut self, o: &JitStats) {
        self.blocks += o.blocks;
        self.code_bytes += o.code_bytes;
        self.translate_ns += o.translate_ns;
        self.flushes += o.flushes;
        self.entered += o.entered;
        self.links += o.links;
        self.cache_jumps += o.cache_jumps;
        self.retired_in_blocks += o.retired_in_blocks;
        self.exit_epoch += o.exit_epoch;
        self.exit_fetch_miss += o.exit_fetch_miss;
        self.exit_empty += o.exit_empty;
        self.exit_budget_tail += o.exit_budget_tail;
        self.exit_trap += o.exit_trap;
        self.exit_helper += o.exit_helper;
        self.tlb_miss_fetch += o.tlb_miss_fetch;
        self.tlb_miss_load += o.tlb_miss_load;
        self.tlb_miss_store += o.tlb_miss_store;
        self.retired_general += o.retired_general;
        self.retired_fast += o.retired_fast;
        self.walks_cached += o.walks_cached;
        self.code_epoch = self.code_epoch.max(o.code_epoch);
    }
}
