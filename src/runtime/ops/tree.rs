//! `TreeEnsembleRegressor` and `TreeEnsembleClassifier` on tract's tree engine
//! (`tract_onnx_opl::ml::tree`), finished the way onnxruntime finishes them.
//!
//! The engine walks the trees and sums leaf weights per output column. What onnxruntime does after that
//! (base values, AVERAGE's division by the tree count, MIN/MAX, the binary classifiers' score layout, the
//! post transform) happens in one small op of ours ([`RegressorFinish`], [`ClassifierFinish`]).
//!
//! Decoding differences with tract's own parser:
//! - `BRANCH_GTE` (which tract's engine would read as a leaf) becomes `BRANCH_LT` with the children swapped
//!   and the missing-value direction flipped;
//! - NaN follows onnxruntime: a node goes to its true child on NaN when its missing value track says so, and
//!   always for `BRANCH_NEQ` (`NaN != v` holds);
//! - node ids are looked up, not assumed dense, and trees are taken in increasing tree id order.
//! - MIN and MAX: tract's engine starts every output at 0, so they get one column per (tree, target) plus a
//!   "has a weight" column, and the finishing op takes the extremum over trees that voted.

use std::collections::{BTreeMap, HashMap};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::tree::{Aggregate, Cmp, TreeEnsemble, TreeEnsembleData};
use tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier as TreeEngine;

use super::{input_matrix, logistic, ml_rules, post_transform, transform_scores, Floats, Labels, PostTransform};

/// One decoded node.
#[derive(Debug, Clone)]
enum Node {
    Branch {
        feature: usize,
        value: f32,
        cmp: Cmp,
        true_ix: usize,
        false_ix: usize,
        nan_true: bool,
    },
    /// `(output index, weight)` in attribute order.
    Leaf(Vec<(usize, f32)>),
}

/// The decoded trees, in increasing tree id order; each tree's nodes in increasing node id order (the root
/// is the first), children as indices into that order.
#[derive(Debug, Clone)]
pub(super) struct Trees {
    trees: Vec<Vec<Node>>,
}

fn float_attr(node: &NodeProto, name: &str) -> TractResult<Option<Vec<f32>>> {
    match node.get_attr_opt_vec::<f32>(name)? {
        Some(v) => Ok(Some(v)),
        None if node.attribute.iter().any(|a| a.name == format!("{name}_as_tensor")) => {
            bail!("{}: '{name}_as_tensor' (double precision trees) is not supported", node.name)
        }
        None => Ok(None),
    }
}

/// The engine's per-column sums (`{prefix}.trees`) followed by the op that finishes them (`{prefix}.finish`).
fn wire_with_finish(
    prefix: &str,
    model: &mut TypedModel,
    engine: &TreeEnsemble,
    finish: impl TypedOp,
    inputs: &[OutletId],
) -> TractResult<TVec<OutletId>> {
    let sums = model.wire_node(format!("{prefix}.trees"), TreeEngine { ensemble: engine.clone() }, inputs)?;
    model.wire_node(format!("{prefix}.finish"), finish, &sums)
}

fn same_len<T>(node: &NodeProto, name: &str, v: Vec<T>, n: usize) -> TractResult<Vec<T>> {
    if v.len() != n {
        bail!("{}: attribute '{name}' has {} entries, expected {n}", node.name, v.len());
    }
    Ok(v)
}

impl Trees {
    /// Decodes the `nodes_*` attributes and the `<leaf_prefix>_*` leaf weights (`class` or `target`).
    pub(super) fn parse(node: &NodeProto, leaf_prefix: &str) -> TractResult<Trees> {
        let tree_ids = node.get_attr_vec::<i64>("nodes_treeids")?;
        let n = tree_ids.len();
        if n == 0 {
            bail!("{}: no tree nodes", node.name);
        }
        let node_ids = same_len(node, "nodes_nodeids", node.get_attr_vec::<i64>("nodes_nodeids")?, n)?;
        let features = same_len(node, "nodes_featureids", node.get_attr_vec::<i64>("nodes_featureids")?, n)?;
        let modes = same_len(node, "nodes_modes", node.get_attr_vec::<String>("nodes_modes")?, n)?;
        let values = float_attr(node, "nodes_values")?.unwrap_or_else(|| vec![0.0; n]);
        let values = same_len(node, "nodes_values", values, n)?;
        let true_ids = same_len(node, "nodes_truenodeids", node.get_attr_vec::<i64>("nodes_truenodeids")?, n)?;
        let false_ids = same_len(node, "nodes_falsenodeids", node.get_attr_vec::<i64>("nodes_falsenodeids")?, n)?;
        let tracks = node.get_attr_opt_vec::<i64>("nodes_missing_value_tracks_true")?.unwrap_or_else(|| vec![0; n]);
        let tracks = same_len(node, "nodes_missing_value_tracks_true", tracks, n)?;

        let leaf_trees = node.get_attr_vec::<i64>(&format!("{leaf_prefix}_treeids"))?;
        let m = leaf_trees.len();
        let leaf_nodes =
            same_len(node, "leaf node ids", node.get_attr_vec::<i64>(&format!("{leaf_prefix}_nodeids"))?, m)?;
        let leaf_ids = same_len(node, "leaf output ids", node.get_attr_vec::<i64>(&format!("{leaf_prefix}_ids"))?, m)?;
        let weights = float_attr(node, &format!("{leaf_prefix}_weights"))?
            .ok_or_else(|| format_err!("{}: no '{leaf_prefix}_weights'", node.name))?;
        let weights = same_len(node, "leaf weights", weights, m)?;

        // tree id -> node id -> attribute index
        let mut by_tree: BTreeMap<i64, BTreeMap<i64, usize>> = BTreeMap::new();
        for i in 0..n {
            if by_tree.entry(tree_ids[i]).or_default().insert(node_ids[i], i).is_some() {
                bail!("{}: node {} of tree {} is listed twice", node.name, node_ids[i], tree_ids[i]);
            }
        }
        let mut leaf_weights: HashMap<(i64, i64), Vec<(usize, f32)>> = HashMap::new();
        for j in 0..m {
            let id = usize::try_from(leaf_ids[j]).map_err(|_| format_err!("{}: negative leaf output id", node.name))?;
            leaf_weights.entry((leaf_trees[j], leaf_nodes[j])).or_default().push((id, weights[j]));
        }

        let mut trees = Vec::with_capacity(by_tree.len());
        for (&tree, nodes) in &by_tree {
            let position: HashMap<i64, usize> = nodes.keys().enumerate().map(|(ix, &id)| (id, ix)).collect();
            let child = |id: i64| {
                position.get(&id).copied().ok_or_else(|| {
                    format_err!("{}: tree {tree} refers to node {id}, which it does not have", node.name)
                })
            };
            let mut decoded = Vec::with_capacity(nodes.len());
            for (&id, &i) in nodes {
                let track = tracks[i] != 0;
                let feature =
                    usize::try_from(features[i]).map_err(|_| format_err!("{}: negative feature id", node.name))?;
                let (cmp, swap, nan_true) = match modes[i].as_str() {
                    "LEAF" => {
                        decoded.push(Node::Leaf(leaf_weights.remove(&(tree, id)).unwrap_or_default()));
                        continue;
                    }
                    "BRANCH_LEQ" => (Cmp::LessEqual, false, track),
                    "BRANCH_LT" => (Cmp::Less, false, track),
                    "BRANCH_GT" => (Cmp::Greater, false, track),
                    // x >= v  <=>  !(x < v); NaN took the true child iff tracked, now the false one of LT's
                    "BRANCH_GTE" => (Cmp::Less, true, !track),
                    "BRANCH_EQ" => (Cmp::Equal, false, track),
                    "BRANCH_NEQ" => (Cmp::NotEqual, false, true),
                    other => bail!("{}: unknown node mode {other:?}", node.name),
                };
                let (t, f) = (child(true_ids[i])?, child(false_ids[i])?);
                let (true_ix, false_ix) = if swap { (f, t) } else { (t, f) };
                decoded.push(Node::Branch { feature, value: values[i], cmp, true_ix, false_ix, nan_true });
            }
            trees.push(decoded);
        }
        if let Some(((tree, id), _)) = leaf_weights.iter().next() {
            bail!("{}: weights for node {id} of tree {tree}, which is not a leaf", node.name);
        }
        Ok(Trees { trees })
    }

    fn n_trees(&self) -> usize {
        self.trees.len()
    }

    fn leaves(&self) -> impl Iterator<Item = (usize, &[(usize, f32)])> {
        self.trees.iter().enumerate().flat_map(|(t, nodes)| {
            nodes.iter().filter_map(move |n| match n {
                Node::Leaf(w) => Some((t, w.as_slice())),
                Node::Branch { .. } => None,
            })
        })
    }

    /// tract's engine over these trees, with `n_columns` outputs; `columns(tree, output, weight)` says where
    /// a leaf weight goes (column, value), summed by the engine.
    fn engine(
        &self,
        n_columns: usize,
        columns: impl Fn(usize, usize, f32) -> Vec<(usize, f32)>,
    ) -> TractResult<TreeEnsemble> {
        let mut roots = Vec::with_capacity(self.trees.len());
        let mut nodes: Vec<u32> = vec![];
        let mut leaves: Vec<u32> = vec![];
        let mut max_feature = 0;
        for (t, tree) in self.trees.iter().enumerate() {
            let offset = nodes.len() / 5;
            roots.push(offset as u32);
            for node in tree {
                match *node {
                    Node::Branch { feature, value, cmp, true_ix, false_ix, nan_true } => {
                        max_feature = max_feature.max(feature);
                        nodes.extend([
                            feature as u32,
                            (offset + true_ix) as u32,
                            (offset + false_ix) as u32,
                            value.to_bits(),
                            (cmp as u32) | if nan_true { 0x100 } else { 0 },
                        ]);
                    }
                    Node::Leaf(ref weights) => {
                        let start = leaves.len() / 2;
                        for &(output, weight) in weights {
                            for (column, value) in columns(t, output, weight) {
                                if column >= n_columns {
                                    bail!("leaf output {output} is out of range ({n_columns} columns)");
                                }
                                leaves.extend([column as u32, value.to_bits()]);
                            }
                        }
                        nodes.extend([start as u32, (leaves.len() / 2) as u32, 0, 0, 0]);
                    }
                }
            }
        }
        let data = TreeEnsembleData {
            trees: rctensor1(&roots),
            nodes: tensor1(&nodes).into_shape(&[nodes.len() / 5, 5])?.into_arc_tensor(),
            leaves: tensor1(&leaves).into_shape(&[leaves.len() / 2, 2])?.into_arc_tensor(),
        };
        TreeEnsemble::build(data, max_feature, n_columns, Aggregate::Sum)
    }
}

// ------------------------------------------------------------------------------------------------------------
// Regressor
// ------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Agg {
    Sum,
    Average,
    Min,
    Max,
}

pub(super) fn tree_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(TreeRegressor::parse(node)?), vec![]))
}

#[derive(Debug, Clone)]
pub(super) struct TreeRegressor {
    engine: TreeEnsemble,
    finish: RegressorFinish,
}

impl TreeRegressor {
    pub(super) fn parse(node: &NodeProto) -> TractResult<TreeRegressor> {
        let trees = Trees::parse(node, "target")?;
        let n_targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1);
        let n_targets = usize::try_from(n_targets).ok().filter(|&n| n > 0);
        let n_targets = n_targets.ok_or_else(|| format_err!("{}: n_targets must be positive", node.name))?;
        let agg = match node.get_attr_opt::<&str>("aggregate_function")?.unwrap_or("SUM") {
            "SUM" => Agg::Sum,
            "AVERAGE" => Agg::Average,
            "MIN" => Agg::Min,
            "MAX" => Agg::Max,
            other => bail!("{}: unknown aggregate_function {other:?}", node.name),
        };
        let post = post_transform(node)?;
        if post == PostTransform::Probit {
            bail!("{}: post_transform PROBIT is not supported", node.name);
        }
        let base = float_attr(node, "base_values")?.unwrap_or_default();
        let n_trees = trees.n_trees();
        let engine = match agg {
            Agg::Sum | Agg::Average => trees.engine(n_targets, |_, target, w| vec![(target, w)])?,
            Agg::Min | Agg::Max => {
                // one (value, voted) column pair per (tree, target): the extremum is taken afterwards
                for (_, weights) in trees.leaves() {
                    let mut seen: Vec<usize> = weights.iter().map(|w| w.0).collect();
                    seen.sort_unstable();
                    if seen.windows(2).any(|p| p[0] == p[1]) {
                        bail!("{}: MIN/MAX with several weights for one target in a leaf", node.name);
                    }
                }
                trees.engine(n_trees * n_targets * 2, |tree, target, w| {
                    let column = (tree * n_targets + target) * 2;
                    if target < n_targets {
                        vec![(column, w), (column + 1, 1.0)]
                    } else {
                        vec![(usize::MAX, w)]
                    }
                })?
            }
        };
        Ok(TreeRegressor { engine, finish: RegressorFinish { n_targets, n_trees, agg, post, base: Floats(base) } })
    }
}

impl Expansion for TreeRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ml_rules(s, inputs, outputs, None, None, self.finish.n_targets)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        wire_with_finish(prefix, model, &self.engine, self.finish.clone(), inputs)
    }
}

/// onnxruntime's regressor aggregators' `FinalizeScores`: from the engine's columns to `[N, n_targets]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RegressorFinish {
    n_targets: usize,
    n_trees: usize,
    agg: Agg,
    post: PostTransform,
    base: Floats,
}

impl RegressorFinish {
    /// One row: `raw` is the engine's row, the result goes to `out` (`n_targets` wide).
    fn finish_row(&self, raw: &[f32], out: &mut [f32]) {
        for (target, o) in out.iter_mut().enumerate() {
            let score = match self.agg {
                Agg::Sum | Agg::Average => raw[target],
                Agg::Min | Agg::Max => {
                    let mut best: Option<f32> = None;
                    for tree in 0..self.n_trees {
                        let column = (tree * self.n_targets + target) * 2;
                        if raw[column + 1] > 0.0 {
                            let v = raw[column];
                            // onnxruntime: `(!has_score || v < score) ? v : score` (MIN), `>` for MAX
                            best = Some(match best {
                                Some(b) if (self.agg == Agg::Min && v < b) || (self.agg == Agg::Max && v > b) => v,
                                Some(b) => b,
                                None => v,
                            });
                        }
                    }
                    best.unwrap_or(0.0)
                }
            };
            let score = if self.agg == Agg::Average { score / self.n_trees as f32 } else { score };
            *o = if self.n_targets == 1 {
                // FinalizeScores1: `origin_` is the single base value, if there is exactly one
                score + if self.base.len() == 1 { self.base[0] } else { 0.0 }
            } else if self.base.len() == self.n_targets {
                score + self.base[target]
            } else {
                score
            };
        }
        // FinalizeScores1 (one target) only knows PROBIT, refused at parse time
        if self.n_targets > 1 {
            transform_scores(out, self.post);
        }
    }
}

impl Op for RegressorFinish {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressorFinish".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} over {} trees, {} targets, post {:?}",
            self.agg, self.n_trees, self.n_targets, self.post
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for RegressorFinish {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, width, raw) = input_matrix(&inputs[0])?;
        let mut out = vec![0f32; rows * self.n_targets];
        if rows > 0 {
            for (raw, out) in raw.chunks_exact(width).zip(out.chunks_exact_mut(self.n_targets)) {
                self.finish_row(raw, out);
            }
        }
        Ok(tvec!(Tensor::from_shape(&[rows, self.n_targets], &out)?.into_tvalue()))
    }
}

impl TypedOp for RegressorFinish {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact([inputs[0].shape[0].clone(), self.n_targets.to_dim()])))
    }

    as_op!();
}

// ------------------------------------------------------------------------------------------------------------
// Classifier
// ------------------------------------------------------------------------------------------------------------

pub(super) fn tree_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(TreeClassifier::parse(node)?), vec![]))
}

#[derive(Debug, Clone)]
pub(super) struct TreeClassifier {
    engine: TreeEnsemble,
    finish: ClassifierFinish,
}

/// What onnxruntime's binary branch (exactly two classes) sees, decided once from the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Binary {
    /// Class 1 has a score on every row (some tree has a class-1 weight in every leaf); false: never (no
    /// class-1 weight at all). Anything in between is refused.
    has1: bool,
    /// Only one class id appears in the weights (`binary_case_`).
    single_class: bool,
    /// No negative weight (`weights_are_all_positive_`).
    all_positive: bool,
}

impl TreeClassifier {
    pub(super) fn parse(node: &NodeProto) -> TractResult<TreeClassifier> {
        let trees = Trees::parse(node, "class")?;
        let labels = Labels::parse(node, "classlabels_int64s")?;
        let n_classes = labels.len();
        let post = post_transform(node)?;
        if post == PostTransform::Probit {
            bail!("{}: post_transform PROBIT is not supported", node.name);
        }
        let base = float_attr(node, "base_values")?.unwrap_or_default();
        if base.len() > n_classes {
            bail!("{}: {} base_values for {n_classes} classes", node.name, base.len());
        }
        let engine = trees.engine(n_classes, |_, class, w| vec![(class, w)])?;
        let binary = if n_classes == 2 {
            let mut used = [false; 2];
            let mut all_positive = true;
            for (_, weights) in trees.leaves() {
                for &(class, w) in weights {
                    used[class] = true;
                    if w < 0.0 {
                        all_positive = false;
                    }
                }
            }
            if !used[0] && !used[1] {
                bail!("{}: no class weights", node.name);
            }
            let has1 = used[1];
            if has1 {
                let always = trees.trees.iter().enumerate().any(|(t, _)| {
                    trees.leaves().filter(|(tree, _)| *tree == t).all(|(_, w)| w.iter().any(|&(c, _)| c == 1))
                });
                if !always {
                    bail!("{}: binary model where class 1 has weights in some leaves only", node.name);
                }
            }
            Some(Binary { has1, single_class: used[0] != used[1], all_positive })
        } else {
            None
        };
        Ok(TreeClassifier { engine, finish: ClassifierFinish { labels, post, base: Floats(base), binary } })
    }
}

impl Expansion for TreeClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ml_rules(s, inputs, outputs, None, Some(self.finish.labels.datum_type()), self.finish.labels.len())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        wire_with_finish(prefix, model, &self.engine, self.finish.clone(), inputs)
    }
}

/// onnxruntime's `TreeAggregatorClassifier::FinalizeScores` plus `write_scores`: class sums to label and
/// scores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClassifierFinish {
    labels: Labels,
    post: PostTransform,
    base: Floats,
    binary: Option<Binary>,
}

/// Which label a row gets.
enum Pick {
    Index(usize),
    /// onnxruntime's `positive_label_` / `negative_label_` (1 / 0) of a two-class model with both classes in
    /// its weights.
    Literal(bool),
}

impl ClassifierFinish {
    /// One row: `sums` are the engine's per-class sums, `out` gets the scores.
    fn finish_row(&self, sums: &[f32], out: &mut [f32]) -> Pick {
        let Some(binary) = self.binary else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = sums[k] + self.base.get(k).copied().unwrap_or(0.0);
            }
            let mut best = 0;
            for k in 1..out.len() {
                if out[k] > out[best] {
                    best = k;
                }
            }
            transform_scores(out, self.post);
            return Pick::Index(best);
        };
        let (s0, s1) = (sums[0], sums[1]);
        // (scores, how many): onnxruntime drops the second score when class 1 has none
        let (scores, two) = match (self.base.len(), binary.has1) {
            (2, true) => {
                // onnxruntime: "base_value_[0] is not used", and class 1 gets class 0's sum
                let p1 = self.base[1] + s0;
                ([-p1, p1], true)
            }
            // measured on onnxruntime 1.32: class 1 keeps a 0 score (b1 is not added)
            (2, false) => ([s0 + self.base[0], s1], true),
            (1, true) => ([s0 + self.base[0], s1], true),
            (1, false) => ([s0 + self.base[0], 0.0], false),
            (_, true) => ([s0, s1], true),
            (_, false) => ([s0, 0.0], false),
        };
        let positive = if two { scores[1] } else { scores[0] };
        let (pick, mixed) = if binary.single_class {
            if binary.all_positive {
                (Pick::Index((positive > 0.5) as usize), false)
            } else {
                (Pick::Index((positive > 0.0) as usize), true)
            }
        } else {
            (Pick::Literal(positive > 0.0), false)
        };
        if two {
            out.copy_from_slice(&scores);
            transform_scores(out, self.post);
        } else if !mixed {
            // all weights positive: the score is class 1's, no transform
            out.copy_from_slice(&[1.0 - positive, positive]);
        } else if self.post == PostTransform::Logistic {
            out.copy_from_slice(&[logistic(-positive), logistic(positive)]);
        } else {
            out.copy_from_slice(&[-positive, positive]);
        }
        pick
    }
}

impl Op for ClassifierFinish {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifierFinish".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} classes, post {:?}, binary {:?}", self.labels.len(), self.post, self.binary)])
    }

    op_as_typed_op!();
}

impl EvalOp for ClassifierFinish {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, width, sums) = input_matrix(&inputs[0])?;
        let k = self.labels.len();
        let mut scores = vec![0f32; rows * k];
        let mut picks = Vec::with_capacity(rows);
        if rows > 0 {
            for (sums, out) in sums.chunks_exact(width).zip(scores.chunks_exact_mut(k)) {
                picks.push(self.finish_row(sums, out));
            }
        }
        let labels = match &self.labels {
            Labels::Ints(_) if picks.iter().any(|p| matches!(p, Pick::Literal(_))) => {
                tensor1(&picks.iter().map(|p| if let Pick::Literal(true) = p { 1i64 } else { 0 }).collect::<Vec<_>>())
            }
            labels => labels.gather(
                &picks
                    .iter()
                    .map(|p| if let Pick::Index(i) = p { *i } else { matches!(p, Pick::Literal(true)) as usize })
                    .collect::<Vec<_>>(),
            ),
        };
        Ok(tvec!(labels.into_tvalue(), Tensor::from_shape(&[rows, k], &scores)?.into_tvalue()))
    }
}

impl TypedOp for ClassifierFinish {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(self.labels.datum_type().fact([n.clone()]), f32::fact([n, self.labels.len().to_dim()])))
    }

    as_op!();
}
