//! The embedded SQLite backend: zero configuration, one file.

pub mod backup;
mod migrations;
mod pool;

use std::path::Path;
use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use self::pool::{Pool, unavailable};
use super::columns::*;
use super::*;

pub use migrations::latest_version;

pub struct SqliteStorage {
    pool: Pool,
    /// One node: the changes it announces are all there are.
    events: ChallengeEvents,
}

/// How SQLite syncs to disk. `Full` survives power loss at the cost of an
/// fsync per commit; `Normal` (WAL) survives process crashes and may lose
/// the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path, connections: usize, synchronous: Synchronous, now_ms: i64) -> StorageResult<Self> {
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let pool = Pool::open(path, connections.max(1), sync)?;
        let storage = Self { pool, events: ChallengeEvents::in_process() };
        let mut conn = Connection::open(path).map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        migrations::migrate(&mut conn, now_ms, latest_version()).map_err(unavailable)?;
        Ok(storage)
    }

    /// Brings a database file to schema `version` only — what an older
    /// build left behind — so that upgrades can be tested.
    pub fn migrate_to(path: &Path, version: u32, now_ms: i64) -> StorageResult<usize> {
        let mut conn = Connection::open(path).map_err(unavailable)?;
        migrations::migrate(&mut conn, now_ms, version).map_err(unavailable)
    }

    async fn read<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.pool.read(move |conn| f(conn).map_err(classify))
    }

    /// The row `sql` finds for `key`, if any.
    async fn one<T, K>(&self, sql: String, key: K, map: fn(&Row<'_>) -> rusqlite::Result<T>) -> StorageResult<Option<T>>
    where
        T: Send + 'static,
        K: rusqlite::ToSql + Send + 'static,
    {
        self.read(move |c| c.prepare_cached(&sql)?.query_row([key], map).optional()).await
    }

    /// Runs one conditional statement and, if it changed a row, appends
    /// `audit`, in one transaction; says whether it changed one.
    async fn update_audited<P>(&self, sql: &'static str, params: P, audit: &AuditEvent) -> StorageResult<bool>
    where
        P: rusqlite::Params + Send + 'static,
    {
        let audit = audit.clone();
        self.write(move |tx| {
            let changed = tx.prepare_cached(sql)?.execute(params)? == 1;
            if changed {
                insert_audit(tx, &audit)?;
            }
            Ok(changed)
        })
        .await
    }

    /// Runs `f` in a write transaction of its own: the pool's writer
    /// thread runs it inside a savepoint of a batch, and answers once the
    /// batch committed (see `pool`).
    async fn write<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<R> + Send + 'static,
    {
        self.pool.write(f).await
    }
}

fn classify(e: rusqlite::Error) -> StorageError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StorageError::Corrupt(e.to_string())
        }
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// Maps a uniqueness violation to `Conflict(what)`.
fn conflict_as(what: &'static str) -> impl Fn(rusqlite::Error) -> StorageError {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StorageError::Conflict(what),
        _ => classify(e),
    }
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialising plain data cannot fail")
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.to_owned().into())
}

fn requestor_from(r: &Row<'_>) -> rusqlite::Result<Requestor> {
    Ok(Requestor {
        id: r.get(0)?,
        name: r.get(1)?,
        callback_secret: StoredSecret::from_columns(r.get(2)?, r.get(3)?)
            .ok_or_else(|| corrupt("requestor without a callback secret"))?,
        previous_callback_secret: PreviousSecret::from_columns(r.get(4)?, r.get(5)?),
        previous_key_expires_at: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn operator_from(r: &Row<'_>) -> rusqlite::Result<Operator> {
    let role: String = r.get(2)?;
    Ok(Operator {
        id: r.get(0)?,
        name: r.get(1)?,
        role: OperatorRole::parse(&role).ok_or_else(|| corrupt("operator role"))?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

fn card_from(row: &Row<'_>) -> rusqlite::Result<Card> {
    card_at(row, 0)
}

/// The card in the columns from `at` on (as in a join).
fn card_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Card> {
    Ok(Card {
        id: row.get(at)?,
        pan_last4: row.get(at + 1)?,
        language: row.get(at + 2)?,
        email: row.get(at + 3)?,
        phone: row.get(at + 4)?,
        blocked_at: row.get(at + 5)?,
        failed_code_attempts: row.get(at + 6)?,
        created_at: row.get(at + 7)?,
    })
}

fn device_from(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: row.get(0)?,
        public_key: row.get(1)?,
        platform: row.get(2)?,
        display_name: row.get(3)?,
        push_token: row.get(4)?,
        notifications_enabled: row.get(5)?,
        push_unreachable: row.get(6)?,
        revoked_at: row.get(7)?,
        created_at: row.get(8)?,
    })
}

fn authentication_from(row: &Row<'_>) -> rusqlite::Result<Authentication> {
    authentication_at(row, 0)
}

/// The authentication in the columns from `at` on (as in a join).
fn authentication_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Authentication> {
    let reasons: String = row.get(at + 14)?;
    Ok(Authentication {
        acs_trans_id: row.get(at)?,
        ds_trans_id: row.get(at + 1)?,
        requestor_id: row.get(at + 2)?,
        card_id: row.get(at + 3)?,
        message_version: row.get(at + 4)?,
        message_category: row.get(at + 5)?,
        amount_minor: row.get::<_, i64>(at + 6)? as u64,
        currency: row.get(at + 7)?,
        exponent: row.get(at + 8)?,
        merchant_name: row.get(at + 9)?,
        merchant_id: row.get(at + 10)?,
        notification_url: row.get(at + 11)?,
        trans_status: row.get(at + 12)?,
        trans_status_reason: row.get(at + 13)?,
        reasons: serde_json::from_str(&reasons).map_err(|_| corrupt("authentication reasons"))?,
        low_value_exempt: row.get(at + 15)?,
        authentication_value: row.get(at + 16)?,
        eci: row.get(at + 17)?,
        challenge_id: row.get(at + 18)?,
        created_at: row.get(at + 19)?,
        updated_at: row.get(at + 20)?,
        browser_language: row.get(at + 21)?,
        browser_tz: row.get(at + 22)?,
    })
}

fn challenge_from(row: &Row<'_>) -> rusqlite::Result<Challenge> {
    challenge_at(row, 0)
}

/// The challenge in the columns from `at` on (as in a join).
fn challenge_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Challenge> {
    let state: String = row.get(at + 4)?;
    let choices: Option<String> = row.get(at + 6)?;
    Ok(Challenge {
        id: row.get(at)?,
        acs_trans_id: row.get(at + 1)?,
        card_id: row.get(at + 2)?,
        nonce: row.get(at + 3)?,
        state: ChallengeState::parse(&state).ok_or_else(|| corrupt("challenge state"))?,
        number_match: row.get(at + 5)?,
        number_choices: choices.map(|c| serde_json::from_str(&c).map_err(|_| corrupt("number choices"))).transpose()?,
        created_at: row.get(at + 7)?,
        expires_at: row.get(at + 8)?,
        decided_at: row.get(at + 9)?,
        decided_by_device: row.get(at + 10)?,
        outcome_reason: row.get(at + 11)?,
        push_deadline: row.get(at + 12)?,
        fallback_reason: row.get(at + 13)?,
    })
}

/// The challenge in the columns from `at` on; `None` if they are null (no
/// challenge in an outer join).
fn optional_challenge_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<Challenge>> {
    match row.get::<_, Option<String>>(at)? {
        Some(_) => challenge_at(row, at).map(Some),
        None => Ok(None),
    }
}

/// A callback attempt in the four columns from `at` on; `None` if they are
/// null (no attempt in an outer join).
fn callback_attempt_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<CallbackAttempt>> {
    let Some(attempt) = row.get(at)? else { return Ok(None) };
    Ok(Some(CallbackAttempt { attempt, at: row.get(at + 1)?, http_status: row.get(at + 2)?, error: row.get(at + 3)? }))
}

fn device_challenge_from(row: &Row<'_>) -> rusqlite::Result<DeviceChallenge> {
    let at = DEVICE_CHALLENGE_LAYOUT;
    Ok(DeviceChallenge {
        challenge: challenge_at(row, 0)?,
        authentication: authentication_at(row, at.authentication)?,
        card: card_at(row, at.card)?,
        requestor_name: row.get(at.requestor_name)?,
        device_enrolled: row.get(at.enrolled)?,
    })
}

/// The code in the columns from `at` on; `None` if they are null (no code
/// in an outer join).
fn one_time_code_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<OneTimeCode>> {
    let Some(challenge_id): Option<String> = r.get(at)? else { return Ok(None) };
    Ok(Some(OneTimeCode {
        challenge_id,
        salt: r.get(at + 1)?,
        code_hash: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
        expires_at: r.get(at + 4)?,
        resends: r.get(at + 5)?,
        last_sent_at: r.get(at + 6)?,
        used_at: r.get(at + 7)?,
    }))
}

fn code_check_from(row: &Row<'_>) -> rusqlite::Result<CodeCheck> {
    let at = CODE_CHECK_LAYOUT;
    Ok(CodeCheck {
        authentication: authentication_at(row, 0)?,
        challenge: challenge_at(row, at.challenge)?,
        card: card_at(row, at.card)?,
        code: one_time_code_at(row, at.code)?,
    })
}

fn delivery_from(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let channel: String = row.get(2)?;
    let state: String = row.get(5)?;
    Ok(Delivery {
        id: row.get(0)?,
        challenge_id: row.get(1)?,
        channel: ContactChannel::parse(&channel).ok_or_else(|| corrupt("delivery channel"))?,
        destination_masked: row.get(3)?,
        send_round: row.get(4)?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state"))?,
        attempts: row.get(6)?,
        last_error: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

fn insert_deliveries(
    conn: &Connection,
    challenge_id: &str,
    round: u32,
    now: i64,
    deliveries: &[NewDelivery],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (challenge_id, channel, destination_masked, send_round, state, next_attempt_at, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)",
    )?;
    for d in deliveries {
        insert.execute(params![
            challenge_id,
            d.channel.as_str(),
            d.destination_masked,
            round,
            d.state.as_str(),
            now
        ])?;
    }
    Ok(())
}

fn insert_audit(conn: &Connection, e: &AuditEvent) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, kind, actor, card_id, acs_trans_id, challenge_id, device_id, outcome, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        e.at,
        e.kind,
        e.actor,
        e.card_id,
        e.acs_trans_id,
        e.challenge_id,
        e.device_id,
        e.outcome,
        json_text(&e.detail)
    ])?;
    Ok(())
}

/// The risk engine's three reads of a card's history (`?1` the card): its
/// authenticated purchases, up to `?2`; its purchases since `?2`, up to
/// `?3`; its low-value tally in currency `?2` since its last approved
/// challenge. (A bound `LIMIT` is planned once: see `pool::connect`.)
const CARD_HISTORY_SQL: [&str; 3] = [
    "SELECT COUNT(*) FROM (SELECT 1 FROM authentications WHERE card_id = ?1 AND trans_status = 'Y' LIMIT ?2)",
    "SELECT COUNT(*) FROM (SELECT 1 FROM authentications WHERE card_id = ?1 AND created_at >= ?2 LIMIT ?3)",
    "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM authentications \
     WHERE card_id = ?1 AND low_value_exempt = 1 AND currency = ?2 AND created_at > COALESCE( \
       (SELECT MAX(decided_at) FROM challenges WHERE card_id = ?1 AND state = 'approved'), 0)",
];

/// The risk engine's counts for a card; each count stops at its limit (a
/// `LIMIT` inside), and the low-value tally reads only purchases since the
/// last approved challenge (from the card's history index alone), so none
/// grows with the card's history.
fn card_activity(c: &Connection, card_id: &str, q: &HistoryQuery) -> rusqlite::Result<CardActivity> {
    let [authenticated, recent, low_value] = CARD_HISTORY_SQL;
    let authenticated: i64 =
        c.prepare_cached(authenticated)?.query_row(params![card_id, q.authenticated_up_to], |r| r.get(0))?;
    let recent: i64 =
        c.prepare_cached(recent)?.query_row(params![card_id, q.recent_since, q.recent_up_to], |r| r.get(0))?;
    let (low_value_count, low_value_sum): (i64, i64) =
        c.prepare_cached(low_value)?.query_row(params![card_id, q.currency], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(CardActivity {
        authenticated: authenticated as u64,
        recent: recent as u32,
        low_value_count: low_value_count as u32,
        low_value_sum: low_value_sum as u64,
    })
}

/// A card by its PAN's keyed hash (read on every AReq: written once).
static CARD_BY_PAN_HASH: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CARD_COLUMNS} FROM cards WHERE pan_hash = ?1"));

fn card_devices(c: &Connection, card_id: &str) -> rusqlite::Result<Vec<Device>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM devices d JOIN device_cards dc ON dc.device_id = d.id \
             WHERE dc.card_id = ?1 AND d.revoked_at IS NULL ORDER BY dc.enrolled_at, dc.device_id",
            qualified(DEVICE_COLUMNS, "d")
        )
    });
    c.prepare_cached(&SQL)?.query_map([card_id], device_from)?.collect()
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ping(&self) -> StorageResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn challenge_events(&self) -> &ChallengeEvents {
        &self.events
    }

    async fn create_requestor(&self, r: &Requestor, api_key_hash: &[u8]) -> StorageResult<()> {
        let (r, hash) = (r.clone(), api_key_hash.to_vec());
        self.write(move |tx| {
            let (sealed, legacy) = r.callback_secret.columns();
            tx.execute(
                "INSERT INTO requestors (id, name, api_key_hash, callback_secret_sealed, callback_secret, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.id, r.name, hash, sealed, legacy, r.created_at],
            )
            .map_err(conflict_as("requestor"))?;
            Ok(())
        })
        .await
    }

    async fn requestor_by_key(&self, api_key_hash: &[u8], now: i64) -> StorageResult<Option<Requestor>> {
        let hash = api_key_hash.to_vec();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {REQUESTOR_COLUMNS} FROM requestors \
                 WHERE api_key_hash = ?1 OR (previous_api_key_hash = ?1 AND previous_key_expires_at > ?2)"
            ))?
            .query_row(params![hash, now], requestor_from)
            .optional()
        })
        .await
    }

    async fn requestor(&self, id: &str) -> StorageResult<Option<Requestor>> {
        self.one(format!("SELECT {REQUESTOR_COLUMNS} FROM requestors WHERE id = ?1"), id.to_owned(), requestor_from)
            .await
    }

    async fn requestors(&self) -> StorageResult<Vec<Requestor>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {REQUESTOR_COLUMNS} FROM requestors ORDER BY id"))?
                .query_map([], requestor_from)?
                .collect()
        })
        .await
    }

    async fn rotate_requestor_credential(
        &self,
        id: &str,
        credential: Credential,
        new_value: &[u8],
        previous_until: i64,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        // Every right-hand side reads the row as it was: the current value
        // becomes the previous one.
        let sql = match credential {
            Credential::ApiKey => {
                "UPDATE requestors SET previous_api_key_hash = api_key_hash, previous_key_expires_at = ?3, \
                 api_key_hash = ?2 WHERE id = ?1"
            }
            Credential::CallbackSecret => {
                "UPDATE requestors SET previous_callback_secret_sealed = callback_secret_sealed, \
                 previous_callback_secret_until = ?3, callback_secret_sealed = ?2, callback_secret = '' \
                 WHERE id = ?1"
            }
        };
        self.update_audited(sql, (id.to_owned(), new_value.to_vec(), previous_until), audit).await
    }

    async fn drop_previous_credential(
        &self,
        id: &str,
        credential: Credential,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let sql = match credential {
            Credential::ApiKey => {
                "UPDATE requestors SET previous_api_key_hash = NULL, previous_key_expires_at = NULL \
                 WHERE id = ?1 AND previous_api_key_hash IS NOT NULL"
            }
            Credential::CallbackSecret => {
                "UPDATE requestors SET previous_callback_secret_sealed = NULL, previous_callback_secret_until = NULL \
                 WHERE id = ?1 AND previous_callback_secret_sealed IS NOT NULL"
            }
        };
        self.update_audited(sql, (id.to_owned(),), audit).await
    }

    async fn seal_legacy_callback_secret(&self, id: &str, legacy: &str, sealed: &[u8]) -> StorageResult<bool> {
        let (id, legacy, sealed) = (id.to_owned(), legacy.to_owned(), sealed.to_vec());
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE requestors SET callback_secret_sealed = ?3, callback_secret = '' \
                 WHERE id = ?1 AND callback_secret = ?2 AND callback_secret_sealed IS NULL",
                params![id, legacy, sealed],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn rekey(&self, value: Rekeyed<'_>, old: &[u8], new: &[u8]) -> StorageResult<bool> {
        let (sql, card_id, old, new) =
            (value.update_sql(), value.card_id().map(str::to_owned), old.to_vec(), new.to_vec());
        self.write(move |tx| {
            let changed = match card_id {
                Some(card_id) => tx.execute(sql, params![old, new, card_id])?,
                None => tx.execute(sql, params![old, new])?,
            };
            Ok(changed > 0)
        })
        .await
    }

    async fn create_operator(&self, o: &Operator, api_key_hash: &[u8]) -> StorageResult<()> {
        let (o, hash) = (o.clone(), api_key_hash.to_vec());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO operators (id, name, role, api_key_hash, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![o.id, o.name, o.role.as_str(), hash, o.created_at, o.revoked_at],
            )
            .map_err(conflict_as("operator"))?;
            Ok(())
        })
        .await
    }

    async fn operator_by_key(&self, api_key_hash: &[u8]) -> StorageResult<Option<Operator>> {
        self.one(
            format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE api_key_hash = ?1 AND revoked_at IS NULL"),
            api_key_hash.to_vec(),
            operator_from,
        )
        .await
    }

    async fn operators(&self) -> StorageResult<Vec<Operator>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY created_at, id"))?
                .query_map([], operator_from)?
                .collect()
        })
        .await
    }

    async fn revoke_operator(&self, id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool> {
        let sql = "UPDATE operators SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL";
        self.update_audited(sql, (id.to_owned(), now), audit).await
    }

    async fn create_card(&self, new: &NewCard) -> StorageResult<()> {
        let new = new.clone();
        self.write(move |tx| {
            let c = &new.card;
            tx.execute(
                "INSERT INTO cards (id, pan_hash, pan_last4, language, email, phone, blocked_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![c.id, new.pan_hash, c.pan_last4, c.language, c.email, c.phone, c.blocked_at, c.created_at],
            )
            .map_err(conflict_as("card"))?;
            Ok(())
        })
        .await
    }

    async fn card(&self, id: &str) -> StorageResult<Option<Card>> {
        self.one(format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"), id.to_owned(), card_from).await
    }

    async fn card_by_pan_hash(&self, pan_hash: &[u8]) -> StorageResult<Option<Card>> {
        self.one(CARD_BY_PAN_HASH.clone(), pan_hash.to_vec(), card_from).await
    }

    async fn card_activity(&self, card_id: &str, history: &HistoryQuery) -> StorageResult<CardActivity> {
        let (card_id, history) = (card_id.to_owned(), *history);
        self.read(move |c| card_activity(c, &card_id, &history)).await
    }

    async fn card_for_purchase(&self, pan_hash: &[u8], history: &HistoryQuery) -> StorageResult<Option<PurchaseCard>> {
        let (hash, history) = (pan_hash.to_vec(), *history);
        // One read transaction, so card, history and devices agree.
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let Some(card) = tx.prepare_cached(&CARD_BY_PAN_HASH)?.query_row([hash], card_from).optional()? else {
                return Ok(None);
            };
            let activity = card_activity(&tx, &card.id, &history)?;
            let devices = card_devices(&tx, &card.id)?;
            Ok(Some(PurchaseCard { card, activity, devices }))
        })
        .await
    }

    async fn import_cards(&self, cards: &[NewCard], audit: &AuditEvent) -> StorageResult<Vec<CardImported>> {
        let (cards, audit) = (cards.to_vec(), audit.clone());
        self.write(move |tx| {
            let mut out = Vec::with_capacity(cards.len());
            for new in &cards {
                let c = &new.card;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO cards (id, pan_hash, pan_last4, language, email, phone, blocked_at, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (pan_hash) DO NOTHING",
                    )?
                    .execute(params![
                        c.id,
                        new.pan_hash,
                        c.pan_last4,
                        c.language,
                        c.email,
                        c.phone,
                        c.blocked_at,
                        c.created_at
                    ])?;
                let (imported, changed) = if inserted == 1 {
                    (CardImported::Created(c.id.clone()), Vec::new())
                } else {
                    let existing = tx.prepare_cached(&CARD_BY_PAN_HASH)?.query_row([&new.pan_hash], card_from)?;
                    let (card, changed) = existing.with_imported(c);
                    if changed.is_empty() {
                        (CardImported::Unchanged(card.id), changed)
                    } else {
                        tx.prepare_cached("UPDATE cards SET language = ?2, email = ?3, phone = ?4 WHERE id = ?1")?
                            .execute(params![card.id, card.language, card.email, card.phone])?;
                        (CardImported::Updated(card.id), changed)
                    }
                };
                if let Some(line) = audit.card_imported(&imported, &changed) {
                    insert_audit(tx, &line)?;
                }
                out.push(imported);
            }
            Ok(out)
        })
        .await
    }

    async fn set_card_language(
        &self,
        card_id: &str,
        language: Option<&str>,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let sql = "UPDATE cards SET language = ?2 WHERE id = ?1";
        self.update_audited(sql, (card_id.to_owned(), language.map(str::to_owned)), audit).await
    }

    async fn create_enrolment_code(&self, code: &EnrolmentCode) -> StorageResult<()> {
        let code = code.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO enrolment_codes (lookup, secret_hash, card_id, created_at, expires_at, attempts_left) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    code.lookup,
                    code.secret_hash,
                    code.card_id,
                    code.created_at,
                    code.expires_at,
                    code.attempts_left
                ],
            )
            .map_err(conflict_as("enrolment code"))?;
            Ok(())
        })
        .await
    }

    async fn enrolment_code(&self, lookup: &str) -> StorageResult<Option<EnrolmentCode>> {
        let lookup = lookup.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT lookup, secret_hash, card_id, created_at, expires_at, attempts_left, used_at \
                 FROM enrolment_codes WHERE lookup = ?1",
            )?
            .query_row([lookup], |r| {
                Ok(EnrolmentCode {
                    lookup: r.get(0)?,
                    secret_hash: r.get(1)?,
                    card_id: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    attempts_left: r.get(5)?,
                    used_at: r.get(6)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn spend_enrolment_attempt(&self, lookup: &str) -> StorageResult<Option<u32>> {
        let lookup = lookup.to_owned();
        self.write(move |tx| {
            tx.query_row(
                "UPDATE enrolment_codes SET attempts_left = attempts_left - 1 \
                 WHERE lookup = ?1 AND attempts_left > 0 AND used_at IS NULL RETURNING attempts_left",
                [lookup],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify)
        })
        .await
    }

    async fn complete_enrolment(
        &self,
        lookup: &str,
        device: &Device,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<Device> {
        let (lookup, device, audit) = (lookup.to_owned(), device.clone(), audit.clone());
        self.write(move |tx| {
            let card_id: Option<String> = tx
                .query_row(
                    "UPDATE enrolment_codes SET used_at = ?2 \
                     WHERE lookup = ?1 AND used_at IS NULL AND attempts_left > 0 AND expires_at > ?2 RETURNING card_id",
                    params![lookup, now],
                    |r| r.get(0),
                )
                .optional()?;
            let card_id = card_id.ok_or(StorageError::Conflict("enrolment code"))?;
            let existing = tx
                .query_row(
                    &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
                    [&device.public_key],
                    device_from,
                )
                .optional()?;
            let stored = match existing {
                Some(d) if d.revoked_at.is_some() => return Err(StorageError::Conflict("revoked device key")),
                Some(d) => {
                    tx.execute(
                        "UPDATE devices SET push_token = ?2, notifications_enabled = ?3, display_name = ?4, updated_at = ?5, \
                         push_unreachable = 0 \
                         WHERE id = ?1",
                        params![d.id, device.push_token, device.notifications_enabled, device.display_name, now],
                    )?;
                    Device {
                        push_token: device.push_token.clone(),
                        notifications_enabled: device.notifications_enabled,
                        display_name: device.display_name.clone(),
                        push_unreachable: false,
                        ..d
                    }
                }
                None => {
                    let d = &device;
                    tx.execute(
                        "INSERT INTO devices (id, public_key, platform, display_name, push_token, notifications_enabled, \
                         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                        params![d.id, d.public_key, d.platform, d.display_name, d.push_token, d.notifications_enabled, now],
                    )?;
                    device.clone()
                }
            };
            tx.execute("UPDATE enrolment_codes SET device_id = ?2 WHERE lookup = ?1", params![lookup, stored.id])?;
            tx.execute(
                "INSERT OR IGNORE INTO device_cards (device_id, card_id, enrolled_at) VALUES (?1, ?2, ?3)",
                params![stored.id, card_id, now],
            )?;
            let audit = AuditEvent { device_id: Some(stored.id.clone()), card_id: Some(card_id), ..audit };
            insert_audit(tx, &audit)?;
            Ok(stored)
        })
        .await
    }

    async fn device(&self, id: &str) -> StorageResult<Option<Device>> {
        self.one(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"), id.to_owned(), device_from).await
    }

    async fn device_cards(&self, device_id: &str) -> StorageResult<Vec<Card>> {
        let id = device_id.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM cards c JOIN device_cards dc ON dc.card_id = c.id WHERE dc.device_id = ?1 \
                 ORDER BY dc.enrolled_at, dc.card_id",
                qualified(CARD_COLUMNS, "c")
            );
            c.prepare_cached(&sql)?.query_map([id], card_from)?.collect()
        })
        .await
    }

    async fn card_devices(&self, card_id: &str) -> StorageResult<Vec<Device>> {
        let id = card_id.to_owned();
        self.read(move |c| card_devices(c, &id)).await
    }

    async fn set_push_settings(
        &self,
        device_id: &str,
        token: Option<&str>,
        enabled: bool,
        now: i64,
    ) -> StorageResult<()> {
        let (d, t) = (device_id.to_owned(), token.map(str::to_owned));
        self.write(move |tx| {
            tx.execute(
                "UPDATE devices SET push_token = ?2, notifications_enabled = ?3, push_unreachable = 0, updated_at = ?4 \
                 WHERE id = ?1",
                params![d, t, enabled, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn unenrol_card(&self, device_id: &str, card_id: &str, audit: &AuditEvent) -> StorageResult<bool> {
        let (d, card, audit) = (device_id.to_owned(), card_id.to_owned(), audit.clone());
        self.write(move |tx| {
            let removed = tx.execute("DELETE FROM device_cards WHERE device_id = ?1 AND card_id = ?2", [&d, &card])?;
            if removed == 1 {
                insert_audit(tx, &audit)?;
            }
            Ok(removed == 1)
        })
        .await
    }

    async fn revoke_device(&self, device_id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool> {
        let (d, audit) = (device_id.to_owned(), audit.clone());
        self.write(move |tx| {
            let revoked = tx.execute(
                "UPDATE devices SET revoked_at = ?2, push_token = NULL, updated_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![d, now],
            )?;
            if revoked == 0 {
                return Ok(false);
            }
            let cards: Vec<String> = tx
                .prepare_cached("DELETE FROM device_cards WHERE device_id = ?1 RETURNING card_id")?
                .query_map([&d], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for line in audit.per_card(&cards) {
                insert_audit(tx, &line)?;
            }
            Ok(true)
        })
        .await
    }

    async fn remember_nonce(&self, device_id: &str, nonce: &[u8], now: i64, window_start: i64) -> StorageResult<bool> {
        let (d, n) = (device_id.to_owned(), nonce.to_vec());
        self.write(move |tx| {
            // A new nonce is inserted, one last seen before the window is
            // taken afresh, one seen inside it is a replay (no row).
            let remembered = tx
                .prepare_cached(
                    "INSERT INTO device_nonces (device_id, nonce, seen_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (device_id, nonce) DO UPDATE SET seen_at = excluded.seen_at \
                     WHERE device_nonces.seen_at < ?4",
                )?
                .execute(params![d, n, now, window_start])?;
            Ok(remembered == 1)
        })
        .await
    }

    async fn forget_nonces(&self, before: i64, limit: u32) -> StorageResult<u64> {
        self.write(move |tx| {
            let forgotten = tx
                .prepare_cached(
                    "DELETE FROM device_nonces WHERE (device_id, nonce) IN ( \
                       SELECT device_id, nonce FROM device_nonces WHERE seen_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            Ok(forgotten as u64)
        })
        .await
    }

    async fn record_authentication(&self, new: &NewAuthentication) -> StorageResult<()> {
        let new = new.clone();
        self.write(move |tx| {
            let a = &new.authentication;
            tx.prepare_cached(&format!(
                "INSERT INTO authentications ({AUTHENTICATION_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
            ))?
            .execute(params![
                a.acs_trans_id,
                a.ds_trans_id,
                a.requestor_id,
                a.card_id,
                a.message_version,
                a.message_category,
                a.amount_minor as i64,
                a.currency,
                a.exponent,
                a.merchant_name,
                a.merchant_id,
                a.notification_url,
                a.trans_status,
                a.trans_status_reason,
                json_text(&a.reasons),
                a.low_value_exempt,
                a.authentication_value,
                a.eci,
                a.challenge_id,
                a.created_at,
                a.updated_at,
                a.browser_language,
                a.browser_tz
            ])
            .map_err(conflict_as("threeDSServerTransID"))?;
            if let Some(ch) = &new.challenge {
                tx.prepare_cached(&format!(
                    "INSERT INTO challenges ({CHALLENGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))?
                .execute(params![
                    ch.id,
                    ch.acs_trans_id,
                    ch.card_id,
                    ch.nonce,
                    ch.state.as_str(),
                    ch.number_match,
                    ch.number_choices.as_ref().map(json_text),
                    ch.created_at,
                    ch.expires_at,
                    ch.decided_at,
                    ch.decided_by_device,
                    ch.outcome_reason,
                    ch.push_deadline,
                    ch.fallback_reason
                ])?;
            }
            insert_audit(tx, &new.audit)?;
            Ok(())
        })
        .await
    }

    async fn authentication(&self, acs_trans_id: &str) -> StorageResult<Option<Authentication>> {
        self.one(
            format!("SELECT {AUTHENTICATION_COLUMNS} FROM authentications WHERE acs_trans_id = ?1"),
            acs_trans_id.to_owned(),
            authentication_from,
        )
        .await
    }

    async fn challenge(&self, id: &str) -> StorageResult<Option<Challenge>> {
        self.one(format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = ?1"), id.to_owned(), challenge_from)
            .await
    }

    async fn purchase_status(&self, acs_trans_id: &str) -> StorageResult<Option<PurchaseStatus>> {
        static SQL: LazyLock<String> = LazyLock::new(|| purchase_status_sql("?1"));
        let id = acs_trans_id.to_owned();
        self.read(move |c| {
            let at = PURCHASE_STATUS_LAYOUT;
            let mut stmt = c.prepare_cached(&SQL)?;
            let mut rows = stmt.query([id])?;
            // One row per attempt of the latest callback (one without any).
            let Some(first) = rows.next()? else { return Ok(None) };
            let authentication = authentication_at(first, 0)?;
            let challenge = optional_challenge_at(first, at.challenge)?;
            let callback_state: Option<String> = first.get(at.callback)?;
            let mut attempts: Vec<CallbackAttempt> = callback_attempt_at(first, at.callback + 1)?.into_iter().collect();
            while let Some(row) = rows.next()? {
                attempts.extend(callback_attempt_at(row, at.callback + 1)?);
            }
            let result_delivery = callback_state.map(|state| CallbackStatus { state, attempts });
            Ok(Some(PurchaseStatus { authentication, challenge, result_delivery }))
        })
        .await
    }

    async fn challenge_for_device(&self, id: &str, device_id: &str) -> StorageResult<Option<DeviceChallenge>> {
        let (id, device_id) = (id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            static SQL: LazyLock<String> = LazyLock::new(|| {
                device_challenge_sql(
                    "EXISTS (SELECT 1 FROM device_cards dc WHERE dc.device_id = ?2 AND dc.card_id = ch.card_id)",
                    "WHERE ch.id = ?1",
                )
            });
            c.prepare_cached(&SQL)?.query_row([id, device_id], device_challenge_from).optional()
        })
        .await
    }

    async fn pending_challenges_for_device(&self, device_id: &str, now: i64) -> StorageResult<Vec<DeviceChallenge>> {
        let id = device_id.to_owned();
        self.read(move |c| {
            static SQL: LazyLock<String> = LazyLock::new(|| {
                device_challenge_sql(
                    "1",
                    "JOIN device_cards dc ON dc.card_id = ch.card_id \
                 WHERE dc.device_id = ?1 AND ch.state = 'pending' AND ch.expires_at > ?2 ORDER BY ch.created_at, ch.id",
                )
            });
            c.prepare_cached(&SQL)?.query_map(params![id, now], device_challenge_from)?.collect()
        })
        .await
    }

    async fn end_challenge(&self, end: &ChallengeEnd) -> StorageResult<bool> {
        let challenge_id = end.challenge_id.clone();
        let end = end.clone();
        let ended = self.write(move |tx| {
            let acs_trans_id: Option<String> = tx
                .prepare_cached(
                    "UPDATE challenges SET state = ?2, decided_at = ?3, decided_by_device = ?4, outcome_reason = ?5 \
                     WHERE id = ?1 AND state = 'pending' RETURNING acs_trans_id",
                )?
                .query_row(
                    params![end.challenge_id, end.state.as_str(), end.at, end.decided_by_device, end.outcome_reason],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(acs_trans_id) = acs_trans_id else { return Ok(false) };
            tx.prepare_cached(
                "UPDATE authentications SET trans_status = ?2, trans_status_reason = ?3, authentication_value = ?4, \
                 eci = ?5, updated_at = ?6 WHERE acs_trans_id = ?1",
            )?
            .execute(params![acs_trans_id, end.trans_status, end.trans_status_reason, end.authentication_value, end.eci, end.at])?;
            if let Some(cb) = &end.callback {
                tx.prepare_cached(
                    "INSERT INTO callbacks (acs_trans_id, requestor_id, url, body, state, next_attempt_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                )?
                .execute(params![cb.acs_trans_id, cb.requestor_id, cb.url, cb.body, end.at])?;
            }
            if end.code_verified {
                tx.prepare_cached("UPDATE one_time_codes SET used_at = ?2 WHERE challenge_id = ?1")?
                    .execute(params![end.challenge_id, end.at])?;
                // Only when there is something to clear: an update writes
                // the card's row (a page as random as the card) even when
                // it sets what is already there.
                tx.prepare_cached(
                    "UPDATE cards SET failed_code_attempts = 0 \
                     WHERE id = (SELECT card_id FROM challenges WHERE id = ?1) AND failed_code_attempts <> 0",
                )?
                .execute([&end.challenge_id])?;
            }
            insert_audit(tx, &end.audit)?;
            Ok(true)
        })
        .await?;
        if ended {
            self.events.changed(&challenge_id);
        }
        Ok(ended)
    }

    async fn expired_challenges(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE state = 'pending' AND expires_at <= ?1 \
                 ORDER BY expires_at LIMIT ?2"
            ))?
            .query_map(params![now, limit], challenge_from)?
            .collect()
        })
        .await
    }

    async fn enqueue_push(
        &self,
        device_id: &str,
        challenge_id: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> StorageResult<()> {
        let (d, c, p) = (device_id.to_owned(), challenge_id.to_owned(), json_text(payload));
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_outbox (device_id, challenge_id, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![d, c, p, now])?;
            Ok(())
        })
        .await
    }

    async fn outbox_pushes(&self, device_id: Option<&str>, limit: u32) -> StorageResult<Vec<OutboxPush>> {
        let d = device_id.map(str::to_owned);
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, device_id, challenge_id, payload, created_at FROM push_outbox \
                 WHERE ?1 IS NULL OR device_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![d, limit], |r| {
                let payload: String = r.get(3)?;
                Ok(OutboxPush {
                    id: r.get(0)?,
                    device_id: r.get(1)?,
                    challenge_id: r.get(2)?,
                    payload: serde_json::from_str(&payload).map_err(|_| corrupt("push payload"))?,
                    created_at: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn claim_callbacks(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<CallbackJob>> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE callbacks SET next_attempt_at = ?2 WHERE id IN ( \
                   SELECT id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= ?1 \
                   ORDER BY next_attempt_at LIMIT ?3) \
                 RETURNING id, acs_trans_id, requestor_id, url, body, attempts",
            )?
            .query_map(params![now, lease_until, limit], |r| {
                Ok(CallbackJob {
                    id: r.get(0)?,
                    acs_trans_id: r.get(1)?,
                    requestor_id: r.get(2)?,
                    url: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify)
        })
        .await
    }

    async fn record_callback_attempt(
        &self,
        job: &CallbackJob,
        attempt: &CallbackAttempt,
        next: CallbackNext,
    ) -> StorageResult<()> {
        let (id, attempt) = (job.id, attempt.clone());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO callback_attempts (callback_id, attempt, at, http_status, error) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, attempt.attempt, attempt.at, attempt.http_status, attempt.error])?;
            let (state, next_at) = match next {
                CallbackNext::Delivered => ("delivered", attempt.at),
                CallbackNext::RetryAt(at) => ("pending", at),
                CallbackNext::GiveUp => ("failed", attempt.at),
            };
            tx.prepare_cached("UPDATE callbacks SET state = ?2, attempts = ?3, next_attempt_at = ?4 WHERE id = ?1")?
                .execute(params![id, state, attempt.attempt, next_at])?;
            Ok(())
        })
        .await
    }

    async fn callback_status(&self, acs_trans_id: &str) -> StorageResult<Option<CallbackStatus>> {
        let id = acs_trans_id.to_owned();
        self.read(move |c| {
            let Some((cb_id, state)) = c
                .prepare_cached("SELECT id, state FROM callbacks WHERE acs_trans_id = ?1 ORDER BY id DESC LIMIT 1")?
                .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .optional()?
            else {
                return Ok(None);
            };
            let attempts = c
                .prepare_cached(
                    "SELECT attempt, at, http_status, error FROM callback_attempts WHERE callback_id = ?1 ORDER BY attempt",
                )?
                .query_map([cb_id], |r| callback_attempt_at(r, 0))?
                .filter_map(Result::transpose)
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(CallbackStatus { state, attempts }))
        })
        .await
    }

    async fn set_card_contacts(
        &self,
        card_id: &str,
        email: Option<&str>,
        phone: Option<&str>,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let (id, email, phone, audit) =
            (card_id.to_owned(), email.map(str::to_owned), phone.map(str::to_owned), audit.clone());
        self.write(move |tx| {
            let changed =
                tx.execute("UPDATE cards SET email = ?2, phone = ?3 WHERE id = ?1", params![id, email, phone])?;
            if changed == 1 {
                insert_audit(tx, &audit)?;
            }
            Ok(changed == 1)
        })
        .await
    }

    async fn unblock_card(&self, card_id: &str, audit: &AuditEvent) -> StorageResult<bool> {
        let (id, audit) = (card_id.to_owned(), audit.clone());
        self.write(move |tx| {
            let changed =
                tx.execute("UPDATE cards SET blocked_at = NULL, failed_code_attempts = 0 WHERE id = ?1", [&id])?;
            if changed == 1 {
                insert_audit(tx, &audit)?;
            }
            Ok(changed == 1)
        })
        .await
    }

    async fn mark_push_unreachable(&self, device_id: &str, now: i64) -> StorageResult<()> {
        let id = device_id.to_owned();
        self.write(move |tx| {
            tx.execute("UPDATE devices SET push_unreachable = 1, updated_at = ?2 WHERE id = ?1", params![id, now])?;
            Ok(())
        })
        .await
    }

    async fn start_code(&self, new: &NewCode) -> StorageResult<bool> {
        let challenge_id = new.code.challenge_id.clone();
        let new = new.clone();
        let started = self.write(move |tx| {
            let c = &new.code;
            let moved = tx
                .prepare_cached(
                    "UPDATE challenges SET expires_at = MAX(expires_at, ?2), fallback_reason = ?3, push_deadline = NULL \
                     WHERE id = ?1 AND state = 'pending' \
                     AND NOT EXISTS (SELECT 1 FROM one_time_codes WHERE challenge_id = ?1)",
                )?
                .execute(params![c.challenge_id, new.challenge_expires_at, new.fallback_reason])?;
            if moved == 0 {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO one_time_codes (challenge_id, salt, code_hash, created_at, expires_at, resends, last_sent_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?4)",
            )?
            .execute(params![c.challenge_id, c.salt, c.code_hash, c.created_at, c.expires_at])?;
            insert_deliveries(tx, &c.challenge_id, 0, c.created_at, &new.deliveries)?;
            insert_audit(tx, &new.audit)?;
            Ok(true)
        })
        .await?;
        if started {
            self.events.changed(&challenge_id);
        }
        Ok(started)
    }

    async fn one_time_code(&self, challenge_id: &str) -> StorageResult<Option<OneTimeCode>> {
        self.one(
            format!("SELECT {ONE_TIME_CODE_COLUMNS} FROM one_time_codes WHERE challenge_id = ?1"),
            challenge_id.to_owned(),
            |r| one_time_code_at(r, 0),
        )
        .await
        .map(Option::flatten)
    }

    async fn code_check(&self, acs_trans_id: &str) -> StorageResult<Option<CodeCheck>> {
        self.one(code_check_sql("?1"), acs_trans_id.to_owned(), code_check_from).await
    }

    async fn record_resend(
        &self,
        challenge_id: &str,
        expected_resends: u32,
        now: i64,
        deliveries: &[NewDelivery],
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let (id, deliveries, audit) = (challenge_id.to_owned(), deliveries.to_vec(), audit.clone());
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE one_time_codes SET resends = resends + 1, last_sent_at = ?3 \
                 WHERE challenge_id = ?1 AND resends = ?2 AND used_at IS NULL",
                params![id, expected_resends, now],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            insert_deliveries(tx, &id, expected_resends + 1, now, &deliveries)?;
            insert_audit(tx, &audit)?;
            Ok(true)
        })
        .await
    }

    async fn record_code_failure(
        &self,
        card_id: &str,
        limit: u32,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<CodeFailure> {
        let (id, audit) = (card_id.to_owned(), audit.clone());
        self.write(move |tx| {
            let failures: u32 = tx.query_row(
                "UPDATE cards SET failed_code_attempts = failed_code_attempts + 1 WHERE id = ?1 RETURNING failed_code_attempts",
                [&id],
                |r| r.get(0),
            )?;
            let blocked_now = failures >= limit
                && tx.execute("UPDATE cards SET blocked_at = ?2 WHERE id = ?1 AND blocked_at IS NULL", params![id, now])? == 1;
            let mut audit = audit;
            audit.detail = serde_json::json!({ "consecutiveFailures": failures, "blocked": failures >= limit });
            insert_audit(tx, &audit)?;
            Ok(CodeFailure { failures, blocked_now })
        })
        .await
    }

    async fn deliveries(&self, challenge_id: &str) -> StorageResult<Vec<Delivery>> {
        let id = challenge_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE challenge_id = ?1 ORDER BY id"))?
                .query_map([id], delivery_from)?
                .collect()
        })
        .await
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<Delivery>> {
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(&format!(
                    "UPDATE deliveries SET next_attempt_at = ?2 WHERE id IN ( \
                       SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 \
                       ORDER BY next_attempt_at LIMIT ?3) \
                     RETURNING {DELIVERY_COLUMNS}"
                ))?
                .query_map(params![now, lease_until, limit], delivery_from)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_delivery_attempt(
        &self,
        d: &Delivery,
        at: i64,
        provider: &str,
        error: Option<&str>,
        next: DeliveryNext,
    ) -> StorageResult<()> {
        let (id, attempt, provider, error) = (d.id, d.attempts + 1, provider.to_owned(), error.map(str::to_owned));
        self.write(move |tx| {
            let (state, next_at) = match next {
                DeliveryNext::Sent => (DeliveryState::Sent, at),
                DeliveryNext::RetryAt(t) => (DeliveryState::Pending, t),
                DeliveryNext::Failed => (DeliveryState::Failed, at),
                DeliveryNext::Skipped => (DeliveryState::Skipped, at),
            };
            if next != DeliveryNext::Skipped {
                tx.prepare_cached(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, at, provider, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, attempt, at, provider, error])?;
            }
            let attempts = if next == DeliveryNext::Skipped { attempt - 1 } else { attempt };
            tx.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5, updated_at = ?6 \
                 WHERE id = ?1",
            )?
            .execute(params![id, state.as_str(), attempts, next_at, error, at])?;
            Ok(())
        })
        .await
    }

    async fn challenges_past_push_deadline(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE state = 'pending' AND push_deadline <= ?1 \
                 ORDER BY push_deadline LIMIT ?2"
            ))?
            .query_map(params![now, limit], challenge_from)?
            .collect()
        })
        .await
    }

    async fn record_outbox_message(
        &self,
        channel: ContactChannel,
        recipient: &str,
        subject: Option<&str>,
        body: &str,
        now: i64,
    ) -> StorageResult<()> {
        let (recipient, subject, body) = (recipient.to_owned(), subject.map(str::to_owned), body.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO message_outbox (channel, recipient, subject, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![channel.as_str(), recipient, subject, body, now])?;
            Ok(())
        })
        .await
    }

    async fn outbox_messages(&self, limit: u32) -> StorageResult<Vec<OutboxMessage>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, channel, recipient, subject, body, created_at FROM message_outbox ORDER BY id DESC LIMIT ?1",
            )?
            .query_map([limit], |r| {
                let channel: String = r.get(1)?;
                Ok(OutboxMessage {
                    id: r.get(0)?,
                    channel: ContactChannel::parse(&channel).ok_or_else(|| corrupt("message channel"))?,
                    recipient: r.get(2)?,
                    subject: r.get(3)?,
                    body: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn open_window_session(&self, session: &WindowSession) -> StorageResult<bool> {
        let w = session.clone();
        self.write(move |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO window_sessions (acs_trans_id, token_hash, three_ds_session_data, window_size, language, \
                     created_at, last_active_at, verified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (acs_trans_id) DO NOTHING",
                )?
                .execute(params![
                    w.acs_trans_id,
                    w.token_hash,
                    w.three_ds_session_data,
                    w.window_size,
                    w.language,
                    w.created_at,
                    w.last_active_at,
                    w.verified_at
                ])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn window_session(&self, token_hash: &[u8]) -> StorageResult<Option<WindowSession>> {
        self.one(
            "SELECT acs_trans_id, token_hash, three_ds_session_data, window_size, language, created_at, last_active_at, \
             verified_at FROM window_sessions WHERE token_hash = ?1"
                .into(),
            token_hash.to_vec(),
            |r| {
                Ok(WindowSession {
                    acs_trans_id: r.get(0)?,
                    token_hash: r.get(1)?,
                    three_ds_session_data: r.get(2)?,
                    window_size: r.get(3)?,
                    language: r.get(4)?,
                    created_at: r.get(5)?,
                    last_active_at: r.get(6)?,
                    verified_at: r.get(7)?,
                })
            },
        )
        .await
    }

    async fn update_window_session(
        &self,
        acs_trans_id: &str,
        now: i64,
        language: &str,
        verified: bool,
    ) -> StorageResult<()> {
        let (id, language) = (acs_trans_id.to_owned(), language.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE window_sessions SET last_active_at = MAX(last_active_at, ?2), language = ?3, \
                 verified_at = CASE WHEN ?4 THEN COALESCE(verified_at, ?2) ELSE verified_at END \
                 WHERE acs_trans_id = ?1",
            )?
            .execute(params![id, now, language, verified])?;
            Ok(())
        })
        .await
    }

    async fn challenges_without_window(&self, created_before: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM challenges ch WHERE ch.state = 'pending' AND ch.created_at <= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM window_sessions w WHERE w.acs_trans_id = ch.acs_trans_id) \
                 ORDER BY ch.created_at LIMIT ?2",
                qualified(CHALLENGE_COLUMNS, "ch")
            ))?
            .query_map(params![created_before, limit], challenge_from)?
            .collect()
        })
        .await
    }

    async fn challenges_idle_in_window(&self, active_before: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM challenges ch JOIN window_sessions w ON w.acs_trans_id = ch.acs_trans_id \
                 WHERE ch.state = 'pending' AND w.last_active_at <= ?1 ORDER BY w.last_active_at LIMIT ?2",
                qualified(CHALLENGE_COLUMNS, "ch")
            ))?
            .query_map(params![active_before, limit], challenge_from)?
            .collect()
        })
        .await
    }

    async fn delete_ended_window_sessions(&self, ended_before: i64, limit: u32) -> StorageResult<u64> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM window_sessions WHERE acs_trans_id IN (SELECT w.acs_trans_id FROM window_sessions w \
                     JOIN challenges ch ON ch.acs_trans_id = w.acs_trans_id WHERE ch.state <> 'pending' \
                     AND COALESCE(ch.decided_at, ch.expires_at) <= ?1 LIMIT ?2)",
                )?
                .execute(params![ended_before, limit])?;
            Ok(n as u64)
        })
        .await
    }

    async fn set_security_questions(
        &self,
        card_id: &str,
        questions: &[SecurityQuestion],
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let (id, questions, audit) = (card_id.to_owned(), questions.to_vec(), audit.clone());
        self.write(move |tx| {
            let exists: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM cards WHERE id = ?1)", [&id], |r| r.get(0))?;
            if !exists {
                return Ok(false);
            }
            tx.execute("DELETE FROM security_questions WHERE card_id = ?1", [&id])?;
            for q in &questions {
                tx.prepare_cached(
                    "INSERT INTO security_questions (card_id, position, question, answer_hash) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, q.position, q.question, q.answer_hash])?;
            }
            insert_audit(tx, &audit)?;
            Ok(true)
        })
        .await
    }

    async fn security_questions(&self, card_id: &str) -> StorageResult<Vec<SecurityQuestion>> {
        let id = card_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT position, question, answer_hash FROM security_questions WHERE card_id = ?1 ORDER BY position",
            )?
            .query_map([id], |r| {
                Ok(SecurityQuestion { position: r.get(0)?, question: r.get(1)?, answer_hash: r.get(2)? })
            })?
            .collect()
        })
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> StorageResult<()> {
        let e = event.clone();
        self.write(move |tx| insert_audit(tx, &e).map_err(classify)).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> StorageResult<Vec<AuditRecord>> {
        let (sql, values) = audit_search::query(AUDIT_COLUMNS, filter, |n| format!("?{n}"));
        self.read(move |c| {
            let values = values.into_iter().map(|v| match v {
                audit_search::Bound::Text(t) => rusqlite::types::Value::Text(t),
                audit_search::Bound::Int(i) => rusqlite::types::Value::Integer(i),
            });
            c.prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), |r| {
                    let detail: String = r.get(9)?;
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        event: AuditEvent {
                            at: r.get(1)?,
                            kind: r.get(2)?,
                            actor: r.get(3)?,
                            card_id: r.get(4)?,
                            acs_trans_id: r.get(5)?,
                            challenge_id: r.get(6)?,
                            device_id: r.get(7)?,
                            outcome: r.get(8)?,
                            detail: serde_json::from_str(&detail).map_err(|_| corrupt("audit detail"))?,
                        },
                    })
                })?
                .collect()
        })
        .await
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        classify(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans to do for `sql` (its parameters NULL), a step a line.
    fn plan(c: &Connection, sql: &str) -> String {
        let mut statement = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let steps = statement.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3)).unwrap();
        steps.collect::<rusqlite::Result<Vec<_>>>().unwrap().join("\n")
    }

    /// Every AReq reads its card's history, so each read must find the
    /// card's purchases through an index, never by scanning them all, and
    /// the low-value tally from the index alone.
    #[test]
    fn a_cards_history_is_read_through_one_index() {
        let mut c = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut c, 0, latest_version()).unwrap();
        let plans = CARD_HISTORY_SQL.map(|sql| plan(&c, sql));
        for p in &plans {
            assert!(p.contains("SEARCH authentications USING") && p.contains("INDEX authentications_by_card"), "{p}");
            assert!(!p.contains("SCAN authentications"), "{p}");
        }
        assert!(
            plans[2].contains("COVERING INDEX authentications_by_card (card_id=? AND created_at>?)"),
            "{}",
            plans[2]
        );
    }

    /// A search by card reads the card's lines through indexes, not the
    /// whole log: its lines with no purchase through `audit_by_card`, the
    /// others through its purchases; in id order without a sort.
    #[test]
    fn an_audit_search_by_card_reads_through_indexes() {
        let mut c = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut c, 0, latest_version()).unwrap();
        let filter = AuditFilter { card_id: Some("card".into()), limit: 10, ..AuditFilter::default() };
        let p = plan(&c, &audit_search::query(AUDIT_COLUMNS, &filter, |n| format!("?{n}")).0);
        for step in [
            "INDEX audit_by_card (card_id=?)",
            "INDEX authentications_by_card (card_id=?)",
            "INDEX audit_by_transaction (acs_trans_id=?)",
            "SEARCH audit_events USING INTEGER PRIMARY KEY (rowid=?)",
        ] {
            assert!(p.contains(step), "no {step} in\n{p}");
        }
        assert!(!p.contains("SCAN") && !p.contains("TEMP B-TREE FOR ORDER BY"), "{p}");
    }
}
