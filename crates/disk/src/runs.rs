//! A set of `u64` indices kept as disjoint, non-adjacent half-open runs
//! `[first, end)`: zeroed ranges, dirty clusters. Inserting or removing a
//! range costs O(log n + runs it touches), whatever its length, so a guest
//! that zeroes a huge range costs a map entry, not one per block.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent half-open ranges of indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs(BTreeMap<u64, u64>);

impl Runs {
    /// Add `[a, b)`, merging with runs it overlaps or touches.
    pub fn insert(&mut self, mut a: u64, mut b: u64) {
        if a >= b {
            return;
        }
        if let Some((&s, &e)) = self.0.range(..=a).next_back() {
            if e >= a {
                a = s;
                b = b.max(e);
                self.0.remove(&s);
            }
        }
        while let Some((&s, &e)) = self.0.range(a..=b).next() {
            b = b.max(e);
            self.0.remove(&s);
        }
        self.0.insert(a, b);
    }

    /// Take `[a, b)` out, splitting runs that stick out of it.
    pub fn remove(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        if let Some((&s, &e)) = self.0.range(..a).next_back() {
            if e > a {
                self.0.insert(s, a);
                if e > b {
                    self.0.insert(b, e);
                }
            }
        }
        while let Some((&s, &e)) = self.0.range(a..b).next() {
            self.0.remove(&s);
            if e > b {
                self.0.insert(b, e);
            }
        }
    }

    /// Whether `i` is in a run.
    pub fn contains(&self, i: u64) -> bool {
        self.0.range(..=i).next_back().is_some_and(|(_, &e)| e > i)
    }

    /// The parts of runs inside `[a, b)`, in order.
    pub fn within(&self, a: u64, b: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let before = self
            .0
            .range(..a)
            .next_back()
            .filter(|&(_, &e)| e > a)
            .map(|(&s, &e)| (s, e));
        let inside = self.0.range(a..b).map(|(&s, &e)| (s, e));
        before
            .into_iter()
            .chain(inside)
            .map(move |(s, e)| (s.max(a), e.min(b)))
    }

    pub fn first(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&s, &e)| (s, e))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of runs (not of indices).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut r = Runs::default();
        r.insert(10, 20);
        r.insert(20, 30);
        r.insert(40, 50);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(10, 30), (40, 50)]);
        r.remove(15, 45);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(10, 15), (45, 50)]);
        assert!(r.contains(10) && r.contains(14) && !r.contains(15) && !r.contains(44));
        assert_eq!(r.within(12, 47).collect::<Vec<_>>(), [(12, 15), (45, 47)]);
        r.insert(0, u64::MAX);
        assert_eq!(r.len(), 1);
    }
}
