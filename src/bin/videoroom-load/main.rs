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
//! This binary uses nothing of the server's modules: it is a client, like a browser (`--turn`
//! builds its TURN messages with `videoroom::rtc::turn::client`, a client's message builder;
//! `--ice-tcp` frames with the server's RFC 4571 framer).
mod batch;
mod dtls;
mod feedback;
mod ice_tcp;
mod janus;
mod media;
mod peer;
mod phoenix;
mod srtp;
mod stats;
mod turn;

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
    /// Every peer's media goes through the server's TURN relay over UDP (`--turn` on the
    /// server; the URL and credentials come with the channel join), relay candidates only.
    #[arg(long, conflicts_with = "janus")]
    turn: bool,
    /// Peers use ICE-TCP only: one active TCP candidate, no UDP candidate, so all media goes
    /// over RFC 4571-framed TCP to the server's passive candidate (for the CPU cost of ICE-TCP
    /// next to UDP). The packet counters then count frames.
    #[arg(long, conflicts_with = "turn")]
    ice_tcp: bool,
    /// How received RTP is read: `direct` opens SRTP beside str0m once DTLS has exported the
    /// keys and sends the receiver's feedback itself (str0m keeps ICE, DTLS and RTCP), `str0m`
    /// hands every datagram to str0m (~1.5× the CPU per received packet).
    #[arg(long, value_enum, default_value_t = ReceivePath::Direct)]
    receive_path: ReceivePath,
    /// A label copied into the JSON result (e.g. the scenario's name).
    #[arg(long, default_value = "")]
    label: String,
}

/// See `--receive-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReceivePath {
    Direct,
    Str0m,
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

/// The whole run: peers join, setup, warm-up, the measured window, the report; `false` when
/// `--check` failed.
async fn run(args: Args) -> bool {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let stop = Rc::new(Cell::new(false));
    let ctx = run_context(&args, stats.clone(), stop.clone());
    println!(
        "videoroom-load: {} room(s) × ({} publisher(s) + {} subscriber(s)) = {} peers against {}",
        args.rooms,
        args.publishers,
        args.subscribers,
        args.total_peers(),
        args.server
    );
    let spawner = spawn_peers(&args, ctx, stats.clone());
    let mut progress = Progress::new(&args, &stats);
    let setup_took = wait_for_setup(&args, &stats, &spawner, &mut progress).await;
    progress
        .wait_until("warmup", &stats, Instant::now() + secs(args.warmup))
        .await;
    // The measured window.
    stats.borrow_mut().latency = stats::Histogram::default();
    let first = snapshot(&stats, args.server_pid);
    progress
        .wait_until("measure", &stats, Instant::now() + secs(args.duration))
        .await;
    let end = snapshot(&stats, args.server_pid);
    stop.set(true);
    let result = report(&args, &stats.borrow(), &first, &end, setup_took);
    publish_result(&args, &result);
    !args.check || check(&args, &stats.borrow())
}

impl Args {
    /// Peers in one room.
    fn peers_per_room(&self) -> usize {
        self.publishers + self.subscribers
    }

    /// Peers of the whole run.
    fn total_peers(&self) -> usize {
        self.rooms * self.peers_per_room()
    }
}

/// `seconds` as a duration.
fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// What every peer task shares: where to connect, what to send, the certificate, the counters.
fn run_context(args: &Args, stats: Rc<RefCell<Stats>>, stop: Rc<Cell<bool>>) -> Rc<RunContext> {
    Rc::new(RunContext {
        server: args.server,
        local_ip: args.local_ip,
        shape: MediaShape {
            fps: args.fps.max(1),
            packets_per_frame: args.packets_per_frame.max(1),
            packets_per_keyframe: args.packets_per_keyframe.max(1),
            video_bytes: args.video_bytes,
            keyframe_interval: secs(args.keyframe_interval.max(0.1)),
            audio_pps: args.audio_pps,
            audio_bytes: args.audio_bytes,
            no_video: args.no_video,
        },
        epoch: Instant::now(),
        dtls_cert: str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate(),
        stats,
        stop,
        janus: args.janus,
        turn: args.turn,
        ice_tcp: args.ice_tcp,
        direct_receive: args.receive_path == ReceivePath::Direct,
        recv: RefCell::default(),
        plain: RefCell::new(vec![0; 2048]),
        crypto: dtls::crypto_provider(),
    })
}

/// Starts the peers at the join rate (a room's publishers before its subscribers, room by room)
/// in a task of their own, so progress lines keep coming meanwhile.
fn spawn_peers(
    args: &Args,
    ctx: Rc<RunContext>,
    stats: Rc<RefCell<Stats>>,
) -> tokio::task::JoinHandle<()> {
    let (rooms, publishers, per_room) = (args.rooms, args.publishers, args.peers_per_room());
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let prefix = args.room_prefix.clone();
    let gap = secs(1.0 / args.join_rate.max(0.001));
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
}

/// Waits until every peer is started and has joined or failed, and every peer that should
/// receive media does (or has failed), or until `--setup-timeout`; returns how long that took.
async fn wait_for_setup(
    args: &Args,
    stats: &RefCell<Stats>,
    spawner: &tokio::task::JoinHandle<()>,
    progress: &mut Progress,
) -> Duration {
    let start = progress.start;
    let deadline = start + secs(args.setup_timeout);
    loop {
        tokio::time::sleep(progress.tick).await;
        progress.print("setup", stats);
        let s = stats.borrow();
        // A peer that failed will never receive: it no longer holds the setup up.
        let settled = s
            .peers
            .iter()
            .filter(|p| {
                receiving(p, args)
                    || (expects_media(p, args.publishers) && p.error.borrow().is_some())
            })
            .count();
        if spawner.is_finished()
            && settled == receivers_expected(&s, args.publishers)
            && s.joined + s.failed >= args.total_peers()
        {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "setup timed out after {:.0} s; measuring anyway",
                args.setup_timeout
            );
            break;
        }
    }
    start.elapsed()
}

/// The progress lines on stderr: one every `--progress` seconds, with rates since the last.
struct Progress {
    /// Between two lines; `None`: no progress lines.
    every: Option<Duration>,
    /// How often the run looks at its state (at most every 500 ms).
    tick: Duration,
    /// When the run started.
    start: Instant,
    /// When the last line was printed.
    last_line: Instant,
    /// The figures of the last line.
    last: Snapshot,
    server_pid: Option<u32>,
    total: usize,
    publishers: usize,
}

impl Progress {
    /// Progress from now on, at `--progress` (none at 0).
    fn new(args: &Args, stats: &RefCell<Stats>) -> Progress {
        let every = (args.progress > 0.0).then(|| secs(args.progress));
        let half_second = Duration::from_millis(500);
        Progress {
            every,
            tick: every.unwrap_or(half_second).min(half_second),
            start: Instant::now(),
            last_line: Instant::now(),
            last: snapshot(stats, args.server_pid),
            server_pid: args.server_pid,
            total: args.total_peers(),
            publishers: args.publishers,
        }
    }

    /// Prints a line for `phase` when one is due.
    fn print(&mut self, phase: &str, stats: &RefCell<Stats>) {
        let Some(every) = self.every else { return };
        if self.last_line.elapsed() < every {
            return;
        }
        self.last_line = Instant::now();
        let now = snapshot(stats, self.server_pid);
        eprintln!(
            "{}",
            progress_line(
                phase,
                self.start,
                &stats.borrow(),
                &self.last,
                &now,
                self.total,
                self.publishers
            )
        );
        self.last = now;
    }

    /// Waits until `until`, printing the lines of `phase` that fall due meanwhile.
    async fn wait_until(&mut self, phase: &str, stats: &RefCell<Stats>, until: Instant) {
        while Instant::now() < until {
            tokio::time::sleep(
                self.tick
                    .min(until.saturating_duration_since(Instant::now())),
            )
            .await;
            self.print(phase, stats);
        }
    }
}

/// Prints the result as one `result {…}` line and appends it to `--json`.
fn publish_result(args: &Args, result: &serde_json::Value) {
    println!("result {result}");
    let Some(path) = &args.json else { return };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{result}"));
    if let Err(e) = written {
        eprintln!("cannot append the result to {}: {e}", path.display());
    }
}

/// How many peers should receive media.
fn receivers_expected(s: &Stats, publishers: usize) -> usize {
    s.peers
        .iter()
        .filter(|p| expects_media(p, publishers))
        .count()
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
    s: &Stats,
    last: &Snapshot,
    now: &Snapshot,
    total: usize,
    publishers: usize,
) -> String {
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
        receivers_expected(s, publishers),
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

/// What the measured window saw: its length, how far the counters went, and CPU use.
struct Window {
    /// Its length in seconds.
    secs: f64,
    /// The counters' growth over it.
    d: Counters,
    /// The server's CPU and memory (with `--server-pid`).
    server: Option<ServerLoad>,
    /// The load generator's own share of one core (NaN when /proc is unreadable).
    own_cpu: f64,
}

/// The server's share of one core, CPU µs per forwarded RTP packet, and RSS at the end.
#[derive(Clone, Copy)]
struct ServerLoad {
    cpu_share: f64,
    us_per_packet: f64,
    rss_kib: u64,
}

impl Window {
    /// The window from `first` to `end`.
    fn between(first: &Snapshot, end: &Snapshot) -> Window {
        let secs = end.at.duration_since(first.at).as_secs_f64().max(1e-3);
        let d = end.counters.since(&first.counters);
        let cpu_secs =
            |a: &ProcessSample, b: &ProcessSample| b.cpu.saturating_sub(a.cpu).as_secs_f64();
        let server = match (&first.server, &end.server) {
            (Some(a), Some(b)) => {
                let cpu = cpu_secs(a, b);
                Some(ServerLoad {
                    cpu_share: cpu / secs,
                    us_per_packet: cpu * 1e6 / d.rtp_received().max(1) as f64,
                    rss_kib: b.rss_kib,
                })
            }
            _ => None,
        };
        let own_cpu = match (&first.own, &end.own) {
            (Some(a), Some(b)) => cpu_secs(a, b) / secs,
            _ => f64::NAN,
        };
        Window {
            secs,
            d,
            server,
            own_cpu,
        }
    }

    /// `n` per second of the window.
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs
    }
}

/// The 50th, 95th and 99th percentiles of `h`, in milliseconds.
fn percentiles_ms(h: &stats::Histogram) -> [f64; 3] {
    [0.5, 0.95, 0.99].map(|p| h.percentile(p) / 1000.0)
}

/// Prints the report of the measured window and returns its figures as JSON.
fn report(
    args: &Args,
    s: &Stats,
    first: &Snapshot,
    end: &Snapshot,
    setup: Duration,
) -> serde_json::Value {
    let window = Window::between(first, end);
    print_setup(s, setup);
    print_traffic(s, &window);
    print_failed_peers(s);
    if let Some(server) = window.server {
        println!(
            "  server: cpu {:.1}% of one core, {:.2} µs per forwarded RTP packet, RSS {:.1} MiB",
            100.0 * server.cpu_share,
            server.us_per_packet,
            server.rss_kib as f64 / 1024.0
        );
    }
    result_json(args, s, &window, setup)
}

/// The report's first line: how many peers joined and how quickly video reached them.
fn print_setup(s: &Stats, setup: Duration) {
    let [p50, p95, p99] = percentiles_ms(&s.first_video);
    println!(
        "peers: {} joined, {} connected, {} failed; setup {:.1} s; join to first video p50 {p50:.0} ms p95 {p95:.0} ms p99 {p99:.0} ms ({} peers)",
        s.joined,
        s.connected,
        s.failed,
        setup.as_secs_f64(),
        s.first_video.count()
    );
}

/// The window's rates each way, its loss, jitter, feedback and latency, and the load
/// generator's own CPU.
fn print_traffic(s: &Stats, w: &Window) {
    let d = &w.d;
    println!("measured {:.1} s:", w.secs);
    let direction = |name: &str, packets, bytes, whose: &str, video, audio| {
        println!(
            "  server {name}: {:>9} pkt/s {:>9}B/s   (RTP {whose}: video {}/s, audio {}/s)",
            si(w.rate(packets)),
            si(w.rate(bytes)),
            si(w.rate(video)),
            si(w.rate(audio))
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
    let [p50, p95, p99] = percentiles_ms(&s.latency);
    println!(
        "  forwarding latency p50 {p50:.2} ms  p95 {p95:.2} ms  p99 {p99:.2} ms  ({} packets)",
        s.latency.count()
    );
    println!(
        "  load generator: cpu {:.1}% of one core, {:.1}% of received RTP read directly",
        100.0 * w.own_cpu,
        100.0 * d.rtp_received_direct as f64 / d.rtp_received().max(1) as f64
    );
}

/// The first five failed peers with their errors, and how many more failed.
fn print_failed_peers(s: &Stats) {
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
}

/// The report's figures as one JSON object (the `result` line and `--json`).
fn result_json(args: &Args, s: &Stats, w: &Window, setup: Duration) -> serde_json::Value {
    let d = &w.d;
    json!({
        "label": args.label,
        "server": if args.janus { "janus" } else { "videoroom" },
        "turn": args.turn,
        "rooms": args.rooms,
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "peers": s.peers.len(),
        "joined": s.joined,
        "failed": s.failed,
        "seconds": w.secs,
        "setup_seconds": setup.as_secs_f64(),
        "in_pps": w.rate(d.udp_sent),
        "in_bps": w.rate(d.udp_sent_bytes),
        "out_pps": w.rate(d.udp_received),
        "out_bps": w.rate(d.udp_received_bytes),
        "rtp_in_pps": w.rate(d.rtp_sent_video + d.rtp_sent_audio),
        "rtp_out_pps": w.rate(d.rtp_received()),
        "rtp_out_video_pps": w.rate(d.rtp_received_video),
        "loss": d.loss(),
        "jitter_ms": d.jitter_ms(),
        "nacks_sent": d.nacks_sent,
        "plis_sent": d.plis_sent,
        "nacks_received": d.nacks_received,
        "plis_received": d.plis_received,
        "first_video_ms": percentiles_ms(&s.first_video),
        "latency_ms": percentiles_ms(&s.latency),
        "server_cpu_share": w.server.map(|v| v.cpu_share),
        "server_us_per_packet": w.server.map(|v| v.us_per_packet),
        "server_rss_kib": w.server.map(|v| v.rss_kib),
        "load_cpu_share": w.own_cpu,
        "rtp_direct_share": d.rtp_received_direct as f64 / d.rtp_received().max(1) as f64,
        "receive_path": if args.receive_path == ReceivePath::Direct { "direct" } else { "str0m" },
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
    // Our server's sessions negotiate AES-GCM, which the direct path opens: if it opened
    // nothing, the path is broken and str0m quietly took every packet.
    let c = &s.counters;
    if args.receive_path == ReceivePath::Direct
        && !args.janus
        && c.rtp_received() > 0
        && c.rtp_received_direct == 0
    {
        println!(
            "check: the direct receive path opened none of {} packets",
            c.rtp_received()
        );
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
