//! Every backend against `reference::naive`, with one test body instantiated per backend
//! (CubeCL style): add a backend by adding one `backend_tests!` line.

mod common;

use common::{Case, case_strategy, check_backend};
use lsoftmax::Backend;
use lsoftmax::backend::{EmulatedVariant, KernelChoice, KernelVariant, SplitK};
use proptest::prelude::*;

/// Instantiates the shared property tests for one backend.
/// `$make` builds the backend, or returns `Err(reason)` when it cannot run here; the tests
/// then print `skipped: $skip (reason)` once and pass without checking anything.
macro_rules! backend_tests {
    ($name:ident, $make:expr, $cases:expr, $max_dim:expr, $skip:expr) => {
        mod $name {
            use super::*;

            fn backend() -> Option<Box<dyn Backend>> {
                static NOTED: std::sync::Once = std::sync::Once::new();
                let made: Result<Box<dyn Backend>, String> = $make;
                match made {
                    Ok(b) => Some(b),
                    Err(reason) => {
                        NOTED.call_once(|| eprintln!("skipped: {} ({reason})", $skip));
                        None
                    }
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]
                #[test]
                fn agrees_with_naive(case in case_strategy($max_dim)) {
                    if let Some(b) = backend() {
                        if let Err(msg) = check_backend(b.as_ref(), &case) {
                            return Err(TestCaseError::fail(format!("{msg}\n  (N, D, C) = ({}, {}, {}), margin {}, {:?}", case.x.nrows(), case.x.ncols(), case.w.nrows(), case.margin, case.mode)));
                        }
                    }
                }
            }

            /// The simplified margin at z = 0 exactly (an all-zero x row, rows whose
            /// target weight row is zero) must take the documented branch `p = 1`,
            /// `g = z`: there the bound gives no kink slack, so `p = k` fails.
            #[test]
            fn simplified_margin_at_z_zero() {
                if let Some(b) = backend() {
                    let case = Case {
                        x: ndarray::arr2(&[[0.0f32, 0.0, 0.0], [0.5, -1.0, 0.25], [0.75, 0.5, -0.5], [-0.25, 1.0, 0.5]]),
                        w: ndarray::arr2(&[[1.0f32, -0.5, 0.25], [-0.75, 0.5, 1.0], [0.0, 0.0, 0.0]]),
                        labels: vec![1, 2, 0, 2],
                        dout: ndarray::arr2(&[[0.5f32, -0.75, 0.25], [0.25, 0.5, -1.0], [1.0, -0.5, 0.75], [-0.5, 0.25, 0.5]]),
                        margin: lsoftmax::Margin::simplified(0.5).unwrap(),
                        mode: lsoftmax::Mode::Train,
                        layouts: [common::Layout::RowMajor; 3],
                    };
                    check_backend(b.as_ref(), &case).unwrap();
                }
            }

            #[test]
            fn one_by_one_by_one() {
                if let Some(b) = backend() {
                    for margin in [lsoftmax::Margin::plain(), lsoftmax::Margin::simplified(0.5).unwrap(), lsoftmax::Margin::lsoftmax(4, 0.0).unwrap(), lsoftmax::Margin::sphereface(4, 0.0).unwrap(), lsoftmax::Margin::cosface(8.0, 0.35).unwrap(), lsoftmax::Margin::arcface(8.0, 0.5).unwrap(), lsoftmax::Margin::combined(8.0, 1.2, 0.3, 0.1).unwrap()] {
                        for mode in [lsoftmax::Mode::Train, lsoftmax::Mode::Infer] {
                            let case = Case {
                                x: ndarray::arr2(&[[0.75f32]]),
                                w: ndarray::arr2(&[[-1.5f32]]),
                                labels: vec![0],
                                dout: ndarray::arr2(&[[0.5f32]]),
                                margin,
                                mode,
                                layouts: [common::Layout::RowMajor; 3],
                            };
                            check_backend(b.as_ref(), &case).unwrap();
                        }
                    }
                }
            }
        }
    };
    ($name:ident, $make:expr, $cases:expr, $max_dim:expr) => {
        backend_tests!($name, $make, $cases, $max_dim, concat!(stringify!($name), " backend unavailable"));
    };
}

backend_tests!(cpu, Ok(Box::new(lsoftmax::backend::CpuBackend)), 256, 72);
backend_tests!(
    emulated,
    Ok(Box::new(lsoftmax::backend::EmulatedBackend)),
    128,
    72
);

/// The emulated backend running one kernel variant (or split-K), for the per-variant
/// instantiations below.
fn emulated(variant: KernelVariant, split_k: SplitK) -> Result<Box<dyn Backend>, String> {
    Ok(Box::new(EmulatedVariant {
        choice: KernelChoice { variant, split_k },
    }))
}

// Every rung of the kernel ladder (the default, `ldg`, runs above with 128 cases); a
// modest case count each keeps `cargo test` fast on two cores.
backend_tests!(
    emulated_base,
    emulated(KernelVariant::Base, SplitK::Off),
    24,
    72
);
backend_tests!(
    emulated_unrolled,
    emulated(KernelVariant::Unrolled, SplitK::Off),
    24,
    72
);
backend_tests!(
    emulated_micro8,
    emulated(KernelVariant::Micro8, SplitK::Off),
    24,
    72
);
backend_tests!(
    emulated_dbuf,
    emulated(KernelVariant::Dbuf, SplitK::Off),
    24,
    72
);
// Split-K input gradient, forced (these shapes are far below the automatic threshold):
// 3 chunks of C, or fewer when C is small.
backend_tests!(
    emulated_split_k,
    emulated(KernelVariant::Ldg, SplitK::Force(3)),
    32,
    72
);

// The exact PTX module the CUDA backend embeds, run by the PTX interpreter with the CUDA
// backend's own parameter packing (backend/abi.rs). Building the PTX needs the nightly
// toolchain with rust-src (`scripts/setup-ptx-tools`); without it the tests say why they
// skipped. Shapes up to 72: two 64-wide tiles with a ragged edge.
backend_tests!(
    ptx,
    ptx_shared::shared(KernelChoice::default()),
    64,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);
// Every other rung of the kernel ladder and split-K, on the PTX interpreter.
backend_tests!(
    ptx_base,
    ptx_shared::shared(KernelChoice {
        variant: KernelVariant::Base,
        split_k: SplitK::Off
    }),
    16,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);
backend_tests!(
    ptx_unrolled,
    ptx_shared::shared(KernelChoice {
        variant: KernelVariant::Unrolled,
        split_k: SplitK::Off
    }),
    16,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);
backend_tests!(
    ptx_micro8,
    ptx_shared::shared(KernelChoice {
        variant: KernelVariant::Micro8,
        split_k: SplitK::Off
    }),
    16,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);
backend_tests!(
    ptx_dbuf,
    ptx_shared::shared(KernelChoice {
        variant: KernelVariant::Dbuf,
        split_k: SplitK::Off
    }),
    16,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);
backend_tests!(
    ptx_split_k,
    ptx_shared::shared(KernelChoice {
        variant: KernelVariant::Ldg,
        split_k: SplitK::Force(3)
    }),
    16,
    72,
    "ptx backend unavailable (needs the nightly toolchain: scripts/setup-ptx-tools)"
);

/// One PTX build and parse for the whole test binary.
mod ptx_shared {
    use std::sync::{Arc, OnceLock};

    use lsoftmax::backend::{KernelChoice, PtxBackend};
    use lsoftmax::{Backend, Grads, Margin, Mode, RowCache};
    use ndarray::{Array2, ArrayView2};

    /// The shared module, launching `choice`'s kernels.
    pub fn shared(choice: KernelChoice) -> Result<Box<dyn Backend>, String> {
        static SHARED: OnceLock<Result<Arc<PtxBackend>, String>> = OnceLock::new();
        let made = SHARED.get_or_init(|| match PtxBackend::new() {
            Ok(b) => Ok(Arc::new(b)),
            // Only a missing toolchain skips; CI sets LSOFTMAX_REQUIRE_PTX=1 after
            // installing the tools, where even that fails.
            Err(e @ lsoftmax::Error::Toolchain { .. })
                if std::env::var_os("LSOFTMAX_REQUIRE_PTX").is_none() =>
            {
                Err(e.to_string())
            }
            // A PTX the interpreter cannot parse or load is a failure, never a skip.
            Err(e) => panic!("the ptx backend failed to start: {e}"),
        });
        match made {
            Ok(b) => Ok(Box::new(Shared(Arc::new(b.with_choice(choice))))),
            Err(reason) => Err(reason.clone()),
        }
    }

    struct Shared(Arc<PtxBackend>);

    impl Backend for Shared {
        fn name(&self) -> &'static str {
            self.0.name()
        }

        fn forward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            margin: Margin,
            mode: Mode,
        ) -> lsoftmax::Result<(Array2<f32>, RowCache)> {
            self.0.forward(x, w, labels, margin, mode)
        }

        fn backward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            cache: &RowCache,
            dout: ArrayView2<f32>,
        ) -> lsoftmax::Result<Grads> {
            self.0.backward(x, w, labels, cache, dout)
        }
    }
}

// Multi-tile shapes (up to 200: four 64-wide tiles with a ragged edge) on the real GPU.
// Without a driver or device (`Error::BackendUnavailable`) the constructor's error is the
// skip reason, and a skipped run verifies nothing on a GPU; with LSOFTMAX_REQUIRE_CUDA=1
// that is a failure too. Every other startup error (the PTX does not load, a driver
// mismatch, ...) fails every CUDA test with the driver's error.
#[cfg(feature = "cuda")]
backend_tests!(cuda, cuda_shared::shared(), 64, 200, "no CUDA device");

/// One CUDA backend for the whole test binary: a context and a PTX JIT per proptest case
/// would dominate the run.
#[cfg(feature = "cuda")]
mod cuda_shared {
    use std::sync::OnceLock;

    use lsoftmax::backend::{CudaBackend, REQUIRE_CUDA_ENV, cuda_required};
    use lsoftmax::{Backend, Grads, Margin, Mode, RowCache};
    use ndarray::{Array2, ArrayView2};

    /// Why the backend did not start: a skip (unavailable here) or a failure.
    enum NotStarted {
        Skip(String),
        Fail(String),
    }

    /// The shared backend, `Err(reason)` to skip; panics (fails the test) when the
    /// backend fails to start for any reason other than a missing driver or device, or
    /// when LSOFTMAX_REQUIRE_CUDA=1 and it is unavailable.
    pub fn shared() -> Result<Box<dyn Backend>, String> {
        static SHARED: OnceLock<Result<CudaBackend, NotStarted>> = OnceLock::new();
        let made = SHARED.get_or_init(|| {
            CudaBackend::new().map_err(|e| match e {
                lsoftmax::Error::BackendUnavailable { .. } if !cuda_required() => {
                    NotStarted::Skip(e.to_string())
                }
                lsoftmax::Error::BackendUnavailable { .. } => NotStarted::Fail(format!(
                    "{e} ({REQUIRE_CUDA_ENV}=1: an unavailable CUDA backend is a failure)"
                )),
                _ => NotStarted::Fail(e.to_string()),
            })
        });
        match made {
            Ok(b) => Ok(Box::new(Shared(b))),
            Err(NotStarted::Skip(reason)) => Err(reason.clone()),
            Err(NotStarted::Fail(error)) => panic!("the CUDA backend failed to start: {error}"),
        }
    }

    struct Shared(&'static CudaBackend);

    impl Backend for Shared {
        fn name(&self) -> &'static str {
            self.0.name()
        }

        fn forward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            margin: Margin,
            mode: Mode,
        ) -> lsoftmax::Result<(Array2<f32>, RowCache)> {
            self.0.forward(x, w, labels, margin, mode)
        }

        fn backward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            cache: &RowCache,
            dout: ArrayView2<f32>,
        ) -> lsoftmax::Result<Grads> {
            self.0.backward(x, w, labels, cache, dout)
        }
    }
}
