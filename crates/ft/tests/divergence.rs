//! The backup checks the primary's output windows and checkpoints: a
//! mismatch is a divergence that ends following (and going live).

use ft::wire::{self, Hello, Message};
use ft::{Arbiter, BackupOptions, FtConfig, FtError, Outcome};
use machine::snapshot::Piece;
use machine::{BootImages, Machine, MachineConfig, NullOutput};
use replay::session::{run_to, Divergence};
use replay::{Control, Encoder, OutputChannel, OutputHash, RecordKind, StopReason};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A one-hart machine whose firmware spins (`j .`): it runs, emits nothing.
fn spinning_machine() -> Machine {
    let mut kernel = vec![0u8; 64]; // the smallest `Image` the loader takes
    kernel[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    kernel[0x38..0x3c].copy_from_slice(b"RSC\x05");
    let config = MachineConfig {
        cpus: 1,
        memory: 16 << 20,
        images: BootImages {
            firmware: 0x0000_006f_u32.to_le_bytes().to_vec().into(),
            kernel: kernel.into(),
            initrd: None,
        },
        bootargs: String::new(),
        boot_wall_ns: 0,
        vmgenid: [0; 16],
        virtio: Vec::new(),
        instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
    };
    Machine::new(config, Box::new(NullOutput)).expect("build the machine")
}

/// The state hash the primary's machine has at `icount`.
fn hash_at(icount: u64) -> [u8; 32] {
    let mut m = spinning_machine();
    run_to::<FtError>(&mut m, icount).expect("run the twin");
    m.state_hash().expect("hash")
}

/// Link setup as the FT crate's primary uses it.
fn connect(addr: std::net::SocketAddr) -> (link::LinkSender, link::LinkReceiver) {
    link::connect(
        &addr.to_string(),
        &wire::link_config(),
        None,
        Duration::from_secs(10),
    )
    .expect("connect")
    .split()
}

fn send(tx: &link::LinkSender, m: &Message) {
    let (kind, payload) = m.encode();
    tx.send(kind, &payload).expect("send");
}

/// Sends the spinning machine as a primary's sync does: Hello, images,
/// pages, state; returns after the backup's Ready.
fn sync_spinning_machine(
    tx: &link::LinkSender,
    rx: &mut link::LinkReceiver,
    state_override: Option<Vec<u8>>,
) -> Message {
    let mut m = spinning_machine();
    let images: Vec<u8> = m.boot_image_parts().expect("images").concat();
    send(
        tx,
        &Message::Hello(Hello {
            lockstep_version: wire::LOCKSTEP_VERSION.to_string(),
            generation: 0,
            anchor_unix_ns: 0,
            vm_uuid: [1; 16],
            images_len: images.len() as u64,
            memory: 16 << 20,
            instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
            disks: Vec::new(),
            purpose: wire::Purpose::Protect,
            setup: Vec::new(),
        }),
    );
    assert_eq!(next(rx), Message::Welcome(Ok(())));
    send(
        tx,
        &Message::Images {
            offset: 0,
            bytes: images,
        },
    );
    let mut pages = Vec::new();
    let state = m
        .live_save()
        .finish::<()>(&mut m, Some([1; 16]), &mut |piece| {
            if let Piece::Page { index, bytes } = piece {
                pages.extend_from_slice(&(index as u32).to_le_bytes());
                pages.extend_from_slice(bytes);
            }
            Ok(())
        })
        .expect("state");
    if !pages.is_empty() {
        send(tx, &Message::Pages(pages));
    }
    send(
        tx,
        &Message::State {
            icount: 0,
            state: state_override.unwrap_or(state),
        },
    );
    // The backup sends heartbeats and acknowledges the log while it
    // restores; then Ready.
    loop {
        match next(rx) {
            Message::Ack { .. } | Message::Alive => continue,
            other => return other,
        }
    }
}

/// The next message from the backup.
fn next(rx: &mut link::LinkReceiver) -> Message {
    match rx.recv(Duration::from_secs(30)).expect("receive") {
        link::Received::Frame(f) => Message::decode(f.kind, &f.payload).expect("decode"),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn backup_options(dir: &std::path::Path) -> (Arbiter, FtConfig) {
    let arbiter = Arbiter::open(&dir.join("arbiter")).expect("arbiter");
    let config = FtConfig {
        timeout: Duration::from_secs(5),
        ..FtConfig::default()
    };
    (arbiter, config)
}

/// Runs `script` as a primary (in a thread, over a fresh link) against a
/// backup serving on this thread; returns what `serve` gave, the script's
/// thread and the backup's directory (arbiter, replicas).
fn against_primary<T: Send + 'static>(
    script: impl FnOnce(link::LinkSender, link::LinkReceiver) -> T + Send + 'static,
) -> (
    Result<ft::Backup, FtError>,
    std::thread::JoinHandle<T>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (arbiter, config) = backup_options(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address");
    let primary = std::thread::spawn(move || {
        let (tx, rx) = connect(addr);
        script(tx, rx)
    });
    let options = BackupOptions {
        max_replica_bytes: 1 << 30,
        tls: None,
        replica_dir: dir.path(),
        config,
        accept: None,
        purpose: wire::Purpose::Protect,
    };
    let served = ft::serve(&listener, Some(&arbiter), &options, &mut |_| {});
    (served, primary, dir)
}

/// Plays a primary that sends `records` (icount, kind) in one batch (or
/// `raw` bytes as the batch), and runs a backup following it. Returns
/// what `follow` gave, the backup, and whether the primary then saw the
/// connection closed.
fn follow_raw(
    frames: Vec<u8>,
) -> (
    Result<Outcome, FtError>,
    ft::Backup,
    bool,
    tempfile::TempDir,
) {
    let (served, primary, dir) = against_primary(move |tx, mut rx| {
        assert_eq!(
            sync_spinning_machine(&tx, &mut rx, None),
            Message::Ready(Ok(()))
        );
        send(
            &tx,
            &Message::Batch {
                released: 0,
                frames,
            },
        );
        // Keep the backup's failure detector quiet; report a close.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match rx.recv(Duration::from_millis(20)) {
                Ok(link::Received::Closed) | Err(_) => return true,
                Ok(_) => {}
            }
            let heartbeat = Message::Batch {
                released: 0,
                frames: Vec::new(),
            };
            let (kind, payload) = heartbeat.encode();
            if tx.send(kind, &payload).is_err() {
                return true;
            }
        }
        false
    });
    let mut backup = served.expect("serve");
    let outcome = backup.follow();
    let closed = outcome.is_err() && primary.join().expect("primary thread");
    (outcome, backup, closed, dir)
}

fn follow(records: &[(u64, RecordKind)]) -> (Result<Outcome, FtError>, ft::Backup, bool) {
    let mut frames = Vec::new();
    let mut encoder = Encoder::resume(0, 0);
    for (icount, kind) in records {
        encoder
            .encode_next(*icount, kind, &mut frames)
            .expect("encode");
    }
    let (outcome, backup, closed, _) = follow_raw(frames);
    (outcome, backup, closed)
}

/// A corrupt log frame ends the channel with an error naming it, as a
/// failed primary does: the backup stops at the last good record, and may
/// go live only by winning the arbiter (the primary, seeing the channel
/// closed, races for it too; exactly one wins).
#[test]
fn a_corrupt_frame_ends_the_channel() {
    let mut frames = Vec::new();
    let mut encoder = Encoder::resume(0, 0);
    for (icount, kind) in [(1_000, RecordKind::Progress), (2_000, RecordKind::Progress)] {
        encoder
            .encode_next(icount, &kind, &mut frames)
            .expect("encode");
    }
    let last = frames.len() - 1;
    frames[last] ^= 0x55; // inside the second frame
    let (outcome, backup, _, _dir) = follow_raw(frames);
    match outcome {
        Ok(Outcome::PrimaryLost { reason, .. }) => {
            assert!(reason.contains("bad log frame"), "{reason}")
        }
        other => panic!("expected the channel to end, got {other:?}"),
    }
    assert_eq!(
        backup.machine().icount(),
        0,
        "nothing of a corrupt batch runs"
    );
    let live = backup
        .go_live(Box::new(NullOutput))
        .expect("wins generation 1");
    assert_eq!(live.generation, 1);
}

/// A state that does not restore is refused with Ready(Err), naming why.
#[test]
fn a_state_that_does_not_restore_is_refused() {
    let (served, primary, _dir) = against_primary(|tx, mut rx| {
        sync_spinning_machine(&tx, &mut rx, Some(b"not a state".to_vec()))
    });
    let err = served.err().expect("refused");
    assert!(err.to_string().contains("state"), "{err}");
    match primary.join().expect("primary thread") {
        Message::Ready(Err(why)) => assert!(why.contains("state"), "{why}"),
        other => panic!("expected Ready(Err), got {other:?}"),
    }
}

#[test]
fn matching_progress_and_checkpoints_are_followed_to_the_end() {
    let records = [
        (1_000, RecordKind::Progress),
        (
            5_000,
            RecordKind::Checkpoint {
                state_hash: hash_at(5_000),
            },
        ),
        (
            6_000,
            RecordKind::Control(Control::PowerOff(StopReason::HostStop)),
        ),
    ];
    let (outcome, backup, _) = follow(&records);
    assert_eq!(
        outcome.expect("no divergence"),
        Outcome::Ended(StopReason::HostStop)
    );
    assert_eq!(backup.machine().icount(), 6_000);
}

#[test]
fn an_output_window_the_backup_did_not_produce_is_a_divergence() {
    let records = [
        (1_000, RecordKind::Progress),
        (
            3_000,
            RecordKind::Output {
                channel: OutputChannel::Console,
                len: 5,
                hash: OutputHash([0xab; 16]),
            },
        ),
        (3_000, RecordKind::Progress),
        (
            9_000,
            RecordKind::Control(Control::PowerOff(StopReason::HostStop)),
        ),
    ];
    let (outcome, backup, closed) = follow(&records);
    match outcome {
        Err(FtError::Diverged(Divergence::Output {
            icount: 3_000,
            channel: OutputChannel::Console,
            recorded: 5,
            replayed: 0,
        })) => {}
        other => panic!("expected an output divergence at icount 3000, got {other:?}"),
    }
    assert_eq!(
        backup.machine().icount(),
        3_000,
        "stopped at the divergence"
    );
    assert!(closed, "the primary sees the backup gone");
    match backup.go_live(Box::new(NullOutput)) {
        Err(FtError::NotFollowing { .. }) => {}
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a diverged backup must not go live"),
    }
}

#[test]
fn a_wrong_checkpoint_is_a_divergence() {
    let records = [
        (
            2_000,
            RecordKind::Checkpoint {
                state_hash: hash_at(1_999),
            },
        ),
        (
            9_000,
            RecordKind::Control(Control::PowerOff(StopReason::HostStop)),
        ),
    ];
    let (outcome, _, closed) = follow(&records);
    assert!(
        matches!(
            outcome,
            Err(FtError::Diverged(Divergence::State { icount: 2_000 }))
        ),
        "{outcome:?}"
    );
    assert!(closed, "the primary sees the backup gone");
}

/// A primary of another lockstep version is refused at the Hello, with
/// both versions named on both sides.
#[test]
fn another_lockstep_version_is_refused() {
    let (served, primary, _dir) = against_primary(|tx, mut rx| {
        send(
            &tx,
            &Message::Hello(Hello {
                lockstep_version: "0.0.0-other".into(),
                generation: 0,
                anchor_unix_ns: 0,
                vm_uuid: [1; 16],
                images_len: 0,
                memory: 16 << 20,
                instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
                disks: Vec::new(),
                purpose: wire::Purpose::Protect,
                setup: Vec::new(),
            }),
        );
        next(&mut rx)
    });
    let err = served.err().expect("refused").to_string();
    assert!(
        err.contains("0.0.0-other") && err.contains(wire::LOCKSTEP_VERSION),
        "{err}"
    );
    match primary.join().expect("primary thread") {
        Message::Welcome(Err(why)) => assert!(why.contains("0.0.0-other"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A Hello as a stranger might forge it.
fn forged_hello(generation: u64, disks: Vec<wire::DiskShape>) -> Message {
    Message::Hello(Hello {
        lockstep_version: wire::LOCKSTEP_VERSION.to_string(),
        generation,
        anchor_unix_ns: 0,
        vm_uuid: [9; 16],
        images_len: 4096,
        memory: 16 << 20,
        instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
        disks,
        purpose: wire::Purpose::Protect,
        setup: Vec::new(),
    })
}

/// The review's forged Hello: a 1 TiB replica (with the default quota,
/// the replica directory's free space, as the CLI sets it; here 1 GiB).
/// Refused before any file is made, with the reason.
#[test]
fn a_forged_hello_asking_for_a_huge_replica_is_refused() {
    let (served, primary, dir) = against_primary(|tx, mut rx| {
        send(
            &tx,
            &forged_hello(
                0,
                vec![wire::DiskShape {
                    capacity: 1 << 40,
                    read_only: false,
                }],
            ),
        );
        next(&mut rx)
    });
    let err = served.err().expect("refused").to_string();
    assert!(err.contains("--max-replica-size"), "{err}");
    let Message::Welcome(Err(told)) = primary.join().unwrap() else {
        panic!("no refusal")
    };
    assert!(told.contains("--max-replica-size"), "{told}");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("disk"))
        .collect();
    assert!(files.is_empty(), "replica files made: {files:?}");
}

/// Over plain TCP nobody vouches for the peer: a refusal for another
/// arbiter generation does not tell it the arbiter's path or generation
/// (this side's report has both).
#[test]
fn refusals_to_an_unauthenticated_peer_leak_no_arbiter_details() {
    let (served, primary, dir) = against_primary(|tx, mut rx| {
        send(&tx, &forged_hello(41, Vec::new()));
        next(&mut rx)
    });
    let err = served.err().expect("refused").to_string();
    let arbiter = dir.path().join("arbiter").display().to_string();
    assert!(
        err.contains(&arbiter) && err.contains("generation 41"),
        "{err}"
    );
    let Message::Welcome(Err(told)) = primary.join().unwrap() else {
        panic!("no refusal")
    };
    assert!(told.contains("another arbiter generation"), "{told}");
    assert!(
        !told.contains(&arbiter) && !told.contains("41") && !told.contains('0'),
        "{told}"
    );
}

/// Plain TCP is for loopback only: a backup listening on another address
/// without TLS is refused before it accepts anyone.
#[test]
fn plaintext_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (arbiter, config) = backup_options(dir.path());
    let listener = TcpListener::bind("0.0.0.0:0").expect("listen");
    let options = BackupOptions {
        max_replica_bytes: 1 << 30,
        tls: None,
        replica_dir: dir.path(),
        config,
        accept: None,
        purpose: wire::Purpose::Protect,
    };
    let err = ft::serve_until_ready(&listener, Some(&arbiter), &options, &mut |_| {})
        .err()
        .expect("refused");
    assert!(matches!(err, FtError::PlaintextNotLoopback { .. }), "{err}");
}
