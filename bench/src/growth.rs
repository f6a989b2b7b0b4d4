//! Growth: stored authentications added straight into the database, so
//! scenarios 1 and 2 can be timed against 10 k, 100 k and 1 M of them.
//!
//! Each row is what an AReq leaves behind — the authentication and its
//! audit line, and for one in ten an approved challenge — spread evenly
//! over every stored card and dated two to nine days back, so the velocity
//! window (24 h) stays clear and the cards' histories are long. Ids are
//! scattered (a multiplicative hash of the row number) the way random
//! UUIDs are, so index inserts land all over the trees as in production.
//! SQL makes the rows inside the database: a million take seconds.

use anyhow::{Context, Result};

/// Rows per transaction.
const CHUNK: u64 = 50_000;

pub enum Store {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Store {
    /// Adds rows `from..to` (row numbers, so successive calls continue).
    pub async fn grow(&self, from: u64, to: u64, requestor_id: &str, now_ms: i64) -> Result<()> {
        let mut start = from;
        while start < to {
            let end = (start + CHUNK).min(to);
            match self {
                Store::Sqlite(path) => grow_sqlite(path, start, end, requestor_id, now_ms)?,
                Store::Postgres(url) => grow_postgres(url, start, end, requestor_id, now_ms).await?,
            }
            start = end;
        }
        match self {
            // The load, written out and synced before anything is timed: a
            // database that grew by serving had its pages written long ago,
            // while a bulk load leaves the kernel a gigabyte to write and the
            // server's checkpoints a WAL of the whole load to copy.
            Store::Sqlite(path) => checkpoint_sqlite(path)?,
            // As autovacuum would by the time a real database got this big.
            Store::Postgres(url) => connect_postgres(url).await?.batch_execute("ANALYZE").await?,
        }
        Ok(())
    }
}

/// Copies the whole WAL into the database file, synced, and starts it
/// over. The server's own checkpointer may hold the checkpoint lock at that
/// moment (SQLite then answers busy at once), so this tries again for a
/// while; if it never gets through, the load stays in the WAL and the run
/// goes on, with a warning (the figures then include copying it).
fn checkpoint_sqlite(path: &std::path::Path) -> Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    for _ in 0..100 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("warning: the grown database's WAL could not be checkpointed before the timed runs");
    Ok(())
}

/// Shared parts of both dialects: `n` is the row number, `k` the card's
/// index among all cards, `at` the creation time.
const STATUS: &str = "CASE WHEN n % 10 = 0 THEN 'C' WHEN n % 10 = 9 THEN 'N' ELSE 'Y' END";

fn grow_sqlite(path: &std::path::Path, from: u64, to: u64, requestor_id: &str, now_ms: i64) -> Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS grow_cards (k INTEGER PRIMARY KEY, id TEXT NOT NULL); \
         DELETE FROM grow_cards; INSERT INTO grow_cards (k, id) SELECT row_number() OVER (ORDER BY id) - 1, id FROM cards;",
    )?;
    let rows = format!(
        "WITH RECURSIVE seq(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?2), \
         g AS (SELECT n, printf('%08x-%04x-4000-8000-%012d', (n * 2654435761) % 4294967296, n % 65536, n) AS acs, \
               c.id AS card_id, ?4 - 172800000 - (n * 7919) % 604800000 AS at, {STATUS} AS status, ?3 AS requestor \
               FROM seq JOIN grow_cards c ON c.k = n % (SELECT COUNT(*) FROM grow_cards))"
    );
    let count =
        |sql: &str| -> Result<usize> { Ok(tx.execute(sql, rusqlite::params![from, to, requestor_id, now_ms])?) };
    count(&format!(
        "{rows} INSERT INTO authentications (acs_trans_id, ds_trans_id, requestor_id, card_id, message_version, \
         message_category, amount_minor, currency, exponent, merchant_name, merchant_id, notification_url, trans_status, \
         reasons, low_value_exempt, challenge_id, created_at, updated_at, browser_language, browser_tz) \
         SELECT acs, 'grown-' || n, requestor, card_id, '2.2.0', '01', 500 + n % 9000, 978, 2, 'Grown shop', 'MID-1', \
         'http://127.0.0.1:9/notify', status, CASE WHEN n % 10 = 0 THEN '[\"amount_above_threshold\"]' \
         ELSE '[\"low_risk\"]' END, n % 45 = 1, CASE WHEN n % 10 = 0 THEN 'ch-' || acs END, at, at, 'en', 0 FROM g"
    ))?;
    count(&format!(
        "{rows} INSERT INTO challenges (id, acs_trans_id, card_id, nonce, state, created_at, expires_at, decided_at, \
         outcome_reason) SELECT 'ch-' || acs, acs, card_id, randomblob(32), 'approved', at, at + 300000, at + 20000, \
         'approved' FROM g WHERE n % 10 = 0"
    ))?;
    count(&format!(
        "{rows} INSERT INTO audit_events (at, kind, actor, card_id, acs_trans_id, challenge_id, outcome, detail) \
         SELECT at, 'authentication.decided', 'requestor:' || requestor, card_id, acs, \
         CASE WHEN n % 10 = 0 THEN 'ch-' || acs END, status, '{{\"reasons\":[\"low_risk\"]}}' FROM g"
    ))
    .context("growing the SQLite database")?;
    tx.commit()?;
    Ok(())
}

async fn connect_postgres(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn grow_postgres(url: &str, from: u64, to: u64, requestor_id: &str, now_ms: i64) -> Result<()> {
    let mut client = connect_postgres(url).await?;
    let tx = client.transaction().await?;
    let rows = format!(
        "WITH cards_k AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM cards), \
         g AS (SELECT n, lpad(to_hex((n * 2654435761) % 4294967296), 8, '0') || '-' || lpad(to_hex(n % 65536), 4, '0') \
               || '-4000-8000-' || lpad(n::text, 12, '0') AS acs, c.id AS card_id, \
               $4::bigint - 172800000 - (n * 7919) % 604800000 AS at, {STATUS} AS status, $3::text AS requestor \
               FROM generate_series($1::bigint, $2::bigint - 1) n \
               JOIN cards_k c ON c.k = n % (SELECT COUNT(*) FROM cards))"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&(from as i64), &(to as i64), &requestor_id, &now_ms];
    tx.execute(
        &format!(
            "{rows} INSERT INTO authentications (acs_trans_id, ds_trans_id, requestor_id, card_id, message_version, \
             message_category, amount_minor, currency, exponent, merchant_name, merchant_id, notification_url, \
             trans_status, reasons, low_value_exempt, challenge_id, created_at, updated_at, browser_language, browser_tz) \
             SELECT acs, 'grown-' || n, requestor, card_id, '2.2.0', '01', 500 + n % 9000, 978, 2, 'Grown shop', 'MID-1', \
             'http://127.0.0.1:9/notify', status, CASE WHEN n % 10 = 0 THEN ARRAY['amount_above_threshold'] \
             ELSE ARRAY['low_risk'] END, n % 45 = 1, CASE WHEN n % 10 = 0 THEN 'ch-' || acs END, at, at, 'en', 0 FROM g"
        ),
        &params,
    )
    .await?;
    tx.execute(
        &format!(
            "{rows} INSERT INTO challenges (id, acs_trans_id, card_id, nonce, state, created_at, expires_at, \
             decided_at, outcome_reason) SELECT 'ch-' || acs, acs, card_id, sha256(acs::bytea), 'approved', at, \
             at + 300000, at + 20000, 'approved' FROM g WHERE n % 10 = 0"
        ),
        &params,
    )
    .await?;
    tx.execute(
        &format!(
            "{rows} INSERT INTO audit_events (at, kind, actor, card_id, acs_trans_id, challenge_id, outcome, detail) \
             SELECT at, 'authentication.decided', 'requestor:' || requestor, card_id, acs, \
             CASE WHEN n % 10 = 0 THEN 'ch-' || acs END, status, '{{\"reasons\":[\"low_risk\"]}}'::jsonb FROM g"
        ),
        &params,
    )
    .await
    .context("growing the PostgreSQL database")?;
    tx.commit().await?;
    Ok(())
}
