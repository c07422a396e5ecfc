//! The media driver: owns one room's media plane and its I/O.
//!
//! How this works, in two layers (the str0m/quinn pattern):
//! - [`MediaDriver`] is sans-IO: datagrams, signalling calls and time go in, [`DriverOutput`]s
//!   come out (transmits, the core's events, the next deadline, and the set of local ICE ufrags
//!   whenever it changed). It is generic over the [`MediaCore`] it drives: the room's
//!   [`Engine`] in production, a bare [`Sfu`] in SFU-level tests. Every core call runs under
//!   `catch_unwind`; a panic marks the driver crashed and it does nothing more.
//! - [`MediaShell`] is the thin tokio shell around it: it owns the driver's [`UdpRoute`] in the
//!   shared [`crate::rtc::udp`] mux, publishes the ufrags there synchronously (so they are
//!   routable before the answer that carries them leaves), sends transmits without waiting and
//!   sleeps until the next datagram or deadline. [`MediaPlane`] makes one shell per room.
//!
//! "Which route owns this ufrag" has one home: the driver diffs the core's ufrags after every
//! signalling call (and at most once a second after timeouts, which is when failed peers are
//! dropped; a stale ufrag only routes STUN for a gone peer to a driver that ignores it) and the
//! shell hands the diff to the mux.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::rtc::engine::{Engine, EngineLimits, EngineOutput, SfuBackend};
use crate::rtc::metrics::{HEARTBEAT_INTERVAL, Heartbeats, Watch};
use crate::rtc::net::{Datagram, Transmit};
use crate::rtc::sfu::{Sfu, SfuConfig, SfuEvent, SfuOutput};
use crate::rtc::tcp::TcpMedia;
use crate::rtc::udp::{ROUTE_INBOX_CAPACITY, UdpMux, UdpMuxHandle, UdpRoute, candidate_addrs};

/// How often, at most, timeouts re-read the core's ufrags.
const UFRAG_RECHECK: Duration = Duration::from_secs(1);

/// One output of a [`MediaCore`].
#[derive(Debug)]
pub enum CoreOutput<E> {
    /// Send this datagram.
    Transmit(Transmit),
    /// Something for the owner (media events, peer failures, …).
    Event(E),
    /// Nothing more until this instant (or the next input).
    Timeout(Instant),
}

/// A sans-IO media state machine a [`MediaDriver`] can run.
pub trait MediaCore {
    /// What the core tells its owner.
    type Event;
    /// Feeds a received datagram.
    fn handle_datagram(&mut self, datagram: &Datagram);
    /// Advances time.
    fn handle_timeout(&mut self, now: Instant);
    /// The local ICE ufrags of every peer now.
    fn ice_ufrags(&self) -> Vec<String>;
    /// The next output; drained until [`CoreOutput::Timeout`] after every input.
    fn poll_output(&mut self) -> CoreOutput<Self::Event>;
}

impl<S: SfuBackend> MediaCore for Engine<S> {
    type Event = EngineOutput;
    fn handle_datagram(&mut self, d: &Datagram) {
        Engine::handle_datagram(self, d);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Engine::handle_timeout(self, now);
    }
    fn ice_ufrags(&self) -> Vec<String> {
        self.sfu().ice_ufrags()
    }
    fn poll_output(&mut self) -> CoreOutput<EngineOutput> {
        loop {
            return match Engine::poll_output(self) {
                EngineOutput::Transmit(t) => CoreOutput::Transmit(t),
                EngineOutput::Timeout(t) => CoreOutput::Timeout(t),
                // The driver tracks ufrags itself (one home); the engine's copy is redundant.
                EngineOutput::IceUfrags(_) => continue,
                other => CoreOutput::Event(other),
            };
        }
    }
}

impl MediaCore for Sfu {
    type Event = SfuEvent;
    fn handle_datagram(&mut self, d: &Datagram) {
        Sfu::handle_datagram(self, d);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Sfu::handle_timeout(self, now);
    }
    fn ice_ufrags(&self) -> Vec<String> {
        Sfu::ice_ufrags(self)
    }
    fn poll_output(&mut self) -> CoreOutput<SfuEvent> {
        match Sfu::poll_output(self) {
            SfuOutput::Transmit(t) => CoreOutput::Transmit(t),
            SfuOutput::Event(e) => CoreOutput::Event(e),
            SfuOutput::Timeout(t) => CoreOutput::Timeout(t),
        }
    }
}

/// One output of [`MediaDriver::poll_output`].
#[derive(Debug)]
pub enum DriverOutput<E> {
    /// The local ICE ufrags changed: route STUN for exactly these to this driver from now on.
    Ufrags(Vec<String>),
    /// Send this datagram.
    Transmit(Transmit),
    /// An event of the core for the owner.
    Event(E),
    /// Nothing more until this instant (or the next input).
    Timeout(Instant),
}

/// The sans-IO media driver (see the module docs).
pub struct MediaDriver<C> {
    label: String,
    core: C,
    published: Vec<String>,
    ufrags_changed: bool,
    next_ufrag_check: Option<Instant>,
    deadline: Option<Instant>,
    crash: Option<String>,
}

impl<C: MediaCore> MediaDriver<C> {
    /// A driver around `core`; `label` only appears in logs.
    pub fn new(label: impl Into<String>, core: C) -> Self {
        MediaDriver {
            label: label.into(),
            core,
            published: Vec::new(),
            ufrags_changed: false,
            next_ufrag_check: None,
            deadline: None,
            crash: None,
        }
    }

    /// The core, read-only.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// Why the driver crashed, if it did (a core call panicked).
    pub fn crashed(&self) -> Option<&str> {
        self.crash.as_deref()
    }

    /// When the driver wants [`Self::handle_timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Runs a signalling call on the core (offers, media events, peers joining or leaving),
    /// then re-reads its ufrags. `None` if the core panicked (now or before).
    pub fn signal<T>(&mut self, f: impl FnOnce(&mut C) -> T) -> Option<T> {
        let out = self.guarded(f);
        self.refresh_ufrags();
        out
    }

    /// Feeds a received datagram.
    pub fn handle_datagram(&mut self, datagram: &Datagram) {
        self.guarded(|c| c.handle_datagram(datagram));
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.deadline = None;
        self.guarded(|c| c.handle_timeout(now));
        if self.next_ufrag_check.is_none_or(|t| t <= now) {
            self.next_ufrag_check = Some(now + UFRAG_RECHECK);
            self.refresh_ufrags();
        }
    }

    /// The next output; drain until [`DriverOutput::Timeout`] after every input. A crashed
    /// driver returns a far deadline.
    pub fn poll_output(&mut self) -> DriverOutput<C::Event> {
        if self.ufrags_changed {
            self.ufrags_changed = false;
            return DriverOutput::Ufrags(self.published.clone());
        }
        match self.guarded(C::poll_output) {
            Some(CoreOutput::Transmit(t)) => DriverOutput::Transmit(t),
            Some(CoreOutput::Event(e)) => DriverOutput::Event(e),
            Some(CoreOutput::Timeout(t)) => {
                self.deadline = Some(t);
                DriverOutput::Timeout(t)
            }
            None => {
                self.deadline = None;
                DriverOutput::Timeout(Instant::now() + Duration::from_secs(3600))
            }
        }
    }

    fn refresh_ufrags(&mut self) {
        if let Some(ufrags) = self.guarded(|c| c.ice_ufrags())
            && ufrags != self.published
        {
            self.published = ufrags;
            self.ufrags_changed = true;
        }
    }

    fn guarded<T>(&mut self, f: impl FnOnce(&mut C) -> T) -> Option<T> {
        if self.crash.is_some() {
            return None;
        }
        let core = &mut self.core;
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(core))) {
            Ok(v) => Some(v),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!("{} media core crashed: {what}", self.label);
                self.crash = Some(what);
                None
            }
        }
    }
}

/// The tokio shell around a [`MediaDriver`] (see the module docs).
pub struct MediaShell<C> {
    driver: MediaDriver<C>,
    route: Option<UdpRoute>,
    /// Beaten every time the owner's loop waits (see [`Self::wait`]).
    watch: Option<Watch>,
    /// Counts transmits the socket could not take.
    send_failed: Option<prometheus_client::metrics::counter::Counter>,
}

impl<C: MediaCore> MediaShell<C> {
    /// A shell for `driver` on `route` (`None`: no media socket, signalling only).
    pub fn new(driver: MediaDriver<C>, route: Option<UdpRoute>) -> Self {
        MediaShell {
            driver,
            route,
            watch: None,
            send_failed: None,
        }
    }

    /// The same shell beating `watch` whenever its owner's loop comes round to [`Self::wait`]
    /// (at least every [`HEARTBEAT_INTERVAL`] when the loop is healthy), and counting failed
    /// sends in `send_failed`.
    pub fn watched(
        self,
        watch: Watch,
        send_failed: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        MediaShell {
            watch: Some(watch),
            send_failed: Some(send_failed),
            ..self
        }
    }

    /// The driver, for signalling calls ([`MediaDriver::signal`]).
    pub fn driver(&mut self) -> &mut MediaDriver<C> {
        &mut self.driver
    }

    /// Drains the driver without waiting: publishes ufrags, sends transmits (batched, and
    /// dropped if the socket cannot take them now: UDP semantics), and returns the next event
    /// for the owner; `None` when the driver is idle until its deadline. Call until `None` after
    /// every input. The batch is flushed before this returns, so nothing waits for the next call.
    pub fn poll_event(&mut self) -> Option<C::Event> {
        let event = loop {
            match self.driver.poll_output() {
                DriverOutput::Ufrags(ufrags) => {
                    if let Some(route) = &self.route {
                        route.set_ufrags(&ufrags);
                    }
                }
                DriverOutput::Transmit(t) => {
                    let Some(route) = &mut self.route else {
                        continue;
                    };
                    let destination = t.destination;
                    match route.queue(t) {
                        Ok(dropped) => self.count_send_failures(dropped),
                        Err(e) => {
                            self.count_send_failures(1);
                            log::debug!(
                                "{} datagram to {destination} dropped: {e}",
                                self.driver.label
                            );
                        }
                    }
                }
                DriverOutput::Event(e) => break Some(e),
                DriverOutput::Timeout(_) => break None,
            }
        };
        if let Some(route) = &mut self.route {
            let dropped = route.flush();
            self.count_send_failures(dropped);
        }
        event
    }

    fn count_send_failures(&self, n: usize) {
        if n > 0
            && let Some(c) = &self.send_failed
        {
            c.inc_by(n as u64);
        }
    }

    /// Waits for the next datagram or the deadline and feeds it to the driver (then call
    /// [`Self::poll_event`]); at the deadline, the datagrams already queued go in before the
    /// timeout. Cancel-safe: nothing is lost if another branch wins a `select!`.
    /// Returns after [`HEARTBEAT_INTERVAL`] at the latest, having done nothing, so a watched
    /// loop beats even when idle.
    pub async fn wait(&mut self) {
        let heartbeat = match &self.watch {
            Some(w) => {
                w.beat();
                Some(tokio::time::Instant::now() + HEARTBEAT_INTERVAL)
            }
            None => None,
        };
        let deadline = self.driver.deadline.map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let recv = async {
            match &mut self.route {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            datagram = recv => match datagram {
                Some(d) => self.driver.handle_datagram(&d),
                None => {
                    log::warn!("{} UDP mux stopped; media is off", self.driver.label);
                    self.route = None;
                }
            },
            () = sleep => {
                // Datagrams already waiting came in before this deadline: feed them first. A
                // loop that fell behind (a busy machine) would otherwise judge its peers'
                // silence (the SFU's failure detection) by how far behind it is, not by what
                // they sent, and drop every one of them at once.
                if let Some(route) = &mut self.route {
                    for _ in 0..ROUTE_INBOX_CAPACITY {
                        let Some(d) = route.try_recv() else { break };
                        self.driver.handle_datagram(&d);
                    }
                }
                self.driver.handle_timeout(Instant::now());
            }
            () = sleep_until(heartbeat) => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A fresh DTLS certificate from the crypto provider str0m is built with; `None` (logged) if it
/// cannot make one, in which case every peer's session generates its own.
pub fn generate_dtls_cert() -> Option<str0m::config::DtlsCert> {
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate();
    if cert.is_none() {
        log::warn!("media: no shared DTLS certificate, each peer generates one");
    }
    cert
}

/// A room's media: its engine and SFU behind one driver and shell.
pub type RoomMedia = MediaShell<Engine<Sfu>>;

/// What every room's media is made from: the SFU settings and the shared UDP mux.
#[derive(Clone, Default)]
pub struct MediaPlane {
    sfu: SfuConfig,
    udp: Option<UdpMuxHandle>,
    limits: EngineLimits,
    heartbeats: Heartbeats,
}

impl MediaPlane {
    /// Rooms with `sfu` settings on `udp` (`None`: signalling only, no media). Without a DTLS
    /// certificate in `sfu`, one is generated here, once, for every room of the plane.
    pub fn new(mut sfu: SfuConfig, udp: Option<UdpMuxHandle>) -> Self {
        if sfu.dtls_cert.is_none() {
            sfu.dtls_cert = generate_dtls_cert();
        }
        MediaPlane {
            sfu,
            udp,
            limits: EngineLimits::default(),
            heartbeats: Heartbeats::default(),
        }
    }

    /// The same plane whose rooms hold their peers to `limits`.
    pub fn with_limits(self, limits: EngineLimits) -> Self {
        MediaPlane { limits, ..self }
    }

    /// Starts the UDP mux on `socket` (inside a tokio runtime) and advertises its host
    /// candidates (plus `external_ip`) in `sfu`.
    pub fn on_socket(socket: UdpSocket, external_ip: Option<IpAddr>, sfu: SfuConfig) -> Self {
        Self::on_watched_socket(socket, external_ip, sfu, Heartbeats::default())
    }

    /// [`MediaPlane::on_socket`] with the UDP mux and every room's media loop registered in
    /// `heartbeats` (the liveness probe's list); counters go to `sfu.metrics`.
    pub fn on_watched_socket(
        socket: UdpSocket,
        external_ip: Option<IpAddr>,
        sfu: SfuConfig,
        heartbeats: Heartbeats,
    ) -> Self {
        let mux = UdpMux::spawn_watched(
            socket,
            sfu.metrics.clone(),
            Some(heartbeats.watch("udp mux")),
        );
        let local_addrs: Vec<SocketAddr> = match mux.local_addr() {
            Ok(bound) => candidate_addrs(bound, external_ip),
            Err(e) => {
                log::error!("media socket has no local address: {e}");
                Vec::new()
            }
        };
        log::info!("media: host candidates {local_addrs:?}");
        MediaPlane {
            heartbeats,
            ..MediaPlane::new(SfuConfig { local_addrs, ..sfu }, Some(mux))
        }
    }

    /// The same plane with passive ICE-TCP candidates on `bound` (the TCP media listener's
    /// address; every local interface if it is unspecified, plus `external_ip`), and the
    /// [`TcpMedia`] shell that the listener hands its connections to; no shell without a UDP
    /// mux (signalling only).
    pub fn with_ice_tcp(
        mut self,
        bound: SocketAddr,
        external_ip: Option<IpAddr>,
    ) -> (Self, Option<TcpMedia>) {
        let Some(mux) = &self.udp else {
            return (self, None);
        };
        let media = TcpMedia::new(mux.ingress());
        self.sfu.tcp_addrs = candidate_addrs(bound, external_ip);
        log::info!("media: ICE-TCP candidates {:?}", self.sfu.tcp_addrs);
        (self, Some(media))
    }

    /// The media of room `room_id`, starting now.
    pub fn room(&self, room_id: &str) -> RoomMedia {
        // Each room draws its own seed here, at the I/O edge: rooms never share a sequence.
        let config = SfuConfig {
            room: room_id.into(),
            seed: rand::random(),
            ..self.sfu.clone()
        };
        let sfu = Sfu::new(config, Instant::now());
        let metrics = &self.sfu.metrics;
        let engine = Engine::with_limits(room_id, sfu, self.limits.clone())
            .with_limit_counters(metrics.limit_hits.clone());
        let route = self.udp.as_ref().map(|m| m.open_route(room_id));
        MediaShell::new(MediaDriver::new(format!("room={room_id}"), engine), route).watched(
            self.heartbeats.watch(format!("room={room_id} media loop")),
            metrics.drop_send_failed.clone(),
        )
    }
}
