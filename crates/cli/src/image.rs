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
    if args.json {
        let list = vmm::api::ImageList {
            schema: vmm::api::SCHEMA,
            images,
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
