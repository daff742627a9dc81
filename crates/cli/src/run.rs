//! `lockstep run`: boot Linux on the lockstep board, with the guest's
//! serial console on this terminal (or a file, or nowhere).
//!
//! Everything host-dependent is decided here and handed to the machine as
//! inputs: the RTC's boot time, the VM generation id, typed bytes. The run
//! loop itself (idle sleeps, catch-up) is `machine::Runner`.

use clap::Args;
use guest_image::PullOptions;
use machine::{
    BootImages, HostEvent, Machine, MachineConfig, Output, OutputEvent, Pacing, RunEnd, Runner,
};
use rustix::termios::{self, OptionalActions, OutputModes, Termios};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
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
}

/// Sizes like `512M`, `1G`, `1GiB`, `65536K` or plain bytes.
fn parse_memory(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid memory size '{s}': expected a number with an optional K, M or G suffix, e.g. 512M")
    };
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(bad)
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
    let config = MachineConfig {
        cpus: usize::from(args.cpus),
        memory: args.memory,
        images,
        bootargs: args.append.clone(),
        boot_wall_ns: wall_clock_ns(),
        vmgenid: new_vmgenid(),
    };
    let output = console_output(&args.console)?;
    let mut machine = Machine::new(config, output)?;

    let (events, rx) = mpsc::channel();
    let _terminal = match args.console {
        Console::Stdio => start_console_input(events)?,
        // No console input: the runner sees the channel closed.
        _ => None,
    };
    let end = Runner::new(rx, Pacing::RealTime).run(&mut machine);
    drop(_terminal); // restore the terminal before printing anything
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

/// Console bytes written to a file or stdout as they come.
struct WriterOutput<W: Write + Send>(W);

impl<W: Write + Send> Output for WriterOutput<W> {
    fn emit(&mut self, _icount: u64, event: OutputEvent<'_>) {
        let OutputEvent::Console(bytes) = event;
        // A closed stdout or full disk must not stop the guest.
        let _ = self.0.write_all(bytes).and_then(|()| self.0.flush());
    }
}

fn console_output(console: &Console) -> Result<Box<dyn Output>, RunError> {
    Ok(match console {
        Console::Stdio => Box::new(WriterOutput(std::io::stdout())),
        Console::None => Box::new(machine::NullOutput),
        Console::File(path) => {
            let file = File::create(path).map_err(|source| RunError::ConsoleFile {
                path: path.clone(),
                source,
            })?;
            Box::new(WriterOutput(std::io::BufWriter::new(file)))
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
