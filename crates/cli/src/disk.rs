//! `lockstep disk`: create and describe disk images (qcow2 and raw). The
//! library is named `disk` too, hence the `::disk::` paths.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vocab::human;

#[derive(Args, Debug)]
pub struct DiskArgs {
    #[command(subcommand)]
    pub command: DiskCommand,
}

#[derive(Subcommand, Debug)]
pub enum DiskCommand {
    /// Create a qcow2 image (v3, 64 KiB clusters), optionally as an overlay on a backing image.
    Create(CreateArgs),
    /// Describe an image: format, sizes, backing chain.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The new image (must not exist yet).
    pub path: PathBuf,
    /// Virtual size, e.g. 64M or 10G (K/M/G/T are powers of 1024) [default with --backing: the backing image's size].
    #[arg(long, value_name = "SIZE", value_parser = ::disk::parse_size, required_unless_present = "backing")]
    pub size: Option<u64>,
    /// Backing image; its name is stored relative to the new image's directory.
    #[arg(long, value_name = "BASE", requires = "backing_format")]
    pub backing: Option<PathBuf>,
    /// The backing image's format, raw or qcow2 (as qemu-img's -F: never
    /// guessed, since a raw base's first bytes were a guest's to write).
    #[arg(long, value_name = "FORMAT", requires = "backing")]
    pub backing_format: Option<::disk::Format>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    pub path: PathBuf,
    /// Print the description as JSON (`vmm::api::DiskInfoDoc`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DiskArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match args.command {
        DiskCommand::Create(a) => run_create(a),
        DiskCommand::Info(a) => run_info(a),
    }
}

fn run_create(args: CreateArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let size = match (args.size, &args.backing) {
        (Some(size), _) => size,
        (None, Some(backing)) => ::disk::info(backing)?.virtual_size,
        (None, None) => return Err(crate::exit::usage("--size is required without --backing")),
    };
    let backing = match (&args.backing, args.backing_format) {
        (Some(path), Some(format)) => Some((path.as_path(), format)),
        _ => None,
    };
    ::disk::create(&args.path, size, backing)?;
    let info = ::disk::info(&args.path)?;
    print!(
        "created {}: qcow2, {}",
        args.path.display(),
        exact(info.virtual_size)
    );
    if let Some(base) = info.backing_chain.first() {
        print!(", backing {} ({})", base.path.display(), base.format);
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

fn run_info(args: InfoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let info = ::disk::info(&args.path)?;
    if args.json {
        let doc = vmm::api::DiskInfoDoc {
            schema: vmm::api::SCHEMA,
            info,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "lockstep: the formats below are probed from the files' headers; a raw disk's header is its guest's to write, so pin the format when you attach a disk (--disk path={},format={})",
        args.path.display(),
        info.format
    );
    println!("image:        {}", info.path.display());
    println!("format:       {}", info.format);
    println!("virtual size: {}", exact(info.virtual_size));
    if let Some(cluster) = info.cluster_size {
        println!("cluster size: {cluster}");
    }
    println!("disk size:    {}", exact(info.allocated_bytes));
    if info.backing_chain.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("backing chain (nearest first):");
    for (i, layer) in info.backing_chain.iter().enumerate() {
        println!(
            "  {}. {} ({}, {} virtual, {} on disk)",
            i + 1,
            layer.path.display(),
            layer.format,
            human(layer.virtual_size),
            human(layer.allocated_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "64 MiB (67108864 bytes)".
fn exact(bytes: u64) -> String {
    let h = human(bytes);
    if h.ends_with("bytes") {
        h
    } else {
        format!("{h} ({bytes} bytes)")
    }
}

#[cfg(test)]
mod tests {
    use super::{exact, human};

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(exact(512), "512 bytes");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(exact(64 << 20), "64 MiB (67108864 bytes)");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(exact(10 << 30), "10 GiB (10737418240 bytes)");
    }
}
