//! The one QEMU launcher of the benchmarks: whether QEMU is installed, and
//! the command line of its `virt` board every baseline runs on (TCG, no
//! reboot), with Linux booted as `lockstep run` boots it. Each bench adds
//! its display, console and devices, and runs the command its own way
//! (to completion, polled with a time limit, or kept while it talks to
//! the monitor).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// The QEMU every baseline runs.
pub const QEMU: &str = "qemu-system-riscv64";

/// Whether QEMU is installed (its `--version` runs and succeeds).
pub fn installed() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether to run a QEMU baseline: not when `skip` (`--no-qemu`); when it
/// is not installed, says so on stderr.
pub fn wanted(skip: bool) -> bool {
    if skip {
        return false;
    }
    let installed = installed();
    if !installed {
        eprintln!("bench: {QEMU} is not installed (Debian: qemu-system-misc); no baseline");
    }
    installed
}

/// `qemu-system-riscv64 -machine virt -no-reboot -m <MiB> -smp <cpus>`.
pub fn virt(memory_mib: u64, cpus: u32) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", "virt", "-no-reboot"])
        .arg("-m")
        .arg(memory_mib.to_string())
        .arg("-smp")
        .arg(cpus.to_string());
    cmd
}

/// Boot Linux on `cmd`'s board: the firmware, kernel, initramfs and
/// kernel command line `lockstep run` would be given.
pub fn boot_linux<'a>(
    cmd: &'a mut Command,
    firmware: &Path,
    kernel: &Path,
    initrd: &Path,
    append: impl AsRef<OsStr>,
) -> &'a mut Command {
    cmd.arg("-bios")
        .arg(firmware)
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linux_boot_on_virt() {
        let mut cmd = virt(512, 2);
        boot_linux(
            &mut cmd,
            Path::new("fw.bin"),
            Path::new("vmlinux"),
            Path::new("initrd.gz"),
            "console=ttyS0",
        )
        .arg("-nographic");
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(cmd.get_program(), QEMU);
        assert_eq!(
            args,
            [
                "-machine",
                "virt",
                "-no-reboot",
                "-m",
                "512",
                "-smp",
                "2",
                "-bios",
                "fw.bin",
                "-kernel",
                "vmlinux",
                "-initrd",
                "initrd.gz",
                "-append",
                "console=ttyS0",
                "-nographic"
            ]
        );
    }
}
