//! The writer refuses to write a log the reader would reject, and handles
//! I/O failure without corrupting what it wrote.

mod common;

use common::*;
use replay::{
    validate_reader, Encoder, Input, LogWriter, Record, RecordKind, WriteError, HEADER_LEN,
    MAX_FRAME_BODY,
};

fn progress(lsn: u64, icount: u64) -> Record {
    Record {
        lsn,
        icount,
        kind: RecordKind::Progress,
    }
}

#[test]
fn lsns_must_be_consecutive_from_zero() {
    let mut writer = LogWriter::new(Vec::new(), &header());
    let error = writer.append(&progress(1, 0)).unwrap_err();
    assert!(
        matches!(
            error,
            WriteError::LsnOutOfOrder {
                expected: 0,
                got: 1
            }
        ),
        "{error}"
    );
    writer.append(&progress(0, 0)).unwrap();
    for bad in [0, 2, u64::MAX] {
        let error = writer.append(&progress(bad, 0)).unwrap_err();
        assert!(
            matches!(error, WriteError::LsnOutOfOrder { expected: 1, .. }),
            "{error}"
        );
    }
    writer.append(&progress(1, 0)).unwrap();
    // Refused records left no trace.
    let log = writer.into_inner().unwrap();
    assert_eq!(validate_reader(log.as_slice()).unwrap().records, 2);
}

#[test]
fn icount_must_not_go_backwards() {
    let mut writer = LogWriter::new(Vec::new(), &header());
    writer.append(&progress(0, 1_000)).unwrap();
    writer.append(&progress(1, 1_000)).unwrap(); // equal is fine
    let error = writer.append(&progress(2, 999)).unwrap_err();
    assert!(
        matches!(
            error,
            WriteError::IcountBackwards {
                lsn: 2,
                previous: 1_000,
                got: 999
            }
        ),
        "{error}"
    );
    let error = writer.append_next(0, &RecordKind::Progress).unwrap_err();
    assert!(matches!(error, WriteError::IcountBackwards { .. }));
    assert_eq!(writer.next_lsn(), 2);
    assert_eq!(writer.last_icount(), 1_000);
    assert_eq!(writer.append_next(1_001, &RecordKind::Progress).unwrap(), 2);
    let log = writer.into_inner().unwrap();
    assert_eq!(validate_reader(log.as_slice()).unwrap().last_icount, 1_001);
}

#[test]
fn oversized_records_are_refused_whole() {
    let mut writer = LogWriter::new(Vec::new(), &header());
    let too_big = RecordKind::Input(Input::NetFrame {
        nic: 0,
        frame: vec![0; MAX_FRAME_BODY],
    });
    let error = writer.append_next(5, &too_big).unwrap_err();
    assert!(
        matches!(error, WriteError::RecordTooLarge { lsn: 0, size, max: MAX_FRAME_BODY } if size > MAX_FRAME_BODY),
        "{error}"
    );
    assert_eq!(
        writer.buffered(),
        HEADER_LEN,
        "nothing of the refused record stays"
    );
    // The largest frame that fits is accepted and read back.
    let fits = RecordKind::Input(Input::NetFrame {
        nic: 0,
        frame: vec![7; MAX_FRAME_BODY - 6], // lsn 1 + delta 1 + nic 1 + len 3
    });
    writer.append_next(5, &fits).unwrap();
    let log = writer.into_inner().unwrap();
    assert_eq!(log.len(), HEADER_LEN + 8 + MAX_FRAME_BODY);
    assert_eq!(validate_reader(log.as_slice()).unwrap().records, 1);
}

#[test]
fn encoder_errors_leave_the_batch_untouched() {
    let mut encoder = Encoder::new();
    let mut batch = b"earlier frames".to_vec();
    assert!(encoder.encode(&progress(3, 0), &mut batch).is_err());
    assert_eq!(batch, b"earlier frames");
    assert_eq!(encoder.next_lsn(), 0);
}

/// A writer that accepts `budget` bytes, then fails.
struct Flaky {
    written: Vec<u8>,
    budget: usize,
}

impl std::io::Write for Flaky {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.budget == 0 {
            return Err(std::io::Error::other("device gone"));
        }
        let n = buf.len().min(self.budget);
        self.written.extend_from_slice(&buf[..n]);
        self.budget -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_stops_the_writer() {
    let flaky = Flaky {
        written: Vec::new(),
        budget: HEADER_LEN + 20,
    };
    let mut writer = LogWriter::new(flaky, &header());
    for record in sample_records() {
        writer.append(&record).unwrap(); // buffered: nothing fails yet
    }
    let error = writer.flush().unwrap_err();
    assert!(
        matches!(error, WriteError::Io { .. }) && error.to_string().contains("device gone"),
        "{error}"
    );
    let next = writer.next_lsn();
    assert!(matches!(
        writer.append_next(u64::MAX, &RecordKind::Progress),
        Err(WriteError::Failed)
    ));
    assert!(matches!(writer.flush(), Err(WriteError::Failed)));
    assert_eq!(writer.next_lsn(), next);
    // What reached the device is a valid log with a torn tail, nothing worse.
    let written = writer.get_ref().written.clone();
    assert_eq!(written.len(), HEADER_LEN + 20);
    assert!(validate_reader(written.as_slice()).is_err());
}

#[test]
fn buffer_goes_out_when_full_and_on_drop() {
    let mut sink = Vec::new();
    {
        let mut writer = LogWriter::new(&mut sink, &header());
        let mut icount = 0;
        while writer.get_ref().is_empty() {
            icount += 1_000;
            writer.append_next(icount, &RecordKind::Progress).unwrap();
            assert!(
                writer.buffered() <= 64 * 1024 + 64,
                "buffer grew to {}",
                writer.buffered()
            );
        }
        writer
            .append_next(icount, &RecordKind::Input(Input::ClockWarp { ticks: 9 }))
            .unwrap();
        assert!(writer.buffered() > 0);
    } // dropped without flush
    let summary = validate_reader(sink.as_slice()).unwrap();
    assert!(summary.records > 1_000, "{summary:?}");
    assert_eq!(summary.inputs, 1);
}
