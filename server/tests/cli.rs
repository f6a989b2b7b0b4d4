//! The `countersign` binary as an operator uses it: admin commands on a
//! fresh data directory, then `serve`, then a graceful stop.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn countersign(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.args(args)
        .env("COUNTERSIGN_DATABASE__URL", format!("sqlite://{}", dir.join("db.sqlite").display()))
        .env("COUNTERSIGN_SECRETS__MASTER_KEY_FILE", dir.join("master.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or_else(|| panic!("no {label} in {text}"))
}

#[test]
fn operator_commands_then_serve_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let requestor = stdout(&countersign(d, &["requestor", "create", "--id", "shop-1", "--name", "Demo Shop"], None));
    assert!(field(&requestor, "api key:").starts_with("csr_"));
    let card = stdout(&countersign(d, &["card", "create", "--email", "taro@example.jp"], Some("378282246310005\n")));
    assert!(card.contains("•••• 0005") && !card.contains("378282246310005"), "{card}");
    let card_id = field(&card, "card:").split_whitespace().next().unwrap().to_owned();
    let code = stdout(&countersign(d, &["enrolment-code", "create", "--card", &card_id], None));
    assert_eq!(field(&code, "enrolment code:").len(), 14);

    // A bad card number is refused with a message, and is not echoed.
    let bad = countersign(d, &["card", "create"], Some("378282246310006\n"));
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("acctNumber") && !err.contains("378282246310006"), "{err}");

    // An unknown configuration key stops start-up, naming the key.
    std::fs::write(d.join("bad.toml"), "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let typo = countersign(d, &["--config", d.join("bad.toml").to_str().unwrap(), "config"], None);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("lisen"));

    // Serve on a free port, answer /readyz, stop gracefully on SIGTERM.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .env("COUNTERSIGN_DATABASE__URL", format!("sqlite://{}", d.join("db.sqlite").display()))
        .env("COUNTERSIGN_SECRETS__MASTER_KEY_FILE", d.join("master.key"))
        .env("COUNTERSIGN_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready, "server did not become ready");
    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        server.try_wait().unwrap()
    });
    assert!(exited.expect("server did not stop on SIGTERM").success());
}

/// A minimal HTTP/1.1 GET, enough for a readiness probe.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn openapi_prints_the_committed_document_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let printed = stdout(&countersign(dir.path(), &["openapi"], None));
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")).unwrap();
    assert!(
        printed == committed,
        "docs/openapi.json is stale: cargo run -p countersign-server -- openapi > docs/openapi.json"
    );
    assert!(!dir.path().join("db.sqlite").exists(), "printing the document opened a database");
}
