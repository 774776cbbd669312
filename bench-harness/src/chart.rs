//! SVG charts (plotters): throughput bars per scenario with the repeats' range as whiskers,
//! latency-vs-load curves with percentiles, and broker memory against connections held.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

use crate::stats::Spread;

/// One colour per broker, stable across charts (by the broker's place in the run).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x4c, 0x72, 0xb0), // blue
    RGBColor(0xdd, 0x84, 0x52), // orange
    RGBColor(0x55, 0xa8, 0x68), // green
    RGBColor(0xc4, 0x4e, 0x52), // red
    RGBColor(0x81, 0x72, 0xb3), // purple
    RGBColor(0x93, 0x78, 0x60), // brown
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

fn canvas(path: &Path) -> Result<DrawingArea<SVGBackend<'_>, Shift>, String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// A bar per broker at its median, with a whisker from the slowest to the fastest repeat.
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    bars: &[(String, Spread)],
) -> Result<(), String> {
    if bars.is_empty() {
        return Err(format!("chart {}: nothing to draw", path.display()));
    }
    let root = canvas(path)?;
    let top = bars
        .iter()
        .map(|(_, s)| s.max)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let names: Vec<String> = bars.iter().map(|(n, _)| n.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(90)
        // A segmented range over 0..n holds n + 1 slots; 0..n-1 holds exactly one per bar.
        .build_cartesian_2d((0..bars.len().max(2) - 1).into_segmented(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| human(*v))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, s))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), s.median),
                ],
                colour(i).filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))
        .map_err(err)?;
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, (_, s))| s.count > 1)
                .map(|(i, (_, s))| {
                    ErrorBar::new_vertical(
                        SegmentValue::CenterOf(i),
                        s.min,
                        s.median,
                        s.max,
                        BLACK.stroke_width(2),
                        14,
                    )
                }),
        )
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, s))| {
            Text::new(
                human(s.median),
                (SegmentValue::CenterOf(i), s.max.max(s.median) + top * 0.01),
                TextStyle::from(("sans-serif", 15).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// One broker's latency curve: (offered msg/s, p50 µs, p99 µs, p99.9 µs) per load point.
pub struct Curve {
    pub broker: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Latency (log scale) against offered load, a line per broker and percentile.
pub fn latency_curves(path: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    let all = curves.iter().flat_map(|c| c.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max);
    let x_min = all.clone().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let y_max = all
        .clone()
        .map(|p| p.1.max(p.2).max(p.3))
        .fold(0.0, f64::max);
    let y_min = all.map(|p| p.1).fold(f64::INFINITY, f64::min);
    if !(x_max > 0.0 && x_min > 0.0 && y_max > 0.0 && y_min.is_finite()) {
        return Err(format!("chart {}: nothing to draw", path.display()));
    }
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(80)
        // Both axes logarithmic: brokers' saturation points differ by a hundredfold here,
        // and a linear load axis would flatten the slower ones against zero.
        .build_cartesian_2d(
            (x_min * 0.7..x_max * 1.4).log_scale(),
            (y_min.max(0.1) * 0.7..y_max * 1.5).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered load, msg/s (log)")
        .y_desc("latency from intended send, µs (log); thick p50, medium p99, thin p99.9")
        .x_label_formatter(&|v| human(*v))
        .y_label_formatter(&|v| human(*v))
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let col = colour(i);
        // Thicker for the median: the eye should follow it first.
        for (name, width) in [("p50", 3), ("p99", 2), ("p99.9", 1)] {
            let get = |p: &(f64, f64, f64, f64)| match name {
                "p50" => p.1,
                "p99" => p.2,
                _ => p.3,
            };
            let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, get(p).max(0.1))).collect();
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), col.stroke_width(width)))
                .map_err(err)?;
            // One legend entry per broker (its colour); the line width says the percentile.
            if name == "p50" {
                series.label(c.broker.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3))
                });
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, width + 1, col.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Broker RSS (MiB) against connections held, a line per broker.
pub fn memory(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max);
    let y_max = all.map(|p| p.1).fold(0.0, f64::max);
    if !(x_max > 0.0 && y_max > 0.0) {
        return Err(format!("chart {}: nothing to draw", path.display()));
    }
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("connections held")
        .y_desc("broker RSS, MiB")
        .x_label_formatter(&|v| human(*v))
        .draw()
        .map_err(err)?;
    for (i, (broker, pts)) in series.iter().enumerate() {
        let col = colour(i);
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(err)?
            .label(broker.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// 1234567 → "1.23M": axis labels people can read at a glance.
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("culex-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    /// The trimmed content of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    fn spread(median: f64, min: f64, max: f64) -> Spread {
        Spread {
            median,
            min,
            max,
            rel_spread: (max - min) / median,
            count: 3,
        }
    }

    #[test]
    fn bar_chart_has_a_bar_and_label_per_broker() {
        let path = tmp("bars.svg");
        let data = vec![
            (
                "mosquitto".to_string(),
                spread(142_000.0, 130_000.0, 150_000.0),
            ),
            (
                "culex-1".to_string(),
                spread(1_500_000.0, 1_400_000.0, 1_600_000.0),
            ),
        ];
        bars(&path, "500 pairs, QoS 0", "delivered msg/s", &data).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for want in ["500 pairs, QoS 0", "mosquitto", "culex-1", "1.50M", "142k"] {
            assert!(
                texts.iter().any(|t| t == want),
                "no text `{want}` in {texts:?}"
            );
        }
        let fills = ["#4C72B0", "#DD8452"].map(|c| svg.to_uppercase().matches(c).count());
        assert!(
            fills.iter().all(|n| *n >= 1),
            "one filled bar per broker: {fills:?}"
        );
        assert!(bars(&path, "empty", "y", &[]).is_err());
    }

    #[test]
    fn latency_and_memory_charts_draw_every_series() {
        let path = tmp("curve.svg");
        let curves = vec![
            Curve {
                broker: "mosquitto".into(),
                points: vec![(1e4, 50.0, 200.0, 900.0), (5e4, 80.0, 400.0, 2000.0)],
            },
            Curve {
                broker: "culex-1".into(),
                points: vec![(1e5, 20.0, 60.0, 300.0), (5e5, 30.0, 90.0, 500.0)],
            },
        ];
        latency_curves(&path, "latency vs load", &curves).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        let texts = texts(&svg);
        for label in ["mosquitto", "culex-1"] {
            assert!(texts.iter().any(|t| t == label), "legend entry {label}");
        }
        // 2 brokers × 3 percentiles, each a polyline (plus a legend sample each).
        assert!(svg.matches("<polyline").count() >= 6);
        let path = tmp("memory.svg");
        let series = vec![(
            "mosquitto".to_string(),
            vec![(10_000.0, 12.0), (19_000.0, 20.0)],
        )];
        memory(&path, "memory vs connections", &series).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.contains("connections held") && svg.contains("<circle"));
        assert!(memory(&path, "none", &[]).is_err());
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(142_000.0), "142k");
        assert_eq!(human(2_500.0), "2.5k");
        assert_eq!(human(42.0), "42");
        assert_eq!(human(0.5), "0.50");
    }
}
