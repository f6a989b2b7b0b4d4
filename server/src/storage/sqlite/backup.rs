//! Online backup of the SQLite file: SQLite's backup API copies the
//! database page by page while the server keeps serving (each step holds
//! the read lock only briefly; pages written meanwhile are copied again), so
//! the copy is one consistent snapshot. It is written next to the target
//! under a temporary name, checked, and only then renamed into place, so a
//! failed or interrupted backup never leaves a half file under that name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub pages: i32,
    /// The copy's schema version (its latest migration).
    pub schema_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the database {0} does not exist")]
    NoDatabase(String),
    #[error("{0} already exists; choose a new file (a backup never overwrites)")]
    TargetExists(String),
    #[error("the copy failed its integrity check: {0}")]
    Corrupt(String),
    #[error("backup failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("backup failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Copies the live database at `source` to the new file `target`;
/// `progress(copied, total)` is called after each step (pages).
pub fn backup(source: &Path, target: &Path, mut progress: impl FnMut(i32, i32)) -> Result<BackupReport, BackupError> {
    if !source.exists() {
        return Err(BackupError::NoDatabase(source.display().to_string()));
    }
    if target.exists() {
        return Err(BackupError::TargetExists(target.display().to_string()));
    }
    let partial = partial_name(target);
    let _ = std::fs::remove_file(&partial);
    let result = copy_and_check(source, &partial, &mut progress);
    match result {
        Ok((pages, schema_version)) => {
            std::fs::rename(&partial, target)?;
            let bytes = std::fs::metadata(target)?.len();
            Ok(BackupReport { path: target.to_owned(), bytes, pages, schema_version })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn copy_and_check(
    source: &Path,
    partial: &Path,
    progress: &mut impl FnMut(i32, i32),
) -> Result<(i32, i64), BackupError> {
    let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    src.busy_timeout(Duration::from_secs(5))?;
    let mut dst = Connection::open(partial)?;
    let pages = {
        use rusqlite::backup::StepResult;
        let copy = rusqlite::backup::Backup::new(&src, &mut dst)?;
        loop {
            // A few hundred pages per step, with a pause for the server's writers.
            let step = copy.step(256)?;
            let p = copy.progress();
            progress(p.pagecount - p.remaining, p.pagecount);
            match step {
                StepResult::Done => break p.pagecount,
                // More to copy, or the source is busy: pause, then go on.
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    };
    // The copy holds no WAL of its own: make it a plain single file.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    let verdict: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(BackupError::Corrupt(verdict));
    }
    let schema_version: i64 =
        dst.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    Ok((pages, schema_version))
}

fn partial_name(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}
