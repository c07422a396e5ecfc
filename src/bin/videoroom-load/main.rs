//! `videoroom-load`: a load generator for the videoroom server. R rooms, each with N publishers
//! (audio + video, receiving each other) and M receive-only subscribers, over the server's real
//! signalling (Phoenix channel V2 JSON over WebSocket, flat media events, the tutorial client's
//! sequence) and real WebRTC (str0m peers: ICE, DTLS, SRTP, one UDP socket each), all driven by
//! one thread. Publishers send VP8-shaped video at 720p rates and Opus-sized audio whose payloads
//! carry a send time, so subscribers measure forwarding latency, loss and jitter.
//!
//! A run: peers join at `--join-rate`; once every peer that should receive media does (or after
//! `--setup-timeout`) and `--warmup` has passed, counters are measured for `--duration` seconds,
//! with a progress line every `--progress` seconds on stderr; the report goes to stdout, its
//! figures also as one JSON line (`result {…}`, and appended to `--json`). With `--server-pid`
//! the server's CPU time and RSS are read from `/proc` over the same window. With `--check` the
//! exit status says whether every peer joined and every receiving peer got audio and video.
//!
//! This binary uses nothing of the server's modules: it is a client, like a browser.
mod janus;
mod media;
mod peer;
mod phoenix;
mod stats;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use media::MediaShape;
use peer::RunContext;
use stats::{Counters, PeerTally, ProcessSample, Stats, sample_process};

/// Load generator for the videoroom server: rooms of str0m WebRTC peers over the real
/// signalling, reporting packet rates, loss, jitter, NACKs, PLIs, join-to-first-video and
/// forwarding latency, and (with --server-pid) the server's CPU per forwarded packet and RSS.
#[derive(Parser, Debug)]
#[command(name = "videoroom-load", version)]
struct Args {
    /// The server's HTTP address; peers connect to ws://<server>/socket/websocket?vsn=2.0.0.
    #[arg(long, default_value = "127.0.0.1:4000")]
    server: SocketAddr,
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room: each sends audio and video and receives every other publisher.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per room: receive every publisher of the room, send nothing.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Seconds measured, after setup and warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Peers started per second (publishers of a room before its subscribers, room by room).
    #[arg(long, default_value_t = 200.0)]
    join_rate: f64,
    /// Longest wait, in seconds, for every receiving peer to get its first packets; the run
    /// then measures anyway (and `--check` fails).
    #[arg(long, default_value_t = 60.0)]
    setup_timeout: f64,
    /// Seconds between the end of setup and the start of the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Video frames per second of each publisher.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// RTP packets per video delta frame (25 fps × 8 = 200 packets/s, a 720p rate).
    #[arg(long, default_value_t = 8)]
    packets_per_frame: u32,
    /// RTP packets per video keyframe.
    #[arg(long, default_value_t = 24)]
    packets_per_keyframe: u32,
    /// Payload bytes of one video RTP packet.
    #[arg(long, default_value_t = 1200)]
    video_bytes: usize,
    /// Seconds between keyframes (a PLI also gets one at the next frame).
    #[arg(long, default_value_t = 3.0)]
    keyframe_interval: f64,
    /// Opus packets per second of each publisher (0: no audio track).
    #[arg(long, default_value_t = 50)]
    audio_pps: u32,
    /// Payload bytes of one Opus packet.
    #[arg(long, default_value_t = 100)]
    audio_bytes: usize,
    /// Publishers send audio only (no video track).
    #[arg(long)]
    no_video: bool,
    /// Rooms are named `<prefix>-<random>-<n>` (a fresh set per run).
    #[arg(long, default_value = "load")]
    room_prefix: String,
    /// Source address of every WebSocket and UDP socket.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// The server's process id: its CPU time (utime + stime) and RSS are read from /proc over
    /// the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
    /// Exit with status 1 unless every peer joined and every peer that should receive media got
    /// audio and video packets (no timing is checked).
    #[arg(long)]
    check: bool,
    /// Also append the result as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server is Janus: its WebSocket API at ws://<server>/ (subprotocol janus-protocol)
    /// and its VideoRoom plugin; the media side is the same. At most one publisher per room.
    #[arg(long)]
    janus: bool,
    /// A label copied into the JSON result (e.g. the scenario's name).
    #[arg(long, default_value = "")]
    label: String,
}

fn main() {
    let args = Args::parse();
    if args.janus && args.publishers > 1 {
        eprintln!("--janus supports one publisher per room");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = tokio::task::LocalSet::new().block_on(&runtime, run(args));
    std::process::exit(if ok { 0 } else { 1 });
}

/// One measured sample of everything: counters, when, and the server process.
struct Snapshot {
    at: Instant,
    counters: Counters,
    server: Option<ProcessSample>,
    /// This process (the load generator's own CPU: when it nears 100%, the figures measure it).
    own: Option<ProcessSample>,
}

fn snapshot(stats: &RefCell<Stats>, pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        counters: stats.borrow().counters,
        server: pid.and_then(sample_process),
        own: sample_process(std::process::id()),
    }
}

/// The whole run; `false` when `--check` failed.
async fn run(args: Args) -> bool {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let stop = Rc::new(Cell::new(false));
    let ctx = Rc::new(RunContext {
        server: args.server,
        local_ip: args.local_ip,
        shape: MediaShape {
            fps: args.fps.max(1),
            packets_per_frame: args.packets_per_frame.max(1),
            packets_per_keyframe: args.packets_per_keyframe.max(1),
            video_bytes: args.video_bytes,
            keyframe_interval: Duration::from_secs_f64(args.keyframe_interval.max(0.1)),
            audio_pps: args.audio_pps,
            audio_bytes: args.audio_bytes,
            no_video: args.no_video,
        },
        epoch: Instant::now(),
        dtls_cert: str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate(),
        stats: stats.clone(),
        stop: stop.clone(),
        janus: args.janus,
    });
    let per_room = args.publishers + args.subscribers;
    let total = args.rooms * per_room;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    println!(
        "videoroom-load: {} room(s) × ({} publisher(s) + {} subscriber(s)) = {total} peers against {}",
        args.rooms, args.publishers, args.subscribers, args.server
    );
    // Peers start at the join rate, in a task of their own so progress lines keep coming.
    let spawner = {
        let (ctx, stats) = (ctx.clone(), stats.clone());
        let (rooms, publishers, prefix) = (args.rooms, args.publishers, args.room_prefix.clone());
        let gap = Duration::from_secs_f64(1.0 / args.join_rate.max(0.001));
        tokio::task::spawn_local(async move {
            let mut next = tokio::time::Instant::now();
            for r in 0..rooms {
                let room = format!("{prefix}-{run_id}-{r}");
                for i in 0..per_room {
                    let publish = i < publishers;
                    let tally = Rc::new(PeerTally {
                        name: format!("{room}/{}{i}", if publish { "p" } else { "s" }),
                        publisher: publish,
                        ..PeerTally::default()
                    });
                    stats.borrow_mut().peers.push(tally.clone());
                    let index = (r * per_room + i) as u32;
                    tokio::task::spawn_local(peer::run(
                        ctx.clone(),
                        room.clone(),
                        index,
                        publish,
                        tally,
                    ));
                    next += gap;
                    tokio::time::sleep_until(next).await;
                }
            }
        })
    };
    let progress = (args.progress > 0.0).then(|| Duration::from_secs_f64(args.progress));
    let tick = progress
        .unwrap_or(Duration::from_millis(500))
        .min(Duration::from_millis(500));
    let receivers_expected = |s: &Stats| {
        s.peers
            .iter()
            .filter(|p| expects_media(p, args.publishers))
            .count()
    };
    let mut last = snapshot(&stats, args.server_pid);
    let mut last_line = Instant::now();
    let start = Instant::now();
    let mut printer = |phase: &str, stats: &RefCell<Stats>, last: &mut Snapshot, force: bool| {
        let Some(every) = progress else { return };
        if !force && last_line.elapsed() < every {
            return;
        }
        last_line = Instant::now();
        let now = snapshot(stats, args.server_pid);
        eprintln!(
            "{}",
            progress_line(phase, start, stats, last, &now, total, &receivers_expected)
        );
        *last = now;
    };
    // Setup: until every receiving peer receives, or the timeout.
    let setup_deadline = start + Duration::from_secs_f64(args.setup_timeout);
    loop {
        tokio::time::sleep(tick).await;
        printer("setup", &stats, &mut last, false);
        let s = stats.borrow();
        let spawned = spawner.is_finished();
        // A peer that failed will never receive: it no longer holds the setup up.
        let receiving = s
            .peers
            .iter()
            .filter(|p| {
                receiving(p, &args)
                    || (expects_media(p, args.publishers) && p.error.borrow().is_some())
            })
            .count();
        if spawned && receiving == receivers_expected(&s) && s.joined + s.failed >= total {
            break;
        }
        if Instant::now() >= setup_deadline {
            eprintln!(
                "setup timed out after {:.0} s; measuring anyway",
                args.setup_timeout
            );
            break;
        }
    }
    let setup_took = start.elapsed();
    let warm_until = Instant::now() + Duration::from_secs_f64(args.warmup);
    while Instant::now() < warm_until {
        tokio::time::sleep(tick).await;
        printer("warmup", &stats, &mut last, false);
    }
    // The measured window.
    stats.borrow_mut().latency = stats::Histogram::default();
    let first = snapshot(&stats, args.server_pid);
    let until = Instant::now() + Duration::from_secs_f64(args.duration);
    while Instant::now() < until {
        tokio::time::sleep(tick.min(until.saturating_duration_since(Instant::now()))).await;
        printer("measure", &stats, &mut last, false);
    }
    let end = snapshot(&stats, args.server_pid);
    stop.set(true);
    let result = report(&args, &stats.borrow(), &first, &end, setup_took);
    println!("result {result}");
    if let Some(path) = &args.json {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{result}"));
        if let Err(e) = written {
            eprintln!("cannot append the result to {}: {e}", path.display());
        }
    }
    !args.check || check(&args, &stats.borrow())
}

/// Whether a peer should receive media: someone else in its room publishes.
fn expects_media(p: &PeerTally, publishers: usize) -> bool {
    publishers > usize::from(p.publisher)
}

/// Whether a peer that should receive media has started to.
fn receiving(p: &PeerTally, args: &Args) -> bool {
    if !expects_media(p, args.publishers) {
        return false;
    }
    let video_ok = args.no_video || p.video_received.get() > 0;
    let audio_ok = args.audio_pps == 0 || p.audio_received.get() > 0;
    video_ok && audio_ok
}

/// One progress line: peers by stage, rates since the last line, loss, latency, server CPU.
fn progress_line(
    phase: &str,
    start: Instant,
    stats: &RefCell<Stats>,
    last: &Snapshot,
    now: &Snapshot,
    total: usize,
    receivers_expected: &dyn Fn(&Stats) -> usize,
) -> String {
    let s = stats.borrow();
    let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-3);
    let d = now.counters.since(&last.counters);
    let receiving = s
        .peers
        .iter()
        .filter(|p| p.video_received.get() + p.audio_received.get() > 0)
        .count();
    let cpu = match (&last.server, &now.server) {
        (Some(a), Some(b)) => format!(
            " | server cpu {:.0}% rss {:.1} MiB",
            100.0 * (b.cpu.saturating_sub(a.cpu)).as_secs_f64() / secs,
            b.rss_kib as f64 / 1024.0
        ),
        _ => String::new(),
    };
    format!(
        "[{:6.1}s] {phase:<7} joined {}/{total} connected {} receiving {}/{} failed {} | in {} pkt/s out {} pkt/s | loss {:.2}% | latency p50 {:.2} ms p99 {:.2} ms{cpu}",
        now.at.duration_since(start).as_secs_f64(),
        s.joined,
        s.connected,
        receiving,
        receivers_expected(&s),
        s.failed,
        si(d.udp_sent as f64 / secs),
        si(d.udp_received as f64 / secs),
        100.0 * d.loss(),
        s.latency.percentile(0.5) / 1000.0,
        s.latency.percentile(0.99) / 1000.0,
    )
}

/// `12.3k`-style numbers.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Prints the report of the measured window and returns its figures as JSON.
fn report(
    args: &Args,
    s: &Stats,
    first: &Snapshot,
    end: &Snapshot,
    setup: Duration,
) -> serde_json::Value {
    let secs = end.at.duration_since(first.at).as_secs_f64().max(1e-3);
    let d = end.counters.since(&first.counters);
    let rate = |n: u64| n as f64 / secs;
    let forwarded = d.rtp_received();
    let server = match (&first.server, &end.server) {
        (Some(a), Some(b)) => {
            let cpu = b.cpu.saturating_sub(a.cpu).as_secs_f64();
            Some((cpu / secs, cpu * 1e6 / forwarded.max(1) as f64, b.rss_kib))
        }
        _ => None,
    };
    let ms = |h: &stats::Histogram, p: f64| h.percentile(p) / 1000.0;
    println!(
        "peers: {} joined, {} connected, {} failed; setup {:.1} s; join to first video p50 {:.0} ms p95 {:.0} ms p99 {:.0} ms ({} peers)",
        s.joined,
        s.connected,
        s.failed,
        setup.as_secs_f64(),
        ms(&s.first_video, 0.5),
        ms(&s.first_video, 0.95),
        ms(&s.first_video, 0.99),
        s.first_video.count()
    );
    println!("measured {secs:.1} s:");
    let direction = |name: &str, packets, bytes, whose: &str, video, audio| {
        println!(
            "  server {name}: {:>9} pkt/s {:>9}B/s   (RTP {whose}: video {}/s, audio {}/s)",
            si(rate(packets)),
            si(rate(bytes)),
            si(rate(video)),
            si(rate(audio))
        );
    };
    direction(
        "in ",
        d.udp_sent,
        d.udp_sent_bytes,
        "from publishers",
        d.rtp_sent_video,
        d.rtp_sent_audio,
    );
    direction(
        "out",
        d.udp_received,
        d.udp_received_bytes,
        "to subscribers",
        d.rtp_received_video,
        d.rtp_received_audio,
    );
    println!(
        "  loss {:.3}%  jitter {:.3} ms  NACKs sent {} (reached publishers {})  PLIs sent {} (reached publishers {})",
        100.0 * d.loss(),
        d.jitter_ms(),
        d.nacks_sent,
        d.nacks_received,
        d.plis_sent,
        d.plis_received
    );
    println!(
        "  forwarding latency p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  ({} packets)",
        ms(&s.latency, 0.5),
        ms(&s.latency, 0.95),
        ms(&s.latency, 0.99),
        s.latency.count()
    );
    let own = match (&first.own, &end.own) {
        (Some(a), Some(b)) => b.cpu.saturating_sub(a.cpu).as_secs_f64() / secs,
        _ => f64::NAN,
    };
    println!("  load generator: cpu {:.1}% of one core", 100.0 * own);
    let errors: Vec<String> = s
        .peers
        .iter()
        .filter_map(|p| Some(format!("{}: {}", p.name, p.error.borrow().as_ref()?)))
        .collect();
    for e in errors.iter().take(5) {
        println!("  failed peer {e}");
    }
    if errors.len() > 5 {
        println!("  … and {} more failed peers", errors.len() - 5);
    }
    if let Some((share, per_packet, rss)) = server {
        println!(
            "  server: cpu {:.1}% of one core, {per_packet:.2} µs per forwarded RTP packet, RSS {:.1} MiB",
            100.0 * share,
            rss as f64 / 1024.0
        );
    }
    json!({
        "label": args.label,
        "server": if args.janus { "janus" } else { "videoroom" },
        "rooms": args.rooms,
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "peers": s.peers.len(),
        "joined": s.joined,
        "failed": s.failed,
        "seconds": secs,
        "setup_seconds": setup.as_secs_f64(),
        "in_pps": rate(d.udp_sent),
        "in_bps": rate(d.udp_sent_bytes),
        "out_pps": rate(d.udp_received),
        "out_bps": rate(d.udp_received_bytes),
        "rtp_in_pps": rate(d.rtp_sent_video + d.rtp_sent_audio),
        "rtp_out_pps": rate(forwarded),
        "rtp_out_video_pps": rate(d.rtp_received_video),
        "loss": d.loss(),
        "jitter_ms": d.jitter_ms(),
        "nacks_sent": d.nacks_sent,
        "plis_sent": d.plis_sent,
        "nacks_received": d.nacks_received,
        "plis_received": d.plis_received,
        "first_video_ms": [ms(&s.first_video, 0.5), ms(&s.first_video, 0.95), ms(&s.first_video, 0.99)],
        "latency_ms": [ms(&s.latency, 0.5), ms(&s.latency, 0.95), ms(&s.latency, 0.99)],
        "server_cpu_share": server.map(|v| v.0),
        "server_us_per_packet": server.map(|v| v.1),
        "server_rss_kib": server.map(|v| v.2),
        "load_cpu_share": own,
    })
}

/// `--check`: every peer joined, none failed, every receiving peer got audio and video.
fn check(args: &Args, s: &Stats) -> bool {
    let mut ok = true;
    for p in &s.peers {
        if let Some(e) = p.error.borrow().as_ref() {
            println!("check: {} failed: {e}", p.name);
            ok = false;
        } else if expects_media(p, args.publishers) && !receiving(p, args) {
            println!(
                "check: {} received {} video and {} audio packets",
                p.name,
                p.video_received.get(),
                p.audio_received.get()
            );
            ok = false;
        }
    }
    if s.joined < s.peers.len() {
        println!("check: only {} of {} peers joined", s.joined, s.peers.len());
        ok = false;
    }
    println!(
        "check: {}",
        if ok {
            "media flowed to every receiving peer"
        } else {
            "FAILED"
        }
    );
    ok
}
