//! The short fuzz run inside `cargo test`: every target replays its seed
//! corpus (`corpus/<target>/`), then runs mutations of those seeds for a
//! few seconds (`LOCKSTEP_FUZZ_SMOKE_SECS`, default 3) or at most 3,000
//! inputs, uninstrumented. A panic in a target fails its test and prints
//! the input (as hex, and written to `target/fuzz-smoke/`) to turn into a
//! regression test. The coverage-guided soak is `fuzz/run.sh`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAX_INPUTS: usize = 3_000;

fn seeds(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// xorshift64*: a reproducible stream for the mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// A few random edits of `input`, `other` (another seed) for splicing.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = rng.next() as u8;
            }
            2 if len > 0 => {
                // An interesting little-endian value of 1, 2, 4 or 8 bytes.
                let width = 1 << rng.below(4);
                let at = rng.below(len);
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let end = (at + width).min(len);
                input[at..end].copy_from_slice(&value[..end - at]);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below((len - at).min(64) + 1);
                input.drain(at..at + n);
            }
            4 => {
                let at = rng.below(len + 1);
                let n = rng.below(64);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, fill);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = rng.below((other.len() - from).min(256) + 1);
                let at = rng.below(len + 1);
                input.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => input.truncate(rng.below(len + 1)),
        }
    }
    input.truncate(max_len);
}

fn report(name: &str, input: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/fuzz-smoke")
        .join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{}", input.len()));
    let _ = std::fs::write(&path, input);
    let hex: String = input.iter().take(512).map(|b| format!("{b:02x}")).collect();
    format!("{} (first bytes: {hex})", path.display())
}

fn run(name: &str) {
    let target = fuzz::target(name).expect("a target of that name");
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "{name}: no seeds");
    // A stack overflow or an abort cannot be caught: with
    // LOCKSTEP_FUZZ_SMOKE_LAST set, each input is written out first.
    let last = std::env::var_os("LOCKSTEP_FUZZ_SMOKE_LAST").map(|_| report(name, b""));
    let check = |input: &[u8]| {
        if let Some(path) = &last {
            let path = path.split(' ').next().unwrap_or_default();
            std::fs::write(path, input).unwrap();
        }
        if std::panic::catch_unwind(|| (target.run)(input)).is_err() {
            panic!(
                "{name}: the target panicked on input {}",
                report(name, input)
            );
        }
    };
    for (_, seed) in &seeds {
        check(seed);
    }
    let secs = std::env::var("LOCKSTEP_FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut runs = 0;
    while runs < MAX_INPUTS && Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].1.clone();
        let other = &seeds[rng.below(seeds.len())].1;
        mutate(&mut rng, &mut input, other, target.max_len);
        check(&input);
        runs += 1;
    }
    eprintln!("{name}: {} seeds, {runs} mutated inputs", seeds.len());
}

macro_rules! smoke {
    ($($name:ident)*) => {$(
        #[test]
        fn $name() {
            run(stringify!($name));
        }
    )*};
}

smoke! {
    snapshot snapshot_assembler virtio tracked_disk loader replay_log replay_codec
    ft_wire link_frames api_requests net_frames disk_image cpio deb deb822 inrelease
}

/// Every target has a smoke test and a seed corpus, and the table has
/// no duplicates.
#[test]
fn every_target_is_covered() {
    let names: Vec<_> = fuzz::TARGETS.iter().map(|t| t.name).collect();
    let source = include_str!("smoke.rs");
    for name in &names {
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{name} twice"
        );
        assert!(
            source.contains(&format!(" {name} ")) || source.contains(&format!(" {name}\n")),
            "{name}: no smoke test"
        );
        assert!(!seeds(name).is_empty(), "{name}: no seeds");
    }
}

/// The virtio seeds drive each device through real requests: the used
/// rings in guest RAM show them completed (so mutations start from inputs
/// that reach the device code, not the transport's refusals).
#[test]
fn virtio_seeds_complete_requests() {
    let used_idx = |ram: &riscv::Ram, used: u64| ram.read_u32(0x8000_0000 + used).unwrap() >> 16;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/virtio");
    let run = |name: &str| {
        let data = std::fs::read(corpus.join(name)).unwrap();
        fuzz::targets::virtio_session(&data).expect("64 KiB of guest RAM")
    };
    let (_, ram) = run("blk-write-read");
    assert_eq!(used_idx(&ram, 0x600), 2, "block requests completed");
    assert_eq!(ram.read_u32(0x8000_0900).unwrap() & 0xffff, 0, "both OK");
    let (_, ram) = run("rng-read");
    assert_eq!(used_idx(&ram, 0x600), 1, "entropy request completed");
    let (_, ram) = run("net-tx-rx");
    assert_eq!(used_idx(&ram, 0xf00), 1, "frame transmitted");
    assert_eq!(used_idx(&ram, 0x600), 1, "frame received");
    const { assert!(fuzz::targets::VIRTIO_RAM >= 0x1800) };
}

/// The InRelease seeds are Debian's own, signed by keys built into the
/// binary: they pass the signature check and parse, so mutations start
/// from the accepting path.
#[test]
fn inrelease_seeds_verify() {
    let accepted = seeds("inrelease")
        .iter()
        .filter(|(_, bytes)| guest_image::fuzzing::inrelease(bytes))
        .count();
    assert!(accepted > 0, "no InRelease seed verifies");
}
