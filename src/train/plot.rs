//! PNG scatter plot of 2-D features coloured by class, one panel per run side by side, like
//! Figure 2 of the L-Softmax paper.
//!
//! The plot has no text: plotters draws text only through its `ttf`/`ab_glyph` features,
//! which need system fonts or a shipped font file. Panels appear in run order, left to
//! right; the CLI prints that order and `metrics.json` lists the runs in the same order.

use std::path::Path;

use ndarray::ArrayView2;
use plotters::prelude::*;

use lsoftmax_host::error::{Error, Result};

/// Side of one square panel, in pixels.
const PANEL_PX: u32 = 420;
/// Gap between panels and around them, in pixels.
const GAP_PX: u32 = 10;

/// Ten distinguishable class colours (matplotlib's `tab10`).
const CLASS_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of class `c` (cycling after ten classes).
pub fn class_color(c: usize) -> RGBColor {
    CLASS_COLORS[c % CLASS_COLORS.len()]
}

/// One panel: N×2 features, their labels, and the C×2 class weights.
#[derive(Clone, Copy, Debug)]
pub struct Panel<'a> {
    /// Features (N×2), one point each.
    pub features: ArrayView2<'a, f32>,
    /// Class of each feature, picks its colour.
    pub labels: &'a [usize],
    /// Class weights (C×2): drawn as rays from the origin in the class colour.
    pub weights: ArrayView2<'a, f32>,
}

/// Writes the panels side by side to `path` (PNG). Each panel is centred on the origin with
/// equal scales on both axes (so angles look like angles), spans the largest coordinate of
/// its features, and shows the axes (grey), the points and the class-weight directions.
pub fn write_feature_scatter(path: &Path, panels: &[Panel<'_>]) -> Result<()> {
    if panels.is_empty() {
        return Err(Error::Train("feature plot: no runs to draw".into()));
    }
    for (k, p) in panels.iter().enumerate() {
        if p.features.ncols() != 2 || p.weights.ncols() != 2 {
            return Err(Error::Train(format!(
                "feature plot needs 2-D features; panel {k} has features {}x{} and weights {}x{}",
                p.features.nrows(),
                p.features.ncols(),
                p.weights.nrows(),
                p.weights.ncols()
            )));
        }
        if p.labels.len() != p.features.nrows() {
            return Err(Error::Shape(format!(
                "feature plot panel {k}: {} labels for {} features",
                p.labels.len(),
                p.features.nrows()
            )));
        }
    }
    let file_err = |e: &dyn std::fmt::Display| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let n = panels.len() as u32;
    let size = (n * PANEL_PX + (n + 1) * GAP_PX, PANEL_PX + 2 * GAP_PX);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| file_err(&e))?;
    let inner = root.margin(GAP_PX, GAP_PX, GAP_PX, GAP_PX);
    let cells = inner.split_evenly((1, panels.len()));
    for (cell, panel) in cells.iter().zip(panels) {
        let cell = cell.margin(0, 0, 0, if n > 1 { GAP_PX / 2 } else { 0 });
        draw_panel(&cell, panel).map_err(|e| file_err(&e))?;
    }
    root.present().map_err(|e| file_err(&e))
}

/// The target logit of each margin against the angle θ ∈ [0, π] between a feature and
/// its class weight, in units of the scale: `F_{i,y_i}/S` for CosFace, ArcFace and the
/// combined margin, and `F_{i,y_i}` at `‖x‖ = ‖w‖ = 1` for the others (computed by
/// [`lsoftmax_host::reference::naive`] on a 2-D problem), with `cos θ` as a grey reference.
/// Colours follow [`class_color`] in the order given; the y range is `[-4, 1.1]` (L-Softmax
/// and SphereFace with m = 4 reach −7 at θ = π and leave it at the bottom).
pub fn write_target_logit_plot(
    path: &Path,
    margins: &[lsoftmax_host::margin::Margin],
) -> Result<()> {
    use lsoftmax_host::margin::Mode;
    use lsoftmax_host::reference::naive;
    let file_err = |e: &dyn std::fmt::Display| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let w = ndarray::array![[1.0f64, 0.0]];
    let curve = |m: lsoftmax_host::margin::Margin| -> Vec<(f64, f64)> {
        let unit = f64::from(m.feature_scale().unwrap_or(1.0));
        (0..=600)
            .map(|i| {
                let theta = std::f64::consts::PI * f64::from(i) / 600.0;
                let x = ndarray::array![[theta.cos(), theta.sin()]];
                let f = naive::forward(x.view(), w.view(), &[0], m, Mode::Train);
                (theta, f[[0, 0]] / unit)
            })
            .collect()
    };
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| file_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .build_cartesian_2d(0.0..std::f64::consts::PI, -4.0..1.1)
        .map_err(|e| file_err(&e))?;
    let grey = RGBColor(200, 200, 200);
    let draw = |chart: &mut ChartContext<'_, _, _>| -> std::result::Result<(), _> {
        chart.draw_series([
            PathElement::new(vec![(0.0, 0.0), (std::f64::consts::PI, 0.0)], grey),
            PathElement::new(
                (0..=300)
                    .map(|i| {
                        let t = std::f64::consts::PI * f64::from(i) / 300.0;
                        (t, t.cos())
                    })
                    .collect::<Vec<_>>(),
                grey.stroke_width(2),
            ),
        ])?;
        for (k, &m) in margins.iter().enumerate() {
            // Split at jumps (ArcFace's fallback) so they show as gaps, not vertical lines.
            let pts = curve(m);
            let mut seg = vec![pts[0]];
            for pair in pts.windows(2) {
                if (pair[1].1 - pair[0].1).abs() > 0.05 {
                    chart.draw_series([PathElement::new(
                        std::mem::take(&mut seg),
                        class_color(k).stroke_width(3),
                    )])?;
                }
                seg.push(pair[1]);
            }
            chart.draw_series([PathElement::new(seg, class_color(k).stroke_width(3))])?;
        }
        Ok(())
    };
    draw(&mut chart).map_err(|e: DrawingAreaErrorKind<_>| file_err(&e))?;
    root.draw(&Rectangle::new([(0, 0), (639, 399)], BLACK))
        .map_err(|e| file_err(&e))?;
    root.present().map_err(|e| file_err(&e))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let extent = panel
        .features
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let r = f64::from(if extent > 0.0 { extent * 1.05 } else { 1.0 });
    let mut chart = ChartBuilder::on(area).build_cartesian_2d(-r..r, -r..r)?;
    let grey = RGBColor(200, 200, 200);
    chart.draw_series([
        PathElement::new(vec![(-r, 0.0), (r, 0.0)], grey),
        PathElement::new(vec![(0.0, -r), (0.0, r)], grey),
    ])?;
    chart.draw_series(
        panel
            .features
            .outer_iter()
            .zip(panel.labels)
            .map(|(f, &y)| {
                Circle::new(
                    (f64::from(f[0]), f64::from(f[1])),
                    2,
                    class_color(y).filled(),
                )
            }),
    )?;
    // A ray from the origin to the panel edge along each class weight: with the margin the
    // points of a class should gather around their ray.
    chart.draw_series(panel.weights.outer_iter().enumerate().filter_map(|(c, w)| {
        let (x, y) = (f64::from(w[0]), f64::from(w[1]));
        let norm = x.hypot(y);
        (norm > 0.0).then(|| {
            PathElement::new(
                vec![(0.0, 0.0), (x / norm * r, y / norm * r)],
                class_color(c).stroke_width(3),
            )
        })
    }))?;
    area.draw(&Rectangle::new(
        [
            (0, 0),
            (
                area.dim_in_pixel().0 as i32 - 1,
                area.dim_in_pixel().1 as i32 - 1,
            ),
        ],
        BLACK,
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn writes_a_png_with_one_panel_per_run_and_rejects_bad_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        let f = array![[1.0f32, 0.5], [-1.0, -0.2], [0.1, 2.0]];
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let labels = [0, 1, 1];
        let p = Panel {
            features: f.view(),
            labels: &labels,
            weights: w.view(),
        };
        write_feature_scatter(&path, &[p, p]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR width and height (big-endian) at bytes 16..24.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!(
            (width, height),
            (2 * PANEL_PX + 3 * GAP_PX, PANEL_PX + 2 * GAP_PX)
        );
        let f3 = array![[1.0f32, 0.5, 0.0]];
        let bad = Panel {
            features: f3.view(),
            labels: &labels[..1],
            weights: w.view(),
        };
        let err = write_feature_scatter(&path, &[bad])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1x3"), "{err}");
        assert!(write_feature_scatter(&path, &[]).is_err());
    }
}
