//! `lockstep run --record FILE` and `lockstep replay FILE`.

use crate::run::{self, Console, RunOutput};
use crate::vm::{FileDigest, ImageDigests, ImagePaths, VmSetup};
use clap::Args;
use machine::{Machine, MachineError, Output, VirtioSpec};
use replay::session::{self, Recorder, SharedWindows, TeeOutput};
use replay::{Control, RecordKind};
use replay::{Header, LogReader, LogWriter, ReadError, TailPolicy, WriteError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot record: {0}")]
    Write(#[from] WriteError),
    #[error("cannot record: {0}")]
    Machine(#[from] MachineError),
    #[error("cannot record: identifying disk {path}: {source}")]
    DiskIdentity {
        path: PathBuf,
        source: disk::DiskError,
    },
    #[error("{0}: not a recording made by `lockstep run --record` ({1})")]
    NotARecording(PathBuf, String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: the disk changed since the recording started ({reason}); a replay needs it as it was")]
    DiskChanged { path: PathBuf, reason: String },
    #[error("the log's {what} {path}: {reason}; a replay needs the recorded file")]
    ImageChanged {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the machine built from {0}'s setup does not start in the recorded state (kernel, initrd or firmware changed?)")]
    InitialState(PathBuf),
}

/// Start recording `machine` (just built from `setup`) into a new log.
pub fn start(
    path: &Path,
    mut setup: VmSetup,
    machine: &mut Machine,
    windows: SharedWindows,
    checkpoint_every: u64,
) -> Result<Recorder, RecordError> {
    setup.disk_identities = machine
        .disks()
        .map(disk::DiskIdentity::of)
        .collect::<Result<_, _>>()
        .map_err(|source| RecordError::DiskIdentity {
            path: PathBuf::from(format!("{:?}", setup.disks)),
            source,
        })?;
    let parts = machine.boot_image_parts()?;
    let [firmware, kernel, initrd] = parts[..] else {
        return Err(RecordError::NotARecording(
            path.to_path_buf(),
            "the VM has no initrd".into(),
        ));
    };
    setup.image_digests = Some(ImageDigests {
        firmware: FileDigest::of(firmware),
        kernel: FileDigest::of(kernel),
        initrd: FileDigest::of(initrd),
    });
    let header = Header {
        vm_uuid: setup.uuid(),
        initial_state_hash: machine.state_hash()?,
    };
    let mut writer = LogWriter::create(path, &header)?;
    let config = serde_json::to_vec(&setup).map_err(|e| WriteError::Io {
        context: "cannot encode the VM setup for".into(),
        source: std::io::Error::other(e),
    })?;
    writer.append_next(0, &RecordKind::Control(Control::ConfigChange(config)))?;
    Ok(Recorder::new(writer, windows, checkpoint_every))
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A log written by `lockstep run --record`.
    pub log: PathBuf,
    /// Where the replayed guest's console goes: none, stdio or file=PATH.
    #[arg(long, value_name = "WHERE", default_value = "none", value_parser = run::parse_console)]
    pub console: Console,
    /// How the harts execute: `interp` or `jit` (the translator; the
    /// interpreter on other hosts). A log recorded with either replays
    /// with either.
    #[arg(long, value_enum, default_value_t = run::RunCpu::host_default(), hide_default_value = true)]
    pub cpu: run::RunCpu,
}

/// Re-execute a recording with no live inputs and check it.
pub fn replay_command(args: ReplayArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Check the whole log before executing anything.
    let summary = replay::validate(&args.log)?;
    eprintln!(
        "lockstep: {} is a valid log: {} records up to icount {}",
        args.log.display(),
        summary.records,
        summary.last_icount
    );
    let mut reader = LogReader::open(&args.log, TailPolicy::Strict)?;
    let setup = read_setup(&args.log, &mut reader)?;
    let windows = SharedWindows::default();
    let output: Box<dyn Output> = Box::new(RunOutput {
        console: run::console_writer(&args.console)?,
        nics: Vec::new(),
    });
    let mut machine = build(&setup, Box::new(TeeOutput::new(output, windows.clone())))?;
    if machine.state_hash()? != reader.header().initial_state_hash {
        return Err(RecordError::InitialState(args.log.clone()).into());
    }
    if args.cpu == run::RunCpu::Jit && !machine.set_jit(true) {
        eprintln!("lockstep: no translator on this host; using the interpreter");
    }
    let started = Instant::now();
    match session::replay(&mut machine, &windows, &mut reader) {
        Ok(report) => {
            eprintln!(
                "lockstep: replay matched the recording: {} instructions, {} inputs, {} output windows, {} checkpoints ({:.1} s)",
                report.icount,
                report.inputs,
                report.output_windows,
                report.checkpoints,
                started.elapsed().as_secs_f64()
            );
            if args.cpu == run::RunCpu::Jit {
                eprintln!(
                    "{}",
                    run::describe_translator(&machine.jit_stats(), started.elapsed())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(session::ReplayError::Diverged(d)) => {
            eprintln!("lockstep: replay diverged {d}");
            Ok(crate::exit::Exit::Diverged.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The VM setup, the log's first record.
fn read_setup(
    log: &Path,
    reader: &mut LogReader<impl std::io::Read>,
) -> Result<VmSetup, RecordError> {
    let not_ours = |why: &str| RecordError::NotARecording(log.to_path_buf(), why.to_string());
    let first = reader
        .next_record()?
        .ok_or_else(|| not_ours("it is empty"))?;
    let RecordKind::Control(Control::ConfigChange(bytes)) = first.kind else {
        return Err(not_ours("it does not start with the VM setup"));
    };
    serde_json::from_slice(&bytes).map_err(|e| not_ours(&e.to_string()))
}

/// The recorded machine again: same images, same disks (unchanged, behind
/// an in-memory overlay so the replay writes nothing), no NIC backends.
fn build(setup: &VmSetup, output: Box<dyn Output>) -> Result<Machine, Box<dyn std::error::Error>> {
    let digests = setup.image_digests.ok_or_else(|| {
        RecordError::NotARecording(
            setup.images.kernel.clone(),
            "the log records no boot image digests (made by an older lockstep)".into(),
        )
    })?;
    let images = read_recorded_images(&setup.images, &digests)?;
    let mut disks: Vec<Box<dyn disk::BlockDevice>> = Vec::new();
    let mut virtio = Vec::new();
    for (n, arg) in setup.disks.iter().enumerate() {
        // The log pins each disk's format as the recording opened it.
        let mut options = arg.options().ok_or_else(|| {
            RecordError::NotARecording(
                arg.path.clone(),
                "the log records no format for this disk (made by an older lockstep)".into(),
            )
        })?;
        options.read_only = true;
        let base = disk::open(&arg.path, &options)?;
        if let Some(identity) = setup.disk_identities.get(n) {
            identity
                .check(&*base, false)
                .map_err(|e| RecordError::DiskChanged {
                    path: arg.path.clone(),
                    reason: e.to_string(),
                })?;
        }
        let read_only = arg.read_only;
        disks.push(if read_only {
            base
        } else {
            Box::new(disk::MemOverlay::new(base))
        });
        virtio.push(run::block_spec(n as u8));
    }
    virtio.push(VirtioSpec::Rng {
        seed: setup.rng_seed,
    });
    let config = setup.machine_config(images, virtio);
    Ok(Machine::with_disks(config, output, disks)?)
}

/// The boot images a log names, each read only if it is a regular file
/// of the recorded length, and checked against the recorded digest before
/// anything boots.
fn read_recorded_images(
    paths: &ImagePaths,
    digests: &ImageDigests,
) -> Result<machine::BootImages, RecordError> {
    let read = |what: &'static str, path: &Path, digest: &FileDigest| {
        let changed = |reason: String| RecordError::ImageChanged {
            what,
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| changed(e.to_string()))?;
        let meta = file.metadata().map_err(|e| changed(e.to_string()))?;
        if !meta.is_file() {
            return Err(changed("is not a regular file".into()));
        }
        if meta.len() != digest.len {
            return Err(changed(format!(
                "is {} bytes, the recording's was {}",
                meta.len(),
                digest.len
            )));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, digest.len), &mut bytes)
            .map_err(|e| changed(e.to_string()))?;
        if FileDigest::of(&bytes) != *digest {
            return Err(changed(
                "has other contents than when it was recorded".into(),
            ));
        }
        Ok(bytes)
    };
    Ok(machine::BootImages {
        firmware: read("firmware", &paths.firmware, &digests.firmware)?.into(),
        kernel: read("kernel", &paths.kernel, &digests.kernel)?.into(),
        initrd: Some(read("initrd", &paths.initrd, &digests.initrd)?.into()),
    })
}
