//! The server under test, in a process of its own: `countersign-bench
//! serve` runs it (the same configuration, logging and runtime as the
//! `countersign` binary would have), and [`ServerProcess`] starts and
//! watches that child from the benchmark, which holds only the clients.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use countersign_server::App;
use countersign_server::clock::SystemClock;
use countersign_server::config::Config;

/// The configuration both processes use: the defaults, with the database
/// and master key in the benchmark's directory. The risk rules stay the
/// defaults (velocity, low-value exemption); the clients never post a CReq,
/// so the window timeout is off.
pub fn config(dir: &Path, database_url: &str) -> Config {
    let mut c = Config::default();
    c.database.url = database_url.to_owned();
    c.secrets.master_key_file = dir.join("master.key");
    c.window.creq_timeout_secs = 0;
    c.codes.delivery_poll_interval_ms = 20;
    c
}

/// `countersign-bench serve`: binds a loopback port, prints
/// `listening <base URL>` on standard output, serves until standard input
/// closes (the benchmark ended or died).
pub async fn serve(dir: &Path, database_url: &str, connections: Option<usize>) -> Result<()> {
    init_logging();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut c = config(dir, database_url);
    c.server.public_url = Some(base.clone());
    if let Some(n) = connections {
        c.database.max_connections = n;
    }
    let app = App::open(c, Arc::new(SystemClock))?;
    let server = countersign_server::start(app, listener)?;
    println!("listening {base}");
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    })
    .await?;
    server.stop().await;
    Ok(())
}

/// As the `countersign` binary logs when not on a terminal: JSON lines at
/// `info` (the parent sends them to a file).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    tracing_subscriber::fmt().with_env_filter(filter).json().with_writer(std::io::stderr).init();
}

/// The running child; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub base: String,
}

impl ServerProcess {
    pub fn start(dir: &Path, database_url: &str, connections: Option<usize>) -> Result<Self> {
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("serve").arg("--dir").arg(dir).arg("--database-url").arg(database_url);
        if let Some(n) = connections {
            command.arg("--connections").arg(n.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the server process")?;
        let stdout = child.stdout.take().context("the server's standard output")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            bail!("the server process did not start (see {})", dir.join("server.log").display());
        };
        Ok(Self { base: base.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its standard input and waits for it to stop.
    pub fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The processes whose CPU each run counts besides the clients': the
/// server, and the database's when it runs here as processes of its own
/// (the throwaway PostgreSQL cluster; SQLite runs inside the server).
#[derive(Clone, Copy, Debug)]
pub struct Watched {
    pub server: u32,
    /// The PostgreSQL postmaster; its children are the backends serving
    /// the server's connections and its background workers.
    pub postmaster: Option<u32>,
}

impl Watched {
    /// What the database's processes (the postmaster and its children now
    /// alive: the server's pooled connections stay open, so their backends
    /// live through a run) and the server used so far, in one pass over
    /// `/proc`.
    pub fn usage(&self) -> Result<Usage> {
        let server_written = ProcStats::written_bytes(self.server)? as f64;
        let Some(postmaster) = self.postmaster else {
            return Ok(Usage { database_cpu_secs: None, written_bytes: Some(server_written) });
        };
        // Each figure is unknown, not smaller, once a process's is not ours
        // to read (another user's; its I/O counts are more private than its
        // CPU). A process that ends between listing and reading is skipped.
        let (mut cpu, mut written) = (Some(0.0), Some(server_written));
        let add = |total: &mut Option<f64>, value: Result<f64>| match value {
            Ok(value) => *total = total.map(|t| t + value),
            Err(e) if denied(&e) => *total = None,
            Err(_) => {}
        };
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid != postmaster && ProcStats::parent(pid).ok() != Some(postmaster) {
                continue;
            }
            add(&mut cpu, ProcStats::cpu_secs(pid));
            add(&mut written, ProcStats::written_bytes(pid).map(|bytes| bytes as f64));
        }
        Ok(Usage { database_cpu_secs: cpu, written_bytes: written })
    }
}

/// See [`Watched::usage`].
pub struct Usage {
    /// CPU seconds of the database's own processes; `None` for SQLite (it
    /// runs inside the server) or when unknown.
    pub database_cpu_secs: Option<f64>,
    /// Bytes the server and the database's processes sent to storage (as
    /// [`ProcStats::written_bytes`]); `None` when unknown.
    pub written_bytes: Option<f64>,
}

fn denied(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
}

/// The postmaster of the PostgreSQL cluster listening on `port` on this
/// machine, found by its command line (`postgres … -p <port> …`).
pub fn postmaster_on(port: u16) -> Result<Option<u32>> {
    let wanted = ["-p".to_owned(), port.to_string()];
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres") || a == "postgres");
        if is_postgres && args.windows(2).any(|w| w == wanted) {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// What `/proc/<pid>` tells of a process (Linux).
pub struct ProcStats;

impl ProcStats {
    /// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
    pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
        let path = PathBuf::from(format!("/proc/{pid}/status"));
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
                let kb = rest.trim().trim_end_matches("kB").trim();
                return kb.parse().with_context(|| format!("{field}: {kb}"));
            }
        }
        bail!("{field} not in {}", path.display())
    }

    /// CPU time the process used so far (user + system), in seconds.
    /// `/proc` counts it in USER_HZ ticks, 100 per second on Linux.
    pub fn cpu_secs(pid: u32) -> Result<f64> {
        // utime and stime are fields 14 and 15.
        Ok((Self::stat_field(pid, 14)? + Self::stat_field(pid, 15)?) as f64 / 100.0)
    }

    /// Bytes the process caused to be sent to storage so far
    /// (`write_bytes` of `/proc/<pid>/io`): counted when a page of a file
    /// is first dirtied, so what the disk must take, not every `write`
    /// (rewriting a page not yet written out counts once; sockets never).
    pub fn written_bytes(pid: u32) -> Result<u64> {
        let path = format!("/proc/{pid}/io");
        let io = std::fs::read_to_string(&path)?;
        let value = io.lines().find_map(|l| l.strip_prefix("write_bytes:")).context("write_bytes in /proc io")?;
        Ok(value.trim().parse()?)
    }

    /// The process's parent (field 4 of `/proc/<pid>/stat`).
    pub fn parent(pid: u32) -> Result<u32> {
        Ok(u32::try_from(Self::stat_field(pid, 4)?)?)
    }

    /// Numeric field `n` (counted from 1, as in proc(5)) of `/proc/<pid>/stat`.
    fn stat_field(pid: u32, n: usize) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
        // `rest` starts at field 3.
        let field = rest.split_whitespace().nth(n - 3).context("/proc stat field")?;
        Ok(field.parse()?)
    }
}
