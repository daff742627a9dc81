//! Shared helpers: sample records of every kind, a log builder, and a frame
//! builder written from the documented format (independently of the crate's
//! encoder), for frames the writer would never produce.

#![allow(dead_code)]

use proptest::prelude::*;
use replay::{
    Control, Header, HostCommand, Input, LogWriter, OutputChannel, OutputHash, Record, RecordKind,
    StopReason,
};

pub fn header() -> Header {
    Header {
        vm_uuid: *b"0123456789abcdef",
        initial_state_hash: *blake3::hash(b"initial machine state").as_bytes(),
    }
}

/// One record of every kind and sub-kind.
pub fn every_kind() -> Vec<RecordKind> {
    vec![
        RecordKind::Input(Input::ConsoleInput(b"root\n".to_vec())),
        RecordKind::Input(Input::ConsoleInput(Vec::new())),
        RecordKind::Input(Input::NetFrame {
            nic: 1,
            frame: (0..=255).collect(),
        }),
        RecordKind::Input(Input::ClockWarp { ticks: 100_000 }),
        RecordKind::Input(Input::Entropy(vec![0xa5; 32])),
        RecordKind::Input(Input::HostCommand(HostCommand::PowerButton)),
        RecordKind::Input(Input::HostCommand(HostCommand::LinkState {
            nic: 0,
            up: false,
        })),
        RecordKind::Input(Input::HostCommand(HostCommand::LinkState {
            nic: 3,
            up: true,
        })),
        RecordKind::Input(Input::HostCommand(HostCommand::DeviceAttach {
            slot: 2,
            spec: b"virtio-blk disk1".to_vec(),
        })),
        RecordKind::Input(Input::HostCommand(HostCommand::DeviceDetach { slot: 2 })),
        RecordKind::Progress,
        RecordKind::Output {
            channel: OutputChannel::Console,
            len: 5,
            hash: OutputHash::of(b"login"),
        },
        RecordKind::Output {
            channel: OutputChannel::Net { nic: 1 },
            len: 60,
            hash: OutputHash::of(&[0u8; 60]),
        },
        RecordKind::Control(Control::ConfigChange(b"memory=512M".to_vec())),
        RecordKind::Control(Control::PowerOff(StopReason::GuestReset)),
        RecordKind::Control(Control::PowerOff(StopReason::HostStop)),
        RecordKind::Control(Control::PowerOff(StopReason::GuestPowerOff)),
    ]
}

/// Numbers `kinds` from LSN 0 with the given icounts.
pub fn records(kinds: Vec<RecordKind>, icounts: &[u64]) -> Vec<Record> {
    kinds
        .into_iter()
        .zip(icounts)
        .enumerate()
        .map(|(lsn, (kind, &icount))| Record {
            lsn: lsn as u64,
            icount,
            kind,
        })
        .collect()
}

/// A sample log: every kind, at increasing icounts (some equal).
pub fn sample_records() -> Vec<Record> {
    let kinds = every_kind();
    let icounts: Vec<u64> = (0..kinds.len() as u64).map(|i| i / 2 * 12_345).collect();
    records(kinds, &icounts)
}

/// The bytes of a log holding `records`.
pub fn log_bytes(records: &[Record]) -> Vec<u8> {
    let mut writer = LogWriter::new(Vec::new(), &header());
    for record in records {
        writer.append(record).unwrap();
    }
    writer.into_inner().unwrap()
}

/// Byte offset of every frame in a log of `records`, plus the end.
pub fn frame_offsets(records: &[Record]) -> Vec<usize> {
    let mut encoder = replay::Encoder::new();
    let mut offsets = vec![replay::HEADER_LEN];
    let mut bytes = Vec::new();
    for record in records {
        encoder.encode(record, &mut bytes).unwrap();
        offsets.push(replay::HEADER_LEN + bytes.len());
    }
    offsets
}

/// A frame built by hand: `word = len | tag << 24`, CRC-32C over word and body.
pub fn raw_frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let word = ((u32::from(tag) << 24) | body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&word), body);
    let mut frame = word.to_vec();
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// A log made of the header followed by hand-built frames.
pub fn raw_log(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut log = header().encode().to_vec();
    for frame in frames {
        log.extend_from_slice(frame);
    }
    log
}

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

pub fn any_kind() -> impl Strategy<Value = RecordKind> {
    let host_command = prop_oneof![
        Just(HostCommand::PowerButton),
        (any::<u8>(), any::<bool>()).prop_map(|(nic, up)| HostCommand::LinkState { nic, up }),
        (any::<u8>(), small_bytes())
            .prop_map(|(slot, spec)| HostCommand::DeviceAttach { slot, spec }),
        any::<u8>().prop_map(|slot| HostCommand::DeviceDetach { slot }),
    ];
    let input = prop_oneof![
        small_bytes().prop_map(Input::ConsoleInput),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..1600))
            .prop_map(|(nic, frame)| Input::NetFrame { nic, frame }),
        any::<u64>().prop_map(|ticks| Input::ClockWarp { ticks }),
        small_bytes().prop_map(Input::Entropy),
        host_command.prop_map(Input::HostCommand),
    ];
    let channel = prop_oneof![
        Just(OutputChannel::Console),
        any::<u8>().prop_map(|nic| OutputChannel::Net { nic }),
    ];
    let reason = prop_oneof![
        Just(StopReason::GuestPowerOff),
        Just(StopReason::GuestReset),
        Just(StopReason::HostStop),
    ];
    let control = prop_oneof![
        reason.prop_map(Control::PowerOff),
        small_bytes().prop_map(Control::ConfigChange),
    ];
    prop_oneof![
        input.prop_map(RecordKind::Input),
        Just(RecordKind::Progress),
        any::<[u8; 32]>().prop_map(|state_hash| RecordKind::Checkpoint { state_hash }),
        (channel, any::<u64>(), any::<[u8; 16]>()).prop_map(|(channel, len, hash)| {
            RecordKind::Output {
                channel,
                len,
                hash: OutputHash(hash),
            }
        }),
        control.prop_map(RecordKind::Control),
    ]
}

/// Icount gaps from zero to huge, so varints of every length appear.
fn icount_delta() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..200u64, 0..5_000_000u64, 0..(1u64 << 50)]
}

/// A valid record sequence of up to `max` records.
pub fn any_records(max: usize) -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((icount_delta(), any_kind()), 0..max).prop_map(|items| {
        let mut icount = 0u64;
        items
            .into_iter()
            .enumerate()
            .map(|(lsn, (delta, kind))| {
                icount += delta;
                Record {
                    lsn: lsn as u64,
                    icount,
                    kind,
                }
            })
            .collect()
    })
}
