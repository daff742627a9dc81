//! Boots the pulled Debian image (kernel, OpenSBI, busybox initramfs) under
//! `lockstep run` and drives its console like a user: `uname -m`, the hart
//! count from /proc/cpuinfo, then `poweroff -f`. Run with `--release`: the
//! guest executes a few billion instructions.

mod common;

use common::{Guest, PROMPT};

fn boot_and_check(cpus: u32) {
    let mut g = Guest::boot(&["--cpus", &cpus.to_string()]);
    g.expect("lockstep guest ready");
    g.expect(PROMPT);
    assert_eq!(g.run("uname -m"), "riscv64");
    let harts = g.run("grep -c processor /proc/cpuinfo");
    assert_eq!(
        harts,
        cpus.to_string(),
        "guest sees the wrong number of harts"
    );
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(
        status.success(),
        "lockstep run ended with {status} after poweroff; console:\n{}",
        g.console
    );
}

#[test]
fn boots_debian_to_a_shell_on_one_hart() {
    boot_and_check(1);
}

#[test]
fn boots_debian_to_a_shell_on_two_harts() {
    boot_and_check(2);
}
