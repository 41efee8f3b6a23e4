//! SVG charts with plotters' SVG backend. Text goes into the SVG as `<text>`
//! elements (plotters without its `ttf` feature estimates text sizes itself),
//! so no system font or fontconfig is needed to draw them.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::harness::Record;
use crate::spec::size_label;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";

/// Writes every chart into `dir` (created if missing); returns the files.
pub fn write_all(dir: &Path, records: &[Record]) -> Res<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let mut sizes: Vec<usize> = records.iter().filter(|r| r.pattern == "pingpong").map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        let path = dir.join(format!("latency-{}.svg", size_label(size).replace(' ', "")));
        latency_chart(&path, records, size)?;
        files.push(path);
    }
    if records.iter().any(|r| r.pattern == "stream") {
        for (name, bytes) in [("throughput-gbps.svg", true), ("throughput-msgs.svg", false)] {
            let path = dir.join(name);
            throughput_chart(&path, records, bytes)?;
            files.push(path);
        }
    }
    Ok(files)
}

/// Grouped bars (p50, p99, p99.9) per transport, log scale.
fn latency_chart(path: &Path, records: &[Record], size: usize) -> Res<()> {
    let rows: Vec<&Record> =
        // shmbus-loan echoes only the header: its latency is not that of a copied message.
        records
            .iter()
            .filter(|r| r.pattern == "pingpong" && r.size == size && r.p50_ns.is_some() && r.id != "shmbus-loan")
            .collect();
    let n = rows.len().max(1);
    let values: Vec<f64> = rows.iter().flat_map(|r| [r.p50_ns, r.p99_ns, r.p999_ns]).flatten().collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (y0, y1) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    let width = (140 + 95 * n as u32).max(700);
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("One-way latency, {} messages (ping-pong; lower is better)", size_label(size)), (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("nanoseconds (log scale)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    // Transport names under the groups, placed where the chart maps each center.
    let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, r) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y0));
        root.draw(&Text::new(r.id.clone(), (px, py + 10), style.clone()))?;
    }
    let series = [("p50", 0usize, BLUE), ("p99", 1, RGBColor(230, 140, 0)), ("p99.9", 2, RED)];
    for (name, k, color) in series {
        let bars = rows.iter().enumerate().filter_map(move |(i, r)| {
            let v = [r.p50_ns, r.p99_ns, r.p999_ns][k]?;
            let x0 = i as f64 - 0.36 + k as f64 * 0.24;
            Some(Rectangle::new([(x0, y0), (x0 + 0.22, v.max(y0))], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line per transport: payload GB/s (or msg/s) against message size, log-log.
fn throughput_chart(path: &Path, records: &[Record], bytes: bool) -> Res<()> {
    // shmbus-loan never copies the payload: its "GB/s" is not comparable (see the table's note).
    let rows: Vec<&Record> =
        records.iter().filter(|r| r.pattern == "stream" && r.msgs_per_s.is_some() && r.id != "shmbus-loan").collect();
    let value = |r: &Record| if bytes { r.bytes_per_s.map(|b| b / 1e9) } else { r.msgs_per_s };
    let mut ids: Vec<&str> = Vec::new();
    for r in &rows {
        if !ids.contains(&r.id.as_str()) {
            ids.push(&r.id);
        }
    }
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.size as f64).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let (x0, x1) = match (sizes.first(), sizes.last()) {
        (Some(&a), Some(&b)) if b > a => (a / 1.5, b * 1.5),
        (Some(&a), _) => (a / 2.0, a * 2.0),
        _ => (1.0, 10.0),
    };
    let values: Vec<f64> = rows.iter().filter_map(|r| value(r)).filter(|v| *v > 0.0).collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 { (lo, hi) } else { (1.0, 10.0) };
    let (y0, y1) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = if bytes {
        "Stream throughput 1 -> 1: payload GB/s (higher is better)"
    } else {
        "Stream throughput 1 -> 1: messages/s (higher is better)"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale().with_key_points(sizes.clone()), (y0..y1).log_scale())?;
    let fmt_y = |v: &f64| if bytes { format!("{v}") } else { format!("{v:.0e}") };
    chart
        .configure_mesh()
        .x_desc("message size (log scale)")
        .y_desc(if bytes { "GB/s (log scale)" } else { "messages/s (log scale)" })
        .x_label_formatter(&|v| size_label(v.round() as usize))
        .y_label_formatter(&fmt_y)
        .draw()?;
    for (i, id) in ids.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<(f64, f64)> =
            rows.iter().filter(|r| r.id == *id).filter_map(|r| Some((r.size as f64, value(r)?))).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(id.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
