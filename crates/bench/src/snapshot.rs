//! `lockstep bench snapshot`: how long saving a whole-machine snapshot and
//! restoring it to the first executed instructions take, through
//! `machine::snapshot::measure`.
//!
//! The machine measured is synthetic but sized like the real guest: its RAM
//! (`--memory`) has `--touched` of non-zero pages spread over all of
//! it, and its boot images (which every snapshot carries and every restore
//! reads and checks) are as large as the pulled Debian kernel, initramfs and
//! firmware together. Its firmware is a one-instruction loop, so the first
//! slice after restore touches only one page of RAM.

use crate::guest::{BenchError, Scratch};
use crate::table::{num, Col, Table};
use clap::{Args, ValueEnum};
use machine::snapshot::{measure, MeasureSpec, Measurement, RamEncoding};
use std::path::PathBuf;
use std::process::ExitCode;

/// zstd level for `--ram zstd` (the snapshot tests' choice too).
const ZSTD_LEVEL: i32 = 3;

/// The MiB-counting spellings of earlier versions, refused with the new.
#[derive(Args, Debug)]
struct OldSnapshotSizes {
    #[arg(long = "memory-mib", hide = true, value_parser = vocab::renamed("--memory 512M"))]
    old_memory_mib: Option<String>,
    #[arg(long = "touched-mib", hide = true, value_parser = vocab::renamed("--touched 128M"))]
    old_touched_mib: Option<String>,
    #[arg(long = "images-mib", hide = true, value_parser = vocab::renamed("--images 40M"))]
    old_images_mib: Option<String>,
}

#[derive(Args, Debug)]
pub struct SnapshotBenchArgs {
    /// Guest memory (whole MiB).
    #[arg(long = "memory", value_name = "SIZE", default_value = "512M", value_parser = vocab::size_in::<u32>(1 << 20, 1..=65536))]
    pub memory_mib: u32,
    /// Harts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub cpus: u8,
    /// RAM filled with data before the save, spread over all of RAM
    /// (whole MiB).
    #[arg(long = "touched", value_name = "SIZE", default_value = "128M", value_parser = vocab::size_in::<u32>(1 << 20, 0..=65536))]
    pub touched_mib: u32,
    /// Boot images in the snapshot (whole MiB, below 2G) [default: the size
    /// of the pulled Debian kernel, initramfs and firmware].
    #[arg(long = "images", value_name = "SIZE", value_parser = vocab::size_in::<u32>(1 << 20, 0..=2047))]
    pub images_mib: Option<u32>,
    #[command(flatten)]
    old: OldSnapshotSizes,
    /// RAM encodings to measure, comma-separated.
    #[arg(long = "ram", value_enum, value_delimiter = ',', default_values_t = [RamKind::Sparse, RamKind::Zstd])]
    pub ram: Vec<RamKind>,
    /// Measurements per encoding.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Directory for the snapshot file [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamKind {
    /// Zero pages as file holes; restore maps the file (lazy).
    Sparse,
    /// zstd per 1 MiB chunk; restore decompresses everything (eager).
    Zstd,
}

impl RamKind {
    fn encoding(self) -> RamEncoding {
        match self {
            RamKind::Sparse => RamEncoding::Sparse,
            RamKind::Zstd => RamEncoding::Zstd { level: ZSTD_LEVEL },
        }
    }

    fn name(self) -> String {
        match self {
            RamKind::Sparse => "sparse".into(),
            RamKind::Zstd => format!("zstd:{ZSTD_LEVEL}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotBenchError {
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("measuring a {ram} snapshot: {source}")]
    Measure {
        ram: String,
        source: machine::snapshot::SnapshotError,
    },
    #[error("the boot images are {bytes} bytes; use --images below 2G")]
    ImagesTooLarge { bytes: u64 },
}

/// One measurement, in milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub ram: String,
    pub save_ms: f64,
    pub file_bytes: u64,
    pub allocated_bytes: u64,
    pub restore_ms: f64,
    pub first_step_ms: f64,
    /// The restored machine's first reset (deferred boot-image check and load).
    pub first_reset_ms: f64,
    pub verified_ms: f64,
}

impl Row {
    fn new(ram: RamKind, m: &Measurement) -> Row {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Row {
            ram: ram.name(),
            save_ms: ms(m.save),
            file_bytes: m.file_bytes,
            allocated_bytes: m.allocated_bytes,
            restore_ms: ms(m.restore),
            first_step_ms: ms(m.restore_to_first_step),
            first_reset_ms: ms(m.first_reset),
            verified_ms: ms(m.verified_restore),
        }
    }
}

pub fn run(args: SnapshotBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let image_bytes = match args.images_mib {
        Some(mib) => u64::from(mib) << 20,
        None => pulled_image_bytes()?,
    };
    let spec = MeasureSpec {
        memory: u64::from(args.memory_mib) << 20,
        cpus: usize::from(args.cpus),
        touched: u64::from(args.touched_mib) << 20,
        image_bytes: usize::try_from(image_bytes)
            .ok()
            .filter(|&b| b < 2 << 30)
            .ok_or(SnapshotBenchError::ImagesTooLarge { bytes: image_bytes })?,
        ram: RamEncoding::Sparse,
    };
    let scratch = match &args.dir {
        Some(dir) => Scratch::new_in(dir, "bench-snapshot")?,
        None => Scratch::new("bench-snapshot")?,
    };
    let mut rows = Vec::new();
    for &ram in &args.ram {
        for n in 1..=args.repeat {
            eprintln!("bench: {} snapshot, measurement {n} …", ram.name());
            let spec = MeasureSpec {
                ram: ram.encoding(),
                ..spec.clone()
            };
            let m =
                measure(scratch.path(), &spec).map_err(|source| SnapshotBenchError::Measure {
                    ram: ram.name(),
                    source,
                })?;
            rows.push(Row::new(ram, &m));
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "memory_bytes": spec.memory,
            "touched_bytes": spec.touched,
            "image_bytes": spec.image_bytes,
            "cpus": spec.cpus,
            "dir": scratch.path(),
            "measurements": rows,
        });
        println!("{doc}");
    } else {
        println!(
            "{} MiB guest, {} hart(s), {} MiB of RAM touched, {:.1} MiB of boot images; \
             snapshot file in {} (page cache warm)",
            args.memory_mib,
            args.cpus,
            args.touched_mib,
            spec.image_bytes as f64 / f64::from(1 << 20),
            scratch.path().display()
        );
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// Kernel, initramfs and firmware of the pulled guest image, in bytes.
fn pulled_image_bytes() -> Result<u64, BenchError> {
    let image = guest_image::pull(&guest_image::PullOptions::default())?;
    [&image.kernel, &image.initrd, &image.firmware]
        .into_iter()
        .map(|path| {
            std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|source| BenchError::Temp {
                    path: path.clone(),
                    source,
                })
        })
        .sum()
}

/// The measurements, one line each, then the median per encoding.
pub fn table(rows: &[Row]) -> String {
    let mut t = Table::new([
        Col::left(8),
        Col::right(10),
        Col::right(10),
        Col::right(10),
        Col::right(12),
        Col::right(16),
        Col::right(14),
        Col::right(13),
    ]);
    t.row([
        "ram",
        "save (ms)",
        "file (MiB)",
        "disk (MiB)",
        "restore (ms)",
        "to 1st step (ms)",
        "1st reset (ms)",
        "verified (ms)",
    ]);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    for r in rows {
        t.row([
            r.ram.clone(),
            num(r.save_ms, 1),
            num(mib(r.file_bytes), 1),
            num(mib(r.allocated_bytes), 1),
            num(r.restore_ms, 3),
            num(r.first_step_ms, 3),
            num(r.first_reset_ms, 1),
            num(r.verified_ms, 1),
        ]);
    }
    let mut out = t.to_string();
    let mut names: Vec<&str> = rows.iter().map(|r| r.ram.as_str()).collect();
    names.dedup();
    for name in names {
        let of = |f: fn(&Row) -> f64| {
            let v: Vec<f64> = rows.iter().filter(|r| r.ram == name).map(f).collect();
            crate::record::median(&v)
        };
        out += &format!(
            "{name}: median save {:.1} ms, restore to first step {:.3} ms\n",
            of(|r| r.save_ms),
            of(|r| r.first_step_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ram: &str, save_ms: f64, first_step_ms: f64) -> Row {
        Row {
            ram: ram.into(),
            save_ms,
            file_bytes: 544 << 20,
            allocated_bytes: 160 << 20,
            restore_ms: first_step_ms - 0.1,
            first_step_ms,
            first_reset_ms: 30.0,
            verified_ms: 90.0,
        }
    }

    #[test]
    fn table_lists_each_measurement_then_medians_per_encoding() {
        let rows = [
            row("sparse", 300.0, 4.0),
            row("sparse", 200.0, 6.0),
            row("sparse", 250.0, 5.0),
            row("zstd:3", 900.0, 80.0),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 2, "{text}");
        assert!(
            lines[1].starts_with("sparse") && lines[1].contains(" 300.0 "),
            "{text}"
        );
        assert!(
            lines[1].contains(" 544.0 ") && lines[1].contains(" 160.0 "),
            "{text}"
        );
        assert!(
            lines[1].contains(" 30.0 ") && lines[1].ends_with(" 90.0"),
            "{text}"
        );
        assert!(lines[4].starts_with("zstd:3"), "{text}");
        assert_eq!(
            lines[5],
            "sparse: median save 250.0 ms, restore to first step 5.000 ms"
        );
        assert_eq!(
            lines[6],
            "zstd:3: median save 900.0 ms, restore to first step 80.000 ms"
        );
    }

    #[test]
    fn ram_kinds_map_to_encodings() {
        assert_eq!(RamKind::Sparse.encoding(), RamEncoding::Sparse);
        assert_eq!(
            RamKind::Zstd.encoding(),
            RamEncoding::Zstd { level: ZSTD_LEVEL }
        );
        assert_eq!(RamKind::Zstd.name(), "zstd:3");
    }

    #[test]
    fn measuring_a_small_machine_gives_a_row() {
        // A real measurement, kept small: 16 MiB of RAM, 4 MiB touched.
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = MeasureSpec {
            memory: 16 << 20,
            cpus: 1,
            touched: 4 << 20,
            image_bytes: 1 << 20,
            ram: RamEncoding::Sparse,
        };
        let m = measure(dir.path(), &spec).expect("measure");
        let r = Row::new(RamKind::Sparse, &m);
        assert!(r.file_bytes >= (16 << 20) + (1 << 20), "{r:?}");
        assert!(
            r.allocated_bytes < r.file_bytes,
            "holes for zero pages: {r:?}"
        );
        assert!(
            r.first_step_ms >= r.restore_ms && r.restore_ms > 0.0,
            "{r:?}"
        );
        assert!(r.first_reset_ms > 0.0, "{r:?}");
    }
}
