//! The `countersign` process as an operator runs it: HTTPS from PEM files
//! with a certificate renewed by SIGHUP, and a SIGTERM that lets a request
//! in flight finish while refusing new connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed if the test ends early.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, extra_env: &[(&str, String)]) -> Server {
        let addr = free_addr();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
        cmd.env("COUNTERSIGN_DATABASE__URL", format!("sqlite://{}", dir.join("db.sqlite").display()))
            .env("COUNTERSIGN_SECRETS__MASTER_KEY_FILE", dir.join("master.key"))
            .env("COUNTERSIGN_SERVER__LISTEN", addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in extra_env {
            cmd.env(key, value);
        }
        Server { child: cmd.spawn().unwrap(), addr }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own; its exit status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not exit within {within:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A self-signed certificate for `localhost`, written as two PEM files.
fn write_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.pem())
}

/// A client that trusts only `ca_pem` and reaches `localhost` at `addr`.
fn client_trusting(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_from_pem_files_and_a_certificate_renewed_by_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, first) = write_certificate(dir.path(), "first");
    let mut server = Server::start(
        dir.path(),
        &[
            ("COUNTERSIGN_SERVER__TLS__CERT_FILE", cert.display().to_string()),
            ("COUNTERSIGN_SERVER__TLS__KEY_FILE", key.display().to_string()),
        ],
    );
    let url = format!("https://localhost:{}/readyz", server.addr.port());
    let trusts_first = client_trusting(&first, server.addr);
    wait_ready(&trusts_first, &url).await;
    let response = trusts_first.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN offers h2");

    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(!http_get(server.addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")));

    // A botched renewal (garbage in the certificate file) keeps the old one.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trusts_first.get(&url).send().await.unwrap().status(), 200, "still serving after a bad reload");

    // The renewed certificate is served after SIGHUP, without a restart.
    let (new_cert, new_key, second) = write_certificate(dir.path(), "second");
    std::fs::rename(new_cert, &cert).unwrap();
    std::fs::rename(new_key, &key).unwrap();
    server.signal("HUP");
    let trusts_second = client_trusting(&second, server.addr);
    let mut renewed = false;
    for _ in 0..100 {
        if trusts_second.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the renewed certificate was not served");
    // Fresh connections (a new client: no pooled connection) no longer get the old one.
    assert!(client_trusting(&first, server.addr).get(&url).send().await.is_err());

    let asked = Instant::now();
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    println!("TLS stop took {:?}", asked.elapsed());
}

#[test]
fn a_certificate_that_cannot_be_read_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key, _) = write_certificate(dir.path(), "only-key");
    let missing = dir.path().join("missing.crt");
    let output = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .env("COUNTERSIGN_DATABASE__URL", format!("sqlite://{}", dir.path().join("db.sqlite").display()))
        .env("COUNTERSIGN_SECRETS__MASTER_KEY_FILE", dir.path().join("master.key"))
        .env("COUNTERSIGN_SERVER__LISTEN", free_addr().to_string())
        .env("COUNTERSIGN_SERVER__TLS__CERT_FILE", &missing)
        .env("COUNTERSIGN_SERVER__TLS__KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.tls.cert_file") && stderr.contains("missing.crt"), "{stderr}");
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("COUNTERSIGN_SERVER__SHUTDOWN_GRACE_SECS", "10".into())]);
    let ready = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        http_get(server.addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready, "server did not become ready");

    // A request whose body is still arriving when the stop is asked for:
    // a challenge window opened with a CReq the handler has to read in full.
    let body = b"creq=not-a-creq";
    let mut in_flight = TcpStream::connect(server.addr).unwrap();
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /challenge HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    server.signal("TERM");
    // The listener closes as soon as the signal is handled: polled, since
    // a loaded machine may take a while to schedule the server.
    let refused = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        TcpStream::connect(server.addr).is_err()
    });
    assert!(refused, "new connections were still accepted 5 s after SIGTERM");

    in_flight.write_all(&body[5..]).unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).unwrap();
    // Answered in full, by the real handler, after the stop was asked for.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("text/html"), "{answer}");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn the_grace_period_bounds_a_stop_held_by_a_stalled_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("COUNTERSIGN_SERVER__SHUTDOWN_GRACE_SECS", "1".into())]);
    let ready = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        http_get(server.addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready, "server did not become ready");
    // A client that sends half a request and then nothing.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(b"POST /challenge HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncreq=")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let took = asked.elapsed();
    println!("stop with a stalled request took {took:?} (grace 1 s)");
    assert!(took >= Duration::from_millis(900), "the stop did not wait for the request in flight ({took:?})");
}

/// A minimal HTTP/1.1 GET.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Runs a `countersign` command on the database in `dir`.
fn countersign(dir: &Path, db: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env("COUNTERSIGN_DATABASE__URL", format!("sqlite://{}", dir.join(db).display()))
        .env("COUNTERSIGN_SECRETS__MASTER_KEY_FILE", dir.join("master.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn card_count(path: &Path) -> i64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("SELECT COUNT(*) FROM cards", [], |r| r.get(0)).unwrap()
}

#[test]
fn an_online_backup_of_a_serving_database_restores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Luhn-valid test numbers: 4000 0000 0000 00NN with the right check digit.
    let numbers: Vec<String> = (0..40).map(|i| luhn_complete(&format!("40000000000{i:04}"))).collect();
    let created = countersign(d, "db.sqlite", &["card", "create"], Some(&format!("{}\n", numbers[0])));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let first_card = String::from_utf8_lossy(&created.stdout).split_whitespace().nth(1).unwrap().to_owned();

    // The server serves while cards are written and the backup is taken.
    let mut server = Server::start(d, &[]);
    let writer = {
        let d = d.to_owned();
        let numbers = numbers.clone();
        std::thread::spawn(move || {
            for number in &numbers[1..] {
                let out = countersign(&d, "db.sqlite", &["card", "create"], Some(&format!("{number}\n")));
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let target = d.join("backup.db");
    let out = countersign(d, "db.sqlite", &["backup", target.to_str().unwrap()], None);
    let before_end = card_count(&d.join("db.sqlite"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("integrity check ok"), "{report}");
    writer.join().unwrap();

    // A consistent snapshot: some prefix of the cards written, none torn.
    let in_backup = card_count(&target);
    assert!((1..=before_end).contains(&in_backup), "backup holds {in_backup}, live had {before_end}");
    assert!(!d.join("backup.db.partial").exists());

    // Never overwrites.
    let again = countersign(d, "db.sqlite", &["backup", target.to_str().unwrap()], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The copy is a working database: the same master key finds its cards.
    let shown = countersign(d, "backup.db", &["card", "show", &first_card], None);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&first_card));

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn backup_refuses_postgresql_and_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["backup", dir.path().join("b.db").to_str().unwrap()])
        .env("COUNTERSIGN_DATABASE__URL", "postgres://countersign@127.0.0.1:1/countersign")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    let out = countersign(dir.path(), "absent.db", &["backup", dir.path().join("b.db").to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// Appends the Luhn check digit.
fn luhn_complete(partial: &str) -> String {
    format!("{partial}{}", countersign_server::emv::luhn_check_digit(partial).expect("digits"))
}

/// The unit file and the example configuration it runs with, as shipped.
#[test]
fn the_packaged_unit_and_configuration_fit_together() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("packaging");
    let unit = std::fs::read_to_string(root.join("countersign.service")).unwrap();
    let setting = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_owned()
    };

    // The example configuration is valid: the real loader (unknown keys fail) accepts it.
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["--config", root.join("countersign.toml").to_str().unwrap(), "config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let effective: toml::Table = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    let grace = effective["server"]["shutdown_grace_secs"].as_integer().unwrap();

    assert_eq!(setting("ExecStart"), "/usr/local/bin/countersign --config /etc/countersign/countersign.toml serve");
    assert_eq!(setting("ExecReload"), "/bin/kill -HUP $MAINPID", "SIGHUP reloads the TLS certificate");
    assert_eq!(setting("KillSignal"), "SIGTERM");
    let stop_timeout: i64 = setting("TimeoutStopSec").parse().unwrap();
    assert!(stop_timeout > grace, "systemd would kill the server inside its grace period");
    let state = effective["database"]["url"].as_str().unwrap();
    assert!(state.starts_with(&format!("sqlite:///var/lib/{}/", setting("StateDirectory"))), "{state}");

    // systemd's own check, with the binary this build made in ExecStart.
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().unwrap();
        let local = unit.replace("/usr/local/bin/countersign", env!("CARGO_BIN_EXE_countersign"));
        std::fs::write(dir.path().join("countersign.service"), local).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join("countersign.service"))
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    } else {
        println!("systemd-analyze is not installed: the unit was checked by its settings only");
    }
}
