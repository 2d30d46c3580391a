//! The pipeline on a recording device: what it asks of a device, and what it refuses.

use super::*;
use crate::backend::device::Element;
use crate::backend::launch::{KernelVariant, SplitK};
use ndarray::Array2;

/// A device that runs nothing: it records every buffer name the pipeline asks for and
/// every launch, checks each launch's arguments against its parameters as every real
/// device does, and hands back zeroes.
#[derive(Default)]
struct Recording {
    lengths: Vec<u64>,
    names: Vec<&'static str>,
    launches: Vec<&'static str>,
}

impl Recording {
    fn buffer(&mut self, name: &'static str, len: usize) -> View {
        self.names.push(name);
        self.lengths.push(len as u64);
        View {
            addr: self.lengths.len() as u64,
            len: len as u64,
        }
    }
}

impl Device for Recording {
    type Buffer<T: Element> = View;

    fn name(&self) -> &'static str {
        "recording"
    }

    fn upload<T: Element>(&mut self, name: &'static str, data: &[T]) -> Result<View> {
        Ok(self.buffer(name, data.len()))
    }

    fn output<T: Element>(&mut self, name: &'static str, len: usize) -> Result<View> {
        Ok(self.buffer(name, len))
    }

    fn view<T: Element>(&self, buffer: &View) -> View {
        *buffer
    }

    unsafe fn launch(&mut self, plan: &LaunchPlan, args: &KernelArgs) -> Result<()> {
        args.args()?;
        self.launches.push(plan.kernel);
        Ok(())
    }

    fn synchronize(&mut self, _what: &str) -> Result<()> {
        Ok(())
    }

    fn download<T: Element>(&mut self, buffer: &View, _name: &str) -> Result<Vec<T>> {
        Ok(vec![T::default(); buffer.len as usize])
    }
}

fn assert_unique(names: &[&'static str], what: &str) {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "{what}: {names:?}");
}

/// The CUDA device keeps one region per name across a call, so the pipeline must ask
/// for each name at most once per call (the `Device` contract its launches rely on).
#[test]
fn every_buffer_name_is_asked_for_once_per_call() {
    let (n, d, c) = (5, 3, 17);
    let x = Array2::from_shape_fn((n, d), |(i, k)| (i * 3 + k) as f32 * 0.25 - 1.0);
    let w = Array2::from_shape_fn((c, d), |(j, k)| ((j + 2 * k) % 5) as f32 * 0.5 - 1.0);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7) % c).collect();
    let dout = Array2::from_shape_fn((n, c), |(i, j)| ((i + j) % 3) as f32 - 1.0);
    let split = KernelChoice {
        variant: KernelVariant::Ldg,
        split_k: SplitK::Force(2),
    };
    let (lsoftmax, cosface) = (Margin::lsoftmax(2, 0.5), Margin::cosface(8.0, 0.25));
    let (lsoftmax, cosface) = (lsoftmax.unwrap(), cosface.unwrap());
    // Each margin family (plain, norms only, norms and X̃, Ŵ; Ŵ only) and split-K.
    let cases = [
        (Margin::plain(), Mode::Infer, KernelChoice::default()),
        (lsoftmax, Mode::Train, split),
        (cosface, Mode::Train, KernelChoice::default()),
        (cosface, Mode::Infer, split),
        (Margin::sphereface(2, 0.0).unwrap(), Mode::Train, split),
    ];
    for (margin, mode, choice) in cases {
        let what = format!("{margin} {mode:?} {choice:?}");
        let mut dev = Recording::default();
        let job = ForwardJob::new(choice, x.view(), w.view(), &labels, margin, mode);
        let (_, cache) = job.unwrap().run(&mut dev).unwrap();
        assert_unique(&dev.names, &what);
        // row_norms, row_scale of X and of W where they apply, the forward.
        let scaled = match (margin.is_normalised(), margin.feature_scale()) {
            (false, _) => 0,
            (true, s) => 1 + usize::from(s.is_some()),
        };
        let norms = usize::from(needs_row_norms(margin, mode));
        assert_eq!(dev.launches.len(), norms + scaled + 1, "{what}");
        let mut dev = Recording::default();
        let job = BackwardJob::new(choice, (x.view(), w.view(), &labels), &cache, dout.view());
        job.unwrap().run(&mut dev).unwrap();
        assert_unique(&dev.names, &what);
        assert!(
            dev.names.contains(&"dx") && dev.names.contains(&"dw"),
            "{what}"
        );
    }
}

/// Bad input is refused before any device work.
#[test]
fn jobs_check_their_inputs_first() {
    let x = Array2::<f32>::zeros((2, 3));
    let w = Array2::<f32>::zeros((4, 3));
    let plain = (Margin::plain(), Mode::Train);
    let e = ForwardJob::new(
        KernelChoice::default(),
        x.view(),
        w.view(),
        &[0, 4],
        plain.0,
        plain.1,
    );
    assert!(matches!(e, Err(Error::LabelOutOfRange { row: 1, .. })));
    let mut cache = RowCache::plain(2);
    cache.p.pop();
    let dout = Array2::<f32>::zeros((2, 4));
    let plain_cache = RowCache::plain(2);
    let e = BackwardJob::new(
        KernelChoice::default(),
        (x.view(), w.view(), &[0, 1]),
        &cache,
        dout.view(),
    );
    let message = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("row cache p has 1 entries but x has 2 rows"),
        "{message}"
    );
    let e = BackwardJob::new(
        KernelChoice::default(),
        (x.view(), w.view(), &[0, 1]),
        &plain_cache,
        x.view(),
    );
    let message = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("dout is 2x3 but the layer output is 2x4"),
        "{message}"
    );
}
