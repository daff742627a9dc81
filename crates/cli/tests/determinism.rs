//! DESIGN §3.7: two runs of the benchmark guest (the Debian kernel with
//! bench/guest-workloads.sh as its `/init`) from identical configurations,
//! given no inputs but deterministic idle skips, have the same state hash
//! at every multiple of 100 M instructions, on one hart and on two. The
//! second run uses the interpreter's general loop alone
//! (`Machine::set_fast_path(false)`), the reference the fast loop must
//! match exactly, and a third runs translated code (`Machine::set_jit`),
//! which must match as exactly. A control
//! run booted one second later (the RTC's boot time) must not: the check
//! can fail. The boot time rather than the RNG seed, because this `/init`
//! loads no modules, so virtio-rng is never read and a seed change would
//! show only in the device's own state; the RTC driver is built in and the
//! kernel reads it at boot, so the control's execution really diverges.
//! Run with `--release`: each run executes a few billion instructions.

use machine::{
    BootImages, CaptureOutput, Input, Machine, MachineConfig, Output, OutputEvent, Step, VirtioSpec,
};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// The workload `lockstep bench` runs (the cli crate is a binary, so its
/// initramfs builder is out of reach; this is the same script and recipe).
const WORKLOADS: &str = include_str!("../../../bench/guest-workloads.sh");
/// `lockstep bench`'s kernel command line and memory size.
const APPEND: &str = "console=ttyS0 panic=-1 quiet";
const MEMORY: u64 = 512 << 20;

const CHECKPOINT_EVERY: u64 = 100_000_000;
/// Where the comparison stops if the guest has not powered off by then
/// (it has not: the whole workload is tens of billions of instructions).
/// About 23 s per run on an unloaded core here (~130 M instructions/s);
/// the workload prints its first line at ~1.4 G (1 hart) / ~1.5 G (2).
const BOUND: u64 = 3_000_000_000;

const SEED: [u8; 32] = [0x5e; 32];
const BOOT_WALL_NS: u64 = 1_700_000_000_000_000_000;
const VMGENID: [u8; 16] = *b"determinism-test";

/// The pulled kernel and firmware with the benchmark initramfs, built once
/// for all tests.
fn bench_images() -> &'static BootImages {
    static IMAGES: OnceLock<BootImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let image = guest_image::pull(&guest_image::PullOptions::default()).expect("guest image");
        let dir = tempfile::tempdir().expect("temp dir");
        let initrd = dir.path().join("bench-initrd.cpio.gz");
        guest_image::build_initramfs(&image, WORKLOADS.as_bytes(), &initrd)
            .expect("benchmark initramfs");
        let read = |path: &std::path::Path| {
            let bytes =
                std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            bytes.into()
        };
        BootImages {
            firmware: read(&image.firmware),
            kernel: read(&image.kernel),
            initrd: Some(read(&initrd)),
        }
    })
}

/// A console sink the test can still read after the machine took it.
#[derive(Clone, Default)]
struct SharedCapture(Arc<Mutex<CaptureOutput>>);

impl SharedCapture {
    fn get(&self) -> std::sync::MutexGuard<'_, CaptureOutput> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Output for SharedCapture {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        self.get().emit(icount, event);
    }
}

struct Guest {
    name: String,
    machine: Machine,
    output: SharedCapture,
    poweroff: Option<u32>,
    /// Clock warps applied (for the report: the runs exercise idle skips).
    idle_skips: u64,
}

impl Guest {
    /// Everything host-chosen (seed, boot time, generation id) is fixed;
    /// the boot time is a parameter for the control run.
    fn boot(name: &str, cpus: usize, boot_wall_ns: u64) -> Guest {
        let config = MachineConfig {
            cpus,
            memory: MEMORY,
            images: bench_images().clone(),
            bootargs: APPEND.to_string(),
            boot_wall_ns,
            vmgenid: VMGENID,
            virtio: vec![VirtioSpec::Rng { seed: SEED }],
            instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
        };
        let output = SharedCapture::default();
        let machine = Machine::new(config, Box::new(output.clone())).expect("build the machine");
        Guest {
            name: format!("{name} ({cpus} harts)"),
            machine,
            output,
            poweroff: None,
            idle_skips: 0,
        }
    }

    /// Run until icount `limit` exactly, or until the guest powers off.
    fn run_to(&mut self, limit: u64) {
        while self.poweroff.is_none() && self.machine.icount() < limit {
            match self.machine.step_until(limit).expect("step") {
                Step::Ran => {}
                Step::Idle => self.skip_idle(),
                Step::Poweroff(code) => self.poweroff = Some(code),
                other => panic!("{}: {other:?}; console:\n{}", self.name, self.console()),
            }
        }
    }

    /// Every hart waits: warp guest time to the next timer deadline, the
    /// only input these runs get. `next_deadline` is a pure function of
    /// machine state, so identical runs warp identically.
    fn skip_idle(&mut self) {
        let deadline = self.machine.next_deadline().unwrap_or_else(|| {
            panic!(
                "{}: idle with no timer armed at icount {}; console:\n{}",
                self.name,
                self.machine.icount(),
                self.console()
            )
        });
        // `next_deadline` is strictly after now.
        let ticks = deadline - self.machine.mtime();
        self.machine.input(Input::ClockWarp(ticks));
        self.idle_skips += 1;
    }

    fn hash(&mut self) -> [u8; 32] {
        self.machine.state_hash().expect("state hash")
    }

    /// Run the control to the same icount as `reference` (whose state hash
    /// is `hash`): has its state, RAM included, moved apart? RAM, not just
    /// the RTC register holding the boot time: the guest's execution.
    fn diverged_from(&mut self, reference: &Guest, hash: [u8; 32]) -> bool {
        self.run_to(reference.machine.icount());
        self.hash() != hash && self.machine.ram().as_slice() != reference.machine.ram().as_slice()
    }

    /// The workload started (its first line is on the console) and the run
    /// either reached the bound or completed the workload and powered off.
    fn assert_did_the_work(&self) {
        let console = self.console();
        let ran = match self.poweroff {
            Some(code) => code == 0 && console.contains("BENCH done "),
            None => self.machine.icount() == BOUND,
        };
        assert!(
            ran && console.contains("BENCH boot_to_init "),
            "{}: stopped at icount {} ({:?}) without running the workload; console:\n{console}",
            self.name,
            self.machine.icount(),
            self.poweroff
        );
    }

    /// The icount at which the guest printed `text`.
    fn icount_of(&self, text: &str) -> Option<u64> {
        let out = self.output.get();
        let at = out
            .console
            .windows(text.len())
            .position(|w| w == text.as_bytes())?;
        out.stamps.get(at).copied()
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&self.output.get().console).into_owned()
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_determinism(cpus: usize) {
    let started = Instant::now();
    let mut first = Guest::boot("first run", cpus, BOOT_WALL_NS);
    let mut second = Guest::boot("second run (general loop only)", cpus, BOOT_WALL_NS);
    second.machine.set_fast_path(false);
    // The translator (x86-64 hosts; the interpreter elsewhere) must match
    // too, hash for hash.
    let mut third = Guest::boot("third run (translator)", cpus, BOOT_WALL_NS);
    third.machine.set_jit(true);
    let mut control = Some(Guest::boot("control", cpus, BOOT_WALL_NS + 1_000_000_000));
    let mut control_diverged_at = None;
    let mut seen: Vec<[u8; 32]> = Vec::new();

    for limit in (CHECKPOINT_EVERY..=BOUND).step_by(CHECKPOINT_EVERY as usize) {
        first.run_to(limit);
        second.run_to(limit);
        third.run_to(limit);
        let at = first.machine.icount();
        assert_eq!(
            (at, first.poweroff),
            (second.machine.icount(), second.poweroff),
            "{cpus} harts: the runs stopped at different points"
        );
        assert_eq!(
            (at, first.poweroff),
            (third.machine.icount(), third.poweroff),
            "{cpus} harts: the translated run stopped at another point"
        );
        let hash = first.hash();
        assert_eq!(
            hex(&hash),
            hex(&second.hash()),
            "{cpus} harts: state hashes differ at icount {at}"
        );
        assert_eq!(
            hex(&hash),
            hex(&third.hash()),
            "{cpus} harts: the translated run's state hash differs at icount {at}"
        );
        // A hash that stood still while the guest ran would compare equal
        // for the wrong reason.
        assert!(
            !seen.contains(&hash),
            "{cpus} harts: the state hash at icount {at} repeats an earlier one"
        );
        seen.push(hash);
        if control
            .as_mut()
            .is_some_and(|c| c.diverged_from(&first, hash))
        {
            control_diverged_at = Some(at);
            control = None;
        }
        if first.poweroff.is_some() {
            break;
        }
    }

    let (at, secs) = (first.machine.icount(), started.elapsed().as_secs_f64());
    eprintln!(
        "{cpus} harts: {} equal checkpoints up to icount {at} ({:?}, {} idle skips, \
         workload started at icount {:?}); the control diverged at icount \
         {control_diverged_at:?}; {secs:.1} s",
        seen.len(),
        first.poweroff,
        first.idle_skips,
        first.icount_of("BENCH boot_to_init ")
    );
    assert!(
        control_diverged_at.is_some(),
        "{cpus} harts: a guest booted one second later never diverged by icount {at}"
    );
    first.assert_did_the_work();
    let (a, b) = (first.output.get(), second.output.get());
    assert!(
        a.console == b.console && a.stamps == b.stamps,
        "{cpus} harts: the runs' consoles differ"
    );
    let c = third.output.get();
    assert!(
        a.console == c.console && a.stamps == c.stamps,
        "{cpus} harts: the translated run's console differs"
    );
}

#[test]
fn bench_guest_runs_are_identical_on_one_hart() {
    check_determinism(1);
}

#[test]
fn bench_guest_runs_are_identical_on_two_harts() {
    check_determinism(2);
}
