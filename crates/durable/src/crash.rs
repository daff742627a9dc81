//! Crash injection for the power-loss tests (issue 12): with
//! `LOCKSTEP_CRASH_AT=N` in the environment, the process kills itself
//! (SIGKILL: no unwinding, no destructors, as a power cut leaves files
//! minus what the page cache would lose) at the Nth step of a crash-safe
//! change: after each write, fsync, rename and removal that matters. Each
//! step passed is reported on stderr (`lockstep: crash point N: WHAT`), so
//! a test can count them first. Without the variable a step costs one
//! load of a cached value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PASSED: AtomicU64 = AtomicU64::new(0);

/// Mark one step of a crash-safe change.
pub fn crash_point(what: &str) {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    let Some(at) = *AT.get_or_init(|| std::env::var("LOCKSTEP_CRASH_AT").ok()?.parse().ok()) else {
        return;
    };
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    eprintln!("lockstep: crash point {n}: {what}");
    if n == at {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
