//! The few CUDA driver API calls the backend makes itself, declared with plain integer
//! result types, and the formatting of their error codes.
//!
//! Why not `cust::sys` (cust_raw) for these: its `CUresult` is a Rust `enum`, so a code
//! that is newer than its table (drivers add codes) cannot even be received without
//! undefined behaviour, nor passed to `cuGetErrorName`. And cust's `Display` for its
//! `CudaError` returns `fmt::Error` when `cuGetErrorString` fails, which makes `format!`
//! panic; cust also maps every code outside its table (222 unsupported PTX version, 221
//! JIT compiler not found, 803 driver mismatch, 34 stub library) to one `UnknownError`.
//! Here every error keeps the driver's number, and its name and description are looked up
//! with `cuGetErrorName`/`cuGetErrorString`, falling back to the number alone.
//!
//! The symbols resolve against the same `libcuda` that cust_raw links.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};

/// A driver API result code (`CUresult`): 0 is success.
pub type Code = c_int;
/// `CUmodule`, `CUfunction`, `CUstream`: opaque driver handles.
pub type Handle = *mut c_void;

/// `CUDA_SUCCESS`.
pub const SUCCESS: Code = 0;
/// `CUDA_ERROR_STUB_LIBRARY`: the process loaded the toolkit's stub `libcuda.so` (a link
/// target only), i.e. there is no driver.
pub const ERROR_STUB_LIBRARY: Code = 34;
/// `CUDA_ERROR_NO_DEVICE`: a driver, but no CUDA device visible to this process.
pub const ERROR_NO_DEVICE: Code = 100;

/// `CUjit_option` values (cuda.h) used by [`load_module`].
const CU_JIT_INFO_LOG_BUFFER: c_int = 3;
const CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES: c_int = 4;
const CU_JIT_ERROR_LOG_BUFFER: c_int = 5;
const CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: c_int = 6;
const CU_JIT_LOG_VERBOSE: c_int = 12;
const CU_JIT_GENERATE_LINE_INFO: c_int = 13;
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
pub const FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: c_int = 8;

#[link(name = "cuda")]
unsafe extern "C" {
    fn cuInit(flags: c_uint) -> Code;
    fn cuDriverGetVersion(version: *mut c_int) -> Code;
    fn cuDeviceGetCount(count: *mut c_int) -> Code;
    fn cuGetErrorName(error: Code, name: *mut *const c_char) -> Code;
    fn cuGetErrorString(error: Code, text: *mut *const c_char) -> Code;
    fn cuCtxSynchronize() -> Code;
    fn cuModuleLoadDataEx(
        module: *mut Handle,
        image: *const c_void,
        num_options: c_uint,
        options: *mut c_int,
        option_values: *mut *mut c_void,
    ) -> Code;
    fn cuModuleUnload(module: Handle) -> Code;
    fn cuModuleGetFunction(function: *mut Handle, module: Handle, name: *const c_char) -> Code;
    fn cuFuncSetAttribute(function: Handle, attribute: c_int, value: c_int) -> Code;
    #[allow(clippy::too_many_arguments)]
    fn cuLaunchKernel(
        f: Handle,
        grid_x: c_uint,
        grid_y: c_uint,
        grid_z: c_uint,
        block_x: c_uint,
        block_y: c_uint,
        block_z: c_uint,
        shared_bytes: c_uint,
        stream: Handle,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) -> Code;
    fn cuStreamSynchronize(stream: Handle) -> Code;
}

/// A failed driver call: which call (and what it was for) and the driver's code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverError {
    /// What was being done, e.g. `cuInit`.
    pub what: String,
    /// The driver's `CUresult`.
    pub code: Code,
    /// What else the driver said (the JIT's error log), or empty.
    pub log: String,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, describe(self.code))?;
        if !self.log.is_empty() {
            write!(f, "; {}", self.log)?;
        }
        Ok(())
    }
}

/// `Ok` for [`SUCCESS`], else the error of `what`.
pub fn check(what: impl Into<String>, code: Code) -> Result<(), DriverError> {
    if code == SUCCESS {
        Ok(())
    } else {
        Err(DriverError {
            what: what.into(),
            code,
            log: String::new(),
        })
    }
}

/// `CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected`: the driver's name and
/// description of `code` with the number always present; when the driver cannot name the
/// code (`cuGetErrorName` fails, e.g. in a stub library) just `CUDA error 100`.
pub fn describe(code: Code) -> String {
    let name = lookup(code, cuGetErrorName);
    let text = lookup(code, cuGetErrorString);
    match (name, text) {
        (Some(name), Some(text)) => format!("{name} ({code}): {text}"),
        (Some(name), None) => format!("{name} ({code})"),
        (None, Some(text)) => format!("CUDA error {code}: {text}"),
        (None, None) => format!("CUDA error {code} (the driver has no name for it)"),
    }
}

/// The string `getter` returns for `code`, if the call succeeds with a non-null, UTF-8
/// (lossily converted) string.
fn lookup(
    code: Code,
    getter: unsafe extern "C" fn(Code, *mut *const c_char) -> Code,
) -> Option<String> {
    let mut ptr: *const c_char = std::ptr::null();
    // SAFETY: both getters write one pointer to a static NUL-terminated string owned by
    // the driver (or leave it untouched on failure); `ptr` is a valid place for it.
    let res = unsafe { getter(code, &mut ptr) };
    if res != SUCCESS || ptr.is_null() {
        return None;
    }
    // SAFETY: on success the pointer is a static NUL-terminated string (see above).
    let s = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned();
    (!s.is_empty()).then_some(s)
}

/// `cuInit(0)`.
pub fn init() -> Result<(), DriverError> {
    // SAFETY: no pointers; may be called any number of times.
    check("cuInit", unsafe { cuInit(0) })
}

/// The driver's CUDA version as `(major, minor)`, e.g. `(12, 4)`.
pub fn driver_version() -> Result<(i32, i32), DriverError> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a valid place for one int.
    check("cuDriverGetVersion", unsafe { cuDriverGetVersion(&mut v) })?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// Number of CUDA devices visible to the process.
pub fn device_count() -> Result<i32, DriverError> {
    let mut n: c_int = 0;
    // SAFETY: `n` is a valid place for one int.
    check("cuDeviceGetCount", unsafe { cuDeviceGetCount(&mut n) })?;
    Ok(n)
}

/// `cuCtxSynchronize` on the current context: an error here after a failed call means
/// the context itself is unusable (a sticky fault).
pub fn context_synchronize() -> Result<(), DriverError> {
    // SAFETY: no pointers; the driver checks that a context is current.
    check("cuCtxSynchronize", unsafe { cuCtxSynchronize() })
}

/// `cuStreamSynchronize`.
pub fn stream_synchronize(stream: Handle, what: &str) -> Result<(), DriverError> {
    // SAFETY: `stream` is a live stream of the current context (callers hold it).
    check(what, unsafe { cuStreamSynchronize(stream) })
}

/// A module loaded into the current context, unloaded on drop (with that context current).
#[derive(Debug)]
pub struct LoadedModule {
    raw: Handle,
    /// The JIT's informational log (register counts per entry with `CU_JIT_LOG_VERBOSE`).
    pub info_log: String,
}

/// Size of each JIT log buffer; the driver truncates longer logs.
const LOG_BYTES: usize = 16 * 1024;

/// Loads NUL-terminated PTX with line info, capturing the JIT's error and info logs. On
/// failure the error's `log` carries the error log (or says it was empty).
pub fn load_module(ptx: &CStr) -> Result<LoadedModule, DriverError> {
    let mut info = vec![0u8; LOG_BYTES];
    let mut error = vec![0u8; LOG_BYTES];
    let mut options = [
        CU_JIT_INFO_LOG_BUFFER,
        CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
        CU_JIT_ERROR_LOG_BUFFER,
        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        CU_JIT_LOG_VERBOSE,
        CU_JIT_GENERATE_LINE_INFO,
    ];
    // cuModuleLoadDataEx takes scalar option values by value, cast to a pointer, and
    // writes the used log sizes back into the size slots.
    let mut values: [*mut c_void; 6] = [
        info.as_mut_ptr().cast(),
        std::ptr::without_provenance_mut(LOG_BYTES),
        error.as_mut_ptr().cast(),
        std::ptr::without_provenance_mut(LOG_BYTES),
        std::ptr::without_provenance_mut(1),
        std::ptr::without_provenance_mut(1),
    ];
    let mut raw: Handle = std::ptr::null_mut();
    // SAFETY: `ptx` is NUL-terminated; `options` and `values` have the same length, the log
    // buffers are LOG_BYTES long as their size options say and outlive the call; `raw`
    // is a valid place for the module handle.
    let code = unsafe {
        cuModuleLoadDataEx(
            &mut raw,
            ptx.as_ptr().cast(),
            options.len() as c_uint,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    let info_log = log_text(&info, values[1].addr());
    if code != SUCCESS {
        let error_log = log_text(&error, values[3].addr());
        let log = if error_log.is_empty() {
            "the JIT error log is empty".to_string()
        } else {
            format!("JIT error log: {}", one_line(&error_log))
        };
        return Err(DriverError {
            what: "cuModuleLoadDataEx".into(),
            code,
            log,
        });
    }
    Ok(LoadedModule { raw, info_log })
}

/// The text the driver wrote into a log buffer: up to `used` bytes (the size it reported,
/// which counts the NUL) and never past the first NUL.
fn log_text(buf: &[u8], used: usize) -> String {
    let upto = used.min(buf.len());
    let bytes = &buf[..upto];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// A multi-line log joined with ` | `, so the error stays one line.
fn one_line(log: &str) -> String {
    log.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

impl LoadedModule {
    /// The entry point `name` (NUL-terminated).
    pub fn function(&self, name: &CStr) -> Result<Handle, DriverError> {
        let mut f: Handle = std::ptr::null_mut();
        // SAFETY: `self.raw` is a loaded module, `name` is NUL-terminated, `f` is a valid
        // place for the handle.
        let code = unsafe { cuModuleGetFunction(&mut f, self.raw, name.as_ptr()) };
        check(
            format!("cuModuleGetFunction({})", name.to_string_lossy()),
            code,
        )?;
        Ok(f)
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        // SAFETY: `raw` was loaded by `load_module` and is unloaded once, here. The owner
        // makes the module's context current first. An error cannot be acted on here.
        let _ = unsafe { cuModuleUnload(self.raw) };
    }
}

// SAFETY: a module handle may be used from any thread on which its context is current;
// the backend serialises every use behind its mutex and sets the context first.
unsafe impl Send for LoadedModule {}

/// `cuFuncSetAttribute(f, attribute, value)`.
pub fn set_function_attribute(
    f: Handle,
    attribute: c_int,
    value: c_int,
    what: &str,
) -> Result<(), DriverError> {
    // SAFETY: `f` is a function of a module loaded in the current context; the attribute
    // is a plain integer the driver validates.
    check(what, unsafe { cuFuncSetAttribute(f, attribute, value) })
}

/// Launches `f` with the kernel parameters `params` (one pointer per `.param`, pointing at
/// its value) on `stream`.
///
/// # Safety
/// `f` is a function of a module loaded in the current context, `stream` a stream of that
/// context, and `params` matches the kernel's parameter list in number, order and sizes;
/// every device address inside the parameters stays valid until the stream is
/// synchronised.
pub unsafe fn launch(
    f: Handle,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    stream: Handle,
    params: &mut [*mut c_void],
) -> Code {
    // SAFETY: the caller's contract above; `params` outlives the call (the driver copies
    // the values while launching).
    unsafe {
        cuLaunchKernel(
            f,
            grid.0,
            grid.1,
            grid.2,
            block.0,
            block.1,
            block.2,
            shared_bytes,
            stream,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
}
