//! Predictions remembered by id until their ground truth arrives through `POST /feedback` (DESIGN §6).
//!
//! Ids are global across models (generated ones are UUIDs). The store is bounded: it holds the last
//! `capacity` predictions, and remembering one more evicts the oldest (counted by the caller), so a client
//! that never sends feedback cannot grow the server's memory. A matched id is used up; an id sent again is
//! unknown.
//!
//! Remembering is on every prediction's path, so it costs no allocation: predictions sit in a ring of
//! `capacity` slots, and a map from the id's 64-bit hash (keyed at random per process) finds a slot. Two
//! different ids would have to share a 64-bit hash to be confused — about one chance in 10⁹ for a full store
//! of a million ids — which a model server can afford; storing every id string would cost an allocation and a
//! copy per prediction. Slots name their model version by a small index into `versions` rather than holding
//! an `Arc` each, which would make every insert touch one shared reference count. One std `Mutex` guards it
//! all: each operation is a few map and ring updates, and nothing awaits under it.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use super::version::{Predicted, VersionMonitor};

/// A prediction waiting for its ground truth.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub monitor: Arc<VersionMonitor>,
    pub predicted: Predicted,
}

/// The outcome of looking an id up.
#[derive(Debug)]
pub enum Lookup<T, E> {
    /// The id was remembered and its truth accepted: the prediction is used up.
    Matched(Remembered, T),
    /// No prediction with that id is remembered (never made, evicted or already matched).
    Unknown,
    /// The prediction is remembered, but the truth does not fit its model; it stays remembered.
    Invalid(E),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id_hash: u64,
    /// False once matched (or superseded by a newer prediction under the same id).
    live: bool,
    version: u32,
    predicted: Predicted,
}

/// The map's keys are already hashes: pass them through.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Store {
    slots: Vec<Slot>,
    /// The slot the next prediction takes (the oldest, once the ring is full).
    next: usize,
    by_hash: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    versions: Vec<Arc<VersionMonitor>>,
}

impl Store {
    /// The index of `monitor` in `versions`, added on first sight (a handful of versions per server).
    fn version_index(&mut self, monitor: &Arc<VersionMonitor>) -> u32 {
        match self.versions.iter().position(|m| Arc::ptr_eq(m, monitor)) {
            Some(i) => i as u32,
            None => {
                self.versions.push(monitor.clone());
                (self.versions.len() - 1) as u32
            }
        }
    }
}

#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    ids: foldhash::quality::RandomState,
    store: Mutex<Store>,
}

impl FeedbackStore {
    /// A store remembering at most `capacity` predictions (0 remembers none).
    pub fn new(capacity: usize) -> FeedbackStore {
        FeedbackStore { capacity, ids: foldhash::quality::RandomState::default(), store: Mutex::new(Store::default()) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Predictions remembered and not yet matched.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers one prediction per id (an id remembered before now refers to this one) and answers how many
    /// older predictions were evicted to make room.
    pub fn remember(&self, monitor: &Arc<VersionMonitor>, ids: &[Arc<str>], predicted: &[Predicted]) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let hashes: Vec<u64> = ids.iter().map(|id| self.ids.hash_one(&**id)).collect();
        let mut store = self.lock();
        let version = store.version_index(monitor);
        let mut evicted = 0;
        for (id_hash, predicted) in hashes.into_iter().zip(predicted) {
            let slot = Slot { id_hash, live: true, version, predicted: *predicted };
            let index = store.next;
            if index == store.slots.len() {
                store.slots.push(slot);
            } else {
                let oldest = std::mem::replace(&mut store.slots[index], slot);
                // The oldest prediction leaves; it counts as evicted unless it was matched or superseded.
                if oldest.live && store.by_hash.get(&oldest.id_hash) == Some(&(index as u32)) {
                    store.by_hash.remove(&oldest.id_hash);
                    evicted += u64::from(oldest.id_hash != id_hash);
                }
            }
            if let Some(previous) = store.by_hash.insert(id_hash, index as u32) {
                // The same id remembered before: that prediction is superseded by this one.
                store.slots[previous as usize].live = false;
            }
            store.next = if index + 1 == self.capacity { 0 } else { index + 1 };
        }
        evicted
    }

    /// Looks `id` up and, when `accept` takes the truth for its prediction, uses the prediction up.
    pub fn take<T, E>(&self, id: &str, accept: impl FnOnce(&Remembered) -> Result<T, E>) -> Lookup<T, E> {
        let id_hash = self.ids.hash_one(id);
        let mut store = self.lock();
        let Some(&index) = store.by_hash.get(&id_hash) else { return Lookup::Unknown };
        let slot = store.slots[index as usize];
        let remembered =
            Remembered { monitor: store.versions[slot.version as usize].clone(), predicted: slot.predicted };
        match accept(&remembered) {
            Err(reason) => Lookup::Invalid(reason),
            Ok(truth) => {
                store.by_hash.remove(&id_hash);
                store.slots[index as usize].live = false;
                Lookup::Matched(remembered, truth)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::DriftSettings;
    use crate::repository::manifest::Manifest;

    fn monitor() -> Arc<VersionMonitor> {
        let manifest = Manifest::from_toml(
            "[model]\ntask = \"classification\"\n[[features]]\nname = \"a\"\ntype = \"number\"\n\
             [outputs]\nlabels = [\"x\", \"y\"]\nprobabilities = \"p\"\n",
        )
        .unwrap();
        Arc::new(VersionMonitor::new("m", "1", &manifest, None, DriftSettings::default()).unwrap())
    }

    fn class(index: u32) -> Predicted {
        Predicted::Class { index, confidence: 0.9 }
    }

    #[test]
    fn the_oldest_is_evicted_and_a_match_uses_the_id_up() {
        let store = FeedbackStore::new(2);
        let m = monitor();
        let ids: Vec<Arc<str>> = ["a", "b", "c"].map(Arc::from).to_vec();
        assert_eq!(store.remember(&m, &ids, &[class(0), class(1), class(0)]), 1);
        assert!(matches!(store.take("a", |_| Ok::<_, ()>(())), Lookup::Unknown));
        assert!(matches!(store.take("b", |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1)));
        assert!(matches!(store.take("b", |_| Ok::<_, ()>(())), Lookup::Unknown));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_refused_truth_keeps_the_prediction() {
        let store = FeedbackStore::new(10);
        let m = monitor();
        store.remember(&m, &["a".into()], &[class(0)]);
        assert!(matches!(store.take("a", |_| Err::<(), _>("no")), Lookup::Invalid(_)));
        assert!(matches!(store.take("a", |_| Ok::<_, ()>(())), Lookup::Matched(..)));
    }

    #[test]
    fn an_id_sent_again_refers_to_the_newest_prediction() {
        let store = FeedbackStore::new(2);
        let m = monitor();
        store.remember(&m, &["a".into(), "b".into()], &[class(0), class(0)]);
        assert_eq!(store.remember(&m, &["a".into()], &[class(1)]), 0, "superseded, not evicted");
        // "a" is now the newest, so "b" goes first.
        assert_eq!(store.remember(&m, &["c".into()], &[class(0)]), 1);
        assert!(matches!(store.take("b", |_| Ok::<_, ()>(())), Lookup::Unknown));
        assert!(matches!(store.take("a", |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1)));
    }

    #[test]
    fn memory_stays_bounded_by_the_capacity() {
        let store = FeedbackStore::new(10);
        let m = monitor();
        let mut evicted = 0;
        for i in 0..10_000 {
            let id: Arc<str> = format!("id-{i}").into();
            evicted += store.remember(&m, std::slice::from_ref(&id), &[class(0)]);
            if i % 2 == 0 {
                assert!(matches!(store.take(&id, |_| Ok::<_, ()>(())), Lookup::Matched(..)));
            }
        }
        assert_eq!(store.lock().slots.len(), 10);
        assert_eq!(store.len(), 5);
        // Every other prediction was matched; of the others all but the last five were evicted.
        assert_eq!(evicted, 5_000 - 5);
    }
}
