//! The feature figure: the 2-D features coloured by class, with the class-weight
//! directions, one panel per margin in a grid (at most three columns), left to right and
//! top to bottom in run order. The figure has a title, each panel the margin spec as its
//! heading plus an optional note (the run's metrics), both axes are labelled, every weight
//! line is labelled `W₀ … W₉` at its end, and a legend below says which colour is which class.

use std::path::Path;

use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use lsoftmax_host::error::{Error, Result};

use super::{
    DARK, DESC_PAD_PX, GREY, GRID, LABEL_PT, SUBTITLE_PT, Swatch, TICK_PT, TITLE_PT, class_color,
    draw_centred, draw_legend_entry, file_err, register_font, text_style, tick_label,
};

/// One panel: N×2 features, their labels, the C×2 class weights, and its heading.
#[derive(Clone, Copy, Debug)]
pub struct Panel<'a> {
    /// Heading of the panel: the margin spec (`lsoftmax:m=4,beta=0`).
    pub title: &'a str,
    /// Second heading line in smaller grey type (the run's metrics); empty for none.
    pub note: &'a str,
    /// Features (N×2), one point each.
    pub features: ArrayView2<'a, f32>,
    /// Class of each feature, picks its colour.
    pub labels: &'a [usize],
    /// Class weights (C×2): drawn as lines from the origin in the class colour.
    pub weights: ArrayView2<'a, f32>,
}

/// Side of a panel's square plotting area, in pixels.
const SIDE_PX: u32 = 380;
/// Left of the square: tick labels and the rotated "feature 2".
const Y_AXIS_PX: u32 = 62;
/// Below the square: tick labels and "feature 1".
const X_AXIS_PX: u32 = 50;
/// Above the square: the panel's title and note.
const HEAD_PX: u32 = 56;
/// Right of the square and between head and square.
const PAD_PX: u32 = 14;
/// Between panels and around the figure.
const GAP_PX: u32 = 12;
/// The figure title's band.
const FIG_TITLE_PX: u32 = 44;
/// The legend's band: two rows (classes, then weight lines), so it fits under two panels.
const LEGEND_PX: u32 = 56;
/// One legend row.
const LEGEND_ROW_PX: i32 = 26;
/// Panels per row at most.
const MAX_COLS: usize = 3;

const CELL_W: u32 = DESC_PAD_PX + Y_AXIS_PX + SIDE_PX + PAD_PX;
const CELL_H: u32 = HEAD_PX + PAD_PX + SIDE_PX + X_AXIS_PX;

/// Rows and columns of the panel grid: as few rows as three columns allow, then as few
/// columns as those rows need (4 panels: 2×2, 5 or 6: 2×3).
fn grid(panels: usize) -> (usize, usize) {
    let rows = panels.div_ceil(MAX_COLS).max(1);
    (rows, panels.div_ceil(rows).max(1))
}

/// Width and height in pixels of the figure [`write_feature_scatter`] writes for `panels`
/// panels.
pub fn feature_figure_size(panels: usize) -> (u32, u32) {
    let (rows, cols) = grid(panels);
    let (rows, cols) = (rows as u32, cols as u32);
    (
        cols * CELL_W + (cols + 1) * GAP_PX,
        FIG_TITLE_PX + rows * CELL_H + (rows - 1) * GAP_PX + LEGEND_PX + GAP_PX,
    )
}

/// Writes the panels to `path` (PNG) under the figure title `title`. Each panel is centred
/// on the origin with equal scales on both axes (so angles look like angles), spans the
/// largest coordinate of its features, and shows the axes through the origin (grey), the
/// points, and the class-weight directions as lines to the edge, labelled `W_c`.
pub fn write_feature_scatter(path: &Path, title: &str, panels: &[Panel<'_>]) -> Result<()> {
    check_panels(panels)?;
    register_font()?;
    let root = BitMapBackend::new(path, feature_figure_size(panels.len())).into_drawing_area();
    draw_feature_figure(&root, title, panels).map_err(|e| file_err(path, &e))?;
    root.present().map_err(|e| file_err(path, &e))
}

fn check_panels(panels: &[Panel<'_>]) -> Result<()> {
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
    Ok(())
}

/// Draws the whole figure on `root`, which must have [`feature_figure_size`].
pub(super) fn draw_feature_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel<'_>],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (width, height) = root.dim_in_pixel();
    draw_centred(
        root,
        title,
        &text_style(TITLE_PT, BLACK),
        (width as i32 / 2, 12),
    )?;
    let (_, cols) = grid(panels.len());
    for (k, panel) in panels.iter().enumerate() {
        let (row, col) = ((k / cols) as u32, (k % cols) as u32);
        let x0 = GAP_PX + col * (CELL_W + GAP_PX);
        let y0 = FIG_TITLE_PX + row * (CELL_H + GAP_PX);
        draw_panel(&root.clone().shrink((x0, y0), (CELL_W, CELL_H)), panel)?;
    }
    let classes = panels
        .iter()
        .map(|p| {
            p.weights
                .nrows()
                .max(p.labels.iter().max().map_or(0, |&c| c + 1))
        })
        .max()
        .unwrap_or(0);
    draw_class_legend(
        root,
        (
            (GAP_PX + DESC_PAD_PX + Y_AXIS_PX) as i32,
            (height - GAP_PX - LEGEND_PX) as i32 + LEGEND_ROW_PX / 2 + 2,
        ),
        classes,
    )
}

/// The legend: a row with one dot per class, and a row below saying what the lines are;
/// `(left, y)` is the left end of the first row's centre line.
fn draw_class_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (left, y): (i32, i32),
    classes: usize,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = text_style(LABEL_PT, BLACK);
    let caption = "points, coloured by class (digit):";
    let mut x = left;
    root.draw_text(
        caption,
        &style.pos(Pos::new(HPos::Left, VPos::Center)),
        (x, y),
    )?;
    x += root.estimate_text_size(caption, &style)?.0 as i32 + 14;
    for c in 0..classes {
        x += draw_legend_entry(
            root,
            (x, y),
            Swatch::Dot(class_color(c)),
            &c.to_string(),
            &style,
        )? + 14;
    }
    draw_legend_entry(
        root,
        (left, y + LEGEND_ROW_PX),
        Swatch::Line {
            color: DARK,
            width: 3,
            dashed: false,
        },
        &format!(
            "lines {}…{}: direction of each class's weight",
            weight_label(0),
            weight_label(classes.saturating_sub(1))
        ),
        &style,
    )?;
    Ok(())
}

/// `W` with the class as subscript digits: `W₃`, `W₁₂`.
fn weight_label(c: usize) -> String {
    let sub: String = c
        .to_string()
        .chars()
        .map(|d| char::from_u32(0x2080 + d.to_digit(10).unwrap_or(0)).unwrap_or(d))
        .collect();
    format!("W{sub}")
}

fn draw_panel<DB: DrawingBackend>(
    cell: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (head, body) = cell.split_vertically(HEAD_PX);
    let centre = (DESC_PAD_PX + Y_AXIS_PX + SIDE_PX / 2) as i32;
    draw_centred(
        &head,
        panel.title,
        &text_style(SUBTITLE_PT, BLACK),
        (centre, 4),
    )?;
    if !panel.note.is_empty() {
        draw_centred(
            &head,
            panel.note,
            &text_style(LABEL_PT - 1.0, DARK),
            (centre, 32),
        )?;
    }
    let extent = panel
        .features
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let r = f64::from(if extent > 0.0 { extent * 1.05 } else { 1.0 });
    let mut chart = ChartBuilder::on(&body)
        .margin_top(PAD_PX)
        .margin_right(PAD_PX)
        .margin_left(DESC_PAD_PX)
        .x_label_area_size(X_AXIS_PX)
        .y_label_area_size(Y_AXIS_PX)
        .build_cartesian_2d(-r..r, -r..r)?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .label_style(text_style(TICK_PT, DARK))
        .axis_desc_style(text_style(LABEL_PT, BLACK))
        .x_desc("feature 1")
        .y_desc("feature 2")
        .draw()?;
    chart.draw_series([
        PathElement::new(vec![(-r, 0.0), (r, 0.0)], GREY),
        PathElement::new(vec![(0.0, -r), (0.0, r)], GREY),
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
    // A line from the origin to the panel edge along each class weight: with the margin the
    // points of a class should gather around their line.
    let rays: Vec<(usize, (f64, f64))> = panel
        .weights
        .outer_iter()
        .enumerate()
        .filter_map(|(c, w)| {
            let (x, y) = (f64::from(w[0]), f64::from(w[1]));
            let norm = x.hypot(y);
            (norm > 0.0 && norm.is_finite()).then(|| {
                let (ux, uy) = (x / norm, y / norm);
                let to_edge = r / ux.abs().max(uy.abs());
                (c, (ux * to_edge, uy * to_edge))
            })
        })
        .collect();
    chart.draw_series(rays.iter().map(|&(c, end)| {
        PathElement::new(vec![(0.0, 0.0), end], class_color(c).stroke_width(3))
    }))?;
    draw_ray_labels(&chart, &body, &rays)?;
    chart.draw_series([Rectangle::new([(-r, -r), (r, r)], BLACK)])?;
    Ok(())
}

/// Labels each ray `W_c` near its end, on a white box so it reads over points. A label that
/// would overlap one already placed (rays a few degrees apart) or leave the square moves
/// inward along its ray, then, if the ray has no free place (rays that coincide), sideways
/// by a label's width; if no place is free it takes the outermost one.
fn draw_ray_labels<DB: DrawingBackend>(
    chart: &ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    body: &DrawingArea<DB, Shift>,
    rays: &[(usize, (f64, f64))],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const FRACTIONS: [f64; 6] = [0.86, 0.74, 0.62, 0.50, 0.38, 0.26];
    const SHIFTS: [i32; 5] = [0, 1, -1, 2, -2];
    let style = text_style(LABEL_PT, BLACK);
    let (px, py) = chart.plotting_area().get_pixel_range();
    let mut placed: Vec<[i32; 4]> = Vec::new();
    for &(c, (ex, ey)) in rays {
        let label = weight_label(c);
        let (tw, th) = body.estimate_text_size(&label, &style)?;
        let (hw, hh) = (tw as i32 / 2 + 3, th as i32 / 2 + 3);
        // (fraction of the ray, horizontal shift in pixels) -> the label's pixel box.
        let boxed = |(t, dx): (f64, i32)| {
            let (bx, by) = chart.backend_coord(&(ex * t, ey * t));
            [bx + dx - hw, by - hh, bx + dx + hw, by + hh]
        };
        let free = |b: &[i32; 4]| {
            b[0] >= px.start
                && b[2] < px.end
                && b[1] >= py.start
                && b[3] < py.end
                && placed
                    .iter()
                    .all(|p| b[2] < p[0] || p[2] < b[0] || b[3] < p[1] || p[3] < b[1])
        };
        let (t, dx) = SHIFTS
            .iter()
            .flat_map(|&k| FRACTIONS.iter().map(move |&t| (t, k * (2 * hw + 4))))
            .find(|&place| free(&boxed(place)))
            .unwrap_or((FRACTIONS[0], 0));
        placed.push(boxed((t, dx)));
        let color = class_color(c);
        let centred = style
            .color(&color)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let corners = [(dx - hw, -hh), (dx + hw, hh)];
        chart.plotting_area().draw(
            &(EmptyElement::at((ex * t, ey * t))
                + Rectangle::new(corners, WHITE.mix(0.85).filled())
                + Rectangle::new(corners, color)
                + Text::new(label, (dx, 0), centred)),
        )?;
    }
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
            title: "plain",
            note: "test accuracy 0.5",
            features: f.view(),
            labels: &labels,
            weights: w.view(),
        };
        write_feature_scatter(&path, "features", &[p, p]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR width and height (big-endian) at bytes 16..24.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), feature_figure_size(2));
        assert_eq!(
            feature_figure_size(2),
            (
                2 * CELL_W + 3 * GAP_PX,
                FIG_TITLE_PX + CELL_H + LEGEND_PX + GAP_PX
            )
        );
        let f3 = array![[1.0f32, 0.5, 0.0]];
        let bad = Panel {
            features: f3.view(),
            labels: &labels[..1],
            ..p
        };
        let err = write_feature_scatter(&path, "features", &[bad])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1x3"), "{err}");
        assert!(write_feature_scatter(&path, "features", &[]).is_err());
    }

    #[test]
    fn panels_fill_a_grid_of_at_most_three_columns() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (1, 2));
        assert_eq!(grid(3), (1, 3));
        assert_eq!(grid(4), (2, 2));
        assert_eq!(grid(6), (2, 3));
        assert_eq!(grid(7), (3, 3));
        let (w6, h6) = feature_figure_size(6);
        assert_eq!(
            (w6, h6 - feature_figure_size(3).1),
            (3 * CELL_W + 4 * GAP_PX, CELL_H + GAP_PX)
        );
        assert_eq!(weight_label(3), "W₃");
        assert_eq!(weight_label(12), "W₁₂");
    }

    /// Renders the figure into memory and counts dark pixels in a band: the title band, a
    /// panel's heading and the legend must hold text (dark ink on white), which fails if the
    /// font is missing (plotters then errors) or draws nothing.
    #[test]
    fn titles_headings_and_legend_are_drawn() {
        register_font().unwrap();
        let f = array![[1.0f32, 0.5], [-1.0, -0.2], [0.1, 2.0]];
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let labels = [0, 1, 1];
        let p = Panel {
            title: "lsoftmax:m=4,beta=0",
            note: "",
            features: f.view(),
            labels: &labels,
            weights: w.view(),
        };
        let (width, height) = feature_figure_size(1);
        let mut buf = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            draw_feature_figure(&root, "Test features", &[p]).unwrap();
            root.present().unwrap();
        }
        let ink = |y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (0..width).map(move |x| ((y * width + x) * 3) as usize))
                .filter(|&i| buf[i] < 100 && buf[i + 1] < 100 && buf[i + 2] < 100)
                .count()
        };
        let title = ink(0, FIG_TITLE_PX);
        let heading = ink(FIG_TITLE_PX, FIG_TITLE_PX + HEAD_PX);
        let legend = ink(height - GAP_PX - LEGEND_PX, height - GAP_PX);
        assert!(title > 50, "title band has {title} dark pixels");
        assert!(heading > 50, "panel heading has {heading} dark pixels");
        assert!(legend > 50, "legend band has {legend} dark pixels");
    }
}
