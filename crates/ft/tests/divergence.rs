//! The backup checks the primary's output windows and checkpoints: a
//! mismatch is a divergence that ends following (and going live).

use ft::wire::{self, Hello, Message, MessageReader, Polled};
use ft::{Arbiter, FtConfig, FtError, Outcome};
use machine::{BootImages, Machine, MachineConfig, NullOutput};
use replay::session::{run_to, Divergence};
use replay::{Control, Encoder, Header, OutputChannel, OutputHash, RecordKind, StopReason};
use std::net::{TcpListener, TcpStream};
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
    };
    Machine::new(config, Box::new(NullOutput)).expect("build the machine")
}

/// The state hash the primary's machine has at `icount`.
fn hash_at(icount: u64) -> [u8; 32] {
    let mut m = spinning_machine();
    run_to::<FtError>(&mut m, icount).expect("run the twin");
    m.state_hash().expect("hash")
}

/// Plays a primary that sends `records` (icount, kind) in one batch, and
/// runs a backup following it. Returns what `follow` gave, the backup, and
/// whether the primary then saw the connection closed.
fn follow(records: &[(u64, RecordKind)]) -> (Result<Outcome, FtError>, ft::Backup, bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let arbiter = Arbiter::open(&dir.path().join("arbiter")).expect("arbiter");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut frames = Vec::new();
    let mut encoder = Encoder::resume(0, 0);
    for (icount, kind) in records {
        encoder
            .encode_next(*icount, kind, &mut frames)
            .expect("encode");
    }
    let primary = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        wire::write_preamble(&mut s).expect("preamble");
        wire::read_preamble(&mut s).expect("their preamble");
        let hello = Hello {
            lockstep_version: wire::LOCKSTEP_VERSION.to_string(),
            generation: 0,
            start_icount: 0,
            anchor_unix_ns: 0,
            header: Header {
                vm_uuid: [1; 16],
                initial_state_hash: spinning_machine().state_hash().expect("hash"),
            },
            setup: Vec::new(),
        };
        Message::Hello(hello).write_to(&mut s).expect("hello");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut reader = MessageReader::default();
        Message::Batch {
            released: 0,
            frames,
        }
        .write_to(&mut s)
        .expect("batch");
        // Keep the backup's failure detector quiet; report a close.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match reader.poll(&mut s) {
                Ok(Polled::Closed) | Err(_) => return true,
                Ok(_) => {}
            }
            let heartbeat = Message::Batch {
                released: 0,
                frames: Vec::new(),
            };
            if heartbeat.write_to(&mut s).is_err() {
                return true;
            }
        }
        false
    });
    let config = FtConfig {
        timeout: Duration::from_secs(5),
        ..FtConfig::default()
    };
    let mut backup =
        ft::serve(&listener, arbiter, config, |_| Ok(spinning_machine())).expect("serve");
    let outcome = backup.follow();
    let closed = outcome.is_err() && primary.join().expect("primary thread");
    (outcome, backup, closed)
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
        Err(FtError::NotFollowing(_)) => {}
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
