//! Records survive writing and reading unchanged, through files, streams and
//! the slice codec; and typical records are small.

mod common;

use common::*;
use proptest::prelude::*;
use replay::{
    validate, validate_reader, Decoded, Decoder, Encoder, Input, LogEnd, LogReader, LogWriter,
    OutputChannel, OutputHash, Record, RecordKind, TailPolicy, FRAME_HEADER_LEN, HEADER_LEN,
};

fn read_all(bytes: &[u8]) -> Vec<Record> {
    let mut reader = LogReader::new(bytes, TailPolicy::Strict).unwrap();
    assert_eq!(reader.header(), &header());
    let records: Vec<Record> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(
        reader.end(),
        Some(&LogEnd::Clean {
            offset: bytes.len() as u64
        })
    );
    records
}

#[test]
fn every_record_kind_round_trips() {
    let records = sample_records();
    let bytes = log_bytes(&records);
    assert_eq!(read_all(&bytes), records);

    let summary = validate_reader(bytes.as_slice()).unwrap();
    assert_eq!(summary.records, records.len() as u64);
    assert_eq!(summary.inputs, 10);
    assert_eq!(summary.outputs, 2);
    assert_eq!(summary.last_icount, records.last().unwrap().icount);
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.header, header());
}

#[test]
fn an_empty_log_is_just_the_header() {
    let bytes = log_bytes(&[]);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert!(read_all(&bytes).is_empty());
}

#[test]
fn file_log_round_trips_and_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let records = sample_records();
    let mut writer = LogWriter::create(&path, &header()).unwrap();
    for record in &records {
        writer.append(record).unwrap();
    }
    writer.sync().unwrap();
    assert_eq!(writer.buffered(), 0);
    // Everything is on disk after sync, before the writer goes away.
    assert_eq!(validate(&path).unwrap().records, records.len() as u64);
    let more = writer
        .append_next(10_000_000, &RecordKind::Progress)
        .unwrap();
    assert_eq!(more, records.len() as u64);
    drop(writer); // flushes the last record

    let reader = LogReader::open(&path, TailPolicy::Strict).unwrap();
    let back: Vec<Record> = reader.map(Result::unwrap).collect();
    assert_eq!(back[..records.len()], records[..]);
    assert_eq!(back.last().unwrap().icount, 10_000_000);

    let again = LogWriter::create(&path, &header());
    assert!(
        again.is_err(),
        "create must refuse an existing log, got a writer"
    );
    assert_eq!(validate(&path).unwrap().records, records.len() as u64 + 1);
}

#[test]
fn validate_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let message = validate(&missing).unwrap_err().to_string();
    assert!(message.contains("nope.log"), "{message}");
}

#[test]
fn writer_and_encoder_produce_the_same_bytes() {
    let records = sample_records();
    let mut batch = header().encode().to_vec();
    let mut encoder = Encoder::new();
    for record in &records {
        let size = encoder.encode(record, &mut batch).unwrap();
        assert!(size >= FRAME_HEADER_LEN);
    }
    assert_eq!(batch, log_bytes(&records));
    assert_eq!(encoder.next_lsn(), records.len() as u64);
}

#[test]
fn a_stream_can_continue_from_any_lsn() {
    let records = sample_records();
    let (first, rest) = records.split_at(5);
    let mut encoder = Encoder::resume(5, first.last().unwrap().icount);
    let mut batch = Vec::new();
    for record in rest {
        encoder.encode(record, &mut batch).unwrap();
    }
    let mut writer = LogWriter::continuing(Vec::new(), Encoder::resume(5, first[4].icount));
    for record in rest {
        writer.append(record).unwrap();
    }
    assert_eq!(writer.into_inner().unwrap(), batch);

    let mut decoder = Decoder::resume(5, first[4].icount, 1000);
    let mut input = batch.as_slice();
    for expected in rest {
        match decoder.decode(input).unwrap() {
            Decoded::Record { record, len } => {
                assert_eq!(&record, expected);
                input = &input[len..];
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }
    assert!(input.is_empty());
    assert_eq!(decoder.offset(), 1000 + batch.len() as u64);
}

#[test]
fn output_hash_is_truncated_blake3() {
    let hash = OutputHash::of(b"hello\n");
    assert_eq!(hash.0, blake3::hash(b"hello\n").as_bytes()[..16]);
    assert_ne!(hash, OutputHash::of(b"hello!"));
}

/// Bytes per typical record, from the documented layout: 8 fixed bytes
/// (length/tag word, CRC), the LSN and icount delta as varints, the payload.
#[test]
fn typical_records_are_small() {
    // Mid-log: LSN 1000 (2-byte varint).
    let mut encoder = Encoder::resume(1000, 0);
    let mut size = |delta: u64, kind: RecordKind| {
        let mut out = Vec::new();
        let icount = encoder.last_icount() + delta;
        encoder.encode_next(icount, &kind, &mut out).unwrap().1
    };
    // 8 + lsn 2 + delta 1e6 (3).
    assert_eq!(size(1_000_000, RecordKind::Progress), 13);
    // 8 + 2 + delta 50k (3) + ticks 100k (3).
    let warp = RecordKind::Input(Input::ClockWarp { ticks: 100_000 });
    assert_eq!(size(50_000, warp), 16);
    // A typed key: 8 + 2 + 3 + len 1 + byte 1.
    let key = RecordKind::Input(Input::ConsoleInput(b"x".to_vec()));
    assert_eq!(size(2_000_000, key), 15);
    // 8 + 2 + 3 + channel 1 + len 1 + hash 16.
    let line = RecordKind::Output {
        channel: OutputChannel::Console,
        len: 80,
        hash: OutputHash::of(&[b'-'; 80]),
    };
    assert_eq!(size(1_500_000, line), 31);
    // A full Ethernet frame: 8 + 2 + 3 + nic 1 + len 2 + 1514.
    let frame = RecordKind::Input(Input::NetFrame {
        nic: 0,
        frame: vec![0; 1514],
    });
    assert_eq!(size(1_000_000, frame), 1530);

    // A plausible mix: a minute of an idle guest with HZ=250 idle skips and
    // a progress record after each, plus some console traffic.
    let mut encoder = Encoder::new();
    let mut log = Vec::new();
    let mut icount = 0;
    for tick in 0..15_000u64 {
        icount += 40_000;
        let warp = RecordKind::Input(Input::ClockWarp { ticks: 39_000 });
        encoder.encode_next(icount, &warp, &mut log).unwrap();
        encoder
            .encode_next(icount, &RecordKind::Progress, &mut log)
            .unwrap();
        if tick % 100 == 0 {
            let out = RecordKind::Output {
                channel: OutputChannel::Console,
                len: 40,
                hash: OutputHash::of(&tick.to_le_bytes()),
            };
            encoder.encode_next(icount + 500, &out, &mut log).unwrap();
            icount += 500;
        }
    }
    let per_record = log.len() as f64 / encoder.next_lsn() as f64;
    println!(
        "{} records, {} bytes, {per_record:.1} bytes/record",
        encoder.next_lsn(),
        log.len()
    );
    assert!(per_record < 16.0, "{per_record} bytes per record");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_sequences_round_trip(records in any_records(40)) {
        let bytes = log_bytes(&records);
        prop_assert_eq!(read_all(&bytes), records);
    }

    /// Bytes arriving in arbitrary pieces (a socket) decode to the same
    /// records: `Incomplete` until a whole frame is there, never an error.
    #[test]
    fn split_stream_decodes(records in any_records(20), cuts in prop::collection::vec(1usize..64, 1..200)) {
        let bytes = log_bytes(&records);
        let frames = &bytes[HEADER_LEN..];
        let mut decoder = Decoder::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        let mut cut = cuts.iter().cycle();
        while fed < frames.len() {
            let step = (*cut.next().unwrap()).min(frames.len() - fed);
            pending.extend_from_slice(&frames[fed..fed + step]);
            fed += step;
            while let Decoded::Record { record, len } = decoder.decode(&pending).unwrap() {
                decoded.push(record);
                pending.drain(..len);
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(decoded, records);
    }
}
