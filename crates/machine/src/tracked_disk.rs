//! A machine disk that knows which of its clusters execution wrote, and a
//! hash of their contents: the disk's part of the state hash (DESIGN §3.5,
//! §3.7).
//!
//! Replicas start from identical disks: a snapshot's `DiskIdentity` and the
//! FT sync check that separately. From there, the only way execution makes
//! two disks differ is by writing them, so hashing the clusters written
//! since the machine was built covers every difference, without ever
//! reading the rest of the disk. A written cluster stays in the set for the
//! machine's life (and across snapshots: the set is part of the state
//! section).
//!
//! # Digest
//!
//! Clusters are 64 KiB (the last may be shorter). The written clusters are
//! kept in a canonical form that depends only on which clusters were
//! written and what they hold now: maximal runs of all-zero clusters, and
//! each other cluster with the blake3 of its bytes. Clusters are grouped
//! 512 to a group (32 MiB):
//!
//! ```text
//! group hash = blake3(items of the group, in order: a zero run clipped to
//!              the group as 0u8 ‖ first ‖ end, a cluster as 1u8 ‖ index ‖ hash)
//! digest     = blake3(capacity ‖ items, in order: a run of wholly-zero
//!              groups as 0u8 ‖ first ‖ end, another group with written
//!              clusters as 1u8 ‖ index ‖ group hash)
//! ```
//!
//! (integers u64 LE). Writes mark clusters dirty; a digest reads the dirty
//! ones back, then recomputes the groups they are in and the top: O(dirty
//! clusters + groups + zero runs). Zeroing a range (`write_zeroes`,
//! `discard`, which the `BlockDevice` contract makes read back as zero)
//! records the clusters it covers whole as a zero run without reading
//! them, so a guest discarding a huge disk (mkfs) costs a few map entries,
//! not one per cluster.

use disk::{check_range, BlockDevice, Contents, DiskError, Runs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// Why a written-cluster record (from a snapshot) does not fit its disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "zero run of clusters {first}..{end} is empty, out of order, touches the previous \
         one or lies beyond cluster {clusters}"
    )]
    ZeroRun { first: u64, end: u64, clusters: u64 },
    #[error("cluster {cluster} is out of order or lies beyond cluster {clusters}")]
    Cluster { cluster: u64, clusters: u64 },
    #[error("cluster {cluster} is also in a zero run")]
    ClusterInZeroRun { cluster: u64 },
}

/// Why a backend cannot take over a disk ([`TrackedDisk::replace_inner`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("the new backend holds {found} bytes, the disk {capacity}")]
    Capacity { found: u64, capacity: u64 },
    #[error("the new backend differs in being read-only (it is{} read-only)", if *read_only { "" } else { " not" })]
    ReadOnly { read_only: bool },
}

/// Bytes per tracked cluster.
pub const CLUSTER: u64 = 64 << 10;
/// Clusters per group.
pub const GROUP: u64 = 512;
type Hash = [u8; 32];

/// The written clusters of one disk as a snapshot stores them (the
/// canonical form, see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Maximal runs `[first, end)` of written all-zero clusters, ascending.
    pub zero_runs: Vec<(u64, u64)>,
    /// Other written clusters and the blake3 of their bytes, ascending.
    pub clusters: Vec<(u64, Hash)>,
}

/// A [`BlockDevice`] that tracks and hashes the clusters written to it.
pub struct TrackedDisk {
    inner: Box<dyn BlockDevice>,
    capacity: u64,
    /// Written clusters known to hold only zeroes.
    zero_runs: Runs,
    /// Other written clusters, with the hash of their bytes.
    clusters: BTreeMap<u64, Hash>,
    /// Written clusters not read back since (in neither of the above).
    dirty: Runs,
    /// Hash of each group holding written clusters but not wholly zero.
    groups: BTreeMap<u64, Hash>,
    /// Groups whose hash must be recomputed.
    stale: BTreeSet<u64>,
    /// The digest, if nothing changed since it was computed.
    digest: Option<Hash>,
    /// Clusters changed since the change log was last taken, while a
    /// consumer (a live save) keeps one.
    change_log: Option<Runs>,
}

impl TrackedDisk {
    /// Track `inner` from now on: nothing written yet.
    pub fn new(inner: Box<dyn BlockDevice>) -> Self {
        let capacity = inner.capacity();
        TrackedDisk {
            inner,
            capacity,
            zero_runs: Runs::default(),
            clusters: BTreeMap::new(),
            dirty: Runs::default(),
            groups: BTreeMap::new(),
            stale: BTreeSet::new(),
            digest: None,
            change_log: None,
        }
    }

    /// Track `inner` with the written clusters a snapshot recorded. The
    /// record must be canonical and fit the disk; the error says why not.
    /// With `reread`, the recorded non-zero clusters are read back at the
    /// next digest instead of trusting their recorded hashes.
    pub fn restored(
        inner: Box<dyn BlockDevice>,
        record: &ClusterRecord,
        reread: bool,
    ) -> Result<Self, RecordError> {
        let mut disk = Self::new(inner);
        disk.check_record(record)?;
        for &(a, b) in &record.zero_runs {
            disk.zero_runs.insert(a, b);
            disk.stale.extend([a / GROUP, (b - 1) / GROUP]); // interior groups are whole
        }
        for &(c, hash) in &record.clusters {
            disk.clusters.insert(c, hash);
            disk.stale.insert(c / GROUP);
        }
        if reread {
            disk.reread_clusters();
        }
        Ok(disk)
    }

    /// The written clusters, for a snapshot (after reading back any dirty
    /// ones).
    pub fn record(&mut self) -> Result<ClusterRecord, DiskError> {
        self.read_back_dirty()?;
        Ok(ClusterRecord {
            zero_runs: self.zero_runs.iter().collect(),
            clusters: self.clusters.iter().map(|(&c, &h)| (c, h)).collect(),
        })
    }

    /// The disk's part of the state hash (see the module docs).
    pub fn digest(&mut self) -> Result<Hash, DiskError> {
        self.read_back_dirty()?;
        while let Some(g) = self.stale.pop_first() {
            self.rehash_group(g);
        }
        if let Some(digest) = self.digest {
            return Ok(digest);
        }
        let digest = self.top_hash();
        self.digest = Some(digest);
        Ok(digest)
    }

    pub fn inner(&self) -> &dyn BlockDevice {
        &*self.inner
    }

    /// Go on with `inner` in place of the present backend, which it must
    /// read exactly like (e.g. a new empty overlay over it, after a
    /// flush): what was written stays tracked. Returns the old backend.
    pub fn replace_inner(
        &mut self,
        inner: Box<dyn BlockDevice>,
    ) -> Result<Box<dyn BlockDevice>, SwapError> {
        if inner.capacity() != self.capacity {
            return Err(SwapError::Capacity {
                found: inner.capacity(),
                capacity: self.capacity,
            });
        }
        if inner.read_only() != self.inner.read_only() {
            return Err(SwapError::ReadOnly {
                read_only: inner.read_only(),
            });
        }
        Ok(std::mem::replace(&mut self.inner, inner))
    }

    /// Start (or restart, empty) logging the clusters changed from now on.
    pub fn start_change_log(&mut self) {
        self.change_log = Some(Runs::default());
    }

    /// The runs `[first, end)` of clusters changed since the log was
    /// started or last taken (empty if no log is kept); logging goes on.
    pub fn take_change_log(&mut self) -> Vec<(u64, u64)> {
        self.change_log
            .as_mut()
            .map(|log| std::mem::take(log).iter().collect())
            .unwrap_or_default()
    }

    pub fn stop_change_log(&mut self) {
        self.change_log = None;
    }

    fn cluster_count(&self) -> u64 {
        self.capacity.div_ceil(CLUSTER)
    }

    /// Clusters on the disk (the last may be short).
    pub fn capacity_clusters(&self) -> u64 {
        self.cluster_count()
    }

    /// Bytes of cluster `c` that lie on the disk (`c` must be on it).
    pub fn cluster_bytes(&self, c: u64) -> u64 {
        self.cluster_len(c)
    }

    fn group_count(&self) -> u64 {
        self.cluster_count().div_ceil(GROUP)
    }

    /// Bytes of cluster `c` that lie on the disk.
    fn cluster_len(&self, c: u64) -> u64 {
        CLUSTER.min(self.capacity - c * CLUSTER)
    }

    /// Clusters `[first, end)` that `[offset, offset+len)` touches; the
    /// range must be within the disk.
    fn touched(offset: u64, len: u64) -> (u64, u64) {
        (offset / CLUSTER, (offset + len).div_ceil(CLUSTER))
    }

    /// Clusters `[first, end)` that `[offset, offset+len)` covers whole (as
    /// far as they lie on the disk); the range must be within the disk.
    fn covered(&self, offset: u64, len: u64) -> (u64, u64) {
        let end = offset + len;
        let last = if end == self.capacity {
            self.cluster_count()
        } else {
            end / CLUSTER
        };
        (offset.div_ceil(CLUSTER), last)
    }

    /// Clusters `[a, b)` may have changed: read them back at the digest.
    fn mark_dirty(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        self.zero_runs.remove(a, b);
        self.clusters.remove_range(a, b);
        self.dirty.insert(a, b);
        // The groups are marked stale when the clusters are read back.
        self.digest = None;
    }

    /// Clusters `[a, b)` now hold only zeroes.
    fn mark_zeroed(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        self.dirty.remove(a, b);
        self.clusters.remove_range(a, b);
        self.zero_runs.insert(a, b);
        // Groups inside the range are wholly zero now: no hash of their own.
        let (first_whole, end_whole) = (a.div_ceil(GROUP), b / GROUP);
        if first_whole < end_whole {
            self.groups.remove_range(first_whole, end_whole);
        }
        self.stale.extend([a / GROUP, (b - 1) / GROUP]);
        self.digest = None;
    }

    /// Before a request that may change `[offset, offset+len)`: mark the
    /// clusters it touches, unless the disk will refuse the request
    /// untouched (read-only, out of range).
    fn before_change(&mut self, offset: u64, len: u64) {
        if len > 0 && !self.inner.read_only() && check_range(offset, len, self.capacity).is_ok() {
            let (a, b) = Self::touched(offset, len);
            self.mark_dirty(a, b);
            if let Some(log) = &mut self.change_log {
                log.insert(a, b);
            }
        }
    }

    /// After a successful zeroing request: the clusters it covers whole are
    /// zero (no need to read them); the partial ones at its ends stay dirty.
    fn after_zeroing(&mut self, offset: u64, len: u64) {
        if len > 0 && check_range(offset, len, self.capacity).is_ok() {
            let (a, b) = self.covered(offset, len);
            self.mark_zeroed(a, b);
        }
    }

    fn read_back_dirty(&mut self) -> Result<(), DiskError> {
        let mut buf = vec![0u8; CLUSTER as usize];
        while let Some(c) = self.dirty.first() {
            let len = self.cluster_len(c) as usize;
            self.inner.read_at(c * CLUSTER, &mut buf[..len])?;
            let bytes = &buf[..len];
            // Only now: a failed read leaves the cluster dirty.
            self.dirty.remove(c, c + 1);
            if is_zero(bytes) {
                self.zero_runs.insert(c, c + 1);
            } else {
                self.clusters.insert(c, *blake3::hash(bytes).as_bytes());
            }
            self.stale.insert(c / GROUP);
        }
        Ok(())
    }

    /// Recompute group `g`'s hash, or drop it if the group is wholly zero.
    fn rehash_group(&mut self, g: u64) {
        let (a, b) = self.group_range(g);
        let mut runs = self.zero_runs.within(a, b).peekable();
        if runs.peek() == Some(&(a, b)) {
            self.groups.remove(&g);
            return;
        }
        let items: Vec<Item<'_>> = runs
            .map(|(s, e)| Item::Zero(s, e))
            .chain(self.clusters.range(a..b).map(|(&c, h)| Item::Hashed(c, h)))
            .collect();
        if items.is_empty() {
            self.groups.remove(&g);
            return;
        }
        let hash = hash_items(&[], items);
        self.groups.insert(g, hash);
    }

    /// The clusters `[first, end)` of group `g` that lie on the disk.
    fn group_range(&self, g: u64) -> (u64, u64) {
        (g * GROUP, ((g + 1) * GROUP).min(self.cluster_count()))
    }

    /// Runs of wholly-zero groups, from the zero runs.
    fn zero_groups(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let clusters = self.cluster_count();
        let groups = self.group_count();
        self.zero_runs.iter().filter_map(move |(a, b)| {
            let first = a.div_ceil(GROUP);
            let end = if b == clusters { groups } else { b / GROUP };
            (first < end).then_some((first, end))
        })
    }

    fn top_hash(&self) -> Hash {
        let items = self
            .zero_groups()
            .map(|(s, e)| Item::Zero(s, e))
            .chain(self.groups.iter().map(|(&g, h)| Item::Hashed(g, h)))
            .collect();
        hash_items(&self.capacity.to_le_bytes(), items)
    }

    /// Every recorded non-zero cluster becomes dirty (read back at the
    /// digest). Zero runs are kept: they are what the disk contract
    /// promises after zeroing, and re-reading a discarded terabyte would
    /// take minutes.
    fn reread_clusters(&mut self) {
        let clusters: Vec<u64> = self.clusters.keys().copied().collect();
        for c in clusters {
            self.mark_dirty(c, c + 1);
        }
    }

    /// A record must be what [`TrackedDisk::record`] writes: ascending,
    /// disjoint, on the disk, zero runs maximal.
    fn check_record(&self, record: &ClusterRecord) -> Result<(), RecordError> {
        let clusters = self.cluster_count();
        let mut prev_end = None;
        for &(a, b) in &record.zero_runs {
            if a >= b || b > clusters || prev_end.is_some_and(|p| a <= p) {
                return Err(RecordError::ZeroRun {
                    first: a,
                    end: b,
                    clusters,
                });
            }
            prev_end = Some(b);
        }
        let mut runs = Runs::default();
        record
            .zero_runs
            .iter()
            .for_each(|&(a, b)| runs.insert(a, b));
        let mut prev = None;
        for &(c, _) in &record.clusters {
            if c >= clusters || prev.is_some_and(|p| c <= p) {
                return Err(RecordError::Cluster {
                    cluster: c,
                    clusters,
                });
            }
            if runs.within(c, c + 1).next().is_some() {
                return Err(RecordError::ClusterInZeroRun { cluster: c });
            }
            prev = Some(c);
        }
        Ok(())
    }
}

/// One entry of a group's or the top level's hashed list.
enum Item<'a> {
    /// A run `[first, end)` of zero clusters (or wholly-zero groups).
    Zero(u64, u64),
    /// A cluster (or group) and its hash.
    Hashed(u64, &'a Hash),
}

/// blake3 of `prefix` and the items in index order, encoded as the module
/// docs say, hashed as one buffer (32-byte updates would forgo blake3's
/// parallel lanes).
fn hash_items(prefix: &[u8], mut items: Vec<Item<'_>>) -> Hash {
    items.sort_unstable_by_key(|item| match *item {
        Item::Zero(first, _) | Item::Hashed(first, _) => first,
    });
    let mut buf = Vec::with_capacity(prefix.len() + items.len() * 41);
    buf.extend_from_slice(prefix);
    for item in items {
        match item {
            Item::Zero(first, end) => {
                buf.push(0);
                buf.extend_from_slice(&first.to_le_bytes());
                buf.extend_from_slice(&end.to_le_bytes());
            }
            Item::Hashed(index, hash) => {
                buf.push(1);
                buf.extend_from_slice(&index.to_le_bytes());
                buf.extend_from_slice(hash);
            }
        }
    }
    *blake3::hash(&buf).as_bytes()
}

fn is_zero(bytes: &[u8]) -> bool {
    static ZERO: OnceLock<Vec<u8>> = OnceLock::new();
    let zero = ZERO.get_or_init(|| vec![0; CLUSTER as usize]);
    bytes == &zero[..bytes.len()]
}

/// Removing a key range from a map.
trait RemoveRange {
    /// Drop the keys in `[a, b)`: O(k log n) for k keys dropped
    /// (`split_off` would count one side's entries).
    fn remove_range(&mut self, a: u64, b: u64);
}

impl<V> RemoveRange for BTreeMap<u64, V> {
    fn remove_range(&mut self, a: u64, b: u64) {
        while let Some(&k) = self.range(a..b).next().map(|(k, _)| k) {
            self.remove(&k);
        }
    }
}

impl BlockDevice for TrackedDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn set_frozen(&mut self, frozen: bool) -> Result<(), DiskError> {
        self.inner.set_frozen(frozen)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        // Marked whether or not it succeeds: a failed write may have
        // written part of the range.
        self.before_change(offset, data.len() as u64);
        self.inner.write_at(offset, data)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.inner.flush()
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.before_change(offset, len);
        self.inner.discard(offset, len)?;
        self.after_zeroing(offset, len);
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.before_change(offset, len);
        self.inner.write_zeroes(offset, len)?;
        self.after_zeroing(offset, len);
        Ok(())
    }

    fn contents(&self) -> Contents<'_> {
        self.inner.contents()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use disk::MemDisk;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Two groups and a bit, the last cluster short.
    const CAPACITY: u64 = (2 * GROUP + 40) * CLUSTER - 3 * 512;
    const CLUSTERS: u64 = CAPACITY.div_ceil(CLUSTER);

    fn tracked(capacity: u64) -> TrackedDisk {
        TrackedDisk::new(Box::new(MemDisk::new(capacity as usize)))
    }

    fn bytes(disk: &TrackedDisk) -> &[u8] {
        match disk.inner().contents() {
            Contents::Memory(bytes) => bytes,
            Contents::Files { .. } => unreachable!("a memory disk"),
        }
    }

    /// The canonical record of `written` clusters of `contents`, computed
    /// directly from the bytes.
    fn expected_record(contents: &[u8], written: &BTreeSet<u64>) -> ClusterRecord {
        let mut record = ClusterRecord::default();
        for &c in written {
            let start = (c * CLUSTER) as usize;
            let cluster = &contents[start..(start + CLUSTER as usize).min(contents.len())];
            if cluster == vec![0; cluster.len()] {
                match record.zero_runs.last_mut() {
                    Some((_, end)) if *end == c => *end = c + 1,
                    _ => record.zero_runs.push((c, c + 1)),
                }
            } else {
                record.clusters.push((c, *blake3::hash(cluster).as_bytes()));
            }
        }
        record
    }

    /// The digest a disk with these contents and written clusters has,
    /// whatever happened before: restored from the expected record.
    fn from_scratch(contents: &[u8], written: &BTreeSet<u64>) -> Hash {
        let copy = MemDisk::with_contents(contents.to_vec(), false);
        let record = expected_record(contents, written);
        let mut disk = TrackedDisk::restored(Box::new(copy), &record, true).unwrap();
        disk.digest().unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { offset: u64, len: u64, byte: u8 },
        Zeroes { offset: u64, len: u64 },
        Discard { offset: u64, len: u64 },
        Digest,
    }

    fn op() -> impl Strategy<Value = Op> {
        let len = prop_oneof![1..3 * CLUSTER, 1..CAPACITY];
        let range = (0..CAPACITY, len).prop_map(|(o, l)| (o, l.min(CAPACITY - o)));
        prop_oneof![
            3 => (0..CAPACITY, 1..3 * CLUSTER, 0..3u8).prop_map(|(offset, len, byte)| {
                Op::Write { offset, len: len.min(CAPACITY - offset), byte }
            }),
            1 => range.clone().prop_map(|(offset, len)| Op::Zeroes { offset, len }),
            1 => range.prop_map(|(offset, len)| Op::Discard { offset, len }),
            2 => Just(Op::Digest),
        ]
    }

    fn apply(disk: &mut TrackedDisk, written: &mut BTreeSet<u64>, op: &Op) {
        let (offset, len) = match *op {
            Op::Write { offset, len, byte } => {
                disk.write_at(offset, &vec![byte; len as usize]).unwrap();
                (offset, len)
            }
            Op::Zeroes { offset, len } => {
                disk.write_zeroes(offset, len).unwrap();
                (offset, len)
            }
            Op::Discard { offset, len } => {
                disk.discard(offset, len).unwrap();
                (offset, len)
            }
            Op::Digest => {
                disk.digest().unwrap();
                return;
            }
        };
        written.extend(offset / CLUSTER..(offset + len).div_ceil(CLUSTER));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Writes, zeroing (which may turn data into zero runs and back)
        /// and digests at any point: the incremental digest and the record
        /// are those of the contents alone.
        #[test]
        fn incremental_digest_is_the_from_scratch_digest(
            ops in prop::collection::vec(op(), 1..24),
        ) {
            let mut disk = tracked(CAPACITY);
            let mut written = BTreeSet::new();
            for op in &ops {
                apply(&mut disk, &mut written, op);
            }
            let digest = disk.digest().unwrap();
            let record = disk.record().unwrap();
            prop_assert_eq!(&record, &expected_record(bytes(&disk), &written));
            prop_assert_eq!(digest, from_scratch(bytes(&disk), &written));
        }

        /// The cluster-range sets agree with a plain set of clusters.
        #[test]
        fn runs_are_the_set_they_describe(
            ops in prop::collection::vec((any::<bool>(), 0..200u64, 0..40u64), 1..40),
        ) {
            let mut runs = Runs::default();
            let mut model = BTreeSet::new();
            for (insert, a, len) in ops {
                if insert {
                    runs.insert(a, a + len);
                    model.extend(a..a + len);
                } else {
                    runs.remove(a, a + len);
                    model.retain(|c| !(a..a + len).contains(c));
                }
                let listed: BTreeSet<u64> = runs.iter().flat_map(|(s, e)| s..e).collect();
                prop_assert_eq!(&listed, &model);
                let pairs: Vec<_> = runs.iter().collect();
                prop_assert!(pairs.windows(2).all(|w| w[0].1 < w[1].0), "maximal: {:?}", pairs);
                let inside: BTreeSet<u64> = runs.within(50, 120).flat_map(|(s, e)| s..e).collect();
                let want: BTreeSet<u64> = model.range(50..120).copied().collect();
                prop_assert_eq!(inside, want);
            }
        }
    }

    #[test]
    fn writes_change_the_digest_and_equal_writes_give_equal_digests() {
        let mut a = tracked(CAPACITY);
        let mut b = tracked(CAPACITY);
        let blank = a.digest().unwrap();
        assert_eq!(b.digest().unwrap(), blank);

        a.write_at(5 * CLUSTER + 100, b"data").unwrap();
        let written = a.digest().unwrap();
        assert_ne!(written, blank);
        b.write_at(5 * CLUSTER + 100, b"data").unwrap();
        assert_eq!(b.digest().unwrap(), written, "same writes, same digest");

        let mut c = tracked(CAPACITY);
        c.write_at(5 * CLUSTER + 100, b"date").unwrap();
        assert_ne!(c.digest().unwrap(), written, "other data");
        let mut d = tracked(CAPACITY);
        d.write_at(6 * CLUSTER + 100, b"data").unwrap();
        assert_ne!(d.digest().unwrap(), written, "same data elsewhere");

        // Writing zeroes is a write too: the cluster joins the hashed set.
        let mut e = tracked(CAPACITY);
        e.write_at(0, &[0; 16]).unwrap();
        assert_ne!(e.digest().unwrap(), blank);
    }

    #[test]
    fn the_digest_covers_written_clusters_only() {
        // Replicas start equal (checked elsewhere), so bytes never written
        // are not read: two disks that differ only there hash the same
        // until a write reaches their cluster.
        let mut other = vec![0u8; CAPACITY as usize];
        other[(9 * CLUSTER + 7) as usize] = 1;
        let mut a = tracked(CAPACITY);
        let mut b = TrackedDisk::new(Box::new(MemDisk::with_contents(other, false)));
        a.write_at(9 * CLUSTER + 512, &[3; 512]).unwrap();
        b.write_at(9 * CLUSTER + 512, &[3; 512]).unwrap();
        assert_ne!(a.digest().unwrap(), b.digest().unwrap());
    }

    #[test]
    fn refused_requests_mark_nothing() {
        let mut ro = TrackedDisk::new(Box::new(MemDisk::with_contents(vec![0; 1 << 20], true)));
        let blank = ro.digest().unwrap();
        assert!(ro.write_at(0, b"x").is_err());
        assert!(ro.write_zeroes(0, 4096).is_err());
        assert_eq!(ro.digest().unwrap(), blank);
        assert_eq!(ro.record().unwrap(), ClusterRecord::default());

        let mut rw = tracked(1 << 20);
        assert!(rw.write_at((1 << 20) - 1, b"xy").is_err());
        assert!(rw.discard(1 << 20, 1).is_err());
        assert_eq!(rw.record().unwrap(), ClusterRecord::default());
    }

    /// A disk of any size whose reads are zero and whose writes vanish,
    /// counting the bytes read.
    struct Huge {
        capacity: u64,
        read: Arc<AtomicU64>,
    }

    impl BlockDevice for Huge {
        fn capacity(&self) -> u64 {
            self.capacity
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&mut self, _: u64, buf: &mut [u8]) -> Result<(), DiskError> {
            buf.fill(0);
            self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), DiskError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DiskError> {
            Ok(())
        }
        fn discard(&mut self, _: u64, _: u64) -> Result<(), DiskError> {
            Ok(())
        }
        fn write_zeroes(&mut self, _: u64, _: u64) -> Result<(), DiskError> {
            Ok(())
        }
        fn contents(&self) -> Contents<'_> {
            Contents::Memory(&[])
        }
    }

    #[test]
    fn discarding_a_huge_disk_costs_a_few_entries() {
        let capacity = disk::MAX_VIRTUAL_SIZE;
        let read = Arc::new(AtomicU64::new(0));
        let huge = |read| Box::new(Huge { capacity, read });
        let mut disk = TrackedDisk::new(huge(read.clone()));
        let bytes_read = || read.load(Ordering::Relaxed);
        // mkfs: discard everything but the first sector.
        disk.discard(512, capacity - 512).unwrap();
        disk.digest().unwrap();
        let record = disk.record().unwrap();
        let clusters = capacity / CLUSTER;
        assert_eq!(record.zero_runs, [(0, clusters)], "cluster 0 read back");
        assert_eq!(disk.groups.len(), 0);
        assert_eq!(bytes_read(), CLUSTER, "only the partial cluster");

        disk.write_at(capacity / 2, &[0; 4096]).unwrap();
        disk.write_zeroes(capacity - 100, 100).unwrap();
        let digest = disk.digest().unwrap();
        assert_eq!(bytes_read(), 3 * CLUSTER);
        let record = disk.record().unwrap();
        assert_eq!(record.zero_runs, [(0, clusters)]);
        let again = TrackedDisk::restored(huge(Arc::default()), &record, true);
        assert_eq!(again.unwrap().digest().unwrap(), digest);
    }

    #[test]
    fn records_round_trip_and_bad_records_are_refused() {
        let mut disk = tracked(CAPACITY);
        disk.write_at(3 * CLUSTER, &[7; 100]).unwrap();
        disk.write_zeroes(10 * CLUSTER, 700 * CLUSTER).unwrap();
        disk.write_at(500 * CLUSTER, &[1; 10]).unwrap();
        let digest = disk.digest().unwrap();
        let record = disk.record().unwrap();
        assert_eq!(record.zero_runs, [(10, 500), (501, 710)]);
        let contents = bytes(&disk).to_vec();
        let restore = |record: &ClusterRecord, reread| {
            let copy = MemDisk::with_contents(contents.clone(), false);
            TrackedDisk::restored(Box::new(copy), record, reread)
        };
        assert_eq!(restore(&record, false).unwrap().digest().unwrap(), digest);
        assert_eq!(restore(&record, true).unwrap().digest().unwrap(), digest);

        // A recorded hash that does not match the disk: trusted unless
        // re-read.
        let mut forged = record.clone();
        forged.clusters[0].1 = [0xaa; 32];
        assert_ne!(restore(&forged, false).unwrap().digest().unwrap(), digest);
        assert_eq!(restore(&forged, true).unwrap().digest().unwrap(), digest);

        let bad = |edit: fn(&mut ClusterRecord)| {
            let mut r = record.clone();
            edit(&mut r);
            restore(&r, false).err().expect("refused").to_string()
        };
        assert!(bad(|r| r.zero_runs[1].0 = 500).contains("touches"));
        assert!(bad(|r| r.zero_runs[1].1 = CLUSTERS + 1).contains("beyond"));
        assert!(bad(|r| r.zero_runs[0] = (20, 20)).contains("empty"));
        assert!(bad(|r| r.clusters.push((3, [0; 32]))).contains("out of order"));
        assert!(bad(|r| r.clusters.push((CLUSTERS, [0; 32]))).contains("beyond"));
        assert!(bad(|r| r.clusters.push((600, [0; 32]))).contains("zero run"));
    }
}
