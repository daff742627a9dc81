//! Boot images and where they go in RAM (DESIGN §2): firmware at the base of
//! RAM, the kernel 2 MiB above it, the device tree in the last 2 MiB window
//! below the top of RAM and the initrd right under the device tree.
//!
//! Images come from files the user names, so everything is validated and
//! every error says which image is wrong and why.

use crate::layout::{KERNEL_OFFSET, RAM_BASE};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

const MIB: u64 = 1 << 20;
/// The device tree gets a 2 MiB-aligned window of this size below the top
/// of RAM; OpenSBI grows the tree in place, so the window is generous.
pub const FDT_WINDOW: u64 = 2 * MIB;
/// Largest device tree we generate (leaves OpenSBI room to grow it).
pub const FDT_MAX: usize = 64 * 1024;
const PAGE: u64 = 4096;

/// Offset and value of the RISC-V Linux `Image` header magic.
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_MAGIC: &[u8; 4] = b"RSC\x05";
/// Offset of the header's `image_size` (memory the kernel occupies,
/// including BSS).
const IMAGE_SIZE_OFFSET: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{image} is empty")]
    Empty { image: &'static str },
    #[error("{image}: not a usable ELF file: {reason}")]
    BadElf { image: &'static str, reason: String },
    #[error("kernel: not a RISC-V Linux Image (no \"RSC\\x05\" magic at offset 0x38) and not an ELF file{hint}")]
    NotKernel { hint: &'static str },
    #[error("initrd: unrecognised format (expected a cpio archive, possibly gzip/xz/zstd/lz4/lzma/lzo/bzip2 compressed)")]
    BadInitrd,
    #[error("firmware: {size} bytes at {addr:#x} do not fit below the kernel at {limit:#x}")]
    FirmwareTooBig { addr: u64, size: u64, limit: u64 },
    #[error("memory too small: {what} need {need_mib} MiB of RAM, the machine has {have_mib} MiB")]
    MemoryTooSmall {
        what: &'static str,
        need_mib: u64,
        have_mib: u64,
    },
}

/// Bytes to copy to guest RAM; `mem_size` beyond `data` is zeroed.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub addr: u64,
    pub data: &'a [u8],
    pub mem_size: u64,
}

/// Where every image goes.
#[derive(Debug)]
pub struct Placement<'a> {
    pub segments: Vec<Segment<'a>>,
    pub firmware_entry: u64,
    pub kernel_entry: u64,
    /// `[start, end)` of the initrd in guest memory.
    pub initrd: Option<(u64, u64)>,
    pub fdt_addr: u64,
}

/// Place firmware, kernel and initrd in `ram_size` bytes of RAM at
/// [`RAM_BASE`].
pub fn place<'a>(
    firmware: &'a [u8],
    kernel: &'a [u8],
    initrd: Option<&'a [u8]>,
    ram_size: u64,
) -> Result<Placement<'a>, LoadError> {
    let top = RAM_BASE + ram_size;
    let kernel_addr = RAM_BASE + KERNEL_OFFSET;
    let (mut segments, firmware_entry) = firmware_segments(firmware)?;
    for s in &segments {
        let end = s.addr.saturating_add(s.mem_size.max(s.data.len() as u64));
        if s.addr < RAM_BASE || end > kernel_addr {
            return Err(LoadError::FirmwareTooBig {
                addr: s.addr,
                size: end - s.addr,
                limit: kernel_addr,
            });
        }
    }
    let (kernel_segments, kernel_entry, kernel_end) = kernel_segments(kernel, kernel_addr)?;
    segments.extend(kernel_segments);

    let fdt_addr = top.saturating_sub(FDT_WINDOW) & !(2 * MIB - 1);
    if fdt_addr < kernel_end {
        let need = round_up(kernel_end, 2 * MIB).saturating_add(FDT_WINDOW);
        return Err(too_small("the kernel and device tree", need, ram_size));
    }
    let initrd = match initrd {
        Some(data) => {
            check_initrd(data)?;
            let len = data.len() as u64;
            let start = fdt_addr.saturating_sub(len) & !(PAGE - 1);
            if start < kernel_end {
                let images = round_up(kernel_end, PAGE).saturating_add(round_up(len, PAGE));
                let need = round_up(images, 2 * MIB).saturating_add(FDT_WINDOW);
                return Err(too_small(
                    "the kernel, initrd and device tree",
                    need,
                    ram_size,
                ));
            }
            segments.push(Segment {
                addr: start,
                data,
                mem_size: len,
            });
            Some((start, start + len))
        }
        None => None,
    };
    Ok(Placement {
        segments,
        firmware_entry,
        kernel_entry,
        initrd,
        fdt_addr,
    })
}

/// `v` rounded up to a multiple of `align`, saturating: sizes come from
/// the images, so the rounding must not overflow.
fn round_up(v: u64, align: u64) -> u64 {
    v.checked_next_multiple_of(align).unwrap_or(u64::MAX)
}

/// `need_end` is the lowest top of RAM that fits everything.
fn too_small(what: &'static str, need_end: u64, ram_size: u64) -> LoadError {
    LoadError::MemoryTooSmall {
        what,
        need_mib: (need_end - RAM_BASE).div_ceil(MIB),
        have_mib: ram_size / MIB,
    }
}

/// OpenSBI as a raw binary (loaded at the base of RAM) or an ELF.
fn firmware_segments(data: &[u8]) -> Result<(Vec<Segment<'_>>, u64), LoadError> {
    if data.is_empty() {
        return Err(LoadError::Empty { image: "firmware" });
    }
    if is_elf(data) {
        let elf = parse_elf(data, "firmware", Address::Physical)?;
        if !elf.position_independent {
            return Ok((elf.segments, elf.entry));
        }
        // A PIE OpenSBI (linked at 0) relocates itself: load it at RAM base.
        let (segments, entry, _) = elf.relocate(RAM_BASE);
        return Ok((segments, entry));
    }
    let segment = Segment {
        addr: RAM_BASE,
        data,
        mem_size: data.len() as u64,
    };
    Ok((vec![segment], RAM_BASE))
}

/// A flat `Image` or an ELF `vmlinux` relocated to `kernel_addr`; returns
/// the segments, the entry point and the end of the memory it occupies.
fn kernel_segments(
    data: &[u8],
    kernel_addr: u64,
) -> Result<(Vec<Segment<'_>>, u64, u64), LoadError> {
    if data.is_empty() {
        return Err(LoadError::Empty { image: "kernel" });
    }
    if is_elf(data) {
        // vmlinux is linked at virtual addresses; keep its layout relative
        // to the lowest one.
        return Ok(parse_elf(data, "kernel", Address::Virtual)?.relocate(kernel_addr));
    }
    if data.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) != Some(IMAGE_MAGIC) {
        let hint = if data.starts_with(&[0x1f, 0x8b]) {
            " (it is gzip-compressed: decompress it first)"
        } else {
            ""
        };
        return Err(LoadError::NotKernel { hint });
    }
    let image_size = read_u64(data, IMAGE_SIZE_OFFSET).unwrap_or(0);
    let mem_size = image_size.max(data.len() as u64);
    let segment = Segment {
        addr: kernel_addr,
        data,
        mem_size,
    };
    // The image size comes from the file: an end past the address space
    // saturates (and is then too big for any RAM), like an ELF's.
    Ok((
        vec![segment],
        kernel_addr,
        kernel_addr.saturating_add(mem_size),
    ))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&elf::ELFMAG)
}

struct Elf<'a> {
    segments: Vec<Segment<'a>>,
    entry: u64,
    /// `ET_DYN`: may be loaded anywhere.
    position_independent: bool,
}

impl<'a> Elf<'a> {
    /// Move the segments so the lowest starts at `base`, keeping their
    /// layout; returns them, the entry point and the end of the image.
    fn relocate(self, base: u64) -> (Vec<Segment<'a>>, u64, u64) {
        let low = self.segments.iter().map(|s| s.addr).min().unwrap_or(0);
        let mut end = base;
        let segments = self
            .segments
            .into_iter()
            .map(|s| {
                let addr = base.saturating_add(s.addr - low);
                end = end.max(addr.saturating_add(s.mem_size));
                Segment { addr, ..s }
            })
            .collect();
        (
            segments,
            base.wrapping_add(self.entry.wrapping_sub(low)),
            end,
        )
    }
}

#[derive(Clone, Copy)]
enum Address {
    Physical,
    Virtual,
}

/// The loadable segments of a little-endian RV64 ELF at their physical or
/// virtual addresses.
fn parse_elf<'a>(
    data: &'a [u8],
    image: &'static str,
    address: Address,
) -> Result<Elf<'a>, LoadError> {
    let bad = |reason: String| LoadError::BadElf { image, reason };
    let header = elf::FileHeader64::<LE>::parse(data).map_err(|e| bad(e.to_string()))?;
    if !header.is_little_endian() {
        return Err(bad("not little-endian".into()));
    }
    if header.e_machine(LE) != elf::EM_RISCV {
        return Err(bad(format!(
            "machine {} is not RISC-V",
            header.e_machine(LE)
        )));
    }
    let headers = header
        .program_headers(LE, data)
        .map_err(|e| bad(e.to_string()))?;
    let mut segments = Vec::new();
    for ph in headers.iter().filter(|ph| ph.p_type(LE) == elf::PT_LOAD) {
        let bytes = ph
            .data(LE, data)
            .map_err(|()| bad("segment extends past end of file".into()))?;
        let mem_size = ph.p_memsz(LE);
        if (bytes.len() as u64) > mem_size {
            return Err(bad("segment file size exceeds its memory size".into()));
        }
        let addr = match address {
            Address::Physical => ph.p_paddr(LE),
            Address::Virtual => ph.p_vaddr(LE),
        };
        if addr.checked_add(mem_size).is_none() {
            return Err(bad(format!("segment at {addr:#x} wraps the address space")));
        }
        segments.push(Segment {
            addr,
            data: bytes,
            mem_size,
        });
    }
    if segments.is_empty() {
        return Err(bad("no loadable segments".into()));
    }
    Ok(Elf {
        segments,
        entry: header.e_entry(LE),
        position_independent: header.e_type(LE) == elf::ET_DYN,
    })
}

/// Accept the formats Linux can unpack as an initramfs.
fn check_initrd(data: &[u8]) -> Result<(), LoadError> {
    const MAGICS: &[&[u8]] = &[
        b"070701",                          // cpio newc
        b"070702",                          // cpio newc with checksums
        &[0x1f, 0x8b],                      // gzip
        &[0xfd, b'7', b'z', b'X', b'Z', 0], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],          // zstd
        &[0x02, 0x21, 0x4c, 0x18],          // lz4 legacy
        &[0x89, b'L', b'Z', b'O'],          // lzop
        b"BZh",                             // bzip2
        &[0x5d, 0x00, 0x00],                // lzma
    ];
    if data.is_empty() {
        return Err(LoadError::Empty { image: "initrd" });
    }
    if MAGICS.iter().any(|m| data.starts_with(m)) {
        Ok(())
    } else {
        Err(LoadError::BadInitrd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: u64 = 256 * MIB;

    fn fake_image(image_size: u64, len: usize) -> Vec<u8> {
        let mut k = vec![0u8; len];
        k[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&image_size.to_le_bytes());
        k[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(IMAGE_MAGIC);
        k
    }

    /// A minimal RV64 ELF with one PT_LOAD segment of `payload` at `addr`.
    fn fake_elf(addr: u64, entry: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(&elf::ELFMAG);
        f[4] = elf::ELFCLASS64;
        f[5] = elf::ELFDATA2LSB;
        f[6] = elf::EV_CURRENT;
        f[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&elf::EM_RISCV.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&elf::PT_LOAD.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        ph[16..24].copy_from_slice(&addr.to_le_bytes()); // p_vaddr
        ph[24..32].copy_from_slice(&addr.to_le_bytes()); // p_paddr
        ph[32..40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&(payload.len() as u64 + 16).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn places_flat_images() {
        let fw = vec![1u8; 4096];
        let kernel = fake_image(8 * MIB, 4096);
        let initrd = b"070701rest-of-archive".to_vec();
        let p = place(&fw, &kernel, Some(&initrd), MEM).unwrap();
        assert_eq!(p.firmware_entry, RAM_BASE);
        assert_eq!(p.kernel_entry, RAM_BASE + 2 * MIB);
        assert_eq!(p.fdt_addr, RAM_BASE + MEM - 2 * MIB);
        let (start, end) = p.initrd.unwrap();
        assert_eq!(end - start, initrd.len() as u64);
        assert_eq!(start % PAGE, 0);
        assert!(end <= p.fdt_addr);
        assert_eq!(p.segments[1].mem_size, 8 * MIB, "BSS from image_size");
    }

    #[test]
    fn loads_elf_firmware_and_relocates_elf_kernel() {
        let fw = fake_elf(RAM_BASE, RAM_BASE, &[0x13; 64]);
        let kernel = fake_elf(0xffff_ffff_8000_0000, 0xffff_ffff_8000_0010, &[0x13; 64]);
        let p = place(&fw, &kernel, None, MEM).unwrap();
        assert_eq!(p.firmware_entry, RAM_BASE);
        assert_eq!(p.kernel_entry, RAM_BASE + 2 * MIB + 0x10);
        assert_eq!(p.segments[1].addr, RAM_BASE + 2 * MIB);
        assert_eq!(p.segments[1].mem_size, 80);

        // A position-independent OpenSBI linked at 0 goes to the base of RAM.
        let mut pie = fake_elf(0, 0x10, &[0x13; 64]);
        pie[16..18].copy_from_slice(&elf::ET_DYN.to_le_bytes());
        let p = place(&pie, &kernel, None, MEM).unwrap();
        assert_eq!(p.segments[0].addr, RAM_BASE);
        assert_eq!(p.firmware_entry, RAM_BASE + 0x10);
    }

    #[test]
    fn rejects_bad_images_with_named_errors() {
        let fw = vec![1u8; 4096];
        let kernel = fake_image(MIB, 4096);
        let err = |r: Result<Placement, LoadError>| r.unwrap_err().to_string();
        assert!(err(place(&[], &kernel, None, MEM)).contains("firmware is empty"));
        assert!(err(place(&fw, &[0u8; 100], None, MEM)).contains("not a RISC-V Linux Image"));
        assert!(err(place(&fw, &[0x1f, 0x8b, 8, 0], None, MEM)).contains("gzip"));
        assert!(err(place(&fw, &kernel, Some(b"junk"), MEM)).contains("initrd: unrecognised"));
        assert!(err(place(&vec![0u8; 3 * MIB as usize], &kernel, None, MEM)).contains("firmware"));
        let mut bad_elf = fake_elf(RAM_BASE, RAM_BASE, &[0; 8]);
        bad_elf[18] = 0x3e; // x86-64
        assert!(err(place(&bad_elf, &kernel, None, MEM)).contains("not RISC-V"));
        let truncated = &fake_elf(RAM_BASE, RAM_BASE, &[0; 64])[..100];
        assert!(err(place(truncated, &kernel, None, MEM)).starts_with("firmware: not a usable ELF"));
    }

    #[test]
    fn memory_too_small_is_an_error() {
        let fw = vec![1u8; 4096];
        let kernel = fake_image(30 * MIB, 4096);
        let e = place(&fw, &kernel, None, 32 * MIB).unwrap_err();
        assert!(e.to_string().contains("need 34 MiB"), "{e}");
        assert!(place(&fw, &kernel, None, 34 * MIB).is_ok());
        let initrd = [0x1f, 0x8b, 0, 0].repeat(MIB as usize);
        let e = place(&fw, &kernel, Some(&initrd), 36 * MIB).unwrap_err();
        assert!(
            e.to_string().contains("kernel, initrd and device tree"),
            "{e}"
        );
        assert!(place(&fw, &kernel, Some(&initrd), 40 * MIB).is_ok());
    }

    /// Found by fuzzing (`loader` target): a flat `Image` whose header
    /// claims an image size near 2^64 overflowed the kernel's end (a panic
    /// with overflow checks), and its rounding up for the error message
    /// would have next. It is "memory too small", for any RAM.
    #[test]
    fn image_sizes_near_the_end_of_the_address_space() {
        let fw = vec![1u8; 4096];
        for size in [u64::MAX, u64::MAX - 0x8020_0000 + 1, 0xffff_ffff_ffff_0400] {
            let kernel = fake_image(size, 4096);
            let e = place(&fw, &kernel, None, 64 * MIB).unwrap_err();
            assert!(matches!(e, LoadError::MemoryTooSmall { .. }), "{e}");
            let initrd = b"070701".to_vec();
            let e = place(&fw, &kernel, Some(&initrd), 64 * MIB).unwrap_err();
            assert!(matches!(e, LoadError::MemoryTooSmall { .. }), "{e}");
        }
    }
}
