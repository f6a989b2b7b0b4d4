//! The server's shared state: configuration, storage, secrets, clock and
//! notifier. HTTP handlers, background workers and the CLI all act through
//! one [`App`], so each rule lives in one place whoever triggers it.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{Config, Database};
use crate::flows::codes::Transport;
use crate::notifier::Notifier;
use crate::requestor_keys::RequestorKeys;
use crate::secrets::Secrets;
use crate::storage::Storage;
use crate::storage::postgres::PostgresStorage;
use crate::storage::sqlite::SqliteStorage;
use crate::worker::Wake;

#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    /// How one-time codes leave by email and by SMS.
    pub email: Transport,
    pub sms: Transport,
    /// Client for result callbacks to requestors.
    pub http: reqwest::Client,
    /// Requestors recently found by API key.
    pub requestor_keys: RequestorKeys,
    /// Tells this node's queue workers that it has just queued a job.
    pub wake: Wake,
}

/// Opens the database `database.url` names, applying migrations.
pub fn open_storage(config: &Config, now_ms: i64) -> anyhow::Result<Arc<dyn Storage>> {
    let db = &config.database;
    Ok(match config.database() {
        Database::Sqlite(path) => Arc::new(
            SqliteStorage::open(&path, db.max_connections, db.synchronous, now_ms)
                .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?,
        ),
        // The URL may hold a password: it stays out of the message.
        Database::Postgres(_) => Arc::new(
            PostgresStorage::open(&db.postgres_url()?, db.ca_file.as_deref(), db.max_connections, now_ms)
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL database: {e}"))?,
        ),
    })
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// Opens the database `database.url` names (applying migrations) and
    /// the master key.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let storage = open_storage(&config, clock.now_ms())?;
        let notifier = config.push.build(storage.clone(), clock.clone()).map_err(|e| anyhow::anyhow!("push: {e}"))?;
        Self::with_parts(config, storage, clock, notifier)
    }

    pub fn with_parts(
        config: Config,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
    ) -> anyhow::Result<Self> {
        let secrets = Secrets::load(&config.secrets.master_key_file, &config.secrets.previous_master_key_files)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.callbacks.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let email = Transport::for_email(&config.email)?;
        let sms = Transport::for_sms(&config.sms)?;
        let requestor_keys = RequestorKeys::default();
        Ok(Self(Arc::new(Inner {
            config,
            storage,
            secrets,
            clock,
            notifier,
            email,
            sms,
            http,
            requestor_keys,
            wake: Wake::default(),
        })))
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether any channel records its messages in the development outbox.
    pub fn uses_message_outbox(&self) -> bool {
        matches!(self.email, Transport::Outbox) || matches!(self.sms, Transport::Outbox)
    }
}
