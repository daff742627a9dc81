//! The board's parsers: snapshot files and the pieces of a live save,
//! virtio as a guest drives it, tracked-disk records, boot images.

use crate::files::scratch;
use crate::Cursor;
use disk::{BlockDevice, MemDisk};
use machine::layout::RAM_BASE;
use machine::snapshot::{self, Assembler, RestoreOptions};
use machine::{BootImages, Machine, MachineConfig, NullOutput};
use machine::{ClusterRecord, TrackedDisk};
use machine::{DeviceIo, VirtioMmio};
use riscv::Ram;

/// Largest guest RAM the harnesses restore: a verified restore hashes all
/// of it, so a forged multi-GiB machine is slow, not wrong.
const MAX_FUZZ_MEMORY: u64 = 32 << 20;

/// A restored machine runs a few quanta of whatever its state says.
fn run_briefly(mut m: Machine) {
    for _ in 0..4 {
        if !matches!(m.step(), Ok(machine::Step::Ran | machine::Step::Idle)) {
            break;
        }
    }
    let _ = m.state_hash();
}

/// The first byte chooses: bit 0 clear, every checksum is made to agree
/// with the (mutated) bytes, so the decoders and structural checks behind
/// them are reached (`snapshot::forge::reseal`); set, the file is taken as
/// it is. Bit 1: a verified restore. The rest is the snapshot file.
pub fn snapshot(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let path = scratch("machine.snap", file);
    if mode & 1 == 0 {
        snapshot::forge::reseal(&path).expect("resealing the scratch snapshot");
    }
    let Ok(info) = snapshot::read_info(&path) else {
        return;
    };
    if info.memory > MAX_FUZZ_MEMORY {
        return;
    }
    let options = RestoreOptions {
        verify: mode & 2 != 0,
        ..Default::default()
    };
    // No disks: a snapshot naming some is refused (DiskCount).
    if let Ok(m) = Machine::restore_snapshot_with(&path, Box::new(NullOutput), Vec::new(), &options)
    {
        run_briefly(m);
    }
}

/// The receiving end of a live save as the FT backup drives it from
/// network messages: `images_len: u32`, a memory size selector, then
/// pieces (op byte: 0 images `offset: u32, len: u16, bytes`; 1 page
/// `index: u32, len: u16, bytes` — padded to a page, or a wrong-sized
/// piece with bit 7 of the op —; 2 finish with the rest as the state
/// section), then a verified restore of the result.
pub fn assembler(data: &[u8]) {
    let mut c = Cursor(data);
    let images_len = u64::from(c.u32());
    let memory = (u64::from(c.u8() % 16) + 1) * (2 << 20);
    let Ok(dir) = scratch_dir() else { return };
    let Ok(mut a) = Assembler::new(&dir, images_len, memory) else {
        return;
    };
    while !c.is_empty() {
        let op = c.u8();
        match op & 0x7f {
            0 => {
                let offset = u64::from(c.u32());
                let len = usize::from(c.u16());
                let _ = a.images(offset, c.bytes(len));
            }
            1 => {
                let index = u64::from(c.u32());
                let len = usize::from(c.u16());
                let bytes = c.bytes(len);
                if op & 0x80 != 0 {
                    let _ = a.page(index, bytes);
                } else {
                    let mut page = vec![0u8; 4096];
                    let n = bytes.len().min(4096);
                    page[..n].copy_from_slice(&bytes[..n]);
                    let _ = a.page(index, &page);
                }
            }
            2 => {
                let state = c.rest();
                let Ok(done) = a.finish(state, &[]) else {
                    return;
                };
                let options = RestoreOptions {
                    verify: true,
                    ..Default::default()
                };
                if let Ok(m) = Machine::restore_snapshot_with(
                    &done.path,
                    Box::new(NullOutput),
                    Vec::new(),
                    &options,
                ) {
                    run_briefly(m);
                }
                return;
            }
            _ => {}
        }
    }
}

fn scratch_dir() -> std::io::Result<std::path::PathBuf> {
    let marker = scratch("assembler", b"");
    Ok(marker
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(std::env::temp_dir))
}

/// Bytes of guest RAM the virtio harness gives the device.
pub const VIRTIO_RAM: u64 = 64 << 10;

/// A virtio-mmio slot driven like a guest would: the first byte picks the
/// device (blk on a 64 KiB disk, read-only with bit 2; rng; net), the next
/// `u16` the length of the operation list, then the operations (op byte:
/// 0 store `offset: u16, size, value: u64`; 1 load `offset: u16, size`;
/// 2 process the queues; 3 a frame from the network, `len: u16, bytes`;
/// 4 RAM write `address: u16, len: u8, bytes`; 5 reset); the rest is the
/// initial contents of 64 KiB of guest RAM at its base (descriptor tables,
/// rings, buffers).
pub fn virtio(data: &[u8]) {
    let _ = virtio_session(data);
}

/// [`virtio`], returning the device and guest RAM afterwards (for the
/// tests that check the seeds reach the devices).
pub fn virtio_session(data: &[u8]) -> Option<(VirtioMmio, Ram)> {
    let mut c = Cursor(data);
    let which = c.u8();
    let mut dev = match which % 3 {
        0 => VirtioMmio::block("fuzz", 64 << 10, which & 4 != 0),
        1 => VirtioMmio::rng([which; 32]),
        _ => VirtioMmio::net(0, [2, 0, 0, 0, 0, which]),
    };
    let ops_len = usize::from(c.u16());
    let mut ops = Cursor(c.bytes(ops_len));
    let mut ram = Ram::new(RAM_BASE, VIRTIO_RAM).ok()?;
    let image = c.rest();
    ram.write(RAM_BASE, &image[..image.len().min(VIRTIO_RAM as usize)]);
    let mut disk = MemDisk::new(64 << 10);
    let mut icount = 0;
    while !ops.is_empty() {
        match ops.u8() % 6 {
            0 => {
                let offset = u64::from(ops.u16() % 0x200);
                let size = 1 << (ops.u8() % 4);
                let value = ops.u64();
                let _ = dev.store(offset, size, value);
            }
            1 => {
                let offset = u64::from(ops.u16() % 0x200);
                let size = 1 << (ops.u8() % 4);
                let _ = dev.load(offset, size);
            }
            2 => {
                icount += 1000;
                let io = DeviceIo {
                    disk: Some(&mut disk),
                    output: &mut NullOutput,
                    icount,
                };
                let _ = dev.process(&mut ram, io);
                let _ = dev.irq_level();
            }
            3 => {
                let len = usize::from(ops.u16() % 2048);
                let frame = ops.bytes(len);
                if dev.rx_ready(&ram) {
                    let _ = dev.receive(&mut ram, frame);
                }
            }
            4 => {
                let at = u64::from(ops.u16());
                let len = usize::from(ops.u8());
                let bytes = ops.bytes(len);
                ram.write(RAM_BASE + at, bytes);
            }
            _ => dev.reset(),
        }
    }
    Some((dev, ram))
}

/// A disk's written-cluster record as a snapshot's state carries it
/// (postcard), restored over a small disk (capacity from the first
/// `u16`, in 4 KiB units), then writes, discards and digests (ops after
/// the record: kind, cluster, length). The same operations on a fresh
/// tracked disk must give a record that, restored and re-read, has the
/// same digest.
pub fn tracked_disk(data: &[u8]) {
    let mut c = Cursor(data);
    let capacity = (u64::from(c.u16() % 1024) + 1) * 4096;
    let flags = c.u8();
    let rest = c.rest();
    let (record, ops) = match postcard::take_from_bytes::<ClusterRecord>(rest) {
        Ok((record, ops)) => (Some(record), ops),
        Err(_) => (None, rest),
    };
    if let Some(record) = &record {
        if let Ok(mut disk) = TrackedDisk::restored(
            Box::new(MemDisk::new(capacity as usize)),
            record,
            flags & 1 != 0,
        ) {
            apply(&mut disk, ops);
            let _ = disk.digest();
            let _ = disk.record();
        }
    }
    let mut fresh = TrackedDisk::new(Box::new(MemDisk::new(capacity as usize)));
    apply(&mut fresh, ops);
    let (Ok(record), Ok(digest)) = (fresh.record(), fresh.digest()) else {
        return;
    };
    let mut contents = vec![0u8; capacity as usize];
    fresh
        .read_at(0, &mut contents)
        .expect("reading back a memory disk");
    let copy = MemDisk::with_contents(contents, false);
    let mut again = TrackedDisk::restored(Box::new(copy), &record, true)
        .unwrap_or_else(|e| panic!("the record of a tracked disk does not restore: {e}"));
    assert_eq!(
        again.digest().ok(),
        Some(digest),
        "restored disk's digest differs"
    );
}

fn apply(disk: &mut TrackedDisk, ops: &[u8]) {
    let mut c = Cursor(ops);
    let capacity = disk.capacity();
    while !c.is_empty() {
        let op = c.u8();
        let offset = u64::from(c.u16()) * 512 % capacity.max(1);
        let len = u64::from(c.u16() % 512 + 1) * 512;
        let len = len.min(capacity - offset);
        match op % 5 {
            0 => {
                let fill = c.u8();
                let _ = disk.write_at(offset, &vec![fill; len as usize]);
            }
            1 => {
                let _ = disk.write_zeroes(offset, len);
            }
            2 => {
                let _ = disk.discard(offset, len);
            }
            3 => {
                let _ = disk.digest();
            }
            _ => {
                let _ = disk.write_at(offset, &vec![0; len as usize]);
            }
        }
    }
}

/// Boot images: firmware, kernel and initrd (lengths `u16` each, initrd
/// absent when its length is 0xffff) placed in RAM of the size selected,
/// every segment inside RAM; with bit 0 of the flags the machine is built
/// from them (device tree, reset ROM, loading).
pub fn loader(data: &[u8]) {
    let mut c = Cursor(data);
    let flags = c.u8();
    let memory = (u64::from(c.u8() % 32) + 1) * (2 << 20);
    let len = usize::from(c.u16());
    let firmware = c.bytes(len).to_vec();
    let len = usize::from(c.u16());
    let kernel = c.bytes(len).to_vec();
    let initrd_len = c.u16();
    let initrd = (initrd_len != 0xffff).then(|| c.bytes(usize::from(initrd_len)).to_vec());
    if let Ok(placed) = machine::place(&firmware, &kernel, initrd.as_deref(), memory) {
        for s in &placed.segments {
            let len = (s.data.len() as u64).max(s.mem_size);
            assert!(
                s.addr >= RAM_BASE && s.addr + len <= RAM_BASE + memory,
                "segment at {:#x} (+{len:#x}) outside {memory:#x} bytes of RAM",
                s.addr
            );
        }
    }
    if flags & 1 != 0 {
        let config = MachineConfig {
            cpus: 1,
            memory,
            images: BootImages {
                firmware: firmware.into(),
                kernel: kernel.into(),
                initrd: initrd.map(Into::into),
            },
            bootargs: "console=ttyS0".into(),
            boot_wall_ns: 0,
            instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
            vmgenid: [0; 16],
            virtio: Vec::new(),
        };
        if let Ok(m) = Machine::new(config, Box::new(NullOutput)) {
            run_briefly(m);
        }
    }
}
