//! The web routes over real HTTP and HTTPS: the web filter is served on 127.0.0.1:0 exactly as
//! the binary serves it (`videoroom::web::serve`), and requests come from reqwest or, where a
//! client would normalise the path (`..`), from raw bytes written to a TCP socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod kit;

use kit::assert_served;
use kit::server::{Served, serve};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use videoroom::web::{self, TlsIdentity, TlsMode, WebConfig};
use warp::{Filter, Reply};

/// Serves `web::routes(config)` (plus `extra` routes, if any) with the given TLS acceptor,
/// through the kit's serving code (the app's `videoroom::web::serve_with`).
async fn start_with(
    config: &WebConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    extra: Option<warp::filters::BoxedFilter<(warp::reply::Response,)>>,
) -> Served {
    let routes = web::routes(config).expect("routes");
    let routes = match extra {
        Some(extra) => extra.or(routes).unify().boxed(),
        None => routes,
    };
    serve(routes, tls, None).await
}

/// Serves `web::routes(config)`, over TLS when the config says so.
async fn start(config: &WebConfig) -> Served {
    start_with(config, config.tls.acceptor().expect("tls"), None).await
}

/// `GET <path>` (redirects not followed).
async fn get(server: &Served, path: &str) -> reqwest::Response {
    client().get(server.url(path)).send().await.unwrap()
}

/// The lobby form's content type.
const FORM: &str = "application/x-www-form-urlencoded";

/// `POST /` with `body` (and `content_type`, if any: reqwest sends none for a plain body).
async fn post_lobby(
    server: &Served,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = client().post(server.url("/"));
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.body(body).send().await.unwrap()
}

/// The page at `path`, asserting it is answered 200 as HTML.
async fn html_page(server: &Served, path: &str) -> String {
    let response = get(server, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    response.text().await.unwrap()
}

/// `https://127.0.0.1:<port><path>` of `server`.
fn https_by_ip(server: &Served, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", server.addr.port())
}

/// Posts the lobby form `body` (see [`post_lobby`]), asserts that it is answered `302 Found` to
/// `location` and that following it lands on the room page of `room_id`; returns that page.
async fn lobby_enters(
    server: &Served,
    content_type: Option<&str>,
    body: &'static str,
    location: &str,
    room_id: &str,
) -> String {
    let response = post_lobby(server, content_type, body).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], location);
    let page = html_page(server, location).await;
    let room = format!(r#"data-room-id="{room_id}""#);
    assert!(page.contains(&room), "{page}");
    page
}

/// The body of `GET <path>`.
async fn text_of(server: &Served, path: &str) -> String {
    get(server, path).await.text().await.unwrap()
}

fn client() -> reqwest::Client {
    kit::http_client()
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "videoroom-web-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, relative: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `GET <raw_path>` exactly as written (no client-side normalisation) and returns the
/// status code and the whole response text.
async fn raw_get(addr: SocketAddr, raw_path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("GET {raw_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("response within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

fn priv_static() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("priv/static")
}

/// Every regular, non-dot file under `dir`, as URL paths relative to it.
fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf-8 name");
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let url = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if path.is_dir() {
            files_under(&path, &url, out);
        } else {
            out.push(url);
        }
    }
}

#[tokio::test]
async fn the_lobby_shows_the_join_form_with_the_room_prefilled_from_the_query() {
    let server = start(&WebConfig::default()).await;
    let page = html_page(&server, "/?room_id=standup%20room").await;
    for expected in [
        "<title>Videoroom</title>",
        "<h1 class=\"lobby-title text-3xl font-bold text-white mb-2\">Videoroom</h1>",
        r#"<link rel="stylesheet" href="/assets/css/app.css">"#,
        r#"src="/images/logo.png""#,
        "Join room!",
        r#"<form method="post""#,
        r#"name="room_name" type="text" required maxlength="100" value="standup room""#,
        r#"name="display_name""#,
        ">Enter</button>",
        "Version: ",
    ] {
        assert!(page.contains(expected), "lobby lacks {expected:?}:\n{page}");
    }
    // Without a query the room field is empty.
    let page = text_of(&server, "/").await;
    assert!(page.contains(r#"name="room_name" type="text" required maxlength="100" value="""#));
    server.stop().await;
}

#[tokio::test]
async fn posting_the_lobby_form_redirects_to_the_room_with_both_fields_percent_encoded() {
    let server = start(&WebConfig::default()).await;
    // Following the redirect lands on the room page of exactly that room.
    let page = lobby_enters(
        &server,
        Some(FORM),
        "room_name=my+room%2F1&display_name=Zo%C3%AB+%26+%3Cb%3E%3F%23",
        "/room/my%20room%2F1?display_name=Zo%C3%AB%20%26%20%3Cb%3E%3F%23",
        "my room/1",
    )
    .await;
    assert!(page.contains("Room: my room/1</h3>"));
    server.stop().await;
}

#[tokio::test]
async fn unicode_room_names_survive_the_redirect_and_reach_the_page_unchanged() {
    let server = start(&WebConfig::default()).await;
    lobby_enters(
        &server,
        None,
        "room_name=za%C5%BC%C3%B3%C5%82%C4%87+%F0%9F%8E%A5+a%2Bb&display_name=%E5%BC%A0%E4%B8%89",
        "/room/za%C5%BC%C3%B3%C5%82%C4%87%20%F0%9F%8E%A5%20a%2Bb?display_name=%E5%BC%A0%E4%B8%89",
        "zażółć 🎥 a+b",
    )
    .await;
    // Without the display name (an invite link) the embedded client's page gets the same room,
    // for its pre-join screen.
    let page = text_of(
        &server,
        "/room/za%C5%BC%C3%B3%C5%82%C4%87%20%F0%9F%8E%A5%20a%2Bb",
    )
    .await;
    assert!(page.contains(r#"data-room-id="zażółć 🎥 a+b""#), "{page}");
    // The lobby prefills the same room from `?room_id=`.
    let page = text_of(
        &server,
        "/?room_id=za%C5%BC%C3%B3%C5%82%C4%87%20%F0%9F%8E%A5%20a%2Bb",
    )
    .await;
    assert!(page.contains(r#"value="zażółć 🎥 a+b""#), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn an_incomplete_lobby_form_shows_the_lobby_again_with_a_message() {
    let server = start(&WebConfig::default()).await;
    for (body, message) in [
        ("room_name=abc", "Please enter a display name."),
        (
            "room_name=abc&display_name=+++",
            "Please enter a display name.",
        ),
        ("display_name=Ann", "Please enter a room name."),
        ("room_name=..&display_name=Ann", "cannot be"),
    ] {
        let response = post_lobby(&server, Some(FORM), body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let page = response.text().await.unwrap();
        assert!(page.contains(message), "{body}: {page}");
        assert!(page.contains(r#"<form method="post""#));
    }
    // What was typed is kept (escaped).
    let page = post_lobby(&server, None, "room_name=%3Cscript%3Ex%3C%2Fscript%3E")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"value="&lt;script&gt;x&lt;/script&gt;""#));
    assert!(!page.contains("<script>x"));
    // A body larger than any real form is refused before it is read.
    let response = post_lobby(&server, None, vec![b'a'; 64 * 1024]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn the_room_page_without_a_display_name_redirects_to_the_lobby_when_a_static_dir_is_served() {
    let foreign = TempDir::new("nameless");
    foreign.write("assets/js/app.js", b"console.log(1)");
    let server = start(&WebConfig {
        static_dir: Some(foreign.0.clone()),
        ..WebConfig::default()
    })
    .await;
    for path in [
        "/room/daily%20sync",
        "/room/daily%20sync?display_name=",
        "/room/daily%20sync?other=1",
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{path}");
        assert_eq!(
            response.headers()[LOCATION],
            "/?room_id=daily%20sync",
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_embedded_client_gets_the_room_page_without_a_display_name_for_its_pre_join_screen() {
    let server = start(&WebConfig::default()).await;
    for path in ["/room/daily%20sync", "/room/daily%20sync?display_name="] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#"data-room-id="daily sync""#), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_room_page_keeps_the_dom_the_tutorial_client_relies_on() {
    let server = start(&WebConfig::default()).await;
    let page = html_page(&server, "/room/r1?display_name=Ann").await;
    for expected in [
        "<title>r1 · Videoroom</title>",
        r#"<link rel="stylesheet" href="/assets/css/app.css">"#,
        r#"id="room" class="room flex flex-col h-screen relative" data-room-id="r1""#,
        "Room: r1</h3>",
        r#"id="participants-list""#,
        r#"id="videochat-error""#,
        r#"id="videos-grid""#,
        r#"id="disconnect""#,
        r#"id="toggle-mic""#,
        r#"id="toggle-camera""#,
        r#"id="connection-state""#,
        r#"<script defer type="text/javascript" src="/assets/js/app.js"></script>"#,
    ] {
        assert!(
            page.contains(expected),
            "room page lacks {expected:?}:\n{page}"
        );
    }
    // Each id exactly once.
    for id in [
        "room",
        "participants-list",
        "videochat-error",
        "videos-grid",
        "disconnect",
    ] {
        assert_eq!(page.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
    }
    // The template holds one tile: the feed div with audio, video and the label, in that order.
    let start = page
        .find(r#"<template id="video-feed-template">"#)
        .expect("template");
    let end = start + page[start..].find("</template>").expect("template end");
    let template = &page[start..end];
    let positions: Vec<usize> = [
        r#"<div name="video-feed""#,
        "<audio></audio>",
        "<video ",
        r#"<div name="video-label""#,
    ]
    .iter()
    .map(|needle| {
        template
            .find(needle)
            .unwrap_or_else(|| panic!("template lacks {needle}"))
    })
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{template}");
    // The display name stays in the URL for the client; it is not rendered by the server.
    assert!(!page.contains("Ann"));
    server.stop().await;
}

#[tokio::test]
async fn script_room_names_and_display_names_are_escaped_everywhere() {
    let server = start(&WebConfig::default()).await;
    let response = get(&server, "/room/%3Cscript%3Ealert(1)%3C%2Fscript%3E?display_name=%3Cscript%3Ealert(2)%3C%2Fscript%3E",).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains(r#"data-room-id="&lt;script&gt;alert(1)&lt;/script&gt;""#));
    assert!(page.contains("Room: &lt;script&gt;alert(1)&lt;/script&gt;</h3>"));
    // The only script element is the bundle.
    assert_eq!(page.matches("<script").count(), 1);

    // Breaking out of the attribute with a quote does not work either.
    let page = text_of(
        &server,
        "/room/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E?display_name=x",
    )
    .await;
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(page.contains(r#"data-room-id="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;""#));

    // The lobby's prefilled room name.
    let page = text_of(
        &server,
        "/?room_id=%22%3E%3Cscript%3Ealert(3)%3C%2Fscript%3E",
    )
    .await;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains(r#"value="&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;""#));
    server.stop().await;
}

#[tokio::test]
async fn invalid_room_names_in_the_path_get_a_400_lobby() {
    let server = start(&WebConfig::default()).await;
    for path in [
        "/room/%ff%fe?display_name=x",
        "/room/a%00b?display_name=x",
        &format!("/room/{}?display_name=x", "r".repeat(101)),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.text().await.unwrap().contains("Join room!"));
    }
    server.stop().await;
}

#[tokio::test]
async fn the_healthcheck_answers_200_with_an_empty_body() {
    let server = start(&WebConfig::default()).await;
    let response = get(&server, "/healthcheck").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "");
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let server = start(&WebConfig::default()).await;
    for path in [
        "/nope",
        "/room/",
        "/room/a/b?display_name=x",
        "/assets/js/missing.js",
        "/priv/static/robots.txt",
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let response = client().delete(server.url("/")).send().await.unwrap();
    assert!(response.status().is_client_error());
    server.stop().await;
}

#[tokio::test]
async fn embedded_static_files_are_served_with_their_content_types() {
    let server = start(&WebConfig::default()).await;
    for (path, content_type) in [
        ("/favicon.ico", "image/x-icon"),
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/images/logo.png", "image/png"),
    ] {
        let on_disk = std::fs::read(priv_static().join(&path[1..])).unwrap();
        let headers = assert_served(&server.url(path), Some(content_type), &on_disk).await;
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_file_of_priv_static_is_embedded_and_served_byte_for_byte() {
    // Catches a binary built before priv/static changed (e.g. a rebuilt app.js).
    let mut on_disk = Vec::new();
    files_under(&priv_static(), "", &mut on_disk);
    on_disk.sort();
    let embedded: Vec<&str> = web::static_files::embedded_paths().collect();
    assert_eq!(embedded, on_disk);

    let server = start(&WebConfig::default()).await;
    for path in &on_disk {
        let route = format!("/{path}");
        if path.starts_with("assets/")
            || path.starts_with("images/")
            || path.starts_with("fonts/")
            || path == "favicon.ico"
            || path == "robots.txt"
        {
            let expected = std::fs::read(priv_static().join(path)).unwrap();
            assert_served(&server.url(&route), None, &expected).await;
        } else {
            assert_eq!(
                get(&server, &route).await.status(),
                StatusCode::NOT_FOUND,
                "{path} is not a static route"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn static_files_are_revalidated_with_etags() {
    let foreign = TempDir::new("etag");
    let bundle = foreign.write("assets/js/app.js", b"console.log(1)");
    for config in [
        WebConfig::default(),
        WebConfig {
            static_dir: Some(foreign.0.clone()),
            ..WebConfig::default()
        },
    ] {
        let path = if config.static_dir.is_some() {
            "/assets/js/app.js"
        } else {
            "/robots.txt"
        };
        let server = start(&config).await;
        let first = get(&server, path).await;
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
        let again = client()
            .get(server.url(path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        let other = client()
            .get(server.url(path))
            .header(IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        server.stop().await;
    }
    // A rebuilt bundle gets a new tag.
    let server = start(&WebConfig {
        static_dir: Some(foreign.0.clone()),
        ..WebConfig::default()
    })
    .await;
    let before = get(&server, "/assets/js/app.js").await;
    let before = before.headers()[ETAG].to_str().unwrap().to_owned();
    std::fs::write(&bundle, b"console.log('rebuilt')").unwrap();
    let after = get(&server, "/assets/js/app.js").await;
    assert_ne!(after.headers()[ETAG].to_str().unwrap(), before);
    assert_eq!(after.text().await.unwrap(), "console.log('rebuilt')");
    server.stop().await;
}

const TRAVERSALS: &[&str] = &[
    "/assets/../../../../../../etc/passwd",
    "/assets/../Cargo.toml",
    "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/%2E%2E/%2E%2E/Cargo.toml",
    "/assets/..%2f..%2f..%2fCargo.toml",
    "/assets/..%2F..%2FCargo.toml",
    "/assets/..\\..\\Cargo.toml",
    "/assets/..%5c..%5cCargo.toml",
    "/images/%252e%252e/%252e%252e/Cargo.toml",
    "/assets/./../Cargo.toml",
    "/images//etc/passwd",
    "/images/%2fetc%2fpasswd",
    "/assets/outside.txt%00.js",
    "/assets/link-out/secret.txt",
    "/assets/secret-link.txt",
    "/../Cargo.toml",
    "/%2e%2e/Cargo.toml",
];

/// Checks that none of [`TRAVERSALS`] is answered with a file.
async fn assert_no_traversal(server: &Served) {
    for path in TRAVERSALS {
        let (status, response) = raw_get(server.addr, path).await;
        assert!(
            status == 404 || status == 400,
            "{path} answered {status}:\n{response}"
        );
        for leaked in ["root:", "[package]", "TOP SECRET"] {
            assert!(
                !response.contains(leaked),
                "{path} leaked {leaked}:\n{response}"
            );
        }
    }
}

#[tokio::test]
async fn path_traversal_cannot_leave_the_embedded_files() {
    let server = start(&WebConfig::default()).await;
    assert_no_traversal(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn path_traversal_cannot_leave_the_static_dir_even_through_symlinks() {
    let outer = TempDir::new("traversal");
    outer.write("secret.txt", b"TOP SECRET");
    outer.write("Cargo.toml", b"[package] TOP SECRET");
    outer.write("static/assets/js/app.js", b"console.log('ok')");
    let static_dir = outer.0.join("static");
    std::os::unix::fs::symlink(&outer.0, static_dir.join("assets/link-out")).unwrap();
    std::os::unix::fs::symlink(
        outer.0.join("secret.txt"),
        static_dir.join("assets/secret-link.txt"),
    )
    .unwrap();
    let server = start(&WebConfig {
        static_dir: Some(static_dir),
        ..WebConfig::default()
    })
    .await;
    assert_no_traversal(&server).await;
    // The folder itself is still served.
    let (status, response) = raw_get(server.addr, "/assets/js/app.js").await;
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with("console.log('ok')"));
    server.stop().await;
}

#[tokio::test]
async fn the_static_dir_serves_a_foreign_priv_static_instead_of_the_embedded_one() {
    // Stands in for an Elixir videoroom checkout's priv/static with its own bundle.
    let foreign = TempDir::new("foreign");
    foreign.write(
        "assets/js/app.js",
        b"/* elixir bundle */ new Room().join();",
    );
    foreign.write(
        "assets/css/app.css",
        b".flip-horizontally{transform:scaleX(-1)}",
    );
    foreign.write("assets/js/app.js.map", b"{\"version\":3}");
    foreign.write("images/logo.png", b"\x89PNG fake");
    foreign.write("fonts/x.woff2", b"wOF2");
    let server = start(&WebConfig {
        static_dir: Some(foreign.0.clone()),
        ..WebConfig::default()
    })
    .await;
    for (path, content_type, body) in [
        (
            "/assets/js/app.js",
            "text/javascript; charset=utf-8",
            &b"/* elixir bundle */ new Room().join();"[..],
        ),
        (
            "/assets/css/app.css",
            "text/css; charset=utf-8",
            b".flip-horizontally{transform:scaleX(-1)}",
        ),
        (
            "/assets/js/app.js.map",
            "text/plain; charset=utf-8",
            b"{\"version\":3}",
        ),
        ("/images/logo.png", "image/png", b"\x89PNG fake"),
        ("/fonts/x.woff2", "font/woff2", b"wOF2"),
    ] {
        assert_served(&server.url(path), Some(content_type), body).await;
    }
    // Only the foreign folder is served: the embedded robots.txt is not mixed in.
    let response = get(&server, "/robots.txt").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Pages are unchanged and still load the bundle from the same place.
    let page = text_of(&server, "/room/r?display_name=a").await;
    assert!(page.contains(r#"src="/assets/js/app.js""#));
    server.stop().await;
}

#[tokio::test]
async fn a_static_dir_that_is_not_a_folder_is_refused_at_start() {
    let missing = WebConfig {
        static_dir: Some(PathBuf::from("/nonexistent/videoroom/priv/static")),
        ..WebConfig::default()
    };
    assert!(web::routes(&missing).is_err());
    let folder = TempDir::new("file");
    let file = folder.write("app.js", b"x");
    let Err(error) = web::routes(&WebConfig {
        static_dir: Some(file),
        ..WebConfig::default()
    }) else {
        panic!("a file is not a static dir");
    };
    assert!(error.to_string().contains("not a directory"), "{error}");
}

#[tokio::test]
async fn head_requests_get_the_headers_without_a_body() {
    let server = start(&WebConfig::default()).await;
    for path in ["/", "/robots.txt", "/healthcheck", "/room/x?display_name=y"] {
        let response = client().head(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.bytes().await.unwrap().is_empty(), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let server = start(&WebConfig::default()).await;
    let addr = server.addr;
    assert_eq!(get(&server, "/healthcheck").await.status(), StatusCode::OK);
    server.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// HTTPS

fn tls_client(trusted_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(trusted_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_serves_the_routes_with_a_given_certificate_and_key() {
    let dir = TempDir::new("pem");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.write("cert.pem", generated.cert.pem().as_bytes());
    let key = dir.write("key.pem", generated.signing_key.serialize_pem().as_bytes());
    let config = WebConfig {
        tls: TlsMode::PemFiles { cert, key },
        ..WebConfig::default()
    };
    let server = start(&config).await;
    let https = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(
            reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let response = https
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = https
        .get(format!("{base}/room/tls?display_name=x"))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains(r#"data-room-id="tls""#)
    );
    let response = https
        .post(format!("{base}/"))
        .body("room_name=a&display_name=b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[LOCATION], "/room/a?display_name=b");

    // Plain HTTP on the TLS port gets nothing useful.
    let plain = client().get(server.url("/healthcheck")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_is_valid_for_localhost_and_loopback_ips() {
    let identity =
        TlsIdentity::self_signed(&["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let pem = identity.cert_pem.clone();
    let server = start_with(
        &WebConfig::default(),
        Some(identity.acceptor().unwrap()),
        None,
    )
    .await;
    let by_ip = tls_client(&pem)
        .get(https_by_ip(&server, "/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_ip.status(), StatusCode::OK);
    let by_name = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap()
        .get(format!(
            "https://localhost:{}/robots.txt",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), StatusCode::OK);
    // A client that does not trust the certificate refuses it: it really is checked.
    let untrusted = reqwest::Client::new()
        .get(https_by_ip(&server, "/healthcheck"))
        .send()
        .await;
    assert!(untrusted.is_err());
    server.stop().await;
}

#[tokio::test]
async fn tls_self_signed_mode_generates_a_certificate_at_start() {
    let mode = TlsMode::self_signed_for(["192.0.2.10".to_owned()]);
    assert_eq!(
        mode,
        TlsMode::SelfSigned {
            names: vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "192.0.2.10".into()
            ]
        }
    );
    let config = WebConfig {
        tls: mode,
        ..WebConfig::default()
    };
    let server = start(&config).await;
    // The certificate is new, so only a client that skips verification can talk to it here.
    let response = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(https_by_ip(&server, "/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_are_reported_at_start() {
    let dir = TempDir::new("badpem");
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.write("cert.pem", one.cert.pem().as_bytes());
    let other_key = dir.write(
        "other-key.pem",
        other.signing_key.serialize_pem().as_bytes(),
    );
    let garbage = dir.write("garbage.pem", b"not a pem file");
    let missing = dir.0.join("missing.pem");

    let error = |cert: &Path, key: &Path| {
        TlsMode::PemFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
        .acceptor()
        .err()
        .expect("must fail")
        .to_string()
    };
    assert!(error(&missing, &other_key).contains("missing.pem"));
    assert!(error(&garbage, &other_key).contains("garbage.pem"));
    assert!(error(&cert, &garbage).contains("garbage.pem"));
    // A key that does not belong to the certificate.
    assert!(!error(&cert, &other_key).is_empty());
}

#[tokio::test]
async fn websocket_upgrades_work_over_tls() {
    // The Phoenix socket is a WebSocket: the TLS server must pass HTTP/1.1 upgrades through.
    use futures_util::{SinkExt, StreamExt};
    let echo = warp::path("echo")
        .and(warp::ws())
        .map(|ws: warp::ws::Ws| {
            ws.on_upgrade(|socket| async move {
                let (mut tx, mut rx) = socket.split();
                while let Some(Ok(message)) = rx.next().await {
                    if message.is_text() && tx.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .into_response()
        })
        .boxed();
    let identity = TlsIdentity::self_signed(&["localhost".to_owned()]).unwrap();
    let pem = identity.cert_pem.clone();
    let server = start_with(
        &WebConfig::default(),
        Some(identity.acceptor().unwrap()),
        Some(echo),
    )
    .await;

    // A tokio-rustls client trusting only our certificate.
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // One masked text frame "hi" and its echo.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, [0x81, 2, b'h', b'i']);
    server.stop().await;
}
