//! The crate's error type: every fallible public function returns [`Result`], and every
//! message names the offending value so a user can fix their input without a debugger.

/// Errors of the layer API, the backends and the tools built on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Simplified margin factor outside `(0, 1]`.
    #[error("margin k = {0} is out of range: the simplified margin needs 0 < k <= 1")]
    InvalidK(f32),
    /// L-Softmax margin outside `1..=4`.
    #[error("margin m = {0} is out of range: L-Softmax supports m in 1..=4")]
    InvalidM(i64),
    /// β negative, NaN or infinite.
    #[error("beta = {0} is out of range: beta must be finite and >= 0")]
    InvalidBeta(f64),
    /// A parameter of a normalised margin (CosFace, ArcFace, combined, SphereFace) outside
    /// its range.
    #[error("{margin} parameter {name} = {value} is out of range: {range}")]
    InvalidMarginParam {
        /// `cosface`, `arcface`, `combined` or `sphereface`.
        margin: &'static str,
        /// The parameter (`s`, `m`, `m1`, `m2`, `m3`).
        name: &'static str,
        /// The value as given.
        value: f64,
        /// The admitted range, in words.
        range: &'static str,
    },
    /// A margin spec string (`plain`, `simplified:k=0.5`, `lsoftmax:m=2,beta=0.5`) that does not parse.
    #[error("margin spec {spec:?}: {reason}")]
    MarginSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A β schedule with out-of-range parameters.
    #[error("beta schedule: {0}")]
    BetaSchedule(String),
    /// Inputs whose shapes do not fit together (names the inputs and their shapes).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A label outside `0..C`.
    #[error(
        "label {label} of row {row} is out of range: there are {classes} classes (0..{classes})"
    )]
    LabelOutOfRange {
        /// Row index `i`.
        row: usize,
        /// The label `y_i` as given.
        label: i64,
        /// Number of classes `C`.
        classes: usize,
    },
    /// A label that is not an integer class index (a fraction, or a float dtype in a file).
    #[error("label {value} of row {row} is not an integer class index")]
    NonIntegerLabel {
        /// Row index `i`.
        row: usize,
        /// The label as given.
        value: f64,
    },
    /// NaN or ±Inf in an input.
    #[error("{input} holds a non-finite value {value} at index {index:?}")]
    NonFinite {
        /// Which input (`x`, `w`, `dout`, ...).
        input: String,
        /// Index of the first offending element.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
    },
    /// A backend failed (emulator detector, CUDA driver error, missing device, ...).
    #[error("{backend} backend: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What went wrong, as the backend reported it.
        message: String,
    },
    /// A backend that cannot start on this machine because what it runs on is absent: the
    /// CUDA backend without an NVIDIA driver or without a device, or a build without the
    /// `cuda` feature. The one backend error that tests skip on and the demo falls back
    /// from (unless `LSOFTMAX_REQUIRE_CUDA=1`); every other failure is [`Error::Backend`].
    #[error("{backend} backend unavailable: {message}")]
    BackendUnavailable {
        /// Backend name.
        backend: &'static str,
        /// What is missing, with the driver's code when the driver said so.
        message: String,
    },
    /// The toy model: a training setting out of range, or a run that diverged.
    #[error("training: {0}")]
    Train(String),
    /// Reading or writing a file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An external tool (nightly cargo, rust-src, ptxas) is missing or failed; the
    /// message says which command installs it.
    #[error("{tool}: {message}")]
    Toolchain {
        /// The tool.
        tool: String,
        /// What went wrong and how to fix it.
        message: String,
    },
}

impl Error {
    /// An [`Error::Backend`] of the backend named `backend`.
    pub(crate) fn backend(backend: &'static str, message: impl Into<String>) -> Self {
        Error::Backend {
            backend,
            message: message.into(),
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ptx_tools::Error> for Error {
    fn from(e: ptx_tools::Error) -> Self {
        match e {
            ptx_tools::Error::File { path, message } => Error::File { path, message },
            ptx_tools::Error::Toolchain { tool, message } => Error::Toolchain { tool, message },
            // `ptx_tools::Error` is non-exhaustive: a future variant keeps its message.
            other => Error::Toolchain {
                tool: "ptx tools".into(),
                message: other.to_string(),
            },
        }
    }
}
