//! The error of the PTX tools: a file that cannot be read or written, or an external tool
//! (nightly cargo, rust-src, ptxas, cuobjdump) that is missing or failed.

use crate::compile::CompileError;

/// What went wrong, naming the file or the tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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

/// `Result` with the tools' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Missing { tool, message } => Error::Toolchain { tool, message },
            CompileError::Cargo { .. } => Error::Toolchain {
                tool: "cargo (nightly, nvptx64)".into(),
                message: e.to_string(),
            },
            CompileError::Io { path, message } => Error::File {
                path: path.display().to_string(),
                message,
            },
            CompileError::Invalid(message) => Error::Toolchain {
                tool: "ptx build".into(),
                message,
            },
        }
    }
}
