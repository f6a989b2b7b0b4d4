//! SQLite connections used from async code.
//!
//! SQLite lets one connection write at a time, so the server writes through
//! exactly one: a writer thread owns it and takes write jobs from a queue.
//! It runs every job waiting in the queue inside one transaction, each job
//! in a savepoint of its own, and commits them together (group commit): a
//! job that fails rolls back only its own changes, and no job is answered
//! before the commit that makes it durable. Under light load each job is
//! committed alone; under heavy load one commit (and one set of WAL pages)
//! serves many jobs, and no writer ever waits on SQLite's busy handler.
//!
//! Checkpoints (copying the WAL back into the database file, with its
//! fsyncs) run on a thread of their own, a little after commits. The writer
//! keeps only what SQLite leaves to the writing connection: starting the
//! WAL over, which needs every frame copied first. Under steady writes the
//! checkpointer never catches the last frames, so when the WAL is long the
//! writer copies that tail itself, at the moment the checkpointer has just
//! finished a pass and the tail is shortest (see [`WAL_RESTART_PAGES`]).
//!
//! Reads take a read-only connection from a small pool and run where they
//! are called (see [`Pool::read`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::super::{StorageError, StorageResult};

/// Most jobs one commit carries: bounds the wait of the first job in a
/// batch while the others run.
const MAX_BATCH: usize = 256;

/// How long the checkpointer lets commits gather before a pass: a page
/// changed by many commits in that time is copied and synced once.
const CHECKPOINT_DELAY: std::time::Duration = std::time::Duration::from_millis(25);

/// WAL pages (4 KiB each: 256 MiB) from which the WAL is started over at
/// the checkpointer's next complete pass: the writer then copies the frames
/// committed since that pass began and fsyncs twice, while every write
/// waits. The fewer restarts the fewer such stalls: at 4 096 pages, with
/// the writer checkpointing whenever the WAL passed it, one came every
/// ~140 ms at 4 000 AReqs/s, 15–33 ms each, and set the p99. Under
/// light load the WAL starts over long before, by itself (the checkpointer
/// catches up between commits), so only a busy server's WAL grows this big;
/// the file keeps its size (reused, not truncated).
const WAL_RESTART_PAGES: i64 = 65_536;

/// WAL pages (1 GiB) at which the writer checkpoints whatever the
/// checkpointer did (SQLite's own automatic checkpoint): the bound if the
/// checkpointer cannot finish a pass, e.g. behind a read that never ends.
const WRITER_CHECKPOINT_PAGES: u32 = 262_144;

/// The writer's page cache, KiB: it is the only connection whose cache
/// survives other commits, and inserts land all over the indexes.
const WRITER_CACHE_KIB: i64 = 16_384;

pub struct Pool {
    path: PathBuf,
    synchronous: &'static str,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    writer: mpsc::Sender<Box<dyn Job>>,
}

impl Pool {
    pub fn open(path: &Path, readers: usize, synchronous: &'static str) -> StorageResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let write_conn = connect(path, synchronous, false)?;
        write_conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).map_err(unavailable)?;
        write_conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(unavailable)?;
        // Each job's savepoint keeps the pages it changes in a statement
        // journal: in memory, not in a temporary file.
        write_conn.pragma_update(None, "temp_store", "MEMORY").map_err(unavailable)?;
        let checkpoint_conn = connect(path, synchronous, false)?;
        let (writer, jobs) = mpsc::channel();
        let (committed, commits) = mpsc::sync_channel(1);
        let restart = Arc::new(AtomicBool::new(false));
        let restart_now = restart.clone();
        spawn("sqlite-checkpoint", move || checkpoint_loop(checkpoint_conn, commits, restart_now))?;
        spawn("sqlite-writer", move || write_loop(write_conn, jobs, committed, restart))?;
        let conns = (0..readers).map(|_| connect(path, synchronous, true)).collect::<StorageResult<Vec<_>>>()?;
        Ok(Self { path: path.to_owned(), synchronous, idle: Mutex::new(conns), max_idle: readers, writer })
    }

    /// Runs `f` with a pooled read-only connection, on the calling thread.
    ///
    /// A read is a few B-tree lookups in pages the OS already caches, tens
    /// of microseconds: less than handing it to another thread and back
    /// (two wake-ups), which is what the blocking pool would cost. WAL
    /// readers never wait on the writer, so a read cannot block for long.
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> StorageResult<R>) -> StorageResult<R> {
        let started = std::time::Instant::now();
        let conn = self.idle.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path, self.synchronous, true)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().expect("pool lock");
        // Up to the pool's size stay open. (A panic in `f` unwinds past
        // this, dropping its connection; another opens when needed.)
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        drop(idle);
        crate::metrics::db_operation("sqlite", started.elapsed());
        result
    }

    /// Runs `f` on the writer thread inside a transaction, and answers once
    /// that transaction committed. If `f` fails, its changes are rolled
    /// back and the error returned; the other jobs of its batch are not
    /// affected.
    pub async fn write<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<R> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Box::new(WriteJob { f, reply }))
            .map_err(|_| StorageError::Unavailable("the writer thread stopped".into()))?;
        let result = answer.await.map_err(|_| StorageError::Unavailable("the writer thread stopped".into()))?;
        crate::metrics::db_operation("sqlite", started.elapsed());
        result
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> StorageResult<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| StorageError::Unavailable(format!("starting the {name} thread: {e}")))
}

/// Every connection: WAL (readers never block the writer), a busy timeout
/// instead of instant SQLITE_BUSY (another process, such as the CLI, may
/// write too), and foreign keys enforced.
fn connect(path: &Path, synchronous: &str, read_only: bool) -> StorageResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA query_only = {read_only};"
    ))
    .map_err(unavailable)?;
    // Plans never depend on bound values: without this, SQLite prepares a
    // statement again each time a `LIMIT ?` is bound (it plans with the
    // value), as the workers' claims and the sweeper's batches do.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A queued write: runs in a savepoint, then waits for its batch's commit.
trait Job: Send {
    /// Runs the job; returns how to answer once the batch's fate is known.
    fn run(self: Box<Self>, conn: &Connection) -> Ran;
    /// Answers without running (the batch could not start).
    fn fail(self: Box<Self>, error: StorageError);
}

struct Ran {
    /// The savepoint could not be closed: the transaction is in doubt and
    /// the whole batch must roll back.
    poisoned: bool,
    answer: Answer,
}

/// Tells a job's caller its outcome, given whether its batch committed
/// (or why not).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

struct WriteJob<F, R> {
    f: F,
    reply: oneshot::Sender<StorageResult<R>>,
}

impl<F, R> Job for WriteJob<F, R>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> StorageResult<R> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let WriteJob { f, reply } = *self;
        let (result, poisoned) = in_savepoint(conn, f);
        let answer = Box::new(move |committed: Result<(), &str>| {
            let outcome = committed.map_err(|e| StorageError::Unavailable(e.to_owned())).and(result);
            // The caller may have gone (a dropped request): nobody to tell.
            let _ = reply.send(outcome);
        });
        Ran { poisoned, answer }
    }

    fn fail(self: Box<Self>, error: StorageError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Runs `f` in a savepoint, rolled back if `f` fails or panics. The flag
/// says the savepoint itself could not be released or rolled back.
fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> StorageResult<R>) -> (StorageResult<R>, bool) {
    // Cached statements: parsing these anew for every job showed in profiles.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop);
    if let Err(e) = run("SAVEPOINT job") {
        return (Err(unavailable(e)), false);
    }
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StorageError::Unavailable("a database write panicked".into())));
    let closed =
        if result.is_ok() { run("RELEASE job") } else { run("ROLLBACK TO job").and_then(|_| run("RELEASE job")) };
    match closed {
        Ok(()) => (result, false),
        Err(e) => (Err(unavailable(e)), true),
    }
}

/// The writer thread: one transaction per batch of queued jobs; tells the
/// checkpointer after each commit. Ends when the storage (the only sender)
/// is dropped, and the checkpointer with it.
fn write_loop(
    conn: Connection,
    jobs: mpsc::Receiver<Box<dyn Job>>,
    committed: mpsc::SyncSender<()>,
    restart: Arc<AtomicBool>,
) {
    while let Ok(first) = jobs.recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            first.fail(unavailable(e));
            continue;
        }
        let mut ran = vec![first.run(&conn)];
        // Whatever queued up while the batch ran joins it.
        while ran.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => ran.push(job.run(&conn)),
                Err(_) => break,
            }
        }
        let outcome = if ran.iter().any(|r| r.poisoned) {
            Err("a write could not be rolled back, so its whole batch was".to_owned())
        } else {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        };
        if outcome.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for r in ran {
            (r.answer)(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
        // Full means a checkpoint is already due.
        let _ = committed.try_send(());
        if restart.swap(false, Ordering::Relaxed) {
            // The rest of the WAL, so that the next transaction starts it over.
            checkpoint(&conn);
        }
    }
}

/// The checkpointer thread: after commits, waits a moment for more, then
/// copies the WAL into the database without blocking the writer or the
/// readers (PASSIVE). When a pass copied everything there was when it
/// began and the WAL is long, asks the writer to copy the rest, so that the
/// WAL starts over. Failures are left to the next round.
fn checkpoint_loop(conn: Connection, commits: mpsc::Receiver<()>, restart: Arc<AtomicBool>) {
    while commits.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_DELAY);
        while commits.try_recv().is_ok() {}
        if let Some((wal_pages, copied)) = checkpoint(&conn)
            && wal_pages >= WAL_RESTART_PAGES
            && copied == wal_pages
        {
            restart.store(true, Ordering::Relaxed);
        }
    }
}

/// A PASSIVE checkpoint: the WAL's length and how much of it is now in the
/// database, in pages; `None` if another checkpoint was running or it failed.
fn checkpoint(conn: &Connection) -> Option<(i64, i64)> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))) {
        Ok((0, wal_pages, copied)) => Some((wal_pages, copied)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "SQLite checkpoint failed");
            None
        }
    }
}

pub fn unavailable(e: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch size is a bound `LIMIT ?`: binding another must not make
    /// SQLite prepare the statement again (it did, each time, for every
    /// claim of the queue workers).
    #[test]
    fn a_bound_limit_is_planned_once() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("db"), "NORMAL", false).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);").unwrap();
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n LIMIT ?1").unwrap();
        for limit in 1..=3 {
            let rows: Vec<i64> = stmt.query_map([limit], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            assert_eq!(rows.len(), limit as usize);
        }
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// Jobs that write and then fail, mixed into batches with jobs that
    /// succeed: only the failing jobs' writes are undone, and each caller
    /// hears its own outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_job_undoes_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(Pool::open(&dir.path().join("db"), 1, "NORMAL").unwrap());
        pool.write(|c| c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)").map_err(unavailable)).await.unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|n: i64| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.write(move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n]).map_err(unavailable)?;
                        if n % 7 == 3 {
                            return Err(StorageError::Conflict("n"));
                        }
                        assert!(n % 11 != 5, "a panicking job");
                        Ok(n)
                    })
                    .await
                })
            })
            .collect();
        for (n, task) in (0..).zip(tasks) {
            match task.await.unwrap() {
                Ok(got) => assert_eq!(got, n),
                Err(StorageError::Conflict("n")) => assert_eq!(n % 7, 3),
                Err(StorageError::Unavailable(e)) => assert!(n % 11 == 5 && e.contains("panicked"), "{n}: {e}"),
                Err(e) => panic!("{n}: {e}"),
            }
        }
        let stored: Vec<i64> = pool
            .read(|c| {
                let mut s = c.prepare("SELECT n FROM t ORDER BY n").map_err(unavailable)?;
                let rows = s.query_map([], |r| r.get(0)).map_err(unavailable)?;
                rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
            })
            .unwrap();
        let expected: Vec<i64> = (0..200).filter(|n| n % 7 != 3 && n % 11 != 5).collect();
        assert_eq!(stored, expected);
    }
}
