//! The HTML pages: the layout, the lobby and the room page.
//!
//! # DOM contract of the room page (shared with the TypeScript client in `assets/`)
//!
//! The room page keeps the DOM that the tutorial's `room_ui.ts` relies on, so the original
//! client's bundle works unchanged when it is served in place of ours
//! (`--static-dir`). Everything below is rendered by [`room`]; the client must not rely on
//! anything else.
//!
//! | selector | element | purpose |
//! | --- | --- | --- |
//! | `#room` | `<div>` | root; `data-room-id` holds the room id (HTML-escaped attribute; read it through `dataset.roomId`) |
//! | `#room-title` | `<h3>` | text `Room: <id>` |
//! | `#participants-list` | `<div>` | the client writes `Participants: a, b` into it |
//! | `#videochat-error` | `<div>` | error banner, rendered with `style="display: none;"`; the client sets its text and `style.display = "block"` |
//! | `#videochat` | `<div>` | scroll container around the template and the grid |
//! | `template#video-feed-template` | `<template>` | one tile, see below |
//! | `#videos-grid` | `<div>` | tiles are appended here; its class list starts as `grid grid-cols-2 …`, the client swaps `grid-cols-*`/`md:grid-cols-*` classes when the tile count changes |
//! | `#controls` | `<div>` | the buttons bar |
//! | `#toggle-mic` | `<button type="button">` | microphone toggle; the client sets `aria-pressed="true"` when muted and may change its text |
//! | `#toggle-camera` | `<button type="button">` | camera toggle; same convention as `#toggle-mic` |
//! | `#disconnect` | `<button type="button">` | leaves the room |
//! | `#connection-state` | `<span>` | connection state text; initial text `Connecting…`, `data-state="connecting"`; the client updates both (`connecting`, `connected`, `reconnecting`, `disconnected`, `failed`) |
//!
//! The template's content is exactly one tile element:
//!
//! ```html
//! <div name="video-feed" class="video-feed relative … ratio-video">
//!   <audio></audio>
//!   <video class="video-feed-video w-full"></video>
//!   <div name="video-label" class="video-feed-label absolute … bottom-0 left-0 p-2">Placeholder</div>
//! </div>
//! ```
//!
//! The client clones `template.content`, takes `div[name='video-feed']`, gives it the id
//! `feed-<peerId>`, gives the `<video>` the id `video-<peerId>` and the `<audio>` the id
//! `audio-<peerId>` (videos are muted, the audio element plays; the local tile's audio is muted
//! too), writes the display name into `div[name='video-label']` with `innerText`, adds the class
//! `flip-horizontally` to the local `<video>`, and appends the tile to `#videos-grid`.
//! The local peer's tile uses the peer id `local-peer`.
//!
//! Class names: the markup carries the Tailwind utility classes of the original demo (so the
//! original `app.css` styles it) plus our own semantic classes (`video-feed`, `video-feed-video`,
//! `video-feed-label`, `room-header`, `controls-button`, `videochat-error`, `lobby-*`), which is
//! what our own `app.css` should style. Our stylesheet also has to define `flip-horizontally`,
//! `ratio-video` and the grid classes the client toggles (`grid-cols-1`, `md:grid-cols-1..4`).
//!
//! The bundle is loaded with `<script defer src="/assets/js/app.js">` at the end of the body and
//! the stylesheet with `<link rel="stylesheet" href="/assets/css/app.css">` in the head; the lobby
//! loads the stylesheet only (no script), like the original.

use std::fmt::Write as _;

/// The product's name: the lobby's title and heading, and the second half of a room page's title
/// (`<room> · Videoroom`). The client uses the same name (`PRODUCT_NAME` in `assets/src/consts.ts`).
pub const PRODUCT_NAME: &str = "Videoroom";

/// Escapes text for use in HTML element content and in double- or single-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // A NUL byte is a parse error in HTML; the replacement character is what a browser shows anyway.
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Wraps a page body in the shared layout (title, stylesheet, version footer).
///
/// `body` must already be safe HTML; `title` and `version` are escaped here.
fn layout(title: &str, body: &str, version: &str) -> String {
    let mut page = String::with_capacity(body.len() + 1024);
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/assets/css/app.css">
</head>
<body class="bg-gray-800">
{body}
<footer class="version-footer fixed bottom-0 left-0 p-2 text-xs text-gray-400">Version: {version}</footer>
</body>
</html>
"#,
        title = escape_html(title),
        version = escape_html(version),
    );
    page
}

/// Renders the lobby: the "Join room!" form, room name prefilled from `?room_id=`.
///
/// `error` is an optional message shown above the form (e.g. after an incomplete POST).
pub fn lobby(room_id: &str, display_name: &str, error: Option<&str>, version: &str) -> String {
    let error_html = match error {
        Some(message) => format!(
            r#"<p id="lobby-error" class="lobby-error text-red-400 mb-4" role="alert">{}</p>
"#,
            escape_html(message)
        ),
        None => String::new(),
    };
    let body = format!(
        r#"<main class="lobby flex flex-col items-center justify-center min-h-screen p-4">
<div class="lobby-card flex flex-col items-center bg-gray-900 rounded-lg shadow p-8">
<img src="/images/logo.png" alt="Membrane logo" class="lobby-logo h-16 mb-4" width="64" height="64">
<h1 class="lobby-title text-3xl font-bold text-white mb-2">{PRODUCT_NAME}</h1>
<p class="lobby-tagline text-gray-300 mb-4">Video meetings in your browser: pick a room, tell the others your name.</p>
<h2 class="lobby-subtitle text-2xl font-semibold text-white mb-6">Join room!</h2>
{error_html}<form method="post" action="/" class="lobby-form flex flex-col w-full">
<label for="room_name" class="text-gray-200 mb-1">Room name</label>
<input id="room_name" name="room_name" type="text" required maxlength="{max}" value="{room}" class="lobby-input mb-4 p-2 rounded" placeholder="Room name">
<label for="display_name" class="text-gray-200 mb-1">Display name</label>
<input id="display_name" name="display_name" type="text" required maxlength="{max}" value="{name}" class="lobby-input mb-6 p-2 rounded" placeholder="Your name">
<button type="submit" class="lobby-button bg-blue-600 hover:bg-blue-800 text-white font-semibold py-2 px-4 rounded">Enter</button>
</form>
</div>
</main>"#,
        max = MAX_FIELD_CHARS,
        room = escape_html(room_id),
        name = escape_html(display_name),
    );
    layout(PRODUCT_NAME, &body, version)
}

/// Longest room name or display name the pages accept, in characters.
pub const MAX_FIELD_CHARS: usize = 100;

/// Renders the room page for `room_id` (DOM contract in the module documentation).
pub fn room(room_id: &str, version: &str) -> String {
    let room = escape_html(room_id);
    let body = format!(
        r#"<div id="room" class="room flex flex-col h-screen relative" data-room-id="{room}">
<section class="flex flex-col max-h-screen mb-14">
<header class="room-header p-4">
<div class="flex items-center">
<img src="/images/logo.png" alt="" class="hidden md:block h-8 mr-2">
<h2 class="text-2xl md:text-4xl font-bold text-white">{PRODUCT_NAME}</h2>
</div>
<h3 id="room-title" class="text-2xl font-semibold text-white mb-2">Room: {room}</h3>
<div id="participants-list" class="participants-list text-xl font-medium text-white"></div>
<span id="connection-state" class="connection-state text-sm text-gray-300" data-state="connecting" role="status" aria-live="polite">Connecting…</span>
</header>
<div id="videochat-error" class="videochat-error VideoChatError" role="alert" style="display: none;"></div>
<div id="videochat" class="px-2 md:px-20 overflow-y-auto">
<template id="video-feed-template">
<div name="video-feed" class="video-feed relative bg-gray-900 shadow rounded-md overflow-hidden h-full w-full ratio-video">
<audio></audio>
<video class="video-feed-video w-full"></video>
<div name="video-label" class="video-feed-label absolute text-white text-shadow-lg bottom-0 left-0 p-2">Placeholder</div>
</div>
</template>
<div class="flex flex-col justify-center items-center">
<div id="videos-grid" class="videos-grid grid grid-cols-2 grid-flow-row gap-4 justify-items-center"></div>
</div>
</div>
<div class="h-20"></div>
</section>
<div id="controls" class="controls flex-none flex justify-center gap-4 h-8 pb-2 absolute inset-x-0 bottom-2">
<button id="toggle-mic" type="button" class="controls-button text-white text-2xl font-normal hover:text-gray-400" aria-pressed="false">Mute microphone</button>
<button id="toggle-camera" type="button" class="controls-button text-white text-2xl font-normal hover:text-gray-400" aria-pressed="false">Turn camera off</button>
<button id="disconnect" type="button" class="controls-button text-white text-2xl font-normal hover:text-gray-400">Disconnect</button>
</div>
</div>
<script defer type="text/javascript" src="/assets/js/app.js"></script>"#
    );
    layout(&format!("{room_id} · {PRODUCT_NAME}"), &body, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_every_character_that_can_break_out_of_text_or_attributes() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("a\0b"), "a\u{FFFD}b");
        assert_eq!(escape_html("zażółć 🎥"), "zażółć 🎥");
    }

    #[test]
    fn the_room_page_escapes_the_room_id_in_the_attribute_and_the_header() {
        let page = room(r#""><script>x</script>"#, "1");
        assert!(!page.contains("<script>x"));
        assert!(page.contains(r#"data-room-id="&quot;&gt;&lt;script&gt;x&lt;/script&gt;""#));
        assert!(page.contains("Room: &quot;&gt;&lt;script&gt;x&lt;/script&gt;</h3>"));
        assert!(
            page.contains("<title>&quot;&gt;&lt;script&gt;x&lt;/script&gt; · Videoroom</title>")
        );
    }

    #[test]
    fn the_pages_carry_the_product_name_and_never_call_it_a_demo() {
        for page in [lobby("", "", None, "1"), room("standup", "1")] {
            assert!(page.contains(PRODUCT_NAME));
            assert!(!page.to_lowercase().contains("demo"), "{page}");
        }
    }

    #[test]
    fn the_lobby_prefills_the_escaped_room_name() {
        let page = lobby("a\"b", "", None, "1");
        assert!(
            page.contains(
                r#"name="room_name" type="text" required maxlength="100" value="a&quot;b""#
            )
        );
    }
}
