//! Reading the layer's inputs from `.npy` files and writing its outputs, with errors that
//! name the file.
//!
//! Floats: `float32` or `float64` (converted to f32, with a note for the caller to print),
//! either byte order, C or Fortran order. Labels: any integer dtype (`int8`..`int64`,
//! `uint8`..`uint64`), either byte order; negative values and float or complex dtypes are
//! rejected. Parsing is [`ndarray_npy`]'s; this module only picks the element type from the
//! header's `descr` and turns its errors into messages that say what is wrong with the file.

use std::io::Cursor;
use std::path::Path;

use ndarray::{Array1, Array2, ArrayD, Dimension, Ix1, Ix2};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, write_npy};

use crate::error::{Error, Result};

/// A float matrix read from a file, as f32, with a note if it was converted.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// The values.
    pub data: Array2<f32>,
    /// `Some("X.npy: float64 converted to float32")` when the file held float64.
    pub note: Option<String>,
}

fn file_err(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The element type of an `.npy` file: kind (`f`, `i`, `u`, `c`, `b`, ...) and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dtype {
    descr: String,
    kind: char,
    size: usize,
}

impl Dtype {
    fn name(&self) -> String {
        match self.kind {
            'f' => format!("float{}", self.size * 8),
            'i' => format!("int{}", self.size * 8),
            'u' => format!("uint{}", self.size * 8),
            'c' => format!("complex{}", self.size * 8),
            'b' => "bool".into(),
            _ => format!("dtype {:?}", self.descr),
        }
    }
}

/// Reads the file and its header: errors for a missing file, a file that is not `.npy`, a
/// truncated header, and structured or unknown dtypes.
fn open(path: &Path) -> Result<(Vec<u8>, Header, Dtype)> {
    let bytes = std::fs::read(path).map_err(|e| {
        file_err(
            path,
            if e.kind() == std::io::ErrorKind::NotFound {
                "no such file".to_string()
            } else {
                format!("cannot read: {e}")
            },
        )
    })?;
    let header = Header::from_reader(&mut Cursor::new(&bytes)).map_err(|e| match e {
        ReadHeaderError::Parse(ParseHeaderError::MagicString) => {
            file_err(path, "not an .npy file (no \\x93NUMPY magic string)")
        }
        ReadHeaderError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            file_err(path, "truncated .npy file: the header is incomplete")
        }
        other => file_err(path, format!("invalid .npy header: {other}")),
    })?;
    let descr = header.type_descriptor.as_string().cloned().ok_or_else(|| {
        file_err(
            path,
            format!(
                "structured dtype {} is not supported (expected a plain numeric array)",
                header.type_descriptor
            ),
        )
    })?;
    // descr is `<f4`, `>i8`, `|u1`: byte order, kind, size.
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = body.chars();
    let kind = chars.next().unwrap_or('?');
    let size = chars.as_str().parse::<usize>().unwrap_or(0);
    Ok((bytes, header, Dtype { descr, kind, size }))
}

/// Reads the data of an `.npy` file as element type `T` with `ndarray_npy`.
fn read_as<T: ReadableElement>(path: &Path, bytes: &[u8], dtype: &Dtype) -> Result<ArrayD<T>> {
    ArrayD::<T>::read_npy(Cursor::new(bytes)).map_err(|e| match e {
        ReadNpyError::MissingData => file_err(
            path,
            "truncated .npy file: the data is shorter than its header's shape says",
        ),
        ReadNpyError::ExtraBytes(n) => file_err(
            path,
            format!("{n} unexpected bytes after the data its header describes"),
        ),
        ReadNpyError::WrongDescriptor(d) => file_err(
            path,
            format!("unsupported byte order or dtype {d} ({})", dtype.name()),
        ),
        other => file_err(path, format!("invalid .npy file: {other}")),
    })
}

fn check_rank(path: &Path, what: &str, shape: &[usize], rank: usize) -> Result<()> {
    if shape.len() == rank {
        Ok(())
    } else {
        Err(file_err(
            path,
            format!(
                "{what} must be a {rank}-D array, found {}-D with shape {shape:?}",
                shape.len()
            ),
        ))
    }
}

/// Reads a float32 or float64 matrix (`rank` 2) named `what` (for messages, e.g. `X`).
///
/// Errors name the file: missing, not `.npy`, truncated, complex or integer dtype, wrong
/// rank, a NaN/±Inf (with its index), or a float64 value beyond the f32 range.
pub fn read_matrix(path: &Path, what: &str) -> Result<Matrix> {
    let (bytes, header, dtype) = open(path)?;
    check_rank(path, what, &header.shape, 2)?;
    let (data, note) = match (dtype.kind, dtype.size) {
        ('f', 4) => (read_as::<f32>(path, &bytes, &dtype)?, None),
        ('f', 8) => {
            let wide = read_as::<f64>(path, &bytes, &dtype)?;
            if let Some((index, v)) = wide.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(non_finite(path, index.slice(), *v));
            }
            let narrow = wide.mapv(|v| v as f32);
            if let Some((index, _)) = narrow.indexed_iter().find(|(_, v)| !v.is_finite()) {
                let index = index.slice().to_vec();
                return Err(file_err(
                    path,
                    format!(
                        "value {:e} at index {index:?} is beyond the float32 range",
                        wide[index.as_slice()]
                    ),
                ));
            }
            (
                narrow,
                Some(format!(
                    "{}: float64 converted to float32 (the layer computes in f32)",
                    path.display()
                )),
            )
        }
        ('c', _) => {
            return Err(file_err(
                path,
                format!(
                    "{what} is complex-valued ({}); expected float32 or float64",
                    dtype.name()
                ),
            ));
        }
        _ => {
            return Err(file_err(
                path,
                format!(
                    "{what} has dtype {} ({}); expected float32 or float64",
                    dtype.name(),
                    dtype.descr
                ),
            ));
        }
    };
    let data = data
        .into_dimensionality::<Ix2>()
        .map_err(|e| file_err(path, format!("{what}: {e}")))?;
    if let Some(((i, j), v)) = data.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(non_finite(path, &[i, j], f64::from(*v)));
    }
    Ok(Matrix { data, note })
}

fn non_finite(path: &Path, index: &[usize], value: f64) -> Error {
    file_err(path, format!("non-finite value {value} at index {index:?}"))
}

/// Reads a 1-D array of class labels of any integer dtype, as indices.
///
/// Errors name the file and, for values, the row: negative labels, float/bool/complex
/// dtypes, wrong rank. The upper bound (`< C`) is the caller's check.
pub fn read_labels(path: &Path) -> Result<Vec<usize>> {
    let (bytes, header, dtype) = open(path)?;
    check_rank(path, "labels", &header.shape, 1)?;
    fn widen<T: ReadableElement + Copy + TryInto<i128>>(
        path: &Path,
        bytes: &[u8],
        dtype: &Dtype,
    ) -> Result<Vec<i128>> {
        let a = read_as::<T>(path, bytes, dtype)?;
        let a: Array1<T> = a
            .into_dimensionality::<Ix1>()
            .map_err(|e| file_err(path, format!("labels: {e}")))?;
        // Every integer dtype up to 64 bits fits in i128.
        Ok(a.iter()
            .map(|&v| v.try_into().unwrap_or(i128::MAX))
            .collect())
    }
    let values = match (dtype.kind, dtype.size) {
        ('i', 1) => widen::<i8>(path, &bytes, &dtype)?,
        ('i', 2) => widen::<i16>(path, &bytes, &dtype)?,
        ('i', 4) => widen::<i32>(path, &bytes, &dtype)?,
        ('i', 8) => widen::<i64>(path, &bytes, &dtype)?,
        ('u', 1) => widen::<u8>(path, &bytes, &dtype)?,
        ('u', 2) => widen::<u16>(path, &bytes, &dtype)?,
        ('u', 4) => widen::<u32>(path, &bytes, &dtype)?,
        ('u', 8) => widen::<u64>(path, &bytes, &dtype)?,
        _ => {
            return Err(file_err(
                path,
                format!(
                    "labels have dtype {} ({}); expected an integer dtype (int8..int64, uint8..uint64)",
                    dtype.name(),
                    dtype.descr
                ),
            ));
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(row, v)| {
            usize::try_from(v).map_err(|_| {
                file_err(
                    path,
                    format!("label {v} of row {row} is negative: labels are class indices >= 0"),
                )
            })
        })
        .collect()
}

/// Writes `a` as a little-endian float32 `.npy` file.
pub fn write_matrix(path: &Path, a: &Array2<f32>) -> Result<()> {
    write_npy(path, a).map_err(|e| file_err(path, format!("cannot write: {e}")))
}
