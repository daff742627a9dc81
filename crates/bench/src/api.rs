//! `lockstep bench api`: the control plane's latencies. A lockstepd (the
//! binary next to this one) in a scratch home: the time from `POST /v1/vms`
//! to the first console byte read over the API's WebSocket, beside QEMU's
//! time from its start to its first serial byte for the same kernel (the
//! same run); then `--clients` concurrent clients each making
//! `--requests` list and show calls, their p50/p99/max latency and rate.

use crate::guest::Scratch;
use crate::table::{Col, Table};
use clap::Args;
use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ApiBenchArgs {
    /// Concurrent API clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Requests per client (list and show alternately).
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Skip the QEMU baseline even if QEMU is installed.
    #[arg(long)]
    no_qemu: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seconds from QEMU's start to the first byte on its serial console.
fn qemu_first_byte(image: &guest_image::GuestImage) -> Res<f64> {
    let mut cmd = crate::qemu::virt(256, 1);
    crate::qemu::boot_linux(
        &mut cmd,
        &image.firmware,
        &image.kernel,
        &image.initrd,
        vmm::DEFAULT_APPEND,
    )
    .args(["-nographic", "-monitor", "none"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let mut out = child.stdout.take().ok_or("no QEMU stdout")?;
    let mut byte = [0u8; 1];
    let n = out.read(&mut byte)?;
    let secs = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    if n == 0 {
        return Err("QEMU wrote nothing to its console".into());
    }
    Ok(secs)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: ApiBenchArgs) -> Res<ExitCode> {
    if args.clients == 0 || args.requests == 0 {
        return Err("--clients and --requests must be at least 1".into());
    }
    let exe = std::env::current_exe()?;
    let daemon_exe = exe.with_file_name("lockstepd");
    if !daemon_exe.is_file() {
        return Err(format!(
            "no lockstepd next to {} (cargo build --release -p lockstep-api)",
            exe.display()
        )
        .into());
    }
    let image = guest_image::pull(&guest_image::PullOptions::default())?;
    let scratch = Scratch::new("bench-api")?;
    let home = scratch.path().join("home");
    let sock = home.join("lockstepd.sock");
    let _daemon = Daemon(
        Command::new(&daemon_exe)
            .arg("--home")
            .arg(&home)
            .args(["--host-name", "bench"])
            .arg("--vm-binary")
            .arg(&exe)
            .env_remove(api::client::API_ENV)
            .env("LOCKSTEP_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()?,
    );
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err("lockstepd did not come up in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("unix:{}", sock.display());
    let password = std::fs::read_to_string(home.join("admin-password"))?;
    let mut client = api::client::Client::new(&url, Some(String::new()))?;
    client.login("admin", password.trim())?;

    // Create to first console byte.
    let started = Instant::now();
    let _: serde_json::Value = client.post(
        "/v1/vms",
        &serde_json::json!({"name": "bench", "flavor": "tiny"}),
    )?;
    let created = started.elapsed().as_secs_f64();
    let mut ws = client.console("bench")?;
    let first = loop {
        match ws.read()? {
            tungstenite::Message::Binary(b) if !b.is_empty() => {
                break started.elapsed().as_secs_f64()
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("no console byte in 120 s".into());
        }
    };
    drop(ws);
    let qemu = if crate::qemu::wanted(args.no_qemu) {
        Some(qemu_first_byte(&image)?)
    } else {
        None
    };

    // Concurrent list and show.
    let token = client.token().unwrap_or_default().to_string();
    let wall = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|_| {
                let (url, token) = (url.clone(), token.clone());
                s.spawn(move || -> Result<Vec<f64>, api::client::ClientError> {
                    let c = api::client::Client::new(&url, Some(token))?;
                    let mut out = Vec::with_capacity(args.requests);
                    for i in 0..args.requests {
                        let t = Instant::now();
                        if i % 2 == 0 {
                            let _: serde_json::Value = c.get("/v1/vms")?;
                        } else {
                            let _: serde_json::Value = c.get("/v1/vms/bench")?;
                        }
                        out.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(v)) => all.extend(v),
                Ok(Err(e)) => eprintln!("bench: a client failed: {e}"),
                Err(_) => eprintln!("bench: a client thread panicked"),
            }
        }
        all
    });
    let wall = wall.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let _: serde_json::Value = client.post(
        "/v1/vms/bench/stop?force=true&timeout=10",
        &serde_json::json!({}),
    )?;

    let mut t = Table::new([Col::left(34), Col::right(10), Col::right(10), Col::right(8)]);
    t.row(["create to first console byte", "lockstep", "QEMU", "ratio"]);
    let q = qemu.map(|q| format!("{q:.3} s")).unwrap_or("-".into());
    let ratio = qemu
        .map(|q| format!("{:.2}", first / q))
        .unwrap_or("-".into());
    t.row([
        "  POST /v1/vms → WebSocket byte".to_string(),
        format!("{first:.3} s"),
        q,
        ratio,
    ]);
    t.row([
        "  of which POST (create + start)".to_string(),
        format!("{created:.3} s"),
    ]);
    println!("{t}");
    let mut t = Table::new([Col::left(34), Col::right(10)]);
    t.row([
        format!("{} clients × {} list/show", args.clients, args.requests),
        String::new(),
    ]);
    t.row([
        "  requests answered".to_string(),
        latencies.len().to_string(),
    ]);
    t.row([
        "  p50".to_string(),
        format!("{:.1} ms", percentile(&latencies, 0.5)),
    ]);
    t.row([
        "  p99".to_string(),
        format!("{:.1} ms", percentile(&latencies, 0.99)),
    ]);
    t.row([
        "  max".to_string(),
        format!("{:.1} ms", latencies.last().copied().unwrap_or(0.0)),
    ]);
    t.row([
        "  rate".to_string(),
        format!("{:.0} /s", latencies.len() as f64 / wall),
    ]);
    println!("{t}");
    println!(
        "migration pause: not measured through the API (POST /v1/vms/{{id}}/migrate is not \
         built yet); `lockstep bench migrate` measures `lockstep ft migrate`"
    );
    Ok(ExitCode::SUCCESS)
}
