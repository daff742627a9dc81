//! Guest time follows host time (DESIGN §3.2): while the guest idles and
//! while it computes flat out, its uptime advances with the host's clock.
//! `LOCKSTEP_CLOCK_SECONDS` stretches each phase (the soak: 300 gives a
//! 10-minute run: `cargo test --release -p lockstep-cli --test clock`).

mod common;

use common::{Guest, PROMPT};
use std::time::{Duration, Instant};

/// Largest allowed drift of guest time against host time.
const TOLERANCE: f64 = 0.100;

fn phase_seconds() -> u64 {
    std::env::var("LOCKSTEP_CLOCK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Guest uptime minus host time since `start`, the host time taken when
/// the guest's answer arrives (lockstep emits console bytes as the guest
/// writes them, so the error is the guest's own delay between reading its
/// clock and printing, plus the uptime's 10 ms resolution).
fn offset(g: &mut Guest, start: Instant) -> f64 {
    let cmd = "cat /proc/uptime";
    g.send(cmd);
    g.expect(cmd);
    g.expect("\r\n");
    let line = g.expect("\r\n");
    let now = start.elapsed().as_secs_f64();
    g.expect(PROMPT);
    let uptime: f64 = line
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {line:?}"));
    uptime - now
}

#[test]
fn guest_time_keeps_to_host_time_idle_and_busy() {
    let start = Instant::now();
    let mut g = Guest::boot(&[]);
    g.expect(PROMPT);
    let base = offset(&mut g, start);
    let phase = Duration::from_secs(phase_seconds());
    let mut drifts = Vec::new();

    // Idle: every hart waits in WFI; guest time moves by warps.
    std::thread::sleep(phase);
    drifts.push(("idle", offset(&mut g, start) - base));

    // Busy: a shell loop keeps the hart computing.
    g.run("(while :; do :; done) &");
    std::thread::sleep(phase);
    drifts.push(("busy", offset(&mut g, start) - base));
    g.run("kill %1");

    for (what, drift) in &drifts {
        assert!(
            drift.abs() < TOLERANCE,
            "{what}: guest time drifted {drift:+.3} s from host time (all: {drifts:?})"
        );
    }
    eprintln!("clock drift after each phase of {phase:?}: {drifts:?}");
    g.send("poweroff -f");
    assert!(g.child.wait().expect("wait for lockstep").success());
}
