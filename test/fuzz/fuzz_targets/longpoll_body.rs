//! LongPoll POST bodies (ndjson lines of JSON text or base64 binary pushes) through the real
//! warp LongPoll filter in process (no sockets): a session is opened with GET, then each input
//! is POSTed to it; a session the input closed is replaced.
#![no_main]
use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use videoroom::phoenix::transport::{Endpoint, SocketMount};
use videoroom::phoenix::{EchoChannel, Router};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

struct Shell {
    runtime: tokio::runtime::Runtime,
    filter: BoxedFilter<(Response,)>,
    token: Option<String>,
}

thread_local! {
    static SHELL: RefCell<Shell> = RefCell::new({
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let filter = runtime.block_on(async {
            let endpoint = Endpoint::new();
            let mount = SocketMount::new("/socket", Router::new().channel("echo:*", || EchoChannel));
            endpoint.mount(mount).map(|r| r).boxed()
        });
        Shell { runtime, filter, token: None }
    });
}

fn status(body: &[u8]) -> (u64, Option<String>) {
    let v: serde_json::Value = serde_json::from_slice(body).expect("LongPoll answers JSON");
    let status = v["status"]
        .as_u64()
        .expect("LongPoll answers carry a status");
    (status, v["token"].as_str().map(str::to_owned))
}

fuzz_target!(|data: &[u8]| {
    SHELL.with_borrow_mut(|shell| {
        let Shell {
            runtime,
            filter,
            token,
        } = shell;
        runtime.block_on(async {
            if token.is_none() {
                let r = warp::test::request()
                    .method("GET")
                    .path("/socket/longpoll?vsn=2.0.0")
                    .reply(filter)
                    .await;
                let (s, t) = status(r.body());
                assert_eq!(s, 410, "a new session answers 410 with its token");
                *token = t;
            }
            let path = format!(
                "/socket/longpoll?vsn=2.0.0&token={}",
                token.as_deref().unwrap()
            );
            let r = warp::test::request()
                .method("POST")
                .path(&path)
                .header("content-type", "application/x-ndjson")
                .body(data)
                .reply(filter)
                .await;
            let (s, _) = status(r.body());
            assert!(
                matches!(s, 200 | 408 | 410),
                "POST answers 200, 408 or 410, got {s}"
            );
            if s != 200 {
                *token = None;
            }
        });
    });
});
