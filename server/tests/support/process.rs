//! A `countersign` server in a process of its own, as an operator runs
//! it: the binary cargo built for these tests, configured by
//! `COUNTERSIGN_*` environment variables, listening on a free loopback
//! port. The process is killed when its handle is dropped (a failing test
//! included); should the test process itself die abruptly, a watchdog
//! kills it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary, built by cargo for this package's tests.
const BINARY: &str = env!("CARGO_BIN_EXE_countersign");

/// Settings as configuration keys (`database.url`) with their values.
pub type Settings = Vec<(&'static str, String)>;

pub struct ServerProcess {
    child: Child,
    watchdog: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `countersign serve` in `dir` with `settings` and waits until
    /// `/readyz` answers 200. `name` names its log file in `dir`.
    pub async fn start(dir: &Path, name: &str, settings: &Settings) -> ServerProcess {
        let log = dir.join(format!("{name}.log"));
        // A free port can be taken by someone else before the server binds
        // it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let mut all = settings.clone();
            all.push(("server.listen", format!("127.0.0.1:{port}")));
            all.push(("server.public_url", base.clone()));
            let out = std::fs::File::create(&log).expect("create the log file");
            let child = command(dir, &all)
                .arg("serve")
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
            let watchdog = watch(child.id());
            let mut server = ServerProcess { child, watchdog, base, log: log.clone() };
            if server.ready().await {
                return server;
            }
            if !server.log().contains("cannot listen") {
                panic!("{name} did not become ready; its log:\n{}", server.log());
            }
        }
        panic!("{name} found no free port; its log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Whether `/readyz` answered 200 before the process exited (or 30 s).
    async fn ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("the server's status").is_some() {
                return false;
            }
            let probe = http.get(format!("{}/readyz", self.base)).timeout(Duration::from_secs(2)).send().await;
            if probe.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- the last lines {} logged:", self.base);
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
        for child in [&mut self.watchdog, &mut self.child] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs an operator command (`["operator", "create", …]`) with `settings`,
/// as on the server's machine; returns what it printed.
pub fn run(dir: &Path, settings: &Settings, args: &[&str]) -> String {
    let out = command(dir, settings).args(args).stdin(Stdio::null()).output().expect("run countersign");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "countersign {args:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// The binary with `settings` as `COUNTERSIGN_SECTION__KEY` variables, and
/// nothing else from the test's environment that it would read.
fn command(dir: &Path, settings: &Settings) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("COUNTERSIGN_") {
            command.env_remove(name);
        }
    }
    for (key, value) in settings {
        command.env(format!("COUNTERSIGN_{}", key.replace('.', "__").to_uppercase()), value);
    }
    command
}

/// A shell that kills the server once the test process is gone, unless the
/// server ended first. It is a child of ours, so dropping the handle ends
/// it too.
fn watch(server: u32) -> Child {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 0.5; done; \
         kill -0 {me} 2>/dev/null || kill -9 {server} 2>/dev/null"
    );
    Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().expect("start the server's watchdog")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}
