//! Kept VMs through the `lockstep` binary, with real Debian guests: the
//! guest writes its disk, snapshots and reverts bring back what it wrote;
//! a detached start, a refused second start, stop; full and linked clones
//! running beside their source on one `socket:` segment, pinging each
//! other. Each test has its own `$LOCKSTEP_HOME`.

mod common;

use common::{Guest, PROMPT};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const APPEND: &str = "console=ttyS0 quiet";

use common::{lockstep_in as lockstep, ok_in as ok};

/// Run `lockstep ARGS`, which must fail with one line and exit 3 (an
/// error on the host: the VM's state forbids it); that line.
fn refused(home: &Path, args: &[&str]) -> String {
    refused_with(home, args, 3)
}

/// Run `lockstep ARGS`, which must fail as a usage error (exit 2) with one
/// line; that line.
fn misused(home: &Path, args: &[&str]) -> String {
    refused_with(home, args, 2)
}

fn refused_with(home: &Path, args: &[&str], code: i32) -> String {
    let out = lockstep(home, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "lockstep {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

/// `vm create NAME` small (256 MiB, a 16 MiB disk, a quiet console), with `extra` flags.
fn create(home: &Path, name: &str, extra: &[&str]) {
    let mut args = vec![
        "vm",
        "create",
        name,
        "--memory",
        "256M",
        "--disk-size",
        "16M",
        "--append",
        APPEND,
    ];
    args.extend_from_slice(extra);
    ok(home, &args);
}

/// `vm start NAME --attach` with the console on our pipes.
fn attach(home: &Path, name: &str) -> Guest {
    let mut g = Guest::launch_env(
        &[],
        &["vm", "start", name, "--attach"],
        &[("LOCKSTEP_HOME", home)],
    );
    g.expect(PROMPT);
    g
}

fn poweroff(mut g: Guest) {
    g.send("sync; poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(status.success(), "{status}; console:\n{}", g.console);
}

/// Write `text` at sector 100 of /dev/vda. (Commands stay shorter than
/// the console's 80 columns: a wrapped line echoes with escapes.)
fn write_mark(g: &mut Guest, text: &str) {
    g.run(&format!("echo {text} >/tmp/m"));
    g.run("dd if=/tmp/m of=/dev/vda seek=100 conv=notrunc 2>/dev/null");
    assert_eq!(g.run("sync && echo written"), "written");
}

fn read_mark(g: &mut Guest) -> String {
    g.run("dd if=/dev/vda skip=100 count=1 2>/dev/null | head -n 1")
}

#[test]
fn snapshots_of_a_guest_disk_revert_and_merge() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "vm",
            "create",
            "t",
            "--memory",
            "256M",
            "--disk-size",
            "64M",
            "--append",
            APPEND,
        ],
    );
    let mut g = attach(h, "t");
    write_mark(&mut g, "first");
    poweroff(g);
    ok(
        h,
        &["snapshot", "create", "t", "s1", "--description", "first"],
    );
    let mut g = attach(h, "t");
    assert_eq!(read_mark(&mut g), "first");
    write_mark(&mut g, "second");
    poweroff(g);
    ok(h, &["snapshot", "create", "t", "s2"]);
    refused(h, &["snapshot", "create", "t", "s2"]);

    ok(h, &["snapshot", "revert", "t", "s1"]);
    let mut g = attach(h, "t");
    assert_eq!(read_mark(&mut g), "first");
    write_mark(&mut g, "branch");
    poweroff(g);
    ok(h, &["snapshot", "create", "t", "s3"]);
    let tree = ok(h, &["snapshot", "list", "t", "--tree"]);
    assert!(
        tree.contains("s2") && tree.contains("s3") && tree.contains("you are here"),
        "{tree}"
    );

    ok(h, &["snapshot", "revert", "t", "s2"]);
    let mut g = attach(h, "t");
    assert_eq!(read_mark(&mut g), "second");
    poweroff(g);

    // Delete the inner node: both branches keep their contents.
    ok(h, &["snapshot", "delete", "t", "s1"]);
    let list = ok(h, &["snapshot", "list", "t"]);
    assert!(!list.contains("s1"), "{list}");
    let mut g = attach(h, "t");
    assert_eq!(read_mark(&mut g), "second");
    poweroff(g);
    ok(h, &["snapshot", "revert", "t", "s3"]);
    let mut g = attach(h, "t");
    assert_eq!(read_mark(&mut g), "branch");
    poweroff(g);
    refused(h, &["snapshot", "revert", "t", "s1"]);

    // Every layer passes qemu-img check.
    for entry in std::fs::read_dir(h.join("vms/t/disks")).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("qemu-img")
            .args(["check", "-q"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", path.display());
    }
}

/// The guest's RAM-only counter (see the running-snapshot tests).
fn counter(g: &mut Guest) -> u64 {
    g.run("cat /tmp/c").parse().unwrap_or(0)
}

/// Wait until the counter reaches `at_least`; its value then.
fn count_to(g: &mut Guest, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = counter(g);
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < deadline, "the counter does not count");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `vm console NAME`, at the shell prompt.
fn console(h: &Path, name: &str) -> Guest {
    let mut c = Guest::launch_env(&[], &["vm", "console", name], &[("LOCKSTEP_HOME", h)]);
    c.send("");
    c.expect(PROMPT);
    c
}

#[test]
fn snapshots_of_a_running_guest_come_back_at_their_instruction() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    create(h, "r", &[]);
    let mut g = attach(h, "r");
    // A counter in RAM only (tmpfs): a revert brings back its value only
    // if memory comes back.
    g.run("(i=0; while :; do i=$((i+1)); echo $i >/tmp/c; sleep 1; done) &");
    count_to(&mut g, 3);
    write_mark(&mut g, "one");
    let before1 = counter(&mut g);
    let out = lockstep(h, &["snapshot", "create", "r", "s1"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("guest paused"),
        "{said}"
    );
    let after1 = counter(&mut g);
    // Refused by the running VM, or before it is touched: one line each,
    // the guest running on.
    refused(h, &["snapshot", "create", "r", "s1"]);
    misused(h, &["snapshot", "create", "r", "bad/name"]);
    refused(h, &["snapshot", "revert", "r", "nope"]);
    assert!(ok(h, &["vm", "list"]).contains("running"));
    write_mark(&mut g, "two");
    count_to(&mut g, after1 + 8);
    ok(
        h,
        &["snapshot", "create", "r", "s2", "--description", "second"],
    );
    let after2 = counter(&mut g);
    count_to(&mut g, after2 + 3);
    // A clone of the running VM comes from a disk-only snapshot of it.
    ok(h, &["vm", "clone", "r", "rc", "--linked"]);
    let show = ok(h, &["snapshot", "show", "r", "clone-rc"]);
    assert!(show.contains("powered off"), "{show}");
    let tree = ok(h, &["snapshot", "list", "r", "--tree"]);
    assert!(tree.contains("s1") && tree.contains("s2"), "{tree}");
    assert_eq!(tree.matches("running").count(), 2, "{tree}");
    assert!(tree.contains("clone-rc"), "{tree}");
    let list = ok(h, &["snapshot", "list", "r", "--json"]);
    let snaps: vmm::api::SnapshotList = serde_json::from_str(&list).unwrap();
    assert_eq!((snaps.schema, snaps.vm.as_str()), (vmm::api::SCHEMA, "r"));
    let state = snaps.snapshots[0]
        .snapshot
        .state
        .as_ref()
        .expect("a state file");
    assert!(state.ends_with(".state"), "{state}");
    // The layers stay readable by qemu-img while the VM runs.
    for entry in std::fs::read_dir(h.join("vms/r/disks")).unwrap() {
        let path = entry.unwrap().path();
        let check = Command::new("qemu-img")
            .args(["check", "-U", "-q"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(check.success(), "{}", path.display());
    }

    // Revert the running VM to s1: it runs on from s1's instruction.
    ok(h, &["snapshot", "revert", "r", "s1"]);
    let _ = g.child.wait();
    let mut c = console(h, "r");
    let n = counter(&mut c);
    assert!(
        n >= before1 && n < after2,
        "after revert to s1 the counter is {n}, expected from {before1} (s1) on, below {after2} (s2)"
    );
    assert_eq!(read_mark(&mut c), "one");
    drop(c);
    // And to s2.
    ok(h, &["snapshot", "revert", "r", "s2"]);
    let mut c = console(h, "r");
    let n = counter(&mut c);
    assert!(n >= after1 + 8, "after revert to s2 the counter is {n}");
    assert_eq!(read_mark(&mut c), "two");
    drop(c);
    // Delete s1: s2 (whose state stands on s1's disks) and the present
    // stay intact.
    ok(h, &["vm", "stop", "r"]);
    ok(h, &["snapshot", "delete", "r", "s1"]);
    let tree = ok(h, &["snapshot", "list", "r", "--tree"]);
    assert!(!tree.contains("s1") && tree.contains("s2"), "{tree}");
    ok(h, &["vm", "start", "r"]);
    let mut c = console(h, "r");
    assert_eq!(read_mark(&mut c), "two");
    drop(c);
    ok(h, &["snapshot", "revert", "r", "s2"]);
    let mut c = console(h, "r");
    assert!(counter(&mut c) >= after1 + 8);
    assert_eq!(read_mark(&mut c), "two");
    drop(c);
    ok(h, &["vm", "kill", "r"]);
    // The clone boots from the disks the running source had.
    ok(h, &["vm", "start", "rc"]);
    let mut c = console(h, "rc");
    assert_eq!(read_mark(&mut c), "two");
    drop(c);
    ok(h, &["vm", "kill", "rc"]);
}

#[test]
fn detached_start_list_stop_and_refusals() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    create(h, "d", &[]);
    refused(h, &["vm", "create", "d"]);
    misused(h, &["vm", "create", "../evil"]);
    refused(h, &["vm", "start", "nope"]);
    ok(h, &["vm", "start", "d"]);
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("running"), "{list}");
    let again = refused(h, &["vm", "start", "d"]);
    assert!(
        again.contains("already running") && again.contains("pid"),
        "{again}"
    );
    misused(h, &["snapshot", "create", "d", "bad/name"]);
    refused(h, &["vm", "delete", "d"]);
    // The console goes to the bundle's console.log.
    let log = h.join("vms/d/console.log");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("lockstep guest ready")
    {
        assert!(Instant::now() < deadline, "no boot in console.log");
        std::thread::sleep(Duration::from_millis(200));
    }
    // `vm console` attaches to it; leaving leaves it running.
    let mut c = Guest::launch_env(&[], &["vm", "console", "d"], &[("LOCKSTEP_HOME", h)]);
    c.send("echo console-ok-$((6*7))");
    c.expect("console-ok-42");
    drop(c);
    let mut c = Guest::launch_env(&[], &["vm", "console", "d"], &[("LOCKSTEP_HOME", h)]);
    c.send("echo again-$((6*7))");
    c.expect("again-42");
    drop(c);
    let json = ok(h, &["vm", "show", "d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["state"]["state"], "running");
    assert_eq!(v["config"]["name"], "d");
    ok(h, &["vm", "stop", "d"]);
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("powered off"), "{list}");
    refused(h, &["vm", "console", "d"]);
    // Kill, then delete.
    ok(h, &["vm", "start", "d"]);
    ok(h, &["vm", "kill", "d"]);
    ok(h, &["vm", "delete", "d"]);
    assert!(!h.join("vms/d").exists());
}

#[test]
fn full_and_linked_clones_run_beside_their_source_and_ping() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let seg = home.path().join("segment");
    std::fs::create_dir(&seg).unwrap();
    let net = format!("socket={}", seg.display());
    create(h, "src", &["--net", &net]);
    ok(h, &["snapshot", "create", "src", "base"]);
    ok(h, &["vm", "clone", "src", "full"]);
    ok(
        h,
        &[
            "vm",
            "clone",
            "src",
            "linked",
            "--linked",
            "--from-snapshot",
            "base",
        ],
    );
    refused(h, &["snapshot", "delete", "src", "base"]);
    refused(h, &["vm", "clone", "src", "full"]);

    let show = |name: &str| -> serde_json::Value {
        serde_json::from_str(&ok(h, &["vm", "show", name, "--json"])).unwrap()
    };
    let (s, f, l) = (show("src"), show("full"), show("linked"));
    let mac = |v: &serde_json::Value| v["config"]["nic"][0]["mac"].as_str().unwrap().to_string();
    let uuid = |v: &serde_json::Value| v["config"]["uuid"].as_str().unwrap().to_string();
    assert_ne!(mac(&s), mac(&f));
    assert_ne!(mac(&s), mac(&l));
    assert_ne!(mac(&f), mac(&l));
    assert_ne!(uuid(&s), uuid(&f));
    assert_ne!(uuid(&s), uuid(&l));

    let mut guests = Vec::new();
    for (i, name) in ["src", "full", "linked"].iter().enumerate() {
        let mut g = attach(h, name);
        let ip = format!("10.79.0.{}", i + 1);
        let out = g.run(&format!(
            "ip addr add {ip}/24 dev eth0 && ip link set eth0 up && echo up"
        ));
        assert_eq!(out, "up", "{name}");
        let mac_seen = g.run("cat /sys/class/net/eth0/address");
        assert_eq!(mac_seen, mac(&show_json(h, name)), "{name}");
        guests.push(g);
    }
    for (i, g) in guests.iter_mut().enumerate() {
        for j in 0..3 {
            if i != j {
                let out = g.run(&format!(
                    "ping -c 2 -W 5 10.79.0.{} >/dev/null && echo reached",
                    j + 1
                ));
                assert_eq!(out, "reached", "guest {i} -> {j}");
            }
        }
    }
    for g in guests {
        poweroff(g);
    }
    ok(h, &["vm", "delete", "linked"]);
    ok(h, &["snapshot", "delete", "src", "base"]);
}

fn show_json(h: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(h, &["vm", "show", name, "--json"])).unwrap()
}

#[test]
fn suspend_then_resume_in_a_new_process_continues_the_guest() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    create(h, "s", &[]);
    let mut g = attach(h, "s");
    // A counter in RAM only (tmpfs): it survives only if memory does.
    g.run("(i=0; while :; do i=$((i+1)); echo $i >/tmp/c; sleep 1; done) &");
    let deadline = Instant::now() + Duration::from_secs(300);
    let before = loop {
        let n: u64 = g.run("cat /tmp/c").parse().unwrap_or(0);
        if n >= 3 {
            break n;
        }
        assert!(Instant::now() < deadline, "the counter does not count");
        std::thread::sleep(Duration::from_millis(500));
    };
    let uptime_before: f64 = g.run("cut -d' ' -f1 /proc/uptime").parse().unwrap();
    ok(h, &["vm", "suspend", "s"]);
    let status = g.child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "stopped by the host: {status}");
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("suspended"), "{list}");
    // What a suspended VM cannot do, and that its state is in the bundle.
    refused(h, &["vm", "rename", "s", "t"]);
    refused(h, &["vm", "clone", "s", "c"]);
    let states: Vec<_> = std::fs::read_dir(h.join("vms/s/states")).unwrap().collect();
    assert_eq!(states.len(), 1);
    // A snapshot of the suspended VM shares its state.
    ok(h, &["snapshot", "create", "s", "asleep"]);
    let show = ok(h, &["snapshot", "show", "s", "asleep"]);
    assert!(show.contains("suspended"), "{show}");

    // Resume in a new process: the same guest, counting on.
    // Resume in a new process, the saved state checked whole first: RAM,
    // images and disks as saved and the rebuilt machine's state hash equal
    // to the suspended one's (the machine-level tests show that equal
    // states run on identically).
    let mut g = Guest::launch_env(
        &[],
        &["vm", "resume", "s", "--attach", "--verify"],
        &[("LOCKSTEP_HOME", h)],
    );
    let restored = g.expect_stderr("restored");
    assert!(restored.contains("state hash equal"), "{restored}");
    g.send("");
    g.expect(PROMPT);
    let after: u64 = g.run("cat /tmp/c").parse().unwrap();
    assert!(after >= before, "counter went back: {before} -> {after}");
    let uptime_after: f64 = g.run("cut -d' ' -f1 /proc/uptime").parse().unwrap();
    assert!(
        uptime_after >= uptime_before,
        "{uptime_before} -> {uptime_after}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let later: u64 = g.run("cat /tmp/c").parse().unwrap();
    assert!(
        later > after,
        "the counter stopped after resume: {after} -> {later}"
    );
    // Resumed: the saved state is now only the snapshot's.
    assert_eq!(
        std::fs::read_dir(h.join("vms/s/states")).unwrap().count(),
        1
    );
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("running"), "{list}");
    poweroff(g);
    // Back to the suspended snapshot: suspended again, at its instruction.
    ok(h, &["snapshot", "revert", "s", "asleep"]);
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("suspended"), "{list}");
    let mut g = Guest::launch_env(
        &[],
        &["vm", "resume", "s", "--attach"],
        &[("LOCKSTEP_HOME", h)],
    );
    g.expect_stderr("restored");
    g.send("");
    g.expect(PROMPT);
    let again: u64 = g.run("cat /tmp/c").parse().unwrap();
    assert!(
        again >= before && again < later,
        "after revert to the suspended snapshot: {again}, saved at {before}..{after}, later {later}"
    );
    poweroff(g);
}

#[test]
fn a_vm_with_ft_settings_starts_protected() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let arbiter = h.join("arbiter");
    let replicas = h.join("replicas");
    std::fs::create_dir(&replicas).unwrap();
    let mut backup = Guest::launch_env(
        &[],
        &[
            "ft",
            "backup",
            "--listen",
            "127.0.0.1:0",
            "--ft-arbiter",
            arbiter.to_str().unwrap(),
            "--replica-dir",
            replicas.to_str().unwrap(),
            "--console",
            "none",
        ],
        &[("LOCKSTEP_HOME", h)],
    );
    let line = backup.expect_stderr("listening on");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    create(
        h,
        "f",
        &[
            "--ft-backup",
            &addr,
            "--ft-arbiter",
            arbiter.to_str().unwrap(),
        ],
    );
    let show = ok(h, &["vm", "show", "f"]);
    assert!(
        show.contains(&format!("ft:          backup {addr}")),
        "{show}"
    );
    let mut g = Guest::launch_env(
        &[],
        &["vm", "start", "f", "--attach"],
        &[("LOCKSTEP_HOME", h)],
    );
    g.expect_stderr("protected by the backup");
    g.expect(PROMPT);
    let status = ok(h, &["ft", "status", "--name", "f"]);
    assert!(status.contains("protection: protected by"), "{status}");
    let list = ok(h, &["vm", "list"]);
    assert!(list.contains("FT primary"), "{list}");
    // A snapshot of the protected VM, taken on the primary: it changes
    // nothing the guest sees (the disks move to new layers of the same
    // contents), so the backup's replica stays exact and protection holds.
    g.run("echo 7 >/tmp/c");
    ok(h, &["snapshot", "create", "f", "protected"]);
    let show = ok(h, &["snapshot", "show", "f", "protected"]);
    assert!(show.contains("running"), "{show}");
    assert_eq!(g.run("echo still-$((6*7))"), "still-42");
    let status = ok(h, &["ft", "status", "--name", "f"]);
    assert!(status.contains("protection: protected by"), "{status}");
    poweroff(g);
    drop(backup);
    ok(h, &["vm", "set", "f", "--no-ft"]);
    let show = ok(h, &["vm", "show", "f"]);
    assert!(show.contains("ft:          off"), "{show}");
    misused(h, &["vm", "set", "f"]);
}
