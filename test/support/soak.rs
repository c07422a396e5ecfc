//! Soak: churn of headless peers with audio and video across many rooms against the real server
//! binary, for minutes or hours. Every `--interval` one room gains or loses a peer (a clean `leave`
//! or, one time in four, a socket dropped without a close frame, as a killed tab does). The server's
//! resident memory and its `/metrics` gauges are sampled every `--sample` seconds; media between
//! peers that have shared a room for a while is checked. At the end every peer leaves and the
//! rooms, peers, sockets and channels in `/metrics` must come back to zero.
//!
//! Writes `soak.csv` (one row per sample), `soak-rss.png` (the RSS curve) and `soak-server.log` to
//! `--out` (default `$ARTIFACTS_DIR` or `test-artifacts/`). Exits non-zero when a check fails:
//! a join refused or timed out, a pair of peers without media, gauges not back to zero, or resident
//! memory that kept growing (more than `--max-rss-growth-mb` from the end of the warm-up to the end).
//!
//! `cargo run --release --example soak -- --minutes 30` (the documented long run);
//! `test/run_all.sh` runs `--minutes 2`.

#[allow(dead_code)]
#[path = "../peer/mod.rs"]
mod peer;
#[path = "plot_font.rs"]
mod plot_font;
#[allow(dead_code)]
#[path = "../kit/server_process.rs"]
mod server_process;

use clap::Parser;
use peer::client::{HeadlessPeer, PeerOptions};
use peer::scenario::{active_tracks, receives};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use server_process::{ServerProcess, family_sum};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Churn, media and memory soak against the real server binary.
#[derive(Parser, Debug)]
struct Args {
    /// How long the churn runs.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Rooms the peers churn across.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Most peers one room holds at a time.
    #[arg(long, default_value_t = 3)]
    max_per_room: usize,
    /// Seconds between two churn steps (one join or one leave).
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Seconds between two samples of memory and gauges.
    #[arg(long, default_value_t = 5.0)]
    sample: f64,
    /// Seconds two peers share a room before each must receive the other's media.
    #[arg(long, default_value_t = 10.0)]
    media_after: f64,
    /// Seconds at the start not counted in the memory growth (allocator and caches warm up).
    #[arg(long, default_value_t = 30.0)]
    warmup: f64,
    /// Largest accepted growth of resident memory after the warm-up, in MB.
    #[arg(long, default_value_t = 24.0)]
    max_rss_growth_mb: f64,
    /// Seed of the churn's choices (rooms, join or leave, how a peer leaves).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server binary (default: `videoroom` next to this example's target directory).
    #[arg(long, env = "VIDEOROOM_BIN")]
    server: Option<PathBuf>,
    /// Where the CSV, the PNG and the server log go.
    #[arg(long, env = "ARTIFACTS_DIR", default_value = "test-artifacts")]
    out: PathBuf,
}

/// A peer in the churn, with the time it was accepted.
struct Member {
    peer: HeadlessPeer,
    id: String,
    since: Instant,
}

/// One sample of the server's memory and gauges.
#[derive(Clone, Copy)]
struct Sample {
    minutes: f64,
    rss_mb: f64,
    rooms: f64,
    peers: f64,
    sockets: f64,
}

/// The pairs of peers whose media was checked, and how many.
struct MediaChecks {
    /// How long two peers share a room before each must receive the other's tracks.
    after: Duration,
    /// Ordered pairs `(subscriber, publisher)` already checked.
    checked: HashSet<(String, String)>,
}

/// Why the soak failed, one line each.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn add(&mut self, line: String) {
        eprintln!("FAIL {line}");
        self.0.push(line);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).expect("the output directory can be created");
    let binary = args.server.clone().unwrap_or_else(default_server_binary);
    let binary_text = binary.to_str().expect("a UTF-8 path to the server binary");
    let server = ServerProcess::start(binary_text, &["--room-grace", "1"], &[]);
    println!(
        "soak: {} rooms, up to {} peers each, one churn step every {} s, for {} min, seed {} (server {})",
        args.rooms,
        args.max_per_room,
        args.interval,
        args.minutes,
        args.seed,
        binary.display()
    );

    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut rooms: Vec<Vec<Member>> = (0..args.rooms).map(|_| Vec::new()).collect();
    let mut failures = Failures::default();
    let mut media = MediaChecks {
        after: Duration::from_secs_f64(args.media_after),
        checked: HashSet::new(),
    };
    let mut samples: Vec<Sample> = Vec::new();
    let (mut joins, mut clean_leaves, mut dropped_sockets) = (0u64, 0u64, 0u64);
    let step = Duration::from_secs_f64(args.interval);
    let sample_every = Duration::from_secs_f64(args.sample);
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let t0 = Instant::now();
    let mut next_step = t0;
    let mut next_sample = t0;
    let mut serial = 0u64;

    while t0.elapsed() < run_for {
        let now = Instant::now();
        if now >= next_sample {
            next_sample += sample_every;
            let sample = take_sample(&server, t0).await;
            media.run(&rooms, &mut failures);
            println!(
                "[{:5.1} min] rss {:6.1} MB | rooms {:3} peers {:3} sockets {:3} | joins {joins} leaves {clean_leaves} dropped {dropped_sockets} media checks {} | failures {}",
                sample.minutes,
                sample.rss_mb,
                sample.rooms,
                sample.peers,
                sample.sockets,
                media.checked.len(),
                failures.0.len()
            );
            samples.push(sample);
        }
        if now >= next_step {
            next_step += step;
            let r = rng.random_range(0..rooms.len());
            let len = rooms[r].len();
            let join = len == 0 || (len < args.max_per_room && rng.random_bool(0.5));
            if join {
                serial += 1;
                let name = format!("soak{serial}");
                match join_peer(&server, r, &name).await {
                    Ok(member) => {
                        joins += 1;
                        rooms[r].push(member);
                    }
                    Err(e) => failures.add(format!("join of {name} to soak{r}: {e}")),
                }
            } else {
                let i = rng.random_range(0..len);
                let member = rooms[r].swap_remove(i);
                if rng.random_range(0..4) == 0 {
                    dropped_sockets += 1;
                    if let Err(e) = member.peer.drop_socket().await {
                        failures.add(format!(
                            "{} could not drop its socket: {e}",
                            member.peer.name
                        ));
                    }
                } else {
                    clean_leaves += 1;
                    if let Err(e) = member.peer.leave().await {
                        failures.add(format!("{} could not leave: {e}", member.peer.name));
                    }
                }
            }
        }
        let wake = next_step.min(next_sample);
        tokio::time::sleep_until(wake.into()).await;
    }

    media.run(&rooms, &mut failures);
    let churn_end = samples.last().copied();
    for member in rooms.iter_mut().flat_map(std::mem::take) {
        if let Err(e) = member.peer.leave().await {
            failures.add(format!(
                "{} could not leave at the end: {e}",
                member.peer.name
            ));
        }
    }
    let settled = wait_for_zero(&server, &mut failures).await;
    std::fs::write(args.out.join("soak-server.log"), server.log())
        .expect("the server log can be written");
    let idle = take_sample(&server, t0).await;
    samples.push(idle);
    println!(
        "soak done: {joins} joins, {clean_leaves} clean leaves, {dropped_sockets} dropped sockets, {} media pairs checked; gauges back to zero in {settled:.1} s",
        media.checked.len()
    );
    check_memory(&args, &samples, churn_end, idle, &mut failures);
    write_csv(&args.out.join("soak.csv"), &samples);
    match plot_rss(&args.out.join("soak-rss.png"), &samples, &args) {
        Ok(()) => println!("wrote {}", args.out.join("soak-rss.png").display()),
        Err(e) => failures.add(format!("the RSS plot could not be drawn: {e}")),
    }
    if failures.0.is_empty() {
        println!("soak passed");
        ExitCode::SUCCESS
    } else {
        eprintln!("soak failed: {} failures", failures.0.len());
        ExitCode::FAILURE
    }
}

/// `target/<profile>/videoroom`, next to `target/<profile>/examples/soak`.
fn default_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("videoroom"))
        .expect("examples live under target/<profile>/examples")
}

/// Joins room `soak<room>` and waits for `peerAccepted`.
async fn join_peer(server: &ServerProcess, room: usize, name: &str) -> Result<Member, String> {
    let mut options = PeerOptions::new(name);
    // Long keyframe interval, like a real camera encoder between PLIs.
    options.keyframe_interval = 90;
    let peer = HeadlessPeer::join(&server.socket_url(), &format!("soak{room}"), options).await?;
    peer.wait_for("peerAccepted", Duration::from_secs(30), |o| {
        o.peer_id.is_some()
    })
    .await?;
    let id = peer.peer_id().expect("accepted");
    Ok(Member {
        peer,
        id,
        since: Instant::now(),
    })
}

impl MediaChecks {
    /// Every pair of peers that has shared a room for `after` must receive each other's tracks
    /// (checked once per ordered pair).
    fn run(&mut self, rooms: &[Vec<Member>], failures: &mut Failures) {
        for room in rooms {
            let settled: Vec<&Member> = room
                .iter()
                .filter(|m| m.since.elapsed() >= self.after)
                .collect();
            for subscriber in &settled {
                for publisher in settled.iter().filter(|m| m.id != subscriber.id) {
                    let pair = (subscriber.id.clone(), publisher.id.clone());
                    if !self.checked.insert(pair) {
                        continue;
                    }
                    let tracks = active_tracks(&publisher.peer);
                    let ok = !tracks.is_empty()
                        && subscriber
                            .peer
                            .observe(|o| receives(o, &publisher.id, &tracks, 10));
                    if !ok {
                        failures.add(format!(
                            "{} receives no media of {} after {:?} together",
                            subscriber.peer.name, publisher.peer.name, self.after
                        ));
                    }
                }
            }
        }
    }
}

async fn take_sample(server: &ServerProcess, t0: Instant) -> Sample {
    let text = server.metrics().await;
    Sample {
        minutes: t0.elapsed().as_secs_f64() / 60.0,
        rss_mb: server.rss_mib(),
        rooms: family_sum(&text, "videoroom_rooms").unwrap_or(f64::NAN),
        peers: family_sum(&text, "videoroom_peers").unwrap_or(f64::NAN),
        sockets: family_sum(&text, "videoroom_sockets").unwrap_or(f64::NAN),
    }
}

/// Waits (up to 30 s: ICE consent and the room grace are a few seconds) until rooms, peers,
/// sockets and channels are zero; returns the seconds it took.
async fn wait_for_zero(server: &ServerProcess, failures: &mut Failures) -> f64 {
    let from = Instant::now();
    let names = [
        "videoroom_rooms",
        "videoroom_peers",
        "videoroom_sockets",
        "videoroom_channels",
        "videoroom_published_tracks",
        "videoroom_subscriptions",
    ];
    loop {
        let text = server.metrics().await;
        let left: Vec<String> = names
            .iter()
            .filter_map(|n| match family_sum(&text, n) {
                Some(0.0) => None,
                v => Some(format!("{n}={v:?}")),
            })
            .collect();
        if left.is_empty() {
            return from.elapsed().as_secs_f64();
        }
        if from.elapsed() > Duration::from_secs(30) {
            failures.add(format!("30 s after the last leave: {}", left.join(" ")));
            return from.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Resident memory after the warm-up must not keep growing: the last churn sample may exceed the
/// first sample after the warm-up by at most `--max-rss-growth-mb`.
fn check_memory(
    args: &Args,
    samples: &[Sample],
    churn_end: Option<Sample>,
    idle: Sample,
    failures: &mut Failures,
) {
    let warm = samples
        .iter()
        .find(|s| s.minutes * 60.0 >= args.warmup)
        .copied();
    let peak = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    match (warm, churn_end) {
        (Some(warm), Some(end)) => {
            let growth = end.rss_mb - warm.rss_mb;
            println!(
                "rss: {:.1} MB after the warm-up ({:.1} min), {:.1} MB at the end of the churn ({:+.1} MB), peak {:.1} MB, {:.1} MB idle after everyone left",
                warm.rss_mb, warm.minutes, end.rss_mb, growth, peak, idle.rss_mb
            );
            if growth > args.max_rss_growth_mb {
                failures.add(format!(
                    "resident memory grew {growth:.1} MB after the warm-up (limit {} MB)",
                    args.max_rss_growth_mb
                ));
            }
        }
        _ => failures.add("the run was too short to have samples after the warm-up".to_owned()),
    }
}

fn write_csv(path: &Path, samples: &[Sample]) {
    let mut csv = String::from("minutes,rss_mb,rooms,peers,sockets\n");
    for s in samples {
        csv.push_str(&format!(
            "{:.3},{:.2},{},{},{}\n",
            s.minutes, s.rss_mb, s.rooms, s.peers, s.sockets
        ));
    }
    std::fs::write(path, csv).expect("the CSV can be written");
}

/// The RSS curve (MB) with the number of peers on a second axis.
fn plot_rss(path: &Path, samples: &[Sample], args: &Args) -> Result<(), String> {
    plot_font::register_font()?;
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_minutes = samples.last().map_or(1.0, |s| s.minutes).max(0.1);
    let max_rss = samples.iter().map(|s| s.rss_mb).fold(1.0, f64::max) * 1.2;
    let max_peers = samples
        .iter()
        .map(|s| s.peers)
        .filter(|p| p.is_finite())
        .fold(1.0, f64::max)
        * 1.2;
    let caption = format!(
        "videoroom soak: resident memory, {} rooms, churn every {} s",
        args.rooms, args.interval
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..max_minutes, 0.0..max_rss)
        .map_err(|e| e.to_string())?
        .set_secondary_coord(0.0..max_minutes, 0.0..max_peers);
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("RSS (MB)")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .configure_secondary_axes()
        .y_desc("peers")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.minutes, s.rss_mb)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("RSS (MB)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            samples
                .iter()
                .filter(|s| s.peers.is_finite())
                .map(|s| (s.minutes, s.peers)),
            RED.mix(0.6),
        ))
        .map_err(|e| e.to_string())?
        .label("peers")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.6)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
