//! `lockstep bench` (guest workloads): the shared workload script as the
//! initramfs `/init`, run under lockstep and — when installed — under QEMU's
//! TCG on the same kernel, firmware and initramfs, in the same invocation.

use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The project's copy of `../shared/bench/guest-workloads.sh`.
const WORKLOADS: &str = include_str!("../../../bench/guest-workloads.sh");
const APPEND: &str = "console=ttyS0 panic=-1 quiet";
const QEMU: &str = "qemu-system-riscv64";

#[derive(Args, Debug, Default)]
pub struct GuestBenchArgs {
    /// Harts for both VMs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory for both VMs, in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Skip the QEMU baseline even if QEMU is installed.
    #[arg(long)]
    pub no_qemu: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Extra flags for `lockstep run` (e.g. "--record /tmp/x.log"), split on spaces.
    #[arg(long, default_value = "")]
    pub run_flags: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("guest image: {0}")]
    Image(#[from] guest_image::ImageError),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not complete the workloads (missing: {missing}); its output ended with:\n{tail}")]
    Incomplete {
        what: String,
        missing: String,
        tail: String,
    },
    #[error("workload outputs differ: lockstep ran [{ours}], QEMU ran [{theirs}]")]
    Mismatch { ours: String, theirs: String },
    #[error("cannot create {path}: {source}")]
    Temp {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The BENCH lines of one run plus its wall-clock time.
#[derive(Debug, Default)]
struct RunResult {
    guest: BTreeMap<String, f64>,
    order: Vec<String>,
    wall: f64,
}

pub fn run(args: GuestBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let image =
        guest_image::pull(&guest_image::PullOptions::default()).map_err(BenchError::from)?;
    let dir = std::env::temp_dir().join(format!("lockstep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Temp {
        path: dir.clone(),
        source,
    })?;
    let initrd = dir.join("bench-initrd.cpio.gz");
    guest_image::build_initramfs(&image, WORKLOADS.as_bytes(), &initrd)
        .map_err(BenchError::from)?;
    let result = compare(&args, &image, &initrd);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn compare(
    args: &GuestBenchArgs,
    image: &guest_image::GuestImage,
    initrd: &Path,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    eprintln!("bench: running the workloads under lockstep …");
    let ours = run_lockstep(args, image, initrd)?;
    let qemu = if args.no_qemu || !qemu_installed() {
        if !args.no_qemu {
            eprintln!("bench: {QEMU} is not installed (Debian: qemu-system-misc); no baseline");
        }
        None
    } else {
        eprintln!("bench: running the same workloads under QEMU TCG …");
        let q = run_qemu(args, image, initrd)?;
        if q.order != ours.order {
            return Err(BenchError::Mismatch {
                ours: ours.order.join(" "),
                theirs: q.order.join(" "),
            }
            .into());
        }
        Some(q)
    };
    if args.json {
        print_json(&ours, qemu.as_ref());
    } else {
        print_table(&ours, qemu.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

fn qemu_installed() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_lockstep(
    args: &GuestBenchArgs,
    image: &guest_image::GuestImage,
    initrd: &Path,
) -> Result<RunResult, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Spawn {
        what: "lockstep".into(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--kernel")
        .arg(&image.kernel)
        .arg("--firmware")
        .arg(&image.firmware)
        .arg("--initrd")
        .arg(initrd)
        .args(["--append", APPEND, "--console", "stdio"])
        .arg("--cpus")
        .arg(args.cpus.to_string())
        .arg("--memory")
        .arg(format!("{}M", args.memory_mib))
        .args(args.run_flags.split_whitespace());
    timed("lockstep", cmd)
}

fn run_qemu(
    args: &GuestBenchArgs,
    image: &guest_image::GuestImage,
    initrd: &Path,
) -> Result<RunResult, BenchError> {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", "virt", "-nographic", "-no-reboot"])
        .arg("-m")
        .arg(args.memory_mib.to_string())
        .arg("-smp")
        .arg(args.cpus.to_string())
        .arg("-bios")
        .arg(&image.firmware)
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", APPEND]);
    timed("QEMU", cmd)
}

/// Run a VM to completion with no input, collecting its BENCH lines.
fn timed(what: &str, mut cmd: Command) -> Result<RunResult, BenchError> {
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        what: what.into(),
        source,
    })?;
    let wall = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = parse_bench_lines(&text);
    r.wall = wall;
    if !r.guest.contains_key("done") {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(BenchError::Incomplete {
            what: what.into(),
            missing: "BENCH done".into(),
            tail,
        });
    }
    Ok(r)
}

fn parse_bench_lines(text: &str) -> RunResult {
    let mut r = RunResult::default();
    for line in text.lines() {
        let mut it = line.trim_end_matches('\r').split_whitespace();
        if it.next() != Some("BENCH") {
            continue;
        }
        let (Some(name), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            r.order.push(name.to_string());
            r.guest.insert(name.to_string(), v);
        }
    }
    r
}

fn print_table(ours: &RunResult, qemu: Option<&RunResult>) {
    println!(
        "{:<18} {:>14} {:>14} {:>8}",
        "workload", "lockstep (s)", "qemu (s)", "ratio"
    );
    for name in &ours.order {
        let a = ours.guest[name];
        match qemu.and_then(|q| q.guest.get(name)) {
            Some(b) => println!("{name:<18} {a:>14.3} {b:>14.3} {:>8.2}", ratio(a, *b)),
            None => println!("{name:<18} {a:>14.3} {:>14} {:>8}", "-", "-"),
        }
    }
    match qemu {
        Some(q) => {
            println!(
                "{:<18} {:>14.3} {:>14.3} {:>8.2}",
                "wall",
                ours.wall,
                q.wall,
                ratio(ours.wall, q.wall)
            );
            println!("ratio {:.2}", ratio(ours.wall, q.wall));
        }
        None => println!("{:<18} {:>14.3}", "wall", ours.wall),
    }
}

fn print_json(ours: &RunResult, qemu: Option<&RunResult>) {
    let obj = |r: &RunResult| serde_json::json!({ "guest": r.guest, "wall": r.wall });
    let doc = serde_json::json!({
        "lockstep": obj(ours),
        "qemu": qemu.map(obj),
        "ratio": qemu.map(|q| ratio(ours.wall, q.wall)),
    });
    println!("{doc}");
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_in_order_and_ignores_noise() {
        let r = parse_bench_lines(
            "[  1.0] boot\nBENCH boot_to_init 1.5\r\nBENCH x notanumber\nBENCH done 9.25\n",
        );
        assert_eq!(r.order, vec!["boot_to_init", "done"]);
        assert_eq!(r.guest["done"], 9.25);
    }
}
