//! Dependencies point one way: `rtc` (media events, engine, SFU) knows nothing about Phoenix,
//! rooms, the web layer or the app wiring; `room` is the only module that knows both `phoenix`
//! and `rtc`. Checked on the source text of every file under `src/rtc/`.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn rtc_never_imports_phoenix_room_web_or_app() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rtc");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() >= 5, "found the rtc sources: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for forbidden in [
                "crate::phoenix",
                "crate::room",
                "crate::web",
                "crate::app",
                "videoroom::phoenix",
                "videoroom::room",
            ] {
                assert!(
                    !code.contains(forbidden),
                    "{}:{}: rtc must not use {forbidden}: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn only_room_joins_phoenix_and_rtc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/room");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(
        all.contains("crate::phoenix"),
        "room implements the phoenix channel"
    );
    assert!(all.contains("crate::rtc::engine"), "room drives the engine");
    assert!(
        !all.contains("crate::web"),
        "room knows nothing about pages"
    );
}
