//! Which compute backends this build has, and whether each one works on this machine.
//!
//! The CPU backend is burn's `flex` and is always compiled in; `wgpu` and `cuda` are cargo
//! features. A probe creates the backend's default device and runs a 4×4 matmul on a thread of
//! its own, inside `catch_unwind` and with a timeout, so a missing driver or a hung GPU becomes
//! a `detail` message instead of a crash. GPU probes are cached for the life of the process
//! (creating a device initialises global driver state once).

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How long a probe may take before it is reported as hung.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Threads that run probes are named with this prefix; their panics are not printed.
const PROBE_THREAD_PREFIX: &str = "trainer-probe-";

/// A compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn's `wgpu` backend (Vulkan, Metal, DirectX 12, or a software Vulkan like lavapipe).
    Wgpu,
    /// burn's `cuda` backend.
    Cuda,
}

/// Evaluates `$body` with the type `$B` naming the burn backend of `$kind`; a backend this
/// build leaves out is an [`Error::BackendUnavailable`](crate::Error) instead.
macro_rules! on_backend {
    ($kind:expr, $B:ident => $body:expr) => {
        match $kind {
            $crate::backends::BackendKind::Cpu => {
                type $B = burn::backend::flex::Flex;
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::backends::BackendKind::Wgpu => {
                type $B = burn::backend::wgpu::Wgpu;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backends::BackendKind::Cuda => {
                type $B = burn::backend::cuda::Cuda;
                $body
            }
            #[allow(unreachable_patterns)]
            other => Err($crate::error::Error::BackendUnavailable {
                backend: other,
                detail: format!("this build does not include it (rebuild with --features {other})"),
            }),
        }
    };
}
pub(crate) use on_backend;

/// What a probe found about one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Which backend.
    pub name: BackendKind,
    /// Whether this build includes it.
    pub compiled: bool,
    /// Whether its default device ran a 4×4 matmul correctly.
    pub usable: bool,
    /// The device found, or why it is not usable, or how to compile it in.
    pub detail: String,
    /// Whether the device is a software emulation on the CPU (e.g. wgpu on Mesa's lavapipe),
    /// which is much slower than the `cpu` backend.
    #[serde(default)]
    pub software: bool,
}

impl BackendKind {
    /// Every backend, CPU first.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// The lowercase name, as in settings and the API.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backend to use by default: CUDA when usable, else wgpu on a real GPU when usable,
    /// else the CPU.
    pub fn best_available(statuses: &[BackendStatus]) -> BackendKind {
        let usable = |kind: BackendKind| {
            statuses
                .iter()
                .any(|s| s.name == kind && s.compiled && s.usable && !s.software)
        };
        if usable(BackendKind::Cuda) {
            BackendKind::Cuda
        } else if usable(BackendKind::Wgpu) {
            BackendKind::Wgpu
        } else {
            BackendKind::Cpu
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown backend {s:?} (expected cpu, wgpu or cuda)"))
    }
}

/// Probes every backend with [`DEFAULT_PROBE_TIMEOUT`].
pub fn probe_backends() -> Vec<BackendStatus> {
    probe_backends_with_timeout(DEFAULT_PROBE_TIMEOUT)
}

/// Probes every backend, giving each probe at most `timeout`.
pub fn probe_backends_with_timeout(timeout: Duration) -> Vec<BackendStatus> {
    BackendKind::ALL
        .into_iter()
        .map(|kind| probe_backend(kind, timeout))
        .collect()
}

/// Probes one backend.
pub fn probe_backend(kind: BackendKind, timeout: Duration) -> BackendStatus {
    match kind {
        BackendKind::Cpu => run_probe(kind, timeout, probe_cpu),
        BackendKind::Wgpu => probe_wgpu(timeout),
        BackendKind::Cuda => probe_cuda(timeout),
    }
}

/// What a successful probe learned: a description of the device and whether it is software.
struct Found {
    device: String,
    software: bool,
}

fn probe_cpu() -> Result<Found, String> {
    use burn::backend::flex::{Flex, FlexDevice};
    check_matmul::<Flex>(&FlexDevice)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Found {
        device: format!("burn flex on {threads} CPU threads"),
        software: false,
    })
}

#[cfg(feature = "wgpu")]
fn probe_wgpu(timeout: Duration) -> BackendStatus {
    static CACHE: std::sync::OnceLock<BackendStatus> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| run_probe(BackendKind::Wgpu, timeout, probe_wgpu_device))
        .clone()
}

#[cfg(feature = "wgpu")]
fn probe_wgpu_device() -> Result<Found, String> {
    use burn::backend::wgpu::graphics::AutoGraphicsApi;
    use burn::backend::wgpu::{RuntimeOptions, Wgpu, WgpuDevice, init_setup};
    let device = WgpuDevice::DefaultDevice;
    // Initialising the device ourselves tells which adapter it is; this fails (with "already
    // registered") when something else in the process initialised it first.
    let adapter = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let setup = init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default());
        let info = setup.adapter.get_info();
        let kind = format!("{:?}", info.device_type);
        let software = kind == "Cpu";
        let driver = if info.driver.is_empty() {
            String::new()
        } else {
            format!(", driver {} {}", info.driver, info.driver_info)
        };
        (
            format!("{} via {:?} ({kind}{driver})", info.name, info.backend),
            software,
        )
    }));
    let (device_name, software) = match adapter {
        Ok(found) => found,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            if !message.contains("already registered") {
                return Err(message);
            }
            ("default wgpu device".to_owned(), false)
        }
    };
    check_matmul::<Wgpu>(&device)?;
    Ok(Found {
        device: if software {
            format!("{device_name}: a software adapter, slower than the cpu backend")
        } else {
            device_name
        },
        software,
    })
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu(_timeout: Duration) -> BackendStatus {
    not_compiled(BackendKind::Wgpu)
}

#[cfg(feature = "cuda")]
fn probe_cuda(timeout: Duration) -> BackendStatus {
    static CACHE: std::sync::OnceLock<BackendStatus> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            run_probe(BackendKind::Cuda, timeout, || {
                use burn::backend::cuda::{Cuda, CudaDevice};
                let device = CudaDevice::default();
                check_matmul::<Cuda>(&device)?;
                Ok(Found {
                    device: format!("CUDA device {}", device.index),
                    software: false,
                })
            })
        })
        .clone()
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda(_timeout: Duration) -> BackendStatus {
    not_compiled(BackendKind::Cuda)
}

#[cfg(any(not(feature = "wgpu"), not(feature = "cuda")))]
fn not_compiled(kind: BackendKind) -> BackendStatus {
    BackendStatus {
        name: kind,
        compiled: false,
        usable: false,
        detail: format!("not compiled in (build with --features {})", kind.name()),
        software: false,
    }
}

/// Runs `probe` on its own thread, catching panics and giving up after `timeout` (the thread
/// is then left behind).
fn run_probe(
    kind: BackendKind,
    timeout: Duration,
    probe: impl FnOnce() -> Result<Found, String> + Send + 'static,
) -> BackendStatus {
    install_quiet_panic_hook();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("{PROBE_THREAD_PREFIX}{kind}"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe))
                .unwrap_or_else(|panic| {
                    Err(format!("panicked: {}", panic_message(panic.as_ref())))
                });
            // The receiver may have given up waiting; nothing to do then.
            let _ = tx.send(result);
        });
    let result = match spawned {
        Err(e) => Err(format!("cannot start the probe thread: {e}")),
        Ok(_) => match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "no answer within {} s: the device or its driver may be hung",
                timeout.as_secs_f32()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the probe thread died".to_owned()),
        },
    };
    match result {
        Ok(found) => BackendStatus {
            name: kind,
            compiled: true,
            usable: true,
            detail: found.device,
            software: found.software,
        },
        Err(why) => BackendStatus {
            name: kind,
            compiled: true,
            usable: false,
            detail: why,
            software: false,
        },
    }
}

/// Multiplies two fixed 4×4 matrices on `device` and compares with the exact product.
fn check_matmul<B: Backend>(device: &B::Device) -> Result<(), String> {
    let a: Vec<f32> = (0..16).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b: Vec<f32> = (0..16).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    let mut expected = [0f32; 16];
    for r in 0..4 {
        for c in 0..4 {
            expected[r * 4 + c] = (0..4).map(|k| a[r * 4 + k] * b[k * 4 + c]).sum();
        }
    }
    let ta = Tensor::<B, 2>::from_data(TensorData::new(a, [4, 4]), device);
    let tb = Tensor::<B, 2>::from_data(TensorData::new(b, [4, 4]), device);
    let got: Vec<f32> = ta
        .matmul(tb)
        .try_into_data()
        .map_err(|e| format!("reading the result failed: {e:?}"))?
        .to_vec()
        .map_err(|e| format!("reading the result failed: {e:?}"))?;
    let max_error = got
        .iter()
        .zip(&expected)
        .map(|(g, e)| (g - e).abs())
        .fold(0f32, f32::max);
    if got.len() != 16 || max_error > 1e-3 {
        return Err(format!(
            "a 4×4 matmul gave a wrong result (max error {max_error}, {} values)",
            got.len()
        ));
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Keeps panics on probe threads off stderr (they are reported in `detail`); every other panic
/// still goes to the previous hook.
fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_probe_thread = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(PROBE_THREAD_PREFIX));
            if !on_probe_thread {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: BackendKind, usable: bool, software: bool) -> BackendStatus {
        BackendStatus {
            name,
            compiled: true,
            usable,
            detail: String::new(),
            software,
        }
    }

    #[test]
    fn best_available_prefers_real_gpus() {
        use BackendKind::*;
        assert_eq!(BackendKind::best_available(&[]), Cpu);
        let cpu = status(Cpu, true, false);
        assert_eq!(
            BackendKind::best_available(&[cpu.clone(), status(Wgpu, true, true)]),
            Cpu
        );
        assert_eq!(
            BackendKind::best_available(&[cpu.clone(), status(Wgpu, true, false)]),
            Wgpu
        );
        assert_eq!(
            BackendKind::best_available(&[
                cpu.clone(),
                status(Wgpu, true, false),
                status(Cuda, true, false)
            ]),
            Cuda
        );
        assert_eq!(
            BackendKind::best_available(&[cpu, status(Cuda, false, false)]),
            Cpu
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("CUDA".parse::<BackendKind>(), Ok(BackendKind::Cuda));
        assert!("tpu".parse::<BackendKind>().is_err());
        assert_eq!(
            serde_json::to_string(&BackendKind::Wgpu).expect("serializes"),
            "\"wgpu\""
        );
    }

    #[test]
    fn timeouts_and_panics_become_details() {
        let slow = run_probe(BackendKind::Cpu, Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
            Err("unreachable".into())
        });
        assert!(
            !slow.usable && slow.detail.contains("no answer"),
            "{slow:?}"
        );
        let panicking = run_probe(BackendKind::Cpu, Duration::from_secs(5), || {
            panic!("no driver here")
        });
        assert!(
            !panicking.usable && panicking.detail.contains("no driver here"),
            "{panicking:?}"
        );
    }
}
