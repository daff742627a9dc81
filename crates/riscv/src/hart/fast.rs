//! The interpreter's fast loop: straight through the current fetch page
//! for the instructions that need only registers and RAM.
//!
//! [`Hart::run`]'s general loop checks, for every instruction, that pc is
//! still on the cached fetch page and that the page's decoded code is
//! still alive (RAM's code epoch), fetches, executes through `Result`s and
//! counts the retired instruction in the hart. That is most of its cost.
//! Here the page, the epoch, the budget and the retired count live in
//! locals, and each instruction costs one bounds check of pc against the
//! page. The code epoch can change only by a store (a write to a page with
//! decoded code drops that code), so it is checked after stores only.
//!
//! What this loop executes is exactly what the general loop would: it
//! handles ALU and M operations (the one definition both use, `alu_match!`), branches and
//! jumps, and loads and stores that hit the TLB within a RAM page (the
//! same `load_hit`/`store_hit` as the general path). It stops *before*
//! any other instruction (CSR, system, atomic, floating point, not yet
//! decoded, illegal), any load or store that misses, and when pc leaves
//! for a page the fetch TLB does not hit (on a hit it moves to that page's
//! decoded code, as `fetch_slow` would), so that the general loop executes
//! it with all its checks,
//! traps and yields; none of those can happen in here, so the
//! instruction boundaries, retired counts and state are the same.

use super::{Hart, PagePtr};
use crate::decode::{DecodedPage, Insn, Op};
use crate::mmu::{tlb_index, tlb_tag};
use crate::ram::{Ram, PAGE_SHIFT};

impl Hart {
    /// Run from `pc`, which must be on the current fetch page with its code
    /// epoch current, until the budget is used up or an instruction needs
    /// the general loop; returns the pc to continue at.
    #[inline(never)]
    pub(super) fn run_fast(&mut self, ram: &mut Ram, mut pc: u64) -> u64 {
        let mut page = self.fetch_ptr.0 as *const Insn;
        let mut page_va = self.fetch_va;
        let epoch = self.fetch_epoch;
        let limit = self.limit;
        let mut retired = self.retired;
        debug_assert!(pc & !0xfff == page_va && ram.code_epoch() == epoch);
        while retired < limit {
            let mut off = pc.wrapping_sub(page_va);
            if off >= 0x1000 {
                match self.enter_page(ram, pc) {
                    Some(next_page) => {
                        page = next_page;
                        page_va = pc & !0xfff;
                        off = pc & 0xfff;
                    }
                    None => break,
                }
            }
            // SAFETY: `page` points to the 2048 slots of the decoded page of
            // `page_va` (taken by `fetch_slow` or `enter_page` during this
            // `run`, with this `ram`), which stays alive while RAM's code
            // epoch is `epoch`:
            // it was on entry (the caller checked), and every operation
            // below that can change it (a store) is followed by a check
            // that ends the loop before the next read. `off < 0x1000`, so
            // the slot index is below 2048.
            let i = unsafe { *page.add((off >> 1) as usize) };
            let rs1 = self.x[(i.rs1 & 31) as usize];
            let rs2 = self.x[(i.rs2 & 31) as usize];
            let imm = i.imm as i64 as u64;
            let next = pc.wrapping_add(i.size());
            // One arm per operation, so that the loop dispatches once.
            macro_rules! branch {
                ($taken:expr) => {{
                    pc = if $taken { pc.wrapping_add(imm) } else { next };
                    retired += 1;
                    continue;
                }};
            }
            macro_rules! load {
                ($n:literal, $ext:ty) => {
                    match self.load_hit::<$n>(ram, rs1.wrapping_add(imm)) {
                        Some(v) => v as $ext as u64,
                        None => break,
                    }
                };
            }
            macro_rules! store {
                ($n:literal) => {{
                    if !self.store_hit::<$n>(ram, rs1.wrapping_add(imm), rs2) {
                        break;
                    }
                    pc = next;
                    retired += 1;
                    if ram.code_epoch() != epoch {
                        // The store dropped decoded code (maybe this
                        // page's): the general loop fetches afresh.
                        break;
                    }
                    continue;
                }};
            }
            macro_rules! write_rd {
                ($v:expr) => {{
                    let v = $v;
                    self.set_x(i.rd(), v);
                    pc = next;
                    retired += 1;
                    continue;
                }};
            }
            alu_match!(i, rs1, rs2, pc, write_rd, {
                Op::Jal => {
                    self.set_x(i.rd(), next);
                    pc = pc.wrapping_add(imm);
                    retired += 1;
                    continue;
                }
                Op::Jalr => {
                    self.set_x(i.rd(), next);
                    pc = rs1.wrapping_add(imm) & !1;
                    retired += 1;
                    continue;
                }
                Op::Beq => branch!(rs1 == rs2),
                Op::Bne => branch!(rs1 != rs2),
                Op::Blt => branch!((rs1 as i64) < (rs2 as i64)),
                Op::Bge => branch!((rs1 as i64) >= (rs2 as i64)),
                Op::Bltu => branch!(rs1 < rs2),
                Op::Bgeu => branch!(rs1 >= rs2),
                Op::Lb => write_rd!(load!(1, i8)),
                Op::Lh => write_rd!(load!(2, i16)),
                Op::Lw => write_rd!(load!(4, i32)),
                Op::Ld => write_rd!(load!(8, u64)),
                Op::Lbu => write_rd!(load!(1, u64)),
                Op::Lhu => write_rd!(load!(2, u64)),
                Op::Lwu => write_rd!(load!(4, u64)),
                Op::Sb => store!(1),
                Op::Sh => store!(2),
                Op::Sw => store!(4),
                Op::Sd => store!(8),
                Op::Fence | Op::FenceI => {
                    pc = next;
                    retired += 1;
                    continue;
                }
                _ => break,
            })
        }
        self.counters.retired_fast += retired - self.retired;
        self.retired = retired;
        pc
    }

    /// pc left the fetch page: if the fetch TLB has pc's page (a hit, as
    /// in `fetch_slow`: nothing changes but which page is current), make
    /// its decoded page the fetch page and return its slots; `None` on a
    /// miss, for the general loop to translate (and maybe trap).
    #[inline]
    pub(super) fn enter_page(&mut self, ram: &mut Ram, pc: u64) -> Option<*const Insn> {
        let e = self.tlb.fetch[tlb_index(pc)];
        if e.tag != tlb_tag(pc, self.priv_mode as u64) {
            return None;
        }
        let index = ((pc & !0xfff).wrapping_add(e.addend) >> PAGE_SHIFT) as usize;
        let decoded = ram.decoded_page(index)?;
        let ptr: *const DecodedPage = &*decoded;
        self.fetch_ptr = PagePtr(ptr);
        self.fetch_page = index;
        self.fetch_va = pc & !0xfff;
        // Allocating a decoded page does not move the code epoch.
        self.fetch_epoch = ram.code_epoch();
        Some(ptr as *const Insn)
    }
}
