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

fn failure(o: &Output) -> (String, String) {
    assert!(!o.status.success(), "expected a failure; stdout: {}", String::from_utf8_lossy(&o.stdout));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn operators_requestors_and_audit_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The first admin key comes from the CLI; operators are listed without keys.
    let admin = stdout(&countersign(d, &["operator", "create", "--name", "Ada", "--role", "admin"], None));
    let admin_key = field(&admin, "api key:").to_owned();
    let support = stdout(&countersign(d, &["operator", "create", "--name", "Sven", "--role", "support"], None));
    let support_id = field(&support, "operator:").split_whitespace().next().unwrap().to_owned();
    stdout(&countersign(d, &["operator", "revoke", &support_id], None));
    let listed = stdout(&countersign(d, &["operator", "list"], None));
    assert!(!listed.contains(&admin_key) && !listed.contains("cso_"), "{listed}");
    let operators = json_lines(&listed);
    assert_eq!(operators.len(), 2);
    assert!(operators[0]["revokedAt"].is_null() && operators[1]["revokedAt"].is_i64(), "{listed}");
    let (_, err) = failure(&countersign(d, &["operator", "revoke", &support_id], None));
    assert!(err.contains("revoked already"), "{err}");

    // Requestor credentials rotate, printed once, with the overlap shown.
    let created = stdout(&countersign(d, &["requestor", "create", "--id", "shop-1", "--name", "Shop"], None));
    let first_key = field(&created, "api key:").to_owned();
    let rotated = stdout(&countersign(d, &["requestor", "rotate-key", "shop-1"], None));
    assert!(field(&rotated, "api key:").starts_with("csr_") && !rotated.contains(&first_key), "{rotated}");
    let secret = stdout(&countersign(d, &["requestor", "rotate-secret", "shop-1"], None));
    assert_eq!(field(&secret, "callback secret:").len(), 43, "{secret}");
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&countersign(d, &["requestor", "show", "shop-1"], None))).unwrap();
    assert!(shown["previousKeyValidUntil"].is_i64() && shown["previousCallbackSecretValidUntil"].is_i64());
    stdout(&countersign(d, &["requestor", "revoke-previous-key", "shop-1"], None));
    stdout(&countersign(d, &["requestor", "revoke-previous-secret", "shop-1"], None));
    let listed = json_lines(&stdout(&countersign(d, &["requestor", "list"], None)));
    assert!(listed[0]["previousKeyValidUntil"].is_null() && listed[0]["previousCallbackSecretValidUntil"].is_null());

    // The audit trail, a page at a time, names the CLI as the actor.
    let page = countersign(d, &["audit", "--actor", "cli", "--kind", "operator.created", "--limit", "1"], None);
    let first = json_lines(&stdout(&page));
    assert_eq!(first.len(), 1);
    let more = String::from_utf8_lossy(&page.stderr).into_owned();
    let cursor = more.trim().strip_prefix("more: --cursor ").unwrap_or_else(|| panic!("no cursor in {more}"));
    let next = countersign(d, &["audit", "--actor", "cli", "--kind", "operator.created", "--cursor", cursor], None);
    let second = json_lines(&stdout(&next));
    assert_eq!(second.len(), 1);
    assert_ne!(first[0]["detail"], second[0]["detail"]);
    assert!(next.stderr.is_empty(), "the last page");
    let all = json_lines(&stdout(&countersign(d, &["audit", "--kind", "requestor.api_key_rotated", "--all"], None)));
    assert_eq!((all.len(), all[0]["actor"].as_str()), (1, Some("cli")));
    let since = json_lines(&stdout(&countersign(d, &["audit", "--since", "2999-01-01T00:00:00Z"], None)));
    assert!(since.is_empty());
    let (_, err) = failure(&countersign(d, &["audit", "--since", "yesterday"], None));
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn cards_import_from_csv_and_json_lines_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("cards.csv");
    std::fs::write(
        &csv,
        "acctNumber,language,email,phone\n\
         378282246310005,ja,taro@example.jp,\n\
         371449635398431,en,,+46701234567\n\
         \n\
         378282246310006,sv,,\n\
         4111111111111111,fr,,\n\
         5555555555554444,sv,hanako@example.jp,\n",
    )
    .unwrap();
    let (out, err) = failure(&countersign(d, &["card", "import", csv.to_str().unwrap()], None));
    assert!(out.contains("3 card(s) imported: 3 created, 0 updated, 0 unchanged"), "{out}");
    assert!(out.contains("line 5: acctNumber: fails the Luhn check"), "{out}");
    assert!(out.contains("line 6: language: one of ja, en, sv"), "{out}");
    assert!(err.contains("2 line(s) failed"), "{err}");
    for number in ["378282246310005", "378282246310006", "4111111111111111"] {
        assert!(!out.contains(number) && !err.contains(number), "{out}{err}");
    }
    // Again: nothing changes.
    let (out, _) = failure(&countersign(d, &["card", "import", csv.to_str().unwrap()], None));
    assert!(out.contains("3 card(s) imported: 0 created, 0 updated, 3 unchanged"), "{out}");

    // JSON Lines from standard input: one card updated, one new.
    let lines = "{\"acctNumber\":\"378282246310005\",\"language\":\"sv\"}\n{\"acctNumber\":\"4111111111111111\"}\n";
    let out = stdout(&countersign(d, &["card", "import", "-", "--format", "jsonl"], Some(lines)));
    assert!(out.contains("2 card(s) imported: 1 created, 1 updated, 0 unchanged"), "{out}");
    let created = json_lines(&stdout(&countersign(d, &["audit", "--kind", "card.created", "--all"], None)));
    assert_eq!(created.len(), 4);
    let card_id = created[0]["cardId"].as_str().unwrap().to_owned();
    let card: serde_json::Value =
        serde_json::from_str(&stdout(&countersign(d, &["card", "show", &card_id], None))).unwrap();
    assert_eq!((card["language"].as_str(), card["hasEmail"].as_bool()), (Some("sv"), Some(true)), "{card}");
    let card: serde_json::Value =
        serde_json::from_str(&stdout(&countersign(d, &["card", "language", &card_id, "--language", "en"], None)))
            .unwrap();
    assert_eq!(card["language"], "en");

    let (_, err) = failure(&countersign(d, &["card", "import", d.join("cards.txt").to_str().unwrap()], None));
    assert!(err.contains("--format"), "{err}");
}

/// A database from before callback secrets were sealed: `migrate` seals
/// the clear one, which then appears nowhere in the table.
#[test]
fn migrate_seals_a_callback_secret_stored_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    stdout(&countersign(d, &["requestor", "create", "--id", "shop-1", "--name", "Shop"], None));
    let db = rusqlite::Connection::open(d.join("db.sqlite")).unwrap();
    let clear = "a-secret-from-an-older-version";
    db.execute("UPDATE requestors SET callback_secret = ?1, callback_secret_sealed = NULL", [clear]).unwrap();
    let out = stdout(&countersign(d, &["migrate"], None));
    assert!(out.contains("sealed 1 callback secret(s)"), "{out}");
    let (clear_column, sealed): (String, Vec<u8>) = db
        .query_row("SELECT callback_secret, callback_secret_sealed FROM requestors", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(clear_column, "");
    assert!(!String::from_utf8_lossy(&sealed).contains(clear));
    assert!(!stdout(&countersign(d, &["migrate"], None)).contains("sealed"), "once");
}
