//! Every backend against `reference::naive`, with one test body instantiated per backend
//! (CubeCL style): add a backend by adding one `backend_tests!` line.

mod common;

use common::{Case, case_strategy, check_backend};
use lsoftmax::Backend;
use proptest::prelude::*;

/// Instantiates the shared property tests for one backend.
/// `$make` builds the backend, or returns `Err(reason)` when it cannot run here.
macro_rules! backend_tests {
    ($name:ident, $make:expr, $cases:expr, $max_dim:expr) => {
        mod $name {
            use super::*;

            fn backend() -> Option<Box<dyn Backend>> {
                let made: Result<Box<dyn Backend>, String> = $make;
                match made {
                    Ok(b) => Some(b),
                    Err(reason) => {
                        eprintln!("skipped: {} backend unavailable ({reason})", stringify!($name));
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

            #[test]
            fn one_by_one_by_one() {
                if let Some(b) = backend() {
                    for margin in [lsoftmax::Margin::plain(), lsoftmax::Margin::simplified(0.5).unwrap(), lsoftmax::Margin::lsoftmax(4, 0.0).unwrap()] {
                        for mode in [lsoftmax::Mode::Train, lsoftmax::Mode::Infer] {
                            let case = Case {
                                x: ndarray::arr2(&[[0.75f32]]),
                                w: ndarray::arr2(&[[-1.5f32]]),
                                labels: vec![0],
                                dout: ndarray::arr2(&[[0.5f32]]),
                                margin,
                                mode,
                            };
                            check_backend(b.as_ref(), &case).unwrap();
                        }
                    }
                }
            }
        }
    };
}

backend_tests!(cpu, Ok(Box::new(lsoftmax::backend::CpuBackend)), 256, 72);
backend_tests!(emulated, Ok(Box::new(lsoftmax::backend::EmulatedBackend)), 128, 72);
