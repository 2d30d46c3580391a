//! The `ptx` backend: the kernels' PTX module — the one the CUDA backend embeds, built by
//! the same code (`ptx-tools`'s `compile.rs`, line info, [`ptx_tools::compile::EMBEDDED_ARCH`]) —
//! executed by the CPU interpreter [`ptxsim`], with parameter bytes packed by
//! [`super::abi`] exactly as for a CUDA launch.
//!
//! What it proves beyond the emulated backend: rustc's nvptx code generation, the
//! facade's GPU half (`device/nvptx.rs`) and the launch ABI are right for the inputs
//! tested. What it cannot prove: ptxas's and the driver's compilation to SASS, the
//! hardware's behaviour (warp scheduling, memory ordering), anything about time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::abi::{self, Arg, KernelArgs, View};
use super::device::{Device, Element};
use super::launch::{KernelChoice, LaunchPlan};
use super::pipeline::DeviceBackend;
use crate::error::{Error, Result};
use ptxsim::{Geometry, KernelStats, SimOptions, Simulator, parse_module};

const NAME: &str = "ptx";

fn backend_error(message: String) -> Error {
    Error::backend(NAME, message)
}

/// The margin kernels' PTX run by the interpreter.
#[derive(Debug)]
pub struct PtxBackend {
    base: Simulator,
    origin: String,
    options: SimOptions,
    /// Which kernel variant and split-K policy to launch.
    choice: KernelChoice,
    instructions: AtomicU64,
    /// Statistics of every launch so far, when `options.stats` is on.
    stats: Mutex<Vec<LaunchStats>>,
}

/// Warp-level statistics of one launch (with [`SimOptions::stats`]).
#[derive(Debug, Clone)]
pub struct LaunchStats {
    /// Entry name.
    pub kernel: String,
    /// Thread-level instructions executed.
    pub instructions: u64,
    /// The counters.
    pub stats: KernelStats,
}

impl PtxBackend {
    /// The backend on the module the CUDA backend embeds, built now with the nightly
    /// toolchain (cached by cargo under the target directory, and per process).
    /// Errors when the nightly toolchain or its rust-src is missing.
    pub fn new() -> Result<Self> {
        // Ok(text, path), or Err(missing tool?, message).
        type Built = std::result::Result<(String, String), (Option<String>, String)>;
        static BUILT: OnceLock<Built> = OnceLock::new();
        let built = BUILT.get_or_init(|| {
            let arch = ptx_tools::compile::embedded_arch();
            match ptx_tools::build(&arch, true) {
                Ok(out) => Ok((out.text, out.path.display().to_string())),
                Err(ptx_tools::Error::Toolchain { tool, message }) => Err((Some(tool), message)),
                Err(e) => Err((None, e.to_string())),
            }
        });
        match built {
            Ok((text, path)) => Self::from_ptx(text, path),
            // A missing toolchain stays `Error::Toolchain`: tests skip on it and only on it.
            Err((Some(tool), message)) => Err(Error::Toolchain {
                tool: tool.clone(),
                message: message.clone(),
            }),
            Err((None, e)) => Err(backend_error(format!("building the kernels' PTX: {e}"))),
        }
    }

    /// The backend on a PTX module's text (`origin` names it in messages, e.g. its file).
    pub fn from_ptx(text: &str, origin: &str) -> Result<Self> {
        let module = parse_module(text).map_err(|e| backend_error(format!("{origin}: {e}")))?;
        let base = Simulator::new(module).map_err(|e| backend_error(format!("{origin}: {e}")))?;
        Ok(PtxBackend {
            base,
            origin: origin.to_string(),
            options: SimOptions::default(),
            choice: KernelChoice::default(),
            instructions: AtomicU64::new(0),
            stats: Mutex::new(Vec::new()),
        })
    }

    /// The backend on a PTX file (`--ptx FILE`: a hand-edited module).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_ptx(&text, &path.display().to_string())
    }

    /// The parsed module.
    pub fn module(&self) -> &ptxsim::Module {
        self.base.module()
    }

    /// Where the module came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Launches `choice`'s kernels (variant, split-K policy).
    pub fn with_kernels(mut self, choice: KernelChoice) -> Self {
        self.choice = choice;
        self
    }

    /// A backend on the same parsed module launching `choice`'s kernels (fresh counters).
    pub fn with_choice(&self, choice: KernelChoice) -> Self {
        PtxBackend {
            base: self.base.fresh(),
            origin: self.origin.clone(),
            options: self.options,
            choice,
            instructions: AtomicU64::new(0),
            stats: Mutex::new(Vec::new()),
        }
    }

    /// Interpreter options (step limit, statistics).
    pub fn with_options(mut self, options: SimOptions) -> Self {
        self.options = options;
        self
    }

    /// Thread-level PTX instructions executed by this backend so far.
    pub fn instructions_executed(&self) -> u64 {
        self.instructions.load(Ordering::Relaxed)
    }

    /// Takes the statistics recorded so far (launch order).
    pub fn take_stats(&self) -> Vec<LaunchStats> {
        self.stats
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// A simulator with fresh device memory.
    pub fn simulator(&self) -> Simulator {
        self.base.fresh()
    }

    /// Packs `args` against the `.entry` of `plan.kernel` and runs it on `sim`.
    pub fn launch(&self, sim: &mut Simulator, plan: &LaunchPlan, args: &[Arg]) -> Result<()> {
        let entry = sim.module().kernel(plan.kernel).ok_or_else(|| {
            backend_error(format!(
                "{}: kernel {} not in the PTX",
                self.origin, plan.kernel
            ))
        })?;
        let packed = abi::pack(plan.kernel, args, &entry.params)?;
        let geometry = Geometry {
            grid: plan.grid,
            block: plan.block,
            shared_bytes: plan.shared_bytes,
        };
        let report = sim
            .launch(plan.kernel, geometry, &packed.bytes, &self.options)
            .map_err(|e| backend_error(e.to_string()))?;
        self.instructions
            .fetch_add(report.instructions, Ordering::Relaxed);
        if let (Some(stats), Ok(mut all)) = (report.stats, self.stats.lock()) {
            all.push(LaunchStats {
                kernel: plan.kernel.to_string(),
                instructions: report.instructions,
                stats,
            });
        }
        Ok(())
    }
}

/// The interpreter as a [`Device`]: buffers live in a fresh simulator's memory, views are
/// its addresses, and a launch packs the arguments against the module's `.entry` and
/// interprets it ([`PtxBackend::launch`]).
pub(crate) struct Interpreter<'b> {
    backend: &'b PtxBackend,
    sim: Simulator,
}

impl Device for Interpreter<'_> {
    type Buffer<T: Element> = View;

    fn name(&self) -> &'static str {
        NAME
    }

    fn upload<T: Element>(&mut self, name: &'static str, data: &[T]) -> Result<View> {
        let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
        for &v in data {
            v.push_le(&mut bytes);
        }
        Ok(View {
            addr: self.sim.memory.alloc(name, bytes),
            len: data.len() as u64,
        })
    }

    /// Filled with 0xFF bytes (NaN as floats), so that an element the kernel fails to
    /// write shows up in the results.
    fn output<T: Element>(&mut self, name: &'static str, len: usize) -> Result<View> {
        Ok(View {
            addr: self.sim.memory.alloc(name, vec![0xff; len * T::SIZE]),
            len: len as u64,
        })
    }

    fn view<T: Element>(&self, buffer: &View) -> View {
        *buffer
    }

    /// The interpreter checks every access against the allocations: nothing here is
    /// unsafe, whatever the views.
    unsafe fn launch(&mut self, plan: &LaunchPlan, args: &KernelArgs) -> Result<()> {
        self.backend.launch(&mut self.sim, plan, &args.args()?)
    }

    /// Launches run to completion before [`Device::launch`] returns.
    fn synchronize(&mut self, _what: &str) -> Result<()> {
        Ok(())
    }

    fn download<T: Element>(&mut self, buffer: &View, name: &str) -> Result<Vec<T>> {
        let bytes = self
            .sim
            .memory
            .read(buffer.addr, T::SIZE * buffer.len as usize)
            .ok_or_else(|| {
                backend_error(format!(
                    "{name}: no device buffer of {} elements of {} bytes",
                    buffer.len,
                    T::SIZE
                ))
            })?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::from_le).collect())
    }
}

impl DeviceBackend for PtxBackend {
    const NAME: &'static str = NAME;
    type Device<'a> = Interpreter<'a>;

    fn choice(&self) -> KernelChoice {
        self.choice
    }

    /// A simulator with fresh memory per call.
    fn with_device<T>(&self, body: impl FnOnce(&mut Interpreter<'_>) -> Result<T>) -> Result<T> {
        body(&mut Interpreter {
            backend: self,
            sim: self.simulator(),
        })
    }
}
