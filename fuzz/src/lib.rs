//! Fuzz targets for every parser of untrusted bytes (issue #11, part 5).
//!
//! Each target is a plain function from bytes to nothing that must not
//! panic, hang or allocate without bound on any input; some also check a
//! property (a decoded message encodes back to itself, …) with `assert!`,
//! which the fuzzer reports as a crash. The same functions run in two
//! ways: under libFuzzer (`targets/*.rs`, built by `run.sh` with coverage
//! instrumentation and the `libfuzzer` feature) and, uninstrumented, in
//! `tests/smoke.rs` inside `cargo test` (corpus replay plus a short run
//! of mutated inputs). See `README.md`.

mod api;
mod cursor;
mod files;
mod images;
mod logs;
mod machine;
mod net;

pub use cursor::Cursor;

/// The target functions by target name.
pub mod targets {
    pub use crate::api::api_requests;
    pub use crate::files::{deb, disk_image};
    pub use crate::images::{cpio, deb822, inrelease};
    pub use crate::logs::{ft_wire, link_frames, replay_codec, replay_log};
    pub use crate::machine::{
        assembler as snapshot_assembler, loader, snapshot, tracked_disk, virtio, virtio_session,
        VIRTIO_RAM,
    };
    pub use crate::net::net_frames;
}

/// One fuzz target.
pub struct Target {
    /// Its name: the libFuzzer binary, `corpus/<name>/`, `run.sh <name>`.
    pub name: &'static str,
    /// The parser it reaches.
    pub parser: &'static str,
    pub run: fn(&[u8]),
    /// Largest input worth trying (libFuzzer's `-max_len`).
    pub max_len: usize,
}

/// Every target, in the order `run.sh all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "snapshot",
        parser: "machine: snapshot reader (read_info, restore with and without verify), checksums resealed",
        run: machine::snapshot,
        max_len: 128 << 10,
    },
    Target {
        name: "snapshot_assembler",
        parser: "machine: snapshot::Assembler (boot images, pages, state from the network), then restore",
        run: machine::assembler,
        max_len: 64 << 10,
    },
    Target {
        name: "virtio",
        parser: "machine: virtio-mmio transport, queues and blk/rng/net devices driven through MMIO",
        run: machine::virtio,
        max_len: 16 << 10,
    },
    Target {
        name: "tracked_disk",
        parser: "machine: tracked-disk cluster records (restored) and the tracking under writes",
        run: machine::tracked_disk,
        max_len: 4 << 10,
    },
    Target {
        name: "loader",
        parser: "machine: firmware / kernel (flat Image or ELF) / initrd placement, machine build",
        run: machine::loader,
        max_len: 16 << 10,
    },
    Target {
        name: "replay_log",
        parser: "replay: log reader (header, frames, torn tails) strict and lenient",
        run: logs::replay_log,
        max_len: 16 << 10,
    },
    Target {
        name: "replay_codec",
        parser: "replay: frame decoder and record payloads, over frames with valid CRCs",
        run: logs::replay_codec,
        max_len: 8 << 10,
    },
    Target {
        name: "ft_wire",
        parser: "ft: log-channel messages (Hello, sync pieces, Batch with log frames, Ack, …)",
        run: logs::ft_wire,
        max_len: 8 << 10,
    },
    Target {
        name: "link_frames",
        parser: "link: preamble and frame parsing of the byte stream",
        run: logs::link_frames,
        max_len: 8 << 10,
    },
    Target {
        name: "api_requests",
        parser: "api: lockstepd's router (paths, queries, bearer tokens, JSON bodies, limits) as a reader or unauthenticated",
        run: api::api_requests,
        max_len: 8 << 10,
    },
    Target {
        name: "net_frames",
        parser: "net: switch MAC table, gateway (ARP, ICMP, DHCP server), VXLAN decapsulation and checksum completion",
        run: net::net_frames,
        max_len: 16 << 10,
    },
    Target {
        name: "disk_image",
        parser: "disk: qcow2/raw open and info of a file written from the input, reads and writes",
        run: files::disk_image,
        max_len: 64 << 10,
    },
    Target {
        name: "cpio",
        parser: "image: newc cpio reader",
        run: images::cpio,
        max_len: 16 << 10,
    },
    Target {
        name: "deb",
        parser: "image: .deb (ar, data.tar.{xz,zst,gz}, tar)",
        run: files::deb,
        max_len: 64 << 10,
    },
    Target {
        name: "deb822",
        parser: "image: deb822 stanzas, Release, Packages, Depends, version order",
        run: images::deb822,
        max_len: 16 << 10,
    },
    Target {
        name: "inrelease",
        parser: "image: InRelease (clearsigned OpenPGP against Debian's keys), then Release",
        run: images::inrelease,
        max_len: 64 << 10,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
