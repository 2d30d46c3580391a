//! The emulated backend: the kernels of `kernels-gpu` compiled for the host and run by
//! its CPU emulator, with every detector on (memcheck, racecheck, initcheck, synccheck).
//!
//! It runs exactly the launches a GPU would (the one pipeline of [`super::pipeline`] issues
//! them for every device backend), so
//! a kernel that agrees with the reference here differs on a GPU only by what the emulator
//! does not model (warps, memory ordering). The emulator runs one block at a time on OS
//! threads: use it for correctness, not speed.

use std::any::Any;

use kernels_gpu::device::{Global, GlobalMut};
use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, launch};
use kernels_gpu::normalise::{row_project, row_scale};
use kernels_gpu::params::{ForwardParams, GradParams};
use kernels_gpu::row_norms::row_norms;
use kernels_gpu::{forward, input_grad, weight_grad};

use super::abi::{KernelArgs, View};
use super::device::{Device, Element};
use super::launch::{KernelChoice, KernelVariant, LaunchPlan};
use super::pipeline::DeviceBackend;
use crate::error::{Error, Result};

/// Runs the margin kernels under the CPU emulator: the default [`KernelChoice`]
/// (variant and split-K policy); [`EmulatedVariant`] runs any other.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulatedBackend;

/// The emulated backend running a chosen kernel variant and split-K policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulatedVariant {
    /// What to launch.
    pub choice: KernelChoice,
}

type ForwardFn = fn(
    ForwardParams,
    Global<f32>,
    Global<f32>,
    Global<u32>,
    Global<f64>,
    Global<f64>,
    GlobalMut<f32>,
    GlobalMut<f32>,
    GlobalMut<f32>,
    GlobalMut<f32>,
);
type GradFn = fn(
    GradParams,
    Global<f32>,
    Global<f32>,
    Global<f32>,
    Global<u32>,
    Global<f32>,
    Global<f32>,
    GlobalMut<f32>,
);

/// The host functions of `variant`'s `(forward, input grad, weight grad)` entries.
fn kernels(variant: KernelVariant) -> (ForwardFn, GradFn, GradFn) {
    match variant {
        KernelVariant::Base => (
            forward::margin_forward,
            input_grad::margin_input_grad,
            weight_grad::margin_weight_grad,
        ),
        KernelVariant::Unrolled => (
            forward::margin_forward_unrolled,
            input_grad::margin_input_grad_unrolled,
            weight_grad::margin_weight_grad_unrolled,
        ),
        KernelVariant::Micro8 => (
            forward::margin_forward_micro8,
            input_grad::margin_input_grad_micro8,
            weight_grad::margin_weight_grad_micro8,
        ),
        KernelVariant::Ldg => (
            forward::margin_forward_ldg,
            input_grad::margin_input_grad_ldg,
            weight_grad::margin_weight_grad_ldg,
        ),
        KernelVariant::Dbuf => (
            forward::margin_forward_dbuf,
            input_grad::margin_input_grad_dbuf,
            weight_grad::margin_weight_grad_dbuf,
        ),
    }
}

const NAME: &str = "emulated";

fn backend_error(message: String) -> Error {
    Error::backend(NAME, message)
}

/// The emulator as a [`Device`]: buffers are `DeviceBuffer`s owned here, a view's address
/// is its index in `buffers` plus one (so that 0 stays the empty view), and a launch
/// calls the kernel's host function with the typed arguments.
#[derive(Default)]
pub(crate) struct Emulator {
    buffers: Vec<Box<dyn Any + Send>>,
}

impl Emulator {
    fn push<T: Element>(&mut self, buffer: DeviceBuffer<T>) -> View {
        let len = buffer.len() as u64;
        self.buffers.push(Box::new(buffer));
        View {
            addr: self.buffers.len() as u64,
            len,
        }
    }

    /// The buffer behind argument `arg`'s view. An empty view gets a buffer of no elements
    /// named `<arg> (unused)`, so that any read of it is a memcheck fault naming it.
    fn resolve<T: Element>(&mut self, arg: &str, v: View) -> Result<&DeviceBuffer<T>> {
        let v = if v == View::EMPTY {
            self.push(DeviceBuffer::<T>::zeroed(0).named(&format!("{arg} (unused)")))
        } else {
            v
        };
        let index = usize::try_from(v.addr)
            .unwrap_or(usize::MAX)
            .wrapping_sub(1);
        self.buffers
            .get(index)
            .and_then(|b| b.downcast_ref::<DeviceBuffer<T>>())
            .filter(|b| b.len() as u64 == v.len)
            .ok_or_else(|| {
                backend_error(format!(
                    "argument {arg}: no emulator buffer of {} elements of {} bytes at {:#x}",
                    v.len,
                    T::SIZE,
                    v.addr
                ))
            })
    }

    fn read<T: Element>(&mut self, arg: &str, v: View) -> Result<Global<T>> {
        Ok(self.resolve::<T>(arg, v)?.view())
    }

    fn write<T: Element>(&mut self, arg: &str, v: View) -> Result<GlobalMut<T>> {
        Ok(self.resolve::<T>(arg, v)?.view_mut())
    }
}

/// The variant whose entries include `kernel`.
fn variant_of(kernel: &str) -> Result<KernelVariant> {
    KernelVariant::ALL
        .into_iter()
        .find(|v| v.entries().contains(&kernel))
        .ok_or_else(|| backend_error(format!("no host function for kernel {kernel}")))
}

impl Device for Emulator {
    type Buffer<T: Element> = View;

    fn name(&self) -> &'static str {
        NAME
    }

    fn upload<T: Element>(&mut self, name: &'static str, data: &[T]) -> Result<View> {
        Ok(self.push(DeviceBuffer::from_slice(data).named(name)))
    }

    fn output<T: Element>(&mut self, name: &'static str, len: usize) -> Result<View> {
        // Uninitialised: a kernel that read an output before writing it would be an
        // initcheck fault.
        Ok(self.push(DeviceBuffer::<T>::uninit(len).named(name)))
    }

    fn view<T: Element>(&self, buffer: &View) -> View {
        *buffer
    }

    /// Every launch checks its argument lengths as a GPU launch does, then runs under the
    /// emulator's checks: nothing here is unsafe, whatever the views.
    unsafe fn launch(&mut self, plan: &LaunchPlan, args: &KernelArgs) -> Result<()> {
        args.args()?;
        let config = LaunchConfig {
            grid: plan.grid,
            block: plan.block,
            dynamic_shared_bytes: plan.shared_bytes as usize,
        };
        let k = plan.kernel;
        let ran = match *args {
            KernelArgs::RowNorms(p, v) => {
                let (x, w) = (self.read("x", v.x)?, self.read("w", v.w)?);
                let xn = self.write("x_norms", v.x_norms)?;
                let wn = self.write("w_norms", v.w_norms)?;
                launch(&config, k, || row_norms(p, x, w, xn, wn))
            }
            KernelArgs::RowScale(p, v) => {
                let (rows, norms) = (self.read("v", v.v)?, self.read("norms", v.norms)?);
                let out = self.write("out", v.out)?;
                launch(&config, k, || row_scale(p, rows, norms, out))
            }
            KernelArgs::RowProject(p, v) => {
                let (rows, norms) = (self.read("v", v.v)?, self.read("norms", v.norms)?);
                let (g, out) = (
                    self.read("dv_scaled", v.dv_scaled)?,
                    self.write("dv", v.out)?,
                );
                launch(&config, k, || row_project(p, rows, norms, g, out))
            }
            KernelArgs::Forward(p, v) => {
                let (margin_forward, _, _) = kernels(variant_of(k)?);
                let (x, w) = (self.read("x", v.x)?, self.read("w", v.w)?);
                let y = self.read("labels", v.labels)?;
                let xn = self.read("x_norms", v.x_norms)?;
                let wn = self.read("w_norms", v.w_norms)?;
                let (out, pv) = (self.write("out", v.out)?, self.write("p", v.p)?);
                let sa = self.write("alpha_scale", v.alpha_scale)?;
                let sg = self.write("gamma_scale", v.gamma_scale)?;
                launch(&config, k, || {
                    margin_forward(p, x, w, y, xn, wn, out, pv, sa, sg)
                })
            }
            KernelArgs::InputGrad(p, v) | KernelArgs::WeightGrad(p, v) => {
                let (_, input_grad, weight_grad) = kernels(variant_of(k)?);
                let (g, x, w) = (
                    self.read("g", v.g)?,
                    self.read("x", v.x)?,
                    self.read("w", v.w)?,
                );
                let (y, pv) = (self.read("labels", v.labels)?, self.read("p", v.p)?);
                let (scale, out) = (self.read("scale", v.scale)?, self.write("out", v.out)?);
                if matches!(args, KernelArgs::InputGrad(..)) {
                    launch(&config, k, || input_grad(p, g, w, x, y, pv, scale, out))
                } else {
                    launch(&config, k, || weight_grad(p, g, x, w, y, pv, scale, out))
                }
            }
            KernelArgs::SplitKPartial(p, v) => {
                let (g, w) = (self.read("g", v.g)?, self.read("w", v.w)?);
                let (y, pv) = (self.read("labels", v.labels)?, self.read("p", v.p)?);
                let partial = self.write("partial", v.partial)?;
                launch(&config, k, || {
                    input_grad::margin_input_grad_splitk(p, g, w, y, pv, partial)
                })
            }
            KernelArgs::SplitKReduce(p, v) => {
                let (g, x) = (self.read("g", v.g)?, self.read("x", v.x)?);
                let (y, sa) = (
                    self.read("labels", v.labels)?,
                    self.read("alpha_scale", v.alpha_scale)?,
                );
                let (partial, dx) = (self.read("partial", v.partial)?, self.write("dx", v.dx)?);
                launch(&config, k, || {
                    input_grad::margin_input_grad_splitk_reduce(p, g, x, y, sa, partial, dx)
                })
            }
        };
        ran.map_err(|e| backend_error(e.to_string()))
    }

    /// Launches run to completion before [`Device::launch`] returns.
    fn synchronize(&mut self, _what: &str) -> Result<()> {
        Ok(())
    }

    fn download<T: Element>(&mut self, buffer: &View, name: &str) -> Result<Vec<T>> {
        Ok(self.resolve::<T>(name, *buffer)?.to_vec())
    }
}

impl DeviceBackend for EmulatedBackend {
    const NAME: &'static str = NAME;
    type Device<'a> = Emulator;

    fn choice(&self) -> KernelChoice {
        KernelChoice::default()
    }

    /// A fresh emulator memory per call.
    fn with_device<T>(&self, body: impl FnOnce(&mut Emulator) -> Result<T>) -> Result<T> {
        body(&mut Emulator::default())
    }
}

impl DeviceBackend for EmulatedVariant {
    const NAME: &'static str = NAME;
    type Device<'a> = Emulator;

    fn choice(&self) -> KernelChoice {
        self.choice
    }

    fn with_device<T>(&self, body: impl FnOnce(&mut Emulator) -> Result<T>) -> Result<T> {
        body(&mut Emulator::default())
    }
}
