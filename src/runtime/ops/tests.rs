//! Unit tests on hand-written nodes, pinned to what onnxruntime 1.32 (one thread) answers for the same nodes
//! (the numbers come from running each node alone in onnxruntime; the subtle paths no exporter reaches today
//! are here: binary base values, onnxruntime's binary layouts, BRANCH_GTE with NaN, AVERAGE / MIN / MAX over
//! several targets, SVM pairwise coupling).
// onnxruntime's numbers as Python prints them (f64 renderings of f32 results), kept verbatim
#![allow(clippy::excessive_precision)]

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::Expansion;

use super::svm::{SvmClassifier, SvmRegressor};
use super::tree::{TreeClassifier, TreeRegressor};

enum A {
    I(i64),
    S(&'static str),
    Is(Vec<i64>),
    Fs(Vec<f32>),
    Ss(Vec<&'static str>),
}

fn node(op: &str, attrs: Vec<(&str, A)>) -> NodeProto {
    let attribute = attrs
        .into_iter()
        .map(|(name, a)| {
            let mut p = AttributeProto { name: name.to_string(), ..AttributeProto::default() };
            match a {
                A::I(i) => (p.r#type, p.i) = (AttributeType::Int as i32, i),
                A::S(s) => (p.r#type, p.s) = (AttributeType::String as i32, s.as_bytes().to_vec()),
                A::Is(v) => (p.r#type, p.ints) = (AttributeType::Ints as i32, v),
                A::Fs(v) => (p.r#type, p.floats) = (AttributeType::Floats as i32, v),
                A::Ss(v) => {
                    (p.r#type, p.strings) =
                        (AttributeType::Strings as i32, v.iter().map(|s| s.as_bytes().to_vec()).collect())
                }
            }
            p
        })
        .collect();
    NodeProto { name: "node".into(), op_type: op.into(), attribute, ..NodeProto::default() }
}

/// Wires `op` on an `[rows, columns]` f32 source and runs it.
fn run(op: &dyn Expansion, rows: &[[f32; 2]]) -> TVec<TValue> {
    let mut model = TypedModel::default();
    let source = model.add_source("input", f32::fact([rows.len(), 2])).unwrap();
    let outputs = op.wire("op", &mut model, &[source]).unwrap();
    model.select_output_outlets(&outputs).unwrap();
    let plan = model.into_runnable().unwrap();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    plan.run(tvec!(Tensor::from_shape(&[rows.len(), 2], &flat).unwrap().into())).unwrap()
}

fn values(v: &TValue) -> Vec<f32> {
    v.cast_to::<f32>().unwrap().to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

fn labels(v: &TValue) -> Vec<i64> {
    v.to_plain_array_view::<i64>().unwrap().iter().copied().collect()
}

fn assert_close(got: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() <= tolerance, "{got:?}\n vs onnxruntime\n{expected:?}");
    }
}

const NAN: f32 = f32::NAN;

// ------------------------------------------------------------------------------------------------------------
// TreeEnsembleClassifier, two classes: two stumps (x0 <= 0.5, NaN tracked true | x1 < 0)
// ------------------------------------------------------------------------------------------------------------

const STUMP_ROWS: [[f32; 2]; 4] = [[0.2, -1.0], [0.9, 1.0], [0.5, 0.0], [NAN, NAN]];

/// `weights[leaf]` = [(class, weight)] for the leaves (tree 0 node 1, tree 0 node 2, tree 1 node 1, tree 1 node 2).
fn stumps(weights: [&[(i64, f32)]; 4], extra: Vec<(&str, A)>) -> NodeProto {
    let leaves = [(0, 1), (0, 2), (1, 1), (1, 2)];
    let (mut t, mut n, mut c, mut w) = (vec![], vec![], vec![], vec![]);
    for ((tree, id), ws) in leaves.iter().zip(weights) {
        for &(class, weight) in ws {
            t.push(*tree);
            n.push(*id);
            c.push(class);
            w.push(weight);
        }
    }
    let mut attrs = vec![
        ("nodes_treeids", A::Is(vec![0, 0, 0, 1, 1, 1])),
        ("nodes_nodeids", A::Is(vec![0, 1, 2, 0, 1, 2])),
        ("nodes_featureids", A::Is(vec![0, 0, 0, 1, 0, 0])),
        ("nodes_modes", A::Ss(vec!["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"])),
        ("nodes_values", A::Fs(vec![0.5, 0.0, 0.0, 0.0, 0.0, 0.0])),
        ("nodes_truenodeids", A::Is(vec![1, 0, 0, 1, 0, 0])),
        ("nodes_falsenodeids", A::Is(vec![2, 0, 0, 2, 0, 0])),
        ("nodes_missing_value_tracks_true", A::Is(vec![1, 0, 0, 0, 0, 0])),
        ("class_treeids", A::Is(t)),
        ("class_nodeids", A::Is(n)),
        ("class_ids", A::Is(c)),
        ("class_weights", A::Fs(w)),
        ("classlabels_int64s", A::Is(vec![0, 1])),
    ];
    attrs.extend(extra);
    node("TreeEnsembleClassifier", attrs)
}

fn classify(node: NodeProto) -> (Vec<i64>, Vec<f32>) {
    let op = TreeClassifier::parse(&node).unwrap();
    let out = run(&op, &STUMP_ROWS);
    (labels(&out[0]), values(&out[1]))
}

const MIXED: [&[(i64, f32)]; 4] = [&[(0, -1.25)], &[(0, 0.75)], &[(0, 0.5)], &[(0, -0.3)]];

#[test]
fn binary_single_base_value_like_gradient_boosting() {
    // tract's own builder refuses this node ("base_values: expected length ..."); onnxruntime adds the single
    // base value to class 0's sum and answers [σ(-s), σ(s)]
    let (labels, scores) =
        classify(stumps(MIXED, vec![("base_values", A::Fs(vec![0.3])), ("post_transform", A::S("LOGISTIC"))]));
    #[rustfmt::skip]
    let expected = [
        0.6106392741203308, 0.3893607258796692, 0.32082128524780273, 0.6791787147521973,
        0.7772998809814453, 0.2227001190185547, 0.7772998809814453, 0.2227001190185547,
    ];
    assert_close(&scores, &expected, 1e-7);
    assert_eq!(labels, [0, 1, 0, 0]);
}

#[test]
fn binary_two_base_values_class_zero_only() {
    // "binary as multiclass": [σ(s0 + b0), σ(0)], b1 is not added (onnxruntime 1.32)
    let (_, scores) =
        classify(stumps(MIXED, vec![("base_values", A::Fs(vec![0.3, 0.7])), ("post_transform", A::S("LOGISTIC"))]));
    #[rustfmt::skip]
    let expected = [
        0.3893607258796692, 0.5, 0.6791787147521973, 0.5, 0.2227001190185547, 0.5, 0.2227001190185547, 0.5,
    ];
    assert_close(&scores, &expected, 1e-7);
}

#[test]
fn binary_two_base_values_both_classes() {
    // onnxruntime: class 1 gets b1 + (class 0's sum), class 0 its negation ("base_value_[0] is not used")
    let weights: [&[(i64, f32)]; 4] =
        [&[(0, -1.25), (1, 0.25)], &[(0, 0.75), (1, -0.5)], &[(0, 0.5), (1, 1.0)], &[(0, -0.3), (1, 0.2)]];
    let (_, scores) =
        classify(stumps(weights, vec![("base_values", A::Fs(vec![0.3, 0.7])), ("post_transform", A::S("LOGISTIC"))]));
    #[rustfmt::skip]
    let expected = [
        0.5124974250793457, 0.4875025749206543, 0.24048912525177002, 0.75951087474823,
        0.7005671858787537, 0.29943281412124634, 0.7005671858787537, 0.29943281412124634,
    ];
    assert_close(&scores, &expected, 1e-7);
}

#[test]
fn binary_positive_weights_like_random_forest() {
    let weights: [&[(i64, f32)]; 4] = [&[(0, 0.25)], &[(0, 0.75)], &[(0, 0.1)], &[(0, 0.05)]];
    let (labels, scores) = classify(stumps(weights, vec![]));
    #[rustfmt::skip]
    let expected = [
        0.6499999761581421, 0.3499999940395355, 0.19999998807907104, 0.800000011920929,
        0.699999988079071, 0.30000001192092896, 0.699999988079071, 0.30000001192092896,
    ];
    assert_close(&scores, &expected, 1e-7);
    assert_eq!(labels, [0, 1, 0, 0]);
}

#[test]
fn binary_mixed_weights_without_transform() {
    let (_, scores) = classify(stumps(MIXED, vec![]));
    #[rustfmt::skip]
    let expected = [
        0.75, -0.75, -0.44999998807907104, 0.44999998807907104, 1.5499999523162842, -1.5499999523162842,
        1.5499999523162842, -1.5499999523162842,
    ];
    assert_close(&scores, &expected, 1e-7);
}

// ------------------------------------------------------------------------------------------------------------
// TreeEnsembleRegressor
// ------------------------------------------------------------------------------------------------------------

fn regress(node: NodeProto, rows: &[[f32; 2]]) -> Vec<f32> {
    let op = TreeRegressor::parse(&node).unwrap();
    values(&run(&op, rows)[0])
}

#[test]
fn branch_gte_is_rewritten_with_missing_values() {
    // x0 >= 1 (NaN -> true) ? (x1 >= 0 (NaN -> false) ? 20 : 30) : 10
    let gte = node(
        "TreeEnsembleRegressor",
        vec![
            ("nodes_treeids", A::Is(vec![0; 5])),
            ("nodes_nodeids", A::Is(vec![0, 1, 2, 3, 4])),
            ("nodes_featureids", A::Is(vec![0, 1, 0, 0, 0])),
            ("nodes_modes", A::Ss(vec!["BRANCH_GTE", "BRANCH_GTE", "LEAF", "LEAF", "LEAF"])),
            ("nodes_values", A::Fs(vec![1.0, 0.0, 0.0, 0.0, 0.0])),
            ("nodes_truenodeids", A::Is(vec![1, 3, 0, 0, 0])),
            ("nodes_falsenodeids", A::Is(vec![2, 4, 0, 0, 0])),
            ("nodes_missing_value_tracks_true", A::Is(vec![1, 0, 0, 0, 0])),
            ("target_treeids", A::Is(vec![0, 0, 0])),
            ("target_nodeids", A::Is(vec![2, 3, 4])),
            ("target_ids", A::Is(vec![0, 0, 0])),
            ("target_weights", A::Fs(vec![10.0, 20.0, 30.0])),
            ("n_targets", A::I(1)),
        ],
    );
    let rows = [[2.0, 1.0], [2.0, -1.0], [0.0, 5.0], [NAN, 1.0], [2.0, NAN], [1.0, 0.0], [NAN, NAN]];
    assert_eq!(regress(gte, &rows), [20.0, 30.0, 10.0, 20.0, 30.0, 20.0, 30.0]);
}

/// Three trees, two targets, base [1, 2]: stump x0 <= 0 {t0 -2, t1 1 | t0 3, t1 -1}; stump x1 <= 0
/// {t0 -5 (no t1) | t0 1, t1 4}; a lone leaf {t0 0.5, t1 -0.5}.
fn aggregated(function: &'static str) -> Vec<f32> {
    let n = node(
        "TreeEnsembleRegressor",
        vec![
            ("nodes_treeids", A::Is(vec![0, 0, 0, 1, 1, 1, 2])),
            ("nodes_nodeids", A::Is(vec![0, 1, 2, 0, 1, 2, 0])),
            ("nodes_featureids", A::Is(vec![0, 0, 0, 1, 0, 0, 0])),
            ("nodes_modes", A::Ss(vec!["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF", "LEAF"])),
            ("nodes_values", A::Fs(vec![0.0; 7])),
            ("nodes_truenodeids", A::Is(vec![1, 0, 0, 1, 0, 0, 0])),
            ("nodes_falsenodeids", A::Is(vec![2, 0, 0, 2, 0, 0, 0])),
            ("target_treeids", A::Is(vec![0, 0, 0, 0, 1, 1, 1, 2, 2])),
            ("target_nodeids", A::Is(vec![1, 1, 2, 2, 1, 2, 2, 0, 0])),
            ("target_ids", A::Is(vec![0, 1, 0, 1, 0, 0, 1, 0, 1])),
            ("target_weights", A::Fs(vec![-2.0, 1.0, 3.0, -1.0, -5.0, 1.0, 4.0, 0.5, -0.5])),
            ("n_targets", A::I(2)),
            ("base_values", A::Fs(vec![1.0, 2.0])),
            ("aggregate_function", A::S(function)),
        ],
    );
    regress(n, &[[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
}

#[test]
fn sum_over_targets() {
    assert_eq!(aggregated("SUM"), [-5.5, 2.5, -0.5, 0.5, 0.5, 6.5, 5.5, 4.5]);
}

#[test]
fn average_divides_by_the_tree_count() {
    // onnxruntime divides by the number of trees, also for target 1 where a tree has no weight
    #[rustfmt::skip]
    let expected = [
        -1.1666667461395264, 2.1666667461395264, 0.5, 1.5, 0.8333333134651184, 3.5, 2.5, 2.8333332538604736,
    ];
    assert_eq!(aggregated("AVERAGE"), expected);
}

#[test]
fn min_and_max_ignore_trees_without_a_weight() {
    assert_eq!(aggregated("MIN"), [-4.0, 1.5, -4.0, 1.0, -1.0, 1.5, 1.5, 1.0]);
    assert_eq!(aggregated("MAX"), [1.5, 3.0, 4.0, 1.5, 2.0, 6.0, 4.0, 6.0]);
}

// ------------------------------------------------------------------------------------------------------------
// SVM
// ------------------------------------------------------------------------------------------------------------

const SVM_ROWS: [[f32; 2]; 5] = [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [2.0, 2.0], [-1.0, 3.0]];

fn svm3(probabilities: bool) -> NodeProto {
    let mut attrs = vec![
        ("classlabels_ints", A::Is(vec![0, 1, 2])),
        ("kernel_type", A::S("RBF")),
        ("kernel_params", A::Fs(vec![0.5, 0.0, 3.0])),
        ("vectors_per_class", A::Is(vec![2, 1, 2])),
        ("support_vectors", A::Fs(vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0])),
        ("coefficients", A::Fs(vec![0.8, 0.4, -1.0, 0.6, -0.3, 0.5, 0.7, 0.9, -0.7, -0.5])),
        ("rho", A::Fs(vec![0.1, -0.2, 0.3])),
        ("post_transform", A::S("NONE")),
    ];
    if probabilities {
        attrs.push(("prob_a", A::Fs(vec![-2.0, -1.5, -3.0])));
        attrs.push(("prob_b", A::Fs(vec![0.1, -0.2, 0.05])));
    }
    node("SVMClassifier", attrs)
}

#[test]
fn svm_three_classes_pairwise_coupling() {
    let op = SvmClassifier::parse(&svm3(true)).unwrap();
    let out = run(&op, &SVM_ROWS);
    #[rustfmt::skip]
    let expected = [
        0.6500301957130432, 0.2597019076347351, 0.09026779234409332,
        0.4631735682487488, 0.3433256149291992, 0.19350095093250275,
        0.5527712106704712, 0.354451060295105, 0.09277762472629547,
        0.33317238092422485, 0.20408695936203003, 0.4627407491207123,
        0.3294393718242645, 0.4415537416934967, 0.22900694608688354,
    ];
    assert_close(&values(&out[1]), &expected, 1e-6);
    assert_eq!(labels(&out[0]), [0, 0, 0, 2, 0]);
}

#[test]
fn svm_three_classes_decisions_without_probabilities() {
    let op = SvmClassifier::parse(&svm3(false)).unwrap();
    let out = run(&op, &SVM_ROWS);
    #[rustfmt::skip]
    let expected = [
        0.5360816121101379, 0.9398044347763062, 0.5792041420936584,
        0.030385173857212067, 0.8981473445892334, -0.03806212544441223,
        0.255760133266449, 1.1702216863632202, 0.40306055545806885,
        0.06540151685476303, -0.21265500783920288, -0.3836390972137451,
        0.023906735703349113, -0.1866106241941452, 0.3576865792274475,
    ];
    assert_close(&values(&out[1]), &expected, 1e-6);
    assert_eq!(labels(&out[0]), [0, 0, 0, 2, 0]);
}

#[test]
fn svm_two_classes_are_coupled_too() {
    // onnxruntime runs the coupling iteration for two classes as well (libsvm would not): 8.4e-10, not Platt's
    // value, for the fourth row
    let n = node(
        "SVMClassifier",
        vec![
            ("classlabels_ints", A::Is(vec![0, 1])),
            ("kernel_type", A::S("POLY")),
            ("kernel_params", A::Fs(vec![0.5, 1.0, 3.0])),
            ("vectors_per_class", A::Is(vec![2, 1])),
            ("support_vectors", A::Fs(vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0])),
            ("coefficients", A::Fs(vec![0.8, 0.4, -1.2])),
            ("rho", A::Fs(vec![0.15])),
            ("prob_a", A::Fs(vec![-2.0])),
            ("prob_b", A::Fs(vec![0.1])),
        ],
    );
    let op = SvmClassifier::parse(&n).unwrap();
    let out = run(&op, &SVM_ROWS);
    #[rustfmt::skip]
    let expected = [
        0.5497904419898987, 0.4502095580101013, 0.026584144681692123, 0.9734159111976624,
        0.2099631279706955, 0.7900369763374329, 8.35640057150755e-10, 1.0, 3.000001302607726e-14, 1.0,
    ];
    assert_close(&values(&out[1]), &expected, 1e-7);
    assert_eq!(labels(&out[0]), [0, 1, 1, 1, 1]);
}

#[test]
fn svm_regressor_sigmoid_kernel() {
    let n = node(
        "SVMRegressor",
        vec![
            ("kernel_type", A::S("SIGMOID")),
            ("kernel_params", A::Fs(vec![0.5, 0.25, 3.0])),
            ("n_supports", A::I(3)),
            ("support_vectors", A::Fs(vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0])),
            ("coefficients", A::Fs(vec![0.8, 0.4, -1.2])),
            ("rho", A::Fs(vec![0.15])),
        ],
    );
    let op = SvmRegressor::parse(&n).unwrap();
    let expected =
        [0.15000000596046448, -0.16218429803848267, -0.023758813738822937, -0.33269202709198, -0.8816832304000854];
    assert_close(&values(&run(&op, &SVM_ROWS)[0]), &expected, 1e-6);
}
