//! The test kit of the integration tests: one Phoenix client ([`phoenix`]), one in-process
//! server on the real app ([`server`]), and the Phoenix conformance fixture ([`fixture`], a
//! different endpoint whose test channels mirror Phoenix's own integration tests), served by
//! the same code. A test binary includes it with `mod kit;`. (`server_process.rs` and
//! `media_world.rs` live here too and are included by `#[path]` where needed.)
#![allow(dead_code)] // each test binary uses a different subset

/// Runs the async test body `$name(vsn)` once per serializer version, as the tests
/// `$name::v1` and `$name::v2`.
#[allow(unused_macros)] // used by the binaries that include the kit with `#[macro_use]`
macro_rules! for_both_vsn {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn v1() {
                super::$name($crate::kit::phoenix::Vsn::V1).await
            }
            #[tokio::test]
            async fn v2() {
                super::$name($crate::kit::phoenix::Vsn::V2).await
            }
        }
    };
}

pub mod fixture;
pub mod phoenix;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use videoroom::phoenix::LocalPubSub;
use videoroom::phoenix::transport::Endpoint;

/// The conformance fixture, running.
pub struct Fixture {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its endpoint (drain, pubsub).
    pub endpoint: Endpoint,
    /// The same PubSub, concretely typed (for subscriber counts).
    pub pubsub: Arc<LocalPubSub>,
    served: server::Served,
}

/// Starts the conformance fixture with its `/socket` and `/lponly` mounts on a free port. Its
/// idle timeout is 10 s instead of the fixture's 200 ms: on a loaded machine a test's own pauses
/// (e.g. listening for silence) would otherwise outlast it. The idle timeout itself is tested
/// with [`start_fixture_with_idle_timeout`].
pub async fn start_fixture() -> Fixture {
    start_fixture_with_idle_timeout(Duration::from_secs(10)).await
}

/// [`start_fixture`] whose fixture mounts close a socket after `idle_timeout` without a frame.
pub async fn start_fixture_with_idle_timeout(idle_timeout: Duration) -> Fixture {
    let pubsub = LocalPubSub::new();
    let endpoint = Endpoint::with_pubsub(pubsub.clone());
    let routes = fixture::routes_with_idle_timeout(&endpoint, true, idle_timeout);
    let served = server::serve(routes, None, Some(endpoint.clone())).await;
    Fixture {
        addr: served.addr,
        endpoint,
        pubsub,
        served,
    }
}

impl Fixture {
    /// `http://addr{path}`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until no subscriber is left on `topic` (its channels terminated).
    pub async fn wait_unsubscribed(&self, topic: &str) -> bool {
        for _ in 0..150 {
            if self.pubsub.subscriber_count(topic) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Polls `f` until it is true or `within` passes; returns its last answer.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// An HTTP client that does not follow redirects: a test sees the answer itself.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// The body of `GET <url>` as text, whatever its status.
pub async fn get_text(url: &str) -> String {
    let response = http_client().get(url).send().await.expect("GET");
    response.text().await.expect("body")
}

/// Asserts that `GET <url>` is answered 200 with exactly `body` (and `content_type`, when
/// given); returns the answer's headers for further checks.
pub async fn assert_served(
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> reqwest::header::HeaderMap {
    let response = http_client().get(url).send().await.expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let headers = response.headers().clone();
    if let Some(content_type) = content_type {
        assert_eq!(
            headers[reqwest::header::CONTENT_TYPE],
            content_type,
            "{url}"
        );
    }
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        body,
        "{url}"
    );
    headers
}
