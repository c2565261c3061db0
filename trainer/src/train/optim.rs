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

/// The optimiser's state: first and second moments per parameter and the step count.
pub struct AdamW<B: Backend> {
    /// Settings.
    pub settings: AdamWSettings,
    /// Completed updates.
    pub step: u64,
    /// First moments, one per parameter.
    pub m: Vec<Tensor<B, 2>>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor<B, 2>>,
}

impl<B: Backend> AdamW<B> {
    /// Zero moments for parameters of these shapes.
    pub fn new(settings: AdamWSettings, params: &[Tensor<B, 2>]) -> Self {
        let zeros = || params.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        AdamW {
            settings,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn update(&mut self, params: &mut [Tensor<B, 2>], grads: &[Tensor<B, 2>], lr: f64) {
        let s = self.settings;
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - s.beta1.powi(t);
        let correction2 = 1.0 - s.beta2.powi(t);
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let m = self.m[i].clone().mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1);
            let v = self.v[i].clone().mul_scalar(s.beta2)
                + (g.clone() * g.clone()).mul_scalar(1.0 - s.beta2);
            let denom = (v.clone().div_scalar(correction2)).sqrt().add_scalar(s.eps);
            let step = m.clone().div(denom).mul_scalar(lr / correction1);
            let decayed = p.clone().mul_scalar(1.0 - lr * s.weight_decay);
            *p = decayed - step;
            self.m[i] = m;
            self.v[i] = v;
        }
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm<B: Backend>(grads: &mut [Tensor<B, 2>], max_norm: f64) -> f64 {
    if grads.is_empty() {
        return 0.0;
    }
    // One sum on the device and one read: a read per tensor would make the host wait for the
    // device hundreds of times a step.
    let squares: Vec<Tensor<B, 1>> = grads
        .iter()
        .map(|g| (g.clone() * g.clone()).sum())
        .collect();
    let norm = f64::from(Tensor::cat(squares, 0).sum().into_scalar().elem::<f32>()).sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = g.clone().mul_scalar(factor);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::Flex;
    use burn::tensor::TensorData;

    fn t(values: &[f32]) -> Tensor<Flex, 2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, values.len()]),
            &Default::default(),
        )
    }

    fn host(x: &Tensor<Flex, 2>) -> Vec<f32> {
        x.to_data().into_vec().expect("f32")
    }

    /// Two steps of PyTorch's `torch.optim.AdamW(lr=0.1, weight_decay=0.01)` on p = [1, -2]
    /// with gradients [0.5, 0.25] then [-1, 2], computed by hand from its documented rule.
    #[test]
    fn matches_pytorch_adamw() {
        let mut params = vec![t(&[1.0, -2.0])];
        let mut opt = AdamW::new(AdamWSettings::default(), &params);
        opt.update(&mut params, &[t(&[0.5, 0.25])], 0.1);
        // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to ε); decay first.
        let p1 = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) - 0.1];
        let got = host(&params[0]);
        for (g, w) in got.iter().zip(p1) {
            assert!((g - w as f32).abs() < 1e-6, "{got:?} vs {p1:?}");
        }
        opt.update(&mut params, &[t(&[-1.0, 2.0])], 0.1);
        let expect = |p: f64, g1: f64, g2: f64| {
            let m = 0.9 * (0.1 * g1) + 0.1 * g2;
            let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2;
            let mhat = m / (1.0 - 0.81);
            let vhat = v / (1.0 - 0.999f64.powi(2));
            p * (1.0 - 0.001) - 0.1 * mhat / (vhat.sqrt() + 1e-8)
        };
        let want = [expect(p1[0], 0.5, -1.0), expect(p1[1], 0.25, 2.0)];
        let got = host(&params[0]);
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clipping_scales_all_gradients_together() {
        let mut grads = vec![t(&[3.0]), t(&[4.0])];
        let norm = clip_global_norm(&mut grads, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((host(&grads[0])[0] - 0.6).abs() < 1e-5);
        assert!((host(&grads[1])[0] - 0.8).abs() < 1e-5);
        let mut small = vec![t(&[0.3])];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(host(&small[0]), vec![0.3]);
    }
}
