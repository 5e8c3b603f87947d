//! Predictions remembered by id until their ground truth arrives through `POST /feedback` (DESIGN §6).
//!
//! Ids are global across models. The store is bounded: it holds the last `capacity` predictions, and
//! remembering one more evicts the oldest (counted by the caller), so a client that never sends feedback
//! cannot grow the server's memory. A matched id is used up; an id sent again is unknown.
//!
//! Remembering is on every prediction's path, so it costs no allocation and, for the ids inferd generates,
//! no hashing either. Every remembered prediction takes the next number of one sequence, and sits in slot
//! `sequence % capacity` of a ring. A generated id *is* its sequence number: a UUID (version 8, RFC 9562)
//! whose first half is random per process and whose second half is the number, so looking it up is a parse
//! and an index. A client's own ids go through a map from the id's 64-bit hash (keyed at random per process)
//! to its sequence number. Two different ids would have to share a 64-bit hash to be confused — about one
//! chance in 10⁹ for a full store of a million ids — which a model server can afford; storing every id string
//! would cost an allocation and a copy per prediction. Slots name their model version by a small index into
//! `versions` rather than holding an `Arc` each, which would make every insert touch one shared reference
//! count. One std `Mutex` guards it all: each operation is a few ring (and map) updates, and nothing awaits
//! under it.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

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

/// The ids of one request's predictions, and the sequence numbers they take in the store.
#[derive(Debug)]
pub struct RequestIds {
    pub ids: Vec<Arc<str>>,
    first: u64,
    /// The client's own ids (remembered by hash), or generated ones (their sequence numbers).
    given: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The sequence number of the prediction here, plus one (0: an empty slot).
    number: u64,
    /// The hash of a client's id; 0 for a generated one.
    id_hash: u64,
    given: bool,
    /// False once matched (or superseded by a newer prediction under the same id).
    live: bool,
    version: u32,
    predicted: Predicted,
}

const EMPTY: Slot =
    Slot { number: 0, id_hash: 0, given: false, live: false, version: 0, predicted: Predicted::Value(0.0) };

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
    /// Grown as predictions arrive, up to the capacity.
    slots: Vec<Slot>,
    /// A client id's hash → the sequence number of its prediction.
    by_hash: HashMap<u64, u64, BuildHasherDefault<PassThrough>>,
    /// Model versions by index (`None`: forgotten, its index free for the next version).
    versions: Vec<Option<Arc<VersionMonitor>>>,
    /// Slots holding a prediction not yet matched.
    live: usize,
}

impl Store {
    /// The index of `monitor` in `versions`, added on first sight (a handful of versions per server).
    fn version_index(&mut self, monitor: &Arc<VersionMonitor>) -> u32 {
        if let Some(i) = self.versions.iter().position(|m| m.as_ref().is_some_and(|m| Arc::ptr_eq(m, monitor))) {
            return i as u32;
        }
        match self.versions.iter().position(Option::is_none) {
            Some(free) => {
                self.versions[free] = Some(monitor.clone());
                free as u32
            }
            None => {
                self.versions.push(Some(monitor.clone()));
                (self.versions.len() - 1) as u32
            }
        }
    }
}

/// Generated ids carry 62 bits of sequence number (the UUID variant takes two).
const SEQUENCE_BITS: u64 = (1 << 62) - 1;

#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    ids: foldhash::quality::RandomState,
    /// The first half of every generated id: random per process, with the UUID version 8 nibble.
    prefix: [u8; 8],
    sequence: AtomicU64,
    store: Mutex<Store>,
}

impl FeedbackStore {
    /// A store remembering at most `capacity` predictions (0 remembers none).
    pub fn new(capacity: usize) -> FeedbackStore {
        let mut prefix = *Uuid::new_v4().as_bytes();
        prefix[6] = (prefix[6] & 0x0f) | 0x80;
        FeedbackStore {
            capacity,
            ids: foldhash::quality::RandomState::default(),
            prefix: prefix[..8].try_into().expect("8 bytes"),
            sequence: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Predictions remembered and not yet matched.
    pub fn len(&self) -> usize {
        self.lock().live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence numbers for a request's `rows` predictions, under the client's ids or, without them, under
    /// ids generated from the numbers.
    pub fn ids(&self, given: Option<Vec<Arc<str>>>, rows: usize) -> RequestIds {
        let first = self.sequence.fetch_add(rows as u64, Ordering::Relaxed);
        match given {
            Some(ids) => RequestIds { ids, first, given: true },
            None => {
                let mut text = Uuid::encode_buffer();
                let ids = (first..first + rows as u64)
                    .map(|number| Arc::from(&*self.generated_id(number).hyphenated().encode_lower(&mut text)))
                    .collect();
                RequestIds { ids, first, given: false }
            }
        }
    }

    fn generated_id(&self, number: u64) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..].copy_from_slice(&((number & SEQUENCE_BITS) | (1 << 63)).to_be_bytes());
        Uuid::from_bytes(bytes)
    }

    /// The sequence number inside an id this process generated.
    fn generated_number(&self, id: &str) -> Option<u64> {
        let bytes = *Uuid::try_parse(id).ok()?.as_bytes();
        (bytes[..8] == self.prefix).then(|| u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")) & SEQUENCE_BITS)
    }

    /// Remembers one prediction per id (a client id remembered before now refers to this one) and answers how
    /// many older predictions were evicted to make room.
    pub fn remember(&self, monitor: &Arc<VersionMonitor>, ids: &RequestIds, predicted: &[Predicted]) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let hashes: Vec<u64> = match ids.given {
            true => ids.ids.iter().map(|id| self.ids.hash_one(&**id)).collect(),
            false => Vec::new(),
        };
        let mut store = self.lock();
        let version = store.version_index(monitor);
        let mut evicted = 0;
        for (k, predicted) in predicted.iter().enumerate() {
            let number = ids.first + k as u64;
            let index = (number % self.capacity as u64) as usize;
            if index >= store.slots.len() {
                store.slots.resize(index + 1, EMPTY);
            }
            let id_hash = hashes.get(k).copied().unwrap_or(0);
            let oldest = store.slots[index];
            if oldest.number > number {
                // A later request took the slot first (more predictions in flight than the store holds).
                evicted += 1;
                continue;
            }
            store.slots[index] =
                Slot { number: number + 1, id_hash, given: ids.given, live: true, version, predicted: *predicted };
            store.live += 1;
            // The oldest prediction leaves; it counts as evicted unless it was matched, or is superseded by
            // this one (the same client id).
            if oldest.live {
                store.live -= 1;
                let superseded = ids.given && oldest.given && oldest.id_hash == id_hash;
                evicted += u64::from(!superseded);
                if oldest.given && store.by_hash.get(&oldest.id_hash) == Some(&(oldest.number - 1)) {
                    store.by_hash.remove(&oldest.id_hash);
                }
            }
            if ids.given {
                if let Some(previous) = store.by_hash.insert(id_hash, number) {
                    // The same id remembered before: that prediction is superseded by this one.
                    let slot = &mut store.slots[(previous % self.capacity as u64) as usize];
                    if slot.number == previous + 1 && slot.live {
                        slot.live = false;
                        store.live -= 1;
                    }
                }
            }
        }
        evicted
    }

    /// Looks `id` up and, when `accept` takes the truth for its prediction, uses the prediction up.
    pub fn take<T, E>(&self, id: &str, accept: impl FnOnce(&Remembered) -> Result<T, E>) -> Lookup<T, E> {
        if self.capacity == 0 {
            return Lookup::Unknown;
        }
        let id_hash = self.ids.hash_one(id);
        let generated = self.generated_number(id);
        let mut store = self.lock();
        let slot_of = |store: &Store, number: u64, given: bool| {
            let index = (number % self.capacity as u64) as usize;
            store.slots.get(index).filter(|s| s.live && s.given == given && s.number == number + 1).map(|_| index)
        };
        let found = generated
            .and_then(|number| slot_of(&store, number, false))
            .or_else(|| store.by_hash.get(&id_hash).and_then(|&number| slot_of(&store, number, true)));
        let Some(index) = found else { return Lookup::Unknown };
        let slot = store.slots[index];
        let Some(monitor) = store.versions[slot.version as usize].clone() else { return Lookup::Unknown };
        let remembered = Remembered { monitor, predicted: slot.predicted };
        match accept(&remembered) {
            Err(reason) => Lookup::Invalid(reason),
            Ok(truth) => {
                if slot.given {
                    store.by_hash.remove(&id_hash);
                }
                store.slots[index].live = false;
                store.live -= 1;
                Lookup::Matched(remembered, truth)
            }
        }
    }

    /// Forgets every prediction of a model version that no longer serves (their ids become unknown) and lets
    /// go of its monitor, so an unloaded version's memory is freed.
    pub fn forget(&self, monitor: &Arc<VersionMonitor>) {
        let mut store = self.lock();
        let store = &mut *store;
        let Some(index) = store.versions.iter().position(|m| m.as_ref().is_some_and(|m| Arc::ptr_eq(m, monitor)))
        else {
            return;
        };
        for slot in store.slots.iter_mut().filter(|slot| slot.live && slot.version == index as u32) {
            slot.live = false;
            store.live -= 1;
            if slot.given && store.by_hash.get(&slot.id_hash) == Some(&(slot.number - 1)) {
                store.by_hash.remove(&slot.id_hash);
            }
        }
        store.versions[index] = None;
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

    fn given(store: &FeedbackStore, ids: &[&str]) -> RequestIds {
        store.ids(Some(ids.iter().map(|id| Arc::from(*id)).collect()), ids.len())
    }

    #[test]
    fn the_oldest_is_evicted_and_a_match_uses_the_id_up() {
        let store = FeedbackStore::new(2);
        let m = monitor();
        let ids = given(&store, &["a", "b", "c"]);
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
        store.remember(&m, &given(&store, &["a"]), &[class(0)]);
        assert!(matches!(store.take("a", |_| Err::<(), _>("no")), Lookup::Invalid(_)));
        assert!(matches!(store.take("a", |_| Ok::<_, ()>(())), Lookup::Matched(..)));
    }

    #[test]
    fn an_id_sent_again_refers_to_the_newest_prediction() {
        let store = FeedbackStore::new(2);
        let m = monitor();
        store.remember(&m, &given(&store, &["a", "b"]), &[class(0), class(0)]);
        assert_eq!(store.remember(&m, &given(&store, &["a"]), &[class(1)]), 0, "superseded, not evicted");
        // "a" is now the newest, so "b" goes first.
        assert_eq!(store.remember(&m, &given(&store, &["c"]), &[class(0)]), 1);
        assert!(matches!(store.take("b", |_| Ok::<_, ()>(())), Lookup::Unknown));
        assert!(matches!(store.take("a", |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1)));
    }

    #[test]
    fn memory_stays_bounded_by_the_capacity() {
        let store = FeedbackStore::new(10);
        let m = monitor();
        let mut evicted = 0;
        for i in 0..10_000 {
            let id = format!("id-{i}");
            evicted += store.remember(&m, &given(&store, &[&id]), &[class(0)]);
            if i % 2 == 0 {
                assert!(matches!(store.take(&id, |_| Ok::<_, ()>(())), Lookup::Matched(..)));
            }
        }
        assert_eq!(store.lock().slots.len(), 10);
        assert_eq!(store.len(), 5);
        // Every other prediction was matched; of the others all but the last five were evicted.
        assert_eq!(evicted, 5_000 - 5);
    }

    #[test]
    fn generated_ids_are_uuids_found_without_a_map() {
        let store = FeedbackStore::new(3);
        let m = monitor();
        let ids = store.ids(None, 4);
        assert_eq!(store.remember(&m, &ids, &[class(0), class(1), class(0), class(1)]), 1);
        for id in &ids.ids {
            let uuid = Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 8, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        assert!(store.lock().by_hash.is_empty());
        assert_eq!(store.len(), 3);
        assert!(matches!(store.take(&ids.ids[0], |_| Ok::<_, ()>(())), Lookup::Unknown), "evicted");
        assert!(
            matches!(store.take(&ids.ids[3], |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1))
        );
        assert!(matches!(store.take(&ids.ids[3], |_| Ok::<_, ()>(())), Lookup::Unknown), "used up");
        // Another process's ids (another prefix) are not ours, even with a number we hold.
        let other = FeedbackStore::new(3).ids(None, 3);
        assert!(matches!(store.take(&other.ids[2], |_| Ok::<_, ()>(())), Lookup::Unknown));
        // A client may send one of our ids as its own: it is remembered under that id, like any other.
        let store = FeedbackStore::new(10);
        let ours = store.ids(None, 1);
        store.remember(&m, &ours, &[class(1)]);
        store.remember(&m, &given(&store, &[&ours.ids[0]]), &[class(0)]);
        assert_eq!(store.len(), 2);
        assert!(
            matches!(store.take(&ours.ids[0], |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1))
        );
        assert!(
            matches!(store.take(&ours.ids[0], |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(0))
        );
        assert_eq!(store.len(), 0);
    }
}
