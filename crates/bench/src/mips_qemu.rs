//! `lockstep bench mips` under QEMU: the same loop, on QEMU TCG's `virt`
//! board with no firmware (`-bios none`: its reset vector jumps straight to
//! the program at the start of RAM), ended by a write to the SiFive test
//! device, which powers QEMU off.
//!
//! QEMU is timed by wall clock from spawn to exit. To leave out its own
//! start-up and exit (tens of ms), the loop also runs with one iteration;
//! the difference of the two times is the time of the other iterations,
//! whose instructions the program defines exactly (16 per iteration). Each
//! run is made twice and the faster kept, so one hiccup of a shared host
//! does not count.

use crate::guest::Scratch;
use crate::qemu::{self, QEMU};
use crate::{mips_program_with, LoopExit, LOOP_LEN};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Longest a QEMU run may take before it is taken for a hang.
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum QemuMipsError {
    #[error("writing the benchmark program to {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {QEMU}: {0}")]
    Spawn(std::io::Error),
    #[error("{QEMU} ran the benchmark loop for more than {} s without powering off", RUN_LIMIT.as_secs())]
    Hung,
    #[error("{QEMU} exited with {0} instead of powering off through the test device")]
    Failed(std::process::ExitStatus),
    #[error("the 1-iteration run took longer than the full one; the host is too busy to measure")]
    Noise,
    #[error(transparent)]
    Scratch(#[from] crate::guest::BenchError),
}

/// One measurement of the loop under QEMU.
#[derive(Debug, Clone, Copy)]
pub struct QemuMips {
    /// Instructions of the iterations timed (all but the first).
    pub instructions: u64,
    /// Their time: the full run minus the 1-iteration run.
    pub loop_secs: f64,
    pub wall_secs: f64,
    pub startup_secs: f64,
}

/// Time the loop of `iterations` passes under QEMU TCG.
pub fn measure(iterations: u32) -> Result<QemuMips, QemuMipsError> {
    let scratch = Scratch::new("mips")?;
    let full = write_program(scratch.path(), "loop.bin", iterations)?;
    let one = write_program(scratch.path(), "one.bin", 1)?;
    let startup = best_of_two(&one)?;
    let wall = best_of_two(&full)?;
    let loop_secs = wall - startup;
    if loop_secs <= 0.0 {
        return Err(QemuMipsError::Noise);
    }
    Ok(QemuMips {
        instructions: LOOP_LEN * u64::from(iterations.saturating_sub(1)),
        loop_secs,
        wall_secs: wall,
        startup_secs: startup,
    })
}

fn write_program(
    dir: &Path,
    name: &str,
    iterations: u32,
) -> Result<std::path::PathBuf, QemuMipsError> {
    let path = dir.join(name);
    let bytes: Vec<u8> = mips_program_with(iterations, LoopExit::SifiveTest)
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    std::fs::write(&path, bytes).map_err(|source| QemuMipsError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn best_of_two(program: &Path) -> Result<f64, QemuMipsError> {
    let a = run_once(program)?;
    let b = run_once(program)?;
    Ok(a.min(b))
}

/// Wall seconds of one QEMU run of `program`, from spawn to exit.
fn run_once(program: &Path) -> Result<f64, QemuMipsError> {
    let mut loader = std::ffi::OsString::from("loader,addr=0x80000000,force-raw=on,file=");
    loader.push(program);
    let started = Instant::now();
    let mut child = qemu::virt(64, 1)
        .args(["-bios", "none"])
        .args(["-display", "none", "-serial", "none", "-monitor", "none"])
        .arg("-device")
        .arg(loader)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(QemuMipsError::Spawn)?;
    loop {
        if let Some(status) = child.try_wait().map_err(QemuMipsError::Spawn)? {
            let secs = started.elapsed().as_secs_f64();
            return if status.success() {
                Ok(secs)
            } else {
                Err(QemuMipsError::Failed(status))
            };
        }
        if started.elapsed() > RUN_LIMIT {
            // Ours to stop: it is the child we spawned.
            let _ = child.kill();
            let _ = child.wait();
            return Err(QemuMipsError::Hung);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
