//! Static files: `priv/static` embedded at build time, or a folder on disk (`--static-dir`).
//!
//! Only the folders and files that Phoenix's `Plug.Static` serves in the original demo are
//! reachable: `/assets/**`, `/images/**`, `/fonts/**`, `/favicon.ico` and `/robots.txt`.
//! A request path is percent-decoded once and then checked segment by segment (no empty, `.`,
//! `..` or dot-file segments, no backslashes, colons or NUL bytes), and a file on disk must
//! still lie inside the folder after its symlinks are resolved: serving cannot leave the folder.
//!
//! Caching: the names are fixed (`app.js`, not a digest name), so responses carry
//! `Cache-Control: no-cache` and an `ETag`; browsers revalidate and get `304 Not Modified` when
//! nothing changed, which is cheap and never serves a stale bundle after an upgrade.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use warp::http::{HeaderValue, Response, StatusCode, header};

/// One file of `priv/static` compiled into the binary.
#[derive(Debug)]
pub(crate) struct EmbeddedFile {
    /// URL path below `/`, e.g. `assets/js/app.js`.
    pub(crate) path: &'static str,
    /// The file's bytes.
    pub(crate) contents: &'static [u8],
}

/// Strong ETags of [`EMBEDDED`] (same order), hashed from the contents on first use.
fn embedded_etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|f| format!("\"{:016x}-{:x}\"", fnv1a(f.contents), f.contents.len()))
            .collect()
    })
}

/// 64-bit FNV-1a: a stable content hash for ETags (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

include!(concat!(env!("OUT_DIR"), "/embedded_static.rs"));

/// URL paths (below `/`) of every file embedded in this binary, sorted.
pub fn embedded_paths() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|f| f.path)
}

/// Where static files come from.
#[derive(Clone, Debug)]
pub enum StaticSource {
    /// `priv/static` as it was when the binary was built.
    Embedded,
    /// A folder on disk (canonical path), e.g. an Elixir videoroom checkout's `priv/static`.
    Dir(PathBuf),
}

/// Why a `--static-dir` folder cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum StaticDirError {
    /// The path does not exist or cannot be resolved.
    #[error("static dir {path}: {source}")]
    Unreadable {
        /// The folder as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path exists but is not a folder.
    #[error("static dir {0} is not a directory")]
    NotADirectory(PathBuf),
}

impl StaticSource {
    /// Opens a folder for serving; fails when it does not exist or is not a folder.
    pub fn dir(path: &Path) -> Result<Self, StaticDirError> {
        let canonical = path
            .canonicalize()
            .map_err(|source| StaticDirError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
        if !canonical.is_dir() {
            return Err(StaticDirError::NotADirectory(path.to_path_buf()));
        }
        Ok(StaticSource::Dir(canonical))
    }

    /// Looks up `segments` (already checked by [`static_segments`]) and builds the response, or
    /// `None` when there is no such file.
    pub async fn respond(
        &self,
        segments: &[String],
        if_none_match: Option<&str>,
    ) -> Option<Response<Bytes>> {
        let content_type = content_type(segments.last()?);
        match self {
            StaticSource::Embedded => {
                let key = segments.join("/");
                let index = EMBEDDED
                    .binary_search_by(|f| f.path.cmp(key.as_str()))
                    .ok()?;
                let file = &EMBEDDED[index];
                Some(file_response(
                    Bytes::from_static(file.contents),
                    embedded_etags()[index].clone(),
                    &content_type,
                    if_none_match,
                ))
            }
            StaticSource::Dir(base) => {
                let mut path = base.clone();
                path.extend(segments);
                // Symlinks inside the folder may point anywhere: resolve and check again.
                let resolved = tokio::fs::canonicalize(&path).await.ok()?;
                if !resolved.starts_with(base) {
                    log::warn!(
                        "static: {} resolves outside {}",
                        path.display(),
                        base.display()
                    );
                    return None;
                }
                let metadata = tokio::fs::metadata(&resolved).await.ok()?;
                if !metadata.is_file() {
                    return None;
                }
                let contents = match tokio::fs::read(&resolved).await {
                    Ok(contents) => contents,
                    Err(e) => {
                        log::warn!("static: reading {}: {e}", resolved.display());
                        return None;
                    }
                };
                let modified = metadata
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                // Size + modification time: changes whenever the file is rebuilt.
                let etag = format!("W/\"{:x}-{modified:x}\"", contents.len());
                Some(file_response(
                    Bytes::from(contents),
                    etag,
                    &content_type,
                    if_none_match,
                ))
            }
        }
    }
}

/// Checks a raw (still percent-encoded) request path and returns its decoded segments when it
/// names something the static server may serve, `None` otherwise.
pub fn static_segments(raw_path: &str) -> Option<Vec<String>> {
    let decoded = percent_encoding::percent_decode_str(raw_path.strip_prefix('/')?)
        .decode_utf8()
        .ok()?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let segments: Vec<String> = decoded.split('/').map(str::to_owned).collect();
    for segment in &segments {
        // Empty segments (`//`), `.`/`..`, dot files and anything a filesystem could read as a
        // drive or stream name (`:`) never name a file of the site.
        if segment.is_empty() || segment.starts_with('.') || segment.contains(':') {
            return None;
        }
    }
    let allowed = match segments.as_slice() {
        [file] => file == "favicon.ico" || file == "robots.txt",
        [folder, _, ..] => matches!(folder.as_str(), "assets" | "images" | "fonts"),
        [] => false,
    };
    allowed.then_some(segments)
}

/// The `Content-Type` for a file name, with `charset=utf-8` for text.
fn content_type(file_name: &str) -> String {
    let mime = mime_guess::from_path(file_name).first_or_octet_stream();
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if textual {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

/// Builds a 200 (or 304 when `if_none_match` matches `etag`) response with the caching headers.
fn file_response(
    contents: Bytes,
    etag: String,
    content_type: &str,
    if_none_match: Option<&str>,
) -> Response<Bytes> {
    let not_modified = if_none_match.is_some_and(|header| etag_matches(header, &etag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, contents)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `If-None-Match` comparison (weak, as RFC 9110 requires for it): any listed tag or `*`.
fn etag_matches(header: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = bare(etag);
    header
        .split(',')
        .any(|candidate| candidate.trim() == "*" || bare(candidate) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_paths_are_limited_to_the_served_folders_and_files() {
        assert_eq!(
            static_segments("/assets/js/app.js"),
            Some(vec!["assets".into(), "js".into(), "app.js".into()])
        );
        assert!(static_segments("/favicon.ico").is_some());
        assert!(static_segments("/images/logo.png").is_some());
        assert!(static_segments("/assets").is_none());
        assert!(static_segments("/secret.txt").is_none());
        assert!(static_segments("/").is_none());
    }

    #[test]
    fn traversal_and_odd_segments_are_refused_before_touching_the_disk() {
        for path in [
            "/assets/../../etc/passwd",
            "/assets/%2e%2e/%2E%2E/etc/passwd",
            "/assets/js/..%2f..%2fCargo.toml",
            "/assets/..\\..\\Cargo.toml",
            "/assets/js%5c..%5c..%5cCargo.toml",
            "/assets//app.js",
            "/assets/./js/app.js",
            "/assets/.git/config",
            "/assets/C:/windows",
            "/assets/a%00b",
            "/assets/%ff",
        ] {
            assert_eq!(static_segments(path), None, "{path}");
        }
    }

    #[test]
    fn text_types_carry_a_charset_and_binary_types_do_not() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("robots.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("logo.png"), "image/png");
        assert_eq!(content_type("favicon.ico"), "image/x-icon");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("\"x\", W/\"a\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
