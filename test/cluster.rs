//! Several nodes as one service: three real server processes on loopback (different HTTP and
//! UDP ports) and one real Redis (Debian's `redis-server`, started here on a free port; the
//! test fails if it is not installed: `test/run_all.sh` installs it). Headless WebRTC peers
//! join one room through different nodes; the node that owns the room is killed or drained;
//! Redis is restarted while the load generator runs four more rooms. The PubSub adapter is tested on two in-process endpoints that share
//! only Redis. Recovery times are printed, never asserted.

#[allow(dead_code)]
#[path = "kit/fixture.rs"]
mod fixture;
#[allow(dead_code)]
mod peer;
#[allow(dead_code)]
#[path = "kit/server_process.rs"]
mod server_process;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer::client::{HeadlessPeer, PeerOptions};
use peer::phoenix::{Received, Vsn, connect_client as connect};
use peer::scenario::{assert_clean, join_accepted_at, packets_from, reconnected, wait_receiving};
use serde_json::{Value, json};
use server_process::ServerProcess;
use videoroom::cluster::pubsub::RedisPubSub;
use videoroom::cluster::{Cluster, ClusterConfig, ClusterMetrics};
use videoroom::phoenix::Payload;
use videoroom::phoenix::transport::Endpoint;

const SERVER: &str = env!("CARGO_BIN_EXE_videoroom");

/// Lease of the test nodes: short, so a killed node's rooms are free soon.
const LEASE: &str = "1.5";

/// A free TCP port on loopback (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// A real `redis-server` on a loopback port, without persistence (a restart loses everything,
/// the hardest case for the registry). Killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (test/run_all.sh installs Debian's redis-server)");
        let redis = Redis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (everything it held is lost).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty one on the same port.
    fn start_again(&mut self) {
        *self = Redis::start_on(self.port);
    }

    /// `GET key` (through the real client crate).
    async fn get(&self, key: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The load generator (`videoroom-load --check`) running against one node.
struct BackgroundLoad {
    child: Child,
}

impl BackgroundLoad {
    fn start(via: &ServerProcess) -> BackgroundLoad {
        let child = Command::new(env!("CARGO_BIN_EXE_videoroom-load"))
            .args(["--server", &via.http.to_string(), "--rooms", "4"])
            .args(["--publishers", "1", "--subscribers", "3", "--duration", "8"])
            .args(["--warmup", "1", "--progress", "0", "--check"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the load generator runs");
        BackgroundLoad { child }
    }

    /// Waits for its end: `--check` passed (every peer joined and received audio and video);
    /// returns its `result` line.
    async fn finish(self) -> Value {
        let output = tokio::task::spawn_blocking(move || self.child.wait_with_output())
            .await
            .expect("joined")
            .expect("waited");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "load check failed:\n{stdout}");
        let line = stdout.lines().find_map(|l| l.strip_prefix("result "));
        serde_json::from_str(line.expect("a result line")).expect("JSON")
    }
}

/// Peers in the rooms of `nodes`, summed.
async fn peers_in(nodes: &[&ServerProcess]) -> f64 {
    let mut sum = 0.0;
    for node in nodes {
        sum += node.metric("videoroom_peers").await;
    }
    sum
}

/// A server process that is node `id` of the cluster on `redis`.
fn node(redis: &Redis, id: &str) -> ServerProcess {
    ServerProcess::start(
        SERVER,
        &[
            "--redis-url",
            &redis.url(),
            "--node-id",
            id,
            "--cluster-lease",
            LEASE,
        ],
        &[("RUST_LOG", "info")],
    )
}

/// Nodes n1, n2 and n3 on `redis`, once each sees all three.
async fn three_nodes(redis: &Redis) -> [ServerProcess; 3] {
    let nodes = ["n1", "n2", "n3"].map(|id| node(redis, id));
    wait_for_nodes(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    nodes
}

/// Peers a (socket on `via_a`) and b (on `via_b`) in `room`, reconnecting as our client does,
/// once each receives the other's media.
async fn relayed_pair(
    via_a: &ServerProcess,
    via_b: &ServerProcess,
    room: &str,
) -> [HeadlessPeer; 2] {
    let options = |name: &str| PeerOptions::new(name).reconnecting(Duration::from_secs(60));
    let a = join_accepted_at(&via_a.socket_url(), room, options("a")).await;
    let b = join_accepted_at(&via_b.socket_url(), room, options("b")).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    [a, b]
}

/// `GET /cluster` of `server`, parsed.
async fn cluster_status(server: &ServerProcess) -> Value {
    let (status, body) = server.get("/cluster").await.expect("/cluster answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Waits until every one of `nodes` sees all of them live (their first renewals are done).
async fn wait_for_nodes(nodes: &[&ServerProcess]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        while cluster_status(node).await["nodes"]
            .as_array()
            .map_or(0, Vec::len)
            < nodes.len()
        {
            assert!(Instant::now() < deadline, "the nodes never saw each other");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `server`'s `/cluster` says Redis is `state` (`up` or `down`).
async fn redis_becomes(server: &ServerProcess, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster_status(server).await["redis"] != state {
        assert!(
            Instant::now() < deadline,
            "Redis never became {state} for {}",
            server.http
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rooms `server` runs, per `/cluster`.
async fn rooms_on(server: &ServerProcess) -> u64 {
    cluster_status(server).await["node"]["rooms"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `subscriber` has received more packets from `publisher` than `before`.
async fn more_packets(subscriber: &HeadlessPeer, publisher: &HeadlessPeer, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while packets_from(subscriber, publisher).iter().sum::<u64>() <= before {
        assert!(Instant::now() < deadline, "media stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_joining_one_room_through_different_nodes_see_and_hear_each_other() {
    let redis = Redis::start();
    let [n1, n2, n3] = three_nodes(&redis).await;

    // No node runs anything: the new room goes to the least loaded, ties by id: n1. Both
    // peers' sockets are on other nodes, so both are relayed there.
    let a = join_accepted_at(&n2.socket_url(), "r", PeerOptions::new("a")).await;
    let b = join_accepted_at(&n3.socket_url(), "r", PeerOptions::new("b")).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;

    assert_eq!(redis.get("videoroom:room:r").await.as_deref(), Some("n1"));
    assert_eq!(
        [
            rooms_on(&n1).await,
            rooms_on(&n2).await,
            rooms_on(&n3).await
        ],
        [1, 0, 0]
    );
    assert_eq!(n2.metric("videoroom_relayed_peers").await, 1.0);
    assert_eq!(n3.metric("videoroom_relayed_peers").await, 1.0);
    assert_eq!(n1.metric("videoroom_peers").await, 2.0);
    // The owning node's answers name its own media address: both peers' media goes there.
    let peer_ids = a.observe(|o| o.peers.keys().cloned().collect::<Vec<_>>());
    assert_eq!(peer_ids, vec![b.peer_id().unwrap()]);
    // In order and exactly once across the relay: no client error (an event out of order or
    // repeated is one: an answer without its offer, a track of an unknown peer) and no offer
    // announced while one was unanswered.
    assert_clean(&[&a, &b]);

    // A leave through the relay removes the peer from the room at once.
    b.leave().await.unwrap();
    n1.metric_becomes("videoroom_peers", 1.0).await;
    n3.metric_becomes("videoroom_relayed_peers", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_owns_a_room_brings_the_room_back_on_a_survivor() {
    let redis = Redis::start();
    let [n1, n2, n3] = three_nodes(&redis).await;
    let [a, b] = relayed_pair(&n2, &n3, "k").await;
    assert_eq!(rooms_on(&n1).await, 1);

    let killed = Instant::now();
    drop(n1);
    // Both relay links break: the channels error (phx_error), the peers rejoin through their
    // own nodes, the dead owner refuses connections and its registrations are dropped, and the
    // room starts again on n2 or n3.
    let back_a = reconnected(&a).await;
    let back_b = reconnected(&b).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    let media_back = killed.elapsed();
    let owner = redis.get("videoroom:room:k").await;
    assert!(
        matches!(owner.as_deref(), Some("n2" | "n3")),
        "room owner after the kill: {owner:?}"
    );
    assert_eq!(rooms_on(&n2).await + rooms_on(&n3).await, 1);
    assert!(
        !back_a.resumed && !back_b.resumed,
        "a new room cannot resume old peers"
    );
    println!(
        "owner killed → peers rejoined after {:?} and {:?}, media flowing both ways after {media_back:?}",
        back_a.joined - killed,
        back_b.joined - killed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_answering_is_given_up_and_its_room_comes_back_on_a_survivor() {
    let redis = Redis::start();
    let [n1, n2, n3] = three_nodes(&redis).await;
    let [a, b] = relayed_pair(&n2, &n3, "frozen").await;
    // SIGSTOP: the node's sockets stay open but nothing answers (a host gone silent, a
    // partition). No connection is refused, so only silence tells: the relay links give up
    // after 15 s without a frame, and the frozen node's leases have run out by then.
    signal(&n1, "-STOP");
    let frozen = Instant::now();
    reconnected(&a).await;
    reconnected(&b).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    println!(
        "owner frozen → media flowing both ways after {:?}",
        frozen.elapsed()
    );
    let owner = redis.get("videoroom:room:frozen").await;
    assert!(matches!(owner.as_deref(), Some("n2" | "n3")), "{owner:?}");
    assert!(n2.log().contains("was silent for 15s"), "{}", n2.log());
    signal(&n1, "-CONT");
}

/// Sends `signal` (`-STOP`, `-TERM`, …) to `node`'s process.
fn signal(node: &ServerProcess, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &node.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_node_that_owns_a_room_releases_it_and_its_peers_move_to_the_others() {
    let redis = Redis::start();
    let [n1, n2, n3] = three_nodes(&redis).await;
    let [a, b] = relayed_pair(&n2, &n3, "d").await;
    assert_eq!(redis.get("videoroom:room:d").await.as_deref(), Some("n1"));

    let drained = Instant::now();
    signal(&n1, "-TERM");
    reconnected(&a).await;
    reconnected(&b).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    println!(
        "owner drained → media flowing both ways after {:?}",
        drained.elapsed()
    );
    let owner = redis.get("videoroom:room:d").await;
    assert!(matches!(owner.as_deref(), Some("n2" | "n3")), "{owner:?}");
    assert!(
        n1.log()
            .contains("node n1 left the cluster, releasing 1 rooms"),
        "{}",
        n1.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_keeps_live_rooms_and_the_registry_is_rebuilt() {
    let mut redis = Redis::start();
    let [mut n1, mut n2, mut n3] = three_nodes(&redis).await;
    let a = join_accepted_at(&n1.socket_url(), "live", PeerOptions::new("a")).await;
    let b = join_accepted_at(&n2.socket_url(), "live", PeerOptions::new("b")).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    assert_eq!(
        redis.get("videoroom:room:live").await.as_deref(),
        Some("n1")
    );
    // Load beside it: 4 more rooms of 1 publisher and 3 subscribers (str0m peers of the load
    // generator, sockets on n3, rooms spread over the nodes), measured across the outage.
    let load = BackgroundLoad::start(&n3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while peers_in(&[&n1, &n2, &n3]).await < 18.0 {
        assert!(Instant::now() < deadline, "the load never joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stopped = Instant::now();
    redis.stop();
    // Every node notices (its renewal fails) and says so; the live room keeps its media.
    for node in [&n1, &n2, &n3] {
        redis_becomes(node, "down").await;
    }
    let before = packets_from(&b, &a).iter().sum::<u64>();
    more_packets(&b, &a, before).await;
    let before = packets_from(&a, &b).iter().sum::<u64>();
    more_packets(&a, &b, before).await;
    println!(
        "Redis stopped → every node reported it down after {:?}",
        stopped.elapsed()
    );

    // An empty Redis comes back on the same port: the nodes reconnect by themselves and n1's
    // next renewal registers its room again.
    redis.start_again();
    let restarted = Instant::now();
    for node in [&n1, &n2, &n3] {
        redis_becomes(node, "up").await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis.get("videoroom:room:live").await.as_deref() != Some("n1") {
        assert!(
            Instant::now() < deadline,
            "the room was never registered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "Redis restarted empty → room registered again after {:?}",
        restarted.elapsed()
    );
    assert!(
        n1.is_running() && n2.is_running() && n3.is_running(),
        "no node may crash"
    );
    assert!(n1.log().contains("Redis unreachable"), "{}", n1.log());
    assert!(n1.log().contains("Redis is back"), "{}", n1.log());
    let before = packets_from(&b, &a).iter().sum::<u64>();
    more_packets(&b, &a, before).await;

    let result = load.finish().await;
    println!(
        "load across the outage (4 rooms of 1+3 peers, {} s): loss {}, video packets/s out {}, join → first video {}",
        result["seconds"], result["loss"], result["rtp_out_video_pps"], result["first_video_ms"]
    );

    // A newcomer through the third node lands in the same room, not a second copy of it.
    let c = join_accepted_at(&n3.socket_url(), "live", PeerOptions::new("c")).await;
    wait_receiving(&c, &[&a, &b]).await;
    let mut members = c.observe(|o| o.peers.keys().cloned().collect::<Vec<_>>());
    members.sort();
    let mut expected = vec![a.peer_id().unwrap(), b.peer_id().unwrap()];
    expected.sort();
    assert_eq!(members, expected);
}

/// The room node's own channel events reach a relayed client too: a peer whose media never
/// connects (its offer answered, no connectivity check ever comes) gets the room node's
/// `mediaDiagnosis` push through the relay, in order after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_peer_gets_the_room_nodes_diagnosis_through_the_relay() {
    let redis = Redis::start();
    let [n1, n2, _n3] = three_nodes(&redis).await;
    let (mut a, accepted) = peer::phoenix::Client::join_room(n2.http, "diag", "A").await;
    let id = accepted["id"].as_str().expect("a peer id").to_owned();
    a.expect_media("peerJoined").await;
    a.offer_fixture_publisher(&id).await;
    let mut answered = false;
    let diagnosis = loop {
        match a.recv_within(Duration::from_secs(15)).await {
            Some(Received::Json(f)) if f[3] == "mediaDiagnosis" => break f,
            Some(Received::Json(f)) => {
                answered |= f[3] == "mediaEvent"
                    && f[4]["data"]
                        .as_str()
                        .is_some_and(|d| d.contains(r#""type":"sdpAnswer""#));
            }
            other => panic!("no mediaDiagnosis push: {other:?}"),
        }
    };
    assert!(answered, "the offer was answered before the diagnosis");
    assert_eq!(diagnosis[2], "room:diag");
    assert_eq!(diagnosis[4]["cause"], "loopback_server", "{diagnosis}");
    assert_eq!(
        rooms_on(&n1).await,
        1,
        "the room runs on n1, the peer is relayed from n2"
    );
}

#[test]
fn a_node_whose_redis_is_unreachable_does_not_start_and_says_why() {
    let port = free_port();
    let output = Command::new(SERVER)
        .args(["--bind", "127.0.0.1", "--port", "0", "--udp-port", "0"])
        .args(["--redis-url", &format!("redis://127.0.0.1:{port}/")])
        .output()
        .expect("the server binary runs");
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!(
            "cannot start: cluster: Redis at redis://127.0.0.1:{port}/ is unreachable"
        )),
        "{log}"
    );
}

/// An in-process Phoenix endpoint whose PubSub is the Redis adapter, as node `id`.
async fn fixture_node(redis: &Redis, id: &str) -> (peer::server::Served, Endpoint) {
    let config = ClusterConfig {
        redis_url: redis.url(),
        node_id: id.into(),
        node_url: String::new(),
        lease: Duration::from_secs(3),
    };
    let cluster = Cluster::connect(config, ClusterMetrics::default())
        .await
        .expect("Redis answers");
    let endpoint = Endpoint::with_pubsub(RedisPubSub::start(&cluster));
    let routes = fixture::routes(&endpoint, true);
    (
        peer::server::serve(routes, None, Some(endpoint.clone())).await,
        endpoint,
    )
}

#[tokio::test]
async fn broadcasts_and_socket_id_disconnects_reach_sockets_on_other_nodes() {
    let redis = Redis::start();
    let (x, _) = fixture_node(&redis, "x").await;
    let (_y, y) = fixture_node(&redis, "y").await;
    // A socket on node x with the socket id `user_sockets:42`, in channel `echo:news`.
    let mut client = connect(x.addr, "/socket/websocket?user_id=42", Vsn::V2).await;
    client
        .send(json!(["1", "1", "echo:news", "phx_join", {}]))
        .await;
    client
        .expect(json!(["1", "1", "echo:news", "phx_reply", {"status": "ok", "response": {}}]))
        .await;
    // Node x's subscriber task may still be subscribing: publish on y until the first arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        y.pubsub()
            .broadcast("echo:news", "headline", Payload::Json(json!({"n": 1})));
        if let Some(frame) = client.recv_within(Duration::from_millis(200)).await {
            assert_eq!(
                frame,
                Received::Json(json!([null, null, "echo:news", "headline", {"n": 1}]))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a broadcast on y never reached x"
        );
    }
    // Binary payloads cross too.
    y.pubsub()
        .broadcast("echo:news", "raw", Payload::Binary(vec![0, 1, 255].into()));
    let raw = loop {
        match client.recv().await {
            Received::Json(v) if v[3] == "headline" => continue,
            other => break other,
        }
    };
    assert!(
        matches!(raw, Received::Binary(ref b) if b.ends_with(&[0, 1, 255])),
        "{raw:?}"
    );
    // A disconnect broadcast for that socket id, sent on node y, closes the socket on node x.
    y.pubsub()
        .broadcast("user_sockets:42", "disconnect", Payload::empty());
    client.expect_closed(1001).await;
}
