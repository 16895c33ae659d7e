//! PNG plots with plotters' bitmap backend. Text is drawn with DejaVu Sans, shipped inside the
//! `dejavu` crate and registered with plotters' `ab_glyph` feature, so no system font is needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{Measurement, Report};

const COLORS: [RGBColor; 10] = [
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

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Registers the shipped font once; every plot below uses "sans-serif".
pub fn init_font() -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the shipped DejaVu font did not load"))
}

fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.01, 10.0);
    }
    ((lo * 0.7).max(0.001), (hi * 1.5).max(0.01))
}

/// "nines" axis: x = -log10(1 - q), so p50 = 0.3, p99 = 2, p99.9 = 3.
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// Latency by percentile for every scenario of the full suite (and the ceiling).
pub fn latency(report: &Report, path: &Path) -> anyhow::Result<()> {
    latency_of(
        &report.ceiling,
        &report.runs,
        "Latency by percentile (closed loop unless marked open)",
        path,
    )
}

/// Latency by percentile of `runs` beside the ceiling's, titled `caption`.
pub fn latency_of(
    ceiling: &Measurement,
    runs: &[Measurement],
    caption: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<&Measurement> = std::iter::once(ceiling).chain(runs.iter()).collect();
    let (lo, hi) = log_range(series.iter().flat_map(|m| m.quantiles.iter().map(|q| q.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4f64, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log)")
        .x_labels(5)
        .x_label_formatter(&|x| {
            let p = format!("{:.2}", 100.0 * (1.0 - 10f64.powf(-x)));
            format!("p{}", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .draw()
        .map_err(err)?;
    for (i, m) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let label = if m.mode == "open" {
            format!("{} (open {:.0}/s)", m.name, m.offered.unwrap_or(0.0))
        } else {
            m.name.to_owned()
        };
        chart
            .draw_series(LineSeries::new(
                m.quantiles.iter().map(|&(q, v)| (nines(q), v.max(lo))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Open-loop create message: achieved throughput and p99 against the offered rate.
pub fn sweep(report: &Report, path: &Path) -> anyhow::Result<()> {
    sweep_of(&report.sweep, path)
}

/// The same, for any open-loop series.
pub fn sweep_of(sweep: &[Measurement], path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(550);
    let max_offered = sweep
        .iter()
        .filter_map(|m| m.offered)
        .fold(1.0f64, f64::max)
        * 1.05;
    let max_done = sweep.iter().map(|m| m.throughput).fold(1.0f64, f64::max) * 1.1;
    let top = max_offered.max(max_done);
    let mut chart = ChartBuilder::on(&left)
        .caption("Create message: throughput vs offered", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..top, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered (req/s)")
        .y_desc("achieved (req/s)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (top, top)], BLACK.mix(0.3)))
        .map_err(err)?;
    let points: Vec<(f64, f64)> = sweep
        .iter()
        .map(|m| (m.offered.unwrap_or(0.0), m.throughput))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), COLORS[0].stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 4, COLORS[0].filled())),
        )
        .map_err(err)?;
    let (lo, hi) = log_range(sweep.iter().map(|m| m.p99_ms).chain([10.0]));
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "Create message: p99 vs offered (10 ms target)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_offered, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered (req/s)")
        .y_desc("p99 (ms, log)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 10.0), (max_offered, 10.0)],
            COLORS[3],
        ))
        .map_err(err)?;
    let points: Vec<(f64, f64)> = sweep
        .iter()
        .map(|m| (m.offered.unwrap_or(0.0), m.p99_ms.max(lo)))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), COLORS[1].stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 4, COLORS[1].filled())),
        )
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One panel of the growth plot: area, title, y axis, the value plotted.
type Panel<'a, 'b> = (
    &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    &'static str,
    &'static str,
    fn(&Measurement) -> f64,
);

/// Create and read against the number of stored messages: throughput and p99.
pub fn growth(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(550);
    let stored = report.growth.iter().map(|m| m.stored.max(1) as f64);
    let (x_lo, x_hi) = log_range(stored);
    let kinds: Vec<_> = {
        let mut kinds: Vec<_> = report.growth.iter().map(|m| m.scenario).collect();
        kinds.dedup();
        kinds.sort_by_key(|k| k.name());
        kinds.dedup();
        kinds
    };
    let panels: [Panel<'_, '_>; 2] = [
        (&left, "Throughput vs stored messages", "req/s (log)", |m| {
            m.throughput
        }),
        (
            &right,
            "p99 vs stored messages (closed loop)",
            "p99 ms (log)",
            |m| m.p99_ms,
        ),
    ];
    for (area, title, y_desc, value) in panels {
        let (lo, hi) = log_range(report.growth.iter().map(value));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("messages stored (log)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        for (i, kind) in kinds.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = report
                .growth
                .iter()
                .filter(|m| m.scenario == *kind)
                .map(|m| (m.stored.max(1) as f64, value(m).max(lo)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(kind.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
