//! mix-compat: the `mix` shim's dispatch, and serving an Elixir checkout's `priv/static`.
//!
//! The shim is run for real with bash, but `cargo`, `npm` and `test/run_all.sh` are stubs that
//! record their arguments, working directory and environment: really building the release or
//! installing npm packages inside a test would take minutes and prove nothing about the shim
//! (the builds themselves are exercised by the rest of the test suite). The stubs are the only
//! programs on PATH besides `dirname` and `cat`, so a real cargo or npm can never be reached.

mod kit;

use kit::server::{start_server, test_config};
use kit::{assert_served, get_text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use videoroom::config::Config;

const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mix-compat/mix");

/// A scratch world: a fake project root, a stub bin dir, a caller directory and a log.
struct World {
    base: PathBuf,
}

impl World {
    fn new(with_npm: bool) -> World {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "videoroom-mix-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let world = World { base };
        for dir in [
            "root/assets",
            "root/test",
            "bin",
            "elixir_checkout/priv/static",
        ] {
            std::fs::create_dir_all(world.base.join(dir)).unwrap();
        }
        std::fs::write(world.root().join("Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(world.root().join("assets/package.json"), "{}\n").unwrap();
        let recorder = |name: &str| {
            format!(
                "#!/bin/bash\nprintf '%s|%s|%s|SERVER_PORT=%s|EXTERNAL_IP=%s|PORT_RANGE=%s|STATIC_DIR=%s|TLS_CERT=%s|TLS_KEY=%s\\n' \
                 {name} \"$PWD\" \"$*\" \"${{SERVER_PORT-unset}}\" \"${{EXTERNAL_IP-unset}}\" \"${{PORT_RANGE-unset}}\" \
                 \"${{STATIC_DIR-unset}}\" \"${{TLS_CERT-unset}}\" \"${{TLS_KEY-unset}}\" >> {log:?}\n",
                log = world.log_path().display().to_string(),
            )
        };
        world.script("bin/cargo", &recorder("cargo"));
        if with_npm {
            world.script("bin/npm", &recorder("npm"));
        }
        world.script("root/test/run_all.sh", &recorder("run_all.sh"));
        // The few real programs the shim itself needs.
        for tool in ["dirname", "cat"] {
            let real = which(tool);
            std::os::unix::fs::symlink(real, world.base.join("bin").join(tool)).unwrap();
        }
        world
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    fn checkout(&self) -> PathBuf {
        self.base.join("elixir_checkout")
    }

    fn log_path(&self) -> PathBuf {
        self.base.join("calls.log")
    }

    fn script(&self, relative: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.base.join(relative);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs `mix <args>` from `cwd` with only the stubs on PATH and `env` added.
    fn mix(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new("/bin/bash");
        command
            .arg(SHIM)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", self.base.join("bin"))
            .env("VIDEOROOM_ROOT", self.root());
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run the shim")
    }

    /// The recorded calls, one `tool|cwd|args|env…` line each.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The recorded `cargo fetch` of the project, run from the base folder.
    fn cargo_fetch(&self) -> String {
        let root = self.root().display().to_string();
        format!(
            "cargo|{}|fetch --manifest-path {root}/Cargo.toml",
            self.base.display()
        )
    }

    /// The recorded `npm ci` in the project's `assets/`.
    fn npm_ci(&self) -> String {
        format!("npm|{}/assets|ci", self.root().display())
    }

    /// The recorded calls without the environment part.
    fn commands(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|line| line.splitn(4, '|').take(3).collect::<Vec<_>>().join("|"))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn which(tool: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{tool} not found"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn mix_setup_fetches_crates_installs_the_client_packages_and_builds_the_release() {
    let world = World::new(true);
    let output = world.mix(&world.base, &["setup"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let root = world.root().display().to_string();
    assert_eq!(
        world.commands(),
        vec![
            world.cargo_fetch(),
            world.npm_ci(),
            format!(
                "cargo|{}|build --manifest-path {root}/Cargo.toml --release",
                world.base.display()
            ),
        ]
    );
}

#[test]
fn mix_setup_without_npm_still_builds_the_server_and_says_why_it_skipped_the_client() {
    let world = World::new(false);
    let output = world.mix(&world.base, &["setup"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("npm not found"),
        "{}",
        stderr(&output)
    );
    let commands = world.commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands.iter().all(|c| c.starts_with("cargo|")));
}

#[test]
fn mix_deps_get_fetches_crates_and_the_client_packages() {
    let world = World::new(true);
    let output = world.mix(&world.base, &["deps.get"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(world.commands(), vec![world.cargo_fetch(), world.npm_ci()]);
}

#[test]
fn mix_phx_server_runs_the_release_server_in_the_callers_directory_with_the_elixir_variables() {
    let world = World::new(true);
    let output = world.mix(
        &world.checkout(),
        &["phx.server", "--static-dir", "priv/static"],
        &[
            ("SERVER_PORT", "4001"),
            ("EXTERNAL_IP", "192.0.2.7"),
            ("PORT_RANGE", "50000-59999"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let root = world.root().display().to_string();
    assert_eq!(
        world.calls(),
        vec![format!(
            "cargo|{}|run --release --manifest-path {root}/Cargo.toml --bin videoroom -- --static-dir priv/static\
             |SERVER_PORT=4001|EXTERNAL_IP=192.0.2.7|PORT_RANGE=50000-59999|STATIC_DIR=unset|TLS_CERT=unset|TLS_KEY=unset",
            world.checkout().display()
        )]
    );
}

#[test]
fn mix_phx_server_turns_the_elixir_tls_settings_into_tls_cert_and_key() {
    let world = World::new(true);
    let output = world.mix(
        &world.checkout(),
        &["phx.server"],
        &[("USE_TLS", "true"), ("CERT_FILE_PATH", "certs/mine.pem")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let calls = world.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].ends_with("|TLS_CERT=certs/mine.pem|TLS_KEY=priv/certs/key.pem"),
        "{calls:?}"
    );

    // Without USE_TLS=true nothing TLS-related is set.
    let world = World::new(true);
    let output = world.mix(
        &world.checkout(),
        &["phx.server"],
        &[
            ("CERT_FILE_PATH", "certs/mine.pem"),
            ("STATIC_DIR", "priv/static"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        world.calls()[0].ends_with("|STATIC_DIR=priv/static|TLS_CERT=unset|TLS_KEY=unset"),
        "{:?}",
        world.calls()
    );
}

#[test]
fn mix_test_runs_the_project_test_script_from_the_project_root_with_the_arguments() {
    let world = World::new(true);
    let output = world.mix(&world.checkout(), &["test", "--only", "web"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        world.commands(),
        vec![format!("run_all.sh|{}|--only web", world.root().display())]
    );
}

#[test]
fn mix_assets_deploy_installs_packages_when_needed_and_builds_the_bundle() {
    let world = World::new(true);
    let output = world.mix(&world.base, &["assets.deploy"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let assets = world.root().join("assets").display().to_string();
    assert_eq!(
        world.commands(),
        vec![
            format!("npm|{assets}|ci"),
            format!("npm|{assets}|run build")
        ]
    );

    // Packages already installed: only the build.
    let world = World::new(true);
    std::fs::create_dir_all(world.root().join("assets/node_modules")).unwrap();
    let output = world.mix(&world.base, &["assets.deploy"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        world.commands(),
        vec![format!(
            "npm|{assets_}|run build",
            assets_ = world.root().join("assets").display()
        )]
    );
}

#[test]
fn mix_assets_deploy_without_npm_fails_and_names_what_is_missing() {
    let world = World::new(false);
    let output = world.mix(&world.base, &["assets.deploy"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("npm not found"),
        "{}",
        stderr(&output)
    );
    assert!(world.calls().is_empty());
}

#[test]
fn unknown_tasks_fail_with_a_clear_message_and_run_nothing() {
    let world = World::new(true);
    for task in ["ecto.migrate", "phx.routes", "compile"] {
        let output = world.mix(&world.base, &[task], &[]);
        assert_eq!(output.status.code(), Some(1), "{task}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("unknown task \"{task}\"")),
            "{message}"
        );
        assert!(message.contains("phx.server"), "{message}");
    }
    assert!(world.calls().is_empty());
}

#[test]
fn mix_help_lists_every_supported_task() {
    let world = World::new(true);
    for args in [&["help"][..], &[][..]] {
        let output = world.mix(&world.base, args, &[]);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        for task in ["setup", "deps.get", "phx.server", "test", "assets.deploy"] {
            assert!(text.contains(&format!("mix {task}")), "{text}");
        }
    }
    assert!(world.calls().is_empty());
}

#[test]
fn without_cargo_the_shim_says_how_to_get_it() {
    let world = World::new(true);
    std::fs::remove_file(world.base.join("bin/cargo")).unwrap();
    let output = world.mix(&world.base, &["phx.server"], &[]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("cargo not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn by_default_the_shim_drives_the_project_it_lives_in() {
    let world = World::new(true);
    let output = Command::new("/bin/bash")
        .arg(SHIM)
        .arg("phx.server")
        .current_dir(world.checkout())
        .env_clear()
        .env("PATH", world.base.join("bin"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml")
        .display()
        .to_string();
    assert!(
        world.commands()[0].contains(&format!("--manifest-path {manifest} ")),
        "{:?}",
        world.commands()
    );
}

/// What an Elixir videoroom checkout's `priv/static` holds after `mix assets.deploy`
/// (`phx.digest` adds digested copies and a manifest next to the plain names).
#[tokio::test]
async fn an_elixir_checkouts_priv_static_is_served_by_the_rust_server() {
    let world = World::new(true);
    let static_dir = world.checkout().join("priv/static");
    let files: &[(&str, &[u8], &str)] = &[
        (
            "assets/js/app.js",
            b"/* elixir room.ts bundle */",
            "text/javascript; charset=utf-8",
        ),
        (
            "assets/js/app-3f2a1b.js",
            b"/* digested */",
            "text/javascript; charset=utf-8",
        ),
        (
            "assets/css/app.css",
            b".ratio-video{aspect-ratio:16/9}",
            "text/css; charset=utf-8",
        ),
        ("images/logo.png", b"\x89PNG elixir logo", "image/png"),
        ("favicon.ico", b"\0\0\x01\0", "image/x-icon"),
        ("robots.txt", b"User-agent: *", "text/plain; charset=utf-8"),
    ];
    for (path, body, _) in files {
        let full = static_dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, body).unwrap();
    }
    std::fs::write(static_dir.join("cache_manifest.json"), b"{}").unwrap();

    let server = start_server(Config {
        static_dir: Some(static_dir),
        ..test_config()
    })
    .await;
    for (path, body, content_type) in files {
        assert_served(&server.url(&format!("/{path}")), Some(content_type), body).await;
    }
    // Files outside the Plug.Static allow-list stay private, as with Phoenix.
    let response = reqwest::get(server.url("/cache_manifest.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The room page loads the Elixir bundle from the usual place.
    let page = get_text(&server.url("/room/lobby?display_name=x")).await;
    assert!(page.contains(r#"src="/assets/js/app.js""#));
    server.stop().await;
}
