//! Predictions remembered by id until their ground truth arrives through `POST /feedback` (DESIGN §6).
//!
//! Ids are global across models (generated ones are UUIDs). The store is bounded: past `capacity` the
//! oldest remembered prediction is evicted (and counted by the caller), so a client that never sends
//! feedback cannot grow the server's memory. A matched id is used up; an id sent again is unknown.
//!
//! Two indexes over one set: `by_id` answers feedback, `by_age` (insertion sequence → id) finds the oldest.
//! Both sit behind one std `Mutex`: every operation is a few map updates and nothing awaits under it.

use std::collections::{BTreeMap, HashMap};
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

#[derive(Debug, Default)]
struct Store {
    by_id: HashMap<Arc<str>, (u64, Remembered)>,
    by_age: BTreeMap<u64, Arc<str>>,
    next: u64,
}

#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    store: Mutex<Store>,
}

impl FeedbackStore {
    /// A store remembering at most `capacity` predictions (0 remembers none).
    pub fn new(capacity: usize) -> FeedbackStore {
        FeedbackStore { capacity, store: Mutex::new(Store::default()) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers one prediction per id (an id remembered before now refers to this one) and answers how many
    /// older predictions were evicted to make room.
    pub fn remember(&self, monitor: &Arc<VersionMonitor>, ids: &[String], predicted: &[Predicted]) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let mut store = self.lock();
        let mut evicted = 0;
        for (id, predicted) in ids.iter().zip(predicted) {
            let id: Arc<str> = Arc::from(id.as_str());
            let age = store.next;
            store.next += 1;
            let remembered = Remembered { monitor: monitor.clone(), predicted: *predicted };
            if let Some((old_age, _)) = store.by_id.insert(id.clone(), (age, remembered)) {
                store.by_age.remove(&old_age);
            }
            store.by_age.insert(age, id);
            while store.by_id.len() > self.capacity {
                let Some((_, oldest)) = store.by_age.pop_first() else { break };
                store.by_id.remove(&oldest);
                evicted += 1;
            }
        }
        evicted
    }

    /// Looks `id` up and, when `accept` takes the truth for its prediction, uses the prediction up.
    pub fn take<T, E>(&self, id: &str, accept: impl FnOnce(&Remembered) -> Result<T, E>) -> Lookup<T, E> {
        let mut store = self.lock();
        let Some((age, remembered)) = store.by_id.get(id) else { return Lookup::Unknown };
        let age = *age;
        match accept(remembered) {
            Err(reason) => Lookup::Invalid(reason),
            Ok(truth) => {
                store.by_age.remove(&age);
                let (_, remembered) = store.by_id.remove(id).expect("the id was just found");
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
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
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
        store.remember(&m, &["a".to_string()], &[class(0)]);
        assert!(matches!(store.take("a", |_| Err::<(), _>("no")), Lookup::Invalid(_)));
        assert!(matches!(store.take("a", |_| Ok::<_, ()>(())), Lookup::Matched(..)));
    }

    #[test]
    fn an_id_sent_again_refers_to_the_newest_prediction() {
        let store = FeedbackStore::new(2);
        let m = monitor();
        store.remember(&m, &["a".to_string(), "b".to_string()], &[class(0), class(0)]);
        store.remember(&m, &["a".to_string()], &[class(1)]);
        // "a" is now the newest, so "b" goes first.
        assert_eq!(store.remember(&m, &["c".to_string()], &[class(0)]), 1);
        assert!(matches!(store.take("b", |_| Ok::<_, ()>(())), Lookup::Unknown));
        assert!(matches!(store.take("a", |r| Ok::<_, ()>(r.predicted)), Lookup::Matched(_, p) if p == class(1)));
    }
}
