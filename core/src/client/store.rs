//! The device's own SQLite database: which servers it knows (key alias,
//! device id), which cards are enrolled, the push settings, and a bounded
//! history of decisions. One connection behind a mutex; WAL and a busy
//! timeout because an app extension (a notification service) may open the
//! same file.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::error::ClientError;
use super::model::{Enrolment, HistoryEntry};
use crate::protocol::wire::{ChallengeOutcome, EnrolledCard, PushSettings};
use crate::protocol::{Decision, DenyReason, TransactionTerms};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE servers (
    server_url TEXT PRIMARY KEY,
    key_alias TEXT NOT NULL UNIQUE,
    public_key BLOB NOT NULL,
    device_id TEXT
);
CREATE TABLE enrolments (
    server_url TEXT NOT NULL REFERENCES servers (server_url) ON DELETE CASCADE,
    card_id TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    issuer_name TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (server_url, card_id)
);
CREATE TABLE push_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    push_token TEXT,
    notifications_enabled INTEGER NOT NULL
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_url TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    issuer_name TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency INTEGER NOT NULL,
    exponent INTEGER NOT NULL,
    merchant_name TEXT NOT NULL,
    requestor_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    outcome TEXT NOT NULL,
    decided_at INTEGER NOT NULL
);
";

/// A server this device has a key for; `device_id` is set once an
/// enrolment there succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerRecord {
    pub server_url: String,
    pub key_alias: String,
    pub public_key: Vec<u8>,
    pub device_id: Option<String>,
}

pub(crate) struct LocalStore {
    connection: Mutex<Connection>,
    history_limit: u32,
}

fn storage(e: rusqlite::Error) -> ClientError {
    ClientError::LocalStorage(e.to_string())
}

fn corrupted(what: &str) -> ClientError {
    ClientError::LocalStorage(format!("the local database is corrupted ({what})"))
}

impl LocalStore {
    /// Opens (or creates) the database, checks its integrity and brings its
    /// schema up to date.
    pub(crate) fn open(path: &Path, history_limit: u32) -> Result<Self, ClientError> {
        let mut connection = Connection::open(path).map_err(storage)?;
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 5000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(storage)?;
        let check: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(storage)?;
        if check != "ok" {
            return Err(corrupted("integrity check failed"));
        }
        migrate(&mut connection)?;
        Ok(Self { connection: Mutex::new(connection), history_limit })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn server(&self, server_url: &str) -> Result<Option<ServerRecord>, ClientError> {
        self.lock()
            .query_row(
                "SELECT server_url, key_alias, public_key, device_id FROM servers WHERE server_url = ?1",
                [server_url],
                server_record,
            )
            .optional()
            .map_err(storage)
    }

    /// Servers where this device has enrolled.
    pub(crate) fn enrolled_servers(&self) -> Result<Vec<ServerRecord>, ClientError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT server_url, key_alias, public_key, device_id FROM servers \
                 WHERE device_id IS NOT NULL ORDER BY server_url",
            )
            .map_err(storage)?;
        statement.query_map([], server_record).and_then(Iterator::collect).map_err(storage)
    }

    pub(crate) fn add_server(&self, server: &ServerRecord) -> Result<(), ClientError> {
        self.lock()
            .execute(
                "INSERT INTO servers (server_url, key_alias, public_key, device_id) VALUES (?1, ?2, ?3, ?4)",
                params![server.server_url, server.key_alias, server.public_key, server.device_id],
            )
            .map(drop)
            .map_err(storage)
    }

    /// Records a successful enrolment: the device id and the card, together.
    pub(crate) fn add_enrolment(&self, enrolment: &Enrolment) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE servers SET device_id = ?2 WHERE server_url = ?1",
                params![enrolment.server_url, enrolment.device_id],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO enrolments \
                 (server_url, card_id, masked_pan, issuer_name, enrolled_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    enrolment.server_url,
                    enrolment.card.card_id,
                    enrolment.card.masked_pan,
                    enrolment.card.issuer_name,
                    enrolment.enrolled_at
                ],
            )?;
            Ok(())
        })
    }

    pub(crate) fn enrolments(&self) -> Result<Vec<Enrolment>, ClientError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT e.server_url, s.device_id, e.card_id, e.masked_pan, e.issuer_name, e.enrolled_at \
                 FROM enrolments e JOIN servers s USING (server_url) \
                 WHERE s.device_id IS NOT NULL ORDER BY e.enrolled_at, e.card_id",
            )
            .map_err(storage)?;
        statement
            .query_map([], |row| {
                Ok(Enrolment {
                    server_url: row.get(0)?,
                    device_id: row.get(1)?,
                    card: EnrolledCard { card_id: row.get(2)?, masked_pan: row.get(3)?, issuer_name: row.get(4)? },
                    enrolled_at: row.get(5)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(storage)
    }

    pub(crate) fn remove_enrolment(&self, server_url: &str, card_id: &str) -> Result<(), ClientError> {
        self.lock()
            .execute("DELETE FROM enrolments WHERE server_url = ?1 AND card_id = ?2", params![server_url, card_id])
            .map(drop)
            .map_err(storage)
    }

    /// Forgets a server, its device id and its enrolments.
    pub(crate) fn remove_server(&self, server_url: &str) -> Result<(), ClientError> {
        self.lock().execute("DELETE FROM servers WHERE server_url = ?1", [server_url]).map(drop).map_err(storage)
    }

    /// The settings last given; notifications count as on until told otherwise.
    pub(crate) fn push_settings(&self) -> Result<PushSettings, ClientError> {
        let stored = self
            .lock()
            .query_row("SELECT push_token, notifications_enabled FROM push_settings WHERE id = 1", [], |row| {
                Ok(PushSettings { push_token: row.get(0)?, notifications_enabled: row.get(1)? })
            })
            .optional()
            .map_err(storage)?;
        Ok(stored.unwrap_or(PushSettings { push_token: None, notifications_enabled: true }))
    }

    pub(crate) fn set_push_settings(&self, settings: &PushSettings) -> Result<(), ClientError> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO push_settings (id, push_token, notifications_enabled) VALUES (1, ?1, ?2)",
                params![settings.push_token, settings.notifications_enabled],
            )
            .map(drop)
            .map_err(storage)
    }

    /// Appends a decision and drops the oldest beyond the history limit.
    pub(crate) fn record_decision(&self, entry: &HistoryEntry) -> Result<(), ClientError> {
        let limit = self.history_limit;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO history (server_url, challenge_id, card_id, masked_pan, issuer_name, \
                 amount_minor, currency, exponent, merchant_name, requestor_id, merchant_id, \
                 decision, outcome, decided_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    entry.server_url,
                    entry.challenge_id,
                    entry.card.card_id,
                    entry.card.masked_pan,
                    entry.card.issuer_name,
                    i64::try_from(entry.terms.amount_minor).unwrap_or(i64::MAX),
                    entry.terms.currency,
                    entry.terms.exponent,
                    entry.terms.merchant_name,
                    entry.terms.requestor_id,
                    entry.terms.merchant_id,
                    decision_name(entry.decision),
                    outcome_name(entry.outcome),
                    entry.decided_at
                ],
            )?;
            tx.execute(
                "DELETE FROM history WHERE id NOT IN (SELECT id FROM history ORDER BY id DESC LIMIT ?1)",
                [limit],
            )?;
            Ok(())
        })
    }

    /// The newest `limit` decisions, newest first.
    pub(crate) fn history(&self, limit: u32) -> Result<Vec<HistoryEntry>, ClientError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT server_url, challenge_id, card_id, masked_pan, issuer_name, amount_minor, \
                 currency, exponent, merchant_name, requestor_id, merchant_id, decision, outcome, \
                 decided_at FROM history ORDER BY id DESC LIMIT ?1",
            )
            .map_err(storage)?;
        let rows: Vec<(HistoryEntry, String, String)> = statement
            .query_map([limit], |row| {
                let amount: i64 = row.get(5)?;
                let entry = HistoryEntry {
                    server_url: row.get(0)?,
                    challenge_id: row.get(1)?,
                    card: EnrolledCard { card_id: row.get(2)?, masked_pan: row.get(3)?, issuer_name: row.get(4)? },
                    terms: TransactionTerms {
                        amount_minor: u64::try_from(amount).unwrap_or_default(),
                        currency: row.get(6)?,
                        exponent: row.get(7)?,
                        merchant_name: row.get(8)?,
                        requestor_id: row.get(9)?,
                        merchant_id: row.get(10)?,
                    },
                    decision: Decision::Approve,
                    outcome: ChallengeOutcome::Approved,
                    decided_at: row.get(13)?,
                };
                Ok((entry, row.get(11)?, row.get(12)?))
            })
            .and_then(Iterator::collect)
            .map_err(storage)?;
        rows.into_iter()
            .map(|(mut entry, decision, outcome)| {
                entry.decision = parse_decision(&decision).ok_or_else(|| corrupted("decision"))?;
                entry.outcome = parse_outcome(&outcome).ok_or_else(|| corrupted("outcome"))?;
                Ok(entry)
            })
            .collect()
    }

    /// Runs `f` in one `IMMEDIATE` transaction: it takes the write lock up
    /// front, so a concurrent writer waits instead of failing with BUSY.
    fn write(&self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>) -> Result<(), ClientError> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
        f(&tx).map_err(storage)?;
        tx.commit().map_err(storage)
    }
}

fn migrate(connection: &mut Connection) -> Result<(), ClientError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(storage)?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1).map_err(storage)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(storage)?;
        }
        SCHEMA_VERSION => {}
        newer if newer > SCHEMA_VERSION => {
            return Err(ClientError::LocalStorage(format!(
                "the local database has schema version {newer}, newer than this app knows ({SCHEMA_VERSION})"
            )));
        }
        _ => return Err(corrupted("schema version")),
    }
    tx.commit().map_err(storage)
}

fn server_record(row: &Row<'_>) -> rusqlite::Result<ServerRecord> {
    Ok(ServerRecord {
        server_url: row.get(0)?,
        key_alias: row.get(1)?,
        public_key: row.get(2)?,
        device_id: row.get(3)?,
    })
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Approve => "approve",
        Decision::Deny(DenyReason::NotMe) => "deny_not_me",
        Decision::Deny(DenyReason::Cancelled) => "deny_cancelled",
    }
}

fn parse_decision(name: &str) -> Option<Decision> {
    Some(match name {
        "approve" => Decision::Approve,
        "deny_not_me" => Decision::Deny(DenyReason::NotMe),
        "deny_cancelled" => Decision::Deny(DenyReason::Cancelled),
        _ => return None,
    })
}

fn outcome_name(outcome: ChallengeOutcome) -> &'static str {
    match outcome {
        ChallengeOutcome::Approved => "approved",
        ChallengeOutcome::Denied => "denied",
        ChallengeOutcome::Expired => "expired",
        ChallengeOutcome::Cancelled => "cancelled",
    }
}

fn parse_outcome(name: &str) -> Option<ChallengeOutcome> {
    Some(match name {
        "approved" => ChallengeOutcome::Approved,
        "denied" => ChallengeOutcome::Denied,
        "expired" => ChallengeOutcome::Expired,
        "cancelled" => ChallengeOutcome::Cancelled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> HistoryEntry {
        HistoryEntry {
            server_url: "https://a.example".into(),
            challenge_id: format!("ch-{n}"),
            card: EnrolledCard {
                card_id: "card".into(), masked_pan: "•••• 10005".into(), issuer_name: "Bank".into()
            },
            terms: TransactionTerms {
                amount_minor: n,
                currency: 978,
                exponent: 2,
                merchant_name: "Shop".into(),
                requestor_id: "r".into(),
                merchant_id: "m".into(),
            },
            decision: Decision::Deny(DenyReason::Cancelled),
            outcome: ChallengeOutcome::Denied,
            decided_at: i64::try_from(n).unwrap(),
        }
    }

    #[test]
    fn history_is_bounded_newest_first_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.db");
        let store = LocalStore::open(&path, 3).unwrap();
        for n in 1..=5 {
            store.record_decision(&entry(n)).unwrap();
        }
        drop(store);
        let history = LocalStore::open(&path, 3).unwrap().history(10).unwrap();
        assert_eq!(history, vec![entry(5), entry(4), entry(3)]);
    }

    #[test]
    fn a_database_from_a_newer_app_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.db");
        drop(LocalStore::open(&path, 3).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            LocalStore::open(&path, 3),
            Err(ClientError::LocalStorage(m)) if m.contains("newer")
        ));
    }

    #[test]
    fn garbage_and_damaged_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        assert!(matches!(LocalStore::open(&garbage, 3), Err(ClientError::LocalStorage(_))));

        // A real database whose pages after the header were overwritten.
        let damaged = dir.path().join("damaged.db");
        let store = LocalStore::open(&damaged, 3).unwrap();
        store.record_decision(&entry(1)).unwrap();
        drop(store);
        let mut bytes = std::fs::read(&damaged).unwrap();
        for byte in bytes.iter_mut().skip(100) {
            *byte = 0xa5;
        }
        std::fs::write(&damaged, bytes).unwrap();
        assert!(matches!(LocalStore::open(&damaged, 3), Err(ClientError::LocalStorage(_))));
    }

    #[test]
    fn an_unknown_stored_value_is_corruption_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.db");
        let store = LocalStore::open(&path, 3).unwrap();
        store.record_decision(&entry(1)).unwrap();
        store.lock().execute("UPDATE history SET outcome = 'maybe'", []).unwrap();
        assert!(matches!(
            store.history(1),
            Err(ClientError::LocalStorage(m)) if m.contains("corrupted")
        ));
    }
}
