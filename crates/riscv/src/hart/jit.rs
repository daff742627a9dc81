//! The translator, first milestone: basic blocks of RV64I + M (and the
//! compressed forms, which decode to the same operations) compiled to
//! x86-64 with dynasm-rs (see [`crate::engine`] for the design and why
//! dynasm-rs).
//!
//! # What a block is
//!
//! A run of instructions from one pc on one physical page (the current
//! fetch page, so the fetch translation is the interpreter's), keyed by
//! (pc, RAM page): the code bakes in virtual pcs (branch targets, `auipc`,
//! link values), so the same physical page mapped at two addresses has two
//! sets of blocks. A block ends after a branch or jump, before any
//! instruction it does not translate (CSR, system, illegal, a 4-byte
//! instruction straddling the page end; atomics and floating point run in
//! the block through [`helper_exec`]), at the page end
//! and after [`MAX_BLOCK`] instructions. The interpreter runs whatever the
//! translator leaves.
//!
//! # Chaining
//!
//! A block that ends by going to a pc known at translation time on its own
//! page (a branch either way, `jal`, running into the next instruction)
//! does so through a slot (`lea rax, [slot]; jmp [rax]`): an 8-byte cell,
//! followed by the target pc, that first points at the shared `slot`
//! routine, which leaves for the run loop with the slot's address; once
//! the run loop has found the target block it points the slot at that
//! block's chain entry, so the next time the jump goes straight there. A
//! branch back to its own block's first instruction (a loop in one block)
//! does not leave: it checks the budget for another pass and jumps back
//! to the code after the entry's register loads, the cached registers
//! still in host registers. Both blocks are on one page, so
//! they become stale together (a page's code changing invalidates both);
//! a flush drops the slots with the code (a slot is linked only if no
//! flush came between). `jalr` and targets on other pages look the next
//! block up in the jump cache from generated code (the shared `lookup`
//! routine): the fetch TLB must hit
//! for the target's page with the current privilege (what `enter_page`
//! requires, so the fetch is as allowed as the interpreter's), giving the
//! RAM page; the cached block must have that pc and page, its page's code
//! generation must be current, and it must not be empty; then it is
//! entered at its chain entry, else the run loop takes over. The run
//! loop's fetch page may then be stale, which it checks anyway (`pc` off
//! the fetch page goes through `enter_page`).
//!
//! # Exactness (DESIGN §3)
//!
//! - *icount*: [`Hart::run_jit`] enters a block only when its whole length
//!   fits in the budget left; otherwise the interpreter's fast loop runs
//!   the tail. A block entered through a slot checks the same itself at
//!   its chain entry (the instructions retired so far are in `Ctx::start`,
//!   moved on by each block before it jumps) and returns to the run loop
//!   if it does not fit. A block that leaves early (a trap, a store to
//!   code, an MMIO access that ends the slice) reports how many of its
//!   instructions retired.
//! - *guest registers* live in the `Hart`'s `x` array (rbx points 128
//!   bytes into it, so every register is an 8-bit displacement away),
//!   except that inside a block up to six of them (the ones its
//!   instructions use at least three times, most used first) are kept in
//!   r8-r11, rdi and r13: loaded at the block's entry, written back at
//!   every exit (those written in the block), all written back before and
//!   loaded again after every helper call (through one routine per block
//!   and helper), so a helper and the run loop see and change the same
//!   state the interpreter would. An ALU result stays in rax for the next
//!   instruction's first read.
//! - *loads and stores* hit inline in the interpreter's own TLB entries with
//!   the same tag compare and in-page check as `load_hit`/`store_hit` (one
//!   compare: the tag of the access's last byte against the entry of its
//!   first, which differ exactly when it crosses the page end); a miss
//!   calls a helper that refills the TLB from the walk cache and finishes
//!   the access as `load_hit`/`store_hit`, or runs the interpreter's
//!   `load_slow`/`store_slow`, with `retired` set to the instruction's
//!   count (MMIO sees the same time). A miss costs the block one `mov
//!   eax, meta; call; jmp` (the instruction's index, length, register,
//!   kind and offset in one word; the block's routine adds its pc). A
//!   trap there ends the block with the faulting pc and
//!   the count before it, and the run loop takes it exactly as the general
//!   loop would; a helper that changed the code epoch or asked for a yield
//!   ends the block after its instruction.
//! - *self-modifying code*: a store marks its page dirty as
//!   `Ram::touch_page` does and, if the page holds decoded code, calls it
//!   (dropping that code and moving the code epoch) and ends the block
//!   after the store, as the fast loop does. A translation records its
//!   page's `code_gen`; it is used only while that is unchanged.
//! - *code cache*: one fixed arena (2 MiB aligned, huge pages advised),
//!   starting with the routines every block shares (entry and exit, the
//!   jump-cache lookup, the unlinked-slot exit, the helper calls), which
//!   stay; when it or the block table is full, every translation is
//!   dropped and translating starts again, so a guest that rewrites code
//!   in a loop cannot grow it.

use super::{Hart, JitStats, Trap};
use crate::bus::Bus;
use crate::decode::{self, Insn, Op};
use crate::mmu::{TlbEntry, TAG_VALID, TLB_SIZE};
use crate::ram::{Ram, PAGE_SHIFT};
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::offset_of;

/// Most instructions in one block (the index fits the helpers' 8 bits).
pub const MAX_BLOCK: usize = 64;
/// Bytes of host code before everything is dropped and translated anew
/// (address space reserved up front; host memory is used only as code is
/// written). A boot to init emits ~49 MB (~450 bytes a block), a whole
/// `lockstep bench` run ~60 MB: no flush.
const ARENA_SIZE: usize = 128 << 20;
// Blocks reach the shared routines at the arena's start with rel32.
const _: () = assert!(ARENA_SIZE < 1 << 31);
/// Most blocks before everything is dropped.
const MAX_BLOCKS: usize = 1 << 18;
/// Direct-mapped cache in front of the block table.
const JCACHE: usize = 1 << 14;

const _: () = assert!(std::mem::size_of::<TlbEntry>() == 16);
const _: () = assert!(TLB_SIZE == 256);

/// What the generated code and the helpers share. The first fields are
/// read by generated code at fixed offsets.
#[repr(C)]
pub(super) struct Ctx {
    /// Host address of RAM's first byte.
    ram_bytes: *mut u8,
    tlb_load: *const TlbEntry,
    tlb_store: *const TlbEntry,
    /// `data_priv | TAG_VALID`: the low bits of a data TLB tag.
    tag_bits: u64,
    store_check: *const u8,
    helper_load: usize,
    helper_store: usize,
    helper_touch: usize,
    helper_exec: usize,
    /// 0: the block ran to its end; 1: a helper trapped (`trap`); 2: a
    /// helper ended the block after its instruction.
    status: u64,
    /// Instructions of the block that retired.
    count: u64,
    /// Where execution continues (the trapping pc for status 1).
    next_pc: u64,
    /// `retired` when the current block began (blocks that jump straight
    /// into the next one move it on).
    start: u64,
    /// `retired` may not pass this (the hart's `limit`).
    limit: u64,
    /// Set by an exit that can be linked: the address of its jump slot.
    link: usize,
    /// For jumps to blocks found at run time: the fetch TLB, its tag bits
    /// (`priv_mode | TAG_VALID`), the jump cache and RAM's per-page code
    /// generations.
    tlb_fetch: *const TlbEntry,
    fetch_tag: u64,
    jcache: *const Block,
    code_gen: *const u64,
    /// Jumps made through the jump cache (counted by generated code).
    cache_jumps: u64,
    /// The stack pointer of block code (set by the entry trampoline): a
    /// shared routine that ends the block from inside a call returns to
    /// it before the exit trampoline.
    rsp: u64,
    // Read by the helpers only.
    epoch: u64,
    hart: *mut Hart,
    ram: *mut Ram,
    bus: *mut (),
    trap: Option<Trap>,
}

const C_RAM: i32 = offset_of!(Ctx, ram_bytes) as i32;
const C_TLB_LOAD: i32 = offset_of!(Ctx, tlb_load) as i32;
const C_TLB_STORE: i32 = offset_of!(Ctx, tlb_store) as i32;
const C_TAG: i32 = offset_of!(Ctx, tag_bits) as i32;
const C_STORE_CHECK: i32 = offset_of!(Ctx, store_check) as i32;
const C_LOAD: i32 = offset_of!(Ctx, helper_load) as i32;
const C_STORE: i32 = offset_of!(Ctx, helper_store) as i32;
const C_TOUCH: i32 = offset_of!(Ctx, helper_touch) as i32;
const C_EXEC: i32 = offset_of!(Ctx, helper_exec) as i32;
const C_STATUS: i32 = offset_of!(Ctx, status) as i32;
const C_COUNT: i32 = offset_of!(Ctx, count) as i32;
const C_NEXT_PC: i32 = offset_of!(Ctx, next_pc) as i32;
const C_START: i32 = offset_of!(Ctx, start) as i32;
const C_LIMIT: i32 = offset_of!(Ctx, limit) as i32;
const C_LINK: i32 = offset_of!(Ctx, link) as i32;
const C_TLB_FETCH: i32 = offset_of!(Ctx, tlb_fetch) as i32;
const C_FETCH_TAG: i32 = offset_of!(Ctx, fetch_tag) as i32;
const C_JCACHE: i32 = offset_of!(Ctx, jcache) as i32;
const C_CODE_GEN: i32 = offset_of!(Ctx, code_gen) as i32;
const C_CACHE_JUMPS: i32 = offset_of!(Ctx, cache_jumps) as i32;
const C_RSP: i32 = offset_of!(Ctx, rsp) as i32;
// Block code reaches these with 8-bit displacements.
const _: () = assert!(C_START < 128 && C_LIMIT < 128 && C_STORE_CHECK < 128 && C_TAG < 128);
const _: () = assert!(MAX_BLOCK < 128);
const B_PC: i32 = offset_of!(Block, pc) as i32;
const B_PAGE: i32 = offset_of!(Block, page) as i32;
const B_GEN: i32 = offset_of!(Block, gen) as i32;
const B_CHAIN: i32 = offset_of!(Block, chain) as i32;
const _: () = assert!(std::mem::size_of::<Block>() == 48);

/// How the translator stopped.
pub(super) enum JitStop {
    /// Continue at this pc (with the interpreter's general loop, which
    /// runs one instruction and comes back).
    Pc(u64),
    /// The instruction at this pc trapped; take the trap there.
    Trap(Trap, u64),
}

/// A multiplicative hash of the block keys (pc, page): they are not
/// attacker-chosen in a way that matters (the guest can only slow its own
/// lookups), and SipHash costs more than the lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A region of host memory that is readable, writable and executable,
/// owned by the translator.
struct Arena {
    ptr: *mut u8,
    size: usize,
    used: usize,
    /// The whole mapping (`ptr` is its first 2 MiB boundary).
    map: *mut libc::c_void,
    map_len: usize,
}

/// Huge-page size the arena is aligned to.
const HUGE: usize = 2 << 20;

impl Arena {
    fn new(size: usize) -> Option<Arena> {
        let map_len = size + HUGE;
        // SAFETY: an anonymous private mapping, no address hint; the result
        // is checked before use and unmapped only in `drop`.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let skip = (map as usize).next_multiple_of(HUGE) - map as usize;
        // SAFETY: `skip < HUGE`, so `[ptr, ptr + size)` is inside the
        // mapping.
        let ptr = unsafe { map.cast::<u8>().add(skip) };
        // Huge pages where the host allows them (THP in `madvise` mode):
        // far fewer page faults as code is written and fewer iTLB misses
        // running it. Advice only: failure changes nothing.
        // SAFETY: advice on a range inside the mapping just made.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::madvise(ptr.cast(), size, libc::MADV_HUGEPAGE);
        }
        Some(Arena {
            ptr,
            size,
            used: 0,
            map,
            map_len,
        })
    }

    fn next_addr(&self) -> usize {
        self.ptr as usize + self.used
    }

    /// Copy `code` in (16-byte aligned); its address, or `None` if full.
    fn push(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(16);
        if start + code.len() > self.size {
            return None;
        }
        // SAFETY: `start + code.len() <= size`, inside the mapping; nothing
        // executes this part of the arena yet (it is past every block).
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.ptr.add(start), code.len());
            self.used = start + code.len();
            Some(self.ptr.add(start))
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no code runs in
        // it any more (blocks run only inside `run_jit`, which borrows it).
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Block {
    pc: u64,
    page: usize,
    gen: u64,
    /// Instructions; 0: the first one is left to the interpreter.
    len: u32,
    /// Where the run loop enters it (it checked the budget).
    code: *const u8,
    /// Where other blocks jump in: checks the budget first.
    chain: *const u8,
}

/// An empty jump-cache slot (no instruction is at an odd pc).
const EMPTY: Block = Block {
    pc: 1,
    page: 0,
    gen: 0,
    len: 0,
    code: std::ptr::null(),
    chain: std::ptr::null(),
};

/// Addresses of the routines all blocks share (at the start of the
/// arena, kept on a flush).
#[derive(Clone, Copy)]
struct Globals {
    /// Leave the block: continue at rax, rcx of its instructions retired.
    exit: usize,
    /// Go on at rax through the jump cache (or leave).
    lookup: usize,
    /// The first target of every slot: leave, asking the run loop to
    /// link the slot in rax.
    slot: usize,
    /// Called to run a helper: load, store, touch, exec ([`Helper`]).
    helpers: [usize; 4],
}

/// The shared routines that call a helper (index into
/// [`Globals::helpers`]).
#[derive(Clone, Copy)]
enum Helper {
    Load = 0,
    Store = 1,
    Touch = 2,
    Exec = 3,
}

type EnterFn = unsafe extern "sysv64" fn(x: *mut u64, ctx: *mut Ctx, code: *const u8);

/// The translator's code cache, one per hart.
pub struct Jit {
    arena: Arena,
    /// Bytes of trampolines at the start of the arena (kept on a flush).
    trampolines: usize,
    enter: EnterFn,
    glob: Globals,
    blocks: Vec<Block>,
    map: HashMap<(u64, usize), u32, BuildHasherDefault<KeyHasher>>,
    /// Blocks by pc, direct-mapped (one memory access on a hit); an empty
    /// slot has a pc no block has (odd).
    jcache: Vec<Block>,
    ram_id: Option<u64>,
    /// Counts flushes (a slot to link must be from the current code).
    flushed: u64,
    max_blocks: usize,
    stats: JitStats,
}

// SAFETY: the arena and the code pointers into it belong to this `Jit`
// alone; they are used only by the thread that runs the hart (inside
// `Hart::run`, which holds `&mut Hart`).
unsafe impl Send for Jit {}

impl Jit {
    /// A translator, or `None` if the host refuses executable memory.
    pub fn new() -> Option<Jit> {
        Self::with_limits(ARENA_SIZE, MAX_BLOCKS)
    }

    /// A translator whose cache holds at most `arena` bytes of code and
    /// `max_blocks` blocks.
    fn with_limits(arena: usize, max_blocks: usize) -> Option<Jit> {
        let mut arena = Arena::new(arena)?;
        let mut ops = VecAssembler::<X64Relocation>::new(arena.next_addr());
        let [exit, g_exit, g_bail, g_lookup, g_slot, g_load, g_store, g_touch, g_exec] =
            [(); 9].map(|_| ops.new_dynamic_label());
        dynasm!(ops
            ; .arch x64
            ; push rbx
            ; push rbp
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; sub rsp, 8
            // rbx points 128 bytes into the `x` array (`xd`).
            ; lea rbx, [rdi + X_BIAS]
            ; mov rbp, rsi
            ; mov QWORD [rbp + C_RSP], rsp
            ; mov r12, QWORD [rbp + C_RAM]
            ; mov r14, QWORD [rbp + C_TLB_LOAD]
            ; mov r15, QWORD [rbp + C_TLB_STORE]
            ; jmp rdx
            ; =>exit
            ; add rsp, 8
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbp
            ; pop rbx
            ; ret
            // Leave the block: continue at rax, ecx of its instructions
            // retired.
            ; .align 16
            ; =>g_exit
            ; mov QWORD [rbp + C_NEXT_PC], rax
            ; mov QWORD [rbp + C_COUNT], rcx
            ; jmp =>exit
            // Leave from inside a shared routine (a helper set `status`,
            // `count` and `next_pc`, or `count` and `next_pc`).
            ; .align 16
            ; =>g_bail
            ; mov rsp, QWORD [rbp + C_RSP]
            ; jmp =>exit
            // A linkable exit not linked yet: rax is its slot, followed
            // by the target pc; `start` already counts the block.
            ; .align 16
            ; =>g_slot
            ; mov QWORD [rbp + C_LINK], rax
            ; mov rax, QWORD [rax + 8]
            ; mov QWORD [rbp + C_NEXT_PC], rax
            ; mov QWORD [rbp + C_COUNT], 0
            ; jmp =>exit
            // Go on at the pc in rax (`start` already counts the block):
            // straight into its block if the jump cache has it, current,
            // on a page the fetch TLB maps as `enter_page` requires; to
            // the run loop otherwise.
            ; .align 16
            ; =>g_lookup
            // The fetch TLB entry of the target's page: a hit, as in
            // `enter_page`, gives its RAM page (rcx).
            ; mov rcx, rax
            ; shr rcx, PAGE_SHIFT as i8
            ; movzx edx, cl
            ; shl edx, 4
            ; shl rcx, 6
            ; or rcx, QWORD [rbp + C_FETCH_TAG]
            ; mov rsi, QWORD [rbp + C_TLB_FETCH]
            ; cmp rcx, QWORD [rsi + rdx]
            ; jne >miss
            ; mov rcx, rax
            ; and rcx, -0x1000
            ; add rcx, QWORD [rsi + rdx + 8]
            ; shr rcx, PAGE_SHIFT as i8
            // The jump cache's block for the target: same pc, same page,
            // the page's code unchanged since, not empty.
            ; mov rdx, rax
            ; shr rdx, 1
            ; and edx, (JCACHE - 1) as i32
            ; imul edx, edx, 48
            ; add rdx, QWORD [rbp + C_JCACHE]
            ; cmp rax, QWORD [rdx + B_PC]
            ; jne >miss
            ; cmp rcx, QWORD [rdx + B_PAGE]
            ; jne >miss
            ; mov rsi, QWORD [rbp + C_CODE_GEN]
            ; mov rsi, QWORD [rsi + rcx * 8]
            ; cmp rsi, QWORD [rdx + B_GEN]
            ; jne >miss
            ; mov rsi, QWORD [rdx + B_CHAIN]
            ; test rsi, rsi
            ; jz >miss
            ; add QWORD [rbp + C_CACHE_JUMPS], 1
            ; jmp rsi
            ; miss:
            ; mov QWORD [rbp + C_NEXT_PC], rax
            ; mov QWORD [rbp + C_COUNT], 0
            ; jmp =>exit
            // The memory helpers, called from block code (with every
            // cached guest register written back): eax = meta, rsi = the
            // address, rcx = the block's pc. They return, or end the
            // block.
            ; .align 16
            ; =>g_load
            ; sub rsp, 8
            ; mov r8d, eax
            ; mov rdi, rbp
            ; call QWORD [rbp + C_LOAD]
            ; cmp QWORD [rbp + C_STATUS], 0
            ; jne =>g_bail
            ; add rsp, 8
            ; ret
            ; .align 16
            ; =>g_store
            ; sub rsp, 8
            ; mov r8d, eax
            ; mov rdi, rbp
            ; call QWORD [rbp + C_STORE]
            ; cmp QWORD [rbp + C_STATUS], 0
            ; jne =>g_bail
            ; add rsp, 8
            ; ret
            // A store to a page whose store-check byte is set: rsi = the
            // RAM page, eax = meta, rcx = the block's pc.
            ; .align 16
            ; =>g_touch
            ; sub rsp, 8
            ; mov r8d, eax
            ; mov rdi, rbp
            ; call QWORD [rbp + C_TOUCH]
            ; test eax, eax
            ; jnz =>g_bail
            ; add rsp, 8
            ; ret
            // An instruction through the interpreter: esi = its bits,
            // rdx = its pc, ecx = its index in the block.
            ; .align 16
            ; =>g_exec
            ; sub rsp, 8
            ; mov rdi, rbp
            ; call QWORD [rbp + C_EXEC]
            ; cmp QWORD [rbp + C_STATUS], 0
            ; jne =>g_bail
            ; add rsp, 8
            ; ret
        );
        let at = |l: dynasmrt::DynamicLabel, ops: &VecAssembler<X64Relocation>| {
            ops.labels().resolve_dynamic(l).ok().map(|o| o.0)
        };
        let offs =
            [g_exit, g_lookup, g_slot, g_load, g_store, g_touch, g_exec].map(|l| at(l, &ops));
        let code = ops.finalize().ok()?;
        let enter_ptr = arena.push(&code)? as usize;
        let [g_exit, g_lookup, g_slot, g_load, g_store, g_touch, g_exec] =
            offs.map(|o| o.map(|o| enter_ptr + o));
        let glob = Globals {
            exit: g_exit?,
            lookup: g_lookup?,
            slot: g_slot?,
            helpers: [g_load?, g_store?, g_touch?, g_exec?],
        };
        // SAFETY: `enter_ptr` is the start of the trampoline just written,
        // which follows the SysV calling convention for this signature: it
        // saves every callee-saved register it uses and returns through
        // the exit trampoline after the block it jumps to.
        let enter: EnterFn =
            unsafe { std::mem::transmute::<*const u8, EnterFn>(enter_ptr as *const u8) };
        Some(Jit {
            trampolines: arena.used,
            glob,
            arena,
            enter,
            blocks: Vec::new(),
            map: HashMap::default(),
            jcache: vec![EMPTY; JCACHE],
            ram_id: None,
            flushed: 0,
            max_blocks,
            stats: JitStats::default(),
        })
    }

    pub fn stats(&self) -> JitStats {
        self.stats
    }

    /// Drop every translation and forget the RAM they were made from (the
    /// hart's state was replaced: see [`Hart::restore`]).
    pub(super) fn invalidate(&mut self) {
        self.flush();
        self.ram_id = None;
    }

    /// Drop every translation.
    fn flush(&mut self) {
        self.flushed += 1;
        self.blocks.clear();
        self.map.clear();
        self.jcache.fill(EMPTY);
        self.arena.used = self.trampolines;
    }

    /// The block for `pc` on RAM page `page`, translated if needed.
    fn block(&mut self, ram: &Ram, pc: u64, page: usize) -> Option<Block> {
        let slot = ((pc >> 1) as usize) & (JCACHE - 1);
        let gen = ram.code_gen(page);
        let b = self.jcache[slot];
        if b.pc == pc && b.page == page && b.gen == gen {
            return Some(b);
        }
        if let Some(&i) = self.map.get(&(pc, page)) {
            let b = self.blocks[i as usize];
            if b.gen == gen {
                self.jcache[slot] = b;
                return Some(b);
            }
        }
        // Full (the table now, or the arena below): start again with an
        // empty cache. Never after translating: the new block's code would
        // count as free space.
        if self.blocks.len() >= self.max_blocks {
            self.flush();
            self.stats.flushes += 1;
        }
        // Timed for the counters only (what translating costs the run).
        let started = std::time::Instant::now();
        let mut b = self.translate(ram, pc, page, gen);
        if b.is_none() {
            self.flush();
            self.stats.flushes += 1;
            b = self.translate(ram, pc, page, gen);
        }
        self.stats.translate_ns += started.elapsed().as_nanos() as u64;
        let b = b?;
        let i = self.blocks.len() as u32;
        self.blocks.push(b);
        self.map.insert((pc, page), i);
        self.jcache[slot] = b;
        self.stats.blocks += 1;
        Some(b)
    }

    /// Translate the block at `pc` (on RAM page `page`); `None` when the
    /// arena is full.
    fn translate(&mut self, ram: &Ram, pc: u64, page: usize, gen: u64) -> Option<Block> {
        let (insns, raws): (Vec<Insn>, Vec<u32>) = block_insns(ram, pc, page).into_iter().unzip();
        let mut b = Block {
            pc,
            page,
            gen,
            len: insns.len() as u32,
            code: std::ptr::null(),
            chain: std::ptr::null(),
        };
        if insns.is_empty() {
            return Some(b);
        }
        let base = self.arena.next_addr().next_multiple_of(16);
        // Room for a typical block up front (growing the buffers showed
        // in profiles of a boot).
        let mut ops = VecAssembler::new_with_capacity(base, 2048, 4, 0, 64, 4, 64);
        let head = ops.new_dynamic_label();
        let mut e = Emitter {
            ops,
            stubs: Vec::new(),
            page_va: pc & !0xfff,
            slots: Vec::new(),
            host: cached_registers(&insns),
            dirty: 0,
            g: self.glob,
            wrappers: [None; 4],
            base,
            block_pc: pc,
            rax_holds: None,
            carry: None,
            bad: false,
            head,
        };
        let n = insns.len();
        // The entry for jumps from other blocks: enough budget left for
        // this whole block, or back to the run loop (nothing is loaded or
        // written yet).
        let g_exit = self.glob.exit;
        dynasm!(e.ops
            ; .arch x64
            ; mov rax, QWORD [BYTE rbp + C_LIMIT as i8]
            ; sub rax, QWORD [BYTE rbp + C_START as i8]
        );
        // cmp rax, n (imm8)
        e.ops.extend([0x48, 0x83, 0xf8, n as u8]);
        dynasm!(e.ops ; .arch x64 ; jae BYTE >body);
        e.mov_imm(RAX, pc);
        dynasm!(e.ops ; .arch x64 ; xor ecx, ecx);
        e.rel32(0xe9, g_exit);
        dynasm!(e.ops ; .arch x64 ; body:);
        let entry = e.ops.offset().0;
        e.reload();
        dynasm!(e.ops ; .arch x64 ; =>head);
        let mut ipc = pc;
        for (k, (i, &raw)) in insns.iter().zip(&raws).enumerate() {
            e.carry = e.rax_holds.take();
            if via_helper(i.op) {
                e.carry = None;
                e.exec(raw, ipc, k);
            } else {
                e.insn(i, ipc, k, n);
            }
            ipc = ipc.wrapping_add(i.size());
        }
        let last = insns[n - 1];
        if !ends_block(last.op) {
            e.exit_to(n as u64, ipc);
        }
        e.stubs();
        let slots = e.slots();
        if e.bad {
            return None;
        }
        let mut code = e.ops.finalize().ok()?;
        // Each slot starts out leaving for the run loop, which links it.
        for slot in slots {
            code.get_mut(slot..slot + 8)?
                .copy_from_slice(&(self.glob.slot as u64).to_le_bytes());
        }
        let at = self.arena.push(&code)?;
        if at as usize != base {
            return None;
        }
        b.chain = at;
        // SAFETY: `entry` is an offset into the code just copied there.
        b.code = unsafe { at.add(entry) };
        self.stats.code_bytes += code.len() as u64;
        Some(b)
    }
}

/// Branches and jumps: the last instruction of a block.
fn ends_block(op: Op) -> bool {
    matches!(
        op,
        Op::Jal | Op::Jalr | Op::Beq | Op::Bne | Op::Blt | Op::Bge | Op::Bltu | Op::Bgeu
    )
}

/// Atomics and floating point: run inside blocks by a helper that calls
/// the interpreter's own `execute_rare` (the exact soft-float, the LR/SC
/// reservation), instead of ending the block for the interpreter. They
/// change no privilege, translation or control flow (checked after each
/// all the same), only registers, fflags, mstatus.FS, the reservation
/// and memory.
fn via_helper(op: Op) -> bool {
    let n = op as u8;
    (n >= Op::LrW as u8 && n <= Op::AmoMaxuD as u8) || n >= Op::Flw as u8
}

// `via_helper` relies on the order of `Op`: atomics, then F and D last.
const _: () = assert!((Op::AmoMaxuD as u8) < (Op::Flw as u8));
const _: () = assert!((Op::FcvtDS as u8) >= (Op::Flw as u8));
const _: () = assert!((Op::Ecall as u8) < (Op::LrW as u8));
const _: () = assert!((Op::Csrrci as u8) < (Op::LrW as u8));
const _: () = assert!((Op::SfenceVma as u8) < (Op::LrW as u8));
const _: () = assert!((Op::Wfi as u8) < (Op::LrW as u8));
const _: () = assert!((Op::Mret as u8) < (Op::LrW as u8));
const _: () = assert!((Op::Sret as u8) < (Op::LrW as u8));

/// Whether the translator emits code for `op`.
fn translated(op: Op) -> bool {
    use Op::*;
    via_helper(op)
        || ends_block(op)
        || alu_inline(op)
        || alu_helper(op).is_some()
        || matches!(
            op,
            Lb | Lh | Lw | Ld | Lbu | Lhu | Lwu | Sb | Sh | Sw | Sd | Fence | FenceI
        )
}

fn alu_inline(op: Op) -> bool {
    use Op::*;
    matches!(
        op,
        Addi | Add
            | Lui
            | Auipc
            | Slti
            | Sltiu
            | Xori
            | Ori
            | Andi
            | Slli
            | Srli
            | Srai
            | Sub
            | Sll
            | Slt
            | Sltu
            | Xor
            | Srl
            | Sra
            | Or
            | And
            | Addiw
            | Slliw
            | Srliw
            | Sraiw
            | Addw
            | Subw
            | Sllw
            | Srlw
            | Sraw
            | Mul
            | Mulh
            | Mulhu
            | Mulw
    )
}

/// The instructions of the block at `pc` on RAM page `page`, decoded from
/// RAM's bytes (what the interpreter's decoded cache holds too: it is kept
/// exactly coherent with RAM).
fn block_insns(ram: &Ram, pc: u64, page: usize) -> Vec<(Insn, u32)> {
    let bytes = ram.bytes();
    let base = page << PAGE_SHIFT;
    let mut off = (pc & 0xfff) as usize;
    let mut out = Vec::new();
    while off < 0x1000 && out.len() < MAX_BLOCK {
        let at = base + off;
        let Some(lo) = bytes.get(at..at + 2) else {
            break;
        };
        let lo = u16::from_le_bytes([lo[0], lo[1]]) as u32;
        let raw = if decode::insn_len(lo) == 4 {
            if off == 0xffe {
                break; // straddles the page end: the interpreter's
            }
            let Some(w) = bytes.get(at..at + 4) else {
                break;
            };
            u32::from_le_bytes([w[0], w[1], w[2], w[3]])
        } else {
            lo
        };
        let i = decode::decode(raw);
        if !translated(i.op) {
            break;
        }
        out.push((i, raw));
        off += i.size() as usize;
        if ends_block(i.op) {
            break;
        }
    }
    out
}

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RSI: u8 = 6;
const RDI: u8 = 7;

/// Where rbx points into the `x` array: every register is within a
/// signed byte of it (shorter instructions than from `x[0]`).
const X_BIAS: i32 = 128;

/// Displacement of guest register `r` from rbx.
fn xd(r: u8) -> i8 {
    (8 * (r & 31) as i32 - X_BIAS) as i8
}

/// Host registers that hold guest registers inside a block (generated
/// code writes them back and loads them again around helper calls, which
/// may change any guest register; the scratch registers rax, rcx, rdx and
/// rsi stay free; rdi is a helper's first argument only after the
/// write-back).
const CACHE_HOST: [u8; 6] = [8, 9, 10, 11, 7, 13];

/// Which guest registers the block keeps in host registers: the most used
/// ones (reads and writes, counted from the instruction fields), those
/// used at least three times (a cached register costs a load at entry
/// and a store at exits when written). Index: guest register; value:
/// host register, 0 for none.
fn cached_registers(insns: &[Insn]) -> [u8; 32] {
    let mut uses = [0u32; 32];
    for i in insns {
        let (rs1, rs2) = reads(i);
        for r in [rs1, rs2, Some(i.rd())].into_iter().flatten() {
            uses[(r & 31) as usize] += 1;
        }
    }
    uses[0] = 0;
    let mut order: Vec<usize> = (1..32).filter(|&r| uses[r] >= 3).collect();
    // Most used first; ties by register number (deterministic).
    order.sort_by_key(|&r| (std::cmp::Reverse(uses[r]), r));
    let mut host = [0u8; 32];
    for (&r, &h) in order.iter().zip(CACHE_HOST.iter()) {
        host[r] = h;
    }
    host
}

/// The source registers instruction `i` reads (for the use counts only).
fn reads(i: &Insn) -> (Option<u8>, Option<u8>) {
    use Op::*;
    match i.op {
        Lui | Auipc | Jal | Fence | FenceI => (None, None),
        Addi | Slti | Sltiu | Xori | Ori | Andi | Slli | Srli | Srai | Addiw | Slliw | Srliw
        | Sraiw | Jalr | Lb | Lh | Lw | Ld | Lbu | Lhu | Lwu => (Some(i.rs1), None),
        _ => (Some(i.rs1), Some(i.rs2)),
    }
}

/// Out-of-line code of a block, emitted after its straight-line part: a
/// load or store that missed the TLB (the address in rsi), or a store to
/// a page that is not marked dirty or holds decoded code (its index in
/// rsi). Calls the helper through the block's routine for it, with the
/// instruction's [`meta`] in eax, and goes on at `done`.
struct Stub {
    label: dynasmrt::DynamicLabel,
    done: dynasmrt::DynamicLabel,
    helper: Helper,
    meta: u32,
}

struct Emitter {
    ops: VecAssembler<X64Relocation>,
    stubs: Vec<Stub>,
    /// The virtual page of the block (targets on it can be linked).
    page_va: u64,
    /// Linkable exits: (slot label, target pc).
    slots: Vec<(dynasmrt::DynamicLabel, u64)>,
    /// Guest register -> the host register holding it in this block (0:
    /// none, it is read and written in the `x` array).
    host: [u8; 32],
    /// Cached guest registers written so far on the straight-line path:
    /// the `x` array is behind for these until they are written back.
    dirty: u32,
    /// The shared routines.
    g: Globals,
    /// The block's own routines that call a shared helper routine with
    /// every cached register written back before and loaded again after
    /// (made when first needed; only if the block caches registers).
    wrappers: [Option<dynasmrt::DynamicLabel>; 4],
    /// Address the code will be copied to.
    base: usize,
    /// The guest pc of the block's first instruction.
    block_pc: u64,
    /// The guest register the last instruction left in rax (an uncached
    /// one it wrote last), for the next instruction's first read.
    rax_holds: Option<u8>,
    /// The block's first instruction, after the entry's register loads.
    head: dynasmrt::DynamicLabel,
    /// What `rax_holds` said when this instruction began, until its first
    /// read of a register (which is emitted before anything else writes
    /// rax).
    carry: Option<u8>,
    /// A shared routine was out of reach (cannot happen: the arena is
    /// smaller than 2 GiB); the block is not used.
    bad: bool,
}

impl Emitter {
    /// A `jmp` (0xe9) or `call` (0xe8) to `target`, a shared routine at
    /// the start of the arena (within ±2 GiB: the arena is smaller).
    fn rel32(&mut self, opcode: u8, target: usize) {
        let after = self.base + self.ops.offset().0 + 5;
        let rel = (target as i64).wrapping_sub(after as i64);
        self.ops.push(opcode);
        self.ops.push_i32(rel as i32);
        if i32::try_from(rel).is_err() {
            self.bad = true;
        }
    }

    /// Host register `dst` = `v`, in the shortest encoding.
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn mov_imm(&mut self, dst: u8, v: u64) {
        // Encoded here: dynasm-rs adds an empty REX prefix for a register
        // chosen at run time.
        let rex_b = u8::from(dst >= 8);
        if v <= u64::from(u32::MAX) {
            // mov r32, imm32 (zero-extends)
            if rex_b != 0 {
                self.ops.push(0x41);
            }
            self.ops.push(0xb8 + (dst & 7));
            self.ops.push_u32(v as u32);
        } else if v as i64 == i64::from(v as i32) {
            // mov r64, imm32 (sign-extends)
            self.ops.extend([0x48 | rex_b, 0xc7, 0xc0 + (dst & 7)]);
            self.ops.push_u32(v as u32);
        } else {
            dynasm!(self.ops ; .arch x64 ; mov Rq(dst), QWORD v as i64);
        }
    }

    /// Host register `dst` = guest register `r`.
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn get(&mut self, dst: u8, r: u8) {
        // The instruction's first read may find the register in rax,
        // where the one before computed it.
        if let Some(c) = self.carry.take() {
            if c == r & 31 {
                if dst != RAX {
                    dynasm!(self.ops ; .arch x64 ; mov Rq(dst), rax);
                }
                return;
            }
        }
        let h = self.host[(r & 31) as usize];
        if h != 0 {
            dynasm!(self.ops ; .arch x64 ; mov Rq(dst), Rq(h));
        } else {
            dynasm!(self.ops ; .arch x64 ; mov Rq(dst), QWORD [BYTE rbx + xd(r)]);
        }
    }

    /// Guest register `rd` = host register `src` (nothing for x0).
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn put(&mut self, src: u8, rd: u8) {
        let rd = rd & 31;
        if rd == 0 {
            return;
        }
        let h = self.host[rd as usize];
        if h != 0 {
            dynasm!(self.ops ; .arch x64 ; mov Rq(h), Rq(src));
            self.dirty |= 1 << rd;
        } else {
            dynasm!(self.ops ; .arch x64 ; mov QWORD [BYTE rbx + xd(rd)], Rq(src));
        }
    }

    /// Guest register `rd` = `v` (nothing for x0).
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn put_imm(&mut self, rd: u8, v: u64) {
        let rd = rd & 31;
        if rd == 0 {
            return;
        }
        let h = self.host[rd as usize];
        if h != 0 {
            self.mov_imm(h, v);
            self.dirty |= 1 << rd;
        } else if v as i64 == i64::from(v as i32) {
            dynasm!(self.ops ; .arch x64 ; mov QWORD [BYTE rbx + xd(rd)], v as i32);
        } else {
            self.mov_imm(RAX, v);
            self.put(RAX, rd);
        }
    }

    /// Write the cached registers in `dirty` back to the `x` array.
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn spill(&mut self, dirty: u32) {
        for r in 1..32u8 {
            if dirty & (1 << r) != 0 {
                let h = self.host[r as usize];
                dynasm!(self.ops ; .arch x64 ; mov QWORD [BYTE rbx + xd(r)], Rq(h));
            }
        }
    }

    /// Load every cached register from the `x` array (at entry, and after
    /// a helper call, which may have changed them and clobbers the host
    /// registers).
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn reload(&mut self) {
        for r in 1..32u8 {
            let h = self.host[r as usize];
            if h != 0 {
                dynasm!(self.ops ; .arch x64 ; mov Rq(h), QWORD [BYTE rbx + xd(r)]);
            }
        }
    }

    /// Call the shared routine of helper `h` (its arguments set up): with
    /// every cached register written back before and loaded again after,
    /// through the block's wrapper when it caches any. The routine ends
    /// the block if the helper says so.
    fn call_helper(&mut self, h: Helper) {
        if self.host == [0; 32] && matches!(h, Helper::Exec) {
            let target = self.g.helpers[h as usize];
            self.rel32(0xe8, target);
            return;
        }
        let label = match self.wrappers[h as usize] {
            Some(l) => l,
            None => {
                let l = self.ops.new_dynamic_label();
                self.wrappers[h as usize] = Some(l);
                l
            }
        };
        dynasm!(self.ops ; .arch x64 ; call =>label);
    }

    /// Leave the block after `count` instructions for `pc`, a target known
    /// now ([`Emitter::leave`], [`Emitter::go`]).
    fn exit_to(&mut self, count: u64, pc: u64) {
        self.leave(count);
        self.go(pc);
    }

    /// Back to the block's first instruction after its last (a branch to
    /// itself; `start` already counts the pass just made): straight to
    /// the code after the entry's register loads if the budget left
    /// holds another pass (every register the block writes is in its
    /// host register or the `x` array, as at the end of the first pass),
    /// else out to the run loop with them written back. Exact as a jump
    /// through the chain entry.
    fn loop_back(&mut self, n: u64) {
        let head = self.head;
        dynasm!(self.ops
            ; .arch x64
            ; mov rax, QWORD [BYTE rbp + C_LIMIT as i8]
            ; sub rax, QWORD [BYTE rbp + C_START as i8]
        );
        // cmp rax, n (imm8)
        self.ops.extend([0x48, 0x83, 0xf8, n as u8]);
        dynasm!(self.ops ; .arch x64 ; jae =>head);
        self.spill(self.dirty);
        self.mov_imm(RAX, self.block_pc);
        dynasm!(self.ops ; .arch x64 ; xor ecx, ecx);
        let g_exit = self.g.exit;
        self.rel32(0xe9, g_exit);
    }

    /// `start` += `count` (at most [`MAX_BLOCK`]).
    fn add_start(&mut self, count: u64) {
        // add qword [rbp + C_START], imm8
        self.ops
            .extend([0x48, 0x83, 0x45, C_START as u8, count as u8]);
    }

    /// What every way out of the block does first: write back the cached
    /// registers written, count the block's `count` instructions in
    /// `start` (flags change; rax is left alone).
    fn leave(&mut self, count: u64) {
        self.spill(self.dirty);
        self.add_start(count);
    }

    /// Go on at `pc` after [`Emitter::leave`]: on the same page, through a
    /// slot that starts out leaving (the shared `slot` routine, with the
    /// slot's address) and is later set to that block's chain entry, so
    /// that the jump goes straight there; on another page, through the
    /// jump cache.
    fn go(&mut self, pc: u64) {
        if pc & !0xfff != self.page_va {
            self.mov_imm(RAX, pc);
            let lookup = self.g.lookup;
            self.rel32(0xe9, lookup);
            return;
        }
        let slot = self.ops.new_dynamic_label();
        dynasm!(self.ops
            ; .arch x64
            ; lea rax, [=>slot]
            ; jmp QWORD [rax]
        );
        self.slots.push((slot, pc));
    }

    /// The slots, each followed by its target pc, after the code; returns
    /// their offsets (for their first value).
    fn slots(&mut self) -> Vec<usize> {
        let mut placed = Vec::new();
        for (slot, pc) in std::mem::take(&mut self.slots) {
            dynasm!(self.ops
                ; .arch x64
                ; .align 8
                ; =>slot
                ; .u64 0
                ; .u64 pc
            );
            placed.push(slot);
        }
        placed
            .into_iter()
            .filter_map(|slot| Some(self.ops.labels().resolve_dynamic(slot).ok()?.0))
            .collect()
    }

    /// Leave the block after `count` instructions for the pc in rax:
    /// through the jump cache (the shared `lookup` routine).
    fn exit_dynamic(&mut self, count: u64) {
        self.spill(self.dirty);
        let lookup = self.g.lookup;
        self.add_start(count);
        self.rel32(0xe9, lookup);
    }

    /// Instruction `k` at `pc` (bits `raw`) through [`helper_exec`]: the
    /// guest registers written back first and loaded again after (it may
    /// read and write any); the block ends if the helper says so.
    fn exec(&mut self, raw: u32, pc: u64, k: usize) {
        dynasm!(self.ops ; .arch x64 ; mov esi, raw as i32);
        self.mov_imm(RDX, pc);
        dynasm!(self.ops ; .arch x64 ; mov ecx, k as i32);
        self.call_helper(Helper::Exec);
    }

    /// Code for instruction `k` of `n` at `pc`.
    // dynasm-rs turns a dynamic register number with `.into()`.
    #[allow(clippy::useless_conversion)]
    fn insn(&mut self, i: &Insn, pc: u64, k: usize, n: usize) {
        let (rd, rs1, rs2) = (i.rd(), i.rs1 & 31, i.rs2 & 31);
        let imm = i.imm;
        let next = pc.wrapping_add(i.size());
        let count = n as u64;
        macro_rules! a {
            ($($t:tt)*) => { dynasm!(self.ops ; .arch x64 $($t)*) };
        }
        // rd = rs1 (op) rs2, as 64-bit; in place when rd is rs1.
        macro_rules! rr {
            ($op:ident) => {{
                if rd != 0 {
                    let h = self.host[rd as usize];
                    if rd == rs1 && h != 0 {
                        if self.host[rs2 as usize] != 0 {
                            let s = self.host[rs2 as usize];
                            a!(; $op Rq(h), Rq(s));
                        } else {
                            a!(; $op Rq(h), QWORD [BYTE rbx + xd(rs2)]);
                        }
                        self.dirty |= 1 << rd;
                    } else {
                        self.get(RAX, rs1);
                        if self.host[rs2 as usize] != 0 {
                            let s = self.host[rs2 as usize];
                            a!(; $op rax, Rq(s));
                        } else {
                            a!(; $op rax, QWORD [BYTE rbx + xd(rs2)]);
                        }
                        self.set_rd(rd);
                    }
                }
            }};
        }
        // rd = rs1 (op) imm; in place when rd is rs1.
        macro_rules! ri {
            ($op:ident) => {{
                if rd != 0 {
                    let h = self.host[rd as usize];
                    let dst = if rd == rs1 && h != 0 {
                        self.dirty |= 1 << rd;
                        h
                    } else {
                        self.get(RAX, rs1);
                        RAX
                    };
                    if let Ok(imm) = i8::try_from(imm) {
                        a!(; $op Rq(dst), BYTE imm);
                    } else {
                        a!(; $op Rq(dst), imm);
                    }
                    if dst == RAX {
                        self.set_rd(rd);
                    }
                }
            }};
        }
        // 32-bit operation, result sign-extended.
        macro_rules! rrw {
            ($op:ident) => {{
                if rd != 0 {
                    self.get(RAX, rs1);
                    if self.host[rs2 as usize] != 0 {
                        let s = self.host[rs2 as usize];
                        a!(; $op eax, Rd(s));
                    } else {
                        a!(; $op eax, DWORD [BYTE rbx + xd(rs2)]);
                    }
                    a!(; movsxd rax, eax);
                    self.set_rd(rd);
                }
            }};
        }
        macro_rules! shift {
            ($op:ident) => {{
                if rd != 0 {
                    self.get(RAX, rs1);
                    self.get(RCX, rs2);
                    a!(; $op rax, cl);
                    self.set_rd(rd);
                }
            }};
        }
        macro_rules! shiftw {
            ($op:ident) => {{
                if rd != 0 {
                    self.get(RAX, rs1);
                    self.get(RCX, rs2);
                    a!(; $op eax, cl ; movsxd rax, eax);
                    self.set_rd(rd);
                }
            }};
        }
        macro_rules! shifti {
            ($op:ident) => {{
                if rd != 0 {
                    let h = self.host[rd as usize];
                    if rd == rs1 && h != 0 {
                        a!(; $op Rq(h), (imm & 63) as i8);
                        self.dirty |= 1 << rd;
                    } else {
                        self.get(RAX, rs1);
                        a!(; $op rax, (imm & 63) as i8);
                        self.set_rd(rd);
                    }
                }
            }};
        }
        macro_rules! shiftiw {
            ($op:ident) => {{
                if rd != 0 {
                    self.get(RAX, rs1);
                    a!(; $op eax, (imm & 31) as i8 ; movsxd rax, eax);
                    self.set_rd(rd);
                }
            }};
        }
        macro_rules! set_cc {
            ($set:ident, $rhs:expr) => {{
                if rd != 0 {
                    self.get(RAX, rs1);
                    match $rhs {
                        Some(v) => match i8::try_from(v) {
                            // cmp rax, imm8
                            Ok(v) => self.ops.extend([0x48, 0x83, 0xf8, v as u8]),
                            Err(_) => a!(; cmp rax, v),
                        },
                        None => {
                            self.get(RCX, rs2);
                            a!(; cmp rax, rcx)
                        }
                    }
                    a!(; $set al ; movzx eax, al);
                    self.set_rd(rd);
                }
            }};
        }
        macro_rules! branch {
            ($jcc:ident) => {{
                let taken = self.ops.new_dynamic_label();
                let target = pc.wrapping_add(imm as i64 as u64);
                if target == self.block_pc {
                    self.add_start(count);
                } else {
                    // Both ways leave the same way first.
                    self.leave(count);
                }
                self.get(RAX, rs1);
                if self.host[rs2 as usize] != 0 {
                    let s = self.host[rs2 as usize];
                    a!(; cmp rax, Rq(s));
                } else {
                    a!(; cmp rax, QWORD [BYTE rbx + xd(rs2)]);
                }
                if target == self.block_pc {
                    // A loop in one block: the taken side goes on in
                    // it, registers still in host registers, if the
                    // budget allows another pass.
                    a!(; $jcc =>taken);
                    self.spill(self.dirty);
                    self.go(next);
                    a!(; =>taken);
                    self.loop_back(count);
                } else {
                    // Over one `go` (at most 15 bytes).
                    a!(; $jcc BYTE =>taken);
                    self.go(next);
                    a!(; =>taken);
                    self.go(target);
                }
            }};
        }
        match i.op {
            Op::Addi if rs1 == 0 => self.put_imm(rd, imm as i64 as u64),
            Op::Addi if imm == 0 && rd != 0 => {
                let (h, s) = (self.host[rd as usize], self.host[rs1 as usize]);
                if h != 0 && s != 0 {
                    a!(; mov Rq(h), Rq(s));
                    self.dirty |= 1 << rd;
                } else {
                    self.get(RAX, rs1);
                    self.set_rd(rd);
                }
            }
            Op::Addi => ri!(add),
            Op::Andi => ri!(and),
            Op::Ori => ri!(or),
            Op::Xori => ri!(xor),
            Op::Add => rr!(add),
            Op::Sub => rr!(sub),
            Op::And => rr!(and),
            Op::Or => rr!(or),
            Op::Xor => rr!(xor),
            Op::Mul => {
                if rd != 0 {
                    self.get(RAX, rs1);
                    self.get(RCX, rs2);
                    a!(; imul rax, rcx);
                    self.set_rd(rd);
                }
            }
            Op::Mulh | Op::Mulhu => {
                if rd != 0 {
                    self.get(RAX, rs1);
                    self.get(RCX, rs2);
                    if i.op == Op::Mulh {
                        a!(; imul rcx);
                    } else {
                        a!(; mul rcx);
                    }
                    a!(; mov rax, rdx);
                    self.set_rd(rd);
                }
            }
            Op::Lui => self.put_imm(rd, imm as i64 as u64),
            Op::Auipc => self.put_imm(rd, pc.wrapping_add(imm as i64 as u64)),
            Op::Slti => set_cc!(setl, Some(imm)),
            Op::Sltiu => set_cc!(setb, Some(imm)),
            Op::Slt => set_cc!(setl, None::<i32>),
            Op::Sltu => set_cc!(setb, None::<i32>),
            Op::Slli => shifti!(shl),
            Op::Srli => shifti!(shr),
            Op::Srai => shifti!(sar),
            Op::Sll => shift!(shl),
            Op::Srl => shift!(shr),
            Op::Sra => shift!(sar),
            Op::Addiw => {
                if rd != 0 {
                    self.get(RAX, rs1);
                    if let Ok(imm) = i8::try_from(imm) {
                        a!(; add eax, BYTE imm);
                    } else {
                        a!(; add eax, imm);
                    }
                    a!(; movsxd rax, eax);
                    self.set_rd(rd);
                }
            }
            Op::Addw => rrw!(add),
            Op::Subw => rrw!(sub),
            Op::Mulw => {
                if rd != 0 {
                    self.get(RAX, rs1);
                    self.get(RCX, rs2);
                    a!(; imul eax, ecx ; movsxd rax, eax);
                    self.set_rd(rd);
                }
            }
            Op::Slliw => shiftiw!(shl),
            Op::Srliw => shiftiw!(shr),
            Op::Sraiw => shiftiw!(sar),
            Op::Sllw => shiftw!(shl),
            Op::Srlw => shiftw!(shr),
            Op::Sraw => shiftw!(sar),
            Op::Fence | Op::FenceI => {}
            Op::Jal => {
                self.put_imm(rd, next);
                self.exit_to(count, pc.wrapping_add(imm as i64 as u64));
            }
            Op::Jalr => {
                // The target first: rd may be rs1.
                self.get(RAX, rs1);
                a!(
                    ; add rax, imm
                    ; and rax, -2
                );
                if rd != 0 {
                    self.mov_imm(RCX, next);
                    self.put(RCX, rd);
                }
                self.exit_dynamic(count);
            }
            Op::Beq => branch!(je),
            Op::Bne => branch!(jne),
            Op::Blt => branch!(jl),
            Op::Bge => branch!(jge),
            Op::Bltu => branch!(jb),
            Op::Bgeu => branch!(jae),
            Op::Lb | Op::Lh | Op::Lw | Op::Ld | Op::Lbu | Op::Lhu | Op::Lwu => self.load(i, pc, k),
            Op::Sb | Op::Sh | Op::Sw | Op::Sd => self.store(i, pc, k),
            op => {
                // Operations of rs1 and rs2 through the interpreter's own
                // definition (division and the rarer multiplications).
                if let (Some(f), true) = (alu_helper(op), rd != 0) {
                    // The call clobbers the cached registers: write them
                    // back first (all of them: in a block that loops, one
                    // written later in the block may be ahead of the `x`
                    // array too), load them again after (the helper
                    // changes no guest state). rsi first: rdi may hold
                    // rs2.
                    self.spill(self.cached_mask());
                    self.get(RSI, rs2);
                    self.get(RDI, rs1);
                    a!(
                        ; mov rax, QWORD f as i64
                        ; call rax
                    );
                    self.reload();
                    self.set_rd(rd);
                }
            }
        }
    }

    /// Store rax into rd (nothing for x0), the last thing an instruction
    /// does: rax still holds rd for the next instruction's first read
    /// ([`Emitter::get`]).
    fn set_rd(&mut self, rd: u8) {
        self.put(RAX, rd);
        if rd & 31 != 0 && self.host[(rd & 31) as usize] == 0 {
            self.rax_holds = Some(rd & 31);
        }
    }

    /// rsi = rs1 + imm (the address), then the TLB compare for an
    /// `n`-byte access against the load (r14) or store (r15) table: jumps
    /// to `slow` on a miss, else leaves rsi = the RAM offset. The tag is
    /// computed from the access's last byte and the index from its first,
    /// so an access that crosses the page end misses (as `load_hit`'s
    /// in-page check makes it), with one compare.
    fn tlb(&mut self, i: &Insn, n: i32, store: bool, slow: dynasmrt::DynamicLabel) {
        self.get(RSI, i.rs1);
        if i.imm != 0 {
            if let Ok(imm) = i8::try_from(i.imm) {
                dynasm!(self.ops ; .arch x64 ; add rsi, BYTE imm);
            } else {
                dynasm!(self.ops ; .arch x64 ; add rsi, i.imm);
            }
        }
        if n > 1 {
            dynasm!(self.ops ; .arch x64 ; lea rcx, [BYTE rsi + (n - 1) as i8]);
        } else {
            dynasm!(self.ops ; .arch x64 ; mov rcx, rsi);
        }
        dynasm!(self.ops
            ; .arch x64
            ; shr rcx, PAGE_SHIFT as i8
            ; shl rcx, 6
            ; or rcx, QWORD [BYTE rbp + C_TAG as i8]
            ; mov eax, esi
            ; shr eax, (PAGE_SHIFT - 4) as i8
            ; and eax, ((TLB_SIZE - 1) << 4) as i32
        );
        if store {
            dynasm!(self.ops
                ; .arch x64
                ; cmp rcx, QWORD [r15 + rax]
                ; jne =>slow
                ; add rsi, QWORD [r15 + rax + 8]
            );
        } else {
            dynasm!(self.ops
                ; .arch x64
                ; cmp rcx, QWORD [r14 + rax]
                ; jne =>slow
                ; add rsi, QWORD [r14 + rax + 8]
            );
        }
    }

    fn load(&mut self, i: &Insn, pc: u64, k: usize) {
        let (kind, n) = match i.op {
            Op::Lb => (0, 1),
            Op::Lh => (1, 2),
            Op::Lw => (2, 4),
            Op::Ld => (3, 8),
            Op::Lbu => (4, 1),
            Op::Lhu => (5, 2),
            _ => (6, 4),
        };
        let slow = self.ops.new_dynamic_label();
        let done = self.ops.new_dynamic_label();
        self.tlb(i, n, false, slow);
        match kind {
            0 => dynasm!(self.ops ; .arch x64 ; movsx rdx, BYTE [r12 + rsi]),
            1 => dynasm!(self.ops ; .arch x64 ; movsx rdx, WORD [r12 + rsi]),
            2 => dynasm!(self.ops ; .arch x64 ; movsxd rdx, DWORD [r12 + rsi]),
            3 => dynasm!(self.ops ; .arch x64 ; mov rdx, QWORD [r12 + rsi]),
            4 => dynasm!(self.ops ; .arch x64 ; movzx edx, BYTE [r12 + rsi]),
            5 => dynasm!(self.ops ; .arch x64 ; movzx edx, WORD [r12 + rsi]),
            _ => dynasm!(self.ops ; .arch x64 ; mov edx, DWORD [r12 + rsi]),
        }
        self.put(RDX, i.rd());
        dynasm!(self.ops ; .arch x64 ; =>done);
        self.stubs.push(Stub {
            label: slow,
            done,
            helper: Helper::Load,
            meta: meta(k, i, i.rd(), kind, pc.wrapping_sub(self.block_pc)),
        });
    }

    fn store(&mut self, i: &Insn, pc: u64, k: usize) {
        let n = match i.op {
            Op::Sb => 1,
            Op::Sh => 2,
            Op::Sw => 4,
            _ => 8,
        };
        let slow = self.ops.new_dynamic_label();
        let done = self.ops.new_dynamic_label();
        let code = self.ops.new_dynamic_label();
        self.tlb(i, n, true, slow);
        self.get(RDX, i.rs2);
        match n {
            1 => dynasm!(self.ops ; .arch x64 ; mov BYTE [r12 + rsi], dl),
            2 => dynasm!(self.ops ; .arch x64 ; mov WORD [r12 + rsi], dx),
            4 => dynasm!(self.ops ; .arch x64 ; mov DWORD [r12 + rsi], edx),
            _ => dynasm!(self.ops ; .arch x64 ; mov QWORD [r12 + rsi], rdx),
        }
        // Ram::touch_page, unless the page is marked dirty already and
        // holds no decoded code (RAM's store-check byte is 0): the stub
        // marks it, and ends the block if that dropped decoded code.
        dynasm!(self.ops
            ; .arch x64
            ; shr rsi, PAGE_SHIFT as i8
            ; mov rax, QWORD [BYTE rbp + C_STORE_CHECK as i8]
            ; cmp BYTE [rax + rsi], 0
            ; jne =>code
            ; =>done
        );
        let m = meta(k, i, i.rs2, n as u32, pc.wrapping_sub(self.block_pc));
        self.stubs.push(Stub {
            label: slow,
            done,
            helper: Helper::Store,
            meta: m,
        });
        self.stubs.push(Stub {
            label: code,
            done,
            helper: Helper::Touch,
            meta: m,
        });
    }

    fn stubs(&mut self) {
        for Stub {
            label,
            done,
            helper,
            meta,
        } in std::mem::take(&mut self.stubs)
        {
            // The helper sees (and the run loop, if the block ends) the
            // guest registers in the `x` array.
            dynasm!(self.ops ; .arch x64 ; =>label ; mov eax, meta as i32);
            self.call_helper(helper);
            dynasm!(self.ops ; .arch x64 ; jmp =>done);
        }
        // The block's routines: entered by `call` (rsp is 8 off the
        // 16-byte alignment of block code); every cached register is
        // written back (a register not written since it was loaded holds
        // what the `x` array holds, so writing it is harmless), rcx set to
        // the block's pc for the memory helpers, the shared routine called
        // (its other arguments are left alone), the cached registers
        // loaded again. Without cached registers, a jump to the shared
        // routine after setting rcx.
        let cached = self.cached_mask();
        for (k, wrapper) in std::mem::take(&mut self.wrappers).into_iter().enumerate() {
            let Some(wrapper) = wrapper else {
                continue;
            };
            let target = self.g.helpers[k];
            let pc = k != Helper::Exec as usize;
            dynasm!(self.ops ; .arch x64 ; =>wrapper);
            if cached != 0 {
                dynasm!(self.ops ; .arch x64 ; sub rsp, 8);
                self.spill(cached);
            }
            if pc {
                self.mov_imm(RCX, self.block_pc);
            }
            if cached != 0 {
                self.rel32(0xe8, target);
                self.reload();
                dynasm!(self.ops ; .arch x64 ; add rsp, 8 ; ret);
            } else {
                self.rel32(0xe9, target);
            }
        }
    }

    /// Every cached guest register.
    fn cached_mask(&self) -> u32 {
        (1..32)
            .filter(|&r| self.host[r] != 0)
            .fold(0, |m, r| m | 1 << r)
    }
}

/// What a memory helper needs to know of instruction `k` at `off` bytes
/// into its block: its index, its length, its register (rd of a load, rs2
/// of a store) and the access kind (load kind 0..6, or store width).
fn meta(k: usize, i: &Insn, reg: u8, kind: u32, off: u64) -> u32 {
    (k as u32 & 0xff)
        | ((i.size() as u32) << 8)
        | (u32::from(reg & 31) << 12)
        | ((kind & 15) << 17)
        | ((off as u32 & 0x7ff) << 21)
}

/// [`meta`] taken apart: (index, length, register, kind, pc).
fn unmeta(meta: u64, block_pc: u64) -> (u64, u64, u8, u32, u64) {
    (
        meta & 0xff,
        (meta >> 8) & 15,
        ((meta >> 12) & 31) as u8,
        ((meta >> 17) & 15) as u32,
        block_pc.wrapping_add((meta >> 21) & 0x7ff),
    )
}

macro_rules! alu_helpers {
    ($($name:ident: $op:ident),* $(,)?) => {
        $(
            extern "sysv64" fn $name(a: u64, b: u64) -> u64 {
                super::alu(&Insn::bare(Op::$op), a, b, 0).unwrap_or(0)
            }
        )*
        /// The helper that computes `op` of rs1, rs2, if it has one.
        fn alu_helper(op: Op) -> Option<usize> {
            match op {
                $(Op::$op => Some($name as *const () as usize),)*
                _ => None,
            }
        }
    };
}

alu_helpers!(
    mulhsu: Mulhsu,
    div: Div,
    divu: Divu,
    rem: Rem,
    remu: Remu,
    divw: Divw,
    divuw: Divuw,
    remw: Remw,
    remuw: Remuw,
);

/// A load that missed the TLB: the interpreter's `load_slow`; or, when
/// the hart's walk cache has the translation ([`Hart::refill_cached`]
/// filled the TLB as the slow path would), the hit path the block's own
/// code would take on a retry (`load_hit`, the same entry and bytes).
/// `block_pc` and `meta` say which instruction it is ([`unmeta`]); the
/// value goes to the `x` array.
///
/// Helpers are `extern "sysv64"` and generated code has no unwind tables:
/// a panic in one (a bug: nothing the guest does panics) aborts the
/// process instead of unwinding through generated frames.
///
/// # Safety
/// Called by generated code only, with the `Ctx` of the running block,
/// whose pointers are valid and not otherwise in use while it runs.
unsafe extern "sysv64" fn helper_load<B: Bus>(
    ctx: *mut Ctx,
    va: u64,
    _unused: u64,
    block_pc: u64,
    meta: u64,
) {
    // SAFETY: see the function's contract: `run_jit` made these pointers
    // from the `&mut` it holds and does not use those while the block runs.
    let (c, hart, ram, bus) = unsafe {
        let (h, r, b) = ((*ctx).hart, (*ctx).ram, (*ctx).bus.cast::<B>());
        (&mut *ctx, &mut *h, &mut *r, &mut *b)
    };
    let (k, size, rd, kind, pc) = unmeta(meta, block_pc);
    let (n, signed) = match kind {
        0 => (1, true),
        1 => (2, true),
        2 => (4, true),
        3 => (8, false),
        4 => (1, false),
        5 => (2, false),
        _ => (4, false),
    };
    hart.retired = c.start + k;
    let limit = hart.limit;
    let hit = if hart.refill_cached(ram, va, n, false) {
        match n {
            1 => hart.load_hit::<1>(ram, va),
            2 => hart.load_hit::<2>(ram, va),
            4 => hart.load_hit::<4>(ram, va),
            _ => hart.load_hit::<8>(ram, va),
        }
    } else {
        None
    };
    let v = match hit {
        Some(v) => Ok(v),
        None => hart.load_slow(ram, bus, va, n),
    };
    match v {
        Ok(v) => {
            let v = match (n, signed) {
                (1, true) => v as i8 as u64,
                (2, true) => v as i16 as u64,
                (4, true) => v as i32 as u64,
                _ => v,
            };
            hart.set_x(rd, v);
            if hart.limit != limit || ram.code_epoch() != c.epoch {
                c.status = 2;
                c.count = k + 1;
                c.next_pc = pc.wrapping_add(size);
            }
        }
        Err(t) => {
            c.status = 1;
            c.count = k;
            c.next_pc = pc;
            c.trap = Some(t);
        }
    }
}

/// A store that missed the TLB: the interpreter's `store_slow`, or its
/// hit path after a refill as [`helper_load`]; the value is the `x`
/// array's rs2.
///
/// # Safety
/// As [`helper_load`].
unsafe extern "sysv64" fn helper_store<B: Bus>(
    ctx: *mut Ctx,
    va: u64,
    _unused: u64,
    block_pc: u64,
    meta: u64,
) {
    // SAFETY: as in `helper_load`.
    let (c, hart, ram, bus) = unsafe {
        let (h, r, b) = ((*ctx).hart, (*ctx).ram, (*ctx).bus.cast::<B>());
        (&mut *ctx, &mut *h, &mut *r, &mut *b)
    };
    let (k, size, rs2, n, pc) = unmeta(meta, block_pc);
    let n = n as usize;
    let val = hart.x[rs2 as usize];
    hart.retired = c.start + k;
    let limit = hart.limit;
    let hit = hart.refill_cached(ram, va, n, true)
        && match n {
            1 => hart.store_hit::<1>(ram, va, val),
            2 => hart.store_hit::<2>(ram, va, val),
            4 => hart.store_hit::<4>(ram, va, val),
            _ => hart.store_hit::<8>(ram, va, val),
        };
    let r = if hit {
        Ok(())
    } else {
        hart.store_slow(ram, bus, va, n, val)
    };
    match r {
        Ok(()) => {
            if hart.limit != limit || ram.code_epoch() != c.epoch {
                c.status = 2;
                c.count = k + 1;
                c.next_pc = pc.wrapping_add(size);
            }
        }
        Err(t) => {
            c.status = 1;
            c.count = k;
            c.next_pc = pc;
            c.trap = Some(t);
        }
    }
}

/// Instruction `k` of the block (bits `raw`, at `pc`) by the
/// interpreter's `execute_rare`, with `retired` at its count. A trap ends
/// the block at it (status 1); so does, after it, a yield, a change of
/// RAM's code, of the data TLB context or of the next pc (status 2).
///
/// # Safety
/// As [`helper_load`].
unsafe extern "sysv64" fn helper_exec<B: Bus>(ctx: *mut Ctx, raw: u64, pc: u64, k: u64) {
    // SAFETY: as in `helper_load`.
    let (c, hart, ram, bus) = unsafe {
        let (h, r, b) = ((*ctx).hart, (*ctx).ram, (*ctx).bus.cast::<B>());
        (&mut *ctx, &mut *h, &mut *r, &mut *b)
    };
    let i = decode::decode(raw as u32);
    hart.retired = c.start + k;
    let limit = hart.limit;
    let next = pc.wrapping_add(i.size());
    match hart.execute_rare(i, pc, ram, bus) {
        Ok(to) => {
            if to != next
                || hart.limit != limit
                || ram.code_epoch() != c.epoch
                || hart.data_priv | TAG_VALID != c.tag_bits
            {
                c.status = 2;
                c.count = k + 1;
                c.next_pc = to;
            }
        }
        Err(t) => {
            c.status = 1;
            c.count = k;
            c.next_pc = pc;
            c.trap = Some(t);
        }
    }
}

/// A store to a page whose store-check byte is set: `Ram::touch_page`
/// marks it dirty and drops its decoded code, if any. If it did drop code,
/// the block must end after the store (the instruction `block_pc` and
/// `meta` name, as [`helper_load`]'s): returns 1, else 0.
///
/// # Safety
/// As [`helper_load`].
unsafe extern "sysv64" fn helper_touch(
    ctx: *mut Ctx,
    page: u64,
    _unused: u64,
    block_pc: u64,
    meta: u64,
) -> u64 {
    // SAFETY: as in `helper_load`.
    let (c, ram) = unsafe { (&mut *ctx, &mut *(*ctx).ram) };
    let epoch = ram.code_epoch();
    ram.touch_page(page as usize);
    if ram.code_epoch() == epoch {
        return 0;
    }
    let (k, size, _, _, pc) = unmeta(meta, block_pc);
    c.count = k + 1;
    c.next_pc = pc.wrapping_add(size);
    1
}

impl Hart {
    /// Run translated blocks from `pc` (on the current fetch page, its code
    /// epoch current) until the budget is used up or the interpreter must
    /// run the next instruction.
    pub(super) fn run_jit<B: Bus>(&mut self, ram: &mut Ram, bus: &mut B, pc: u64) -> JitStop {
        let Some(mut jit) = self.jit.take() else {
            return JitStop::Pc(pc);
        };
        let stop = jit.run(self, ram, bus, pc);
        self.jit = Some(jit);
        stop
    }
}

impl Jit {
    fn run<B: Bus>(&mut self, hart: &mut Hart, ram: &mut Ram, bus: &mut B, mut pc: u64) -> JitStop {
        if self.ram_id != Some(ram.id()) {
            // Translations of other RAM (the machine was reset).
            self.flush();
            self.ram_id = Some(ram.id());
        }
        let mut ctx = Ctx {
            ram_bytes: std::ptr::null_mut(),
            tlb_load: hart.tlb.load.as_ptr(),
            tlb_store: hart.tlb.store.as_ptr(),
            tag_bits: hart.data_priv | TAG_VALID,
            store_check: ram.store_check_ptr(),
            helper_load: helper_load::<B> as *const () as usize,
            helper_store: helper_store::<B> as *const () as usize,
            helper_touch: helper_touch as *const () as usize,
            helper_exec: helper_exec::<B> as *const () as usize,
            status: 0,
            count: 0,
            next_pc: 0,
            start: 0,
            limit: 0,
            link: 0,
            tlb_fetch: hart.tlb.fetch.as_ptr(),
            fetch_tag: hart.priv_mode as u64 | TAG_VALID,
            jcache: self.jcache.as_ptr(),
            code_gen: ram.code_gen_ptr(),
            cache_jumps: 0,
            rsp: 0,
            epoch: 0,
            hart: std::ptr::null_mut(),
            ram: std::ptr::null_mut(),
            bus: std::ptr::null_mut(),
            trap: None,
        };
        let mut link = None;
        loop {
            if hart.retired >= hart.limit {
                return JitStop::Pc(pc);
            }
            if ram.code_epoch() != hart.fetch_epoch {
                self.stats.exit_epoch += 1;
                return JitStop::Pc(pc);
            }
            if pc & !0xfff != hart.fetch_va && hart.enter_page(ram, pc).is_none() {
                self.stats.exit_fetch_miss += 1;
                return JitStop::Pc(pc);
            }
            let Some(b) = self.block(ram, pc, hart.fetch_page) else {
                return JitStop::Pc(pc);
            };
            if let Some((slot, page, flushed)) = link.take() {
                // The last block left for this one through a slot: make
                // that jump direct. Both are on one page, so they stay
                // valid together; the slot must not have been flushed.
                if b.len > 0 && b.page == page && self.flushed == flushed {
                    // SAFETY: `slot` is an 8-byte aligned cell inside the
                    // code of a block in the arena (its exit stub set
                    // `ctx.link` to it), not flushed since (checked); no
                    // code runs while it is written.
                    unsafe { std::ptr::write(slot as *mut u64, b.chain as u64) };
                    self.stats.links += 1;
                }
            }
            if b.len == 0 {
                self.stats.exit_empty += 1;
                return JitStop::Pc(pc);
            }
            if u64::from(b.len) > hart.limit - hart.retired {
                // The block does not fit: the interpreter runs the tail.
                self.stats.exit_budget_tail += 1;
                return JitStop::Pc(hart.run_fast(ram, pc));
            }
            ctx.status = 0;
            ctx.count = 0;
            ctx.link = 0;
            ctx.start = hart.retired;
            ctx.limit = hart.limit;
            ctx.epoch = ram.code_epoch();
            ctx.ram_bytes = ram.bytes_mut().as_mut_ptr();
            ctx.ram = ram;
            ctx.bus = (bus as *mut B).cast();
            ctx.hart = hart;
            // `retired` before the block runs (its helpers move it on).
            let before = ctx.start;
            let x = std::ptr::addr_of_mut!(hart.x).cast::<u64>();
            // SAFETY: `b.code` is a block emitted by `translate` into the
            // arena, alive until the next flush (only `block` flushes, not
            // the code or helpers run here). The generated code reads and
            // writes guest registers through `x`, RAM through
            // `ctx.ram_bytes` within pages the TLB maps to RAM (the same
            // bounds as `load_hit`/`store_hit`), the TLB tables and RAM's
            // dirty bitmap and decoded slots through pointers taken just
            // now from the `&mut` borrows this function holds, which are
            // not used until it returns; the helpers it calls turn
            // `ctx.hart`, `ctx.ram` and `ctx.bus` back into those borrows
            // for their duration only.
            unsafe { (self.enter)(x, &mut ctx, b.code) };
            hart.retired = ctx.start + ctx.count;
            self.stats.entered += 1;
            self.stats.retired_in_blocks += hart.retired - before;
            if ctx.status == 2 {
                self.stats.exit_helper += 1;
            }
            if ctx.status == 1 {
                self.stats.exit_trap += 1;
                let trap = ctx.trap.take().unwrap_or(Trap { cause: 0, tval: 0 });
                return JitStop::Trap(trap, ctx.next_pc);
            }
            pc = ctx.next_pc;
            self.stats.cache_jumps += std::mem::take(&mut ctx.cache_jumps);
            if ctx.link != 0 {
                link = Some((ctx.link, b.page, self.flushed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::NoDevices;
    use crate::encode::{addi, jal};

    /// A cache far too small for the program: it is dropped again and
    /// again (by the block limit and by the arena), and the results stay
    /// the interpreter's.
    #[test]
    fn a_full_cache_starts_again_and_computes_the_same() {
        const BASE: u64 = 0x8000_0000;
        // 1500 blocks of `addi x5, x5, k; jal x0, +4` over two pages and
        // a bit, then back to the start.
        let mut code = Vec::new();
        for k in 0..1500 {
            code.extend([addi(5, 5, k % 7 + 1), jal(0, 4)]);
        }
        code.push(jal(0, -(code.len() as i32) * 4));
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        for (arena, max_blocks) in [(1 << 20, 50), (4096, 100_000)] {
            let mut results = Vec::new();
            for jit in [true, false] {
                let mut ram = Ram::new(BASE, 1 << 20).unwrap();
                assert!(ram.write(BASE, &bytes));
                let mut hart = Hart::new(0);
                if jit {
                    hart.jit = Jit::with_limits(arena, max_blocks).map(Box::new);
                    assert!(hart.jit.is_some());
                } else {
                    hart.set_fast_path(false);
                }
                hart.set_pc(BASE);
                for budget in [1, 7, 1000, 5000, 20_000] {
                    hart.run(&mut ram, &mut NoDevices, budget);
                }
                results.push((hart.reg(5), hart.pc(), hart.instret(), hart.jit_stats()));
            }
            let (j, r) = (results[0], results[1]);
            assert_eq!(
                (j.0, j.1, j.2),
                (r.0, r.1, r.2),
                "arena {arena}, {max_blocks} blocks"
            );
            assert!(j.3.flushes >= 10, "the cache was dropped: {:?}", j.3);
            assert!(j.3.retired_in_blocks > 20_000, "blocks ran: {:?}", j.3);
        }
    }

    /// A hot block called between cold ones: it is translated anew right
    /// at flushes, and must keep its code afterwards.
    #[test]
    fn a_block_translated_at_a_flush_keeps_its_code() {
        use crate::encode::i;
        const BASE: u64 = 0x8000_0000;
        const HOT: u64 = BASE + 0x8000;
        // 1000 cold blocks, each `addi x5, x5, k; jal ra, HOT`; HOT is
        // `addi x6, x6, 3; jalr x0, 0(ra)`.
        let mut code = Vec::new();
        for k in 0..1000u64 {
            let at = BASE + 8 * k;
            code.extend([
                addi(5, 5, (k % 5 + 1) as i32),
                jal(1, (HOT - at - 4) as i32),
            ]);
        }
        code.push(jal(0, 0));
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        let hot: Vec<u8> = [addi(6, 6, 3), i(0, 1, 0, 0, 0x67)]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        for max_blocks in [2, 3, 4, 5] {
            let mut results = Vec::new();
            for jit in [true, false] {
                let mut ram = Ram::new(BASE, 1 << 20).unwrap();
                assert!(ram.write(BASE, &bytes));
                assert!(ram.write(HOT, &hot));
                let mut hart = Hart::new(0);
                if jit {
                    hart.jit = Jit::with_limits(1 << 20, max_blocks).map(Box::new);
                } else {
                    hart.set_fast_path(false);
                }
                hart.set_pc(BASE);
                hart.run(&mut ram, &mut NoDevices, 3000);
                results.push((hart.reg(5), hart.reg(6), hart.pc(), hart.instret()));
            }
            assert_eq!(results[0], results[1], "at most {max_blocks} blocks");
        }
    }

    /// Stores in translated code mark their pages dirty for every
    /// tracker, again after each take, as the interpreter's do.
    #[test]
    fn translated_stores_mark_pages_dirty_after_every_take() {
        use crate::encode::{i, s};
        const BASE: u64 = 0x8000_0000;
        const DATA: u64 = BASE + 0x8000;
        // sd x5, 0(x11); addi x11, x11, 8; sd x5, 0(x12); jal x0, -12
        let code = [
            s(0, 5, 11, 3, 0x23),
            i(8, 11, 0, 11, 0x13),
            s(0, 5, 12, 3, 0x23),
            jal(0, -12),
        ];
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut ram = Ram::new(BASE, 1 << 20).unwrap();
        assert!(ram.write(BASE, &bytes));
        let tracker = ram.track_dirty();
        let mut hart = Hart::new(0);
        hart.jit = Jit::with_limits(1 << 20, 100).map(Box::new);
        hart.set_pc(BASE);
        hart.set_reg(11, DATA);
        hart.set_reg(12, DATA + 0x4000);
        let mut taken = 0;
        // Pages 8 to 11 (x11's), and 12 (x12's) every round.
        for round in 0..4u64 {
            assert!(ram.take_dirty(&tracker).is_some());
            // 4 instructions per pass; 512 sd to x11's page per round.
            hart.run(&mut ram, &mut NoDevices, 4 * 512);
            let pages = ram.take_dirty(&tracker).unwrap();
            let first = ((DATA - BASE) >> 12) as usize + round as usize;
            assert_eq!(pages, vec![first, 12], "round {round}");
            taken += 1;
        }
        assert_eq!(taken, 4);
        assert!(hart.jit_stats().retired_in_blocks > 7_000);
    }

    /// Code rewritten in a loop makes stale blocks pile up until the
    /// table is full; the blocks in use then must survive the flush.
    #[test]
    fn rewriting_code_in_a_loop_fills_the_cache_and_computes_the_same() {
        use crate::encode::{b, i, r, s};
        const BASE: u64 = 0x8000_0000;
        const DATA: u64 = BASE + 0x8000;
        let add = |rd, rs1| r(0, 0, rs1, 0, rd, 0x33);
        let inc = |x| i(1, x, 0, x, 0x13);
        let code = [
            i(0, 0, 0, 0, 0x13),       // nop (a slice starts in the general loop)
            r(0, 13, 11, 4, 11, 0x33), // xor x11, x11, x13: CODE <-> DATA
            add(16, 8),                // rotate x8 <- x14 <- x15 <- x8
            add(8, 14),
            add(14, 15),
            add(15, 16),
            s(36, 8, 11, 2, 0x23), // sw x8, 36(x11)
            inc(7),
            i(0, 0, 0, 0, 0x13), // nop
            inc(3),              // target (BASE + 36)
            b(-36, 12, 7, 4),    // blt x7, x12, loop
            jal(0, 0),
        ];
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut results = Vec::new();
        for jit in [true, false] {
            let mut ram = Ram::new(BASE, 1 << 20).unwrap();
            assert!(ram.write(BASE, &bytes));
            let mut hart = Hart::new(0);
            if jit {
                hart.jit = Jit::with_limits(1 << 20, 5).map(Box::new);
            } else {
                hart.set_fast_path(false);
            }
            hart.set_pc(BASE);
            hart.set_reg(8, u64::from(inc(4)));
            hart.set_reg(14, u64::from(inc(5)));
            hart.set_reg(15, u64::from(inc(6)));
            hart.set_reg(11, DATA);
            hart.set_reg(13, BASE ^ DATA);
            hart.set_reg(12, 300);
            hart.run(&mut ram, &mut NoDevices, 300 * 10 + 1);
            let regs: Vec<u64> = (0..32).map(|x| hart.reg(x)).collect();
            results.push((regs, hart.instret(), hart.jit_stats()));
        }
        assert_eq!(results[1].0[7], 300, "the loop ran");
        assert_eq!((&results[0].0, results[0].1), (&results[1].0, results[1].1));
        assert!(results[0].2.flushes >= 10, "{:?}", results[0].2);
    }
}
