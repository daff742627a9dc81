//! The `socket:PATH` backend: real sockets in a temporary directory.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use net::segment::{self, SegmentRx, SegmentTx};
use net::{FrameRx, FrameTx, MacAddr, NetError, NetSpec, SegmentError, MAX_FRAME_LEN};

const WAIT: Duration = Duration::from_secs(2);
const NOTHING: Duration = Duration::from_millis(100);

fn mac(last: u8) -> MacAddr {
    MacAddr::new([0x52, 0x54, 0, 0, 0, last]).unwrap()
}

fn port(dir: &Path, last: u8) -> (SegmentTx, SegmentRx) {
    segment::open(dir, mac(last)).unwrap()
}

fn recv(rx: &mut dyn FrameRx, timeout: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0; MAX_FRAME_LEN];
    let len = rx.recv(&mut buf, timeout).unwrap()?;
    buf.truncate(len);
    Some(buf)
}

fn port_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_frame_reaches_every_other_port_on_the_segment_only() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = tmp.path().join("seg");
    let other = tmp.path().join("other");
    let (mut a_tx, mut a_rx) = port(&seg, 1);
    let (_b_tx, mut b_rx) = port(&seg, 2);
    let (_c_tx, mut c_rx) = port(&seg, 3);
    let (_d_tx, mut d_rx) = port(&other, 1);

    let frame: Vec<u8> = (0..1514u32).map(|i| i as u8).collect();
    a_tx.send(&frame).unwrap();

    assert_eq!(recv(&mut b_rx, WAIT).as_deref(), Some(&frame[..]));
    assert_eq!(recv(&mut c_rx, WAIT).as_deref(), Some(&frame[..]));
    assert_eq!(recv(&mut a_rx, NOTHING), None, "sender heard itself");
    assert_eq!(recv(&mut d_rx, NOTHING), None, "another segment heard it");
    assert_eq!(recv(&mut b_rx, NOTHING), None, "frame delivered twice");
}

#[test]
fn a_dropped_port_disappears_and_the_rest_keep_talking() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a_tx, _a_rx) = port(tmp.path(), 1);
    let (_b_tx, mut b_rx) = port(tmp.path(), 2);
    let c = port(tmp.path(), 3);
    a_tx.send(b"first").unwrap();
    assert_eq!(recv(&mut b_rx, WAIT).as_deref(), Some(&b"first"[..]));

    drop(c);
    assert_eq!(
        port_files(tmp.path()),
        ["52-54-00-00-00-01.sock", "52-54-00-00-00-02.sock"]
    );
    // a's cached peer list still names c's file.
    a_tx.send(b"second").unwrap();
    assert_eq!(recv(&mut b_rx, WAIT).as_deref(), Some(&b"second"[..]));
    a_tx.send(b"third").unwrap();
    assert_eq!(recv(&mut b_rx, WAIT).as_deref(), Some(&b"third"[..]));
}

#[test]
fn a_stale_socket_file_is_removed_by_a_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join("52-54-00-00-00-09.sock");
    drop(UnixDatagram::bind(&stale).unwrap());
    assert!(stale.exists());

    let (mut a_tx, _a_rx) = port(tmp.path(), 1);
    let (_b_tx, mut b_rx) = port(tmp.path(), 2);
    a_tx.send(b"hello").unwrap();
    assert!(!stale.exists(), "stale port file still there");
    assert_eq!(recv(&mut b_rx, WAIT).as_deref(), Some(&b"hello"[..]));
}

#[test]
fn a_restarted_nic_reclaims_its_stale_port() {
    let tmp = tempfile::tempdir().unwrap();
    drop(UnixDatagram::bind(tmp.path().join("52-54-00-00-00-01.sock")).unwrap());
    let (_a_tx, mut a_rx) = port(tmp.path(), 1);
    let (mut b_tx, _b_rx) = port(tmp.path(), 2);
    b_tx.send(b"welcome back").unwrap();
    assert_eq!(recv(&mut a_rx, WAIT).as_deref(), Some(&b"welcome back"[..]));
}

#[test]
fn a_second_nic_with_the_same_mac_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = port(tmp.path(), 1);
    let err = segment::open(tmp.path(), mac(1)).unwrap_err();
    assert!(matches!(err, SegmentError::DuplicateMac { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("52:54:00:00:00:01") && shown.contains("already"),
        "{shown}"
    );
}

#[test]
fn a_file_that_is_not_a_socket_is_not_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let squatter = tmp.path().join("52-54-00-00-00-01.sock");
    std::fs::write(&squatter, b"not a socket").unwrap();
    let err = segment::open(tmp.path(), mac(1)).unwrap_err();
    assert!(matches!(err, SegmentError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not a socket");
}

#[test]
fn a_port_that_joins_later_is_reached_after_the_peer_list_ages() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a_tx, _a_rx) = port(tmp.path(), 1);
    let (_b_tx, mut b_rx) = port(tmp.path(), 2);
    a_tx.send(b"one").unwrap();
    assert!(recv(&mut b_rx, WAIT).is_some());

    let (_c_tx, mut c_rx) = port(tmp.path(), 3);
    std::thread::sleep(Duration::from_millis(300));
    a_tx.send(b"two").unwrap();
    assert_eq!(recv(&mut c_rx, WAIT).as_deref(), Some(&b"two"[..]));
}

#[test]
fn sending_to_a_peer_that_does_not_read_never_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a_tx, _a_rx) = port(tmp.path(), 1);
    let (_b_tx, mut b_rx) = port(tmp.path(), 2);
    for i in 0..1000u32 {
        a_tx.send(&i.to_le_bytes()).unwrap();
    }
    // The peer's queue kept the oldest frames and lost the rest.
    let first = recv(&mut b_rx, WAIT).unwrap();
    assert_eq!(first, 0u32.to_le_bytes());
    let mut received = 1;
    while recv(&mut b_rx, NOTHING).is_some() {
        received += 1;
    }
    assert!(received < 1000, "all {received} frames queued");
}

#[test]
fn open_parses_a_socket_spec_and_creates_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/segment");
    let spec: NetSpec = format!("socket={}", dir.display()).parse().unwrap();
    let (mut a_tx, _a_rx) = net::open(&spec, mac(1), None).unwrap();
    let (_b_tx, mut b_rx) = net::open(&spec, mac(2), None).unwrap();
    a_tx.send(b"via open").unwrap();
    assert_eq!(recv(&mut *b_rx, WAIT).as_deref(), Some(&b"via open"[..]));

    let err = net::open(&spec, mac(2), None).map(|_| ()).unwrap_err();
    assert!(matches!(
        err,
        NetError::Segment(SegmentError::DuplicateMac { .. })
    ));
}

#[test]
fn an_unusable_directory_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let err = segment::open(&file, mac(1)).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("plain-file") && shown.contains("creating the directory"),
        "{shown}"
    );
}
