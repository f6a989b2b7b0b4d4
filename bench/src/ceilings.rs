//! Ceilings measured in the same run, on one thread each: what the
//! hardware gives for the two costs a request cannot avoid.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use countersign_core::protocol::{PublicKey, SoftwareKey};

use crate::load::Outcome;

pub struct Ceilings {
    /// Raw `ring` P-256 ECDSA (SHA-256) verifications per second.
    pub verify_per_sec: f64,
    /// Raw SQLite single-row commits per second (WAL, `synchronous=NORMAL`).
    pub commit_per_sec: f64,
}

/// A run against the ceilings of its own repetition: the machine's speed
/// at that hour divides out, so these move less than the rates do.
impl Ceilings {
    /// The run's operations per second over raw single-row commits per
    /// second on one thread.
    pub fn commit_ratio(&self, o: &Outcome) -> f64 {
        o.per_sec() / self.commit_per_sec.max(1e-9)
    }

    /// The signatures the server verified per second over what one thread
    /// verifies: the cores signature checks alone would keep busy. `None`
    /// when the run's operations verify none.
    pub fn verify_ratio(&self, o: &Outcome) -> Option<f64> {
        (o.verifications_per_op > 0)
            .then(|| o.per_sec() * f64::from(o.verifications_per_op) / self.verify_per_sec.max(1e-9))
    }
}

/// `dir` is the run's own directory: the commits go to the same disk (or
/// tmpfs) as the server's database.
pub async fn measure(secs: f64, dir: &Path) -> Result<Ceilings> {
    let verify_per_sec = tokio::task::spawn_blocking(move || verify(secs)).await??;
    let dir = dir.to_owned();
    let commit_per_sec = tokio::task::spawn_blocking(move || sqlite_commits(secs, dir)).await??;
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

/// `BEGIN IMMEDIATE; INSERT; COMMIT` in a file of its own in `dir`, with
/// the server's pragmas.
fn sqlite_commits(secs: f64, dir: PathBuf) -> Result<f64> {
    let dir = tempfile::tempdir_in(dir)?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(count: u64, secs: u64, verifications_per_op: u32) -> Outcome {
        Outcome {
            name: "run".into(),
            count,
            elapsed: Duration::from_secs(secs),
            latencies_us: vec![1_000; count as usize],
            server_cpu_secs: 0.0,
            client_cpu_secs: 0.0,
            database_cpu_secs: None,
            written_bytes: None,
            target_rate: None,
            lags_us: Vec::new(),
            verifications_per_op,
            results_after_ms: None,
        }
    }

    #[test]
    fn a_run_is_measured_against_its_own_ceilings() {
        let ceilings = Ceilings { verify_per_sec: 20_000.0, commit_per_sec: 50_000.0 };
        // 2 000 round trips a second, three signatures each: 6 000 of the
        // 20 000 one thread verifies.
        let push = run(4_000, 2, 3);
        assert_eq!(ceilings.commit_ratio(&push), 0.04);
        assert_eq!(ceilings.verify_ratio(&push), Some(0.3));
        assert_eq!(ceilings.verify_ratio(&run(4_000, 2, 0)), None);
    }
}
