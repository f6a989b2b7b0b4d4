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
//! fsyncs) run on a thread of their own, a little after commits. The
//! writer keeps only the part SQLite gives the writing connection: starting
//! the WAL over, and a checkpoint of its own if the WAL grows long (see
//! [`WRITER_CHECKPOINT_PAGES`]); each costs it an fsync or two.
//!
//! Reads take a read-only connection from a small pool and run where they
//! are called (see [`Pool::read`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::super::{StorageError, StorageResult};

/// Most jobs one commit carries: bounds the wait of the first job in a
/// batch while the others run.
const MAX_BATCH: usize = 256;

/// How long the checkpointer lets commits gather before it checkpoints.
const CHECKPOINT_DELAY: std::time::Duration = std::time::Duration::from_millis(25);

/// WAL pages at which the writer checkpoints by itself. The WAL can only
/// start over from its beginning once it was copied entirely before a
/// write begins, which under steady writes only the writer can arrange;
/// by then the checkpointer has copied nearly all of it, so the writer's
/// part is short.
const WRITER_CHECKPOINT_PAGES: u32 = 4_096;

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
        spawn("sqlite-checkpoint", move || checkpoint_loop(checkpoint_conn, commits))?;
        spawn("sqlite-writer", move || write_loop(write_conn, jobs, committed))?;
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
    if let Err(e) = conn.execute_batch("SAVEPOINT job") {
        return (Err(unavailable(e)), false);
    }
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StorageError::Unavailable("a database write panicked".into())));
    let close = if result.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
    match conn.execute_batch(close) {
        Ok(()) => (result, false),
        Err(e) => (Err(unavailable(e)), true),
    }
}

/// The writer thread: one transaction per batch of queued jobs; tells the
/// checkpointer after each commit. Ends when the storage (the only sender)
/// is dropped, and the checkpointer with it.
fn write_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>, committed: mpsc::SyncSender<()>) {
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
    }
}

/// The checkpointer thread: after commits, waits a moment for more, then
/// copies the WAL into the database without blocking the writer or the
/// readers (PASSIVE). Failures are left to the next round.
fn checkpoint_loop(conn: Connection, commits: mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_DELAY);
        while commits.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
    }
}

pub fn unavailable(e: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}
