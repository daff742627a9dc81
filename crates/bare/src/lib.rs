//! A bare-metal RISC-V board: one hart in M-mode, RAM at 0x8000_0000, the
//! machine crate's CLINT, and the HTIF `tohost`/`fromhost` convention of
//! riscv-tests. `lockstep bare` runs ELF files on it; `lockstep bench mips`
//! times its benchmark loop on it.
//!
//! It owns loading a bare-metal ELF, running a program slice by slice until
//! it reports through `tohost`, and checking one engine against the
//! reference; it must not know the command line (the CLI's flags), guest
//! images, or the full machine (no devices beyond the CLINT).

use machine::Clint;
use object::{Object, ObjectSegment, ObjectSymbol};
use riscv::{Bus, BusFault, Exit, Hart, Irq, Ram};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RAM_BASE: u64 = 0x8000_0000;
const CLINT_BASE: u64 = 0x0200_0000;
const CLINT_SIZE: u64 = 0x1_0000;
/// Retired instructions per mtime tick.
const INSNS_PER_TICK: u64 = 16;
/// Instructions between checks of tohost.
const SLICE: u64 = 10_000;

/// The engine `lockstep bare` runs a program on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cpu {
    Interp,
    Reference,
    Jit,
    Check,
    JitCheck,
}

impl Cpu {
    /// Set `hart` up to execute as this choice says (for the two checks:
    /// the engine checked against the reference).
    pub fn apply(self, hart: &mut Hart) {
        match self {
            Cpu::Interp | Cpu::Check => {}
            Cpu::Reference => hart.set_fast_path(false),
            Cpu::Jit | Cpu::JitCheck => {
                if !hart.set_jit(true) {
                    eprintln!("lockstep: no translator on this host; using the interpreter");
                }
            }
        }
    }

    /// Whether this choice runs the engine against the reference.
    pub fn checked(self) -> bool {
        matches!(self, Cpu::Check | Cpu::JitCheck)
    }

    /// What the engine is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Cpu::Interp | Cpu::Check => "the fast loop",
            Cpu::Reference => "the general loop",
            Cpu::Jit | Cpu::JitCheck => "the translator",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BareError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file ({reason})")]
    NotElf { path: PathBuf, reason: String },
    #[error("{path} is not a 64-bit little-endian RISC-V ELF")]
    NotRiscv { path: PathBuf },
    #[error("{path}: segment at {addr:#x} (+{len:#x} bytes) lies outside RAM {base:#x}..{end:#x}")]
    SegmentOutsideRam {
        path: PathBuf,
        addr: u64,
        len: u64,
        base: u64,
        end: u64,
    },
    #[error("{path}: has no loadable segments")]
    NoSegments { path: PathBuf },
    #[error("{path}: no `tohost` symbol, so the program cannot report a result")]
    NoTohost { path: PathBuf },
    #[error("guest RAM: {0}")]
    Ram(#[from] riscv::ram::RamError),
    #[error("instruction budget of {0} exhausted (pc {1:#x}) without a result in tohost")]
    Budget(u64, u64),
    #[error(
        "guest ran wild: trap loop at pc {pc:#x} (cause {cause}) without retiring an instruction"
    )]
    TrapStorm { pc: u64, cause: u64 },
    #[error("hart waits for an interrupt (wfi at pc {0:#x}) that can never arrive")]
    Deadlock(u64),
    #[error("--cpu check: the engines diverged by instruction {instret}: {what}")]
    Diverged { instret: u64, what: String },
}

/// A loaded bare-metal program.
pub struct Program {
    pub entry: u64,
    pub tohost: u64,
    pub fromhost: Option<u64>,
}

/// Load `path` into `ram`.
pub fn load_elf(path: &Path, ram: &mut Ram) -> Result<Program, BareError> {
    let data = std::fs::read(path).map_err(|source| BareError::Read {
        path: path.into(),
        source,
    })?;
    let file = object::File::parse(&*data).map_err(|e| BareError::NotElf {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if file.format() != object::BinaryFormat::Elf
        || file.architecture() != object::Architecture::Riscv64
        || !file.is_little_endian()
    {
        return Err(BareError::NotRiscv { path: path.into() });
    }
    let mut loaded = 0;
    for seg in file.segments() {
        let (addr, memsz) = (seg.address(), seg.size());
        let bytes = seg.data().map_err(|e| BareError::NotElf {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if memsz == 0 {
            continue;
        }
        if !ram.contains(addr, memsz) || (bytes.len() as u64) > memsz {
            let (base, end) = (ram.base(), ram.base() + ram.size());
            return Err(BareError::SegmentOutsideRam {
                path: path.into(),
                addr,
                len: memsz,
                base,
                end,
            });
        }
        ram.write(addr, bytes);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(BareError::NoSegments { path: path.into() });
    }
    let symbol = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    };
    let tohost = symbol("tohost").ok_or_else(|| BareError::NoTohost { path: path.into() })?;
    Ok(Program {
        entry: file.entry(),
        tohost,
        fromhost: symbol("fromhost"),
    })
}

/// The bare board's MMIO: the machine crate's CLINT, for one hart.
pub struct BareBus {
    clint: Clint,
    /// Ticks skipped while the hart idled in WFI.
    skipped: u64,
}

impl BareBus {
    fn new() -> Self {
        BareBus {
            clint: Clint::new(1),
            skipped: 0,
        }
    }

    fn now(&self, retired: u64) -> u64 {
        retired / INSNS_PER_TICK + self.skipped
    }

    fn clint_offset(pa: u64) -> Result<u64, BusFault> {
        pa.checked_sub(CLINT_BASE)
            .filter(|o| *o < CLINT_SIZE)
            .ok_or(BusFault)
    }
}

impl Bus for BareBus {
    fn load(&mut self, pa: u64, size: u8, now: u64) -> Result<u64, BusFault> {
        let mtime = self.now(now);
        self.clint
            .load(Self::clint_offset(pa)?, size, mtime)
            .ok_or(BusFault)
    }

    fn store(&mut self, pa: u64, size: u8, val: u64, _now: u64) -> Result<(), BusFault> {
        self.clint
            .store(Self::clint_offset(pa)?, size, val)
            .ok_or(BusFault)
    }

    fn mtime(&mut self, now: u64) -> u64 {
        self.now(now)
    }
}

/// How a bare-metal run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(u64),
}

/// Run a loaded program until it reports through tohost.
pub fn execute(
    hart: &mut Hart,
    ram: &mut Ram,
    prog: &Program,
    max: u64,
    console: &mut dyn Write,
) -> Result<Outcome, BareError> {
    let mut bus = BareBus::new();
    hart.set_pc(prog.entry);
    loop {
        if let Some(outcome) = slice(hart, ram, &mut bus, prog, max, console)? {
            return Ok(outcome);
        }
    }
}

/// `--cpu check` and `--cpu jit-check`: run the program on two harts with
/// their own RAM and CLINT, `hart` as set up (the interpreter's fast loop,
/// or the translator) and a second with the interpreter's general loop
/// alone (the reference), slice by slice; after every slice their
/// architectural state (registers, CSRs, privilege, retired count,
/// reservation, interrupt lines) and how the slice ended must be equal,
/// and at the end their RAM. Only `hart`'s console output is written.
/// `engine` names `hart`'s engine in the message of a divergence.
pub fn execute_checked(
    hart: &mut Hart,
    ram: &mut Ram,
    prog: &Program,
    max: u64,
    console: &mut dyn Write,
    engine: &str,
) -> Result<Outcome, BareError> {
    let mut reference = Hart::new(hart.hartid());
    reference.set_fast_path(false);
    let mut reference_ram = Ram::new(ram.base(), ram.size())?;
    reference_ram.write(ram.base(), ram.as_slice());
    let (mut bus, mut reference_bus) = (BareBus::new(), BareBus::new());
    hart.set_pc(prog.entry);
    reference.set_pc(prog.entry);
    loop {
        let ours = slice(hart, ram, &mut bus, prog, max, console);
        let theirs = slice(
            &mut reference,
            &mut reference_ram,
            &mut reference_bus,
            prog,
            max,
            &mut std::io::sink(),
        );
        let same_end = match (&ours, &theirs) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        };
        if !same_end || *hart != reference {
            return Err(BareError::Diverged {
                instret: reference.instret(),
                what: format!(
                    "{engine} gave {ours:?} at {hart:?}, the general loop {theirs:?} at {reference:?}{}",
                    register_difference(hart, &reference)
                ),
            });
        }
        match ours? {
            Some(outcome) => {
                if ram.as_slice() != reference_ram.as_slice() {
                    return Err(BareError::Diverged {
                        instret: reference.instret(),
                        what: "RAM differs at the end".into(),
                    });
                }
                return Ok(outcome);
            }
            None => continue,
        }
    }
}

/// The first register that differs between two harts, if one does.
fn register_difference(a: &Hart, b: &Hart) -> String {
    let x = (0..32).find(|&r| a.reg(r) != b.reg(r));
    let f = (0..32).find(|&r| a.fpr(r) != b.fpr(r));
    match (x, f) {
        (Some(r), _) => format!("; x{r} is {:#x} against {:#x}", a.reg(r), b.reg(r)),
        (None, Some(r)) => format!("; f{r} is {:#x} against {:#x}", a.fpr(r), b.fpr(r)),
        (None, None) => String::new(),
    }
}

/// One slice: at most [`SLICE`] instructions, ending exactly where the
/// timer fires; the outcome once the program reported one.
fn slice(
    hart: &mut Hart,
    ram: &mut Ram,
    bus: &mut BareBus,
    prog: &Program,
    max: u64,
    console: &mut dyn Write,
) -> Result<Option<Outcome>, BareError> {
    let mtime = bus.now(hart.instret());
    hart.set_irq(Irq::MachineSoft, bus.clint.msip(0));
    hart.set_irq(Irq::MachineTimer, bus.clint.timer_pending(0, mtime));
    // Stop exactly where the timer fires.
    let deadline = bus.clint.deadline(0);
    let to_timer = deadline.map_or(u64::MAX, |d| {
        d.saturating_sub(mtime)
            .saturating_mul(INSNS_PER_TICK)
            .max(1)
    });
    let left = max.saturating_sub(hart.instret());
    if left == 0 {
        return Err(BareError::Budget(max, hart.pc()));
    }
    let exit = hart.run(ram, bus, SLICE.min(to_timer).min(left));
    if let Some(outcome) = poll_htif(ram, prog, console) {
        return Ok(Some(outcome));
    }
    match exit {
        Exit::TrapStorm { pc, cause } => return Err(BareError::TrapStorm { pc, cause }),
        Exit::Wfi if hart.is_waiting() => match deadline {
            // Idle skip: jump the clock to the timer deadline.
            Some(d) => bus.skipped += d.saturating_sub(bus.now(hart.instret())),
            None if bus.clint.msip(0) => {}
            None => return Err(BareError::Deadlock(hart.pc())),
        },
        _ => {}
    }
    Ok(None)
}

/// Handle a request in tohost, if any: exit codes and console output.
fn poll_htif(ram: &mut Ram, prog: &Program, console: &mut dyn Write) -> Option<Outcome> {
    let v = ram.read_u64(prog.tohost).filter(|v| *v != 0)?;
    ram.write_u64(prog.tohost, 0);
    let (device, cmd, payload) = (v >> 56, (v >> 48) & 0xff, v & ((1 << 48) - 1));
    match (device, cmd) {
        (0, _) if payload & 1 == 1 => {
            let code = payload >> 1;
            return Some(if code == 0 {
                Outcome::Pass
            } else {
                Outcome::Fail(code)
            });
        }
        (1, 1) => {
            let _ = console.write_all(&[payload as u8]);
            let _ = console.flush();
        }
        _ => {}
    }
    if let Some(fromhost) = prog.fromhost {
        ram.write_u64(fromhost, (device << 56) | (cmd << 48));
    }
    None
}
