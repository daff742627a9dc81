//! Every way a log can be bad is reported, with what and where; no corrupt
//! log is ever accepted.

mod common;

use common::*;
use proptest::prelude::*;
use replay::{
    validate_reader, Decoded, Decoder, Encoder, Header, LogEnd, LogReader, ReadError, Record,
    TailPolicy, TornTail, FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, MAX_FRAME_BODY,
};

fn strict_error(bytes: &[u8]) -> ReadError {
    match validate_reader(bytes) {
        Ok(summary) => panic!("corrupt log accepted: {summary:?}"),
        Err(error) => error,
    }
}

/// Reads with `AllowTornTail`: the records read and how it ended.
fn lenient(bytes: &[u8]) -> Result<(Vec<Record>, LogEnd), ReadError> {
    let mut reader = LogReader::new(bytes, TailPolicy::AllowTornTail)?;
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok((records, reader.end().cloned().expect("ended")))
}

// ---- header ----------------------------------------------------------------

#[test]
fn bad_magic() {
    let mut log = log_bytes(&sample_records());
    log[0] = b'X';
    let error = strict_error(&log);
    assert!(matches!(error, ReadError::BadMagic { found } if found[0] == b'X'));
    assert!(error.to_string().contains("not a lockstep replay log"));
    // Even a file shorter than the magic is named as the wrong kind of file.
    assert!(matches!(strict_error(b"GIF8"), ReadError::BadMagic { .. }));
}

#[test]
fn unsupported_version() {
    // A newer log, and a version 1 log (from before the clock rate was a
    // setting), are both refused by version.
    for found in [FORMAT_VERSION + 1, 1] {
        let mut log = log_bytes(&[]);
        log[8..10].copy_from_slice(&found.to_le_bytes());
        let error = strict_error(&log);
        assert!(
            matches!(
                error,
                ReadError::UnsupportedVersion { found: f, supported: FORMAT_VERSION } if f == found
            ),
            "{error}"
        );
        let expected = format!("version {found} at offset 8 (this build reads version 2)");
        assert!(error.to_string().contains(&expected), "{error}");
    }
}

#[test]
fn header_checksum_mismatch() {
    let mut log = log_bytes(&[]);
    log[30] ^= 0x10; // inside the initial-state hash
    assert!(matches!(
        strict_error(&log),
        ReadError::HeaderChecksum { .. }
    ));
}

#[test]
fn truncated_header() {
    let log = log_bytes(&[]);
    for cut in [0, 5, 8, 10, 40, HEADER_LEN - 1] {
        let error = strict_error(&log[..cut]);
        assert!(
            matches!(error, ReadError::TruncatedHeader { have, need: HEADER_LEN } if have == cut),
            "cut at {cut}: {error}"
        );
    }
    // A torn header is an error in lenient mode too: there is nothing to replay.
    assert!(matches!(
        lenient(&log[..20]),
        Err(ReadError::TruncatedHeader { have: 20, .. })
    ));
}

#[test]
fn header_round_trips() {
    let bytes = header().encode();
    assert_eq!(Header::decode(&bytes).unwrap(), header());
}

// ---- frames ----------------------------------------------------------------

#[test]
fn frame_checksum_mismatch_names_offset_and_lsn() {
    let records = sample_records();
    let offsets = frame_offsets(&records);
    let mut log = log_bytes(&records);
    log[offsets[3] + 9] ^= 0x01; // in frame 3's body
    let error = strict_error(&log);
    assert!(
        matches!(error, ReadError::FrameChecksum { offset, lsn: 3, .. } if offset == offsets[3] as u64),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("offset {}", offsets[3])) && message.contains("LSN 3"),
        "{message}"
    );
}

#[test]
fn frame_too_large() {
    let body = vec![0u8; MAX_FRAME_BODY + 1];
    let log = raw_log(&[raw_frame(0x40, &body)]);
    let error = strict_error(&log);
    assert!(
        matches!(error, ReadError::FrameTooLarge { offset, lsn: 0, len, max: MAX_FRAME_BODY }
            if offset == HEADER_LEN as u64 && len == MAX_FRAME_BODY + 1),
        "{error}"
    );
    // Rejected from the frame header alone, before reading (or allocating) the body.
    let mut decoder = Decoder::new();
    assert!(matches!(
        decoder.decode(&log[HEADER_LEN..HEADER_LEN + 8]),
        Err(ReadError::FrameTooLarge { .. })
    ));
}

#[test]
fn lsn_gap() {
    // Progress frames: body = lsn, icount delta.
    let log = raw_log(&[raw_frame(0x40, &[0, 5]), raw_frame(0x40, &[2, 5])]);
    let error = strict_error(&log);
    assert!(
        matches!(error, ReadError::LsnGap { offset, expected: 1, found: 2 } if offset == HEADER_LEN as u64 + 10),
        "{error}"
    );
    // A repeated frame is a gap backwards.
    let frame = raw_frame(0x40, &[0, 5]);
    let log = raw_log(&[frame.clone(), frame]);
    assert!(matches!(
        strict_error(&log),
        ReadError::LsnGap {
            expected: 1,
            found: 0,
            ..
        }
    ));
    // A lost frame in a real log.
    let records = sample_records();
    let offsets = frame_offsets(&records);
    let mut log = log_bytes(&records);
    log.drain(offsets[4]..offsets[5]);
    assert!(matches!(
        strict_error(&log),
        ReadError::LsnGap {
            expected: 4,
            found: 5,
            ..
        }
    ));
}

#[test]
fn icount_cannot_overflow() {
    // The icount is an unsigned delta, so it cannot go backwards; the one way
    // to get it wrong is to run past u64::MAX.
    let mut max = vec![0u8];
    max.extend_from_slice(&[0xff; 9]);
    max.push(0x01); // u64::MAX
    let log = raw_log(&[raw_frame(0x40, &max), raw_frame(0x40, &[1, 1])]);
    let error = strict_error(&log);
    assert!(
        matches!(
            error,
            ReadError::IcountOverflow {
                lsn: 1,
                previous: u64::MAX,
                delta: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn unknown_record_kind() {
    for tag in [0x00, 0x06, 0x3f, 0x43, 0x81, 0xff] {
        let log = raw_log(&[raw_frame(tag, &[0, 0])]);
        let error = strict_error(&log);
        assert!(
            matches!(error, ReadError::UnknownKind { what: "record kind", tag: t, lsn: 0, .. } if t == tag),
            "tag {tag:#x}: {error}"
        );
    }
    let cases: [(u8, &[u8], &str); 4] = [
        (0x05, &[0, 0, 0x09], "host command"),
        (0x41, &[0, 0, 0x07], "output channel"),
        (0x80, &[0, 0, 0x03], "control"),
        (0x80, &[0, 0, 0x01, 0x09], "stop reason"),
    ];
    for (tag, body, expected) in cases {
        let error = strict_error(&raw_log(&[raw_frame(tag, body)]));
        assert!(
            matches!(error, ReadError::UnknownKind { what, .. } if what == expected),
            "{error}"
        );
    }
}

#[test]
fn malformed_bodies() {
    let cases: [(u8, &[u8], &str); 6] = [
        (0x40, &[0, 0, 0], "bytes left over"),
        (0x01, &[0, 0, 5, b'a'], "runs past the end"),
        (0x40, &[0x80, 0x00, 0], "shortest form"),
        (0x40, &[], "runs past the end"),
        (0x05, &[0, 0, 0x02, 0, 7], "neither 0 nor 1"),
        (0x41, &[0, 0, 0, 1, 0xaa], "runs past the end"),
    ];
    for (tag, body, expected) in cases {
        let error = strict_error(&raw_log(&[raw_frame(tag, body)]));
        assert!(
            matches!(error, ReadError::Malformed { .. }) && error.to_string().contains(expected),
            "body {body:?}: {error}"
        );
    }
}

#[test]
fn read_errors_name_the_offset() {
    struct Failing(Vec<u8>);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let log = log_bytes(&sample_records());
    let cut = HEADER_LEN + 3;
    let mut reader = LogReader::new(Failing(log[..cut].to_vec()), TailPolicy::Strict).unwrap();
    let error = reader.next_record().unwrap_err();
    assert!(
        matches!(error, ReadError::Io { offset, .. } if offset == cut as u64),
        "{error}"
    );
    // The reader stays stopped after an error.
    assert!(reader.next_record().unwrap().is_none());
    assert!(reader.end().is_none());
}

// ---- torn tails ------------------------------------------------------------

#[test]
fn torn_tail_strict_and_lenient() {
    let records = sample_records();
    let offsets = frame_offsets(&records);
    let log = log_bytes(&records);
    let last = records.len() - 1;
    let start = offsets[last];
    for cut in start + 1..log.len() {
        let have = cut - start;
        let error = strict_error(&log[..cut]);
        assert!(
            matches!(error, ReadError::TruncatedFrame { offset, lsn, have: h, .. }
                if offset == start as u64 && lsn == last as u64 && h == have),
            "cut {cut}: {error}"
        );
        let (read, end) = lenient(&log[..cut]).unwrap();
        assert_eq!(read, records[..last]);
        let LogEnd::Torn(torn) = end else {
            panic!("cut {cut}: expected a torn tail, got {end:?}")
        };
        let need = if have < 8 { 8 } else { log.len() - start };
        assert_eq!(
            torn,
            TornTail {
                offset: start as u64,
                lsn: last as u64,
                have,
                need
            }
        );
        assert!(torn
            .to_string()
            .starts_with(&format!("log ends with a torn frame at offset {start}")));
    }
}

#[test]
fn clean_end_at_every_frame_boundary() {
    let records = sample_records();
    let log = log_bytes(&records);
    for (count, &end) in frame_offsets(&records).iter().enumerate() {
        let summary = validate_reader(&log[..end]).unwrap();
        assert_eq!(summary.records, count as u64);
        let (read, how) = lenient(&log[..end]).unwrap();
        assert_eq!(read, records[..count]);
        assert_eq!(how, LogEnd::Clean { offset: end as u64 });
    }
}

#[test]
fn partial_frames_are_incomplete_not_errors() {
    let log = log_bytes(&sample_records());
    let frames = &log[HEADER_LEN..];
    let mut decoder = Decoder::new();
    let Decoded::Record { len, .. } = decoder.clone().decode(frames).unwrap() else {
        panic!("first frame is whole")
    };
    for cut in 0..len {
        match decoder.decode(&frames[..cut]).unwrap() {
            Decoded::Incomplete { need } => {
                assert!(need > cut && need <= len, "cut {cut}: need {need}")
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert_eq!(
        decoder.next_lsn(),
        0,
        "incomplete input leaves the decoder alone"
    );
}

// ---- flipped bytes ---------------------------------------------------------

/// What a single corrupted byte may do: the strict reader always fails; the
/// lenient one fails or, when a corrupted length points past the end, stops
/// at a reported torn frame. Never a clean end.
fn assert_detected(log: &[u8], at: usize, mask: u8) -> Result<(), TestCaseError> {
    let mut bad = log.to_vec();
    bad[at] ^= mask;
    prop_assert!(
        validate_reader(bad.as_slice()).is_err(),
        "flip {mask:#04x} at byte {at} accepted"
    );
    match lenient(&bad) {
        Err(_) | Ok((_, LogEnd::Torn(_))) => Ok(()),
        Ok((_, end)) => Err(TestCaseError::fail(format!(
            "flip {mask:#04x} at byte {at} read to a clean end {end:?}"
        ))),
    }
}

#[test]
fn every_single_byte_flip_of_the_sample_log_is_detected() {
    let log = log_bytes(&sample_records());
    for at in 0..log.len() {
        for mask in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff, 0x5a] {
            assert_detected(&log, at, mask).unwrap();
        }
    }
}

/// A corrupted length is caught by structure alone, not by CRC luck: even
/// with the CRC recomputed to match the corrupted frame (a collision), the
/// self-delimiting body ends early or leaves bytes over.
#[test]
fn corrupted_lengths_are_caught_without_the_crc() {
    let records = sample_records();
    let offsets = frame_offsets(&records);
    let log = log_bytes(&records);
    for (lsn, window) in offsets.windows(2).enumerate() {
        let start = window[0];
        let last_icount = lsn.checked_sub(1).map_or(0, |prev| records[prev].icount);
        let decoder = Decoder::resume(lsn as u64, last_icount, start as u64);
        for byte in 0..3 {
            for bit in 0..8 {
                let mut frame = log[start..].to_vec();
                frame[byte] ^= 1 << bit;
                let word: [u8; 4] = frame[..4].try_into().unwrap();
                let len = (u32::from_le_bytes(word) & 0xff_ffff) as usize;
                if len > MAX_FRAME_BODY || 8 + len > frame.len() {
                    continue; // too large or past the end: rejected on their own
                }
                let crc = crc32c::crc32c_append(crc32c::crc32c(&word), &frame[8..8 + len]);
                frame[4..8].copy_from_slice(&crc.to_le_bytes());
                let result = decoder.clone().decode(&frame);
                assert!(
                    matches!(result, Err(ReadError::Malformed { .. })),
                    "LSN {lsn}, length byte {byte} bit {bit}: {result:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_single_byte_flip_is_detected(
        records in any_records(12).prop_filter("non-empty", |r| !r.is_empty()),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let log = log_bytes(&records);
        assert_detected(&log, position.index(log.len()), mask)?;
    }

    /// Cutting a log anywhere: a clean prefix at frame boundaries, a torn
    /// tail everywhere else, and never a panic.
    #[test]
    fn truncation_anywhere(records in any_records(12), position in any::<prop::sample::Index>()) {
        let log = log_bytes(&records);
        let cut = position.index(log.len() + 1);
        let offsets = frame_offsets(&records);
        let strict = validate_reader(&log[..cut]);
        let lenient = lenient(&log[..cut]);
        if cut < HEADER_LEN {
            prop_assert!(matches!(strict, Err(ReadError::TruncatedHeader { .. })), "{:?}", strict);
            prop_assert!(matches!(lenient, Err(ReadError::TruncatedHeader { .. })), "{:?}", lenient);
        } else if let Some(count) = offsets.iter().position(|&o| o == cut) {
            prop_assert_eq!(strict.unwrap().records, count as u64);
            let (read, end) = lenient.unwrap();
            prop_assert_eq!(read, &records[..count]);
            prop_assert_eq!(end, LogEnd::Clean { offset: cut as u64 });
        } else {
            let whole = offsets.iter().filter(|&&o| o < cut).count() - 1;
            prop_assert!(matches!(strict, Err(ReadError::TruncatedFrame { .. })), "{:?}", strict);
            let (read, end) = lenient.unwrap();
            prop_assert_eq!(read, &records[..whole]);
            prop_assert!(matches!(end, LogEnd::Torn(TornTail { offset, .. }) if offset == offsets[whole] as u64), "{:?}", end);
        }
    }

    /// Arbitrary bytes after a valid header never panic the reader.
    #[test]
    fn garbage_bytes_never_panic(garbage in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut log = header().encode().to_vec();
        log.extend_from_slice(&garbage);
        let _ = validate_reader(log.as_slice());
        let _ = lenient(&log);
    }

    /// Frames whose CRC and LSN are right around hostile payloads (random
    /// bytes, or a real record's payload with bytes changed, under a known
    /// or random tag): the checksum never stops them, so the payload
    /// decoders are reached. Each is a record that survives re-encoding,
    /// or is refused as malformed, of an unknown kind or overflowing the
    /// icount, by the decoder and both readers alike; never a panic.
    #[test]
    fn garbage_frames_never_panic(frames in prop::collection::vec(hostile_frame(), 1..8)) {
        let mut decoder = Decoder::new();
        let mut raw = Vec::new();
        let mut first_error = None;
        for (lsn, (tag, payload)) in frames.iter().enumerate() {
            let mut body = Vec::new();
            put_varint(&mut body, lsn as u64);
            body.extend_from_slice(payload);
            let frame = raw_frame(*tag, &body);
            raw.push(frame.clone());
            match decoder.decode(&frame) {
                Ok(Decoded::Record { record, len }) => {
                    prop_assert_eq!(len, frame.len());
                    prop_assert_eq!(record.lsn, lsn as u64);
                    let mut again = Vec::new();
                    Encoder::resume(record.lsn, record.icount).encode(&record, &mut again).unwrap();
                    let back = Decoder::resume(record.lsn, record.icount, 0).decode(&again).unwrap();
                    prop_assert_eq!(back, Decoded::Record { record, len: again.len() });
                }
                Ok(incomplete) => prop_assert!(false, "a whole frame is {:?}", incomplete),
                Err(error) => {
                    prop_assert!(
                        matches!(
                            error,
                            ReadError::Malformed { .. }
                                | ReadError::UnknownKind { .. }
                                | ReadError::IcountOverflow { .. }
                        ),
                        "frame {} with a valid CRC and LSN: {:?}", lsn, error
                    );
                    first_error = Some(error.to_string());
                    break;
                }
            }
        }
        let log = raw_log(&raw);
        let whole = raw.len() - usize::from(first_error.is_some());
        match (validate_reader(log.as_slice()), &first_error) {
            (Ok(summary), None) => prop_assert_eq!(summary.records, whole as u64),
            (Err(e), Some(first)) => prop_assert_eq!(&e.to_string(), first),
            (strict, first) => prop_assert!(false, "strict {:?}, decoder {:?}", strict, first),
        }
        match (lenient(&log), &first_error) {
            (Ok((records, _)), None) => prop_assert_eq!(records.len(), whole),
            (Err(e), Some(first)) => prop_assert_eq!(&e.to_string(), first),
            (read, first) => prop_assert!(false, "lenient {:?}, decoder {:?}", read, first),
        }
    }
}

/// A frame's tag and its body after the LSN: an icount delta and a
/// payload, random or a real record's with some bytes changed.
fn hostile_frame() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let random = (
        prop_oneof![
            3 => prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x04, 0x05, 0x40, 0x41, 0x42, 0x80]),
            1 => any::<u8>(),
        ],
        prop::collection::vec(any::<u8>(), 0..64),
    );
    let damaged = (
        any_kind(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(kind, changes, cut)| {
            let mut frame = Vec::new();
            Encoder::new().encode_next(7, &kind, &mut frame).unwrap();
            let tag = frame[3];
            // The body after LSN 0 (one byte): the delta and the payload.
            let mut rest = frame[FRAME_HEADER_LEN + 1..].to_vec();
            for (at, value) in changes {
                if !rest.is_empty() {
                    let at = at.index(rest.len());
                    rest[at] = value;
                }
            }
            rest.truncate(cut.index(rest.len() + 1).max(rest.len().saturating_sub(2)));
            (tag, rest)
        });
    prop_oneof![random, damaged]
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
