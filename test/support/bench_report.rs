//! Turns the JSON lines of a benchmark run (`test/bench/run.sh`, one `videoroom-load --json` line
//! per scenario) into the Markdown tables and PNG curves of BENCHMARKS.md: one table and one plot
//! per family of scenarios (labels `fanout-<subscribers>`, `ice-tcp-fanout-<subscribers>`,
//! `turn-fanout-<subscribers>`,
//! `meeting-<n>`, `rooms-<rooms>x<n>`),
//! the server's CPU time per forwarded RTP packet and its RSS against the family's size, each
//! server (videoroom, Janus) its own rows and curves, and where both ran a scenario, the ratio.
//! Then the load generator's capacity (labels `loadgen-<receive path>-<subscribers>`): what it
//! received with the share of its CPU it got.
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
const FAMILIES: [(&str, &str, &str); 5] = [
    ("fanout", "1 publisher, N subscribers", "subscribers"),
    (
        "ice-tcp-fanout",
        "1 publisher, N subscribers, every peer over ICE-TCP",
        "subscribers",
    ),
    (
        "turn-fanout",
        "1 publisher, N subscribers, every peer through the TURN relay (UDP)",
        "subscribers",
    ),
    (
        "meeting",
        "N×N meeting (everyone publishes audio + video)",
        "participants",
    ),
    ("rooms", "many small meetings", "rooms"),
];

/// One server's curve: its name and (size, CPU µs per packet, RSS MiB) points.
type Series = (String, Vec<(f64, f64, f64)>);

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
        md.push_str(&ratios(&rows));
        let series: Vec<Series> = ["videoroom", "janus"]
            .iter()
            .map(|server| {
                let points = rows
                    .iter()
                    .filter(|r| server_of(r) == *server)
                    .filter_map(|r| {
                        let x = family_size(prefix, r)?;
                        Some((x, r["server_us_per_packet"].as_f64()?, kib(r) / 1024.0))
                    })
                    .collect();
                (server.to_string(), points)
            })
            .filter(|(_, points): &(String, Vec<_>)| !points.is_empty())
            .collect();
        let png = Path::new(&out).join(format!("{prefix}.png"));
        plot(&png, title, unit, &series)?;
        let _ = writeln!(md, "\n![{title}]({prefix}.png)\n");
    }
    let capacity: Vec<&Value> = results
        .iter()
        .filter(|r| r["label"].as_str().unwrap_or("").starts_with("loadgen-"))
        .collect();
    if !capacity.is_empty() {
        md.push_str("### The load generator's capacity (a busy loop shares its CPU)\n\n");
        md.push_str(&capacity_table(&capacity));
    }
    let path = Path::new(&out).join("tables.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Which server a result measured (older results: videoroom).
fn server_of(r: &Value) -> &str {
    r["server"].as_str().unwrap_or("videoroom")
}

/// Where videoroom and Janus ran the same scenario: their CPU per packet and RSS side by side.
fn ratios(rows: &[&Value]) -> String {
    let mut t = String::new();
    for r in rows.iter().filter(|r| server_of(r) == "videoroom") {
        let Some(j) = rows
            .iter()
            .find(|j| server_of(j) == "janus" && j["label"] == r["label"])
        else {
            continue;
        };
        if t.is_empty() {
            t.push_str(
                "\n| scenario | videoroom CPU per packet | Janus CPU per packet | videoroom / Janus | videoroom RSS | Janus RSS |\n\
                 |---|---|---|---|---|---|\n",
            );
        }
        let us = |v: &Value| v["server_us_per_packet"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "| {} | {:.2} µs | {:.2} µs | {:.2}× | {:.1} MiB | {:.1} MiB |",
            r["label"].as_str().unwrap_or(""),
            us(r),
            us(j),
            us(r) / us(j),
            kib(r) / 1024.0,
            kib(j) / 1024.0
        );
    }
    t
}

fn kib(r: &Value) -> f64 {
    r["server_rss_kib"].as_f64().unwrap_or(0.0)
}

/// The x of a result in its family's curve.
fn family_size(prefix: &str, r: &Value) -> Option<f64> {
    match prefix {
        "fanout" | "ice-tcp-fanout" | "turn-fanout" => r["subscribers"].as_f64(),
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
        "| server | rooms | pubs/room | subs/room | packets/s in / out | bytes/s in / out | server CPU | CPU per forwarded RTP packet | server RSS | loss | forwarding latency p50 / p99 | join → first video p50 / p95 | load generator CPU |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let pair = |k: &str, i: usize| r[k][i].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} / {} | {}B / {}B | {:.0}% | {:.2} µs | {:.1} MiB | {:.2}% | {:.2} / {:.2} ms | {:.0} / {:.0} ms | {:.0}% |",
            server_of(r),
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
            100.0 * f("load_cpu_share"),
        );
    }
    t
}

/// The load generator's rows: packets it received per second with the share of its CPU it got,
/// hence per CPU-second (what one whole core would take), and whether it kept up (loss).
fn capacity_table(rows: &[&Value]) -> String {
    let mut t = String::from(
        "| receive path | subscribers | its CPU share | RTP packets/s received | loss | CPU per received packet | packets per CPU-second | forwarding latency p50 / p99 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let pair = |k: &str, i: usize| r[k][i].as_f64().unwrap_or(f64::NAN);
        let per_second = f("out_pps") / f("load_cpu_share");
        let _ = writeln!(
            t,
            "| {} | {} | {:.0}% | {} | {:.2}% | {:.2} µs | {} | {:.1} / {:.1} ms |",
            r["receive_path"].as_str().unwrap_or("str0m"),
            r["subscribers"],
            100.0 * f("load_cpu_share"),
            si(f("rtp_out_pps")),
            100.0 * f("loss"),
            1e6 / per_second,
            si(per_second),
            pair("latency_ms", 0),
            pair("latency_ms", 2),
        );
    }
    t
}

/// CPU per forwarded packet (left axis, solid) and RSS (right axis, thin) against `unit`, one
/// colour per server.
fn plot(path: &Path, title: &str, unit: &str, series: &[Series]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_x = all().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let max_cpu = all()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        * 1.2;
    let max_rss = all().map(|p| p.2).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: server CPU per forwarded packet and RSS"),
            ("sans-serif", 22),
        )
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
        .y_desc("CPU per forwarded packet (µs)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("RSS (MiB)")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (server, points)) in series.iter().enumerate() {
        let colour = if i == 0 { BLUE } else { GREEN };
        let cpu = points.iter().map(|p| (p.0, p.1));
        chart
            .draw_series(LineSeries::new(cpu.clone(), colour.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(format!("{server}: CPU per packet (µs)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
        chart
            .draw_series(cpu.map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| err(&e))?;
        let rss_colour = colour.mix(0.5);
        chart
            .draw_secondary_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.2)),
                rss_colour,
            ))
            .map_err(|e| err(&e))?
            .label(format!("{server}: RSS (MiB)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], rss_colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
