//! AdamW over the LoRA parameters, with PyTorch's update rule (decoupled weight decay, bias
//! correction, `eps` outside the square root) and clipping by the global gradient norm, as
//! Hugging Face's trainer does. burn's optimisers clip each tensor separately, which changes
//! the direction of the update; this one scales all gradients together.

use burn::tensor::ElementConversion;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        // PyTorch's defaults, except the weight decay the studio uses for LoRA.
        AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimiser's state: first and second moments and the step count, flat in the order of
/// [`super::Params::flat`], so that an update is a dozen operations for all parameters rather
/// than a dozen per tensor (on a GPU each operation is a kernel launch, and an adapter on all
/// seven projections of a 30-layer model has 420 tensors).
pub struct AdamW<B: Backend> {
    /// Settings.
    pub settings: AdamWSettings,
    /// Completed updates.
    pub step: u64,
    /// First moments.
    pub m: Tensor<B, 1>,
    /// Second moments.
    pub v: Tensor<B, 1>,
}

impl<B: Backend> AdamW<B> {
    /// Zero moments for the parameters `params`.
    pub fn new(settings: AdamWSettings, params: &Tensor<B, 1>) -> Self {
        AdamW {
            settings,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// One update of `params` with the gradient `grad` at learning rate `lr`.
    pub fn update(&mut self, params: &mut Tensor<B, 1>, grad: Tensor<B, 1>, lr: f64) {
        let s = self.settings;
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - s.beta1.powi(t);
        let correction2 = 1.0 - s.beta2.powi(t);
        let m = self.m.clone().mul_scalar(s.beta1) + grad.clone().mul_scalar(1.0 - s.beta1);
        let v =
            self.v.clone().mul_scalar(s.beta2) + (grad.clone() * grad).mul_scalar(1.0 - s.beta2);
        let denom = (v.clone().div_scalar(correction2)).sqrt().add_scalar(s.eps);
        let step = m.clone().div(denom).mul_scalar(lr / correction1);
        *params = params.clone().mul_scalar(1.0 - lr * s.weight_decay) - step;
        self.m = m;
        self.v = v;
    }
}

/// Scales the gradient `grad` so its L2 norm is at most `max_norm` (0: never); returns it and
/// its norm before. The norm is one read from the device.
pub fn clip_global_norm<B: Backend>(grad: Tensor<B, 1>, max_norm: f64) -> (Tensor<B, 1>, f64) {
    let [len] = grad.dims();
    if len == 0 {
        return (grad, 0.0);
    }
    let norm = f64::from(
        (grad.clone() * grad.clone())
            .sum()
            .into_scalar()
            .elem::<f32>(),
    )
    .sqrt();
    if max_norm > 0.0 && norm > max_norm {
        return (grad.mul_scalar(max_norm / (norm + 1e-6)), norm);
    }
    (grad, norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::Flex;
    use burn::tensor::TensorData;

    fn t(values: &[f32]) -> Tensor<Flex, 1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )
    }

    fn host(x: &Tensor<Flex, 1>) -> Vec<f32> {
        x.to_data().into_vec().expect("f32")
    }

    /// Two steps of PyTorch's `torch.optim.AdamW(lr=0.1, weight_decay=0.01)` on p = [1, -2]
    /// with gradients [0.5, 0.25] then [-1, 2], computed by hand from its documented rule.
    #[test]
    fn matches_pytorch_adamw() {
        let mut params = t(&[1.0, -2.0]);
        let mut opt = AdamW::new(AdamWSettings::default(), &params);
        opt.update(&mut params, t(&[0.5, 0.25]), 0.1);
        // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to ε); decay first.
        let p1 = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) - 0.1];
        let got = host(&params);
        for (g, w) in got.iter().zip(p1) {
            assert!((g - w as f32).abs() < 1e-6, "{got:?} vs {p1:?}");
        }
        opt.update(&mut params, t(&[-1.0, 2.0]), 0.1);
        let expect = |p: f64, g1: f64, g2: f64| {
            let m = 0.9 * (0.1 * g1) + 0.1 * g2;
            let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2;
            let mhat = m / (1.0 - 0.81);
            let vhat = v / (1.0 - 0.999f64.powi(2));
            p * (1.0 - 0.001) - 0.1 * mhat / (vhat.sqrt() + 1e-8)
        };
        let want = [expect(p1[0], 0.5, -1.0), expect(p1[1], 0.25, 2.0)];
        let got = host(&params);
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clipping_scales_the_whole_gradient() {
        let (clipped, norm) = clip_global_norm(t(&[3.0, 4.0]), 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let got = host(&clipped);
        assert!(
            (got[0] - 0.6).abs() < 1e-5 && (got[1] - 0.8).abs() < 1e-5,
            "{got:?}"
        );
        let (small, norm) = clip_global_norm(t(&[0.3]), 1.0);
        assert!((norm - 0.3).abs() < 1e-6);
        assert_eq!(host(&small), vec![0.3]);
        let (unclipped, _) = clip_global_norm(t(&[3.0, 4.0]), 0.0);
        assert_eq!(host(&unclipped), vec![3.0, 4.0], "0 turns clipping off");
    }
}
