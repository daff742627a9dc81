//! Unsigned LEB128 and a cursor over a frame body. Small enough that a crate
//! would cost more than it saves; the reader's rules (shortest form only,
//! at most 64 bits) are part of the format.

/// Appends `value` as unsigned LEB128 in its shortest form.
pub(crate) fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a frame body front to back; every error is a static description
/// that the decoder wraps with the frame's offset and LSN.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or("payload runs past the end of the frame")?;
        self.bytes = rest;
        Ok(first)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = self.u8()?;
            if index == 9 && byte > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err("varint not in shortest form");
                }
                return Ok(value);
            }
        }
        Err("varint overflows 64 bits")
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if len > self.bytes.len() {
            return Err("payload runs past the end of the frame");
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, &'static str> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| "byte string longer than the frame")?;
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: u64) -> u64 {
        let mut out = Vec::new();
        put(&mut out, value);
        let mut cursor = Cursor::new(&out);
        let back = cursor.varint().unwrap();
        assert!(cursor.is_empty());
        back
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            assert_eq!(round_trip(value), value);
        }
    }

    #[test]
    fn varint_sizes() {
        let size = |v| {
            let mut out = Vec::new();
            put(&mut out, v);
            out.len()
        };
        assert_eq!(size(127), 1);
        assert_eq!(size(128), 2);
        assert_eq!(size(u64::MAX), 10);
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        assert_eq!(
            Cursor::new(&[0x80, 0x00]).varint(),
            Err("varint not in shortest form")
        );
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(
            Cursor::new(&too_big).varint(),
            Err("varint overflows 64 bits")
        );
        assert_eq!(
            Cursor::new(&[0x80]).varint(),
            Err("payload runs past the end of the frame")
        );
    }
}
