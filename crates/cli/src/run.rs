//! `lockstep run`: boot Linux on the lockstep board, with the guest's
//! serial console on this terminal (or a file, or nowhere).
//!
//! Everything host-dependent is decided here and handed to the machine as
//! inputs: the RTC's boot time, the VM generation id, the RNG seed, typed
//! bytes. The run loop itself (idle sleeps, catch-up) is `machine::Runner`.
//!
//! Devices: `--disk` images become virtio-blk disks vda, vdb, … in slots
//! 0, 1, …; one virtio-rng always follows them, then one virtio-net per
//! `--net` (eth0, eth1, …).

use crate::nics::{self, NicError};
use clap::Args;
use guest_image::PullOptions;
use machine::layout::VIRTIO_SLOTS;
use machine::{
    BootImages, HostEvent, Machine, MachineConfig, Output, OutputEvent, Pacing, RunEnd, Runner,
    VirtioSpec,
};
use net::FrameTx;
use rustix::termios::{self, OptionalActions, OutputModes, Termios};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_APPEND: &str = "console=ttyS0 earlycon=sbi";
/// Ctrl-A: the console escape key, as in QEMU.
const ESCAPE: u8 = 0x01;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Linux kernel: a flat RISC-V `Image` or an ELF [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial RAM disk (cpio, optionally compressed) [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// OpenSBI firmware, `fw_dynamic` as a raw binary or ELF [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", default_value = DEFAULT_APPEND)]
    pub append: String,
    /// Number of harts (1 to 4).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub cpus: u8,
    /// Guest RAM, e.g. 512M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    pub memory: u64,
    /// Where the guest's serial console goes: stdio, none or file:PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = parse_console)]
    pub console: Console,
    /// A disk image (qcow2 or raw) as the next virtio disk (vda, vdb, …);
    /// `,ro` makes it read-only. Repeatable.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = parse_disk)]
    pub disks: Vec<DiskArg>,
    /// Seed of the virtio-rng entropy stream, 64 hex digits [default: fresh random bytes].
    #[arg(long, value_name = "HEX", value_parser = parse_seed)]
    pub rng_seed: Option<Seed>,
    /// A network interface (eth0, eth1, …): `tap:NAME` (a Linux TAP device;
    /// needs root or CAP_NET_ADMIN) or `socket:DIR` (a shared segment: VMs
    /// naming the same directory are on one hub); `,mac=MAC` sets its
    /// address. Repeatable.
    #[arg(long = "net", value_name = "SPEC", value_parser = parse_net)]
    pub nets: Vec<(String, net::NetSpec)>,
    /// The VM's name. NIC addresses are derived from it unless given, so
    /// VMs sharing a network need different names (or explicit MACs).
    #[arg(long, value_name = "NAME", default_value = "lockstep")]
    pub name: String,
}

/// A `--disk` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskArg {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A 32-byte RNG seed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<secret>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    Stdio,
    None,
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no {0} given and the default guest image is unavailable: {1}")]
    NoImage(&'static str, guest_image::ImageError),
    #[error("cannot create console file {path}: {source}")]
    ConsoleFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot put the terminal in raw mode: {0}")]
    Terminal(std::io::Error),
    #[error("{given} disks given; at most {max} fit beside the RNG device")]
    TooManyDisks { given: usize, max: usize },
    /// The disk crate's errors name the image file.
    #[error("cannot open disk: {0}")]
    Disk(disk::DiskError),
    #[error("cannot read /dev/urandom for the RNG seed: {0}")]
    Entropy(std::io::Error),
    #[error("{disks} disks and {nics} NICs need {} virtio slots; the board has {max}", disks + nics + 1)]
    TooManyDevices {
        disks: usize,
        nics: usize,
        max: usize,
    },
    #[error(transparent)]
    Nic(#[from] NicError),
}

/// Sizes like `512M`, `1G`, `1GiB`, `65536K` or plain bytes.
fn parse_memory(s: &str) -> Result<u64, String> {
    match ::disk::parse_size(s) {
        Ok(0) => Err(format!("invalid memory size '{s}': must be more than zero")),
        other => other.map_err(|e| format!("invalid memory size: {e}")),
    }
}

/// `PATH` or `PATH,ro`.
fn parse_disk(s: &str) -> Result<DiskArg, String> {
    let (path, read_only) = match s.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (s, false),
    };
    if path.is_empty() {
        return Err(format!("invalid disk '{s}': expected PATH or PATH,ro"));
    }
    Ok(DiskArg {
        path: PathBuf::from(path),
        read_only,
    })
}

/// 64 hex digits.
fn parse_seed(s: &str) -> Result<Seed, String> {
    let bad = || {
        format!(
            "invalid RNG seed: expected 64 hex digits (32 bytes), got {} characters",
            s.len()
        )
    };
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| {
            format!(
                "invalid RNG seed: '{}' at position {} is not hex",
                &s[2 * i..2 * i + 2],
                2 * i
            )
        })?;
    }
    Ok(Seed(seed))
}

fn parse_net(s: &str) -> Result<(String, net::NetSpec), String> {
    s.parse()
        .map(|spec| (s.to_string(), spec))
        .map_err(|e| format!("invalid network '{s}': {e}"))
}

fn parse_console(s: &str) -> Result<Console, String> {
    match s {
        "stdio" => Ok(Console::Stdio),
        "none" => Ok(Console::None),
        _ => match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(Console::File(PathBuf::from(path))),
            _ => Err(format!(
                "invalid console '{s}': expected stdio, none or file:PATH"
            )),
        },
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let images = load_images(&args)?;
    let (disks, mut virtio) = open_disks(&args.disks)?;
    let seed = match args.rng_seed {
        Some(Seed(seed)) => seed,
        None => new_rng_seed()?,
    };
    virtio.push(VirtioSpec::Rng { seed });
    if virtio.len() + args.nets.len() > VIRTIO_SLOTS {
        return Err(RunError::TooManyDevices {
            disks: args.disks.len(),
            nics: args.nets.len(),
            max: VIRTIO_SLOTS,
        }
        .into());
    }
    let mut nics = nics::open(&args.nets, &args.name)?;
    virtio.append(&mut nics.specs);
    let config = MachineConfig {
        cpus: usize::from(args.cpus),
        memory: args.memory,
        images,
        bootargs: args.append.clone(),
        boot_wall_ns: wall_clock_ns(),
        vmgenid: new_vmgenid(),
        virtio,
    };
    let output = RunOutput {
        console: console_writer(&args.console)?,
        nics: std::mem::take(&mut nics.tx),
    };
    let mut machine = Machine::with_disks(config, Box::new(output), disks)?;

    let (events, rx) = mpsc::channel();
    let _receivers = nics.start_receivers(&events);
    let _terminal = match args.console {
        Console::Stdio => start_console_input(events)?,
        // No console input: the runner sees the channel closed.
        _ => None,
    };
    let end = Runner::new(rx, Pacing::RealTime).run(&mut machine);
    drop(_terminal); // restore the terminal before printing anything
    machine.flush_disks()?;
    match end? {
        RunEnd::Poweroff(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))),
        RunEnd::Stopped => {
            eprintln!("lockstep: stopped from the console");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The images named on the command line, completed from the pulled
/// default image for any that are not.
fn load_images(args: &RunArgs) -> Result<BootImages, RunError> {
    let (mut kernel, mut initrd, mut firmware) = (
        args.kernel.clone(),
        args.initrd.clone(),
        args.firmware.clone(),
    );
    if kernel.is_none() || initrd.is_none() || firmware.is_none() {
        let missing = if kernel.is_none() {
            "--kernel"
        } else if initrd.is_none() {
            "--initrd"
        } else {
            "--firmware"
        };
        let image = guest_image::pull(&PullOptions::default())
            .map_err(|e| RunError::NoImage(missing, e))?;
        kernel.get_or_insert(image.kernel);
        initrd.get_or_insert(image.initrd);
        firmware.get_or_insert(image.firmware);
    }
    let read = |what, path: Option<PathBuf>| -> Result<Vec<u8>, RunError> {
        let path = path.unwrap_or_default();
        std::fs::read(&path).map_err(|source| RunError::Read { what, path, source })
    };
    Ok(BootImages {
        kernel: read("kernel", kernel)?,
        initrd: Some(read("initrd", initrd)?),
        firmware: read("firmware", firmware)?,
    })
}

type Disk = Box<dyn disk::BlockDevice>;

/// Open the `--disk` images, with a virtio-blk spec for each (serials
/// `lockstep-vda`, `lockstep-vdb`, …).
fn open_disks(args: &[DiskArg]) -> Result<(Vec<Disk>, Vec<VirtioSpec>), RunError> {
    let max = VIRTIO_SLOTS - 1;
    if args.len() > max {
        return Err(RunError::TooManyDisks {
            given: args.len(),
            max,
        });
    }
    let mut disks = Vec::with_capacity(args.len());
    let mut specs = Vec::with_capacity(args.len() + 1);
    for (letter, arg) in (b'a'..).zip(args) {
        let disk = open_disk(&arg.path, arg.read_only)?;
        disks.push(disk);
        specs.push(VirtioSpec::Block {
            serial: format!("lockstep-vd{}", char::from(letter)),
        });
    }
    Ok((disks, specs))
}

fn open_disk(path: &Path, read_only: bool) -> Result<Disk, RunError> {
    disk::open(path, read_only).map_err(RunError::Disk)
}

/// A fresh secret seed for the VM's entropy device.
fn new_rng_seed() -> Result<[u8; 32], RunError> {
    let mut seed = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(RunError::Entropy)?;
    Ok(seed)
}

/// The RTC's time at boot, decided once by the host.
fn wall_clock_ns() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// A fresh random generation id; if the host has no entropy source, one
/// derived from the time (it only needs to differ between runs).
fn new_vmgenid() -> [u8; 16] {
    let mut id = [0u8; 16];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if random.is_err() {
        id = (u128::from(wall_clock_ns()) ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    id
}

/// Where a running VM's outputs go: console bytes to a file or stdout as
/// they come, frames to the NICs' backends.
struct RunOutput {
    console: Option<Box<dyn Write + Send>>,
    nics: Vec<Box<dyn FrameTx>>,
}

impl Output for RunOutput {
    fn emit(&mut self, _icount: u64, event: OutputEvent<'_>) {
        match event {
            OutputEvent::Console(bytes) => {
                if let Some(w) = &mut self.console {
                    // A closed stdout or full disk must not stop the guest.
                    let _ = w.write_all(bytes).and_then(|()| w.flush());
                }
            }
            OutputEvent::Net { nic, frame } => {
                if let Some(tx) = self.nics.get_mut(nic) {
                    // A frame the backend cannot take is lost, as on a wire.
                    let _ = tx.send(frame);
                }
            }
        }
    }
}

fn console_writer(console: &Console) -> Result<Option<Box<dyn Write + Send>>, RunError> {
    Ok(match console {
        Console::Stdio => Some(Box::new(std::io::stdout())),
        Console::None => None,
        Console::File(path) => {
            let file = File::create(path).map_err(|source| RunError::ConsoleFile {
                path: path.clone(),
                source,
            })?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
    })
}

/// Puts the terminal back as it was when dropped (on every exit path,
/// unwinding included).
struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enter() -> Result<Self, RunError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).map_err(|e| RunError::Terminal(e.into()))?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Keep output processing, as QEMU does, so host-side messages stay readable.
        raw.output_modes.insert(OutputModes::OPOST);
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .map_err(|e| RunError::Terminal(e.into()))?;
        Ok(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Read stdin on a thread and send it to the run loop. On a terminal:
/// raw mode, with Ctrl-A x to quit; otherwise bytes pass through untouched
/// and EOF just ends input (the guest keeps running).
fn start_console_input(events: Sender<HostEvent>) -> Result<Option<RawTerminal>, RunError> {
    let interactive = std::io::stdin().is_terminal();
    let terminal = if interactive {
        eprintln!("lockstep: console on this terminal; press Ctrl-A x to quit");
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    std::thread::spawn(move || read_console(events, interactive));
    Ok(terminal)
}

fn read_console(events: Sender<HostEvent>, interactive: bool) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut escape = Escape::default();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let event = if interactive {
            escape.filter(&buf[..n])
        } else {
            HostEvent::Console(buf[..n].to_vec())
        };
        let stop = event == HostEvent::Stop;
        if events.send(event).is_err() || stop {
            return;
        }
    }
}

/// The Ctrl-A escape: Ctrl-A x quits, Ctrl-A Ctrl-A types one Ctrl-A,
/// Ctrl-A h shows help; anything else after Ctrl-A is dropped.
#[derive(Default)]
struct Escape {
    pending: bool,
}

impl Escape {
    fn filter(&mut self, input: &[u8]) -> HostEvent {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if !std::mem::take(&mut self.pending) {
                if b == ESCAPE {
                    self.pending = true;
                } else {
                    out.push(b);
                }
                continue;
            }
            match b {
                b'x' | b'X' => return HostEvent::Stop,
                ESCAPE => out.push(ESCAPE),
                b'h' | b'H' => {
                    eprint!("\r\nC-a x    quit\r\nC-a C-a  type C-a\r\nC-a h    this help\r\n")
                }
                _ => {}
            }
        }
        HostEvent::Console(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory("2g"), Ok(2 << 30));
        assert_eq!(parse_memory("65536K"), Ok(64 << 20));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        for bad in ["", "M", "12X", "-1G", "0", "99999999999T"] {
            assert!(
                parse_memory(bad)
                    .unwrap_err()
                    .contains("invalid memory size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn disks() {
        assert_eq!(
            parse_disk("/a/b.qcow2"),
            Ok(DiskArg {
                path: "/a/b.qcow2".into(),
                read_only: false
            })
        );
        assert_eq!(
            parse_disk("x,y.img,ro"),
            Ok(DiskArg {
                path: "x,y.img".into(),
                read_only: true
            })
        );
        assert!(parse_disk(",ro").is_err());
        assert!(parse_disk("").is_err());
    }

    #[test]
    fn seeds() {
        let hex = "00ff10".to_string() + &"ab".repeat(29);
        let Seed(seed) = parse_seed(&hex).unwrap();
        assert_eq!(&seed[..3], &[0x00, 0xff, 0x10]);
        assert_eq!(seed[31], 0xab);
        assert!(parse_seed("abc").unwrap_err().contains("64 hex digits"));
        let bad = "zz".to_string() + &"00".repeat(31);
        assert!(parse_seed(&bad).unwrap_err().contains("not hex"));
        assert!(parse_seed(&"é".repeat(32)).is_err());
        assert_eq!(format!("{:?}", Seed(seed)), "Seed(<secret>)");
    }

    #[test]
    fn too_many_disks() {
        let args = vec![
            DiskArg {
                path: "/nonexistent".into(),
                read_only: true
            };
            8
        ];
        assert!(matches!(
            open_disks(&args),
            Err(RunError::TooManyDisks { given: 8, max: 7 })
        ));
        let err = open_disks(&args[..1]).err().unwrap();
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }

    #[test]
    fn consoles() {
        assert_eq!(parse_console("stdio"), Ok(Console::Stdio));
        assert_eq!(parse_console("none"), Ok(Console::None));
        assert_eq!(
            parse_console("file:/tmp/x.log"),
            Ok(Console::File("/tmp/x.log".into()))
        );
        assert!(parse_console("file:").is_err());
        assert!(parse_console("tcp:1").is_err());
    }

    #[test]
    fn escape_sequences() {
        let mut e = Escape::default();
        assert_eq!(e.filter(b"ab"), HostEvent::Console(b"ab".to_vec()));
        assert_eq!(
            e.filter(&[b'a', ESCAPE, ESCAPE, b'b']),
            HostEvent::Console(vec![b'a', ESCAPE, b'b'])
        );
        // An escape split across reads still works.
        assert_eq!(e.filter(&[b'c', ESCAPE]), HostEvent::Console(b"c".to_vec()));
        assert_eq!(e.filter(b"x"), HostEvent::Stop);
        assert_eq!(
            e.filter(&[ESCAPE, b'q', b'z']),
            HostEvent::Console(b"z".to_vec())
        );
    }
}
