//! What the tests of our autodiff operations share: comparing their values and gradients with
//! those of burn's operations for the same work.

use burn::backend::flex::Flex;
use burn::tensor::Tensor;

/// A tensor's values, row-major.
pub fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().expect("f32 values")
}

/// The largest absolute difference between `ours` and `burns`.
pub fn max_abs_difference(ours: &[f32], burns: &[f32]) -> f32 {
    assert_eq!(ours.len(), burns.len(), "as many values as burn's");
    ours.iter()
        .zip(burns)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// The largest difference between `ours` and `burns`, relative to burn's value where that is
/// above 1 in size (absolute below, where relative errors of values near 0 mean nothing).
pub fn max_relative_difference(ours: &[f32], burns: &[f32]) -> f32 {
    assert_eq!(ours.len(), burns.len(), "as many values as burn's");
    ours.iter()
        .zip(burns)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Asserts that each of our results (an output, then gradients) is within `tolerance` of
/// burn's by `measure`, naming the first that is not.
pub fn assert_all_close(
    names: &[&str],
    ours: &[Vec<f32>],
    burns: &[Vec<f32>],
    measure: fn(&[f32], &[f32]) -> f32,
    tolerance: f32,
) {
    assert_eq!(names.len(), ours.len(), "a name for each result");
    for (name, (a, b)) in names.iter().zip(ours.iter().zip(burns)) {
        let worst = measure(a, b);
        assert!(worst < tolerance, "{name} differs from burn's by {worst}");
    }
}
