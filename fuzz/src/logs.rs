//! Replay logs and the FT log channel: reader, frame codec, wire messages
//! and link frames.

use crate::Cursor;
use replay::{validate_reader, Decoded, Decoder, Encoder, LogReader, TailPolicy};

/// The whole log strictly (`validate_reader`) and leniently (torn tail
/// allowed): a log the strict reader accepts reads the same leniently.
pub fn replay_log(data: &[u8]) {
    let strict = validate_reader(data);
    let Ok(mut reader) = LogReader::new(data, TailPolicy::AllowTornTail) else {
        assert!(strict.is_err(), "strict reader accepted a bad header");
        return;
    };
    let mut records = 0u64;
    while let Ok(Some(_)) = reader.next_record() {
        records += 1;
    }
    if let Ok(summary) = strict {
        assert_eq!(
            summary.records, records,
            "strict and lenient readers disagree"
        );
    }
}

/// Frames built from the input with valid CRCs (the length word and CRC
/// are the harness's, tag and body the fuzzer's; with a flag the body
/// starts with the LSN the decoder expects), so the record decoders are
/// reached, not the checksum; every decoded record encodes and decodes
/// back to itself.
pub fn replay_codec(data: &[u8]) {
    let mut c = Cursor(data);
    let mut stream = Vec::new();
    let mut lsn = 0u64;
    while !c.is_empty() {
        let tag = c.u8();
        let flags = c.u8();
        let len = usize::from(c.u8());
        let mut body = Vec::new();
        if flags & 1 != 0 {
            put_varint(&mut body, lsn);
            lsn += 1;
        }
        body.extend_from_slice(c.bytes(len));
        stream.extend_from_slice(&frame(tag, &body));
    }
    let mut decoder = Decoder::new();
    let mut at = 0;
    while let Ok(Decoded::Record { record, len }) = decoder.decode(&stream[at..]) {
        let mut encoder = Encoder::resume(record.lsn, record.icount);
        let mut again = Vec::new();
        // The icount delta is relative: re-encode from the same base.
        let mut base = Decoder::resume(record.lsn, record.icount, 0);
        if encoder.encode(&record, &mut again).is_ok() {
            match base.decode(&again) {
                Ok(Decoded::Record { record: back, .. }) => {
                    assert_eq!(back, record, "record changed by encode/decode")
                }
                other => panic!("re-encoded record {record:?} does not decode: {other:?}"),
            }
        }
        at += len;
    }
}

/// A frame as `replay::Encoder` lays it out, with any tag and body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let word = (u32::from(tag) << 24) | (body.len() as u32 & 0x00ff_ffff);
    let word = word.to_le_bytes();
    let crc = crc32c_append(crc32c(&word), body);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&word);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// CRC-32C (Castagnoli), bitwise: the harness needs no crc crate of its
/// own, and checking the log's checksum code against an independent one
/// is a test in itself.
fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// One FT message: the first byte its kind, the rest its payload. A
/// decoded message encodes back to a payload that decodes to it; a
/// `Batch`'s log frames go through the replay decoder as the backup's do.
pub fn ft_wire(data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let Ok(message) = ft::wire::Message::decode(kind, payload) else {
        return;
    };
    let (kind2, payload2) = message.encode();
    let back = ft::wire::Message::decode(kind2, &payload2);
    assert_eq!(
        back.ok().as_ref(),
        Some(&message),
        "message changed by encode/decode"
    );
    if let ft::wire::Message::Batch { frames, .. } = &message {
        let mut decoder = Decoder::new();
        let mut at = 0;
        while let Ok(Decoded::Record { len, .. }) = decoder.decode(&frames[at..]) {
            at += len;
        }
    }
}

/// The link's receive side over the input as the peer's byte stream
/// (plain and as under TLS), and each frame as an FT message.
pub fn link_frames(data: &[u8]) {
    let config = ft::wire::link_config();
    for plain in [true, false] {
        if let Ok((frames, rest)) = link::parse_stream(data, &config, plain) {
            let used: usize = frames.iter().map(|f| 5 + f.payload.len()).sum();
            assert!(
                frames.is_empty() || used + rest + 10 == data.len(),
                "frames and rest do not add up"
            );
            for f in frames {
                assert!(f.payload.len() <= config.max_frame, "frame over the limit");
                let _ = ft::wire::Message::decode(f.kind, &f.payload);
            }
        }
    }
}
