//! The deterministic machine: harts, RAM and devices, advanced one slice at
//! a time (DESIGN §3.1). Harts interleave round-robin in fixed quanta on the
//! calling thread; every slice also ends at the next timer deadline, so
//! timer interrupts arrive at exact instruction counts.
//!
//! Nothing here reads host time or depends on thread timing: guest time
//! moves only with retired instructions and explicit clock-warp [`Input`]s,
//! which the host-side runner decides.

use crate::board::{Board, Devices};
use crate::clock::{Clock, InstructionsPerTick};
use crate::devices::Finish;
use crate::fdt::{self, FdtConfig};
use crate::hash::RamHasher;
use crate::images::{CorruptImages, ImageBytes};
use crate::io::{Input, Output};
use crate::layout::{MAX_HARTS, RAM_BASE, VIRTIO_SLOTS, VMGENID_IRQ};
use crate::loader::{self, LoadError, FDT_MAX};
use crate::rom::{self, BootTargets};
use crate::state::Persist;
use crate::tracked_disk::{SwapError, TrackedDisk};
use crate::virtio::{blk, VirtioMmio, VirtioSpec};
use disk::{BlockDevice, DiskError};
use riscv::hart::Exit;
use riscv::ram::RamError;
use riscv::{Hart, HartState, Ram};

/// Instructions a hart runs before the next one gets its turn.
pub const QUANTUM: u64 = 10_000;
/// Largest guest RAM the board offers.
pub const MAX_MEMORY: u64 = 64 << 30;

/// The images the machine boots (and boots again on reset). Build them
/// from `Vec<u8>`s with `.into()`; a restored machine's are a mapping of
/// its snapshot file, checked on first use ([`BootImages::verify`]).
#[derive(Debug, Clone)]
pub struct BootImages {
    /// OpenSBI `fw_dynamic` as a raw binary or an ELF.
    pub firmware: ImageBytes,
    /// Linux as a flat RISC-V `Image` or an ELF.
    pub kernel: ImageBytes,
    pub initrd: Option<ImageBytes>,
}

impl BootImages {
    /// Check the images against the snapshot they were restored from (a
    /// no-op for images read from files). Loading and saving call this
    /// first, so corrupt images never reach guest RAM or a new snapshot.
    pub fn verify(&self) -> Result<(), CorruptImages> {
        self.firmware.verify()?;
        self.kernel.verify()?;
        self.initrd.as_ref().map_or(Ok(()), ImageBytes::verify)
    }
}

/// Everything the machine is built from. All of it is decided before boot
/// (`boot_wall_ns` and `vmgenid` by the host: they are inputs too).
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub cpus: usize,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub images: BootImages,
    /// Kernel command line.
    pub bootargs: String,
    /// Wall-clock time at boot, nanoseconds since the Unix epoch (the RTC).
    pub boot_wall_ns: u64,
    pub vmgenid: [u8; 16],
    /// virtio devices, one per slot from slot 0. Each `Block` takes the
    /// next disk handed to [`Machine::with_disks`].
    pub virtio: Vec<VirtioSpec>,
    /// Guest time's rate: retired instructions per `mtime` tick (see
    /// [`crate::clock`]).
    pub instructions_per_tick: InstructionsPerTick,
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("unsupported number of CPUs {0}: the board has 1 to {MAX_HARTS}")]
    BadCpus(usize),
    #[error(
        "unsupported memory size {} KiB: it must be a whole number of 2 MiB blocks, at most {} GiB",
        .0 >> 10,
        MAX_MEMORY >> 30
    )]
    BadMemory(u64),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    CorruptImages(#[from] CorruptImages),
    #[error("guest RAM: {0}")]
    Ram(#[from] RamError),
    #[error("building the device tree: {0}")]
    Fdt(#[from] vm_fdt::Error),
    #[error("the device tree is {0} bytes, more than the {FDT_MAX} the board allows")]
    FdtTooBig(usize),
    #[error("{what} at {addr:#x} (+{len:#x}) is outside guest RAM")]
    OutsideRam {
        what: &'static str,
        addr: u64,
        len: u64,
    },
    #[error("serialising machine state: {0}")]
    Serialize(#[from] postcard::Error),
    #[error("{0} virtio devices requested; the board has {VIRTIO_SLOTS} slots")]
    TooManyVirtio(usize),
    #[error("{specs} virtio block devices configured but {disks} disks given")]
    DiskCount { specs: usize, disks: usize },
    #[error("disk serial {0:?} is longer than {max} bytes", max = blk::ID_LEN)]
    BadSerial(String),
    #[error("flushing disk {slot}: {source}")]
    Flush { slot: usize, source: DiskError },
    #[error("reading disk {slot} back for the state hash: {source}")]
    DiskHash { slot: usize, source: DiskError },
    #[error("the machine has no disk number {index}")]
    NoSuchDisk { index: usize },
    #[error("switching disk {slot} to a new backend: {source}")]
    DiskSwap { slot: usize, source: SwapError },
}

/// What one call to [`Machine::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A hart ran (possibly only part of its quantum).
    Ran,
    /// Every hart waits for an interrupt: guest time will only move by a
    /// clock warp or an input.
    Idle,
    /// The guest reset the machine; it restarted from the boot images.
    Reset,
    /// The guest powered off with this exit code (0 = success).
    Poweroff(u32),
    /// A hart took traps in a loop without retiring anything.
    TrapStorm { hart: usize, pc: u64, cause: u64 },
}

pub struct Machine {
    pub(crate) config: MachineConfig,
    pub(crate) harts: Vec<Hart>,
    pub(crate) ram: Ram,
    pub(crate) board: Board,
    /// Instructions retired by all harts since the machine was created.
    pub(crate) icount: u64,
    /// The hart whose turn it is.
    pub(crate) current: usize,
    /// Instructions the current hart has retired in this turn.
    pub(crate) turn_retired: u64,
    /// RAM's part of the state hash, kept up to date incrementally.
    pub(crate) ram_hasher: RamHasher,
    /// The harts may use the interpreter's fast loop (not state: the
    /// results are the same; see [`Machine::set_fast_path`]).
    pub(crate) fast_path: bool,
    /// The harts run translated code (not state either; see
    /// [`Machine::set_jit`]).
    pub(crate) jit: bool,
}

impl Machine {
    /// A machine without disks (its config must name no block devices).
    pub fn new(config: MachineConfig, output: Box<dyn Output>) -> Result<Self, MachineError> {
        Self::with_disks(config, output, Vec::new())
    }

    /// A machine whose virtio block devices are backed by `disks`, in order.
    pub fn with_disks(
        config: MachineConfig,
        output: Box<dyn Output>,
        disks: Vec<Box<dyn BlockDevice>>,
    ) -> Result<Self, MachineError> {
        if !(1..=MAX_HARTS).contains(&config.cpus) {
            return Err(MachineError::BadCpus(config.cpus));
        }
        if config.memory == 0 || config.memory & ((2 << 20) - 1) != 0 || config.memory > MAX_MEMORY
        {
            return Err(MachineError::BadMemory(config.memory));
        }
        let (virtio, disks) = virtio_devices(&config.virtio, disks)?;
        let (ram, rom) = load_images(&config)?;
        let board = Board {
            devices: Devices::new(config.cpus, config.boot_wall_ns, config.vmgenid, virtio),
            clock: Clock::new(0, config.instructions_per_tick),
            rom,
            output,
            icount_base: 0,
            finish: None,
            // Tracked from power-on: replicas start from identical disks.
            disks: disks.into_iter().map(|d| d.map(TrackedDisk::new)).collect(),
        };
        let harts = (0..config.cpus).map(|h| Hart::new(h as u64)).collect();
        Ok(Self {
            config,
            harts,
            ram,
            board,
            icount: 0,
            current: 0,
            turn_retired: 0,
            ram_hasher: RamHasher::new(),
            fast_path: true,
            jit: false,
        })
    }

    /// Let the harts use the interpreter's fast loop (the default) or only
    /// its general loop, now and after resets. Not part of the machine:
    /// both compute the same, to the instruction and the state hash; the
    /// general loop alone is the reference tests compare with.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
        self.harts.iter_mut().for_each(|h| h.set_fast_path(on));
    }

    /// Let the harts run translated code (the translator, on x86-64 hosts)
    /// instead of the interpreter's fast loop, now and after resets; off
    /// by default. Not part of the machine either: the results are the
    /// same, to the instruction and the state hash. Returns whether the
    /// translator is in use (false on other hosts).
    pub fn set_jit(&mut self, on: bool) -> bool {
        self.jit = on;
        let mut all = true;
        for h in &mut self.harts {
            all &= h.set_jit(on);
        }
        on && all
    }

    /// The translator's counters, summed over the harts (zero when it is
    /// off).
    pub fn jit_stats(&self) -> riscv::JitStats {
        let mut sum = riscv::JitStats::default();
        for s in self.harts.iter().map(Hart::jit_stats) {
            sum.add(&s);
        }
        sum
    }

    /// Restart from the boot images, as after power-on. The icount keeps
    /// counting (it numbers inputs and outputs); `mtime` restarts at 0.
    /// If the images fail their check ([`BootImages::verify`]) or do not
    /// load, nothing changes and the error says why.
    pub fn reset(&mut self) -> Result<(), MachineError> {
        let (ram, rom) = load_images(&self.config)?;
        let vmgenid = self.board.devices.vmgenid.id();
        let mut virtio = std::mem::take(&mut self.board.devices.virtio);
        virtio.iter_mut().for_each(VirtioMmio::reset);
        self.ram = ram;
        self.board.rom = rom;
        self.board.devices =
            Devices::new(self.config.cpus, self.config.boot_wall_ns, vmgenid, virtio);
        self.board.clock = Clock::new(self.icount, self.config.instructions_per_tick);
        self.board.finish = None;
        self.harts = (0..self.config.cpus).map(|h| Hart::new(h as u64)).collect();
        self.set_fast_path(self.fast_path);
        self.set_jit(self.jit);
        self.current = 0;
        self.turn_retired = 0;
        Ok(())
    }

    /// Run the harts until something happens: at most one quantum of one
    /// hart, less if a timer deadline, an MMIO access or an interrupt state
    /// change comes first.
    pub fn step(&mut self) -> Result<Step, MachineError> {
        self.step_until(u64::MAX)
    }

    /// [`Machine::step`], but never past icount `limit` (a replay stops
    /// exactly where the recorded run applied its next input). Stopping
    /// early changes nothing else: the slice that follows continues the
    /// same turn, so the run is the same as one never stopped. Returns
    /// `Step::Ran` without running if the icount is already at `limit`.
    pub fn step_until(&mut self, limit: u64) -> Result<Step, MachineError> {
        if self.icount >= limit {
            return Ok(Step::Ran);
        }
        for _ in 0..self.harts.len() {
            if let Some(step) = self.run_current(limit - self.icount)? {
                return Ok(step);
            }
        }
        Ok(Step::Idle)
    }

    /// One slice of the current hart, at most `max` instructions; `None` if
    /// it is idle in WFI.
    fn run_current(&mut self, max: u64) -> Result<Option<Step>, MachineError> {
        let h = self.current;
        let mtime = self.mtime();
        let budget = (QUANTUM - self.turn_retired)
            .min(self.instructions_to_deadline())
            .min(max);
        let hart = &mut self.harts[h];
        self.board.sync_irqs(h, hart, mtime);
        let before = hart.instret();
        self.board.icount_base = self.icount.wrapping_sub(before);
        let exit = hart.run(&mut self.ram, &mut self.board, budget);
        let retired = hart.instret().wrapping_sub(before);
        self.icount += retired;
        self.turn_retired += retired;
        // A queue notify ended the slice at its store: complete it now.
        self.board.process_virtio(&mut self.ram, self.icount);

        if let Some(finish) = self.board.finish.take() {
            return Ok(Some(match finish {
                Finish::Poweroff(code) => Step::Poweroff(code),
                Finish::Reset => {
                    self.reset()?;
                    Step::Reset
                }
            }));
        }
        Ok(match exit {
            Exit::TrapStorm { pc, cause } => Some(Step::TrapStorm { hart: h, pc, cause }),
            Exit::Wfi => {
                self.next_hart();
                (retired > 0).then_some(Step::Ran)
            }
            Exit::Budget | Exit::Yield => {
                if self.turn_retired >= QUANTUM {
                    self.next_hart();
                }
                Some(Step::Ran)
            }
        })
    }

    fn next_hart(&mut self) {
        if self.harts.len() > 1 {
            // Another hart runs next: any store of it may hit the reserved
            // address, and the hart cannot see that.
            self.harts[self.current].clear_reservation();
            self.current = (self.current + 1) % self.harts.len();
        }
        self.turn_retired = 0;
    }

    /// Instructions until the next timer deadline (at least 1).
    fn instructions_to_deadline(&self) -> u64 {
        self.next_deadline()
            .and_then(|d| self.board.clock.icount_at(d))
            .map_or(u64::MAX, |at| at.saturating_sub(self.icount).max(1))
    }

    /// The next `mtime` (strictly after now) at which a timer fires: a
    /// hart's `mtimecmp` or `stimecmp`, or the RTC alarm.
    pub fn next_deadline(&self) -> Option<u64> {
        let now = self.mtime();
        let devices = &self.board.devices;
        let timers = self
            .harts
            .iter()
            .enumerate()
            .flat_map(|(h, hart)| [devices.clint.deadline(h), hart.stimecmp_deadline()]);
        timers
            .chain([devices.rtc.deadline(now)])
            .flatten()
            .filter(|&d| d > now)
            .min()
    }

    /// Apply an input at the current instruction boundary: the one way
    /// anything from outside reaches the machine (DESIGN §3.3).
    pub fn input(&mut self, input: Input) {
        let devices = &mut self.board.devices;
        match input {
            Input::ClockWarp(ticks) => self.board.clock.warp(ticks),
            Input::Console(bytes) => devices.uart.receive(&bytes),
            Input::Net { nic, frame } => {
                if let Some(v) = devices.virtio.iter_mut().find(|v| v.nic() == Some(nic)) {
                    // A driver error leaves DEVICE_NEEDS_RESET for the guest.
                    let _ = v.receive(&mut self.ram, &frame);
                }
            }
            Input::VmGenId(id) => {
                devices.vmgenid.set(id);
                devices.plic.pulse(VMGENID_IRQ);
            }
        }
    }

    /// Whether NIC `nic` has a receive buffer posted, so that a frame given
    /// to it now is delivered.
    pub fn net_rx_ready(&self, nic: usize) -> bool {
        self.board
            .devices
            .virtio
            .iter()
            .find(|v| v.nic() == Some(nic))
            .is_some_and(|v| v.rx_ready(&self.ram))
    }

    /// Number of NICs (virtio-net devices) on the board.
    pub fn nics(&self) -> usize {
        self.board
            .devices
            .virtio
            .iter()
            .filter_map(VirtioMmio::nic)
            .count()
    }

    /// Console bytes the UART can take now without overrunning.
    pub fn console_room(&self) -> usize {
        self.board.devices.uart.rx_space()
    }

    /// Retired instructions since creation, over all harts.
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// Current guest time in `mtime` ticks.
    pub fn mtime(&self) -> u64 {
        self.board.clock.mtime(self.icount)
    }

    pub fn clock(&self) -> &Clock {
        &self.board.clock
    }

    pub fn harts(&self) -> &[Hart] {
        &self.harts
    }

    pub fn ram(&self) -> &Ram {
        &self.ram
    }

    pub fn devices(&self) -> &Devices {
        &self.board.devices
    }

    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// Send outputs to `output` from now on; returns the previous sink (an
    /// FT backup going live, a restored VM getting its NIC backends).
    pub fn replace_output(&mut self, output: Box<dyn Output>) -> Box<dyn Output> {
        std::mem::replace(&mut self.board.output, output)
    }

    /// The MAC address of each NIC, in NIC order.
    pub fn nic_macs(&self) -> Vec<[u8; 6]> {
        self.config
            .virtio
            .iter()
            .filter_map(|spec| match spec {
                VirtioSpec::Net { mac } => Some(*mac),
                _ => None,
            })
            .collect()
    }

    /// The disks behind the virtio block devices, in slot order.
    pub fn disks(&self) -> impl Iterator<Item = &dyn BlockDevice> + '_ {
        self.board
            .disks
            .iter()
            .flatten()
            .map(|d| d as &dyn BlockDevice)
    }

    /// Freeze (or thaw) every disk's image: flushed, no more writes, and
    /// other opens may read it (see [`BlockDevice::set_frozen`]). The guest
    /// must not run while its disks are frozen.
    pub fn set_disks_frozen(&mut self, frozen: bool) -> Result<(), MachineError> {
        for (slot, disk) in self.board.disks.iter_mut().enumerate() {
            if let Some(disk) = disk {
                disk.set_frozen(frozen)
                    .map_err(|source| MachineError::Flush { slot, source })?;
            }
        }
        Ok(())
    }

    /// Put `backend` in place of attached disk `index`'s (the n-th disk,
    /// in slot order), after flushing it: the new backend must read the
    /// same bytes (a new overlay over the flushed image). The guest sees
    /// no change; the old backend is returned (drop it to close it).
    pub fn replace_disk(
        &mut self,
        index: usize,
        backend: Box<dyn BlockDevice>,
    ) -> Result<Box<dyn BlockDevice>, MachineError> {
        let (slot, disk) = self
            .board
            .disks
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, d)| Some((slot, d.as_mut()?)))
            .nth(index)
            .ok_or(MachineError::NoSuchDisk { index })?;
        disk.flush()
            .map_err(|source| MachineError::Flush { slot, source })?;
        disk.replace_inner(backend)
            .map_err(|source| MachineError::DiskSwap { slot, source })
    }

    /// Make every disk write durable (on poweroff or before a snapshot).
    pub fn flush_disks(&mut self) -> Result<(), MachineError> {
        for (slot, disk) in self.board.disks.iter_mut().enumerate() {
            if let Some(disk) = disk {
                disk.flush()
                    .map_err(|source| MachineError::Flush { slot, source })?;
            }
        }
        Ok(())
    }

    /// A hash of the whole machine state: harts, devices, clock, scheduling
    /// position, RAM and the clusters written to each disk (DESIGN §3.7).
    /// Incremental: it rehashes only the RAM pages and disk clusters
    /// written since the last call (the first call hashes all of RAM);
    /// the result depends on the state alone, not on when it was called
    /// before. See [`crate::hash`].
    pub fn state_hash(&mut self) -> Result<[u8; 32], MachineError> {
        // The small state (each part's state type, serialised as the
        // snapshot stores it), then the RAM digest, then each disk's
        // digest with its virtio slot.
        let mut hasher = blake3::Hasher::new();
        let harts: Vec<HartState> = self.harts.iter().map(Hart::save).collect();
        let small = (
            &harts,
            &self.board.devices.save(),
            &self.board.clock.save(),
            self.icount,
            self.current,
            self.turn_retired,
        );
        hasher.update(&postcard::to_stdvec(&small)?);
        hasher.update(&self.ram_hasher.digest(&mut self.ram));
        for (slot, disk) in self.board.disks.iter_mut().enumerate() {
            if let Some(disk) = disk {
                let digest = disk
                    .digest()
                    .map_err(|source| MachineError::DiskHash { slot, source })?;
                hasher.update(&(slot as u64).to_le_bytes());
                hasher.update(&digest);
            }
        }
        Ok(hasher.finalize().into())
    }

    /// Hash up to `pages` RAM pages ahead of the next [`Machine::state_hash`]
    /// (which must otherwise hash every page changed since the last one:
    /// all of RAM the first time), so that it is short. True when little
    /// is left. Not guest-visible.
    pub fn prehash_state(&mut self, pages: usize) -> bool {
        self.ram_hasher.prehash(&mut self.ram, pages)
    }
}

/// Fresh RAM holding firmware, kernel, initrd and device tree, and the
/// reset ROM that boots them. Images restored from a snapshot are checked
/// first (on the first call only; the check is remembered).
pub(crate) fn load_images(config: &MachineConfig) -> Result<(Ram, Vec<u8>), MachineError> {
    let images = &config.images;
    images.verify()?;
    let placement = loader::place(
        &images.firmware,
        &images.kernel,
        images.initrd.as_deref(),
        config.memory,
    )?;
    let dtb = fdt::build(&FdtConfig {
        harts: config.cpus,
        ram_size: config.memory,
        bootargs: &config.bootargs,
        initrd: placement.initrd,
        virtio_slots: config.virtio.len(),
    })?;
    if dtb.len() > FDT_MAX {
        return Err(MachineError::FdtTooBig(dtb.len()));
    }
    // Fresh RAM is zero, which also provides the segments' BSS.
    let mut ram = Ram::new(RAM_BASE, config.memory)?;
    for s in &placement.segments {
        if !ram.contains(s.addr, s.mem_size) || !ram.write(s.addr, s.data) {
            return Err(MachineError::OutsideRam {
                what: "an image segment",
                addr: s.addr,
                len: s.mem_size,
            });
        }
    }
    if !ram.write(placement.fdt_addr, &dtb) {
        let len = dtb.len() as u64;
        return Err(MachineError::OutsideRam {
            what: "the device tree",
            addr: placement.fdt_addr,
            len,
        });
    }
    let rom = rom::build(&BootTargets {
        firmware_entry: placement.firmware_entry,
        fdt_addr: placement.fdt_addr,
        kernel_entry: placement.kernel_entry,
    });
    Ok((ram, rom))
}

/// The virtio slots' state and their disks, from the specs in slot order.
type VirtioSlots = (Vec<VirtioMmio>, Vec<Option<Box<dyn BlockDevice>>>);

pub(crate) fn virtio_devices(
    specs: &[VirtioSpec],
    disks: Vec<Box<dyn BlockDevice>>,
) -> Result<VirtioSlots, MachineError> {
    if specs.len() > VIRTIO_SLOTS {
        return Err(MachineError::TooManyVirtio(specs.len()));
    }
    let block_specs = specs
        .iter()
        .filter(|s| matches!(s, VirtioSpec::Block { .. }))
        .count();
    if block_specs != disks.len() {
        return Err(MachineError::DiskCount {
            specs: block_specs,
            disks: disks.len(),
        });
    }
    let mut disks = disks.into_iter();
    let mut slots = Vec::with_capacity(specs.len());
    let mut backends = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            VirtioSpec::Block { serial } => {
                if serial.len() > blk::ID_LEN {
                    return Err(MachineError::BadSerial(serial.clone()));
                }
                let disk = disks.next().ok_or(MachineError::DiskCount {
                    specs: block_specs,
                    disks: 0,
                })?;
                slots.push(VirtioMmio::block(serial, disk.capacity(), disk.read_only()));
                backends.push(Some(disk));
            }
            VirtioSpec::Rng { seed } => {
                slots.push(VirtioMmio::rng(*seed));
                backends.push(None);
            }
            VirtioSpec::Net { mac } => {
                let nic = slots.iter().filter_map(VirtioMmio::nic).count();
                slots.push(VirtioMmio::net(nic, *mac));
                backends.push(None);
            }
        }
    }
    Ok((slots, backends))
}
