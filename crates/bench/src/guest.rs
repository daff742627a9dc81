//! `lockstep bench` (guest workloads): the shared workload script as the
//! initramfs `/init`, run under lockstep and — when installed — under QEMU's
//! TCG on the same kernel, firmware and initramfs, in the same invocation.
//!
//! The pieces here (scratch directory, initramfs, the two VM launchers and
//! the `BENCH <name> <value>` protocol) are shared with `lockstep bench disk`.

use crate::qemu;
use crate::table::{num, Col, Table};
use clap::Args;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The project's copy of `../shared/bench/guest-workloads.sh`.
pub const WORKLOADS: &str = include_str!("../../../bench/guest-workloads.sh");
const APPEND: &str = "console=ttyS0 panic=-1 quiet";

/// Options shared by the guest benchmarks.
#[derive(Args, Debug, Default)]
pub struct GuestBenchArgs {
    /// Harts for both VMs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory for both VMs (whole MiB).
    #[arg(long = "memory", value_name = "SIZE", default_value = "512M", value_parser = vocab::size_in::<u32>(1 << 20, 16..=65536))]
    pub memory_mib: u32,
    #[arg(long = "memory-mib", hide = true, value_parser = vocab::renamed("--memory 512M"))]
    pub old_memory_mib: Option<String>,
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
    #[error("scratch disk {path}: {reason}")]
    Disk { path: PathBuf, reason: String },
    #[error("{what}: {name} took {seconds} s by the guest clock; cannot compute a rate")]
    BadTime {
        what: String,
        name: String,
        seconds: f64,
    },
}

/// The BENCH lines of one run plus its wall-clock time.
#[derive(Debug, Default)]
pub struct RunResult {
    pub guest: BTreeMap<String, f64>,
    pub order: Vec<String>,
    pub wall: f64,
    /// Under lockstep: its MIPS over the run and the host seconds it
    /// waited because guest time ran ahead (its speed line on stderr).
    pub speed: Option<(f64, f64)>,
}

/// A directory under the system temp dir, removed with its contents on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Result<Scratch, BenchError> {
        Scratch::new_in(&std::env::temp_dir(), tag)
    }

    /// A scratch directory inside `parent`.
    pub fn new_in(parent: &Path, tag: &str) -> Result<Scratch, BenchError> {
        let dir = parent.join(format!("lockstep-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| BenchError::Temp {
            path: dir.clone(),
            source,
        })?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One benchmark VM as both hypervisors boot it: the pulled kernel and
/// firmware, an initramfs whose `/init` is the workload, and the sizes.
pub struct BenchVm<'a> {
    pub args: &'a GuestBenchArgs,
    pub image: guest_image::GuestImage,
    pub initrd: PathBuf,
    /// The kernel command line of both VMs.
    pub append: String,
    /// Environment of the lockstep run.
    pub env: Vec<(OsString, OsString)>,
}

impl<'a> BenchVm<'a> {
    /// Pull (or find cached) the guest image and build an initramfs with
    /// `init` as its `/init`, inside `scratch`.
    pub fn prepare(
        args: &'a GuestBenchArgs,
        init: &str,
        scratch: &Scratch,
    ) -> Result<BenchVm<'a>, BenchError> {
        let image = guest_image::pull(&guest_image::PullOptions::default())?;
        let initrd = scratch.path().join("bench-initrd.cpio.gz");
        guest_image::build_initramfs(&image, init.as_bytes(), &initrd)?;
        Ok(BenchVm {
            args,
            image,
            initrd,
            append: APPEND.to_string(),
            env: Vec::new(),
        })
    }

    /// Add `extra` (e.g. `lockstep.ip=…`) to both VMs' kernel command line.
    /// Sets `key` in lockstep's environment.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> BenchVm<'a> {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn with_append(mut self, extra: &str) -> BenchVm<'a> {
        self.append.push(' ');
        self.append.push_str(extra);
        self
    }

    /// Whether to run the QEMU baseline; says why not when it is missing.
    pub fn wants_qemu(&self) -> bool {
        qemu::wanted(self.args.no_qemu)
    }

    /// Boot under `lockstep run` with `extra` flags; `required` BENCH names
    /// (besides `done`) must all be printed.
    pub fn run_lockstep(
        &self,
        extra: &[OsString],
        required: &[String],
    ) -> Result<RunResult, BenchError> {
        let exe = std::env::current_exe().map_err(|source| BenchError::Spawn {
            what: "lockstep".into(),
            source,
        })?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("--kernel")
            .arg(&self.image.kernel)
            .arg("--firmware")
            .arg(&self.image.firmware)
            .arg("--initrd")
            .arg(&self.initrd)
            .arg("--append")
            .arg(&self.append)
            .args(["--console", "stdio"])
            .arg("--cpus")
            .arg(self.args.cpus.to_string())
            .arg("--memory")
            .arg(format!("{}M", self.args.memory_mib))
            .args(self.args.run_flags.split_whitespace())
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        timed("lockstep", cmd, required)
    }

    /// Boot the same VM under QEMU TCG on its `virt` machine with `extra` flags.
    pub fn run_qemu(
        &self,
        extra: &[OsString],
        required: &[String],
    ) -> Result<RunResult, BenchError> {
        let mut cmd = qemu::virt(u64::from(self.args.memory_mib), self.args.cpus);
        qemu::boot_linux(
            &mut cmd,
            &self.image.firmware,
            &self.image.kernel,
            &self.initrd,
            &self.append,
        )
        .arg("-nographic")
        .args(extra);
        timed("QEMU", cmd, required)
    }
}

pub fn run(args: GuestBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let scratch = Scratch::new("bench")?;
    let vm = BenchVm::prepare(&args, WORKLOADS, &scratch)?;
    compare(&vm)
}

fn compare(vm: &BenchVm<'_>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    eprintln!("bench: running the workloads under lockstep …");
    let ours = vm.run_lockstep(&[], &[])?;
    let qemu = if vm.wants_qemu() {
        eprintln!("bench: running the same workloads under QEMU TCG …");
        let q = vm.run_qemu(&[], &[])?;
        if q.order != ours.order {
            return Err(BenchError::Mismatch {
                ours: ours.order.join(" "),
                theirs: q.order.join(" "),
            }
            .into());
        }
        Some(q)
    } else {
        None
    };
    if vm.args.json {
        print_json(&ours, qemu.as_ref());
    } else {
        print_table(&ours, qemu.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a VM to completion with no input, collecting its BENCH lines; it
/// must print `BENCH done` and every name in `required`.
fn timed(what: &str, mut cmd: Command, required: &[String]) -> Result<RunResult, BenchError> {
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        what: what.into(),
        source,
    })?;
    let wall = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = parse_bench_lines(&text);
    r.wall = wall;
    r.speed = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(parse_speed);
    let missing: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .chain(["done"])
        .filter(|name| !r.guest.contains_key(*name))
        .map(|name| if name == "done" { "BENCH done" } else { name })
        .collect();
    if !missing.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(BenchError::Incomplete {
            what: what.into(),
            missing: missing.join(", "),
            tail,
        });
    }
    Ok(r)
}

/// The MIPS and the wait for real time of the `lockstep: speed:` line
/// `lockstep run` prints on stderr at its end (the CLI's `describe_speed`;
/// its tests check the two agree).
pub fn parse_speed(line: &str) -> Option<(f64, f64)> {
    let rest = line.strip_prefix("lockstep: speed: ")?;
    let mips = rest.split_once(" s (")?.1.split_once(" MIPS")?.0;
    let waited = rest.split_once(": waited ")?.1.split_once(" s ")?.0;
    Some((mips.parse().ok()?, waited.parse().ok()?))
}

pub fn parse_bench_lines(text: &str) -> RunResult {
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
    let mut t = Table::new([Col::left(18), Col::right(14), Col::right(14), Col::right(8)]);
    t.row(["workload", "lockstep (s)", "qemu (s)", "ratio"]);
    for name in &ours.order {
        let a = ours.guest[name];
        match qemu.and_then(|q| q.guest.get(name)) {
            Some(&b) => t.row([name, &num(a, 3), &num(b, 3), &num(ratio(a, b), 2)]),
            None => t.row([name, &num(a, 3), "-", "-"]),
        };
    }
    match qemu {
        Some(q) => t.row([
            "wall",
            &num(ours.wall, 3),
            &num(q.wall, 3),
            &num(ratio(ours.wall, q.wall), 2),
        ]),
        None => t.row(["wall", &num(ours.wall, 3)]),
    };
    print!("{t}");
    if let Some(q) = qemu {
        println!("ratio {:.2}", ratio(ours.wall, q.wall));
    }
    if let Some((mips, waited)) = ours.speed {
        println!("lockstep speed {mips:.1} MIPS; waited {waited:.3} s for real time (clock rate)");
    }
}

fn print_json(ours: &RunResult, qemu: Option<&RunResult>) {
    let obj = |r: &RunResult| {
        serde_json::json!({
            "guest": r.guest,
            "wall": r.wall,
            "mips": r.speed.map(|s| s.0),
            "waited_for_real_time_s": r.speed.map(|s| s.1),
        })
    };
    let doc = serde_json::json!({
        "lockstep": obj(ours),
        "qemu": qemu.map(obj),
        "ratio": qemu.map(|q| ratio(ours.wall, q.wall)),
    });
    println!("{doc}");
}

pub fn ratio(a: f64, b: f64) -> f64 {
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

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_run_must_print_done_and_every_required_name() {
        let want = ["a".to_string(), "b".to_string()];
        let r = timed(
            "vm",
            sh("echo BENCH a 1; echo BENCH b 2; echo BENCH done 3"),
            &want,
        )
        .expect("complete run");
        assert_eq!(r.order, ["a", "b", "done"]);
        match timed("vm", sh("echo BENCH a 1; echo dd: failed"), &want) {
            Err(BenchError::Incomplete { missing, tail, .. }) => {
                assert_eq!(missing, "b, BENCH done");
                assert!(tail.ends_with("dd: failed"), "{tail}");
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
    }
}
