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
//! An observation costs one ring slot and one counter: the window's per-bin counts are taken from the ring
//! when a scrape reads PSI (one pass over `window` slots, every 15 s or so), not kept up per observation.

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
    Number { edges: Vec<f64> },
    Category { index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>, count: usize },
}

impl Binner {
    pub fn new(profile: &Profile) -> Binner {
        match profile {
            Profile::Number { edges, .. } => Binner::Number { edges: edges.clone() },
            Profile::Category { categories, .. } => Binner::Category {
                index: categories.iter().enumerate().map(|(i, c)| (Arc::from(c.as_str()), i)).collect(),
                count: categories.len(),
            },
        }
    }

    /// Bins including the missing bin (the last one).
    pub fn bins(&self) -> usize {
        match self {
            Binner::Number { edges } => edges.len() + 2,
            Binner::Category { count, .. } => count + 2,
        }
    }

    pub fn missing_bin(&self) -> usize {
        self.bins() - 1
    }

    pub fn bin(&self, value: &RawValue) -> usize {
        match (self, value) {
            (_, RawValue::Missing) => self.missing_bin(),
            (Binner::Number { edges }, RawValue::Number(x)) => count_below(edges, *x),
            (Binner::Category { index, count }, RawValue::Category(c)) => index.get(c).copied().unwrap_or(*count),
            // A value of the other kind cannot pass request validation; count it as "other" / last bin.
            (Binner::Number { edges }, RawValue::Category(_)) => edges.len(),
            (Binner::Category { count, .. }, RawValue::Number(_)) => *count,
        }
    }

    /// The `bin` label of each bin in metrics (DESIGN §6): "0", "1", … for numbers, the category itself,
    /// `__other__` for unseen categories, `__missing__` last.
    pub fn bin_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = match self {
            Binner::Number { edges } => (0..=edges.len()).map(|i| i.to_string()).collect(),
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

    /// Bins each of `values` (one feature's values, record after record) into `window`. The binner's kind is
    /// matched once per column rather than once per value, so the loop over numbers is a tight one.
    pub fn observe_column<'v>(&self, values: impl Iterator<Item = &'v RawValue>, window: &mut DriftWindow) {
        let missing = self.missing_bin();
        match self {
            Binner::Number { edges } => {
                for value in values {
                    window.observe(match value {
                        RawValue::Number(x) => count_below(edges, *x),
                        RawValue::Missing => missing,
                        RawValue::Category(_) => edges.len(),
                    });
                }
            }
            Binner::Category { .. } => values.for_each(|value| window.observe(self.bin(value))),
        }
    }

    /// The bin of a category given by name (the predicted label).
    pub fn bin_category(&self, label: &str) -> usize {
        match self {
            Binner::Category { index, count } => index.get(label).copied().unwrap_or(*count),
            Binner::Number { edges } => edges.len(),
        }
    }

    /// The bin of a number (a predicted value).
    pub fn bin_number(&self, x: f64) -> usize {
        match self {
            Binner::Number { edges } => count_below(edges, x),
            Binner::Category { count, .. } => *count,
        }
    }
}

/// The number of edges below `x`: numpy's `searchsorted(edges, x, side="left")` for sorted edges. A
/// branch-free count over the (about ten) edges beats a binary search, whose branches a CPU cannot predict.
#[inline]
fn count_below(edges: &[f64], x: f64) -> usize {
    edges.iter().map(|e| usize::from(*e < x)).sum()
}

/// The reference shares of a profile, in bin order with the missing share last.
pub fn reference_shares(profile: &Profile) -> Vec<f64> {
    let (ratios, missing) = match profile {
        Profile::Number { ratios, missing, .. } | Profile::Category { ratios, missing, .. } => (ratios, *missing),
    };
    ratios.iter().copied().chain([missing]).collect()
}

/// The last `capacity` bins observed, and every observation ever made per bin.
#[derive(Debug, Clone)]
pub struct DriftWindow {
    ring: Vec<u32>,
    /// Next slot to write; the ring is full once `len == capacity`.
    next: usize,
    len: usize,
    /// Every observation ever made, per bin (`inferd_feature_bin_total`).
    totals: Vec<u64>,
    reference: Vec<f64>,
}

impl DriftWindow {
    /// A window of `capacity` observations over bins whose reference shares are `reference`.
    pub fn new(capacity: usize, reference: Vec<f64>) -> DriftWindow {
        let bins = reference.len();
        DriftWindow { ring: vec![0; capacity.max(1)], next: 0, len: 0, totals: vec![0; bins], reference }
    }

    /// Called for every monitored value of every prediction: inlined into the binning loops.
    #[inline(always)]
    pub fn observe(&mut self, bin: usize) {
        let bin = bin.min(self.totals.len() - 1);
        self.ring[self.next] = bin as u32;
        self.totals[bin] += 1;
        self.next += 1;
        if self.next == self.ring.len() {
            self.next = 0;
        }
        if self.len < self.ring.len() {
            self.len += 1;
        }
    }

    /// Observations per bin in the window, counted from the ring (at scrape time, not per observation).
    fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.totals.len()];
        // Until the ring first wraps, its observations are the first `len` slots.
        for bin in &self.ring[..self.len] {
            counts[*bin as usize] += 1;
        }
        counts
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Observations ever made, per bin.
    pub fn totals(&self) -> &[u64] {
        &self.totals
    }

    /// The reference share per bin.
    pub fn reference(&self) -> &[f64] {
        &self.reference
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.ring.len()
    }

    /// The window's share per bin (None while empty).
    pub fn shares(&self) -> Option<Vec<f64>> {
        (self.len > 0).then(|| self.counts().iter().map(|c| *c as f64 / self.len as f64).collect())
    }

    /// Population stability index against the reference (None while empty).
    pub fn psi(&self) -> Option<f64> {
        Some(psi(&self.shares()?, &self.reference))
    }

    /// Jensen–Shannon distance against the reference (None while empty).
    pub fn js(&self) -> Option<f64> {
        Some(jensen_shannon(&self.shares()?, &self.reference))
    }

    /// 0 ok, 1 warning, 2 critical; 0 until the window first fills.
    pub fn level(&self, warning: f64, critical: f64) -> u8 {
        self.reading(warning, critical).2
    }

    /// PSI, JS and level from one count of the window (what a scrape reads).
    pub fn reading(&self, warning: f64, critical: f64) -> (Option<f64>, Option<f64>, u8) {
        let Some(shares) = self.shares() else { return (None, None, 0) };
        let psi = psi(&shares, &self.reference);
        let level = match psi {
            psi if self.is_full() && psi >= critical => 2,
            psi if self.is_full() && psi >= warning => 1,
            _ => 0,
        };
        (Some(psi), Some(jensen_shannon(&shares, &self.reference)), level)
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
        let binner = Binner::Number { edges: vec![1.0, 2.0, 3.0] };
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
        assert_eq!(Binner::Number { edges: vec![1.0] }.bin_labels(), ["0", "1", "__missing__"]);
    }

    #[test]
    fn the_window_forgets_its_oldest_observation() {
        let mut window = DriftWindow::new(3, vec![0.5, 0.5]);
        for bin in [0, 0, 0, 1, 1] {
            window.observe(bin);
        }
        assert!(window.is_full());
        assert_eq!(window.shares().unwrap(), [1.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(window.totals(), [3, 2]);
    }

    #[test]
    fn levels_wait_for_a_full_window() {
        let mut window = DriftWindow::new(4, vec![0.5, 0.5]);
        for _ in 0..3 {
            window.observe(0);
        }
        assert!(window.psi().unwrap() > 0.25);
        assert_eq!(window.level(0.1, 0.25), 0);
        window.observe(0);
        assert_eq!(window.level(0.1, 0.25), 2);
        assert!(DriftWindow::new(4, vec![0.5, 0.5]).psi().is_none());
    }

    #[test]
    fn identical_distributions_have_no_drift() {
        let shares = [0.2, 0.3, 0.5, 0.0];
        assert_eq!(psi(&shares, &shares), 0.0);
        assert!(jensen_shannon(&shares, &shares).abs() < 1e-12);
    }
}
