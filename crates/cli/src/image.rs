//! `lockstep image`: fetch, verify and cache the guest image (Debian's riscv64 kernel,
//! OpenSBI firmware, and an initramfs built from Debian's busybox and kernel modules).

use clap::{Args, Subcommand};
use guest_image::{PullOptions, DEFAULT_SUITE};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Download (or reuse from the cache) and verify the guest image, then print its paths.
    Pull(PullArgs),
    /// The images pulled into the cache: name, suite, kernel version, files.
    List(ListArgs),
    /// Build a Debian root file system (ext4 in qcow2) from the archive's packages, boot it
    /// once under lockstep to configure them, and cache it read-only.
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Which image: only `debian` exists.
    #[arg(value_parser = ["debian"])]
    pub name: String,
    /// `minbase`: Priority required; `standard`: required and important. Both add systemd,
    /// udev, dbus, openssh-server, iproute2, kmod, ca-certificates and apt.
    #[arg(long, default_value = "minbase", value_parser = ["minbase", "standard"])]
    pub variant: String,
    /// More packages (with their dependencies), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub packages: Vec<String>,
    /// Size of the root file system (the disk's virtual size).
    #[arg(long, default_value = "4G", value_parser = vocab::size_in::<u64>(1 << 20, 256..=(1 << 21)))]
    pub size: u64,
    /// Build again even if a cached image verifies.
    #[arg(long)]
    pub rebuild: bool,
    /// Stop after the host part and print its hash (no configure stage, nothing cached).
    #[arg(long)]
    pub host_only: bool,
    /// Cache directory [default: $LOCKSTEP_CACHE, $XDG_CACHE_HOME/lockstep or ~/.cache/lockstep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Debian mirror to download from (an archive root, http or https)
    /// [default: the first Debian archive in this host's apt sources].
    #[arg(long, value_name = "URL", env = guest_image::MIRROR_ENV)]
    pub mirror: Option<String>,
    /// Debian suite.
    #[arg(long, default_value = DEFAULT_SUITE)]
    pub suite: String,
    /// Print no progress.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Cache directory [default: $LOCKSTEP_CACHE, $XDG_CACHE_HOME/lockstep or ~/.cache/lockstep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the list as JSON (`vmm::api::ImageList`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Which image: only `debian` exists.
    #[arg(default_value = "debian", value_parser = ["debian"])]
    pub name: String,
    /// Cache directory [default: $LOCKSTEP_CACHE, $XDG_CACHE_HOME/lockstep or ~/.cache/lockstep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Debian mirror to download from (an archive root, http or https)
    /// [default: the first Debian archive in this host's apt sources].
    #[arg(long, value_name = "URL", env = guest_image::MIRROR_ENV)]
    pub mirror: Option<String>,
    /// Debian suite.
    #[arg(long, default_value = DEFAULT_SUITE)]
    pub suite: String,
    /// Print no download progress.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the image's files as JSON (`vmm::api::ImageDoc`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ImageArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match args.command {
        ImageCommand::Pull(pull) => run_pull(pull),
        ImageCommand::List(list) => run_list(list),
        ImageCommand::Build(build) => run_build(build),
    }
}

/// The API document of one pulled image.
fn doc(name: &str, suite: &str, image: guest_image::GuestImage) -> vmm::api::ImageDoc {
    vmm::api::ImageDoc {
        schema: vmm::api::SCHEMA,
        name: name.to_string(),
        suite: suite.to_string(),
        kernel_version: image.kernel_version,
        kernel: image.kernel,
        initrd: image.initrd,
        firmware: image.firmware,
        fw_jump: image.fw_jump,
    }
}

fn run_list(args: ListArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let images: Vec<_> = guest_image::list(args.cache_dir.as_deref())?
        .into_iter()
        .map(|(suite, image)| doc("debian", &suite, image))
        .collect();
    let mut disks = Vec::new();
    for suite in images.iter().map(|i| i.suite.clone()) {
        for d in guest_image::rootfs::list(args.cache_dir.as_deref(), &suite)? {
            disks.push(vmm::api::DiskImageDoc {
                name: d.name,
                suite: d.suite,
                variant: d.variant,
                path: d.path,
                sha256: d.sha256,
                host_sha256: d.host_sha256,
                packages: d.packages.len(),
                disk_size: d.disk_size,
            });
        }
    }
    if args.json {
        let list = vmm::api::ImageList {
            schema: vmm::api::SCHEMA,
            images,
            disks,
        };
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if images.is_empty() {
        eprintln!("lockstep: no image pulled yet (lockstep image pull)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8} {:<10} {:<28} KERNEL",
        "NAME", "SUITE", "KERNEL VERSION"
    );
    for i in &images {
        println!(
            "{:<8} {:<10} {:<28} {}",
            i.name,
            i.suite,
            i.kernel_version,
            i.kernel.display()
        );
    }
    if !disks.is_empty() {
        println!();
        println!(
            "{:<24} {:<10} {:>8} {:>8} {:<16} PATH",
            "DISK IMAGE", "SUITE", "PACKAGES", "SIZE", "SHA256"
        );
        for d in &disks {
            println!(
                "{:<24} {:<10} {:>8} {:>8} {:<16} {}",
                d.name,
                d.suite,
                d.packages,
                vocab::human(d.disk_size),
                &d.sha256[..d.sha256.len().min(16)],
                d.path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_pull(args: PullArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let image = guest_image::pull(&PullOptions {
        cache_dir: args.cache_dir,
        mirror: args.mirror,
        suite: args.suite.clone(),
        progress: !args.no_progress,
    })?;
    if args.json {
        let doc = doc(&args.name, &args.suite, image);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("kernel_version: {}", image.kernel_version);
    println!("kernel:   {}", image.kernel.display());
    println!("initrd:   {}", image.initrd.display());
    println!("firmware: {}", image.firmware.display());
    println!("fw_jump:  {}", image.fw_jump.display());
    Ok(ExitCode::SUCCESS)
}

fn run_build(args: BuildArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use guest_image::rootfs::{self, RootfsOptions};
    let opts = RootfsOptions {
        pull: PullOptions {
            cache_dir: args.cache_dir,
            mirror: args.mirror,
            suite: args.suite,
            progress: !args.no_progress,
        },
        variant: args.variant.parse()?,
        packages: args.packages,
        size: args.size << 20,
        rebuild: args.rebuild,
        host_only: args.host_only,
    };
    let image = rootfs::build(&opts, &mut configure_boot)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&image)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:        {}", image.name);
    println!("path:        {}", image.path.display());
    println!("sha256:      {}", image.sha256);
    println!("host sha256: {}", image.host_sha256);
    println!("packages:    {}", image.packages.len());
    println!(
        "size:        {} virtual, {} in the file",
        vocab::human(image.disk_size),
        vocab::human(image.file_size)
    );
    println!(
        "build:       host part {:.1} s, configure stage {:.1} s",
        image.host_seconds, image.configure_seconds
    );
    if !args.host_only {
        println!(
            "boot it:     lockstep disk create vm.qcow2 --size {}M --backing {} --backing-format qcow2",
            image.disk_size >> 20,
            image.path.display()
        );
        println!("             lockstep run --memory 1G --disk path=vm.qcow2,format=qcow2,backing=any --append \"console=ttyS0 quiet root=/dev/vda rw\"");
    }
    Ok(ExitCode::SUCCESS)
}

/// The cached Debian root file system of `variant` (built first if needed, with progress):
/// its path, for `vm create --image`.
pub fn build_debian(variant: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    use guest_image::rootfs::{self, RootfsOptions};
    let opts = RootfsOptions {
        pull: PullOptions::default(),
        variant: variant.parse()?,
        packages: Vec::new(),
        size: 4 << 30,
        rebuild: false,
        host_only: false,
    };
    Ok(rootfs::build(&opts, &mut configure_boot)?.path)
}

/// The configure stage's boot: this binary's own `lockstep run`, console to the job's log.
fn configure_boot(job: &guest_image::rootfs::ConfigureJob) -> Result<(), guest_image::ImageError> {
    let fail = |detail: String| guest_image::ImageError::Configure {
        log: job.log.clone(),
        detail,
    };
    let exe = std::env::current_exe().map_err(|e| fail(format!("own executable: {e}")))?;
    let status = std::process::Command::new(exe)
        .arg("run")
        .arg("--kernel")
        .arg(&job.kernel)
        .arg("--initrd")
        .arg(&job.initrd)
        .arg("--firmware")
        .arg(&job.firmware)
        .arg("--disk")
        .arg(format!("path={},format=qcow2", job.disk.display()))
        .args(["--memory", "1G", "--cpus", "1", "--no-reboot"])
        .args(["--append", "console=ttyS0 quiet lockstep.ip=off"])
        .arg("--console")
        .arg(format!("file={}", job.log.display()))
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| fail(format!("lockstep run: {e}")))?;
    if !status.success() {
        return Err(fail(format!("lockstep run ended with {status}")));
    }
    Ok(())
}
