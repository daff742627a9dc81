//! `lockstep bench vm`: how long the bundle operations of a powered-off VM
//! take (`crates/vmm`: snapshot create, revert, delete with a merge, linked
//! and full clone) on a disk of `--disk-size` holding `--data` of data,
//! beside what `qemu-img` takes for the nearest equivalents on the same
//! data in the same run: an internal snapshot (`snapshot -c`), applying it
//! (`snapshot -a`), an overlay (`create -b`, a linked clone), a copy
//! (`convert`, a full clone) and a commit of an overlay into its base (a
//! merge).

use crate::guest::Scratch;
use crate::table::{num, Col, Table};
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;
use vmm::{Boot, CloneFrom, CreateSpec, DiskSource, Home};

/// The spellings of earlier versions, refused with the new.
#[derive(Args, Debug)]
struct OldVmSizes {
    #[arg(long = "disk-gib", hide = true, value_parser = vocab::renamed("--disk-size 2G"))]
    old_disk_gib: Option<String>,
    #[arg(long = "data-mib", hide = true, value_parser = vocab::renamed("--data 256M"))]
    old_data_mib: Option<String>,
    #[arg(long = "running-memory-mib", hide = true, value_parser = vocab::renamed("--running-memory 512M"))]
    old_running_memory_mib: Option<String>,
}

#[derive(Args, Debug)]
pub struct VmBenchArgs {
    /// The VM's disk size (whole GiB, up to 1T).
    #[arg(long = "disk-size", value_name = "SIZE", default_value = "2G", value_parser = vocab::size_in::<u64>(1 << 30, 1..=1024))]
    pub disk_gib: u64,
    /// Data on the disk (whole MiB: 1 MiB every so often, spread over the disk).
    #[arg(long = "data", value_name = "SIZE", default_value = "256M", value_parser = vocab::size_in::<u64>(1 << 20, 0..=1 << 20))]
    pub data_mib: u64,
    /// Measurements per operation (the median is shown).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Directory for the scratch store [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Skip the qemu-img and QEMU baselines.
    #[arg(long)]
    pub no_qemu: bool,
    /// Skip the running VM's part (boots the pulled Debian image, and the
    /// same under QEMU for `savevm`/`loadvm`).
    #[arg(long)]
    pub no_running: bool,
    /// The running VM's memory (whole MiB).
    #[arg(long = "running-memory", value_name = "SIZE", default_value = "512M", value_parser = vocab::size_in::<u64>(1 << 20, 64..=65536))]
    pub running_memory_mib: u64,
    #[command(flatten)]
    old: OldVmSizes,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    operation: &'static str,
    lockstep_ms: f64,
    qemu: &'static str,
    qemu_ms: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn qemu_img(args: &[&str]) -> Result<f64, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    let took = ms_since(t);
    if !out.status.success() {
        return Err(format!(
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(took)
}

/// Fill `data_mib` MiB of the disk at `path`, spread evenly.
fn fill(
    path: &Path,
    options: &disk::OpenOptions,
    data_mib: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut d = disk::open(path, options)?;
    let mib = 1u64 << 20;
    let chunks = (d.capacity() / mib).max(1);
    let data_mib = data_mib.min(chunks);
    let stride = chunks / data_mib.max(1);
    let mut buf = vec![0u8; mib as usize];
    for i in 0..data_mib {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ (j as u8) | 1;
        }
        d.write_at(i * stride * mib, &buf)?;
    }
    d.flush()?;
    Ok(())
}

pub fn run(args: VmBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let scratch = match &args.dir {
        Some(dir) => Scratch::new_in(dir, "bench-vm")?,
        None => Scratch::new("bench-vm")?,
    };
    let home = Home::at(scratch.path().join("home"));
    let boot_file = scratch.path().join("boot-image");
    std::fs::write(&boot_file, b"not booted by this benchmark")?;
    let size = args.disk_gib << 30;
    let mut quiet = |_: &str, _: u64, _: u64| {};
    let spec = CreateSpec {
        name: "bench".into(),
        cpus: 1,
        memory: 512 << 20,
        append: String::new(),
        instructions_per_tick: machine::DEFAULT_INSTRUCTIONS_PER_TICK,
        boot: Boot {
            kernel: boot_file.clone(),
            initrd: boot_file.clone(),
            firmware: boot_file,
            pulled: false,
        },
        disks: vec![DiskSource::Empty(size)],
        nics: Vec::new(),
        ft: None,
    };
    eprintln!(
        "bench: a {} GiB disk with {} MiB of data …",
        args.disk_gib, args.data_mib
    );
    home.create(&spec, &mut quiet)?;
    {
        let vm = home.open("bench")?;
        let (path, options) = vm.disks()?.remove(0);
        fill(&path, &options, args.data_mib)?;
    }
    // The same data as one qcow2 for qemu-img.
    let qcow = scratch.path().join("qemu.qcow2");
    let qcow_s = qcow.to_string_lossy().into_owned();
    let with_qemu = !args.no_qemu && qemu_img(&["--version"]).is_ok();
    if with_qemu {
        let vm = home.open("bench")?;
        let (path, _) = vm.disks()?.remove(0);
        qemu_img(&["convert", "-O", "qcow2", &path.to_string_lossy(), &qcow_s])?;
    }

    let mut ours: [Vec<f64>; 5] = Default::default();
    let mut theirs: [Vec<f64>; 5] = Default::default();
    for n in 0..args.repeat {
        eprintln!("bench: measurement {} …", n + 1);
        // Snapshot create, then revert to it.
        let mut vm = home.open("bench")?;
        let t = Instant::now();
        vm.snapshot_create(&format!("s{n}"), "")?;
        ours[0].push(ms_since(t));
        let t = Instant::now();
        vm.snapshot_revert(&format!("s{n}"))?;
        ours[1].push(ms_since(t));
        drop(vm);
        // Linked and full clones.
        let t = Instant::now();
        home.clone_vm(
            "bench",
            &format!("linked{n}"),
            &CloneFrom {
                linked: true,
                snapshot: Some(format!("s{n}")),
            },
            &mut quiet,
        )?;
        ours[2].push(ms_since(t));
        let t = Instant::now();
        home.clone_vm(
            "bench",
            &format!("full{n}"),
            &CloneFrom::default(),
            &mut quiet,
        )?;
        ours[3].push(ms_since(t));
        home.delete(&format!("linked{n}"), false)?;
        home.delete(&format!("full{n}"), false)?;
        // Delete the snapshot: its layer (the data) merges into the present.
        let mut vm = home.open("bench")?;
        let t = Instant::now();
        vm.snapshot_delete(&format!("s{n}"), false, &mut quiet)?;
        ours[4].push(ms_since(t));
        drop(vm);

        if with_qemu {
            let snap = format!("s{n}");
            theirs[0].push(qemu_img(&["snapshot", "-c", &snap, &qcow_s])?);
            theirs[1].push(qemu_img(&["snapshot", "-a", &snap, &qcow_s])?);
            let overlay = scratch.path().join("overlay.qcow2");
            let overlay_s = overlay.to_string_lossy().into_owned();
            theirs[2].push(qemu_img(&[
                "create", "-q", "-f", "qcow2", "-b", &qcow_s, "-F", "qcow2", &overlay_s,
            ])?);
            let copy = scratch.path().join("copy.qcow2");
            let copy_s = copy.to_string_lossy().into_owned();
            theirs[3].push(qemu_img(&["convert", "-O", "qcow2", &qcow_s, &copy_s])?);
            // A merge: an overlay holding the data committed into a base.
            let base = scratch.path().join("base.qcow2");
            let base_s = base.to_string_lossy().into_owned();
            qemu_img(&["create", "-q", "-f", "qcow2", &base_s, &size.to_string()])?;
            qemu_img(&["rebase", "-u", "-b", &base_s, "-F", "qcow2", &copy_s])?;
            theirs[4].push(qemu_img(&["commit", "-q", &copy_s])?);
            qemu_img(&["snapshot", "-d", &snap, &qcow_s])?;
            for f in [&overlay, &copy, &base] {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    let names: [(&str, &str); 5] = [
        ("snapshot create (off)", "snapshot -c"),
        ("snapshot revert (off)", "snapshot -a"),
        ("linked clone", "create -b"),
        ("full clone", "convert"),
        ("snapshot delete (merge)", "commit"),
    ];
    let mut rows: Vec<Row> = names
        .iter()
        .enumerate()
        .map(|(i, (op, q))| Row {
            operation: op,
            lockstep_ms: median(ours[i].clone()),
            qemu: q,
            qemu_ms: with_qemu.then(|| median(theirs[i].clone())),
        })
        .collect();
    if !args.no_running {
        let mut live =
            crate::vm_live::lockstep_figures(&scratch, args.running_memory_mib, args.repeat)?;
        let with_qemu = !args.no_qemu && crate::qemu::installed();
        if with_qemu {
            crate::vm_live::qemu_figures(
                &scratch,
                args.running_memory_mib,
                args.repeat,
                &mut live,
            )?;
        }
        let q = |v: &Vec<f64>| with_qemu.then(|| median(v.clone()));
        let row = |operation, ours: &Vec<f64>, qemu, theirs: Option<f64>| Row {
            operation,
            lockstep_ms: median(ours.clone()),
            qemu,
            qemu_ms: theirs,
        };
        rows.push(row(
            "running snapshot: pause",
            &live.pause,
            "savevm",
            q(&live.qemu_savevm),
        ));
        rows.push(row(
            "running snapshot: total",
            &live.total,
            "savevm",
            q(&live.qemu_savevm),
        ));
        rows.push(row(
            "revert to 1st instruction",
            &live.revert,
            "loadvm",
            q(&live.qemu_loadvm),
        ));
        rows.push(row("suspend", &live.suspend, "-", None));
        rows.push(row("resume to 1st instruction", &live.resume, "-", None));
    }
    if args.json {
        let out = serde_json::json!({
            "running_memory_mib": (!args.no_running).then_some(args.running_memory_mib),
            "disk_gib": args.disk_gib,
            "data_mib": args.data_mib,
            "repeat": args.repeat,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new([
        Col::left(26),
        Col::right(12),
        Col::left(14).gap(3),
        Col::right(12),
        Col::right(8),
    ]);
    t.row([
        "operation",
        "lockstep ms",
        "qemu-img",
        "qemu-img ms",
        "ratio",
    ]);
    for r in &rows {
        let (q, ratio) = match r.qemu_ms {
            Some(q) => (num(q, 1), num(r.lockstep_ms / q, 2)),
            None => ("-".into(), "-".into()),
        };
        t.row([
            r.operation.to_string(),
            num(r.lockstep_ms, 1),
            r.qemu.to_string(),
            q,
            ratio,
        ]);
    }
    print!("{t}");
    println!(
        "(disk {} GiB, {} MiB of data, median of {}; ratio = lockstep / peer; \
         qemu-img times include starting its process; running rows: a {} MiB Debian guest \
         idle at its shell, ours a kept VM (revert and resume timed from the command to \
         the run loop answering on its control socket, process start included), QEMU's \
         the same guest with a qcow2 disk, `savevm`/`loadvm` timed at its monitor; \
         QEMU pauses the guest for the whole savevm)",
        args.disk_gib, args.data_mib, args.repeat, args.running_memory_mib
    );
    Ok(ExitCode::SUCCESS)
}
