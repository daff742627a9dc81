//! Rough cost of recording and reading: `cargo run --release -p
//! lockstep-replay --example measure`. Encodes a mix of typical records into
//! memory, then reads them back, and prints time and bytes per record.

use std::time::Instant;

use replay::{
    Header, Input, LogReader, LogWriter, OutputChannel, OutputHash, RecordKind, TailPolicy,
};

const RECORDS: u64 = 3_000_000;

fn kind(i: u64) -> RecordKind {
    match i % 4 {
        0 => RecordKind::Input(Input::ClockWarp { ticks: 39_000 }),
        1 | 2 => RecordKind::Progress,
        _ => RecordKind::Output {
            channel: OutputChannel::Console,
            len: 40,
            hash: OutputHash([0x5a; 16]),
        },
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let header = Header {
        vm_uuid: [1; 16],
        initial_state_hash: [2; 32],
    };
    let kinds: Vec<RecordKind> = (0..RECORDS).map(kind).collect();

    let start = Instant::now();
    let mut writer = LogWriter::new(Vec::with_capacity(64 << 20), &header);
    for (i, kind) in kinds.iter().enumerate() {
        writer.append_next(i as u64 * 40_000, kind)?;
    }
    let log = writer.into_inner()?;
    let write_time = start.elapsed();

    let start = Instant::now();
    let mut read = 0u64;
    for record in LogReader::new(log.as_slice(), TailPolicy::Strict)? {
        record?;
        read += 1;
    }
    let read_time = start.elapsed();
    assert_eq!(read, RECORDS);

    let per = |d: std::time::Duration| d.as_nanos() as f64 / RECORDS as f64;
    println!(
        "{RECORDS} records, {:.1} bytes/record; write {:.0} ns/record, read {:.0} ns/record",
        log.len() as f64 / RECORDS as f64,
        per(write_time),
        per(read_time)
    );
    Ok(())
}
