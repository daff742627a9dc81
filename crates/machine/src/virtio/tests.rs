//! The virtio devices driven through guest RAM and MMIO accesses the way a
//! driver drives them, plus a property test throwing random queues,
//! descriptors and register writes at them.

use super::blk::*;
use super::mmio::*;
use super::queue::*;
use super::*;
use disk::MemDisk;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const BASE: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 1 << 20;
const DESC: u64 = BASE + 0x1000;
const AVAIL: u64 = BASE + 0x2000;
const USED: u64 = BASE + 0x3000;
/// Request headers, data and status bytes go here.
const DATA: u64 = BASE + 0x10000;
const SIZE: u16 = 16;
const SEED: [u8; 32] = [0x5a; 32];

/// A minimal virtio driver over one queue.
struct Driver {
    ram: Ram,
    dev: VirtioMmio,
    disk: Option<MemDisk>,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
    /// Where the next buffer goes in the data area.
    cursor: u64,
}

/// One buffer of a request: where it is, how long, device-writable or not.
#[derive(Clone, Copy)]
struct Buf {
    addr: u64,
    len: u32,
    write: bool,
}

impl Driver {
    fn new(dev: VirtioMmio, disk: Option<MemDisk>, features: u64) -> Self {
        let mut d = Self {
            ram: Ram::new(BASE, RAM_SIZE).unwrap(),
            dev,
            disk,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
            cursor: DATA,
        };
        d.init(features);
        d
    }

    fn blk(disk: MemDisk, features: u64) -> Self {
        let dev = VirtioMmio::block("lockstep-vda", disk.capacity(), disk.read_only());
        Self::new(dev, Some(disk), features)
    }

    fn reg(&mut self, offset: u64, val: u32) {
        self.dev.store(offset, 4, u64::from(val)).unwrap();
    }

    fn read_reg(&self, offset: u64) -> u32 {
        self.dev.load(offset, 4).unwrap() as u32
    }

    fn status(&self) -> u32 {
        self.read_reg(STATUS)
    }

    fn offered(&mut self) -> u64 {
        self.reg(DEVICE_FEATURES_SEL, 1);
        let hi = self.read_reg(DEVICE_FEATURES);
        self.reg(DEVICE_FEATURES_SEL, 0);
        u64::from(hi) << 32 | u64::from(self.read_reg(DEVICE_FEATURES))
    }

    /// The driver initialisation sequence (virtio 1.2 §3.1.1), accepting
    /// `wanted & offered`.
    fn init(&mut self, wanted: u64) {
        assert_eq!(self.read_reg(MAGIC_VALUE), MAGIC);
        assert_eq!(self.read_reg(VERSION_REG), 2);
        self.reg(STATUS, 0);
        self.reg(STATUS, STATUS_ACKNOWLEDGE);
        self.reg(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let accept = self.offered() & wanted;
        self.reg(DRIVER_FEATURES_SEL, 0);
        self.reg(DRIVER_FEATURES, accept as u32);
        self.reg(DRIVER_FEATURES_SEL, 1);
        self.reg(DRIVER_FEATURES, (accept >> 32) as u32);
        self.reg(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_ne!(self.status() & STATUS_FEATURES_OK, 0, "features refused");
        self.reg(QUEUE_SEL, 0);
        assert_eq!(self.read_reg(QUEUE_READY), 0);
        assert!(self.read_reg(QUEUE_NUM_MAX) >= u32::from(SIZE));
        self.reg(QUEUE_NUM, u32::from(SIZE));
        for (low, addr) in [
            (QUEUE_DESC_LOW, DESC),
            (QUEUE_DRIVER_LOW, AVAIL),
            (QUEUE_DEVICE_LOW, USED),
        ] {
            self.reg(low, addr as u32);
            self.reg(low + 4, (addr >> 32) as u32);
        }
        self.reg(QUEUE_READY, 1);
        self.reg(STATUS, self.status() | STATUS_DRIVER_OK);
        assert_eq!(self.status() & STATUS_DRIVER_OK, STATUS_DRIVER_OK);
    }

    /// Space for `len` bytes in the data area.
    fn alloc(&mut self, len: u64) -> u64 {
        let at = self.cursor;
        self.cursor = (self.cursor + len + 15) & !15;
        assert!(self.cursor < BASE + RAM_SIZE);
        at
    }

    fn put_desc(&mut self, table: u64, i: u16, b: Buf, next: Option<u16>, extra_flags: u16) {
        let mut flags = extra_flags;
        if b.write {
            flags |= VIRTQ_DESC_F_WRITE;
        }
        if next.is_some() {
            flags |= VIRTQ_DESC_F_NEXT;
        }
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&b.addr.to_le_bytes());
        d[8..12].copy_from_slice(&b.len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.unwrap_or(0).to_le_bytes());
        assert!(self.ram.write(table + 16 * u64::from(i), &d));
    }

    fn make_available(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % SIZE);
        assert!(self.ram.write(AVAIL + 4 + 2 * slot, &head.to_le_bytes()));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        assert!(self.ram.write(AVAIL + 2, &self.avail_idx.to_le_bytes()));
    }

    /// Chain `bufs` through the descriptor table and make it available.
    fn submit(&mut self, bufs: &[Buf]) -> u16 {
        let ids: Vec<u16> = (0..bufs.len())
            .map(|k| (self.next_desc + k as u16) % SIZE)
            .collect();
        self.next_desc = (self.next_desc + bufs.len() as u16) % SIZE;
        for (k, b) in bufs.iter().enumerate() {
            self.put_desc(DESC, ids[k], *b, ids.get(k + 1).copied(), 0);
        }
        self.make_available(ids[0]);
        ids[0]
    }

    /// Put `bufs` in an indirect table and make that available.
    fn submit_indirect(&mut self, bufs: &[Buf]) -> u16 {
        let table = self.alloc(16 * bufs.len() as u64);
        for (k, b) in bufs.iter().enumerate() {
            let next = (k + 1 < bufs.len()).then_some(k as u16 + 1);
            self.put_desc(table, k as u16, *b, next, 0);
        }
        let head = self.next_desc;
        self.next_desc = (self.next_desc + 1) % SIZE;
        let ind = Buf {
            addr: table,
            len: 16 * bufs.len() as u32,
            write: false,
        };
        self.put_desc(DESC, head, ind, None, VIRTQ_DESC_F_INDIRECT);
        self.make_available(head);
        head
    }

    /// Notify queue 0 and let the device run, as the machine does after
    /// the notifying store.
    fn kick(&mut self) -> Result<(), VirtioError> {
        self.reg(QUEUE_NOTIFY, 0);
        let disk = self.disk.as_mut().map(|d| d as &mut dyn BlockDevice);
        process(&mut self.dev, &mut self.ram, disk)
    }

    /// Used entries since the last call: (id, len).
    fn take_used(&mut self) -> Vec<(u32, u32)> {
        let idx = u16::from_le_bytes(self.ram.slice(USED + 2, 2).unwrap().try_into().unwrap());
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = USED + 4 + 8 * u64::from(self.used_seen % SIZE);
            out.push((
                self.ram.read_u32(at).unwrap(),
                self.ram.read_u32(at + 4).unwrap(),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    fn data(&mut self, bytes: &[u8]) -> Buf {
        let addr = self.alloc(bytes.len() as u64);
        assert!(self.ram.write(addr, bytes));
        Buf {
            addr,
            len: bytes.len() as u32,
            write: false,
        }
    }

    fn space(&mut self, len: u32) -> Buf {
        let addr = self.alloc(u64::from(len));
        // Poison, so the test sees what the device wrote.
        assert!(self.ram.write(addr, &vec![0xee; len as usize]));
        Buf {
            addr,
            len,
            write: true,
        }
    }

    fn bytes(&self, b: Buf) -> Vec<u8> {
        self.ram.slice(b.addr, b.len as usize).unwrap().to_vec()
    }

    fn disk(&self) -> &[u8] {
        self.disk.as_ref().unwrap().contents()
    }
}

fn header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

fn segment(sector: u64, sectors: u32, flags: u32) -> Vec<u8> {
    let mut s = sector.to_le_bytes().to_vec();
    s.extend_from_slice(&sectors.to_le_bytes());
    s.extend_from_slice(&flags.to_le_bytes());
    s
}

/// Everything a driver may want from the block device.
const ALL_BLK: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_INDIRECT_DESC
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_BLK_F_SEG_MAX
    | VIRTIO_BLK_F_BLK_SIZE
    | VIRTIO_BLK_F_FLUSH
    | VIRTIO_BLK_F_DISCARD
    | VIRTIO_BLK_F_WRITE_ZEROES
    | VIRTIO_BLK_F_RO;

impl Driver {
    /// One block request; returns (status, data read, used length).
    fn blk_request(
        &mut self,
        kind: u32,
        sector: u64,
        out: &[u8],
        in_len: u32,
    ) -> (u8, Vec<u8>, u32) {
        let mut bufs = vec![self.data(&header(kind, sector))];
        if !out.is_empty() {
            bufs.push(self.data(out));
        }
        let input = (in_len > 0).then(|| self.space(in_len));
        bufs.extend(input);
        let status = self.space(1);
        bufs.push(status);
        let head = self.submit(&bufs);
        self.kick().unwrap();
        let used = self.take_used();
        assert_eq!(used.len(), 1, "one request, one used entry");
        assert_eq!(used[0].0, u32::from(head));
        let data = input.map(|b| self.bytes(b)).unwrap_or_default();
        (self.bytes(status)[0], data, used[0].1)
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

#[test]
fn blk_config_space() {
    let d = Driver::blk(MemDisk::new(1 << 20), ALL_BLK);
    let dev = &d.dev;
    assert_eq!(dev.load(DEVICE_ID_REG, 4), Some(2));
    assert_eq!(dev.load(CONFIG, 8), Some(2048), "capacity in sectors");
    assert_eq!(dev.load(CONFIG, 4), Some(2048));
    assert_eq!(dev.load(CONFIG + 4, 4), Some(0));
    assert_eq!(dev.load(CONFIG + 12, 4), Some(u64::from(SEG_MAX)));
    assert_eq!(dev.load(CONFIG + 20, 4), Some(512), "blk_size");
    assert_eq!(dev.load(CONFIG + 21, 1), Some(2));
    assert_eq!(dev.load(CONFIG + 20, 2), Some(512));
    assert_eq!(
        dev.load(CONFIG + 36, 4),
        Some(u64::from(MAX_DISCARD_SECTORS))
    );
    assert_eq!(dev.load(CONFIG + 40, 4), Some(u64::from(MAX_DISCARD_SEG)));
    assert_eq!(
        dev.load(CONFIG + 52, 4),
        Some(u64::from(MAX_WRITE_ZEROES_SEG))
    );
    assert_eq!(dev.load(CONFIG + 0x200, 4), Some(0), "past the config");
    assert_eq!(dev.load(CONFIG, 3), None);
    // Registers are 32-bit only.
    assert_eq!(dev.load(MAGIC_VALUE, 8), None);
    assert_eq!(dev.load(STATUS, 1), None);
    let mut dev = dev.clone();
    assert_eq!(dev.store(STATUS, 2, 0), None);
    // Config writes are ignored.
    dev.store(CONFIG, 8, 0).unwrap();
    assert_eq!(dev.load(CONFIG, 8), Some(2048));
}

#[test]
fn blk_write_then_read_back() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    let data = pattern(1024, 1);
    let (status, _, len) = d.blk_request(VIRTIO_BLK_T_OUT, 3, &data, 0);
    assert_eq!((status, len), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(&d.disk()[3 * 512..5 * 512], &data[..]);
    assert!(d.disk()[..3 * 512].iter().all(|&b| b == 0));
    assert!(d.disk()[5 * 512..].iter().all(|&b| b == 0));

    let (status, back, len) = d.blk_request(VIRTIO_BLK_T_IN, 3, &[], 1024);
    assert_eq!((status, len), (VIRTIO_BLK_S_OK, 1025));
    assert_eq!(back, data);
    assert_eq!(d.dev.load(INTERRUPT_STATUS, 4), Some(1));
    assert!(d.dev.irq_level());
    d.reg(INTERRUPT_ACK, 1);
    assert!(!d.dev.irq_level());
}

#[test]
fn blk_requests_split_oddly_and_indirect() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    // Header split over two buffers, data over three uneven ones, the
    // status byte sharing the last writable buffer with data.
    let data = pattern(1536, 7);
    let mut req = header(VIRTIO_BLK_T_OUT, 10);
    req.extend_from_slice(&data);
    let bufs: Vec<Buf> = [&req[..5], &req[5..300], &req[300..1000], &req[1000..]]
        .iter()
        .map(|part| d.data(part))
        .collect();
    let status = d.space(1);
    let mut chain = bufs.clone();
    chain.push(status);
    d.submit(&chain);
    d.kick().unwrap();
    assert_eq!(d.take_used().len(), 1);
    assert_eq!(d.bytes(status), [VIRTIO_BLK_S_OK]);
    assert_eq!(&d.disk()[10 * 512..13 * 512], &data[..]);

    // Read it back through an indirect table: 700 + 837 bytes, the last
    // of which is the status.
    let head = d.data(&header(VIRTIO_BLK_T_IN, 10));
    let (a, b) = (d.space(700), d.space(837));
    d.submit_indirect(&[head, a, b]);
    d.kick().unwrap();
    assert_eq!(d.take_used()[0].1, 1537);
    let mut back = d.bytes(a);
    back.extend(d.bytes(b));
    assert_eq!(back.pop(), Some(VIRTIO_BLK_S_OK));
    assert_eq!(back, data);
}

#[test]
fn blk_several_requests_in_one_notify() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    let mut statuses = Vec::new();
    for sector in 0..5u64 {
        let h = d.data(&header(VIRTIO_BLK_T_OUT, sector));
        let data = d.data(&[sector as u8 + 1; 512]);
        let s = d.space(1);
        d.submit(&[h, data, s]);
        statuses.push(s);
    }
    d.kick().unwrap();
    assert_eq!(d.take_used().len(), 5);
    for (sector, s) in statuses.into_iter().enumerate() {
        assert_eq!(d.bytes(s), [VIRTIO_BLK_S_OK]);
        assert_eq!(d.disk()[sector * 512], sector as u8 + 1);
    }
}

#[test]
fn blk_flush_get_id_and_unknown() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0,
        VIRTIO_BLK_S_OK
    );
    let (status, id, len) = d.blk_request(VIRTIO_BLK_T_GET_ID, 0, &[], 20);
    assert_eq!((status, len), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(&id[..], b"lockstep-vda\0\0\0\0\0\0\0\0");
    assert_eq!(d.blk_request(99, 0, &[], 0).0, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(
        d.blk_request(10, 0, &[], 16).0,
        VIRTIO_BLK_S_UNSUPP,
        "GET_LIFETIME"
    );
}

#[test]
fn blk_discard_and_write_zeroes() {
    let disk = MemDisk::with_contents(vec![0xab; 64 << 10], false);
    let mut d = Driver::blk(disk, ALL_BLK);
    let mut segs = segment(2, 2, 0);
    segs.extend(segment(10, 1, 0));
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_DISCARD, 0, &segs, 0).0,
        VIRTIO_BLK_S_OK
    );
    assert!(d.disk()[2 * 512..4 * 512].iter().all(|&b| b == 0));
    assert!(d.disk()[10 * 512..11 * 512].iter().all(|&b| b == 0));
    assert_eq!(d.disk()[4 * 512], 0xab);
    assert_eq!(d.disk()[11 * 512], 0xab);

    let seg = segment(20, 3, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 0).0,
        VIRTIO_BLK_S_OK
    );
    assert!(d.disk()[20 * 512..23 * 512].iter().all(|&b| b == 0));
    assert_eq!(d.disk()[23 * 512], 0xab);

    let cases: [(u32, Vec<u8>, u8, &str); 6] = [
        (
            VIRTIO_BLK_T_DISCARD,
            segment(30, 1, 1),
            VIRTIO_BLK_S_UNSUPP,
            "unmap on discard",
        ),
        (
            VIRTIO_BLK_T_WRITE_ZEROES,
            segment(30, 1, 2),
            VIRTIO_BLK_S_UNSUPP,
            "unknown flag",
        ),
        (
            VIRTIO_BLK_T_DISCARD,
            segment(127, 2, 0),
            VIRTIO_BLK_S_IOERR,
            "past the end",
        ),
        (
            VIRTIO_BLK_T_DISCARD,
            segment(30, 1, 0)[..12].to_vec(),
            VIRTIO_BLK_S_IOERR,
            "short segment",
        ),
        (
            VIRTIO_BLK_T_DISCARD,
            segment(u64::MAX, 1, 0),
            VIRTIO_BLK_S_IOERR,
            "sector overflow",
        ),
        (
            VIRTIO_BLK_T_WRITE_ZEROES,
            segment(0, MAX_WRITE_ZEROES_SECTORS + 1, 0),
            VIRTIO_BLK_S_IOERR,
            "too many sectors",
        ),
    ];
    for (kind, seg, want, what) in cases {
        let before = d.disk().to_vec();
        assert_eq!(d.blk_request(kind, 0, &seg, 0).0, want, "{what}");
        assert_eq!(d.disk(), &before[..], "{what}: nothing changed");
    }
    // A bad segment anywhere fails the whole request before any change.
    let mut segs = segment(40, 1, 0);
    segs.extend(segment(1000, 1, 0));
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_DISCARD, 0, &segs, 0).0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(d.disk()[40 * 512], 0xab);
    let many: Vec<u8> = (0..MAX_DISCARD_SEG + 1)
        .flat_map(|i| segment(u64::from(i), 1, 0))
        .collect();
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_DISCARD, 0, &many, 0).0,
        VIRTIO_BLK_S_IOERR
    );
}

#[test]
fn blk_discard_needs_the_feature() {
    let disk = MemDisk::with_contents(vec![0xab; 64 << 10], false);
    let mut d = Driver::blk(disk, ALL_BLK & !VIRTIO_BLK_F_DISCARD);
    let (status, _, _) = d.blk_request(VIRTIO_BLK_T_DISCARD, 0, &segment(0, 1, 0), 0);
    assert_eq!(status, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(d.disk()[0], 0xab);
}

#[test]
fn blk_out_of_range_and_misaligned_are_ioerr() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK); // 128 sectors
    let cases: [(u32, u64, usize, u32); 6] = [
        (VIRTIO_BLK_T_IN, 127, 0, 1024),
        (VIRTIO_BLK_T_IN, 128, 0, 512),
        (VIRTIO_BLK_T_IN, u64::MAX, 0, 512),
        (VIRTIO_BLK_T_OUT, 127, 1024, 0),
        (VIRTIO_BLK_T_OUT, 1 << 55, 512, 0),
        (VIRTIO_BLK_T_IN, 0, 0, 100),
    ];
    for (kind, sector, out_len, in_len) in cases {
        let (status, _, _) = d.blk_request(kind, sector, &vec![1; out_len], in_len);
        assert_eq!(status, VIRTIO_BLK_S_IOERR, "type {kind} sector {sector}");
    }
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_OUT, 0, &[1; 100], 0).0,
        VIRTIO_BLK_S_IOERR
    );
    assert!(d.disk().iter().all(|&b| b == 0), "nothing written");
    // The last sector is fine.
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_OUT, 127, &[9; 512], 0).0,
        VIRTIO_BLK_S_OK
    );
    assert_eq!(d.disk()[127 * 512], 9);
    // A partial last sector of the disk is not exposed.
    let d = Driver::blk(MemDisk::new(1000), ALL_BLK);
    assert_eq!(d.dev.load(CONFIG, 8), Some(1));
}

#[test]
fn blk_read_only() {
    let disk = MemDisk::with_contents(pattern(64 << 10, 3), true);
    let mut d = Driver::blk(disk, ALL_BLK);
    let offered = d.offered();
    assert_ne!(offered & VIRTIO_BLK_F_RO, 0);
    assert_eq!(
        offered & (VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES),
        0
    );
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0).0,
        VIRTIO_BLK_S_IOERR
    );
    let seg = segment(0, 1, 0);
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 0).0,
        VIRTIO_BLK_S_UNSUPP
    );
    assert_eq!(d.disk(), &pattern(64 << 10, 3)[..]);
    let (status, data, _) = d.blk_request(VIRTIO_BLK_T_IN, 1, &[], 512);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(data, pattern(64 << 10, 3)[512..1024]);
}

#[test]
fn blk_without_a_disk_answers_ioerr() {
    let dev = VirtioMmio::block("x", 1 << 20, false);
    let mut d = Driver::new(dev, None, ALL_BLK);
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_IN, 0, &[], 512).0,
        VIRTIO_BLK_S_IOERR
    );
}

#[test]
fn malformed_requests_need_reset() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    let short = d.data(&header(VIRTIO_BLK_T_IN, 0)[..12]);
    let status = d.space(1);
    d.submit(&[short, status]);
    assert!(matches!(
        d.kick(),
        Err(VirtioError::BadRequest { reason, .. }) if reason.contains("header")
    ));
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.read_reg(INTERRUPT_STATUS), INT_CONFIG_CHANGE);
    assert_eq!(d.bytes(status), [0xee], "nothing completed");
    assert!(d.take_used().is_empty());
    // Stopped: later notifications do nothing.
    d.blk_request_expect_nothing();
    // After a reset and a new initialisation the device works again.
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    let h = d.data(&header(VIRTIO_BLK_T_FLUSH, 0));
    d.submit(&[h]);
    assert!(
        matches!(d.kick(), Err(VirtioError::BadRequest { .. })),
        "no status byte"
    );
    d.init(ALL_BLK);
    assert_eq!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    d.next_desc = 0;
    d.avail_idx = 0;
    d.used_seen = 0;
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0,
        VIRTIO_BLK_S_OK
    );
}

impl Driver {
    fn blk_request_expect_nothing(&mut self) {
        let h = self.data(&header(VIRTIO_BLK_T_FLUSH, 0));
        let s = self.space(1);
        self.submit(&[h, s]);
        assert_eq!(self.kick(), Ok(()));
        assert!(self.take_used().is_empty());
        assert_eq!(self.bytes(s), [0xee]);
    }
}

#[test]
fn buffer_outside_ram_needs_reset_and_writes_nothing() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    let h = d.data(&header(VIRTIO_BLK_T_IN, 0));
    let straddle = Buf {
        addr: BASE + RAM_SIZE - 256,
        len: 512,
        write: true,
    };
    let s = d.space(1);
    d.submit(&[h, straddle, s]);
    let before = d.ram.as_slice().to_vec();
    assert!(matches!(
        d.kick(),
        Err(VirtioError::Queue {
            source: QueueError::BadBuffer { .. },
            ..
        })
    ));
    assert_eq!(d.ram.as_slice(), &before[..]);
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn event_idx_suppresses_the_interrupt() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    assert_eq!(
        d.blk_request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0,
        VIRTIO_BLK_S_OK
    );
    assert!(d.dev.irq_level(), "first completion interrupts");
    d.reg(INTERRUPT_ACK, INT_USED_BUFFER);
    // avail_event asks for a notification of the next buffer.
    let avail_event = USED + 4 + 8 * u64::from(SIZE);
    assert_eq!(d.ram.slice(avail_event, 2).unwrap(), 1u16.to_le_bytes());
    // The driver asks for an interrupt only after used entry 2.
    let used_event = AVAIL + 4 + 2 * u64::from(SIZE);
    assert!(d.ram.write(used_event, &2u16.to_le_bytes()));
    d.blk_request(VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    assert!(!d.dev.irq_level(), "entry 1 used: suppressed");
    d.blk_request(VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    assert!(d.dev.irq_level(), "entry 2 used: interrupt");
}

#[test]
fn no_processing_before_driver_ok() {
    let mut d = Driver::blk(MemDisk::new(64 << 10), ALL_BLK);
    d.reg(
        STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    );
    // Status went backwards without reset; treat like a driver before
    // DRIVER_OK: nothing is consumed...
    let h = d.data(&header(VIRTIO_BLK_T_FLUSH, 0));
    let s = d.space(1);
    d.submit(&[h, s]);
    d.kick().unwrap();
    assert!(d.take_used().is_empty());
    // ...until DRIVER_OK, which handles what is waiting.
    d.reg(STATUS, d.status() | STATUS_DRIVER_OK);
    assert!(d.dev.has_work());
    let disk = d.disk.as_mut().map(|x| x as &mut dyn BlockDevice);
    process(&mut d.dev, &mut d.ram, disk).unwrap();
    assert_eq!(d.take_used().len(), 1);
    assert_eq!(d.bytes(s), [VIRTIO_BLK_S_OK]);
}

/// Run the device's notified work as the machine does, dropping outputs.
fn process(
    dev: &mut VirtioMmio,
    ram: &mut Ram,
    disk: Option<&mut dyn BlockDevice>,
) -> Result<(), VirtioError> {
    let mut output = crate::io::NullOutput;
    let io = DeviceIo {
        disk: disk.map(|d| &mut *d as &mut dyn BlockDevice),
        output: &mut output,
        icount: 0,
    };
    dev.process(ram, io)
}

fn chacha(seed: [u8; 32], skip: usize, len: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut out = vec![0u8; skip + len];
    rng.fill_bytes(&mut out);
    out.split_off(skip)
}

fn rng_driver(seed: [u8; 32]) -> Driver {
    Driver::new(
        VirtioMmio::rng(seed),
        None,
        VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX,
    )
}

impl Driver {
    fn entropy(&mut self, lens: &[u32]) -> (Vec<u8>, u32) {
        let bufs: Vec<Buf> = lens.iter().map(|&l| self.space(l)).collect();
        self.submit(&bufs);
        self.kick().unwrap();
        let used = self.take_used();
        assert_eq!(used.len(), 1);
        (
            bufs.iter().flat_map(|&b| self.bytes(b)).collect(),
            used[0].1,
        )
    }
}

#[test]
fn rng_is_chacha20_of_the_seed() {
    let mut d = rng_driver(SEED);
    assert_eq!(d.read_reg(DEVICE_ID_REG), 4);
    let (bytes, len) = d.entropy(&[16]);
    assert_eq!(len, 16);
    assert_eq!(bytes, chacha(SEED, 0, 16));
    // The stream continues across buffers and requests.
    let (bytes, len) = d.entropy(&[32, 32]);
    assert_eq!(len, 64);
    assert_eq!(bytes, chacha(SEED, 16, 64));
    // A buffer that is not whole 32-bit words wastes the rest of its last.
    assert_eq!(d.entropy(&[30]).0, chacha(SEED, 80, 30));
    assert_eq!(d.entropy(&[4]).0, chacha(SEED, 112, 4));
    let other = rng_driver([1; 32]).entropy(&[16]).0;
    assert_ne!(other, chacha(SEED, 0, 16), "another seed, another stream");
}

#[test]
fn rng_state_survives_snapshot_and_reset() {
    let mut d = rng_driver(SEED);
    d.entropy(&[64]);
    let saved = postcard::to_stdvec(&d.dev.save()).unwrap();
    let (next, _) = d.entropy(&[32]);
    let state: VirtioState = postcard::from_bytes(&saved).unwrap();
    let restored = VirtioMmio::restore(&state, &VirtioMmio::rng(SEED)).unwrap();
    let mut d2 = rng_driver(SEED);
    d2.dev = restored;
    d2.init(VIRTIO_F_VERSION_1);
    assert_eq!(d2.entropy(&[32]).0, next, "resumes where the snapshot was");
    // A reset (status 0) keeps the position: no bytes handed out twice.
    let (after_reset, _) = {
        d.init(VIRTIO_F_VERSION_1);
        d.next_desc = 0;
        d.avail_idx = 0;
        d.used_seen = 0;
        d.entropy(&[32])
    };
    assert_eq!(after_reset, chacha(SEED, 96, 32));
    assert!(
        !format!("{:?}", d.dev).contains("90, 90"),
        "seed kept out of Debug"
    );
    let spec = VirtioSpec::Rng { seed: SEED };
    assert_eq!(format!("{spec:?}"), "Rng { seed: \"<secret>\" }");
}

#[test]
fn rng_caps_each_request() {
    let mut d = rng_driver(SEED);
    let (bytes, len) = d.entropy(&[40_000, 40_000]);
    assert_eq!(u64::from(len), rng::MAX_BYTES_PER_REQUEST);
    assert_eq!(&bytes[..len as usize], &chacha(SEED, 0, len as usize)[..]);
    assert!(bytes[len as usize..].iter().all(|&b| b == 0xee));
}

mod fuzz {
    //! Random queues, descriptor tables, ring indices and register writes.
    //! RAM is split into areas the device may write (the used ring at its
    //! proper place, the buffer pool) and areas it must never touch; every
    //! buffer address the test generates is either wholly in the pool or
    //! (partly) outside RAM, so any change outside the writable areas is a
    //! bug.

    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::RngCore;

    const FZ_SIZE: u64 = 0x10000;
    const FZ_DESC: u64 = BASE;
    const FZ_AVAIL: u64 = BASE + 0x1000;
    const FZ_USED: u64 = BASE + 0x2000;
    const FZ_USED_END: u64 = BASE + 0x3000;
    const POOL: u64 = BASE + 0x4000;
    const POOL_END: u64 = BASE + 0xc000;

    fn writable(pa: u64) -> bool {
        (FZ_USED..FZ_USED_END).contains(&pa) || (POOL..POOL_END).contains(&pa)
    }

    /// Addresses for the three areas: the right one, or wrong ones.
    fn area_addr(good: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            6 => Just(good),
            1 => Just(good + 2),
            1 => Just(good + 8),
            1 => Just(0u64),
            1 => Just(BASE + FZ_SIZE - 8),
            1 => Just(BASE + FZ_SIZE),
            1 => Just(u64::MAX - 7),
        ]
    }

    /// A buffer wholly in the pool (sometimes the copy of the descriptor
    /// table there, as an indirect table), or not (wholly or partly) in RAM.
    fn buffer() -> impl Strategy<Value = (u64, u32)> {
        prop_oneof![
            8 => (0u64..0x700, prop_oneof![Just(16u32), Just(1), Just(512), 0u32..0x1000])
                .prop_map(|(k, l)| (POOL + 16 * k, l)),
            2 => (0u64..0x7000, 0u32..0x1000).prop_map(|(o, l)| (POOL + o, l)),
            2 => (1u32..8).prop_map(|n| (POOL, 16 * n)),
            1 => prop_oneof![
                (0u32..64).prop_map(|l| (BASE + FZ_SIZE - 16, l + 17)),
                (0u32..64).prop_map(|l| (BASE - 8, l + 9)),
                (0u64..BASE / 2, any::<u16>()).prop_map(|(a, l)| (a, u32::from(l))),
                (BASE + FZ_SIZE..u64::MAX / 2, any::<u32>()),
                (101u32..).prop_map(|l| (u64::MAX - 100, l)),
            ],
        ]
    }

    fn flags() -> impl Strategy<Value = u16> {
        prop_oneof![
            4 => Just(VIRTQ_DESC_F_NEXT),
            4 => Just(VIRTQ_DESC_F_WRITE),
            2 => Just(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE),
            2 => Just(0u16),
            1 => Just(VIRTQ_DESC_F_INDIRECT),
            1 => any::<u16>(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reg(u64, u32),
        Area(u64, u64),
        QueueNum(u32),
        Status(u32),
        Features(u32, u32),
        Notify(u32),
        Config(u64, u8, u64),
        Load(u64, u8),
        /// Make `n` more buffers available (heads from the ring contents).
        Publish(u16),
        /// Run the device, as the machine does after each slice.
        Process,
        /// Notify queue 0, then run the device.
        Kick,
        /// Reset and set up again (after which the ring restarts).
        Reinit,
        /// A received frame of this length (for a NIC; queue 0 is its
        /// receive queue).
        Receive(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        let plain_regs = prop::sample::select(vec![
            DEVICE_FEATURES_SEL,
            DRIVER_FEATURES_SEL,
            QUEUE_SEL,
            QUEUE_READY,
            INTERRUPT_ACK,
            SHM_SEL,
            CONFIG_GENERATION,
            0x0c0,
            0x0f8,
        ]);
        prop_oneof![
            3 => (plain_regs, prop_oneof![Just(0u32), Just(1u32), any::<u32>()])
                .prop_map(|(r, v)| Op::Reg(r, v)),
            2 => prop_oneof![
                area_addr(FZ_DESC).prop_map(|a| Op::Area(QUEUE_DESC_LOW, a)),
                area_addr(FZ_AVAIL).prop_map(|a| Op::Area(QUEUE_DRIVER_LOW, a)),
                area_addr(FZ_USED).prop_map(|a| Op::Area(QUEUE_DEVICE_LOW, a)),
            ],
            1 => prop_oneof![(0u32..10).prop_map(|s| 1 << s), any::<u32>()].prop_map(Op::QueueNum),
            1 => prop_oneof![Just(0u32), Just(0xf), Just(0xb), any::<u32>()].prop_map(Op::Status),
            2 => Just(Op::Reinit),
            1 => (0u32..3, any::<u32>()).prop_map(|(s, v)| Op::Features(s, v)),
            3 => prop_oneof![Just(0u32), any::<u32>()].prop_map(Op::Notify),
            1 => (0x100u64..0x180, prop::sample::select(vec![1u8, 2, 3, 4, 8]), any::<u64>())
                .prop_map(|(o, s, v)| Op::Config(o, s, v)),
            1 => (0u64..0x1000, prop::sample::select(vec![1u8, 2, 4, 8]))
                .prop_map(|(o, s)| Op::Load(o, s)),
            3 => (0u16..6).prop_map(Op::Publish),
            2 => Just(Op::Process),
            6 => Just(Op::Kick),
            3 => prop_oneof![0u16..80, 0u16..2000].prop_map(Op::Receive),
        ]
    }

    #[derive(Debug, Clone)]
    struct Case {
        /// 0: block, 1: rng, 2: net.
        kind: u8,
        features: u64,
        queue_size: u32,
        /// Buffer, flags, next (`None`: the following descriptor).
        descs: Vec<((u64, u32), u16, Option<u16>)>,
        ring: Vec<u16>,
        avail_flags: u16,
        used_event: u16,
        start_idx: u16,
        pool_seed: u64,
        ops: Vec<Op>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            0u8..3,
            any::<u64>(),
            prop_oneof![8 => (0u32..7).prop_map(|s| 1 << s), 1 => any::<u32>()],
            prop::collection::vec(
                (buffer(), flags(), prop_oneof![4 => Just(None), 2 => (0u16..16).prop_map(Some), 1 => any::<u16>().prop_map(Some)]),
                1..24,
            ),
            prop::collection::vec(prop_oneof![8 => 0u16..16, 1 => any::<u16>()], 1..16),
            (any::<u16>(), prop_oneof![0u16..8, any::<u16>()], prop_oneof![8 => 1u16..4, 1 => any::<u16>()]),
            any::<u64>(),
            prop::collection::vec(op(), 1..40),
        )
            .prop_map(
                |(kind, features, queue_size, descs, ring, (avail_flags, used_event, start_idx), pool_seed, ops)| Case {
                    kind,
                    features,
                    queue_size,
                    descs,
                    ring,
                    avail_flags,
                    used_event,
                    start_idx,
                    pool_seed,
                    ops,
                },
            )
    }

    fn put(ram: &mut Ram, at: u64, bytes: &[u8]) {
        assert!(ram.write(at, bytes));
    }

    /// Lay out RAM: random pool bytes (so request headers and indirect
    /// tables are random too), a descriptor table, an available ring.
    fn build_ram(c: &Case) -> Ram {
        let mut ram = Ram::new(BASE, FZ_SIZE).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(c.pool_seed);
        // Plausible 16-byte records: read as a block request header they
        // name a real type and a sector near the disk's end; read as a
        // discard segment, a small sector and count.
        let pool: Vec<u8> = (0..(POOL_END - POOL) / 16)
            .flat_map(|_| {
                let r = rng.next_u64();
                let kind = [0u32, 1, 4, 8, 11, 13, r as u32][(r % 7) as usize];
                let sector = (r >> 8) % 140;
                let mut rec = kind.to_le_bytes().to_vec();
                rec.extend_from_slice(&0u32.to_le_bytes());
                rec.extend_from_slice(&sector.to_le_bytes());
                rec
            })
            .collect();
        put(&mut ram, POOL, &pool);
        // The descriptor table, and a copy at the pool's start for
        // indirect descriptors to use.
        for (i, &((addr, len), flags, next)) in c.descs.iter().enumerate() {
            let next = next.unwrap_or(i as u16 + 1);
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..].copy_from_slice(&next.to_le_bytes());
            put(&mut ram, FZ_DESC + 16 * i as u64, &d);
            put(&mut ram, POOL + 16 * i as u64, &d);
        }
        put(&mut ram, FZ_AVAIL, &c.avail_flags.to_le_bytes());
        put(&mut ram, FZ_AVAIL + 2, &c.start_idx.to_le_bytes());
        for slot in 0..256u64 {
            let head = c.ring[slot as usize % c.ring.len()];
            put(&mut ram, FZ_AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        }
        // used_event for every queue size we might pick.
        for size in (0..9).map(|s| 1u64 << s) {
            put(
                &mut ram,
                FZ_AVAIL + 4 + 2 * size,
                &c.used_event.to_le_bytes(),
            );
        }
        ram
    }

    fn device(c: &Case) -> VirtioMmio {
        match c.kind {
            1 => VirtioMmio::rng(SEED),
            2 => VirtioMmio::net(0, [2, 0, 0, 0, 0, 1]),
            _ => VirtioMmio::block("fuzz", 64 << 10, false),
        }
    }

    /// Set the device up like a driver (with random features and size),
    /// so that the random operations reach the queue code.
    fn setup(dev: &mut VirtioMmio, c: &Case) {
        let w = |dev: &mut VirtioMmio, off, val: u64| dev.store(off, 4, val).unwrap();
        w(dev, STATUS, 3);
        let offered = dev.transport().negotiated_with(u64::MAX);
        let features = c.features & offered | VIRTIO_F_VERSION_1;
        w(dev, DRIVER_FEATURES_SEL, 0);
        w(dev, DRIVER_FEATURES, features & 0xffff_ffff);
        w(dev, DRIVER_FEATURES_SEL, 1);
        w(dev, DRIVER_FEATURES, features >> 32);
        w(dev, STATUS, 0xb);
        w(dev, QUEUE_NUM, u64::from(c.queue_size));
        for (reg, addr) in [
            (QUEUE_DESC_LOW, FZ_DESC),
            (QUEUE_DRIVER_LOW, FZ_AVAIL),
            (QUEUE_DEVICE_LOW, FZ_USED),
        ] {
            w(dev, reg, addr & 0xffff_ffff);
            w(dev, reg + 4, addr >> 32);
        }
        w(dev, QUEUE_READY, 1);
        w(dev, STATUS, 0xf);
    }

    fn apply(
        c: &Case,
        dev: &mut VirtioMmio,
        ram: &mut Ram,
        disk: &mut MemDisk,
        op: &Op,
        avail: &mut u16,
    ) {
        match *op {
            Op::Reinit => {
                dev.store(STATUS, 4, 0);
                setup(dev, c);
                *avail = c.start_idx;
                put(ram, FZ_AVAIL + 2, &avail.to_le_bytes());
            }
            Op::Reg(r, v) => {
                dev.store(r, 4, u64::from(v));
            }
            Op::Area(low, addr) => {
                dev.store(low, 4, addr & 0xffff_ffff);
                dev.store(low + 4, 4, addr >> 32);
            }
            Op::QueueNum(n) => {
                dev.store(QUEUE_NUM, 4, u64::from(n));
            }
            Op::Status(s) => {
                dev.store(STATUS, 4, u64::from(s));
            }
            Op::Features(sel, v) => {
                dev.store(DRIVER_FEATURES_SEL, 4, u64::from(sel));
                dev.store(DRIVER_FEATURES, 4, u64::from(v));
            }
            Op::Notify(q) => {
                dev.store(QUEUE_NOTIFY, 4, u64::from(q));
            }
            Op::Config(off, size, v) => {
                dev.store(off, size, v);
            }
            Op::Load(off, size) => {
                dev.load(off, size);
            }
            Op::Publish(n) => {
                *avail = avail.wrapping_add(n);
                put(ram, FZ_AVAIL + 2, &avail.to_le_bytes());
            }
            Op::Process => {
                let _ = process(dev, ram, Some(disk));
            }
            Op::Kick => {
                dev.store(QUEUE_NOTIFY, 4, 0);
                let _ = process(dev, ram, Some(disk));
            }
            Op::Receive(len) => {
                let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let _ = dev.receive(ram, &frame);
            }
        }
    }

    fn check_untouched(before: &[u8], ram: &Ram) {
        for (i, (&a, &b)) in before.iter().zip(ram.as_slice()).enumerate() {
            let pa = BASE + i as u64;
            assert!(
                a == b || writable(pa),
                "the device wrote {pa:#x} ({a:#x} -> {b:#x}), outside the used ring and buffer pool"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn random_queues_never_panic_or_write_outside_buffers(c in case()) {
            let mut ram = build_ram(&c);
            let before = ram.as_slice().to_vec();
            let mut dev = device(&c);
            let mut disk = MemDisk::new(64 << 10);
            setup(&mut dev, &c);
            // The device starts at avail index 0, the ring mostly near it
            // and sometimes far off ("too many available").
            let mut avail = c.start_idx;
            for op in &c.ops {
                apply(&c, &mut dev, &mut ram, &mut disk, op, &mut avail);
            }
            dev.store(QUEUE_NOTIFY, 4, 0);
            let _ = process(&mut dev, &mut ram, Some(&mut disk));
            // The avail index is the test's own write.
            let mut expected = before.clone();
            expected[(FZ_AVAIL + 2 - BASE) as usize..(FZ_AVAIL + 4 - BASE) as usize]
                .copy_from_slice(&avail.to_le_bytes());
            check_untouched(&expected, &ram);
            // The state round-trips through its saved form.
            let bytes = postcard::to_stdvec(&dev.save()).unwrap();
            let state: VirtioState = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(VirtioMmio::restore(&state, &device(&c)), Ok(dev));
        }

        #[test]
        fn invalid_chains_set_needs_reset(
            fault in 0usize..6,
            rng in any::<bool>(),
            indirect in any::<bool>(),
        ) {
            let dev = if rng {
                VirtioMmio::rng(SEED)
            } else {
                VirtioMmio::block("fuzz", 64 << 10, false)
            };
            let features = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX
                | if indirect { VIRTIO_F_INDIRECT_DESC } else { 0 };
            let mut d = Driver::new(dev, Some(MemDisk::new(64 << 10)), features);
            let h = d.data(&header(VIRTIO_BLK_T_IN, 0));
            let s = d.space(512);
            match fault {
                // A buffer running off the end of RAM.
                0 => { d.submit(&[h, Buf { addr: BASE + RAM_SIZE - 4, len: 8, write: true }]); }
                // A loop: two descriptors pointing at each other.
                1 => {
                    d.put_desc(DESC, 0, s, Some(1), 0);
                    d.put_desc(DESC, 1, s, Some(0), 0);
                    d.make_available(0);
                }
                // A next index past the table.
                2 => {
                    d.put_desc(DESC, 0, h, Some(SIZE + 3), 0);
                    d.make_available(0);
                }
                // A head index past the table.
                3 => d.make_available(SIZE),
                // More buffers available than the queue holds.
                4 => {
                    d.submit(&[h, s]);
                    assert!(d.ram.write(AVAIL + 2, &(SIZE + 1).to_le_bytes()));
                }
                // An indirect table: unnegotiated, or nested in itself.
                _ => {
                    let table = d.alloc(16);
                    d.put_desc(table, 0, Buf { addr: table, len: 16, write: false }, None, VIRTQ_DESC_F_INDIRECT);
                    d.put_desc(DESC, 0, Buf { addr: table, len: 16, write: false }, None, VIRTQ_DESC_F_INDIRECT);
                    d.make_available(0);
                }
            }
            let before = d.ram.as_slice().to_vec();
            prop_assert!(d.kick().is_err());
            prop_assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
            prop_assert_eq!(d.read_reg(INTERRUPT_STATUS), INT_CONFIG_CHANGE);
            prop_assert!(d.take_used().is_empty());
            prop_assert!(d.ram.as_slice() == &before[..], "RAM changed");
        }
    }
}

/// virtio-net: a driver with a receive and a transmit queue.
mod net_device {
    use super::super::net::{self, HEADER_LEN, MAX_FRAME};
    use super::*;
    use crate::io::CaptureOutput;

    const MAC: [u8; 6] = [0x02, 0x4c, 0x4b, 0x00, 0x00, 0x01];
    /// Ring areas of queue q at RINGS + q × 0x4000.
    const RINGS: u64 = BASE + 0x1000;

    struct NetDriver {
        ram: Ram,
        dev: VirtioMmio,
        next_desc: [u16; 2],
        avail_idx: [u16; 2],
        cursor: u64,
    }

    fn ring(q: usize, area: u64) -> u64 {
        RINGS + q as u64 * 0x4000 + area * 0x1000
    }

    impl NetDriver {
        fn new() -> Self {
            let mut d = Self {
                ram: Ram::new(BASE, RAM_SIZE).unwrap(),
                dev: VirtioMmio::net(0, MAC),
                next_desc: [0; 2],
                avail_idx: [0; 2],
                cursor: DATA,
            };
            let s = |d: &mut Self, v: u32| d.dev.store(STATUS, 4, u64::from(v)).unwrap();
            s(&mut d, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
            d.dev.store(DRIVER_FEATURES_SEL, 4, 0).unwrap();
            let low = net::Net::features() as u32;
            d.dev.store(DRIVER_FEATURES, 4, u64::from(low)).unwrap();
            d.dev.store(DRIVER_FEATURES_SEL, 4, 1).unwrap();
            d.dev.store(DRIVER_FEATURES, 4, 1).unwrap(); // VERSION_1
            s(
                &mut d,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
            );
            for q in 0..2 {
                d.dev.store(QUEUE_SEL, 4, q as u64).unwrap();
                d.dev.store(QUEUE_NUM, 4, u64::from(SIZE)).unwrap();
                for (area, reg) in [QUEUE_DESC_LOW, QUEUE_DRIVER_LOW, QUEUE_DEVICE_LOW]
                    .into_iter()
                    .enumerate()
                {
                    let addr = ring(q, area as u64);
                    d.dev.store(reg, 4, addr & 0xffff_ffff).unwrap();
                    d.dev.store(reg + 4, 4, addr >> 32).unwrap();
                }
                d.dev.store(QUEUE_READY, 4, 1).unwrap();
            }
            s(
                &mut d,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
            );
            d
        }

        /// Post one buffer of `len` bytes on queue `q`; returns its address.
        fn post(&mut self, q: usize, len: u32, write: bool, data: &[u8]) -> u64 {
            let addr = self.cursor;
            self.cursor += u64::from(len + 15) & !15;
            assert!(self.ram.write(addr, data));
            let i = self.next_desc[q];
            self.next_desc[q] = (i + 1) % SIZE;
            let mut desc = [0u8; 16];
            desc[..8].copy_from_slice(&addr.to_le_bytes());
            desc[8..12].copy_from_slice(&len.to_le_bytes());
            let flags: u16 = if write { VIRTQ_DESC_F_WRITE } else { 0 };
            desc[12..14].copy_from_slice(&flags.to_le_bytes());
            assert!(self.ram.write(ring(q, 0) + 16 * u64::from(i), &desc));
            let slot = u64::from(self.avail_idx[q] % SIZE);
            assert!(self.ram.write(ring(q, 1) + 4 + 2 * slot, &i.to_le_bytes()));
            self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
            assert!(self
                .ram
                .write(ring(q, 1) + 2, &self.avail_idx[q].to_le_bytes()));
            addr
        }

        fn used(&self, q: usize) -> Vec<(u32, u32)> {
            let idx = u16::from_le_bytes(
                self.ram
                    .slice(ring(q, 2) + 2, 2)
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
            (0..idx)
                .map(|k| {
                    let at = ring(q, 2) + 4 + 8 * u64::from(k % SIZE);
                    (
                        self.ram.read_u32(at).unwrap(),
                        self.ram.read_u32(at + 4).unwrap(),
                    )
                })
                .collect()
        }
    }

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn config_space_holds_mac_link_and_mtu() {
        let d = NetDriver::new();
        let mac: Vec<u8> = (0..6)
            .map(|i| d.dev.load(CONFIG + i, 1).unwrap() as u8)
            .collect();
        assert_eq!(mac, MAC);
        assert_eq!(d.dev.load(CONFIG + 6, 2), Some(1), "link up");
        assert_eq!(d.dev.load(CONFIG + 10, 2), Some(1500), "mtu");
        assert_eq!(d.read_device_id(), net::DEVICE_ID);
    }

    impl NetDriver {
        fn read_device_id(&self) -> u32 {
            self.dev.load(DEVICE_ID_REG, 4).unwrap() as u32
        }
    }

    #[test]
    fn a_received_frame_lands_in_the_posted_buffer_with_a_header() {
        let mut d = NetDriver::new();
        assert!(!d.dev.rx_ready(&d.ram), "no buffer posted yet");
        let buf = d.post(net::RX_QUEUE, 2048, true, &[0xee; 2048]);
        assert!(d.dev.rx_ready(&d.ram));
        let f = frame(60);
        assert_eq!(d.dev.receive(&mut d.ram, &f), Ok(true));
        assert_eq!(d.used(net::RX_QUEUE), [(0, (HEADER_LEN + 60) as u32)]);
        let got = d.ram.slice(buf, HEADER_LEN + 60).unwrap();
        assert_eq!(&got[..10], &[0; 10], "no flags, no GSO");
        assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers = 1");
        assert_eq!(&got[HEADER_LEN..], &f[..]);
        assert_ne!(d.dev.transport().interrupt_status() & INT_USED_BUFFER, 0);
        // The buffer is used up: the next frame has nowhere to go.
        assert!(!d.dev.rx_ready(&d.ram));
        assert_eq!(d.dev.receive(&mut d.ram, &f), Ok(false));
    }

    #[test]
    fn a_frame_larger_than_the_buffer_is_dropped_and_the_buffer_returned() {
        let mut d = NetDriver::new();
        d.post(net::RX_QUEUE, 100, true, &[0; 100]);
        assert_eq!(d.dev.receive(&mut d.ram, &frame(200)), Ok(false));
        assert_eq!(d.used(net::RX_QUEUE), [(0, 0)]);
        let Device::Net(n) = d.dev.device() else {
            panic!("not a NIC")
        };
        assert_eq!(n.counters().rx_dropped, 1);
        assert_eq!(n.counters().rx_frames, 0);
    }

    #[test]
    fn transmitted_frames_reach_the_output_stamped_with_the_icount() {
        let mut d = NetDriver::new();
        let f = frame(98);
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes.extend_from_slice(&f);
        d.post(net::TX_QUEUE, bytes.len() as u32, false, &bytes);
        // Too short to be a frame: completed and dropped.
        d.post(net::TX_QUEUE, 20, false, &[0; 20]);
        // Longer than any frame the MTU allows.
        let big = vec![0u8; HEADER_LEN + MAX_FRAME + 1];
        d.post(net::TX_QUEUE, big.len() as u32, false, &big);
        d.dev.store(QUEUE_NOTIFY, 4, net::TX_QUEUE as u64).unwrap();
        let mut out = CaptureOutput::default();
        let io = DeviceIo {
            disk: None,
            output: &mut out,
            icount: 4242,
        };
        d.dev.process(&mut d.ram, io).unwrap();
        assert_eq!(out.frames, [(4242, 0, f)]);
        assert_eq!(d.used(net::TX_QUEUE), [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(d.dev.transport().status() & STATUS_DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn receive_buffers_are_not_consumed_by_a_notify() {
        let mut d = NetDriver::new();
        d.post(net::RX_QUEUE, 2048, true, &[0; 2048]);
        d.dev.store(QUEUE_NOTIFY, 4, net::RX_QUEUE as u64).unwrap();
        process(&mut d.dev, &mut d.ram, None).unwrap();
        assert!(d.used(net::RX_QUEUE).is_empty());
        assert!(d.dev.rx_ready(&d.ram));
    }

    #[test]
    fn a_receive_ring_outside_ram_asks_for_a_reset() {
        let mut d = NetDriver::new();
        d.post(net::RX_QUEUE, 2048, true, &[0; 2048]);
        // Point the descriptor outside RAM.
        let far = (BASE + RAM_SIZE + 0x1000).to_le_bytes();
        assert!(d.ram.write(ring(net::RX_QUEUE, 0), &far));
        assert!(d.dev.receive(&mut d.ram, &frame(60)).is_err());
        assert_ne!(d.dev.transport().status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert!(!d.dev.rx_ready(&d.ram));
    }
}
