//! The target-logit figure: the target logit of each margin against the angle θ between
//! a feature and its class weight, with `cos θ` (no margin) as the grey reference and a
//! legend below the chart naming every curve by its margin spec.

use std::f64::consts::PI;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use lsoftmax_host::error::Result;
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::reference::naive;

use super::{
    DARK, DESC_PAD_PX, GREY, GRID, LABEL_PT, Swatch, TICK_PT, TITLE_PT, class_color, draw_centred,
    draw_legend_entry, file_err, register_font, text_style, tick_label,
};

/// Width of the figure in pixels.
const WIDTH_PX: u32 = 960;
/// The title and subtitle band.
const HEAD_PX: u32 = 70;
/// The chart, axes included.
const CHART_PX: u32 = 470;
/// One legend row.
const ROW_PX: u32 = 26;
/// Around the legend and the figure.
const PAD_PX: u32 = 14;
/// The y range: L-Softmax and SphereFace with m = 4 reach −7 at θ = π; showing that would
/// flatten the other curves, so those leave through the bottom and their legend entry
/// says how far they fall.
const Y_MIN: f64 = -4.0;
const Y_MAX: f64 = 1.15;
/// Samples of θ in [0, π].
const SAMPLES: u32 = 600;
/// A step between two samples larger than this is a jump of the curve (ArcFace's fallback):
/// drawn as a gap, not a vertical line. The steepest continuous curve (m = 4) moves by
/// at most 4·π/600 ≈ 0.021 per sample.
const JUMP: f64 = 0.05;

/// Legend entries per column.
fn legend_rows(margins: usize) -> u32 {
    (margins as u32 + 1).div_ceil(2)
}

/// Width and height in pixels of the figure [`write_target_logit_plot`] writes for
/// `margins` margins (the legend grows by a row per two margins).
pub fn target_figure_size(margins: usize) -> (u32, u32) {
    (
        WIDTH_PX,
        HEAD_PX + CHART_PX + PAD_PX + legend_rows(margins) * ROW_PX + PAD_PX,
    )
}

/// The target logit `F_{i,y_i}` of margin `m` at θ ∈ [0, π] (`SAMPLES + 1` points), in
/// units of the scale: `F_{i,y_i}/S` for CosFace, ArcFace and the combined margin, and
/// `F_{i,y_i}` at `‖x‖ = ‖w‖ = 1` for the others, computed by
/// [`lsoftmax_host::reference::naive`] on a 2-D problem.
fn target_curve(m: Margin) -> Vec<(f64, f64)> {
    let w = ndarray::array![[1.0f64, 0.0]];
    let unit = f64::from(m.feature_scale().unwrap_or(1.0));
    (0..=SAMPLES)
        .map(|i| {
            let theta = PI * f64::from(i) / f64::from(SAMPLES);
            let x = ndarray::array![[theta.cos(), theta.sin()]];
            let f = naive::forward(x.view(), w.view(), &[0], m, Mode::Train);
            (theta, f[[0, 0]] / unit)
        })
        .collect()
}

/// Splits a sampled curve into the pieces to draw: at jumps (a gap instead of a vertical
/// line) and where it leaves the chart below `y_min` (cut at the crossing, so it exits
/// through the bottom edge instead of running along it).
fn visible_segments(pts: &[(f64, f64)], y_min: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut seg: Vec<(f64, f64)> = Vec::new();
    let flush = |seg: &mut Vec<(f64, f64)>, out: &mut Vec<Vec<(f64, f64)>>| {
        if seg.len() >= 2 {
            out.push(std::mem::take(seg));
        }
        seg.clear();
    };
    for (i, &p) in pts.iter().enumerate() {
        if i > 0 {
            let q = pts[i - 1];
            if (p.1 - q.1).abs() > JUMP {
                flush(&mut seg, &mut out);
            } else if (q.1 >= y_min) != (p.1 >= y_min) {
                let t = (y_min - q.1) / (p.1 - q.1);
                seg.push((q.0 + t * (p.0 - q.0), y_min));
                if q.1 >= y_min {
                    flush(&mut seg, &mut out);
                }
            }
        }
        if p.1 >= y_min {
            seg.push(p);
        }
    }
    flush(&mut seg, &mut out);
    out
}

/// Every fourth point of a piece and its last one: the samples are dense to find jumps and
/// crossings, but a wide line through 1.5-pixel steps draws with ragged edges.
fn thin(seg: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let last = seg.len().saturating_sub(1);
    seg.into_iter()
        .enumerate()
        .filter(|&(i, _)| i % 4 == 0 || i == last)
        .map(|(_, p)| p)
        .collect()
}

/// Whether two sampled curves are the same curve (to rounding).
fn same_curve(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| (p.1 - q.1).abs() < 1e-6)
}

/// The θ axis, [0, π], with its ticks at the multiples of π/4 (plotters' own numeric axes
/// put ticks at 1, 2, 5 × 10^k).
struct AngleAxis(RangedCoordf64);

impl AngleAxis {
    fn new() -> Self {
        Self((0.0..PI).into())
    }
}

impl Ranged for AngleAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.0.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let all = (0..=4).map(|k| PI * f64::from(k) / 4.0);
        all.take(hint.max_num_points().min(5)).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.0.range()
    }
}

/// Tick label of an angle at a multiple of π/4.
fn angle_label(v: &f64) -> String {
    match (v / PI * 4.0).round() as i64 {
        0 => "0".into(),
        1 => "π/4".into(),
        2 => "π/2".into(),
        3 => "3π/4".into(),
        4 => "π".into(),
        _ => tick_label(v),
    }
}

/// Writes the target logit of each margin against θ ∈ [0, π] to `path` (PNG): see
/// `target_curve` for the units. Colours follow [`super::class_color`] in the order given;
/// a curve equal to an earlier one is drawn dashed over it, so both colours show; `cos θ`
/// is the wide grey line underneath. The y range is `[-4, 1.15]`.
pub fn write_target_logit_plot(path: &Path, margins: &[Margin]) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, target_figure_size(margins.len())).into_drawing_area();
    draw_target_figure(&root, margins).map_err(|e| file_err(path, &e))?;
    root.present().map_err(|e| file_err(path, &e))
}

/// Draws the whole figure on `root`, which must have [`target_figure_size`].
pub(super) fn draw_target_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    margins: &[Margin],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let centre = WIDTH_PX as i32 / 2;
    draw_centred(
        root,
        "Target logit of each margin against the angle θ to the class weight",
        &text_style(TITLE_PT, BLACK),
        (centre, 10),
    )?;
    draw_centred(
        root,
        "divided by the scale s (CosFace, ArcFace, combined); the others at ‖x‖ = ‖w‖ = 1",
        &text_style(LABEL_PT, DARK),
        (centre, 40),
    )?;
    let (chart_area, legend_area) = root
        .clone()
        .shrink((0, HEAD_PX), (WIDTH_PX, root.dim_in_pixel().1 - HEAD_PX))
        .split_vertically(CHART_PX);
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_right(24)
        .margin_top(8)
        .margin_left(DESC_PAD_PX)
        .x_label_area_size(56)
        .y_label_area_size(72)
        .build_cartesian_2d(AngleAxis::new(), Y_MIN..Y_MAX)?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .y_labels(8)
        .x_label_formatter(&angle_label)
        .y_label_formatter(&tick_label)
        .label_style(text_style(TICK_PT, DARK))
        .axis_desc_style(text_style(LABEL_PT, BLACK))
        .x_desc("θ: angle between the feature x and its class weight w (radians)")
        .y_desc("target logit / s")
        .draw()?;
    chart.draw_series([PathElement::new(vec![(0.0, 0.0), (PI, 0.0)], GREY)])?;
    let cosine: Vec<(f64, f64)> = (0..=SAMPLES)
        .map(|i| {
            let t = PI * f64::from(i) / f64::from(SAMPLES);
            (t, t.cos())
        })
        .collect();
    chart.draw_series([PathElement::new(thin(cosine.clone()), GREY.stroke_width(9))])?;
    let curves: Vec<Vec<(f64, f64)>> = margins.iter().map(|&m| target_curve(m)).collect();
    let mut legend = vec![(
        Swatch::Line {
            color: GREY,
            width: 9,
            dashed: false,
        },
        "cos θ: the logit without margin".to_string(),
    )];
    for (k, (m, curve)) in margins.iter().zip(&curves).enumerate() {
        let twin = curves[..k].iter().position(|c| same_curve(c, curve));
        let color = class_color(k);
        let style = color.stroke_width(3);
        for seg in visible_segments(curve, Y_MIN).into_iter().map(thin) {
            match twin {
                Some(_) => chart.draw_series([DashedPathElement::new(seg, 12, 10, style)])?,
                None => chart.draw_series([PathElement::new(seg, style)])?,
            };
        }
        let mut notes = Vec::new();
        if same_curve(curve, &cosine) {
            notes.push("= cos θ".to_string());
        }
        if let Some(j) = twin {
            notes.push(format!("dashed: same curve as {}", margins[j]));
        }
        let low = curve.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        if low < Y_MIN {
            notes.push(format!("falls to {} below the frame", tick_label(&low)));
        }
        let text = if notes.is_empty() {
            m.to_string()
        } else {
            format!("{m} ({})", notes.join("; "))
        };
        legend.push((
            Swatch::Line {
                color,
                width: 3,
                dashed: twin.is_some(),
            },
            text,
        ));
    }
    chart.draw_series([Rectangle::new([(0.0, Y_MIN), (PI, Y_MAX)], BLACK)])?;
    // Column-major, two columns, aligned with the plotting area's left edge.
    let rows = legend_rows(margins.len()) as usize;
    let style = text_style(LABEL_PT, BLACK);
    for (i, (swatch, text)) in legend.iter().enumerate() {
        let x = (DESC_PAD_PX + 72) as i32
            + (i / rows) as i32 * ((WIDTH_PX - DESC_PAD_PX - 72) / 2) as i32;
        let y = (PAD_PX + ROW_PX / 2) as i32 + (i % rows) as i32 * ROW_PX as i32;
        draw_legend_entry(&legend_area, (x, y), *swatch, text, &style)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn margins(specs: &[&str]) -> Vec<Margin> {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn curves_split_at_jumps_and_leave_through_the_bottom() {
        let pts = [(0.0, 0.0), (1.0, -0.01), (2.0, -1.0), (3.0, -1.01)];
        assert_eq!(
            visible_segments(&pts, -4.0),
            vec![
                vec![(0.0, 0.0), (1.0, -0.01)],
                vec![(2.0, -1.0), (3.0, -1.01)]
            ]
        );
        let down = [(0.0, -3.99), (1.0, -4.01), (2.0, -4.03)];
        let segs = visible_segments(&down, -4.0);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0][0], (0.0, -3.99));
        assert!((segs[0][1].0 - 0.5).abs() < 1e-9 && segs[0][1].1 == -4.0);
        let sphere = target_curve("sphereface:m=4".parse().unwrap());
        let lsoftmax = target_curve("lsoftmax:m=4,beta=0".parse().unwrap());
        assert!(same_curve(&sphere, &lsoftmax), "equal at unit norms");
        assert!(sphere.last().unwrap().1 < -6.9);
        assert_eq!(angle_label(&(3.0 * PI / 4.0)), "3π/4");
    }

    #[test]
    fn writes_a_png_of_the_documented_size_with_a_title() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        let ms = margins(&[
            "plain",
            "lsoftmax:m=4,beta=0",
            "sphereface:m=4",
            "arcface:s=8,m=0.5",
        ]);
        write_target_logit_plot(&path, &ms).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), target_figure_size(ms.len()));
        assert_eq!(target_figure_size(4).1 - target_figure_size(2).1, ROW_PX);

        let (w, h) = target_figure_size(ms.len());
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_target_figure(&root, &ms).unwrap();
            root.present().unwrap();
        }
        let dark = |y0: u32, y1: u32| {
            (y0 * w..y1 * w)
                .map(|p| (p * 3) as usize)
                .filter(|&i| buf[i] < 100 && buf[i + 1] < 100 && buf[i + 2] < 100)
                .count()
        };
        let title = dark(0, 36);
        let legend = dark(HEAD_PX + CHART_PX, h);
        assert!(title > 100, "title band has {title} dark pixels");
        assert!(legend > 100, "legend has {legend} dark pixels");
    }
}
