//! `lockstep image`: fetch, verify and cache the guest image (Debian's riscv64 kernel,
//! OpenSBI firmware, and an initramfs built from Debian's busybox and kernel modules).

use clap::{Args, Subcommand};
use guest_image::{PullOptions, DEFAULT_MIRROR, DEFAULT_SUITE};
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
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Which image: only `debian` exists.
    #[arg(default_value = "debian", value_parser = ["debian"])]
    pub name: String,
    /// Cache directory [default: $LOCKSTEP_CACHE, $XDG_CACHE_HOME/lockstep or ~/.cache/lockstep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Debian mirror to download from.
    #[arg(long, value_name = "URL", default_value = DEFAULT_MIRROR)]
    pub mirror: String,
    /// Debian suite.
    #[arg(long, default_value = DEFAULT_SUITE)]
    pub suite: String,
    /// Print no download progress.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ImageArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match args.command {
        ImageCommand::Pull(pull) => run_pull(pull),
    }
}

fn run_pull(args: PullArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let image = guest_image::pull(&PullOptions {
        cache_dir: args.cache_dir,
        mirror: args.mirror,
        suite: args.suite,
        progress: !args.quiet,
    })?;
    println!("kernel_version: {}", image.kernel_version);
    println!("kernel:   {}", image.kernel.display());
    println!("initrd:   {}", image.initrd.display());
    println!("firmware: {}", image.firmware.display());
    println!("fw_jump:  {}", image.fw_jump.display());
    Ok(ExitCode::SUCCESS)
}
