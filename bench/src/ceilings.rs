//! Ceilings measured in the same run, on one thread each: what the
//! hardware gives for the two costs a request cannot avoid.

use std::time::Instant;

use anyhow::Result;
use countersign_core::protocol::{PublicKey, SoftwareKey};

pub struct Ceilings {
    /// Raw `ring` P-256 ECDSA (SHA-256) verifications per second.
    pub verify_per_sec: f64,
    /// Raw SQLite single-row commits per second (WAL, `synchronous=NORMAL`).
    pub commit_per_sec: f64,
}

pub async fn measure(secs: f64) -> Result<Ceilings> {
    let verify_per_sec = tokio::task::spawn_blocking(move || verify(secs)).await??;
    let commit_per_sec = tokio::task::spawn_blocking(move || sqlite_commits(secs)).await??;
    Ok(Ceilings { verify_per_sec, commit_per_sec })
}

fn verify(secs: f64) -> Result<f64> {
    let key = SoftwareKey::generate();
    let public = PublicKey::from_sec1(&key.public_key())?;
    let message = b"countersign bench: a message about the size of a decision".repeat(4);
    let signature = key.sign(&message);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs || n == 0 {
        for _ in 0..50 {
            public.verify(&message, &signature)?;
        }
        n += 50;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// `BEGIN IMMEDIATE; INSERT; COMMIT` in a file of its own, with the
/// server's pragmas.
fn sqlite_commits(secs: f64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("ceiling.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, v BLOB NOT NULL)")?;
    let blob = [7u8; 64];
    let started = Instant::now();
    let mut n = 0i64;
    while started.elapsed().as_secs_f64() < secs || n == 0 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute("INSERT INTO t (at, v) VALUES (?1, ?2)", rusqlite::params![n, &blob[..]])?;
        conn.execute_batch("COMMIT")?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
