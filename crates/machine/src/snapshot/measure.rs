//! Timing of snapshot save and restore, for `lockstep bench` and the
//! ignored timing test. Host time is read here only to report it.

use super::{RamEncoding, RestoreOptions, SaveOptions, SnapshotError};
use crate::machine::{BootImages, Machine, MachineConfig};
use crate::NullOutput;
use riscv::ram::PAGE_SIZE;
use riscv::Ram;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A machine to time snapshots of.
#[derive(Debug, Clone)]
pub struct MeasureSpec {
    pub memory: u64,
    pub cpus: usize,
    /// Bytes of RAM filled with non-zero data, spread over all of RAM.
    pub touched: u64,
    /// Size of the boot images (an initrd of that size): they are part of
    /// the snapshot, mapped on restore and read in full at the first reset
    /// (or a verified restore).
    pub image_bytes: usize,
    pub ram: RamEncoding,
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            memory: 512 << 20,
            cpus: 1,
            touched: 128 << 20,
            image_bytes: 0,
            ram: RamEncoding::Sparse,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Measurement {
    pub save: Duration,
    pub file_bytes: u64,
    pub allocated_bytes: u64,
    /// From `restore_snapshot` being called to the machine being returned.
    pub restore: Duration,
    /// From `restore_snapshot` being called to the first step's end.
    pub restore_to_first_step: Duration,
    /// The restored machine's first reset: the boot images' deferred
    /// check and load.
    pub first_reset: Duration,
    /// A restore with every checksum and the state hash verified.
    pub verified_restore: Duration,
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "save {:.1} ms ({} MiB file, {} MiB on disk), restore {:.3} ms, \
             restore to first step {:.3} ms, first reset {:.1} ms, verified restore {:.1} ms",
            self.save.as_secs_f64() * 1e3,
            self.file_bytes >> 20,
            self.allocated_bytes >> 20,
            self.restore.as_secs_f64() * 1e3,
            self.restore_to_first_step.as_secs_f64() * 1e3,
            self.first_reset.as_secs_f64() * 1e3,
            self.verified_restore.as_secs_f64() * 1e3,
        )
    }
}

/// Time save and restore of a machine built to `spec` (its firmware spins
/// in a loop), with the snapshot file in `dir` (removed afterwards).
pub fn measure(dir: &Path, spec: &MeasureSpec) -> Result<Measurement, SnapshotError> {
    let path = dir.join("measure.snapshot");
    let machine_err = |source| SnapshotError::Save {
        path: path.clone(),
        source,
    };
    let config = MachineConfig {
        cpus: spec.cpus,
        memory: spec.memory,
        images: BootImages {
            firmware: 0x0000_006f_u32.to_le_bytes().to_vec().into(), // j .
            kernel: measure_kernel().into(),
            initrd: (spec.image_bytes > 0).then(|| measure_initrd(spec.image_bytes).into()),
        },
        bootargs: String::new(),
        boot_wall_ns: 0,
        vmgenid: [0; 16],
        virtio: Vec::new(),
        instructions_per_tick: crate::clock::InstructionsPerTick::DEFAULT,
    };
    let mut m = Machine::new(config, Box::new(NullOutput)).map_err(machine_err)?;
    fill_pages(&mut m.ram, spec.touched);
    m.step().map_err(machine_err)?;

    let start = Instant::now();
    let info = m.save_snapshot_with(
        &path,
        &SaveOptions {
            ram: spec.ram,
            vm_uuid: None,
        },
    )?;
    let save = start.elapsed();

    let start = Instant::now();
    let mut restored = Machine::restore_snapshot(&path, Box::new(NullOutput), Vec::new())?;
    let restore = start.elapsed();
    restored.step().map_err(machine_err)?;
    let restore_to_first_step = start.elapsed();
    let start = Instant::now();
    restored.reset().map_err(machine_err)?;
    let first_reset = start.elapsed();
    drop(restored);

    let start = Instant::now();
    let verify = RestoreOptions {
        verify: true,
        ..Default::default()
    };
    let checked = Machine::restore_snapshot_with(&path, Box::new(NullOutput), Vec::new(), &verify)?;
    let verified_restore = start.elapsed();
    drop(checked);
    std::fs::remove_file(&path).map_err(|source| SnapshotError::Io { path, source })?;
    Ok(Measurement {
        save,
        file_bytes: info.file_bytes,
        allocated_bytes: info.allocated_bytes,
        restore,
        restore_to_first_step,
        first_reset,
        verified_restore,
    })
}

/// The smallest flat RISC-V Linux `Image` the loader accepts.
fn measure_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 64];
    k[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    k[0x38..0x3c].copy_from_slice(b"RSC\x05");
    k
}

/// `len` bytes that the loader takes for an initrd (a cpio magic).
fn measure_initrd(len: usize) -> Vec<u8> {
    let mut initrd = vec![0xa5; len.max(6)];
    initrd[..6].copy_from_slice(b"070701");
    initrd
}

/// Fill `bytes` worth of pages, evenly spread, with non-zero data that
/// differs from page to page (compressible, like real memory often is).
fn fill_pages(ram: &mut Ram, bytes: u64) {
    // Page 0 holds the firmware the machine runs.
    let pages = ram.pages() as u64 - 1;
    let fill = (bytes / PAGE_SIZE).min(pages);
    if fill == 0 {
        return;
    }
    let stride = pages / fill;
    let mut page = vec![0u8; PAGE_SIZE as usize];
    for i in 0..fill {
        let p = 1 + i * stride;
        for (j, b) in page.iter_mut().enumerate() {
            *b = (p as usize ^ (j / 16)) as u8 | 1;
        }
        ram.write(ram.base() + p * PAGE_SIZE, &page);
    }
}
