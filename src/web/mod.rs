//! The web app: lobby and room pages, static files, healthcheck and HTTPS serving.
//!
//! Routes (the original Phoenix app's, so its links and forms work unchanged):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /` | lobby, room name prefilled from `?room_id=` |
//! | `POST /` (`room_name`, `display_name`, urlencoded) | 302 to `/room/<room>?display_name=<name>`, or the lobby again with 400 when a field is missing or invalid |
//! | `GET /room/:room_id?display_name=…` | room page; without a display name the embedded client's page too (it shows its pre-join screen), but with `--static-dir` (a client that needs the name in the address) 302 to `/?room_id=<room>` |
//! | `GET /healthcheck` | 200, empty body |
//! | `GET /assets/**`, `/images/**`, `/fonts/**`, `/favicon.ico`, `/robots.txt` | static files ([`static_files`]) |
//!
//! Anything else is rejected with warp's 404, so the routes can be combined with others (the
//! Phoenix socket) by `or`. HEAD is answered wherever GET is.

pub mod pages;
pub mod serve;
pub mod sniff;
pub mod static_files;
pub mod tls;

use std::path::PathBuf;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::{Filter, Rejection, Reply};

pub use serve::{IceTcpHandoff, ServeLimits, serve, serve_shared, serve_tls, serve_with};
pub use static_files::{StaticDirError, StaticSource};
pub use tls::{TlsError, TlsIdentity, TlsMode};

/// Settings of the web part (filled by `config.rs` from flags and environment variables).
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// `--static-dir DIR` / `STATIC_DIR`: serve this folder (e.g. an Elixir videoroom checkout's
    /// `priv/static`) instead of the files embedded in the binary.
    pub static_dir: Option<PathBuf>,
    /// `--tls-cert`/`--tls-key` (`TLS_CERT`/`TLS_KEY`) or `--tls-self-signed`.
    pub tls: TlsMode,
}

/// Largest accepted lobby form body: two short text fields.
const MAX_FORM_BYTES: u64 = 16 * 1024;

/// Characters left as they are in a path segment or a query value: RFC 3986 "unreserved".
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The version shown in the pages' footer.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the web routes; fails when `--static-dir` does not name a folder.
pub fn routes(config: &WebConfig) -> Result<BoxedFilter<(warp::reply::Response,)>, StaticDirError> {
    let source = static_source(config)?;
    let get_or_head = || warp::get().or(warp::head()).unify();

    // Paths are matched before methods: warp ranks "405 Method Not Allowed" above "404 Not
    // Found", so a method check first would turn every unknown path into a 405.
    let lobby = warp::path::end()
        .and(get_or_head())
        .and(raw_query())
        .map(|query: String| {
            let room_id = query_value(&query, "room_id").unwrap_or_default();
            html(StatusCode::OK, pages::lobby(&room_id, "", None, VERSION))
        });

    let enter = warp::path::end()
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_FORM_BYTES))
        .and(warp::body::bytes())
        .map(|body: Bytes| enter_room(&body));

    // Our embedded client asks for the name itself (its pre-join screen, for invite links);
    // a foreign bundle from --static-dir expects the lobby to have asked.
    let nameless_room_page = config.static_dir.is_none();
    let room = warp::path("room")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(get_or_head())
        .and(raw_query())
        .map(move |raw_room: String, query: String| {
            room_page(&raw_room, &query, nameless_room_page)
        });

    let healthcheck = warp::path("healthcheck")
        .and(warp::path::end())
        .and(get_or_head())
        .map(|| {
            let mut response = Response::new(Bytes::new());
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        });

    let files = warp::path::full()
        .and_then(|path: warp::path::FullPath| async move { static_path(path.as_str()) })
        .and(get_or_head())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            move |segments: Vec<String>, if_none_match: Option<String>| {
                let source = source.clone();
                async move {
                    source
                        .respond(&segments, if_none_match.as_deref())
                        .await
                        .ok_or_else(warp::reject::not_found)
                }
            },
        );

    Ok(lobby
        .or(enter)
        .unify()
        .or(room)
        .unify()
        .or(healthcheck)
        .unify()
        .or(files)
        .unify()
        .map(|response: Response<Bytes>| response.into_response())
        .boxed())
}

/// Where static files come from: `--static-dir` (checked, with a warning when it holds no
/// client bundle) or the build embedded in the binary.
fn static_source(config: &WebConfig) -> Result<StaticSource, StaticDirError> {
    let Some(dir) = &config.static_dir else {
        return Ok(StaticSource::Embedded);
    };
    let source = StaticSource::dir(dir)?;
    if let StaticSource::Dir(canonical) = &source {
        log::info!("serving static files from {}", canonical.display());
        if !canonical.join("assets/js/app.js").is_file() {
            log::warn!(
                "{} has no assets/js/app.js: the room page will not work",
                canonical.display()
            );
        }
    }
    Ok(source)
}

/// The raw query string, empty when the request has none.
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The first value of `key` in a urlencoded query or form (`+` is a space, as in Phoenix).
fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Checks a room name or display name; returns the trimmed value or the message to show.
fn check_field(value: &str, what: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("Please enter a {what}."));
    }
    if value.chars().count() > pages::MAX_FIELD_CHARS {
        return Err(format!(
            "The {what} is too long (at most {} characters).",
            pages::MAX_FIELD_CHARS
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("The {what} cannot contain control characters."));
    }
    Ok(value.to_owned())
}

/// Checks a room name: a field, and not `.`/`..`, which browsers remove from a URL path.
fn check_room(value: &str) -> Result<String, String> {
    let room = check_field(value, "room name")?;
    if room == "." || room == ".." {
        return Err("The room name cannot be \".\" or \"..\".".to_owned());
    }
    Ok(room)
}

/// `POST /`: redirects to the room, or shows the lobby again with what is wrong.
fn enter_room(body: &[u8]) -> Response<Bytes> {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (room_raw, name_raw) = (field("room_name"), field("display_name"));
    match (check_room(room_raw), check_field(name_raw, "display name")) {
        (Ok(room), Ok(name)) => redirect(&format!(
            "/room/{}?display_name={}",
            utf8_percent_encode(&room, COMPONENT),
            utf8_percent_encode(&name, COMPONENT)
        )),
        (Err(message), _) | (_, Err(message)) => {
            log::debug!("lobby: refused form: {message}");
            html(
                StatusCode::BAD_REQUEST,
                pages::lobby(room_raw, name_raw, Some(&message), VERSION),
            )
        }
    }
}

/// `GET /room/:room_id`: the room page, or back to the lobby without a display name.
fn room_page(raw_room: &str, query: &str, nameless: bool) -> Response<Bytes> {
    let decoded = percent_encoding::percent_decode_str(raw_room).decode_utf8();
    let room = match decoded.map_err(|_| "The room name is not valid UTF-8.".to_owned()) {
        Ok(room) => check_room(&room),
        Err(message) => Err(message),
    };
    let room = match room {
        Ok(room) => room,
        Err(message) => {
            log::debug!("room page: refused room name: {message}");
            return html(
                StatusCode::BAD_REQUEST,
                pages::lobby("", "", Some(&message), VERSION),
            );
        }
    };
    let has_name = query_value(query, "display_name").is_some_and(|name| !name.trim().is_empty());
    if has_name || nameless {
        html(StatusCode::OK, pages::room(&room, VERSION))
    } else {
        redirect(&format!(
            "/?room_id={}",
            utf8_percent_encode(&room, COMPONENT)
        ))
    }
}

/// The checked segments of a static path, or a 404 rejection (so other routes mounted after
/// these still get a chance).
fn static_path(raw_path: &str) -> Result<Vec<String>, Rejection> {
    static_files::static_segments(raw_path).ok_or_else(|| {
        if raw_path.contains("..") || raw_path.contains('\\') || raw_path.contains("%2") {
            log::info!("static: refused path {raw_path:?}");
        }
        warp::reject::not_found()
    })
}

/// A `302 Found` to an already percent-encoded location.
fn redirect(location: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::FOUND;
    let value =
        HeaderValue::from_str(location).expect("locations are built from percent-encoded ASCII");
    response.headers_mut().insert(header::LOCATION, value);
    response
}

/// An HTML page with the headers every page carries.
fn html(status: StatusCode, page: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The room URL carries the display name: keep it out of other sites' Referer headers.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_percent_encode_everything_but_unreserved_characters() {
        let response = enter_room(b"room_name=a%2Fb+%3Cscript%3E&display_name=J%C3%B3+%26+co");
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[header::LOCATION],
            "/room/a%2Fb%20%3Cscript%3E?display_name=J%C3%B3%20%26%20co"
        );
    }

    #[test]
    fn dot_room_names_are_refused_because_browsers_would_drop_them_from_the_path() {
        for room in [".", "..", "  "] {
            let body = format!("room_name={room}&display_name=x");
            assert_eq!(
                enter_room(body.as_bytes()).status(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}
