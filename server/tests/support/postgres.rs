//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary
//! directory, started on a free loopback port, removed at the end.
//!
//! Shared by the storage contract suite and the several-node tests (which
//! include this file by path). PostgreSQL is required, never skipped: with
//! no server binaries the tests fail and say how to get them.
//! `scripts/ensure-postgres.sh` installs them and names their directory in
//! `COUNTERSIGN_TEST_PG_BIN`; without that variable the usual Debian
//! places are searched.
//!
//! A cluster's processes outlive a test process that dies abruptly, so
//! each cluster has a watchdog (a shell loop) that stops it and removes its
//! directory once the test process is gone.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run the server binaries as the `postgres` user: `initdb` refuses root.
    as_postgres: bool,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Creates and starts a cluster (about a second).
    pub fn start() -> Cluster {
        Self::start_with(|_| {})
    }

    /// A cluster that takes TLS connections only (but for its local
    /// socket), with the server certificate and key given (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Cluster {
        Self::start_with(|c| {
            c.write_data("server.crt", cert_pem);
            c.write_data("server.key", key_pem);
            let conf = std::fs::read_to_string(c.data().join("postgresql.conf")).expect("postgresql.conf");
            c.write_data("postgresql.conf", &format!("{conf}\nssl = on\n"));
            c.write_data("pg_hba.conf", "local all all trust\nhostssl all all 127.0.0.1/32 trust\n");
        })
    }

    /// A cluster where `user` must log in over TCP with `password`
    /// (SCRAM); the `postgres` superuser stays trusted, to set things up.
    pub fn start_with_password(user: &str, password: &str) -> Cluster {
        let cluster = Self::start_with(|c| {
            c.write_data(
                "pg_hba.conf",
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            );
        });
        let sql = format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}'");
        let out = run(Command::new(cluster.bin.join("psql")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &sql,
        ]));
        assert!(out.status.success(), "psql failed:\n{}", text(&out));
        cluster
    }

    /// Creates a cluster, lets `configure` change its files, and starts it.
    fn start_with(configure: impl FnOnce(&Cluster)) -> Cluster {
        let bin = server_binaries();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "countersign-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if as_postgres {
            let owner = run(Command::new("chown").arg("postgres:").arg(&dir));
            assert!(owner.status.success(), "chown postgres: {}", text(&owner));
        }
        let mut cluster = Cluster { dir, bin, port: 0, as_postgres };
        cluster.watch();
        let init = cluster.pg("initdb", |c| {
            c.arg("-D").arg(cluster.data()).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]);
        });
        assert!(init.status.success(), "initdb failed:\n{}", text(&init));
        configure(&cluster);
        // A free port can be taken by someone else before the server binds
        // it: try a few.
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.try_start() {
                return cluster;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", cluster.log());
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("countersign_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let out = run(Command::new(self.bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            &name,
        ]));
        assert!(out.status.success(), "createdb failed:\n{}", text(&out));
        self.url(&name)
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`):
    /// sessions are cut, committed work is kept.
    pub fn stop(&self) {
        let out = self.pg("pg_ctl", |c| {
            c.arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]);
        });
        assert!(out.status.success(), "pg_ctl stop failed:\n{}", text(&out));
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        assert!(self.try_start(), "PostgreSQL did not start again; its log:\n{}", self.log());
    }

    fn try_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.pg("pg_ctl", |c| {
            c.arg("-D").arg(self.data()).arg("-l").arg(&log).args(["-w", "-t", "30", "-o", &options, "start"]);
        })
        .status
        .success()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes a file of the data directory, readable by the server only
    /// (as PostgreSQL demands of a key).
    fn write_data(&self, name: &str, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data().join(name);
        std::fs::write(&path, contents).expect("write into the data directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if self.as_postgres {
            let owner = run(Command::new("chown").arg("postgres:").arg(&path));
            assert!(owner.status.success(), "chown postgres: {}", text(&owner));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Runs one of the server binaries, as `postgres` when we are root.
    fn pg(&self, program: &str, args: impl FnOnce(&mut Command)) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir(&self.dir);
        args(&mut command);
        run(&mut command)
    }

    /// Stops the cluster and removes its directory when this process ends,
    /// however it ends. Detached (`&` in a subshell) so it is nobody's
    /// child to wait for.
    fn watch(&self) {
        let pg_ctl = if self.as_postgres {
            format!("runuser -u postgres -- '{}'", self.bin.join("pg_ctl").display())
        } else {
            format!("'{}'", self.bin.join("pg_ctl").display())
        };
        let dir = self.dir.display();
        let script = format!(
            "(while kill -0 {pid} 2>/dev/null && [ -d '{dir}' ]; do sleep 0.5; done; \
             {pg_ctl} -D '{dir}/data' -m immediate stop; rm -rf '{dir}') >/dev/null 2>&1 &",
            pid = std::process::id()
        );
        let status = Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).status();
        assert!(status.is_ok_and(|s| s.success()), "cannot start the cluster's watchdog");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg("pg_ctl", |c| {
            c.arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]);
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn server_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("COUNTERSIGN_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "COUNTERSIGN_TEST_PG_BIN={} holds no initdb; run scripts/ensure-postgres.sh",
            dir.display()
        );
        return dir;
    }
    // Debian and Ubuntu keep them out of PATH, one directory per version;
    // the newest wins.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's server binaries (initdb, pg_ctl) are needed by these tests and were not found. \
         Run scripts/test.sh (it installs them), or `apt-get install postgresql`, or set \
         COUNTERSIGN_TEST_PG_BIN to the directory holding initdb."
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
