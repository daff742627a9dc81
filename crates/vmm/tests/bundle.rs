//! Bundles on disk: create, snapshot trees, revert, delete with merges,
//! clones, bad input, leftovers of interrupted commands. The disks are
//! written through `disk::open` as a guest's virtio-blk would, and every
//! layer file is checked with the real `qemu-img check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use vmm::{Boot, CloneFrom, CreateSpec, DiskSource, Home, Vm, VmmError};

const MIB: u64 = 1 << 20;

/// One test at a time: a `qemu-img` another test thread forks holds
/// copies of this process's descriptors (and so their `flock`s) until it
/// execs, which makes a concurrent reopen of an image see it `Locked`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Store {
    _turn: std::sync::MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    home: Home,
    boot: Boot,
}

fn store() -> Store {
    let turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for f in ["kernel", "initrd", "firmware"] {
        std::fs::write(images.join(f), f).unwrap();
    }
    let boot = Boot {
        kernel: images.join("kernel"),
        initrd: images.join("initrd"),
        firmware: images.join("firmware"),
        pulled: false,
    };
    Store {
        _turn: turn,
        home: Home::at(dir.path().join("home")),
        _dir: dir,
        boot,
    }
}

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_: &str, _: u64, _: u64| {}
}

impl Store {
    fn spec(&self, name: &str, disks: Vec<DiskSource>, nics: usize) -> CreateSpec {
        CreateSpec {
            name: name.into(),
            cpus: 1,
            memory: 256 * MIB,
            append: "console=ttyS0".into(),
            instructions_per_tick: 64,
            boot: self.boot.clone(),
            disks,
            nics: (0..nics)
                .map(|_| ("socket=/tmp/seg".into(), None))
                .collect(),
            ft: None,
        }
    }

    fn create(&self, name: &str) {
        let spec = self.spec(name, vec![DiskSource::Empty(64 * MIB)], 1);
        self.home.create(&spec, &mut no_progress()).unwrap();
    }
}

/// What the VM's disk 0 holds at `offset` (as the guest would read it).
fn read(vm: &Vm, offset: u64, len: usize) -> Vec<u8> {
    let (path, options) = vm.disks().unwrap().remove(0);
    let mut d = disk::open(&path, &options).unwrap();
    let mut buf = vec![0; len];
    d.read_at(offset, &mut buf).unwrap();
    buf
}

/// Write as the guest would (and flush, as its shutdown does).
fn write(vm: &Vm, offset: u64, data: &[u8]) {
    let (path, options) = vm.disks().unwrap().remove(0);
    let mut d = disk::open(&path, &options).unwrap();
    d.write_at(offset, data).unwrap();
    d.flush().unwrap();
}

fn qemu_img_check_all(home: &Home) {
    for entry in walk(&home.vms_dir()) {
        if entry.extension().is_some_and(|e| e == "qcow2") {
            let out = Command::new("qemu-img")
                .args(["check", "-q"])
                .arg(&entry)
                .output()
                .expect("qemu-img is installed (.ci/run installs qemu-utils)");
            assert!(
                out.status.success(),
                "qemu-img check {}: {}",
                entry.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn layer_count(home: &Home, name: &str) -> usize {
    std::fs::read_dir(home.bundle_dir(name).join("disks"))
        .unwrap()
        .count()
}

#[test]
fn create_list_show_rename_delete() {
    let s = store();
    s.create("web");
    let (vms, notes) = s.home.list().unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].name, "web");
    assert_eq!(vms[0].state, vmm::RunState::Off);
    let vm = s.home.open("web").unwrap();
    assert_eq!(vm.config().disks[0].size, 64 * MIB);
    assert_eq!(vm.config().nics.len(), 1);
    let mode = std::fs::metadata(vm.dir()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    // A second command on the same VM waits its turn: refused while held.
    assert!(matches!(s.home.try_open("web"), Err(VmmError::Busy { .. })));
    drop(vm);

    // Duplicate and bad names: one-line errors, nothing changed.
    let dup = s.spec("web", vec![DiskSource::Empty(MIB)], 0);
    let err = s.home.create(&dup, &mut no_progress()).unwrap_err();
    assert!(matches!(err, VmmError::VmExists { .. }), "{err}");
    let long = "a".repeat(200);
    for bad in ["", "a/b", "..", "../x", long.as_str(), ".x"] {
        let spec = s.spec(bad, vec![DiskSource::Empty(MIB)], 0);
        let err = s.home.create(&spec, &mut no_progress()).unwrap_err();
        assert!(matches!(err, VmmError::BadName { .. }), "{bad}: {err}");
        assert!(!err.to_string().contains('\n'));
    }
    assert!(matches!(
        s.home.open("nope"),
        Err(VmmError::NoSuchVm { .. })
    ));
    assert_eq!(s.home.list().unwrap().0.len(), 1);

    s.home.rename("web", "www").unwrap();
    let vm = s.home.open("www").unwrap();
    assert_eq!(vm.config().name, "www");
    assert!(vm.notes().is_empty());
    drop(vm);
    s.create("db");
    assert!(matches!(
        s.home.rename("www", "db"),
        Err(VmmError::VmExists { .. })
    ));
    s.home.delete("www", false).unwrap();
    let names: Vec<_> = s
        .home
        .list()
        .unwrap()
        .0
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["db"]);
    qemu_img_check_all(&s.home);
}

#[test]
fn bad_bundle_files_are_refused_plainly() {
    let s = store();
    s.create("vm");
    let toml = s.home.bundle_dir("vm").join("vm.toml");
    let good = std::fs::read_to_string(&toml).unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("garbage", "this is [not toml".into()),
        ("newer", good.replace("format = 1", "format = 7")),
        (
            "traversal",
            good.replace("d0-1.qcow2", "../../../etc/passwd"),
        ),
        ("cpus", good.replace("cpus = 1", "cpus = 99")),
        ("unknown field", format!("{good}\nsurprise = true\n")),
        ("bad nic", good.replace("socket=/tmp/seg", "vde=/tmp/seg")),
        (
            "mac in net",
            good.replace("socket=/tmp/seg", "socket=/tmp/seg,mac=52:54:00:00:00:01"),
        ),
    ];
    for (what, text) in cases {
        std::fs::write(&toml, &text).unwrap();
        let err = s.home.open("vm").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{what}: {msg}");
        match what {
            "newer" => assert!(
                matches!(err, VmmError::NewerFormat { found: 7, .. }),
                "{msg}"
            ),
            _ => assert!(matches!(err, VmmError::BadConfig { .. }), "{what}: {msg}"),
        }
        assert_eq!(std::fs::read_to_string(&toml).unwrap(), text, "{what}");
    }
    std::fs::write(&toml, &good).unwrap();
    s.home.open("vm").unwrap();
    // A bundle of an earlier version holds `socket:DIR`: read as today's form.
    assert!(good.contains("net = \"socket=/tmp/seg\""), "{good}");
    std::fs::write(&toml, good.replace("socket=/tmp/seg", "socket:/tmp/seg")).unwrap();
    let vm = s.home.open("vm").unwrap();
    assert_eq!(vm.config().nics[0].net, "socket=/tmp/seg");
}

#[test]
fn snapshot_tree_revert_and_delete_merge() {
    let s = store();
    s.create("vm");
    let mut vm = s.home.open("vm").unwrap();
    let at = 5 * MIB + 17;
    write(&vm, at, b"one");
    write(&vm, 40 * MIB, b"base data that nobody overwrites");
    vm.snapshot_create("s1", "first").unwrap();
    write(&vm, at, b"two");
    vm.snapshot_create("s2", "").unwrap();
    write(&vm, at, b"now");
    assert!(matches!(
        vm.snapshot_create("s1", ""),
        Err(VmmError::SnapshotExists { .. })
    ));

    vm.snapshot_revert("s1").unwrap();
    assert_eq!(read(&vm, at, 3), b"one");
    vm.snapshot_revert("s2").unwrap();
    assert_eq!(read(&vm, at, 3), b"two");

    // A branch: back to s1, change, s3.
    vm.snapshot_revert("s1").unwrap();
    write(&vm, at, b"br3");
    write(&vm, 50 * MIB, &[0xab; 70_000]);
    vm.snapshot_create("s3", "branch").unwrap();
    write(&vm, at, b"cur");
    let tree = vm.tree_lines().join("\n");
    for name in ["s1", "s2", "s3", "you are here"] {
        assert!(tree.contains(name), "{tree}");
    }
    // s2 and s3 both hang under s1.
    let s1_line = tree.lines().position(|l| l.contains("s1")).unwrap();
    let indent = |l: &str| {
        l.find(|c: char| c.is_ascii_alphanumeric() || c == '*')
            .unwrap()
    };
    let lines: Vec<&str> = tree.lines().collect();
    let child_indent = indent(lines[s1_line]) + 3;
    for name in ["s2", "s3"] {
        let l = lines.iter().find(|l| l.contains(name)).unwrap();
        assert_eq!(indent(l), child_indent, "{tree}");
    }

    // Delete the inner node s1: its layer merges into s2, s3 and nothing
    // else changes.
    vm.snapshot_delete("s1", false, &mut no_progress()).unwrap();
    assert!(vm.config().snapshot("s1").is_none());
    assert_eq!(read(&vm, at, 3), b"cur");
    assert_eq!(read(&vm, 50 * MIB, 70_000), vec![0xab; 70_000]);
    assert_eq!(read(&vm, 40 * MIB, 32), b"base data that nobody overwrites");
    vm.snapshot_revert("s2").unwrap();
    assert_eq!(read(&vm, at, 3), b"two");
    assert_eq!(read(&vm, 40 * MIB, 32), b"base data that nobody overwrites");
    vm.snapshot_revert("s3").unwrap();
    assert_eq!(read(&vm, at, 3), b"br3");
    assert_eq!(read(&vm, 40 * MIB, 32), b"base data that nobody overwrites");
    assert_eq!(read(&vm, 50 * MIB, 70_000), vec![0xab; 70_000]);

    // Delete the current state's parent: merged into the present layer.
    write(&vm, at, b"top");
    vm.snapshot_delete("s3", false, &mut no_progress()).unwrap();
    assert_eq!(read(&vm, at, 3), b"top");
    assert_eq!(read(&vm, 50 * MIB, 70_000), vec![0xab; 70_000]);
    assert_eq!(vm.config().current.parent, None);
    // s2 remains, now a root with s1's data merged in.
    vm.snapshot_revert("s2").unwrap();
    assert_eq!(read(&vm, at, 3), b"two");
    assert_eq!(read(&vm, 40 * MIB, 32), b"base data that nobody overwrites");
    assert!(matches!(
        vm.snapshot_revert("s1"),
        Err(VmmError::NoSuchSnapshot { .. })
    ));
    // Only referenced layer files remain: s2's and the present one.
    drop(vm);
    assert_eq!(layer_count(&s.home, "vm"), 2);
    qemu_img_check_all(&s.home);
}

#[test]
fn delete_with_children_keeps_the_present() {
    let s = store();
    s.create("vm");
    let mut vm = s.home.open("vm").unwrap();
    write(&vm, 0, b"a");
    vm.snapshot_create("a", "").unwrap();
    write(&vm, 0, b"b");
    vm.snapshot_create("b", "").unwrap();
    write(&vm, 0, b"c");
    vm.snapshot_create("c", "").unwrap();
    write(&vm, 0, b"x");
    vm.snapshot_revert("a").unwrap();
    write(&vm, 1, b"side");
    vm.snapshot_create("side", "").unwrap();
    vm.snapshot_revert("c").unwrap();
    write(&vm, 0, b"z");
    vm.snapshot_delete("a", true, &mut no_progress()).unwrap();
    assert!(vm.config().snapshots.is_empty());
    assert_eq!(read(&vm, 0, 1), b"z");
    drop(vm);
    assert_eq!(layer_count(&s.home, "vm"), 1);
    qemu_img_check_all(&s.home);
}

#[test]
fn full_and_linked_clones() {
    let s = store();
    s.create("src");
    let mut vm = s.home.open("src").unwrap();
    write(&vm, 3 * MIB, b"golden");
    vm.snapshot_create("gold", "").unwrap();
    write(&vm, 3 * MIB, b"later!");
    drop(vm);

    let full = s
        .home
        .clone_vm("src", "full", &CloneFrom::default(), &mut no_progress())
        .unwrap();
    let linked = s
        .home
        .clone_vm(
            "src",
            "linked",
            &CloneFrom {
                linked: true,
                snapshot: Some("gold".into()),
            },
            &mut no_progress(),
        )
        .unwrap();
    let src = s.home.open("src").unwrap().config().clone();
    assert_ne!(full.uuid, src.uuid);
    assert_ne!(linked.uuid, src.uuid);
    assert_ne!(full.nics[0].mac, src.nics[0].mac);
    assert_ne!(linked.nics[0].mac, full.nics[0].mac);
    assert_ne!(linked.vmgenid, src.vmgenid);
    assert!(full.snapshots.is_empty());

    let f = s.home.open("full").unwrap();
    assert_eq!(read(&f, 3 * MIB, 6), b"later!");
    let info = disk::info(&f.disks().unwrap()[0].0).unwrap();
    assert!(info.backing_chain.is_empty(), "a full clone stands alone");
    let l = s.home.open("linked").unwrap();
    assert_eq!(read(&l, 3 * MIB, 6), b"golden");
    write(&l, 3 * MIB, b"mine!!");
    assert_eq!(read(&l, 3 * MIB, 6), b"mine!!");
    drop((f, l));
    let vm = s.home.open("src").unwrap();
    assert_eq!(read(&vm, 3 * MIB, 6), b"later!");
    drop(vm);

    // The frozen layer a linked clone uses cannot go; nor can its VM.
    let mut vm = s.home.open("src").unwrap();
    let err = vm
        .snapshot_delete("gold", false, &mut no_progress())
        .unwrap_err();
    assert!(
        matches!(err, VmmError::SnapshotUsedByClones { .. }),
        "{err}"
    );
    drop(vm);
    assert!(matches!(
        s.home.delete("src", false),
        Err(VmmError::HasLinkedClones { .. })
    ));
    assert!(matches!(
        s.home.rename("src", "other"),
        Err(VmmError::HasLinkedClones { .. })
    ));
    // A linked clone without a snapshot takes one of the source.
    s.home
        .clone_vm(
            "src",
            "linked2",
            &CloneFrom {
                linked: true,
                snapshot: None,
            },
            &mut no_progress(),
        )
        .unwrap();
    let vm = s.home.open("src").unwrap();
    assert!(vm.config().snapshot("clone-linked2").is_some());
    drop(vm);
    let l2 = s.home.open("linked2").unwrap();
    assert_eq!(read(&l2, 3 * MIB, 6), b"later!");
    drop(l2);

    s.home.delete("linked", false).unwrap();
    s.home.delete("linked2", false).unwrap();
    let mut vm = s.home.open("src").unwrap();
    vm.snapshot_delete("gold", false, &mut no_progress())
        .unwrap();
    drop(vm);
    s.home.delete("src", false).unwrap();
    // The full clone never depended on it.
    let f = s.home.open("full").unwrap();
    assert_eq!(read(&f, 3 * MIB, 6), b"later!");
    drop(f);
    qemu_img_check_all(&s.home);
}

#[test]
fn import_copies_an_image() {
    let s = store();
    let raw = s.home.root().parent().unwrap().join("import.raw");
    let mut bytes = vec![0u8; 4 * MIB as usize];
    bytes[MIB as usize..MIB as usize + 5].copy_from_slice(b"hello");
    std::fs::write(&raw, &bytes).unwrap();
    let spec = s.spec(
        "imp",
        vec![DiskSource::Import {
            path: raw.clone(),
            format: disk::Format::Raw,
            backing: disk::BackingPolicy::Contained,
        }],
        0,
    );
    s.home.create(&spec, &mut no_progress()).unwrap();
    let vm = s.home.open("imp").unwrap();
    assert_eq!(vm.config().disks[0].size, 4 * MIB);
    assert_eq!(read(&vm, MIB, 5), b"hello");
    write(&vm, MIB, b"HELLO");
    drop(vm);
    assert_eq!(
        &std::fs::read(&raw).unwrap()[MIB as usize..MIB as usize + 5],
        b"hello"
    );
    qemu_img_check_all(&s.home);
}

#[test]
fn leftovers_of_interrupted_commands_are_cleaned_and_reported() {
    let s = store();
    s.create("vm");
    let dir = s.home.bundle_dir("vm");
    // A layer a snapshot never committed, a half-built clone, a half-deleted VM.
    disk::create(&dir.join("disks/d0-99.qcow2"), MIB, None).unwrap();
    let half = s.home.vms_dir().join(".new.new-abcdef");
    std::fs::create_dir_all(half.join("disks")).unwrap();
    let gone = s.home.vms_dir().join(".old.old-abcdef");
    std::fs::create_dir_all(&gone).unwrap();
    let (vms, notes) = s.home.list().unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(!half.exists() && !gone.exists());
    let vm = s.home.open("vm").unwrap();
    assert_eq!(vm.notes().len(), 1, "{:?}", vm.notes());
    assert!(vm.notes()[0].contains("d0-99.qcow2"));
    assert!(!dir.join("disks/d0-99.qcow2").exists());
    drop(vm);
    // An interrupted rename: directory renamed, name inside not yet.
    std::fs::rename(&dir, s.home.bundle_dir("vm2")).unwrap();
    let vm = s.home.open("vm2").unwrap();
    assert_eq!(vm.config().name, "vm2");
    assert!(vm.notes()[0].contains("rename"), "{:?}", vm.notes());
}

#[test]
fn a_chain_leaving_the_store_is_refused() {
    let s = store();
    s.create("vm");
    let outside = s.home.root().parent().unwrap().join("host-secret.qcow2");
    disk::create(&outside, 64 * MIB, None).unwrap();
    let vm = s.home.open("vm").unwrap();
    let top = vm.disks().unwrap().remove(0).0;
    drop(vm);
    // Replace the top layer with an overlay of a file outside the store.
    std::fs::remove_file(&top).unwrap();
    disk::create(&top, 64 * MIB, Some((&outside, disk::Format::Qcow2))).unwrap();
    let vm = s.home.open("vm").unwrap();
    let err = vm.disks().unwrap_err();
    assert!(matches!(err, VmmError::ChainOutside { .. }), "{err}");
}
