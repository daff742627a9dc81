//! Power-loss injection (issue 12): each bundle operation is killed
//! (SIGKILL, `LOCKSTEP_CRASH_AT=N`) at every one of its crash points —
//! after each write, fsync, rename and removal that matters — on a fresh
//! copy of the same store. After each kill the next command repairs (or
//! reports) what was left, the VM's disks hold either the old or the new
//! contents and every layer passes `qemu-img check`; the operation then
//! completes when run again. Samples of the crashed stores boot to a shell.
//!
//! Disk contents are written and read with QEMU's own tools (`qemu-io`,
//! `qemu-img convert`), never through lockstep.

mod common;

use common::{Guest, PROMPT};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: usize = 1 << 20;

fn lockstep(home: &Path, args: &[&str], crash_at: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lockstep"));
    c.env("LOCKSTEP_HOME", home).args(args);
    if let Some(n) = crash_at {
        c.env("LOCKSTEP_CRASH_AT", n.to_string());
    }
    c.output().expect("run lockstep")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = lockstep(home, args, None);
    assert!(
        out.status.success(),
        "lockstep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install qemu-utils)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The VM's present top layer of disk 0.
fn top(home: &Path, vm: &str) -> PathBuf {
    let v: serde_json::Value =
        serde_json::from_str(&ok(home, &["vm", "show", vm, "--json"])).unwrap();
    let layer = v["config"]["current"]["layers"][0].as_str().unwrap();
    home.join("vms").join(vm).join("disks").join(layer)
}

/// A snapshot's layer of disk 0.
fn snap_layer(home: &Path, vm: &str, snap: &str) -> PathBuf {
    let v: serde_json::Value =
        serde_json::from_str(&ok(home, &["snapshot", "show", vm, snap, "--json"])).unwrap();
    let layer = v["layers"][0].as_str().unwrap();
    home.join("vms").join(vm).join("disks").join(layer)
}

/// Fill `len` bytes at `offset` of an image with `pattern` (qemu-io).
fn fill(image: &Path, offset: usize, len: usize, pattern: u8) {
    sh(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            &format!("write -P {pattern} {offset} {len}"),
            image.to_str().unwrap(),
        ],
    );
}

/// What an image's chain reads as, at a few places (qemu-img convert).
fn contents(image: &Path) -> Vec<u8> {
    let raw = image.with_extension("raw-check");
    sh(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            image.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    [0, MIB, 5 * MIB, 9 * MIB]
        .iter()
        .map(|&at| bytes[at])
        .collect()
}

fn check_all(home: &Path) {
    let mut stack = vec![home.join("vms")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "qcow2") {
                sh("qemu-img", &["check", "-q", p.to_str().unwrap()]);
            }
        }
    }
}

fn copy_store(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    sh("cp", &["-a", from.to_str().unwrap(), to.to_str().unwrap()]);
}

/// The store every operation starts from: VM `v` with snapshots s1 → s2
/// and data in every layer (s1: 1 at 0 and 1 MiB; s2: 2 at 1 MiB; the
/// present: 3 at 5 MiB).
fn pristine(root: &Path) -> PathBuf {
    let home = root.join("pristine");
    ok(
        &home,
        &[
            "vm",
            "create",
            "v",
            "--memory",
            "256M",
            "--disk-size",
            "16M",
            "--append",
            "console=ttyS0 quiet",
        ],
    );
    fill(&top(&home, "v"), 0, 2 * MIB, 1);
    ok(&home, &["snapshot", "create", "v", "s1"]);
    fill(&top(&home, "v"), MIB, MIB, 2);
    ok(&home, &["snapshot", "create", "v", "s2"]);
    fill(&top(&home, "v"), 5 * MIB, MIB, 3);
    home
}

struct Op {
    args: &'static [&'static str],
    /// The VM whose present disk the operation decides.
    vm: &'static str,
    /// Its contents before (None: it does not exist yet) and after.
    before: Option<[u8; 4]>,
    after: [u8; 4],
}

fn crash_everywhere(root: &Path, pristine: &Path, op: &Op, boots: &mut usize) {
    // Count the operation's crash points.
    let work = root.join("work");
    copy_store(pristine, &work);
    let out = lockstep(&work, op.args, Some(usize::MAX));
    assert!(
        out.status.success(),
        "{:?}: {}",
        op.args,
        String::from_utf8_lossy(&out.stderr)
    );
    let points = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("crash point"))
        .count();
    assert!(points >= 4, "{:?}: only {points} crash points", op.args);
    eprintln!("{:?}: {points} crash points", op.args);

    for n in 1..=points {
        copy_store(pristine, &work);
        let out = lockstep(&work, op.args, Some(n));
        assert!(
            !out.status.success(),
            "{:?} at point {n} was not killed",
            op.args
        );
        // The next command repairs what it left.
        let list = lockstep(&work, &["vm", "list"], None);
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let show = lockstep(&work, &["vm", "show", "v"], None);
        assert!(
            show.status.success(),
            "{}",
            String::from_utf8_lossy(&show.stderr)
        );
        check_all(&work);
        let exists = work.join("vms").join(op.vm).join("vm.toml").exists();
        let now: Option<[u8; 4]> = exists.then(|| contents(&top(&work, op.vm)).try_into().unwrap());
        assert!(
            now == op.before || now == Some(op.after),
            "{:?} killed at point {n}: {} holds {now:?}, neither {:?} nor {:?}",
            op.args,
            op.vm,
            op.before,
            op.after
        );
        // The snapshots the operation does not remove read as they did.
        if ok(&work, &["snapshot", "list", "v"]).contains("s2") {
            assert_eq!(contents(&snap_layer(&work, "v", "s2")), [1, 2, 0, 0]);
        }
        if n == points || n == points / 2 {
            let mut g = Guest::launch_env(
                &[],
                &["vm", "start", "v", "--attach"],
                &[("LOCKSTEP_HOME", &work)],
            );
            g.expect(PROMPT);
            g.send("poweroff -f");
            assert!(g.child.wait().unwrap().success());
            *boots += 1;
        }
        // Run again, it completes (or finds it done).
        let again = lockstep(&work, op.args, None);
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(
            again.status.success() || err.contains("already") || err.contains("has no snapshot"),
            "{:?} after a crash at {n}: {err}",
            op.args
        );
        assert_eq!(
            contents(&top(&work, op.vm)),
            op.after,
            "{:?} at {n}",
            op.args
        );
        check_all(&work);
    }
}

#[test]
fn every_crash_point_of_every_operation_leaves_a_working_vm() {
    let root = tempfile::tempdir().unwrap();
    let pristine = pristine(root.path());
    let present = [1, 2, 3, 0];
    let ops = [
        Op {
            args: &["snapshot", "create", "v", "s3"],
            vm: "v",
            before: Some(present),
            after: present,
        },
        Op {
            args: &["snapshot", "revert", "v", "s1"],
            vm: "v",
            before: Some(present),
            after: [1, 1, 0, 0],
        },
        Op {
            args: &["snapshot", "delete", "v", "s1"],
            vm: "v",
            before: Some(present),
            after: present,
        },
        Op {
            args: &["snapshot", "delete", "v", "s2"],
            vm: "v",
            before: Some(present),
            after: present,
        },
        Op {
            args: &["vm", "clone", "v", "full"],
            vm: "full",
            before: None,
            after: present,
        },
        Op {
            args: &[
                "vm",
                "clone",
                "v",
                "linked",
                "--linked",
                "--from-snapshot",
                "s1",
            ],
            vm: "linked",
            before: None,
            after: [1, 1, 0, 0],
        },
    ];
    let mut boots = 0;
    for op in &ops {
        crash_everywhere(root.path(), &pristine, op, &mut boots);
    }
    assert!(boots >= ops.len());
}

/// `vm start v --attach` in `home`, killed at crash point `crash` if given.
fn start_attached(home: &Path, crash: Option<usize>) -> Guest {
    let n = crash.map(|n| n.to_string()).unwrap_or_default();
    let mut env: Vec<(&str, &Path)> = vec![("LOCKSTEP_HOME", home)];
    if crash.is_some() {
        env.push(("LOCKSTEP_CRASH_AT", Path::new(&n)));
    }
    Guest::launch_env(&[], &["vm", "start", "v", "--attach"], &env)
}

/// Suspend, killed at each crash point of the VM's process (its start
/// publishing its pid, then recording its saved state): the VM afterwards
/// either resumes (its RAM-only counter intact) or boots afresh, and its
/// disks pass `qemu-img check`.
#[test]
fn every_crash_point_of_suspend_leaves_a_vm_that_resumes_or_boots() {
    let root = tempfile::tempdir().unwrap();
    let pristine = pristine(root.path());
    let work = root.path().join("work");
    // Count the points of a whole start-run-suspend, and which of them
    // come before the guest runs (publishing the pid).
    copy_store(&pristine, &work);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .env("LOCKSTEP_HOME", &work)
        .env("LOCKSTEP_CRASH_AT", usize::MAX.to_string())
        .args(["vm", "start", "v", "--attach"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !ok(&work, &["vm", "list"]).contains("running") {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ok(&work, &["vm", "suspend", "v"]);
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let suspended_at = lines
        .iter()
        .position(|l| l.contains("suspended at icount"))
        .expect("the counting run suspended");
    let at_start = lines[..suspended_at]
        .iter()
        .filter(|l| l.contains("crash point"))
        .count();
    let points = lines.iter().filter(|l| l.contains("crash point")).count();
    assert!(
        points >= at_start + 4,
        "{points} crash points, {at_start} at start"
    );
    eprintln!("suspend: {points} crash points ({at_start} at start)");

    for n in 1..=points {
        copy_store(&pristine, &work);
        let mut g = start_attached(&work, Some(n));
        if n > at_start {
            g.expect(PROMPT);
            g.run("echo 4242 >/tmp/c");
            let _ = lockstep(&work, &["vm", "suspend", "v"], None);
        }
        let status = g.child.wait().unwrap();
        assert!(!status.success(), "point {n}: not killed");
        drop(g);
        let list = ok(&work, &["vm", "list"]);
        check_all(&work);
        // Start again: a recorded state resumes with the counter; else a
        // fresh boot.
        let mut g = start_attached(&work, None);
        g.send("");
        g.expect(PROMPT);
        let c = g.run("cat /tmp/c 2>/dev/null || echo none");
        if list.contains("suspended") {
            assert_eq!(c, "4242", "point {n}: resumed without its RAM");
        } else {
            assert_eq!(c, "none", "point {n}");
        }
        g.send("poweroff -f");
        assert!(g.child.wait().unwrap().success(), "point {n}");
        check_all(&work);
    }
}

/// A snapshot of a running VM killed at each crash point of its process
/// (new layers made, `vm.toml` switched with the guest paused, the state
/// file written after): the next command repairs; every layer passes
/// `qemu-img check`; the VM boots; and a snapshot that survived either
/// comes back at its instruction (its RAM-only counter) or, if its state
/// was never completed, is kept as a powered-off snapshot of its disks.
#[test]
fn every_crash_point_of_a_running_snapshot_leaves_a_working_vm() {
    let root = tempfile::tempdir().unwrap();
    let pristine = pristine(root.path());
    let work = root.path().join("work");
    let attach = |home: &Path, crash: Option<usize>| {
        let mut g = start_attached(home, crash);
        g.expect(PROMPT);
        g
    };
    // Count the VM process's points: at start, then the snapshot's.
    copy_store(&pristine, &work);
    let mut g = attach(&work, Some(usize::MAX));
    g.run("echo 4242 >/tmp/c");
    ok(&work, &["snapshot", "create", "v", "live"]);
    g.send("poweroff -f");
    assert!(g.child.wait().unwrap().success());
    let all = g.stderr_to_end();
    let lines: Vec<&String> = all.iter().filter(|l| l.contains("crash point")).collect();
    // The start's points (publishing the pid) come before the snapshot's
    // first: its new layer being written.
    let at_start = lines
        .iter()
        .position(|l| l.contains("image written"))
        .unwrap_or(lines.len());
    let points = lines.len();
    assert!(
        points >= at_start + 5,
        "{points} points, {at_start} at start: {all:?}"
    );
    eprintln!("running snapshot: {points} crash points ({at_start} at start)");

    for n in at_start + 1..=points {
        copy_store(&pristine, &work);
        let mut g = attach(&work, Some(n));
        g.run("echo 4242 >/tmp/c");
        let _ = lockstep(&work, &["snapshot", "create", "v", "live"], None);
        let status = g.child.wait().unwrap();
        assert!(!status.success(), "point {n}: not killed");
        drop(g);
        let list = ok(&work, &["snapshot", "list", "v", "--json"]);
        check_all(&work);
        let snaps: serde_json::Value = serde_json::from_str(&list).unwrap();
        let live = snaps["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "live")
            .cloned();
        // The VM boots from its disks.
        let mut g = attach(&work, None);
        assert_eq!(g.run("echo up-$((6*7))"), "up-42", "point {n}");
        g.send("poweroff -f");
        assert!(g.child.wait().unwrap().success(), "point {n}");
        match live.as_ref().map(|s| s["power"].as_str().unwrap_or("")) {
            Some("running") => {
                ok(&work, &["snapshot", "revert", "v", "live"]);
                let mut c =
                    Guest::launch_env(&[], &["vm", "console", "v"], &[("LOCKSTEP_HOME", &work)]);
                c.send("");
                c.expect(PROMPT);
                assert_eq!(
                    c.run("cat /tmp/c"),
                    "4242",
                    "point {n}: reverted without its RAM"
                );
                drop(c);
                ok(&work, &["vm", "kill", "v"]);
            }
            Some("powered off") | Some("off") | None => {}
            Some(other) => panic!("point {n}: snapshot power {other}"),
        }
        check_all(&work);
    }
}
