//! `lockstep bench disk`: sequential write then read throughput of fresh
//! scratch disks (raw and qcow2), under lockstep and under QEMU TCG on the
//! same kernel, firmware and initramfs.
//!
//! The guest times each `dd` with its own clock (`/proc/uptime`), in both
//! VMs alike. Lockstep's guest clock follows real time while the guest runs
//! slower than real time (catch-up warps, DESIGN §3), so the figures are
//! real-time rates on both sides.

use crate::guest::{ratio, BenchError, BenchVm, GuestBenchArgs, RunResult, Scratch};
use crate::table::rate_table;
use clap::{Args, ValueEnum};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `/init` of the benchmark initramfs; `@MIB@` and `@DISKS@` are filled in.
const GUEST_SCRIPT: &str = include_str!("disk.sh");

#[derive(Args, Debug)]
pub struct DiskBenchArgs {
    /// Written, then read, on each scratch disk (whole MiB, up to 64G).
    #[arg(long = "size", value_name = "SIZE", default_value = "256M", value_parser = vocab::size_in::<u32>(1 << 20, 1..=65536))]
    pub size_mib: u32,
    #[arg(long = "size-mib", hide = true, value_parser = vocab::renamed("--size 256M"))]
    old_size_mib: Option<String>,
    /// Scratch disk formats to measure, comma-separated.
    #[arg(
        long = "format",
        value_enum,
        value_delimiter = ',',
        default_values_t = [DiskFormat::Raw, DiskFormat::Qcow2]
    )]
    pub formats: Vec<DiskFormat>,
    #[command(flatten)]
    pub vm: GuestBenchArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The guest disk serial `lockstep run` gives its `index`th `--disk`; the
/// QEMU run sets the same serials, so the guest finds each disk by serial.
fn serial(index: usize) -> String {
    let letter = (b'a'..=b'z').nth(index).map_or('?', char::from);
    format!("lockstep-vd{letter}")
}

fn guest_script(size_mib: u32, formats: &[DiskFormat]) -> String {
    let disks: Vec<String> = formats
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{}:{}", f.name(), serial(i)))
        .collect();
    GUEST_SCRIPT
        .replace("@MIB@", &size_mib.to_string())
        .replace("@DISKS@", &disks.join(" "))
}

/// The BENCH names one run must print.
fn measurement_names(formats: &[DiskFormat]) -> Vec<String> {
    formats
        .iter()
        .flat_map(|f| ["write", "read"].map(|op| format!("{}_{op}", f.name())))
        .collect()
}

/// One measurement: the guest's seconds for `size_mib` MiB, as a rate.
#[derive(Debug, Clone, PartialEq)]
struct Rate {
    name: String,
    seconds: f64,
    mib_per_s: f64,
}

/// The rates of a run, in `names` order; a missing name or a time that is
/// not positive is an error (`what` names the hypervisor).
fn rates(
    what: &str,
    run: &RunResult,
    names: &[String],
    size_mib: u32,
) -> Result<Vec<Rate>, BenchError> {
    names
        .iter()
        .map(|name| {
            let seconds = run.guest.get(name).copied().unwrap_or(f64::NAN);
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(BenchError::BadTime {
                    what: what.into(),
                    name: name.clone(),
                    seconds,
                });
            }
            Ok(Rate {
                name: name.clone(),
                seconds,
                mib_per_s: f64::from(size_mib) / seconds,
            })
        })
        .collect()
}

/// Fresh, empty scratch images of `size_mib` MiB, one per format.
fn scratch_disks(
    dir: &Path,
    tag: &str,
    size_mib: u32,
    formats: &[DiskFormat],
) -> Result<Vec<(DiskFormat, PathBuf)>, BenchError> {
    let size = u64::from(size_mib) << 20;
    formats
        .iter()
        .map(|&format| {
            let path = dir.join(format!("{tag}.{}", format.name()));
            let made = match format {
                DiskFormat::Raw => std::fs::File::create_new(&path)
                    .and_then(|f| f.set_len(size))
                    .map_err(|e| e.to_string()),
                DiskFormat::Qcow2 => ::disk::create(&path, size, None).map_err(|e| e.to_string()),
            };
            made.map_err(|reason| BenchError::Disk {
                path: path.clone(),
                reason,
            })?;
            Ok((format, path))
        })
        .collect()
}

fn lockstep_disk_flags(disks: &[(DiskFormat, PathBuf)]) -> Vec<OsString> {
    disks
        .iter()
        .flat_map(|(format, path)| {
            let mut spec = OsString::from("path=");
            spec.push(path);
            spec.push(format!(",format={}", format.name()));
            [OsString::from("--disk"), spec]
        })
        .collect()
}

/// `-drive … -device virtio-blk-device,…,serial=…` per disk. QEMU's option
/// syntax needs commas in the file name doubled.
fn qemu_disk_flags(disks: &[(DiskFormat, PathBuf)]) -> Vec<OsString> {
    let mut flags = Vec::new();
    for (i, (format, path)) in disks.iter().enumerate() {
        let mut drive = OsString::from("file=");
        drive.push(path.to_string_lossy().replace(',', ",,"));
        drive.push(format!(",if=none,format={},id=d{i}", format.name()));
        flags.extend([OsString::from("-drive"), drive]);
        flags.extend([
            OsString::from("-device"),
            format!("virtio-blk-device,drive=d{i},serial={}", serial(i)).into(),
        ]);
    }
    flags
}

/// Results of one hypervisor.
struct Measured {
    rates: Vec<Rate>,
    wall: f64,
}

pub fn run(mut args: DiskBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.formats.sort();
    args.formats.dedup();
    let scratch = Scratch::new("bench-disk")?;
    let script = guest_script(args.size_mib, &args.formats);
    let vm = BenchVm::prepare(&args.vm, &script, &scratch)?;
    let names = measurement_names(&args.formats);

    eprintln!(
        "bench disk: {} MiB per disk under lockstep …",
        args.size_mib
    );
    let ours = measure("lockstep", &args, &scratch, &names, |disks| {
        vm.run_lockstep(&lockstep_disk_flags(disks), &names)
    })?;
    let qemu = if vm.wants_qemu() {
        eprintln!("bench disk: the same under QEMU TCG …");
        Some(measure("QEMU", &args, &scratch, &names, |disks| {
            vm.run_qemu(&qemu_disk_flags(disks), &names)
        })?)
    } else {
        None
    };
    if args.vm.json {
        print_json(args.size_mib, &ours, qemu.as_ref());
    } else {
        print_table(args.size_mib, &ours, qemu.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

/// Boot one hypervisor on fresh scratch disks (deleted afterwards).
fn measure(
    what: &str,
    args: &DiskBenchArgs,
    scratch: &Scratch,
    names: &[String],
    boot: impl FnOnce(&[(DiskFormat, PathBuf)]) -> Result<RunResult, BenchError>,
) -> Result<Measured, BenchError> {
    let tag = what.to_ascii_lowercase();
    let disks = scratch_disks(scratch.path(), &tag, args.size_mib, &args.formats)?;
    let run = boot(&disks);
    for (_, path) in &disks {
        let _ = std::fs::remove_file(path);
    }
    let run = run?;
    Ok(Measured {
        rates: rates(what, &run, names, args.size_mib)?,
        wall: run.wall,
    })
}

fn print_table(size_mib: u32, ours: &Measured, qemu: Option<&Measured>) {
    println!(
        "{size_mib} MiB per disk, dd bs=1M with O_DIRECT (writes end with fsync); \
         ratio = lockstep / qemu throughput"
    );
    print!(
        "{}",
        rate_table(
            "test",
            ours.rates
                .iter()
                .map(|r| (r.name.replace('_', " "), r.mib_per_s)),
            qemu.map(|q| q.rates.iter().map(|r| r.mib_per_s).collect()),
            ours.wall,
            qemu.map(|q| q.wall)
        )
    );
}

fn print_json(size_mib: u32, ours: &Measured, qemu: Option<&Measured>) {
    let obj = |m: &Measured| {
        let rates: serde_json::Map<String, serde_json::Value> = m
            .rates
            .iter()
            .map(|r| (r.name.clone(), r.mib_per_s.into()))
            .collect();
        let seconds: serde_json::Map<String, serde_json::Value> = m
            .rates
            .iter()
            .map(|r| (r.name.clone(), r.seconds.into()))
            .collect();
        serde_json::json!({ "mib_per_s": rates, "seconds": seconds, "wall": m.wall })
    };
    let ratios = qemu.map(|q| {
        ours.rates
            .iter()
            .zip(&q.rates)
            .map(|(a, b)| (a.name.clone(), ratio(a.mib_per_s, b.mib_per_s).into()))
            .collect::<serde_json::Map<String, serde_json::Value>>()
    });
    let doc = serde_json::json!({
        "size_mib": size_mib,
        "block_size": 1 << 20,
        "lockstep": obj(ours),
        "qemu": qemu.map(obj),
        "ratio": ratios,
    });
    println!("{doc}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::parse_bench_lines;

    const BOTH: [DiskFormat; 2] = [DiskFormat::Raw, DiskFormat::Qcow2];

    #[test]
    fn guest_lines_become_rates_in_measurement_order() {
        let console = "lockstep-setup: cannot mount /dev/vda\r\n\
                       BENCH qcow2_write 4\r\nBENCH qcow2_read 0.5\r\n\
                       BENCH raw_write 2\r\n256+0 records in\r\nBENCH raw_read 0.25\r\n\
                       BENCH done 12.5\r\n";
        let run = parse_bench_lines(console);
        let names = measurement_names(&BOTH);
        let got = rates("lockstep", &run, &names, 256).expect("all four measured");
        let summary: Vec<(&str, f64)> =
            got.iter().map(|r| (r.name.as_str(), r.mib_per_s)).collect();
        assert_eq!(
            summary,
            [
                ("raw_write", 128.0),
                ("raw_read", 1024.0),
                ("qcow2_write", 64.0),
                ("qcow2_read", 512.0)
            ]
        );
        assert_eq!(got[2].seconds, 4.0);
    }

    #[test]
    fn a_missing_or_zero_time_is_an_error_naming_it() {
        let names = measurement_names(&BOTH);
        let run = parse_bench_lines("BENCH raw_write 2\nBENCH raw_read 0\nBENCH done 1\n");
        let err = rates("QEMU", &run, &names, 64).unwrap_err().to_string();
        assert!(err.contains("QEMU") && err.contains("raw_read"), "{err}");
        let run = parse_bench_lines("BENCH raw_write 2\nBENCH raw_read 1\nBENCH done 1\n");
        let err = rates("QEMU", &run, &names, 64).unwrap_err().to_string();
        assert!(err.contains("qcow2_write"), "{err}");
    }

    #[test]
    fn the_script_names_each_disk_by_serial() {
        let script = guest_script(64, &BOTH);
        assert!(script.contains("raw:lockstep-vda qcow2:lockstep-vdb"));
        assert!(script.contains("count=64 "));
        for placeholder in ["@MIB@", "@DISKS@"] {
            assert!(!script.contains(placeholder), "{placeholder} left");
        }
        assert!(GUEST_SCRIPT.contains("@MIB@") && GUEST_SCRIPT.contains("@DISKS@"));
    }

    #[test]
    fn qemu_gets_the_serials_lockstep_gives() {
        let disks = [
            (DiskFormat::Raw, PathBuf::from("/t/a,b.raw")),
            (DiskFormat::Qcow2, PathBuf::from("/t/c.qcow2")),
        ];
        let flags: Vec<String> = qemu_disk_flags(&disks)
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            flags,
            [
                "-drive",
                "file=/t/a,,b.raw,if=none,format=raw,id=d0",
                "-device",
                "virtio-blk-device,drive=d0,serial=lockstep-vda",
                "-drive",
                "file=/t/c.qcow2,if=none,format=qcow2,id=d1",
                "-device",
                "virtio-blk-device,drive=d1,serial=lockstep-vdb",
            ]
        );
        assert_eq!(
            lockstep_disk_flags(&disks),
            [
                "--disk",
                "path=/t/a,b.raw,format=raw",
                "--disk",
                "path=/t/c.qcow2,format=qcow2"
            ]
            .map(OsString::from)
        );
    }
}
