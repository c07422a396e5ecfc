//! Turns the JSON lines of a benchmark run (`test/bench/run.sh`, one `videoroom-load --json` line
//! per scenario) into the Markdown tables and PNG curves of BENCHMARKS.md: one table and one plot
//! per family of scenarios (labels `fanout-<subscribers>`, `meeting-<n>`, `rooms-<rooms>x<n>`),
//! the server's CPU time per forwarded RTP packet and its RSS against the family's size.
//!
//! `bench_report <results.jsonl> <out_dir>`: writes `<out_dir>/tables.md` and
//! `<out_dir>/<family>.png`.
#[path = "plot_font.rs"]
mod plot_font;

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

/// The families, in the order of BENCHMARKS.md: label prefix, title, what the x axis counts.
const FAMILIES: [(&str, &str, &str); 3] = [
    ("fanout", "1 publisher, N subscribers", "subscribers"),
    (
        "meeting",
        "N×N meeting (everyone publishes audio + video)",
        "participants",
    ),
    ("rooms", "many small meetings", "rooms"),
];

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: bench_report <results.jsonl> <out_dir>".into());
    };
    let text = std::fs::read_to_string(&input).map_err(|e| format!("{input}: {e}"))?;
    let results: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    plot_font::register_font()?;
    let mut md = String::new();
    for (prefix, title, unit) in FAMILIES {
        let rows: Vec<&Value> = results
            .iter()
            .filter(|r| r["label"].as_str().unwrap_or("").starts_with(prefix))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "### {title}\n");
        md.push_str(&table(&rows));
        let points: Vec<(f64, f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let x = family_size(prefix, r)?;
                Some((x, r["server_us_per_packet"].as_f64()?, kib(r) / 1024.0))
            })
            .collect();
        let png = Path::new(&out).join(format!("{prefix}.png"));
        plot(&png, title, unit, &points)?;
        let _ = writeln!(md, "\n![{title}]({prefix}.png)\n");
    }
    let path = Path::new(&out).join("tables.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn kib(r: &Value) -> f64 {
    r["server_rss_kib"].as_f64().unwrap_or(0.0)
}

/// The x of a result in its family's curve.
fn family_size(prefix: &str, r: &Value) -> Option<f64> {
    match prefix {
        "fanout" => r["subscribers"].as_f64(),
        "meeting" => r["publishers"].as_f64(),
        _ => r["rooms"].as_f64(),
    }
}

/// `12.3 k`-style numbers.
fn si(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// The table of one family, in the columns SFU benchmarks use (LiveKit's: publishers,
/// subscribers, bytes/s and packets/s in and out, CPU) plus ours.
fn table(rows: &[&Value]) -> String {
    let mut t = String::from(
        "| rooms | pubs/room | subs/room | packets/s in / out | bytes/s in / out | server CPU | CPU per forwarded RTP packet | server RSS | loss | forwarding latency p50 / p99 | join → first video p50 / p95 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let pair = |k: &str, i: usize| r[k][i].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} / {} | {}B / {}B | {:.0}% | {:.2} µs | {:.1} MiB | {:.2}% | {:.2} / {:.2} ms | {:.0} / {:.0} ms |",
            r["rooms"],
            r["publishers"],
            r["subscribers"],
            si(f("in_pps")),
            si(f("out_pps")),
            si(f("in_bps")),
            si(f("out_bps")),
            100.0 * f("server_cpu_share"),
            f("server_us_per_packet"),
            kib(r) / 1024.0,
            100.0 * f("loss"),
            pair("latency_ms", 0),
            pair("latency_ms", 2),
            pair("first_video_ms", 0),
            pair("first_video_ms", 1),
        );
    }
    t
}

/// CPU per forwarded packet (left axis) and RSS (right axis) against `unit`.
fn plot(path: &Path, title: &str, unit: &str, points: &[(f64, f64, f64)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let max_cpu = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        * 1.2;
    let max_rss = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("videoroom: {title}"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x, 0.0..max_cpu)
        .map_err(|e| err(&e))?
        .set_secondary_coord(0.0..max_x, 0.0..max_rss);
    chart
        .configure_mesh()
        .x_desc(unit)
        .y_desc("server CPU per forwarded packet (µs)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("server RSS (MiB)")
        .draw()
        .map_err(|e| err(&e))?;
    let cpu = points.iter().map(|p| (p.0, p.1));
    chart
        .draw_series(LineSeries::new(cpu.clone(), BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("CPU per forwarded packet (µs)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(cpu.map(|p| Circle::new(p, 4, BLUE.filled())))
        .map_err(|e| err(&e))?;
    chart
        .draw_secondary_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.2)),
            RED.mix(0.7),
        ))
        .map_err(|e| err(&e))?
        .label("RSS (MiB)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.7)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
