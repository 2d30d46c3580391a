//! The toy model's PNG plots: the 2-D test features with the class-weight directions, one
//! panel per margin ([`write_feature_scatter`], like Figure 2 of the L-Softmax paper), and
//! the target logit of each margin against the angle ([`write_target_logit_plot`]).
//!
//! Every plot carries its own title, axis labels and legend. Text is drawn with a font
//! shipped in the crate (`fonts/DejaVuSans-subset.ttf`, registered from bytes through
//! plotters' `ab_glyph` feature), never with a system font, so any machine draws the same
//! picture and a machine without fonts draws one at all.

mod features;
mod target;

pub use features::{Panel, feature_figure_size, write_feature_scatter};
pub use target::{target_figure_size, write_target_logit_plot};

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use lsoftmax_host::error::{Error, Result};

/// DejaVu Sans 2.37 from Debian's `fonts-dejavu-core`, cut down with fontTools' `pyftsubset`
/// to the characters a plot may need (ASCII, Latin-1, Greek, arrows, sub- and superscripts,
/// general punctuation, mathematical operators; 66 KB instead of 760 KB). Licence:
/// `fonts/COPYRIGHT-DejaVu`; the command that made it: `fonts/README.md`.
static FONT_TTF: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");

/// The family every text style of the plots names: plotters' own default family, so the
/// labels plotters draws by itself (tick labels) use the shipped font too.
const FAMILY: &str = "sans-serif";

/// Registers the shipped font as plotters' `sans-serif` family (once per process; later
/// calls return the first call's result). Without it plotters has no font to draw text
/// with and every plot with text fails.
pub fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_TTF)
                .map_err(|_| "plot font: the shipped TrueType file does not parse".to_string())
        })
        .clone()
        .map_err(Error::Train)
}

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

/// Light grey of reference lines (axes through the origin, `cos θ`).
const GREY: RGBColor = RGBColor(190, 190, 190);
/// Dark grey of secondary text (panel notes, legend captions).
const DARK: RGBColor = RGBColor(70, 70, 70);
/// Grid lines at the tick positions.
const GRID: RGBColor = RGBColor(236, 236, 236);

/// Pixel sizes of the text roles.
const TITLE_PT: f64 = 22.0;
const SUBTITLE_PT: f64 = 19.0;
const LABEL_PT: f64 = 16.0;
const TICK_PT: f64 = 14.0;

/// A text style of the shipped font.
fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle {
        font: (FAMILY, size).into_font(),
        color: color.to_backend_color(),
        pos: Pos::default(),
    }
}

/// Draws `text` centred horizontally at `x` with its top at `y` (area pixel coordinates).
fn draw_centred<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle<'_>,
    (x, y): (i32, i32),
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.draw_text(text, &style.pos(Pos::new(HPos::Center, VPos::Top)), (x, y))
}

/// A tick label: the value rounded to 3 decimals, shortest form, with a true minus sign
/// (plotters picks ticks at 1, 2, 5 × 10^k, so three decimals never lose a digit of one).
fn tick_label(v: &f64) -> String {
    let r = (v * 1e3).round() / 1e3;
    if r == 0.0 {
        "0".into()
    } else {
        format!("{r}").replace('-', "\u{2212}")
    }
}

/// What one legend entry shows in front of its text.
#[derive(Clone, Copy, Debug)]
enum Swatch {
    /// A filled dot, as the scatter points.
    Dot(RGBColor),
    /// A line of the given width, dashed or solid.
    Line {
        color: RGBColor,
        width: u32,
        dashed: bool,
    },
}

/// Width of a line swatch plus the gap to its text, in pixels.
const SWATCH_PX: i32 = 34;
/// The same for a dot swatch.
const DOT_PX: i32 = 16;
/// Left of a chart's label area: plotters draws the rotated y-axis description a few
/// pixels left of the area's edge, so it needs this room not to be cut.
const DESC_PAD_PX: u32 = 12;

/// Draws one legend entry with its vertical centre at `(x, y)` (area pixels) and returns
/// its width in pixels.
fn draw_legend_entry<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    swatch: Swatch,
    text: &str,
    style: &TextStyle<'_>,
) -> std::result::Result<i32, DrawingAreaErrorKind<DB::ErrorType>> {
    let text_x = match swatch {
        Swatch::Dot(_) => x + DOT_PX,
        Swatch::Line { .. } => x + SWATCH_PX,
    };
    match swatch {
        Swatch::Dot(color) => area.draw(&Circle::new((x + 6, y), 5, color.filled()))?,
        Swatch::Line {
            color,
            width,
            dashed: false,
        } => area.draw(&PathElement::new(
            vec![(x, y), (x + 26, y)],
            color.stroke_width(width),
        ))?,
        Swatch::Line {
            color,
            width,
            dashed: true,
        } => area.draw(&DashedPathElement::new(
            vec![(x, y), (x + 26, y)],
            6,
            4,
            color.stroke_width(width),
        ))?,
    }
    let left = style.pos(Pos::new(HPos::Left, VPos::Center));
    area.draw_text(text, &left, (text_x, y))?;
    let (w, _) = area.estimate_text_size(text, style)?;
    Ok(text_x - x + w as i32)
}

/// Maps a drawing error to the crate's file error for `path`.
fn file_err(path: &std::path::Path, e: &dyn std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders `text` alone into a small white bitmap and returns its pixels (RGB).
    fn render(text: &str) -> Vec<u8> {
        let (w, h) = (64u32, 40u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE).unwrap();
            root.draw_text(text, &text_style(24.0, BLACK), (8, 4))
                .unwrap();
            root.present().unwrap();
        }
        buf
    }

    #[test]
    fn the_shipped_font_registers_and_draws_ink() {
        register_font().unwrap();
        register_font().expect("a second registration is a no-op");
        let ink = |px: &[u8]| px.iter().filter(|&&b| b < 128).count();
        assert!(ink(&render("W")) > 20, "no ink for W");
        let mut buf = vec![0u8; 10 * 10 * 3];
        let area = BitMapBackend::with_buffer(&mut buf, (10, 10)).into_drawing_area();
        let (w, h) = area
            .estimate_text_size("lsoftmax:m=4,beta=0", &text_style(16.0, BLACK))
            .unwrap();
        assert!(w > 100 && h > 8, "implausible text box {w}x{h}");
    }

    /// Every character the plots draw has a glyph of its own in the cut-down font: a missing
    /// one renders as the font's "missing glyph" box, the same picture as a private-use
    /// code point that no font maps.
    #[test]
    fn every_character_the_plots_use_has_a_glyph() {
        register_font().unwrap();
        let missing = render("\u{e000}");
        let used = (' '..='~').chain("θπβ‖·−×°≈≤≥÷₀₁₂₃₄₅₆₇₈₉–—…".chars());
        let bad: String = used
            .filter(|&c| c != ' ' && render(&c.to_string()) == missing)
            .collect();
        assert!(bad.is_empty(), "no glyph in the plot font for {bad:?}");
    }

    #[test]
    fn tick_labels_are_short_and_use_a_true_minus() {
        assert_eq!(tick_label(&0.30000000000000004), "0.3");
        assert_eq!(tick_label(&-20.0), "\u{2212}20");
        assert_eq!(tick_label(&-0.0), "0");
        assert_eq!(tick_label(&2.5), "2.5");
    }
}
