//! virtio-blk (device id 2; virtio 1.2 §5.2): one request queue over a
//! [`BlockDevice`]. Every request completes synchronously, inside the queue
//! notification that submitted it (DESIGN §3.4).
//!
//! A request is a header (type, reserved, sector) in device-readable
//! memory, then data (readable for writes, writable for reads), then one
//! writable status byte. Bad requests from a well-formed chain get a status
//! (IOERR for out-of-range sectors, writes to a read-only disk, misaligned
//! lengths; UNSUPP for unknown types and flags); a chain too short to hold
//! a header and a status byte is a driver error (DEVICE_NEEDS_RESET).

use super::mmio::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
use super::queue::{Buffers, Chain};
use disk::{BlockDevice, DiskError};
use riscv::Ram;
use serde::{Deserialize, Serialize};

pub const DEVICE_ID: u32 = 2;
pub const QUEUE_SIZE: u16 = 256;
pub const SECTOR_SIZE: u64 = 512;
/// Bytes in a GET_ID answer.
pub const ID_LEN: usize = 20;

pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// `flags` bit of a discard/write-zeroes segment.
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;

/// Segments per request: the queue minus header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Limits of one discard or write-zeroes request.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
pub const MAX_DISCARD_SEG: u32 = 32;
/// Discard granularity in sectors (4 KiB, the usual image cluster floor).
pub const DISCARD_SECTOR_ALIGNMENT: u32 = 8;
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 22;
pub const MAX_WRITE_ZEROES_SEG: u32 = 32;
/// Size of the configuration space we expose (through `max_secure_erase`).
pub const CONFIG_LEN: usize = 72;

const HEADER_LEN: u64 = 16;
const SEGMENT_LEN: u64 = 16;

/// The device's guest-visible identity; the disk contents live in the
/// [`BlockDevice`] outside the machine state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// In 512-byte sectors (a partial last sector is not exposed).
    capacity_sectors: u64,
    read_only: bool,
    /// The GET_ID string, NUL padded.
    serial: [u8; ID_LEN],
}

/// A block device's saved state: its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub capacity_sectors: u64,
    pub read_only: bool,
    pub serial: [u8; ID_LEN],
}

impl Block {
    pub fn save(&self) -> BlockState {
        BlockState {
            capacity_sectors: self.capacity_sectors,
            read_only: self.read_only,
            serial: self.serial,
        }
    }

    pub fn from_state(state: &BlockState) -> Self {
        Self {
            capacity_sectors: state.capacity_sectors,
            read_only: state.read_only,
            serial: state.serial,
        }
    }

    /// `serial` longer than 20 bytes is cut.
    pub fn new(serial: &str, capacity_bytes: u64, read_only: bool) -> Self {
        let mut id = [0u8; ID_LEN];
        let n = serial.len().min(ID_LEN);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Self {
            capacity_sectors: capacity_bytes / SECTOR_SIZE,
            read_only,
            serial: id,
        }
    }

    pub fn features(&self) -> u64 {
        let common = VIRTIO_F_INDIRECT_DESC
            | VIRTIO_F_EVENT_IDX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            common | VIRTIO_BLK_F_RO
        } else {
            common | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES
        }
    }

    /// `struct virtio_blk_config`, little-endian.
    pub fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &self.capacity_sectors.to_le_bytes());
        put(12, &SEG_MAX.to_le_bytes());
        put(20, &(SECTOR_SIZE as u32).to_le_bytes());
        put(34, &1u16.to_le_bytes()); // num_queues
        put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
        put(40, &MAX_DISCARD_SEG.to_le_bytes());
        put(44, &DISCARD_SECTOR_ALIGNMENT.to_le_bytes());
        put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        put(52, &MAX_WRITE_ZEROES_SEG.to_le_bytes());
        c
    }

    /// Execute one request; returns the bytes written into the chain's
    /// writable part (data and status), or why the chain is unusable.
    pub fn handle(
        &mut self,
        chain: &Chain,
        ram: &mut Ram,
        disk: Option<&mut dyn BlockDevice>,
        negotiated: u64,
    ) -> Result<u32, &'static str> {
        let mut header = [0u8; HEADER_LEN as usize];
        if !chain.readable.read(ram, 0, &mut header) {
            return Err("the request header is shorter than 16 bytes");
        }
        let writable = chain.writable.len();
        if writable == 0 {
            return Err("the request has no status byte");
        }
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
        let request = Request {
            kind: u32::from_le_bytes([t0, t1, t2, t3]),
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            data_in: writable - 1,
            data_out: chain.readable.len().saturating_sub(HEADER_LEN),
        };
        let (status, data_written) = match disk {
            Some(disk) => self.execute(&request, chain, ram, disk, negotiated),
            None => (VIRTIO_BLK_S_IOERR, 0),
        };
        if !chain.writable.write(ram, request.data_in, &[status]) {
            return Err("the status byte is not in RAM");
        }
        // The chain's buffers are RAM, so their total fits in 64 bits; the
        // used length field is 32.
        Ok(u32::try_from(data_written + 1).unwrap_or(u32::MAX))
    }

    /// Run a parsed request: (status, data bytes written for the driver).
    fn execute(
        &mut self,
        r: &Request,
        chain: &Chain,
        ram: &mut Ram,
        disk: &mut dyn BlockDevice,
        negotiated: u64,
    ) -> (u8, u64) {
        let ok = |result: Result<(), Status>, written| match result {
            Ok(()) => (VIRTIO_BLK_S_OK, written),
            Err(Status(s)) => (s, 0),
        };
        match r.kind {
            VIRTIO_BLK_T_IN => {
                let result = self.read(r, &chain.writable, ram, disk);
                let written = if result.is_ok() { r.data_in } else { 0 };
                ok(result, written)
            }
            VIRTIO_BLK_T_OUT => ok(self.write(r, &chain.readable, ram, disk), 0),
            VIRTIO_BLK_T_FLUSH => ok(disk.flush().map_err(Status::from), 0),
            VIRTIO_BLK_T_GET_ID => {
                let n = r.data_in.min(ID_LEN as u64);
                let result = if chain.writable.write(ram, 0, &self.serial[..n as usize]) {
                    Ok(())
                } else {
                    Err(Status(VIRTIO_BLK_S_IOERR))
                };
                ok(result, n)
            }
            VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
                let result = self.discard_or_zero(r, &chain.readable, ram, disk, negotiated);
                ok(result, 0)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }

    /// The byte offset of `len` bytes at `sector`, if they are on the disk.
    fn span(&self, sector: u64, len: u64) -> Result<u64, Status> {
        let end_sector = len
            .div_ceil(SECTOR_SIZE)
            .checked_add(sector)
            .ok_or(Status(VIRTIO_BLK_S_IOERR))?;
        if end_sector > self.capacity_sectors {
            return Err(Status(VIRTIO_BLK_S_IOERR));
        }
        Ok(sector * SECTOR_SIZE)
    }

    fn read(
        &self,
        r: &Request,
        into: &Buffers,
        ram: &mut Ram,
        disk: &mut dyn BlockDevice,
    ) -> Result<(), Status> {
        if !r.data_in.is_multiple_of(SECTOR_SIZE) {
            return Err(Status(VIRTIO_BLK_S_IOERR));
        }
        let mut offset = self.span(r.sector, r.data_in)?;
        for seg in into.range(0, r.data_in) {
            let buf = ram
                .slice_mut(seg.addr, seg.len as usize)
                .ok_or(Status(VIRTIO_BLK_S_IOERR))?;
            disk.read_at(offset, buf)?;
            offset += u64::from(seg.len);
        }
        Ok(())
    }

    fn write(
        &self,
        r: &Request,
        from: &Buffers,
        ram: &Ram,
        disk: &mut dyn BlockDevice,
    ) -> Result<(), Status> {
        if self.read_only || !r.data_out.is_multiple_of(SECTOR_SIZE) {
            return Err(Status(VIRTIO_BLK_S_IOERR));
        }
        let mut offset = self.span(r.sector, r.data_out)?;
        for seg in from.range(HEADER_LEN, r.data_out) {
            let data = ram
                .slice(seg.addr, seg.len as usize)
                .ok_or(Status(VIRTIO_BLK_S_IOERR))?;
            disk.write_at(offset, data)?;
            offset += u64::from(seg.len);
        }
        Ok(())
    }

    /// DISCARD and WRITE_ZEROES: a list of (sector, count, flags) segments.
    fn discard_or_zero(
        &self,
        r: &Request,
        from: &Buffers,
        ram: &Ram,
        disk: &mut dyn BlockDevice,
        negotiated: u64,
    ) -> Result<(), Status> {
        let discard = r.kind == VIRTIO_BLK_T_DISCARD;
        let (feature, max_sectors, max_seg) = if discard {
            (VIRTIO_BLK_F_DISCARD, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG)
        } else {
            (
                VIRTIO_BLK_F_WRITE_ZEROES,
                MAX_WRITE_ZEROES_SECTORS,
                MAX_WRITE_ZEROES_SEG,
            )
        };
        if negotiated & feature == 0 {
            return Err(Status(VIRTIO_BLK_S_UNSUPP));
        }
        let count = r.data_out / SEGMENT_LEN;
        if !r.data_out.is_multiple_of(SEGMENT_LEN) || count == 0 || count > u64::from(max_seg) {
            return Err(Status(VIRTIO_BLK_S_IOERR));
        }
        if self.read_only {
            return Err(Status(VIRTIO_BLK_S_IOERR));
        }
        // Check every segment before changing anything.
        let mut ranges = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut seg = [0u8; SEGMENT_LEN as usize];
            if !from.read(ram, HEADER_LEN + i * SEGMENT_LEN, &mut seg) {
                return Err(Status(VIRTIO_BLK_S_IOERR));
            }
            let [s0, s1, s2, s3, s4, s5, s6, s7, n0, n1, n2, n3, f0, f1, f2, f3] = seg;
            let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
            let sectors = u32::from_le_bytes([n0, n1, n2, n3]);
            let flags = u32::from_le_bytes([f0, f1, f2, f3]);
            // Unknown flags, and unmap on a discard, are unsupported.
            let allowed = if discard {
                0
            } else {
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
            };
            if flags & !allowed != 0 {
                return Err(Status(VIRTIO_BLK_S_UNSUPP));
            }
            if sectors > max_sectors {
                return Err(Status(VIRTIO_BLK_S_IOERR));
            }
            let len = u64::from(sectors) * SECTOR_SIZE;
            ranges.push((self.span(sector, len)?, len));
        }
        for (offset, len) in ranges {
            if discard {
                disk.discard(offset, len)?;
            } else {
                disk.write_zeroes(offset, len)?;
            }
        }
        Ok(())
    }
}

struct Request {
    kind: u32,
    sector: u64,
    /// Writable bytes before the status byte.
    data_in: u64,
    /// Readable bytes after the header.
    data_out: u64,
}

/// A request's failure status.
struct Status(u8);

impl From<DiskError> for Status {
    fn from(_: DiskError) -> Self {
        Status(VIRTIO_BLK_S_IOERR)
    }
}
