//! Disk identities of real image files: a qcow2 overlay chain keeps its
//! identity across close and reopen (opening writes nothing that matters),
//! and loses it when any file of the chain changes.

use disk::{DiskIdentity, IdentityMismatch};

mod common;
use common::{create, open};

use std::path::Path;

const MIB: u64 = 1 << 20;

fn write_and_identify(path: &Path) -> DiskIdentity {
    let mut d = open(path, false).unwrap();
    d.write_at(3 * MIB, &[0x5a; 4096]).unwrap();
    d.flush().unwrap();
    DiskIdentity::of(&*d).unwrap()
}

#[test]
fn qcow2_chain_identity_survives_reopening_and_catches_changes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    create(&base, 8 * MIB, None).unwrap();
    {
        let mut b = open(&base, false).unwrap();
        b.write_at(0, &[1; 512]).unwrap();
        b.flush().unwrap();
    }
    create(&top, 8 * MIB, Some(&base)).unwrap();
    let id = write_and_identify(&top);
    let DiskIdentity::Files {
        capacity, layers, ..
    } = &id
    else {
        panic!("an image disk has files: {id:?}");
    };
    assert_eq!(*capacity, 8 * MIB);
    let names: Vec<_> = layers.iter().map(|l| l.path.file_name().unwrap()).collect();
    assert_eq!(names, ["top.qcow2", "base.qcow2"]);

    // Reopened for writing, as a restore does: still the same disk, both
    // by fingerprint and by content.
    let reopened = open(&top, false).unwrap();
    id.check(&*reopened, false).unwrap();
    id.check(&*reopened, true).unwrap();
    drop(reopened);

    // A guest write after the snapshot changes the top layer.
    let mut d = open(&top, false).unwrap();
    d.write_at(5 * MIB, &[7; 512]).unwrap();
    d.flush().unwrap();
    let err = id.check(&*d, false).unwrap_err();
    let path = match &err {
        IdentityMismatch::Contents { path, .. } | IdentityMismatch::Length { path, .. } => path,
        other => panic!("expected a changed top layer, got: {other}"),
    };
    assert!(path.ends_with("top.qcow2"), "{err}");
    drop(d);

    // A changed backing file is caught too.
    let top2 = dir.path().join("top2.qcow2");
    create(&top2, 8 * MIB, Some(&base)).unwrap();
    let id2 = DiskIdentity::of(&*open(&top2, true).unwrap()).unwrap();
    {
        let mut b = open(&base, false).unwrap();
        b.write_at(0, &[2; 512]).unwrap();
        b.flush().unwrap();
    }
    let err = id2.check(&*open(&top2, true).unwrap(), false).unwrap_err();
    assert!(
        matches!(&err, IdentityMismatch::Contents { path, .. } if path.ends_with("base.qcow2")),
        "{err}"
    );
}
