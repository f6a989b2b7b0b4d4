//! A small pool of SQLite connections used from async code: each call takes
//! a connection and runs on the blocking thread pool, so a slow disk never
//! stalls the async workers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::super::{StorageError, StorageResult};

pub struct Pool {
    path: PathBuf,
    synchronous: &'static str,
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
}

impl Pool {
    pub fn open(path: &Path, size: usize, synchronous: &'static str) -> StorageResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let pool =
            Self { path: path.to_owned(), synchronous, idle: Mutex::new(Vec::new()), slots: Semaphore::new(size) };
        let conns = (0..size).map(|_| pool.connect()).collect::<StorageResult<Vec<_>>>()?;
        *pool.idle.lock().expect("pool lock") = conns;
        Ok(pool)
    }

    /// Every connection: WAL (readers never block the writer), a busy
    /// timeout instead of instant SQLITE_BUSY, and foreign keys enforced.
    fn connect(&self) -> StorageResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            self.synchronous
        ))
        .map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> StorageResult<R> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let _slot = self.slots.acquire().await.map_err(|_| StorageError::Unavailable("pool closed".into()))?;
        let conn = self.idle.lock().expect("pool lock").pop();
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect()?,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&mut conn);
            (conn, result)
        })
        .await;
        crate::metrics::db_operation("sqlite", started.elapsed());
        match joined {
            Ok((conn, result)) => {
                self.idle.lock().expect("pool lock").push(conn);
                result
            }
            // The connection went down with a panicking task; a fresh one
            // is opened on next use.
            Err(e) => Err(StorageError::Unavailable(format!("database task failed: {e}"))),
        }
    }
}

pub fn unavailable(e: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}
