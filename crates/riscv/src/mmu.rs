//! Address translation: Sv39/Sv48 page walks with hardware A/D updates, PMP
//! checks, and the software TLB that makes a RAM access one tag compare and
//! one add.

use crate::csr::{self, Csrs, Priv, PMP_ENTRIES};
use crate::ram::{Ram, PAGE_SHIFT};

/// Kind of access, which picks the TLB and the fault causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Fetch,
    Load,
    Store,
}

impl Access {
    pub fn page_fault(self) -> u64 {
        match self {
            Access::Fetch => 12,
            Access::Load => 13,
            Access::Store => 15,
        }
    }
    pub fn access_fault(self) -> u64 {
        match self {
            Access::Fetch => 1,
            Access::Load => 5,
            Access::Store => 7,
        }
    }
}

pub const TLB_SIZE: usize = 256;

/// One cached 4 KiB translation for one access kind in one context.
/// `tag` = vpn << 6 | context | VALID, where the context is the privilege
/// (bits 0..2) plus, for data accesses, mstatus.SUM (bit 4) and MXR (bit 5)
/// — so toggling SUM around every copy to/from user needs no TLB flush.
/// The page is RAM at host offset `va + addend`.
#[derive(Clone, Copy, Default)]
pub struct TlbEntry {
    pub tag: u64,
    pub addend: u64,
}

pub const TAG_VALID: u64 = 8;
pub const TAG_SUM: u64 = 16;
pub const TAG_MXR: u64 = 32;

#[inline(always)]
pub fn tlb_tag(va: u64, priv_bits: u64) -> u64 {
    ((va >> PAGE_SHIFT) << 6) | priv_bits | TAG_VALID
}

#[inline(always)]
pub fn tlb_index(va: u64) -> usize {
    ((va >> PAGE_SHIFT) as usize) & (TLB_SIZE - 1)
}

pub struct Tlb {
    pub fetch: Box<[TlbEntry; TLB_SIZE]>,
    pub load: Box<[TlbEntry; TLB_SIZE]>,
    pub store: Box<[TlbEntry; TLB_SIZE]>,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb {
            fetch: Box::new([TlbEntry::default(); TLB_SIZE]),
            load: Box::new([TlbEntry::default(); TLB_SIZE]),
            store: Box::new([TlbEntry::default(); TLB_SIZE]),
        }
    }
}

impl Tlb {
    pub fn flush(&mut self) {
        self.fetch.fill(TlbEntry::default());
        self.load.fill(TlbEntry::default());
        self.store.fill(TlbEntry::default());
    }

    pub fn table(&mut self, a: Access) -> &mut [TlbEntry; TLB_SIZE] {
        match a {
            Access::Fetch => &mut self.fetch,
            Access::Load => &mut self.load,
            Access::Store => &mut self.store,
        }
    }
}

/// Successful translation.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    pub pa: u64,
    /// Whether the whole 4 KiB page around `pa` has the same permission
    /// outcome (PMP-wise), so it may be cached in the TLB.
    pub cacheable: bool,
}

const PTE_V: u64 = 1;
const PTE_R: u64 = 2;
const PTE_W: u64 = 4;
const PTE_X: u64 = 8;
const PTE_U: u64 = 16;
const PTE_A: u64 = 64;
const PTE_D: u64 = 128;

/// Translate `va` for an access at effective privilege `eff`. Err is the
/// exception cause (page fault or access fault); tval is `va`.
/// `pmp` caches PMP decisions (see [`PmpCache`]); it must have been
/// cleared since the PMP CSRs last changed. `trace` receives the
/// page-table entries a walk read (none when there was no walk).
pub fn translate(
    csrs: &Csrs,
    pmp: &mut PmpCache,
    ram: &mut Ram,
    va: u64,
    access: Access,
    eff: Priv,
    trace: &mut WalkTrace,
) -> Result<Translation, u64> {
    let mode = csrs.satp >> 60;
    trace.n = 0;
    let pa = if eff == Priv::Machine || mode == csr::SATP_MODE_BARE {
        va
    } else {
        walk(csrs, pmp, ram, va, access, eff, mode, trace)?
    };
    let (allowed, cacheable) = pmp.check_page(csrs, pa, access, eff);
    if !allowed {
        return Err(access.access_fault());
    }
    Ok(Translation { pa, cacheable })
}

#[allow(clippy::too_many_arguments)]
fn walk(
    csrs: &Csrs,
    pmp: &mut PmpCache,
    ram: &mut Ram,
    va: u64,
    access: Access,
    eff: Priv,
    mode: u64,
    trace: &mut WalkTrace,
) -> Result<u64, u64> {
    let levels: u32 = if mode == csr::SATP_MODE_SV48 { 4 } else { 3 };
    let va_bits = 12 + 9 * levels;
    // The upper bits must all equal the top translated bit.
    let top = (va as i64) >> (va_bits - 1);
    if top != 0 && top != -1 {
        return Err(access.page_fault());
    }
    let mstatus = csrs.mstatus;
    let mut table = (csrs.satp & ((1 << 44) - 1)) << PAGE_SHIFT;
    for level in (0..levels).rev() {
        let vpn = (va >> (12 + 9 * level)) & 0x1ff;
        let pte_addr = table + vpn * 8;
        // PTE reads are S-mode physical accesses, subject to PMP.
        if !pmp
            .check_page(csrs, pte_addr, Access::Load, Priv::Supervisor)
            .0
        {
            return Err(access.access_fault());
        }
        let pte = ram.read_u64(pte_addr).ok_or(access.access_fault())?;
        if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte >> 54 != 0 {
            return Err(access.page_fault());
        }
        let ppn = (pte >> 10) & ((1 << 44) - 1);
        if pte & (PTE_R | PTE_X) == 0 {
            // Pointer to the next level.
            if level == 0 || pte & (PTE_A | PTE_D | PTE_U) != 0 {
                return Err(access.page_fault());
            }
            trace.push(pte_addr, pte);
            table = ppn << PAGE_SHIFT;
            continue;
        }
        check_leaf_permissions(pte, mstatus, access, eff)?;
        // Superpages must be aligned.
        let low_mask = (1u64 << (9 * level)) - 1;
        if ppn & low_mask != 0 {
            return Err(access.page_fault());
        }
        // Hardware A/D update.
        let mut new = pte | PTE_A;
        if access == Access::Store {
            new |= PTE_D;
        }
        if new != pte && !ram.write_u64(pte_addr, new) {
            return Err(access.access_fault());
        }
        trace.push(pte_addr, new);
        let page_pa = (ppn | ((va >> 12) & low_mask)) << PAGE_SHIFT;
        return Ok(page_pa | (va & 0xfff));
    }
    Err(access.page_fault())
}

fn check_leaf_permissions(pte: u64, mstatus: u64, access: Access, eff: Priv) -> Result<(), u64> {
    let user_page = pte & PTE_U != 0;
    match eff {
        Priv::User if !user_page => return Err(access.page_fault()),
        Priv::Supervisor
            if user_page && (access == Access::Fetch || mstatus & csr::MSTATUS_SUM == 0) =>
        {
            return Err(access.page_fault());
        }
        _ => {}
    }
    let ok = match access {
        Access::Fetch => pte & PTE_X != 0,
        Access::Load => pte & PTE_R != 0 || (mstatus & csr::MSTATUS_MXR != 0 && pte & PTE_X != 0),
        Access::Store => pte & PTE_W != 0,
    };
    if ok {
        Ok(())
    } else {
        Err(access.page_fault())
    }
}

/// The PMP entries that can match, in priority order, each with its
/// address range `[lo, hi)`. Entries whose mode is OFF match nothing and
/// are skipped (a TOR entry's bottom is still the previous entry's
/// address, whatever that entry's mode); so are empty ranges.
fn pmp_active_ranges(csrs: &Csrs) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
    let mode_bits = u128::from_le_bytes([0x18; PMP_ENTRIES]);
    let mut active = u128::from_le_bytes(csrs.pmpcfg) & mode_bits;
    std::iter::from_fn(move || {
        while active != 0 {
            let i = (active.trailing_zeros() / 8) as usize;
            active &= !(0xffu128 << (8 * i));
            let prev_top = if i == 0 { 0 } else { csrs.pmpaddr[i - 1] << 2 };
            if let Some((lo, hi)) = pmp_range(csrs, i, prev_top) {
                return Some((i, lo, hi));
            }
        }
        None
    })
}

/// PMP decision for an access at `pa`. Returns (allowed, cacheable): the
/// second is true when every byte of the 4 KiB page around `pa` would get the
/// same decision, so the page may be cached in the TLB.
pub fn pmp_check_page(csrs: &Csrs, pa: u64, access: Access, eff: Priv) -> (bool, bool) {
    let page = pa & !0xfff;
    // The last page of the address space ends at 2^64: saturate (PMP
    // ranges end far below, so no comparison changes).
    let page_end = page.saturating_add(0x1000);
    let mut clean = true;
    for (i, lo, hi) in pmp_active_ranges(csrs) {
        if hi <= page || lo >= page_end {
            continue;
        }
        if pa >= lo && pa < hi {
            let whole_page = lo <= page && hi >= page_end;
            return (pmp_allows(csrs.pmpcfg[i], access, eff), clean && whole_page);
        }
        clean = false;
    }
    (eff == Priv::Machine, clean)
}

/// The page-table entries one walk read, in order, as they are in RAM
/// after it (the leaf with its A/D update).
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkTrace {
    n: usize,
    addr: [u64; 4],
    pte: [u64; 4],
}

impl WalkTrace {
    fn push(&mut self, addr: u64, pte: u64) {
        if let (Some(a), Some(p)) = (self.addr.get_mut(self.n), self.pte.get_mut(self.n)) {
            *a = addr;
            *p = pte;
            self.n += 1;
        }
    }
}

/// Entries of each [`WalkCache`] table.
const WALK_CACHE: usize = 512;

/// A data translation a walk made, with what the walk read.
#[derive(Clone, Copy, Default)]
struct WalkEntry {
    /// The data TLB tag (page and context); 0: empty.
    tag: u64,
    satp: u64,
    /// [`WalkCache::gen`] when made.
    gen: u64,
    pa_page: u64,
    trace: WalkTrace,
}

/// Data translations page walks made recently, kept so that a TLB miss
/// for one of them need not walk again — *without changing what the
/// guest sees*: the TLB (guest-visible, as Linux clears PTE A bits
/// without `sfence.vma`) still misses and is filled at exactly the same
/// accesses; only the walk is shortened. An entry is used only if every
/// page-table entry its walk read still holds the value it had after the
/// walk (the leaf's A, and D for stores, set), under the same satp, for
/// the same access kind and TLB context (privilege, SUM, MXR): a walk
/// now would read the same entries, take the same path, write nothing
/// (A/D are set), and pass the same PMP checks (every PMP change flushes
/// the TLB, which empties this cache). Not state: a cache, in the hart.
///
/// Direct-mapped TLB conflicts (hot pages with equal low VPN bits, which
/// depend on the guest's address-space layout) cost a walk per access;
/// this keeps such a miss cheap (issue #15).
pub struct WalkCache {
    load: Box<[WalkEntry; WALK_CACHE]>,
    store: Box<[WalkEntry; WALK_CACHE]>,
    /// Entries of other generations are empty.
    gen: u64,
}

impl Default for WalkCache {
    fn default() -> Self {
        WalkCache {
            load: Box::new([WalkEntry::default(); WALK_CACHE]),
            store: Box::new([WalkEntry::default(); WALK_CACHE]),
            gen: 1,
        }
    }
}

impl WalkCache {
    /// Forget every entry.
    pub fn clear(&mut self) {
        self.gen += 1;
    }

    fn slot(&mut self, access: Access, tag: u64) -> &mut WalkEntry {
        // Other bits than the TLB's index, so that pages that conflict
        // there do not here.
        let i = ((tag >> 6).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 55) as usize % WALK_CACHE;
        let table = if access == Access::Store {
            &mut self.store
        } else {
            &mut self.load
        };
        &mut table[i]
    }

    /// The physical page of a data access to `va` with TLB tag `tag`, if a
    /// walk made it and one now would read the same entries.
    pub fn lookup(&mut self, access: Access, tag: u64, satp: u64, ram: &Ram) -> Option<u64> {
        if access == Access::Fetch {
            return None;
        }
        let gen = self.gen;
        let e = *self.slot(access, tag);
        if e.tag != tag || e.satp != satp || e.gen != gen || e.trace.n == 0 {
            return None;
        }
        for k in 0..e.trace.n {
            if ram.read_u64(e.trace.addr[k]) != Some(e.trace.pte[k]) {
                return None;
            }
        }
        Some(e.pa_page)
    }

    /// Remember a walk's translation (`trace` as [`translate`] left it).
    pub fn insert(&mut self, access: Access, tag: u64, satp: u64, pa_page: u64, trace: &WalkTrace) {
        if trace.n == 0 || access == Access::Fetch {
            return;
        }
        let gen = self.gen;
        *self.slot(access, tag) = WalkEntry {
            tag,
            satp,
            gen,
            pa_page,
            trace: *trace,
        };
    }
}

/// A range of physical memory over which [`pmp_check_page`] decides the
/// same for every 4 KiB page inside, whatever the access and privilege:
/// one PMP entry (or none) matches all of it and no entry before that one
/// touches it. Looking a page up here instead of visiting the entries
/// gives the same answer; the range is found again after every change of
/// the PMP CSRs ([`PmpCache::clear`]). Not state: a cache, in the hart.
///
/// Every TLB miss checks PMP once per page-table level and once for the
/// page itself; visiting the entries each time was half of the time of a
/// workload whose hot pages miss the TLB (issue #15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmpCache {
    /// The pages `lo..hi` (empty when `lo >= hi`: nothing cached).
    lo: u64,
    hi: u64,
    /// The matching entry's configuration; `None`: no entry matches.
    cfg: Option<u8>,
}

impl PmpCache {
    /// Forget the range (the PMP CSRs changed).
    pub fn clear(&mut self) {
        *self = PmpCache::default();
    }

    /// [`pmp_check_page`], through the cached range when `pa`'s page is
    /// inside it; otherwise the entries are visited, and the range around
    /// `pa` becomes the cached one if there is one.
    #[inline]
    pub fn check_page(&mut self, csrs: &Csrs, pa: u64, access: Access, eff: Priv) -> (bool, bool) {
        let page = pa & !0xfff;
        if let Some(end) = page.checked_add(0x1000) {
            if page >= self.lo && end <= self.hi {
                let allowed = match self.cfg {
                    Some(cfg) => pmp_allows(cfg, access, eff),
                    None => eff == Priv::Machine,
                };
                return (allowed, true);
            }
        }
        let r = pmp_check_page(csrs, pa, access, eff);
        if r.1 {
            if let Some(range) = pmp_uniform_range(csrs, pa) {
                *self = range;
            }
        }
        r
    }
}

/// The largest range around `pa`'s page that one PMP entry (or none)
/// matches with no entry before it touching the range: every page inside
/// then gets `pa`'s page's decision from [`pmp_check_page`]. `None` when
/// an entry before the matching one touches the page, the matching one
/// does not cover all of it, or it is the last page of the address space.
fn pmp_uniform_range(csrs: &Csrs, pa: u64) -> Option<PmpCache> {
    let page = pa & !0xfff;
    let page_end = page.checked_add(0x1000)?;
    let (mut lo, mut hi) = (0u64, u64::MAX);
    // The same visit as `pmp_check_page`'s.
    for (i, elo, ehi) in pmp_active_ranges(csrs) {
        if ehi <= page {
            lo = lo.max(ehi);
            continue;
        }
        if elo >= page_end {
            hi = hi.min(elo);
            continue;
        }
        if pa >= elo && pa < ehi && elo <= page && ehi >= page_end {
            return Some(PmpCache {
                lo: lo.max(elo),
                hi: hi.min(ehi),
                cfg: Some(csrs.pmpcfg[i]),
            });
        }
        return None;
    }
    Some(PmpCache { lo, hi, cfg: None })
}

fn pmp_allows(cfg: u8, access: Access, eff: Priv) -> bool {
    if eff == Priv::Machine && cfg & csr::PMP_L == 0 {
        return true;
    }
    let bit = match access {
        Access::Fetch => csr::PMP_X,
        Access::Load => csr::PMP_R,
        Access::Store => csr::PMP_W,
    };
    cfg & bit != 0
}

/// Byte range [lo, hi) of PMP entry `i`, or None when off.
fn pmp_range(csrs: &Csrs, i: usize, prev_top: u64) -> Option<(u64, u64)> {
    let cfg = csrs.pmpcfg[i];
    let addr = csrs.pmpaddr[i];
    match csr::pmp_mode(cfg) {
        csr::PMP_TOR => {
            let hi = addr << 2;
            (prev_top < hi).then_some((prev_top, hi))
        }
        csr::PMP_NA4 => Some((addr << 2, (addr << 2) + 4)),
        csr::PMP_NAPOT => {
            let ones = addr.trailing_ones();
            let size_shift = ones + 3;
            if size_shift >= 64 {
                return Some((0, u64::MAX));
            }
            let base = (addr & !((1u64 << ones) - 1)) << 2;
            let base = base & !((1u64 << size_shift) - 1);
            Some((base, base.saturating_add(1u64 << size_shift)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
    }

    /// The cached PMP decision is always the one visiting the entries
    /// gives, over random configurations (OFF, TOR, NA4, NAPOT entries,
    /// overlapping, page-aligned or not) and addresses near their edges.
    #[test]
    fn the_pmp_cache_decides_as_the_entries_do() {
        let mut rng = Lcg(7);
        let accesses = [Access::Fetch, Access::Load, Access::Store];
        let privs = [Priv::User, Priv::Supervisor, Priv::Machine];
        let (mut hits, mut checks) = (0, 0);
        for _ in 0..2000 {
            let mut csrs = Csrs::reset();
            let entries = 1 + rng.next() as usize % 6;
            for i in 0..entries {
                let mode = rng.next() as u8 % 4;
                let perms = rng.next() as u8 & 7;
                let lock = if rng.next().is_multiple_of(8) {
                    csr::PMP_L
                } else {
                    0
                };
                csrs.pmpcfg[i] = (mode << 3) | perms | lock;
                // Addresses in a 64 KiB window so that entries meet.
                let addr = 0x2000_0000 + (rng.next() % 0x4000);
                csrs.pmpaddr[i] = match rng.next() % 4 {
                    0 => addr & !0x3ff, // page aligned (<< 2)
                    1 => addr | 0x1ff,  // NAPOT of 4 KiB
                    2 => (1 << 54) - 1, // everything
                    _ => addr,
                };
            }
            let mut cache = PmpCache::default();
            for _ in 0..200 {
                let pa = match rng.next() % 3 {
                    0 => 0x8000_0000 + (rng.next() % 0x1_0000),
                    1 => rng.next() << 11,
                    _ => u64::MAX - (rng.next() % 0x2000),
                };
                let access = accesses[rng.next() as usize % 3];
                let eff = privs[rng.next() as usize % 3];
                let before = cache;
                let page = pa & !0xfff;
                checks += 1;
                if page >= before.lo && page.checked_add(0x1000).is_some_and(|e| e <= before.hi) {
                    hits += 1;
                }
                assert_eq!(
                    cache.check_page(&csrs, pa, access, eff),
                    pmp_check_page(&csrs, pa, access, eff),
                    "pa {pa:#x}, {access:?}, {eff:?}, cache {cache:?}, pmpcfg {:?}, pmpaddr {:x?}",
                    csrs.pmpcfg,
                    csrs.pmpaddr
                );
            }
        }
        assert!(hits > checks / 10, "the cache was used: {hits} of {checks}");
    }
}
