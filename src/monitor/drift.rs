//! Drift windows (DESIGN §6): for one variable (a raw feature, or the predictions) of one model version, the
//! last `window` observations as bins of the reference profile, and their PSI and Jensen–Shannon distance to
//! the reference shares.
//!
//! - **Binning**: a number falls in bin `i` = the number of edges `< x` (numpy's `searchsorted(edges, x,
//!   side="left")`); a category in its index, or the "other" bin after the categories; a missing value in the
//!   missing bin, last. Edges sit between training values, so a rounded client value cannot jump a bin.
//! - **PSI** = Σᵢ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) over every bin and the missing bin, shares floored at 1e-4.
//! - **JS** = scipy's `jensenshannon(a, e)` (natural log) on the same shares, not floored.
//!
//! The windows of one model version's variables (its features and its prediction) share one ring, slot-major:
//! a record's observations are written side by side, a cache line or two per record rather than one per
//! feature, which matters when requests on several cores feed the same windows. An observation costs its ring
//! slot and nothing else: the window's per-bin counts are taken from the ring when a scrape reads PSI (one
//! pass over the ring, every 15 s or so), and the all-time totals (`inferd_feature_bin_total`) are folded in
//! from the ring once per lap, when it wraps, plus the current lap's slots at the scrape.

use std::collections::HashMap;
use std::sync::Arc;

use super::reference::Profile;
use crate::preprocess::RawValue;

/// Bin labels of unseen categories and of missing values; the exporter refuses categories spelled so.
pub const OTHER_BIN: &str = "__other__";
pub const MISSING_BIN: &str = "__missing__";

/// Share floor of the PSI formula: an empty bin would otherwise make it infinite.
const PSI_FLOOR: f64 = 1e-4;

/// Maps raw values to the bins of a reference profile.
#[derive(Debug, Clone)]
pub enum Binner {
    /// `padded`: the edges in groups of four, the last group filled with +∞ (below no value), so counting
    /// them is a fixed-width loop the compiler vectorises.
    Number {
        edges: Vec<f64>,
        padded: Vec<[f64; 4]>,
    },
    Category {
        index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
        count: usize,
    },
}

impl Binner {
    pub fn new(profile: &Profile) -> Binner {
        match profile {
            Profile::Number { edges, .. } => Binner::number(edges.clone()),
            Profile::Category { categories, .. } => Binner::Category {
                index: categories.iter().enumerate().map(|(i, c)| (Arc::from(c.as_str()), i)).collect(),
                count: categories.len(),
            },
        }
    }

    /// A binner over sorted `edges`.
    pub fn number(edges: Vec<f64>) -> Binner {
        let padded = edges
            .chunks(4)
            .map(|group| std::array::from_fn(|k| group.get(k).copied().unwrap_or(f64::INFINITY)))
            .collect();
        Binner::Number { edges, padded }
    }

    /// Bins including the missing bin (the last one).
    pub fn bins(&self) -> usize {
        match self {
            Binner::Number { edges, .. } => edges.len() + 2,
            Binner::Category { count, .. } => count + 2,
        }
    }

    pub fn missing_bin(&self) -> usize {
        self.bins() - 1
    }

    #[inline(always)]
    pub fn bin(&self, value: &RawValue) -> usize {
        match (self, value) {
            (_, RawValue::Missing) => self.missing_bin(),
            (Binner::Number { padded, .. }, RawValue::Number(x)) => count_below(padded, *x),
            (Binner::Category { index, count }, RawValue::Category(c)) => index.get(c).copied().unwrap_or(*count),
            // A value of the other kind cannot pass request validation; count it as "other" / last bin.
            (Binner::Number { edges, .. }, RawValue::Category(_)) => edges.len(),
            (Binner::Category { count, .. }, RawValue::Number(_)) => *count,
        }
    }

    /// The `bin` label of each bin in metrics (DESIGN §6): "0", "1", … for numbers, the category itself,
    /// `__other__` for unseen categories, `__missing__` last.
    pub fn bin_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = match self {
            Binner::Number { edges, .. } => (0..=edges.len()).map(|i| i.to_string()).collect(),
            Binner::Category { index, count } => {
                let mut names = vec![String::new(); *count];
                for (name, i) in index {
                    names[*i] = name.to_string();
                }
                names.push(OTHER_BIN.to_string());
                names
            }
        };
        labels.push(MISSING_BIN.to_string());
        labels
    }

    /// The bin of a category given by name (the predicted label).
    pub fn bin_category(&self, label: &str) -> usize {
        match self {
            Binner::Category { index, count } => index.get(label).copied().unwrap_or(*count),
            Binner::Number { edges, .. } => edges.len(),
        }
    }

    /// The bin of a number (a predicted value).
    pub fn bin_number(&self, x: f64) -> usize {
        match self {
            Binner::Number { padded, .. } => count_below(padded, x),
            Binner::Category { count, .. } => *count,
        }
    }
}

/// The number of edges below `x`: numpy's `searchsorted(edges, x, side="left")` for sorted edges. A
/// branch-free count over the (about ten) edges beats a binary search, whose branches a CPU cannot predict.
#[inline(always)]
fn count_below(padded: &[[f64; 4]], x: f64) -> usize {
    padded.iter().map(|group| group.iter().map(|e| usize::from(*e < x)).sum::<usize>()).sum()
}

/// The reference shares of a profile, in bin order with the missing share last.
pub fn reference_shares(profile: &Profile) -> Vec<f64> {
    let (ratios, missing) = match profile {
        Profile::Number { ratios, missing, .. } | Profile::Category { ratios, missing, .. } => (ratios, *missing),
    };
    ratios.iter().copied().chain([missing]).collect()
}

/// The last `capacity` observations of several variables observed together, and every observation ever made
/// per variable and bin.
#[derive(Debug, Clone)]
pub struct DriftWindows {
    variables: usize,
    capacity: usize,
    /// `capacity` slots of `variables` bins each.
    ring: Vec<u32>,
    /// Next slot to write; the ring is full once `len == capacity`.
    next: usize,
    len: usize,
    /// Where each variable's bins start in `folded` and `references` (one more entry: the end).
    offsets: Vec<usize>,
    /// Observations of the ring's finished laps, per variable and bin.
    folded: Vec<u64>,
    /// The reference share per variable and bin.
    references: Vec<f64>,
}

impl DriftWindows {
    /// Windows of `capacity` observations over variables whose reference shares per bin are `references`.
    pub fn new(capacity: usize, references: Vec<Vec<f64>>) -> DriftWindows {
        let capacity = capacity.max(1);
        let mut offsets = vec![0];
        for shares in &references {
            offsets.push(offsets.last().copied().unwrap_or(0) + shares.len().max(1));
        }
        let bins = offsets.last().copied().unwrap_or(0);
        let references: Vec<f64> =
            references.into_iter().flat_map(|shares| if shares.is_empty() { vec![0.0] } else { shares }).collect();
        DriftWindows {
            variables: offsets.len() - 1,
            capacity,
            ring: vec![0; capacity * (offsets.len() - 1)],
            next: 0,
            len: 0,
            offsets,
            folded: vec![0; bins],
            references,
        }
    }

    /// Records one observation of every variable: `fill` writes variable `v`'s bin into `slot[v]` (a bin
    /// past the variable's last counts as its last, the missing bin).
    #[inline]
    pub fn observe(&mut self, fill: impl FnOnce(&mut [u32])) {
        let start = self.next * self.variables;
        let slot = &mut self.ring[start..start + self.variables];
        fill(slot);
        for (v, bin) in slot.iter_mut().enumerate() {
            *bin = (*bin).min((self.offsets[v + 1] - self.offsets[v] - 1) as u32);
        }
        self.next += 1;
        self.len = (self.len + 1).min(self.capacity);
        if self.next == self.capacity {
            self.fold(self.capacity);
            self.next = 0;
        }
    }

    /// Adds the first `slots` slots of the ring to `totals` (per variable and bin, offset like `folded`).
    fn count_into(&self, slots: usize, totals: &mut [u64]) {
        for slot in self.ring[..slots * self.variables].chunks_exact(self.variables) {
            for (v, bin) in slot.iter().enumerate() {
                totals[self.offsets[v] + *bin as usize] += 1;
            }
        }
    }

    /// Folds a finished lap into the totals: once per `capacity` observations, a pass over the ring.
    fn fold(&mut self, slots: usize) {
        let mut folded = std::mem::take(&mut self.folded);
        self.count_into(slots, &mut folded);
        self.folded = folded;
    }

    /// Observations of variable `v` per bin in the window (at scrape time, not per observation).
    fn counts(&self, v: usize) -> Vec<u64> {
        let (start, end) = (self.offsets[v], self.offsets[v + 1]);
        let mut counts = vec![0u64; end - start];
        // Until the ring first wraps, its observations are the first `len` slots.
        for slot in self.ring[..self.len * self.variables].chunks_exact(self.variables) {
            counts[slot[v] as usize] += 1;
        }
        counts
    }

    /// Observations in the window (the same for every variable).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Observations of variable `v` ever made, per bin: the finished laps and the current one.
    pub fn totals(&self, v: usize) -> Vec<u64> {
        let (start, end) = (self.offsets[v], self.offsets[v + 1]);
        let mut totals = self.folded[start..end].to_vec();
        for slot in self.ring[..self.next * self.variables].chunks_exact(self.variables) {
            totals[slot[v] as usize] += 1;
        }
        totals
    }

    /// The reference share of variable `v` per bin.
    pub fn reference(&self, v: usize) -> &[f64] {
        &self.references[self.offsets[v]..self.offsets[v + 1]]
    }

    /// Variable `v`'s share per bin in the window (None while empty).
    pub fn shares(&self, v: usize) -> Option<Vec<f64>> {
        (self.len > 0).then(|| self.counts(v).iter().map(|c| *c as f64 / self.len as f64).collect())
    }

    /// Population stability index of variable `v` against its reference (None while empty).
    pub fn psi(&self, v: usize) -> Option<f64> {
        Some(psi(&self.shares(v)?, self.reference(v)))
    }

    /// Jensen–Shannon distance of variable `v` against its reference (None while empty).
    pub fn js(&self, v: usize) -> Option<f64> {
        Some(jensen_shannon(&self.shares(v)?, self.reference(v)))
    }

    /// 0 ok, 1 warning, 2 critical; 0 until the window first fills.
    pub fn level(&self, v: usize, warning: f64, critical: f64) -> u8 {
        self.reading(v, warning, critical).2
    }

    /// PSI, JS and level of variable `v` from one count of the window (what a scrape reads).
    pub fn reading(&self, v: usize, warning: f64, critical: f64) -> (Option<f64>, Option<f64>, u8) {
        let Some(shares) = self.shares(v) else { return (None, None, 0) };
        let reference = self.reference(v);
        let psi = psi(&shares, reference);
        let level = match psi {
            psi if self.is_full() && psi >= critical => 2,
            psi if self.is_full() && psi >= warning => 1,
            _ => 0,
        };
        (Some(psi), Some(jensen_shannon(&shares, reference)), level)
    }
}

/// PSI of `actual` against `expected` shares, each floored at 1e-4 (DESIGN §6).
pub fn psi(actual: &[f64], expected: &[f64]) -> f64 {
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            let (a, e) = (a.max(PSI_FLOOR), e.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// scipy's `jensenshannon(p, q)` with the natural log: both normalised to sum 1, then
/// `sqrt((KL(p‖m) + KL(q‖m)) / 2)` with `m = (p + q) / 2` and `0·ln 0 = 0`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let mut divergence = 0.0;
    for (p, q) in p.iter().zip(q) {
        let (p, q) = (p / sp, q / sq);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            divergence += p * (p / m).ln();
        }
        if q > 0.0 {
            divergence += q * (q / m).ln();
        }
    }
    (divergence / 2.0).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_bin_like_searchsorted_left() {
        let binner = Binner::number(vec![1.0, 2.0, 3.0]);
        let bins: Vec<usize> =
            [0.5, 1.0, 1.5, 2.0, 3.0, 3.5].iter().map(|x| binner.bin(&RawValue::Number(*x))).collect();
        assert_eq!(bins, [0, 0, 1, 1, 2, 3]);
        assert_eq!(binner.bin(&RawValue::Missing), 4);
        assert_eq!(binner.bins(), 5);
    }

    #[test]
    fn categories_bin_by_index_then_other_then_missing() {
        let profile =
            Profile::Category { categories: vec!["a".into(), "b".into()], ratios: vec![0.5, 0.5, 0.0], missing: 0.0 };
        let binner = Binner::new(&profile);
        assert_eq!(binner.bin(&RawValue::Category("b".into())), 1);
        assert_eq!(binner.bin(&RawValue::Category("z".into())), 2);
        assert_eq!(binner.bin(&RawValue::Missing), 3);
        assert_eq!(reference_shares(&profile), [0.5, 0.5, 0.0, 0.0]);
        assert_eq!(binner.bin_labels(), ["a", "b", "__other__", "__missing__"]);
        assert_eq!(Binner::number(vec![1.0]).bin_labels(), ["0", "1", "__missing__"]);
    }

    fn one(capacity: usize) -> DriftWindows {
        DriftWindows::new(capacity, vec![vec![0.5, 0.5]])
    }

    #[test]
    fn the_window_forgets_its_oldest_observation() {
        let mut window = one(3);
        for bin in [0, 0, 0, 1, 1] {
            window.observe(|slot| slot[0] = bin);
        }
        assert!(window.is_full());
        assert_eq!(window.shares(0).unwrap(), [1.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(window.totals(0), [3, 2]);
    }

    #[test]
    fn variables_keep_their_own_bins_and_totals_across_laps() {
        let mut windows = DriftWindows::new(4, vec![vec![0.5, 0.5], vec![0.2, 0.3, 0.5]]);
        let mut want = [vec![0u64; 2], vec![0u64; 3]];
        for k in 0..11u32 {
            // Variable 1 is given a bin past its last: it counts as its last (missing) bin.
            let bins = [k % 2, if k == 7 { 9 } else { k % 3 }];
            windows.observe(|slot| slot.copy_from_slice(&bins));
            want[0][bins[0] as usize] += 1;
            want[1][(bins[1] as usize).min(2)] += 1;
            assert_eq!(windows.totals(0), want[0], "after {} observations", k + 1);
            assert_eq!(windows.totals(1), want[1], "after {} observations", k + 1);
        }
        assert_eq!(windows.len(), 4);
        // The last four: k = 7, 8, 9, 10.
        assert_eq!(windows.shares(0).unwrap(), [0.5, 0.5]);
        assert_eq!(windows.shares(1).unwrap(), [0.25, 0.25, 0.5]);
        assert_eq!(windows.reference(1), [0.2, 0.3, 0.5]);
    }

    #[test]
    fn levels_wait_for_a_full_window() {
        let mut window = one(4);
        for _ in 0..3 {
            window.observe(|slot| slot[0] = 0);
        }
        assert!(window.psi(0).unwrap() > 0.25);
        assert_eq!(window.level(0, 0.1, 0.25), 0);
        window.observe(|slot| slot[0] = 0);
        assert_eq!(window.level(0, 0.1, 0.25), 2);
        assert!(one(4).psi(0).is_none());
    }

    #[test]
    fn identical_distributions_have_no_drift() {
        let shares = [0.2, 0.3, 0.5, 0.0];
        assert_eq!(psi(&shares, &shares), 0.0);
        assert!(jensen_shannon(&shares, &shares).abs() < 1e-12);
    }
}
