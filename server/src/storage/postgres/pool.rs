//! Connections to PostgreSQL: the settings every connection gets, the pool,
//! and how driver errors become [`StorageError`]s.
//!
//! The pool connects lazily and checks a connection is still open each
//! time it hands one out, so after the database restarts the first calls
//! fail (`Unavailable`) and the following ones open fresh connections: the
//! server reconnects by itself, with no restart of its own.

use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::{StorageError, StorageResult};
use super::tls;

/// Longest wait for a new connection, and for a free one from the pool,
/// before a call gives up with `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection whose sent data stays unacknowledged this long (the
/// database host vanished, a network partition) is dropped rather than
/// left to hang a request.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// How every connection to the database is made: the driver's settings
/// and the TLS connector.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub tls: MakeRustlsConnect,
}

impl Target {
    /// Reads `database.url` (`postgres://user:password@host:port/db?…`,
    /// the libpq URL form; `sslmode` as in [`tls`]), fills in the timeouts
    /// it does not set, and trusts `ca_file` for TLS.
    pub fn new(url: &str, ca_file: Option<&Path>) -> StorageResult<Self> {
        let (url, mode) = tls::split_url(url)?;
        let mut config: Config =
            url.parse().map_err(|e| StorageError::Unavailable(format!("database.url is not a PostgreSQL URL: {e}")))?;
        config.ssl_mode(match mode {
            tls::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            tls::SslMode::VerifyCa | tls::SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        if config.get_application_name().is_none() {
            config.application_name("countersign");
        }
        Ok(Self { config, tls: tls::connector(mode, ca_file)? })
    }
}

pub fn build(target: Target, size: usize) -> StorageResult<Pool> {
    // `Fast` recycling only checks that the connection is still open: a
    // connection the server closed (restart, failover) is dropped then.
    let manager =
        Manager::from_config(target.config, target.tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StorageError::Unavailable(format!("database pool: {e}")))
}

pub fn pool_error(e: PoolError) -> StorageError {
    match e {
        PoolError::Backend(e) => classify(e),
        other => StorageError::Unavailable(format!("database connection: {other}")),
    }
}

/// Anything the database or the connection refused: it is the database's
/// trouble, not the caller's, as on SQLite. Uniqueness and other integrity
/// rules are decided per statement (see [`conflict_as`]).
pub fn classify(e: tokio_postgres::Error) -> StorageError {
    StorageError::Unavailable(describe(&e))
}

/// Maps an integrity violation (SQLSTATE class 23: unique, foreign key,
/// check) to `Conflict(what)`, the way the SQLite backend does.
pub fn conflict_as(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StorageError {
    move |e| match e.code() {
        Some(code) if code.code().starts_with("23") => StorageError::Conflict(what),
        _ => classify(e),
    }
}

/// The driver's message with the database's own detail, or the cause
/// (why a TLS handshake failed), which the short form leaves out ("db
/// error", "error performing TLS handshake").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => crate::error::describe_chain(e),
    }
}
