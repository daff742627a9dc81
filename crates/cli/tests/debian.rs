//! `lockstep image build debian`: a real Debian trixie root file system, built from the
//! archive (network: `--mirror`, `LOCKSTEP_MIRROR` or the host's apt sources), booted under
//! lockstep on 1 and 2 harts through systemd to `login:`, logged into on the console, and
//! powered off by `systemctl poweroff`; the disk then passes `qemu-img check` and
//! `e2fsck -fn`. Also: the host part is reproducible, and a missing package, a mirror
//! serving a `.deb` whose hash differs and a full disk each fail clearly without leaving an
//! image in the cache. Runs as root (the host part keeps packages' file owners).

mod common;

use common::Guest;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

/// The tests share the default cache's build directory: one at a time.
static CACHE: Mutex<()> = Mutex::new(());

fn lockstep(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn build_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["image", "build", "debian", "--json"];
    all.extend_from_slice(args);
    let out = lockstep(&all);
    assert!(out.status.success(), "image build {args:?} failed");
    serde_json::from_slice(&out.stdout).expect("image build --json")
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// Types `cmd` at the shell and returns its output, between markers that its echo (which
/// may come twice: the tty's and readline's) cannot match (`@@BEG''IN@@` prints
/// `@@BEGIN@@`).
fn shell(g: &mut Guest, cmd: &str) -> String {
    g.send(&format!("echo @@BEG''IN@@; {cmd}; echo @@EN''D@@"));
    g.expect("@@BEGIN@@");
    let out = g.expect("@@END@@");
    out.replace("\u{1b}[?2004l", "")
        .replace("\u{1b}[?2004h", "")
        .replace("\r\n", "\n")
        .trim()
        .to_string()
}

fn boot_to_login(image: &Path, cpus: u32) {
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("vm.qcow2");
    let base = image.to_str().unwrap();
    let overlay_s = overlay.to_str().unwrap();
    let created = lockstep(&[
        "disk",
        "create",
        overlay_s,
        "--size",
        "4G",
        "--backing",
        base,
        "--backing-format",
        "qcow2",
    ]);
    assert!(created.status.success());
    let started = Instant::now();
    let disk = format!("path={overlay_s},format=qcow2,backing=any");
    let cpus_s = cpus.to_string();
    let mut g = Guest::launch(
        &[],
        &[
            "run",
            "--memory",
            "1G",
            "--cpus",
            &cpus_s,
            "--console",
            "stdio",
            "--disk",
            &disk,
            "--append",
            "console=ttyS0 quiet root=/dev/vda rw",
        ],
    );
    g.expect("login:");
    let to_login = started.elapsed().as_secs_f64();
    g.send("root");
    g.expect("# ");
    eprintln!("debian: boot to login on {cpus} hart(s) under lockstep: {to_login:.1} s");
    let state = shell(&mut g, "systemctl is-system-running --wait");
    let failed = shell(&mut g, "systemctl --failed --no-legend --plain");
    assert_eq!(state, "running", "failed units: {failed}");
    let apt = shell(&mut g, "apt-get --version | head -n 1");
    assert!(apt.starts_with("apt "), "{apt}");
    let count: usize = shell(&mut g, "dpkg -l | grep -c '^ii'").parse().unwrap();
    assert!(count > 100, "{count} packages installed");
    let harts = shell(&mut g, "nproc");
    assert_eq!(harts, cpus_s);
    g.send("systemctl poweroff");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(status.success(), "after systemctl poweroff: {status}");
    eprintln!(
        "debian: login, commands and poweroff on {cpus} hart(s): {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    tool("qemu-img", &["check", overlay_s]);
    let raw = dir.path().join("flat.raw");
    tool(
        "qemu-img",
        &["convert", "-O", "raw", overlay_s, raw.to_str().unwrap()],
    );
    tool("/sbin/e2fsck", &["-fn", raw.to_str().unwrap()]);
}

#[test]
fn builds_debian_and_boots_it_to_login_on_one_and_two_harts() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let image = build_json(&[]);
    eprintln!(
        "debian: image build: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let path = PathBuf::from(image["path"].as_str().unwrap());
    // Cached: the second build verifies and reuses it.
    let again = build_json(&[]);
    assert_eq!(again["sha256"], image["sha256"]);
    assert_eq!(again["path"], image["path"]);
    let list = lockstep(&["image", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("debian-minbase"));
    for cpus in [1, 2] {
        boot_to_login(&path, cpus);
    }
}

#[test]
fn host_part_is_reproducible() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let one = build_json(&["--host-only"]);
    let two = build_json(&["--host-only"]);
    assert_eq!(one["host_sha256"], two["host_sha256"]);
    assert!(one["packages"].as_array().unwrap().len() > 100);
}

#[test]
fn a_missing_package_is_named_and_nothing_is_cached() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let out = lockstep(&[
        "image",
        "build",
        "debian",
        "--packages",
        "no-such-package-lockstep",
        "--no-progress",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-package-lockstep"), "{err}");
    let list = lockstep(&["image", "list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("debian-minbase-"));
}

/// A cache dir holding the pulled boot files, the index and the rootfs packages of the
/// default cache (so only what a test wants is fetched). The caller holds `CACHE`.
fn seeded_cache(dir: &Path, with_debs: bool) -> PathBuf {
    let from = default_cache().join("debian/trixie/riscv64");
    let to = dir.join("debian/trixie/riscv64");
    std::fs::create_dir_all(to.join("rootfs")).unwrap();
    tool(
        "cp",
        &[
            "-a",
            from.join("image").to_str().unwrap(),
            to.to_str().unwrap(),
        ],
    );
    for f in ["manifest.json", "Packages.xz"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    // The kernel package: its modules go on the disk.
    let kernel_pool = from.join("pool");
    tool(
        "cp",
        &["-a", kernel_pool.to_str().unwrap(), to.to_str().unwrap()],
    );
    if with_debs {
        let pool = from.join("rootfs/pool");
        if !pool.is_dir() {
            // A fresh cache: fetch the packages (the host part only) so
            // this test does not depend on another having run first.
            let out = lockstep(&["image", "build", "debian", "--host-only", "--no-progress"]);
            assert!(out.status.success(), "image build --host-only failed");
        }
        tool(
            "cp",
            &[
                "-a",
                pool.to_str().unwrap(),
                to.join("rootfs").to_str().unwrap(),
            ],
        );
    }
    to.join("rootfs")
}

fn default_cache() -> PathBuf {
    let out = lockstep(&["image", "pull", "--json", "--no-progress"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernel = PathBuf::from(doc["kernel"].as_str().unwrap());
    // <cache>/debian/<suite>/riscv64/image/<kver>/Image
    kernel.ancestors().nth(6).unwrap().to_path_buf()
}

fn assert_nothing_cached(rootfs: &Path) {
    let names: Vec<String> = std::fs::read_dir(rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".qcow2"))
        .collect();
    assert!(names.is_empty(), "left in the cache: {names:?}");
}

#[test]
fn a_deb_whose_hash_differs_is_refused() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rootfs = seeded_cache(dir.path(), true);
    // adduser is fetched first (packages go in name order): the mirror serves it altered.
    let victim = std::fs::read_dir(rootfs.join("pool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("adduser_")
        })
        .unwrap();
    let victim_name = victim.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&victim).unwrap();
    let mirror = guest_image::default_mirror().expect("a Debian mirror");
    let fake = tampering_mirror(mirror, victim_name.clone());
    let out = lockstep(&[
        "image",
        "build",
        "debian",
        "--no-progress",
        "--mirror",
        &fake,
        "--cache-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") || err.contains("size mismatch"),
        "{err}"
    );
    assert!(err.contains(&victim_name), "{err}");
    assert!(!victim.exists(), "the altered .deb was stored");
    assert_nothing_cached(&rootfs);
}

/// An HTTP mirror on loopback: `victim` comes back altered (same size), everything else
/// is fetched from `upstream` with curl.
fn tampering_mirror(upstream: String, victim: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let path = path.trim_start_matches("/debian");
            let got = Command::new("curl")
                .args(["-sf", &format!("{upstream}{path}")])
                .output();
            let mut body = match got {
                Ok(o) if o.status.success() => o.stdout,
                _ => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
            };
            if path.ends_with(&victim) {
                let mid = body.len() / 2;
                body[mid] ^= 0xff;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}/debian")
}

#[test]
fn a_full_disk_fails_clearly_and_caches_nothing() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // A file system too small for the staging tree (~450 MB): a tmpfs of 280 MiB, of
    // which the seeded cache takes ~200.
    tool(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=280m",
            "tmpfs",
            dir.path().to_str().unwrap(),
        ],
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let rootfs = seeded_cache(dir.path(), true);
    let out = lockstep(&[
        "image",
        "build",
        "debian",
        "--no-progress",
        "--cache-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_nothing_cached(&rootfs);
    // The staging tree is gone again: the space is back.
    let work = rootfs.join("work-debian-minbase");
    assert!(!work.join("staging").exists(), "staging tree left behind");
}

#[test]
fn vm_create_with_the_debian_image_boots_to_login_and_survives_a_snapshot_revert() {
    let _cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let home = tempfile::tempdir().unwrap();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0lockstep0test0key0000000000000000000000 t@host";
    let key_file = home.path().join("id.pub");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let created = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args([
            "vm",
            "create",
            "deb1",
            "--image",
            "debian",
            "--memory",
            "1G",
            "--ssh-key",
        ])
        .arg(&key_file)
        .env("LOCKSTEP_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut g = Guest::launch_env(
        &[],
        &["vm", "start", "deb1", "--attach"],
        &[("LOCKSTEP_HOME", home.path())],
    );
    // systemd.hostname= on the kernel command line: the host name is the VM's.
    g.expect("deb1 login:");
    g.send("root");
    g.expect("# ");
    assert_eq!(shell(&mut g, "hostname"), "deb1");
    // The key came as a systemd credential; systemd-tmpfiles wrote it for root.
    assert_eq!(shell(&mut g, "cat /root/.ssh/authorized_keys"), key);
    let state = shell(&mut g, "systemctl is-system-running --wait");
    assert_eq!(state, "running");

    // A snapshot of the running system; what the journal got after it is gone after a
    // revert, what it had before is there, and the system runs on.
    let marks = "journalctl -t lockstep-mark -o cat --no-pager | cat";
    shell(&mut g, "logger -t lockstep-mark one && journalctl --sync");
    let home_s = home.path();
    let vm = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(args)
            .env("LOCKSTEP_HOME", home_s)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "lockstep {args:?}: {err}");
        err
    };
    let said = vm(&["snapshot", "create", "deb1", "s1"]);
    eprintln!("debian: {}", said.trim());
    shell(&mut g, "logger -t lockstep-mark two && journalctl --sync");
    assert_eq!(shell(&mut g, marks), "one\ntwo");
    vm(&["snapshot", "revert", "deb1", "s1"]);
    let _ = g.child.wait();
    let mut c = Guest::launch_env(
        &[],
        &["vm", "console", "deb1"],
        &[("LOCKSTEP_HOME", home.path())],
    );
    c.send("");
    c.expect("# ");
    assert_eq!(shell(&mut c, marks), "one");
    assert_eq!(shell(&mut c, "systemctl is-system-running"), "running");
    shell(&mut c, "logger -t lockstep-mark three && journalctl --sync");
    assert_eq!(shell(&mut c, marks), "one\nthree");
    c.send("systemctl poweroff");
    // The VM's process ends when the guest powers off: `vm list` no longer says running.
    let deadline = Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let list = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["vm", "list"])
            .env("LOCKSTEP_HOME", home_s)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        if !list.contains("running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after systemctl poweroff: {list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
