//! `lockstep run --save-on-exit` / `--restore` with a Debian guest: save
//! while the guest runs (SIGUSR1), stop with a save (SIGTERM), resume in a
//! new process where the guest left off.

mod common;

use common::{Guest, PROMPT};

fn signal(g: &Guest, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(g.child.id() as i32).expect("a child pid");
    rustix::process::kill_process(pid, sig).expect("signal lockstep");
}

#[test]
fn a_guest_saved_while_running_and_on_stop_resumes_where_it_left_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snap = dir.path().join("vm.snap");
    let snap_arg = snap.to_str().expect("utf-8 temp path");
    let mut g = Guest::boot(&["--save-on-exit", snap_arg]);
    g.expect(PROMPT);
    g.run("echo before > /tmp/x");

    // Saved while running: the guest carries on.
    signal(&g, rustix::process::Signal::USR1);
    g.expect_stderr("saved to");
    assert!(snap.exists());
    assert_eq!(g.run("echo still-running"), "still-running");
    g.run("echo later > /tmp/y");

    // Stopped: saved again, exit 7 (stopped by the host).
    signal(&g, rustix::process::Signal::TERM);
    g.expect_stderr("stopped; saved to");
    let status = g.child.wait().expect("wait for lockstep");
    assert_eq!(status.code(), Some(7), "{status}");

    // A new process resumes the guest: its files and shell are there.
    let mut r = Guest::launch(&[], &["run", "--console", "stdio", "--restore", snap_arg]);
    let restored = r.expect_stderr("restored");
    assert!(
        restored.contains(&format!("{}", snap.display())),
        "{restored}"
    );
    assert_eq!(r.run("cat /tmp/x /tmp/y"), "before\r\nlater");
    r.send("poweroff -f");
    assert!(r.child.wait().expect("wait for lockstep").success());
}

#[test]
fn restore_refuses_a_damaged_snapshot_before_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, b"LSTPSNAP but not really a snapshot").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--restore"])
        .arg(&bad)
        .output()
        .expect("run lockstep");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
