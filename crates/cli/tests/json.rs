//! Every `--json` output parses back into its `vmm::api` type, carries
//! the schema version, and says what the text output says.

mod common;

use std::path::Path;

use common::ok_in as ok;

fn parse<T: serde::de::DeserializeOwned>(home: &Path, args: &[&str]) -> T {
    let text = ok(home, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("lockstep {args:?}: {e}\n{text}"))
}

#[test]
fn vm_and_snapshot_documents_parse_into_their_types() {
    let home = tempfile::tempdir().expect("temp dir");
    let h = home.path();
    ok(
        h,
        &[
            "vm",
            "create",
            "j",
            "--memory",
            "256M",
            "--disk-size",
            "16M",
            "--cpus",
            "2",
        ],
    );
    ok(
        h,
        &["snapshot", "create", "j", "first", "--description", "one"],
    );
    ok(h, &["snapshot", "create", "j", "second"]);

    let list: vmm::api::VmList = parse(h, &["vm", "list", "--json"]);
    assert_eq!(list.schema, vmm::api::SCHEMA);
    assert_eq!(list.vms.len(), 1);
    let vm = &list.vms[0];
    assert_eq!(
        (vm.name.as_str(), vm.cpus, vm.memory, vm.snapshots),
        ("j", 2, 256 << 20, 2)
    );
    assert_eq!(vm.state, vmm::RunState::Off);

    let view: vmm::api::VmView = parse(h, &["vm", "show", "j", "--json"]);
    assert_eq!(view.schema, vmm::api::SCHEMA);
    assert_eq!(view.config.name, "j");
    assert_eq!(view.config.snapshots.len(), 2);
    assert!(view.live.is_none());
    assert_eq!(view.dir, h.join("vms").join("j"));

    let snaps: vmm::api::SnapshotList = parse(h, &["snapshot", "list", "j", "--json"]);
    assert_eq!((snaps.schema, snaps.vm.as_str()), (vmm::api::SCHEMA, "j"));
    let names: Vec<(&str, Option<&str>, bool)> = snaps
        .snapshots
        .iter()
        .map(|s| {
            (
                s.snapshot.name.as_str(),
                s.parent_name.as_deref(),
                s.current,
            )
        })
        .collect();
    assert_eq!(
        names,
        [("first", None, false), ("second", Some("first"), true)]
    );

    let one: vmm::api::SnapshotDoc = parse(h, &["snapshot", "show", "j", "first", "--json"]);
    assert_eq!((one.schema, one.vm.as_str()), (vmm::api::SCHEMA, "j"));
    assert_eq!(one.snapshot, snaps.snapshots[0]);
    assert_eq!(one.snapshot.snapshot.description, "one");
}

#[test]
fn disk_info_and_image_documents_parse_into_their_types() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let base = d.join("base.qcow2");
    let over = d.join("over.qcow2");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    ok(d, &["disk", "create", &s(&base), "--size", "64M"]);
    ok(
        d,
        &[
            "disk",
            "create",
            &s(&over),
            "--backing",
            &s(&base),
            "--backing-format",
            "qcow2",
        ],
    );
    let info: vmm::api::DiskInfoDoc = parse(d, &["disk", "info", &s(&over), "--json"]);
    assert_eq!(info.schema, vmm::api::SCHEMA);
    assert_eq!(info.info.path, over);
    assert_eq!(info.info.format, disk::Format::Qcow2);
    assert_eq!(info.info.virtual_size, 64 << 20);
    assert_eq!(info.info.backing_chain.len(), 1);
    assert_eq!(info.info.backing_chain[0].path, base);

    // The image the other tests boot (pulled once, then verified offline).
    let image: vmm::api::ImageDoc = parse(d, &["image", "pull", "--json", "--no-progress"]);
    assert_eq!(
        (image.schema, image.name.as_str()),
        (vmm::api::SCHEMA, "debian")
    );
    for file in [
        &image.kernel,
        &image.initrd,
        &image.firmware,
        &image.fw_jump,
    ] {
        assert!(file.is_file(), "{}", file.display());
    }
    assert!(
        image.kernel_version.contains("riscv64"),
        "{}",
        image.kernel_version
    );
    // `image list` holds the image just pulled, as the same document.
    let list: vmm::api::ImageList = parse(d, &["image", "list", "--json"]);
    assert_eq!(list.schema, vmm::api::SCHEMA);
    assert!(list.images.contains(&image), "{list:?}");
    // An empty cache lists nothing.
    let empty = d.join("empty-cache");
    let list: vmm::api::ImageList =
        parse(d, &["image", "list", "--json", "--cache-dir", &s(&empty)]);
    assert!(list.images.is_empty(), "{list:?}");
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    assert!(vmm::api::check_schema(vmm::api::SCHEMA).is_ok());
    let err = vmm::api::check_schema(vmm::api::SCHEMA + 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&(vmm::api::SCHEMA + 1).to_string())
            && err.contains(&vmm::api::SCHEMA.to_string()),
        "{err}"
    );
}
