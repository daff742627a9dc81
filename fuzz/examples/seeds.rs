//! Writes the seed corpora that come from the product itself into
//! `fuzz/corpus/<target>/` (or the directory given): a real snapshot of a
//! tiny machine that ran (zstd RAM, rng and net devices), the live-save
//! pieces of the same machine, a replay log written by `LogWriter` with
//! every record kind, its frames, FT messages of every kind and link
//! streams carrying them, a tracked disk's record, boot images, and
//! driver sequences for each virtio device. `fuzz/seeds.sh` runs it and
//! adds the seeds made by other tools (cpio, dpkg-deb, qemu-img, apt).
//!
//!     cargo run --release -p lockstep-fuzz --example seeds [DIR]

use disk::{BlockDevice, MemDisk};
use ft::wire::Message;
use ft::{DiskShape, Hello};
use machine::snapshot::{Piece, RamEncoding, SaveOptions};
use machine::TrackedDisk;
use machine::{BootImages, Machine, MachineConfig, NullOutput, VirtioSpec};
use replay::{
    Control, Encoder, Header, HostCommand, Input, LogWriter, OutputChannel, OutputHash, Record,
    RecordKind, StopReason,
};
use std::path::{Path, PathBuf};

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut seeds = Seeds { out };
    snapshots(&mut seeds);
    logs(&mut seeds);
    tracked_disk(&mut seeds);
    loader(&mut seeds);
    virtio(&mut seeds);
}

struct Seeds {
    out: PathBuf,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A program that fills RAM from 0x8001_0000 upwards with counting
/// doublewords, forever.
fn firmware() -> Vec<u8> {
    [
        0x0001_0297u32, // auipc t0, 0x10
        0x2340_0313,    // addi t1, zero, 0x234
        0x0062_b023,    // sd t1, 0(t0)
        0x0082_8293,    // addi t0, t0, 8
        0x0013_0313,    // addi t1, t1, 1
        0xff5f_f06f,    // j -12
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

/// A flat RISC-V Linux `Image` header (1 MiB image size), nothing else.
fn stub_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 64];
    k[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    k[0x38..0x3c].copy_from_slice(b"RSC\x05");
    k
}

/// An ELF64 RISC-V executable with one loadable segment at `addr`.
fn elf(addr: u64, code: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 64 + 56];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little-endian
    e[6] = 1;
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
    e[20..24].copy_from_slice(&1u32.to_le_bytes());
    e[24..32].copy_from_slice(&addr.to_le_bytes()); // entry
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    e[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    e[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    e[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = &mut e[64..];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // offset
    ph[16..24].copy_from_slice(&addr.to_le_bytes()); // vaddr
    ph[24..32].copy_from_slice(&addr.to_le_bytes()); // paddr
    ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes()); // filesz
    ph[40..48].copy_from_slice(&(code.len() as u64 + 4096).to_le_bytes()); // memsz
    ph[48..56].copy_from_slice(&4096u64.to_le_bytes()); // align
    e.extend_from_slice(code);
    e
}

fn config(cpus: usize) -> MachineConfig {
    MachineConfig {
        cpus,
        memory: 8 << 20,
        images: BootImages {
            firmware: firmware().into(),
            kernel: stub_kernel().into(),
            initrd: None,
        },
        bootargs: "console=ttyS0".into(),
        boot_wall_ns: 1_700_000_000_000_000_000,
        instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
        vmgenid: [7; 16],
        virtio: vec![
            VirtioSpec::Rng { seed: [3; 32] },
            VirtioSpec::Net {
                mac: [2, 0, 0, 0, 0, 1],
            },
        ],
    }
}

fn ran_machine(cpus: usize) -> Machine {
    let mut m = Machine::new(config(cpus), Box::new(NullOutput)).unwrap();
    m.step_until(20_000).unwrap();
    m
}

fn snapshots(seeds: &mut Seeds) {
    let dir = tempfile::tempdir().unwrap();
    for cpus in [1, 2] {
        let mut m = ran_machine(cpus);
        let path = dir.path().join("m.snap");
        let options = SaveOptions {
            ram: RamEncoding::Zstd { level: 3 },
            vm_uuid: Some([9; 16]),
        };
        m.save_snapshot_with(&path, &options).unwrap();
        let file = std::fs::read(&path).unwrap();
        // Mode byte: bit 0 clear = reseal, bit 1 = verified restore.
        for mode in [0u8, 2] {
            let mut seed = vec![mode];
            seed.extend_from_slice(&file);
            seeds.put("snapshot", &format!("zstd-{cpus}hart-mode{mode}"), &seed);
        }
        seeds.put(
            "snapshot_assembler",
            &format!("live-save-{cpus}hart"),
            &assembler_seed(&mut m),
        );
    }
}

/// The pieces of a live save of `m`, in the assembler target's format.
fn assembler_seed(m: &mut Machine) -> Vec<u8> {
    let images: Vec<u8> = m.boot_image_parts().unwrap().concat();
    let mut seed = Vec::new();
    seed.extend_from_slice(&(images.len() as u32).to_le_bytes());
    seed.push(((m.config().memory >> 21) - 1) as u8);
    seed.push(0);
    seed.extend_from_slice(&0u32.to_le_bytes());
    seed.extend_from_slice(&(images.len() as u16).to_le_bytes());
    seed.extend_from_slice(&images);
    let mut pages = Vec::new();
    let mut save = m.live_save();
    let mut sink = |piece: Piece<'_>| -> Result<(), std::convert::Infallible> {
        if let Piece::Page { index, bytes } = piece {
            if bytes.iter().any(|&b| b != 0) {
                pages.push((index, bytes.to_vec()));
            }
        }
        Ok(())
    };
    while !save.copy(m, usize::MAX, &mut sink).unwrap() {}
    let state = save.finish(m, None, &mut sink).unwrap();
    for (index, bytes) in pages {
        seed.push(1);
        seed.extend_from_slice(&(index as u32).to_le_bytes());
        let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        seed.extend_from_slice(&(used as u16).to_le_bytes());
        seed.extend_from_slice(&bytes[..used]);
    }
    seed.push(2);
    seed.extend_from_slice(&state);
    seed
}

fn records() -> Vec<Record> {
    let kinds = [
        RecordKind::Input(Input::ConsoleInput(b"ls -l\n".to_vec())),
        RecordKind::Progress,
        RecordKind::Input(Input::NetFrame {
            nic: 0,
            frame: (0..60u8).collect(),
        }),
        RecordKind::Output {
            channel: OutputChannel::Console,
            len: 5,
            hash: OutputHash::of(b"hello"),
        },
        RecordKind::Input(Input::ClockWarp { ticks: 1234 }),
        RecordKind::Input(Input::Entropy(vec![0xaa; 32])),
        RecordKind::Output {
            channel: OutputChannel::Net { nic: 1 },
            len: 60,
            hash: OutputHash::of(&[1; 60]),
        },
        RecordKind::Input(Input::HostCommand(HostCommand::PowerButton)),
        RecordKind::Input(Input::HostCommand(HostCommand::LinkState {
            nic: 0,
            up: false,
        })),
        RecordKind::Input(Input::HostCommand(HostCommand::DeviceAttach {
            slot: 2,
            spec: b"rng".to_vec(),
        })),
        RecordKind::Input(Input::HostCommand(HostCommand::DeviceDetach { slot: 2 })),
        RecordKind::Checkpoint {
            state_hash: [5; 32],
        },
        RecordKind::Control(Control::ConfigChange(b"memory=64M".to_vec())),
        RecordKind::Control(Control::PowerOff(StopReason::GuestPowerOff)),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(n, kind)| Record {
            lsn: n as u64,
            icount: 1000 * n as u64 * n as u64,
            kind,
        })
        .collect()
}

fn logs(seeds: &mut Seeds) {
    let header = Header {
        vm_uuid: [1; 16],
        initial_state_hash: [2; 32],
    };
    let records = records();
    let mut writer = LogWriter::new(Vec::new(), &header);
    for r in &records {
        writer.append(r).unwrap();
    }
    let log = writer.into_inner().unwrap();
    seeds.put("replay_log", "every-kind", &log);
    seeds.put("replay_log", "torn", &log[..log.len() - 3]);
    seeds.put("replay_log", "header-only", &header.encode());

    // The codec target's format: tag, flags (bit 0: the harness prepends
    // the LSN), body length, body.
    let mut frames = Vec::new();
    let mut codec = Vec::new();
    let mut encoder = Encoder::new();
    for r in &records {
        let start = frames.len();
        encoder.encode(r, &mut frames).unwrap();
        let frame = &frames[start..];
        let body = &frame[8..];
        codec.push(frame[3]);
        codec.push(0);
        codec.push(body.len() as u8);
        codec.extend_from_slice(body);
    }
    seeds.put("replay_codec", "every-kind", &codec);

    let messages = vec![
        Message::Hello(Hello {
            lockstep_version: "0.1.0".into(),
            generation: 3,
            anchor_unix_ns: 1_700_000_000_000_000_000,
            vm_uuid: [4; 16],
            images_len: 70_000,
            memory: 64 << 20,
            instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
            disks: vec![
                DiskShape {
                    capacity: 1 << 30,
                    read_only: false,
                },
                DiskShape {
                    capacity: 1 << 20,
                    read_only: true,
                },
            ],
            purpose: ft::wire::Purpose::Protect,
            setup: b"{\"cpus\":1}".to_vec(),
        }),
        Message::Welcome(Ok(())),
        Message::Welcome(Err("no NIC backend".into())),
        Message::Images {
            offset: 4096,
            bytes: firmware(),
        },
        Message::Pages({
            let mut p = 7u64.to_le_bytes().to_vec();
            p.extend_from_slice(&[0x5a; 4096]);
            p
        }),
        Message::Disk {
            disk: 1,
            offset: 65536,
            bytes: vec![0xee; 512],
        },
        Message::State {
            icount: 20_000,
            state: vec![1, 2, 3],
        },
        Message::Ready(Ok(())),
        Message::Batch {
            released: 10_000,
            frames: frames.clone(),
        },
        Message::Ack {
            next_lsn: 14,
            icount: 169_000,
            executed: 100_000,
        },
        Message::Alive,
        Message::Handoff {
            icount: 1 << 30,
            released: 1 << 30,
        },
        Message::Taken,
    ];
    let config = ft::wire::link_config();
    let mut stream = config.magic.to_vec();
    stream.extend_from_slice(&config.version.to_le_bytes());
    for (n, m) in messages.iter().enumerate() {
        let (kind, payload) = m.encode();
        let mut seed = vec![kind];
        seed.extend_from_slice(&payload);
        let name = format!("{n:02}-{}", m.describe().replace(' ', "-"));
        seeds.put("ft_wire", &name, &seed);
        stream.push(kind);
        stream.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        stream.extend_from_slice(&payload);
    }
    seeds.put("link_frames", "every-message", &stream);
}

fn tracked_disk(seeds: &mut Seeds) {
    let capacity = 1u64 << 20;
    let mut disk = TrackedDisk::new(Box::new(MemDisk::new(capacity as usize)));
    disk.write_at(0, &[1; 4096]).unwrap();
    disk.write_at(128 << 10, &[0; 65536]).unwrap();
    disk.write_at(192 << 10, &[0; 131072]).unwrap();
    disk.write_at(700 << 10, &[7; 70_000]).unwrap();
    let record = disk.record().unwrap();
    let mut seed = ((capacity / 4096 - 1) as u16).to_le_bytes().to_vec();
    seed.push(1);
    seed.extend_from_slice(&postcard::to_stdvec(&record).unwrap());
    // Operations: write, zeroes, discard, digest, zero write.
    for (op, block, len) in [
        (0u8, 3u16, 8u16),
        (1, 256, 128),
        (2, 1024, 511),
        (3, 0, 0),
        (4, 1500, 4),
    ] {
        seed.push(op);
        seed.extend_from_slice(&block.to_le_bytes());
        seed.extend_from_slice(&len.to_le_bytes());
        if op == 0 {
            seed.push(0x42);
        }
    }
    seeds.put("tracked_disk", "restored-and-written", &seed);
}

fn loader(seeds: &mut Seeds) {
    let initrd = b"070701"
        .iter()
        .copied()
        .chain([0; 200])
        .collect::<Vec<u8>>();
    type Case = (&'static str, Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let cases: [Case; 3] = [
        ("flat", firmware(), stub_kernel(), None),
        (
            "flat-initrd",
            firmware(),
            stub_kernel(),
            Some(initrd.clone()),
        ),
        (
            "elf",
            elf(0x8000_0000, &firmware()),
            elf(0x8020_0000, &[0x13, 0, 0, 0]),
            Some(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0]),
        ),
    ];
    for (name, fw, kernel, initrd) in cases {
        let mut seed = vec![1, 3];
        seed.extend_from_slice(&(fw.len() as u16).to_le_bytes());
        seed.extend_from_slice(&fw);
        seed.extend_from_slice(&(kernel.len() as u16).to_le_bytes());
        seed.extend_from_slice(&kernel);
        match initrd {
            Some(i) => {
                seed.extend_from_slice(&(i.len() as u16).to_le_bytes());
                seed.extend_from_slice(&i);
            }
            None => seed.extend_from_slice(&0xffffu16.to_le_bytes()),
        }
        seeds.put("loader", name, &seed);
    }
}

/// Guest RAM offsets of the virtio seeds' structures (64 KiB of RAM).
const DESC: u64 = 0x100;
const AVAIL: u64 = 0x400;
const USED: u64 = 0x600;
const HDR: u64 = 0x800;
const STATUS: u64 = 0x900;
const BUF: u64 = 0xa00;
const DESC2: u64 = 0xc00;
const AVAIL2: u64 = 0xe00;
const USED2: u64 = 0xf00;
const TXBUF: u64 = 0x1000;
const RXBUF: u64 = 0x1100;
const BASE: u64 = 0x8000_0000;

struct Driver {
    ops: Vec<u8>,
    ram: Vec<u8>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            ops: Vec::new(),
            ram: vec![0; 0x1800],
        }
    }
    fn store(&mut self, offset: u16, value: u64) {
        self.ops.push(0);
        self.ops.extend_from_slice(&offset.to_le_bytes());
        self.ops.push(2); // 4 bytes
        self.ops.extend_from_slice(&value.to_le_bytes());
    }
    fn load(&mut self, offset: u16) {
        self.ops.extend_from_slice(&[1]);
        self.ops.extend_from_slice(&offset.to_le_bytes());
        self.ops.push(2);
    }
    fn process(&mut self) {
        self.ops.push(2);
    }
    fn queue(&mut self, index: u32, desc: u64, avail: u64, used: u64) {
        self.store(0x30, index.into());
        self.store(0x38, 8);
        for (reg, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            self.store(reg, (BASE + addr) & 0xffff_ffff);
            self.store(reg + 4, (BASE + addr) >> 32);
        }
        self.store(0x44, 1);
    }
    fn start(&mut self) {
        self.load(0x00);
        self.load(0x08);
        self.store(0x70, 3);
        self.store(0x24, 1);
        self.store(0x20, 1); // VIRTIO_F_VERSION_1
        self.store(0x70, 0xb);
    }
    fn ram_u(&mut self, at: u64, bytes: &[u8]) {
        self.ram[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
    fn desc(&mut self, table: u64, n: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = (BASE + addr).to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.ram_u(table + 16 * n, &d);
    }
    fn avail(&mut self, ring: u64, heads: &[u16]) {
        let mut a = 0u16.to_le_bytes().to_vec();
        a.extend_from_slice(&(heads.len() as u16).to_le_bytes());
        for h in heads {
            a.extend_from_slice(&h.to_le_bytes());
        }
        self.ram_u(ring, &a);
    }
    fn seed(&self, device: u8) -> Vec<u8> {
        let mut s = vec![device];
        s.extend_from_slice(&(self.ops.len() as u16).to_le_bytes());
        s.extend_from_slice(&self.ops);
        s.extend_from_slice(&self.ram);
        s
    }
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;

fn virtio(seeds: &mut Seeds) {
    // Block: a write of sector 2 then a read of it.
    let mut d = Driver::new();
    d.start();
    d.queue(0, DESC, AVAIL, USED);
    d.store(0x70, 0xf);
    let mut header = 1u32.to_le_bytes().to_vec(); // VIRTIO_BLK_T_OUT
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&2u64.to_le_bytes());
    d.ram_u(HDR, &header);
    d.ram_u(HDR + 16, &[0; 4]); // VIRTIO_BLK_T_IN
    d.ram_u(HDR + 24, &2u64.to_le_bytes());
    d.ram_u(BUF, &[0x77; 512]);
    d.ram_u(STATUS, &[0xff, 0xff]); // the device writes 0 (OK)
    d.desc(DESC, 0, HDR, 16, NEXT, 1);
    d.desc(DESC, 1, BUF, 512, NEXT, 2);
    d.desc(DESC, 2, STATUS, 1, WRITE, 0);
    d.desc(DESC, 3, HDR + 16, 16, NEXT, 4);
    d.desc(DESC, 4, BUF, 512, NEXT | WRITE, 5);
    d.desc(DESC, 5, STATUS + 1, 1, WRITE, 0);
    d.avail(AVAIL, &[0, 3]);
    d.store(0x50, 0);
    d.process();
    d.load(0x60);
    d.store(0x64, 1);
    d.load(0x100); // config: capacity
    seeds.put("virtio", "blk-write-read", &d.seed(0));

    // Rng: one 64-byte buffer.
    let mut d = Driver::new();
    d.start();
    d.queue(0, DESC, AVAIL, USED);
    d.store(0x70, 0xf);
    d.desc(DESC, 0, BUF, 64, WRITE, 0);
    d.avail(AVAIL, &[0]);
    d.store(0x50, 0);
    d.process();
    seeds.put("virtio", "rng-read", &d.seed(1));

    // Net: a transmitted frame, then a received one.
    let mut d = Driver::new();
    d.start();
    d.queue(0, DESC, AVAIL, USED);
    d.queue(1, DESC2, AVAIL2, USED2);
    d.store(0x70, 0xf);
    d.desc(DESC, 0, RXBUF, 1526, WRITE, 0);
    d.avail(AVAIL, &[0]);
    let mut frame = vec![0u8; 12];
    frame.extend((0..60u8).map(|b| b ^ 0x55));
    d.ram_u(TXBUF, &frame);
    d.desc(DESC2, 0, TXBUF, frame.len() as u32, 0, 0);
    d.avail(AVAIL2, &[0]);
    d.store(0x50, 1);
    d.process();
    d.ops.push(3);
    d.ops.extend_from_slice(&60u16.to_le_bytes());
    d.ops.extend((0..60u8).map(|b| b.wrapping_mul(3)));
    d.process();
    d.load(0x100); // config: MAC
    seeds.put("virtio", "net-tx-rx", &d.seed(2));
}
