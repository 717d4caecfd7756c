//! PNG plots of training and evaluation, so a person can look rather than read: loss curves,
//! accuracy per method (bars with their spread over seeds) and confusion matrices.
//!
//! Text is drawn with ab_glyph from DejaVu Sans, loaded from the system (Debian's
//! `fonts-dejavu-core`, which `scripts/setup.sh` installs), so no font library is linked.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::linear::Scores;
use super::EvalError;

/// The family name the font is registered under.
const FONT: &str = "sans-serif";
/// Where DejaVu Sans is found.
const FONT_FILES: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

/// Loads and registers the font once per process.
fn font(path: &Path) -> Result<(), EvalError> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let bytes = FONT_FILES.iter().find_map(|f| std::fs::read(f).ok()).ok_or_else(|| {
            format!("no DejaVu Sans font in {FONT_FILES:?} (apt-get install fonts-dejavu-core)")
        })?;
        plotters::style::register_font(FONT, FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| "DejaVu Sans could not be parsed".to_owned())
    });
    loaded.clone().map_err(|what| EvalError::Plot { path: path.to_path_buf(), what })
}

fn plot_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> EvalError + '_ {
    move |e| EvalError::Plot { path: path.to_path_buf(), what: e.to_string() }
}

/// `n` categories on an axis (plotters' integer ranges include their end).
fn segments(n: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

/// One bar: a method's mean accuracy and its spread (half the range, or a standard
/// deviation; 0 for a single run).
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub mean: f64,
    pub spread: f64,
}

/// Bars of `y_label` per method, with spread whiskers.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[Bar]) -> Result<(), EvalError> {
    font(path)?;
    let err = plot_error(path);
    let width = (160 + 110 * bars.len() as u32).max(640);
    let root = BitMapBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let top = bars.iter().map(|b| b.mean + b.spread).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(segments(bars.len()), 0.0..top)
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(bars.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    let color = |i: usize| Palette99::pick(i).to_rgba();
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let (l, r) = (SegmentValue::Exact(i), SegmentValue::Exact(i + 1));
            let mut rect = Rectangle::new([(l, 0.0), (r, b.mean)], color(i).filled());
            rect.set_margin(0, 0, 12, 12);
            rect
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().filter(|(_, b)| b.spread > 0.0).map(|(i, b)| {
            let x = SegmentValue::CenterOf(i);
            PathElement::new(
                vec![(x.clone(), b.mean - b.spread), (x, b.mean + b.spread)],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let at = (SegmentValue::CenterOf(i), b.mean + b.spread + top * 0.01);
            let style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            Text::new(format!("{:.1}", b.mean), at, style)
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// One line per run: `(x, y)` points, e.g. (step, loss).
pub fn curves(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Result<(), EvalError> {
    font(path)?;
    let err = plot_error(path);
    let points = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points.filter(|(_, y)| y.is_finite()) {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// The confusion matrix of `scores` as a heat map: rows are true labels, columns predicted,
/// each cell shaded by the fraction of its row and labelled with its count.
pub fn confusion(path: &Path, title: &str, scores: &Scores) -> Result<(), EvalError> {
    font(path)?;
    let err = plot_error(path);
    let n = scores.names.len();
    let side = (260 + 40 * n as u32).min(1600);
    let root = BitMapBackend::new(path, (side + 100, side)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(110)
        .y_label_area_size(140)
        .build_cartesian_2d(segments(n), segments(n))
        .map_err(|e| err(&e))?;
    let names = &scores.names;
    let name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => {
            n.checked_sub(1 + *i).and_then(|j| names.get(j)).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    let col_name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&col_name)
        .y_label_formatter(&name)
        .x_label_style((FONT, 12).into_font().transform(FontTransform::Rotate90))
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| err(&e))?;
    let cells = scores.confusion.iter().enumerate().flat_map(|(t, row)| {
        let total = row.iter().sum::<u32>().max(1) as f64;
        row.iter().enumerate().map(move |(p, &c)| (t, p, c, f64::from(c) / total))
    });
    let cells: Vec<_> = cells.collect();
    chart
        .draw_series(cells.iter().map(|&(t, p, _, f)| {
            let y = n - 1 - t;
            let shade = HSLColor(0.6, 0.7, 1.0 - 0.6 * f);
            Rectangle::new(
                [
                    (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                ],
                shade.filled(),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(cells.iter().filter(|c| c.2 > 0).map(|&(t, p, c, _)| {
            let at = (SegmentValue::CenterOf(p), SegmentValue::CenterOf(n - 1 - t));
            Text::new(c.to_string(), at, (FONT, 12))
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
