//! How the CUDA backend reports errors: every driver error carries the driver's numeric
//! code with its `cuGetErrorName`/`cuGetErrorString` text ([`driver::describe`]); cust's
//! `Display` for its error type is never used (it can panic).

use cust::error::CudaError;

use super::driver;
use crate::error::Error;

/// The backend's name in its errors.
pub(super) const NAME: &str = "cuda";

/// `message` as an [`Error::Backend`] of this backend.
pub(super) fn backend_error(message: String) -> Error {
    Error::backend(NAME, message)
}

/// The driver's description of a cust error's code. cust reports codes outside its table
/// as 999, so a 999 may stand for a newer code.
pub(super) fn describe(e: CudaError) -> String {
    driver::describe(e as u32 as driver::Code)
}

/// Maps a cust error to [`Error::Backend`], saying which call failed, with the driver's
/// code and name (never cust's `Display`, which can panic).
pub(super) fn cuda_err(what: &'static str) -> impl FnOnce(CudaError) -> Error {
    move |e| {
        let note = if e as u32 == 999 {
            " (as reported through cust, which maps codes it does not know to 999)"
        } else {
            ""
        };
        backend_error(format!("{what}: {}{note}", describe(e)))
    }
}

/// A driver error of a running backend as [`Error::Backend`].
pub(super) fn driver_err(e: driver::DriverError) -> Error {
    backend_error(e.to_string())
}

/// The backend cannot start: no driver or no device ([`Error::BackendUnavailable`]).
pub(super) fn unavailable(message: String) -> Error {
    Error::BackendUnavailable {
        backend: NAME,
        message,
    }
}

/// Classifies a startup error of `cuInit`/`cuDeviceGetCount`: no device and no driver
/// (the toolkit's stub library answering) make the backend unavailable; anything else
/// (a driver/kernel-module mismatch, an unknown error, ...) is a failure.
pub(super) fn startup_err(e: driver::DriverError) -> Error {
    match e.code {
        driver::ERROR_NO_DEVICE => {
            let visible = match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) => format!(" (CUDA_VISIBLE_DEVICES={v:?} may hide devices)"),
                Err(_) => String::new(),
            };
            unavailable(format!("no CUDA device: {e}{visible}"))
        }
        driver::ERROR_STUB_LIBRARY => unavailable(format!(
            "no NVIDIA driver: {e} (this libcuda is the toolkit's stub, a link target only)"
        )),
        _ => driver_err(e),
    }
}
