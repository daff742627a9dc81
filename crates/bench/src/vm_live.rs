//! `lockstep bench vm`'s running part: a kept VM booted from the pulled
//! Debian image (`--running-memory`, idle at its shell), snapshotted
//! while it runs (guest pause and total), reverted to the first executed
//! instruction, suspended and resumed; beside it, the same guest under
//! QEMU TCG on a qcow2 disk, whose `savevm` (the guest paused throughout)
//! and `loadvm` its monitor times.

use crate::guest::Scratch;
use crate::qemu::{self, QEMU};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmm::{VmCommand, VmReply};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What the guest prints once it is at its shell.
const READY: &str = "lockstep guest ready";
const BOOT_WAIT: Duration = Duration::from_secs(600);
const VM: &str = "live";

/// The figures, in milliseconds; one entry per measurement.
#[derive(Default)]
pub struct Live {
    pub pause: Vec<f64>,
    pub total: Vec<f64>,
    pub revert: Vec<f64>,
    pub suspend: Vec<f64>,
    pub resume: Vec<f64>,
    pub qemu_savevm: Vec<f64>,
    pub qemu_loadvm: Vec<f64>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// `lockstep ARGS` with the scratch home; must succeed.
fn lockstep(home: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(std::env::current_exe()?)
        .env("LOCKSTEP_HOME", home)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "lockstep {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

pub(crate) fn wait_for_text(path: &Path, text: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + BOOT_WAIT;
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: no {text:?} in {} after {BOOT_WAIT:?}",
                path.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Poll the VM's control socket until its run loop answers: from then on
/// the guest executes.
fn until_running(sock: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let asked = vmm::control::request(sock, &VmCommand::Status {}, Duration::from_secs(10));
        if let Ok(VmReply::Status { .. }) = asked {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{}: the VM does not answer", sock.display()).into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Measure ours: `repeat` running snapshots, reverts and suspend/resumes.
pub fn lockstep_figures(scratch: &Scratch, memory_mib: u64, repeat: u32) -> Result<Live> {
    let home = scratch.path().join("live-home");
    let memory = format!("{memory_mib}M");
    lockstep(
        &home,
        &["vm", "create", VM, "--memory", &memory, "--disk-size", "1G"],
    )?;
    let dir = home.join("vms").join(VM);
    let sock = dir.join(vmm::CONTROL_SOCKET);
    eprintln!("bench: booting a {memory_mib} MiB kept VM …");
    lockstep(&home, &["vm", "start", VM])?;
    wait_for_text(&dir.join(vmm::CONSOLE_LOG), READY, "the kept VM")?;
    let mut live = Live::default();
    let outcome = (|| -> Result<()> {
        for n in 0..repeat {
            let reply = vmm::control::request(
                &sock,
                &VmCommand::Snapshot {
                    name: format!("r{n}"),
                    description: String::new(),
                    disk_only: false,
                },
                Duration::from_secs(600),
            )?;
            match reply {
                VmReply::Snapshot {
                    pause_us, total_ms, ..
                } => {
                    live.pause.push(pause_us as f64 / 1e3);
                    live.total.push(total_ms as f64);
                }
                other => return Err(format!("snapshot: {other:?}").into()),
            }
        }
        for n in 0..repeat {
            let t = Instant::now();
            lockstep(&home, &["snapshot", "revert", VM, &format!("r{n}")])?;
            until_running(&sock)?;
            live.revert.push(ms(t));
        }
        for _ in 0..repeat {
            let t = Instant::now();
            lockstep(&home, &["vm", "suspend", VM])?;
            live.suspend.push(ms(t));
            let t = Instant::now();
            lockstep(&home, &["vm", "resume", VM])?;
            until_running(&sock)?;
            live.resume.push(ms(t));
        }
        Ok(())
    })();
    let _ = lockstep(&home, &["vm", "kill", VM]);
    outcome?;
    Ok(live)
}

/// QEMU's monitor (HMP) on a Unix socket.
pub(crate) struct Monitor {
    conn: BufReader<UnixStream>,
}

impl Monitor {
    pub(crate) fn connect(path: &Path) -> Result<Monitor> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let conn = loop {
            match UnixStream::connect(path) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(format!("{}: {e}", path.display()).into()),
            }
        };
        conn.set_read_timeout(Some(Duration::from_secs(600)))?;
        let mut m = Monitor {
            conn: BufReader::new(conn),
        };
        m.prompt()?;
        Ok(m)
    }

    /// Read up to the next `(qemu) ` prompt; what came before it.
    fn prompt(&mut self) -> Result<String> {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"(qemu) ") {
            if self.conn.read(&mut byte)? == 0 {
                return Err("QEMU's monitor closed".into());
            }
            seen.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&seen).into_owned())
    }

    /// Run `command`; how long until the monitor was ready again.
    pub(crate) fn timed(&mut self, command: &str) -> Result<f64> {
        let t = Instant::now();
        self.say(command)?;
        Ok(ms(t))
    }

    /// Run `command`; what the monitor answered (an error if it says one).
    pub(crate) fn say(&mut self, command: &str) -> Result<String> {
        self.conn
            .get_mut()
            .write_all(format!("{command}\n").as_bytes())?;
        let said = self.prompt()?;
        let said = said.replace(command, "");
        let said =
            said.trim_matches(|c: char| c.is_whitespace() || c == '\u{1b}' || c == '(' || c == ')');
        if said.contains("Error") || said.contains("rror:") {
            return Err(format!("QEMU {command}: {said}").into());
        }
        Ok(said.to_string())
    }
}

pub(crate) struct Qemu(pub(crate) Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measure QEMU: `savevm`/`loadvm` of the same guest, `repeat` times.
pub fn qemu_figures(
    scratch: &Scratch,
    memory_mib: u64,
    repeat: u32,
    live: &mut Live,
) -> Result<()> {
    let image = guest_image::pull(&guest_image::PullOptions::default())?;
    let dir = scratch.path().join("qemu-live");
    std::fs::create_dir_all(&dir)?;
    let disk: PathBuf = dir.join("disk.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("1G")
        .output()?;
    if !out.status.success() {
        return Err(format!("qemu-img create: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let console = dir.join("console.txt");
    let mon = dir.join("monitor.sock");
    eprintln!("bench: booting the same guest under QEMU …");
    let mut cmd = qemu::virt(memory_mib, 1);
    let child = qemu::boot_linux(
        &mut cmd,
        &image.firmware,
        &image.kernel,
        &image.initrd,
        "console=ttyS0 quiet",
    )
    .args(["-display", "none"])
    .arg("-drive")
    .arg(format!(
        "file={},format=qcow2,if=none,id=d0",
        disk.display()
    ))
    .args(["-device", "virtio-blk-device,drive=d0"])
    .arg("-serial")
    .arg(format!("file={}", console.display()))
    .arg("-monitor")
    .arg(format!("unix:{},server=on,wait=off", mon.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|e| format!("{QEMU}: {e}"))?;
    let _qemu = Qemu(child);
    wait_for_text(&console, READY, "QEMU")?;
    let mut m = Monitor::connect(&mon)?;
    for n in 0..repeat {
        live.qemu_savevm.push(m.timed(&format!("savevm r{n}"))?);
    }
    for n in 0..repeat {
        live.qemu_loadvm.push(m.timed(&format!("loadvm r{n}"))?);
    }
    Ok(())
}
