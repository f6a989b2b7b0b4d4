//! The PostgreSQL backend: several server nodes on one database.
//!
//! Method for method it keeps the SQLite backend's semantics (one contract
//! suite, `server/tests/storage_contract.rs`, runs against both). SQLite
//! gets them from having one writer at a time; here they come from row
//! locks under READ COMMITTED:
//! - a conditional `UPDATE … WHERE state = 'pending'` waits for a concurrent
//!   writer of the same row, then re-checks its condition on the committed
//!   row, so of many concurrent callers exactly one changes it;
//! - jobs (result callbacks, code deliveries) are claimed with `FOR UPDATE
//!   SKIP LOCKED`: two nodes never take the same job, and never wait on
//!   each other to take different ones;
//! - where a decision depends on another table (a challenge's code), the
//!   parent row is locked first and the other table read after.

mod listener;
mod migrations;
mod pool;
mod tls;

use std::path::Path;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use self::pool::{Target, classify, conflict_as, pool_error};
use super::columns::*;
use super::*;

pub use migrations::latest_version;

pub struct PostgresStorage {
    pool: Pool,
    events: Arc<ChallengeEvents>,
    /// Stops the challenge listener when the storage goes.
    _listener: tokio::sync::watch::Sender<()>,
}

impl PostgresStorage {
    /// Applies migrations (connecting now, so a wrong URL, an unreachable
    /// database or a certificate that does not verify is reported at
    /// start) and prepares a pool of up to `connections` connections,
    /// opened as needed. `ca_file` is `database.ca_file`, for TLS.
    pub fn open(url: &str, ca_file: Option<&Path>, connections: usize, now_ms: i64) -> StorageResult<Self> {
        let target = Target::new(url, ca_file)?;
        run_migrations(target.clone(), now_ms, latest_version())?;
        let (listener, stopped) = tokio::sync::watch::channel(());
        let events = Arc::new_cyclic(|events: &Weak<ChallengeEvents>| {
            let (events, target) = (events.clone(), target.clone());
            // Only a node whose windows wait listens, from the runtime they
            // wait in.
            ChallengeEvents::listening(move || {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(listener::run(target, events, stopped));
                }
            })
        });
        Ok(Self { pool: pool::build(target, connections)?, events, _listener: listener })
    }

    /// Brings a database to schema `version` only — what an older build
    /// left behind — so that upgrades can be tested.
    pub fn migrate_to(url: &str, version: u32, now_ms: i64) -> StorageResult<usize> {
        run_migrations(Target::new(url, None)?, now_ms, version)
    }

    async fn conn(&self) -> StorageResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn read_one<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> StorageResult<T>,
    ) -> StorageResult<Option<T>> {
        let c = self.conn().await?;
        query_opt(&c, sql, params).await?.as_ref().map(map).transpose()
    }

    async fn read_all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> StorageResult<T>,
    ) -> StorageResult<Vec<T>> {
        let c = self.conn().await?;
        query(&c, sql, params).await?.iter().map(map).collect()
    }

    /// One statement on its own: atomic without a transaction around it.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<u64> {
        let c = self.conn().await?;
        execute(&c, sql, params).await
    }

    /// One conditional statement and, if it changed a row, its audit line,
    /// in one transaction; says whether it changed one.
    async fn update_audited(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let changed = execute(&tx, sql, params).await? == 1;
        if changed {
            insert_audit(&tx, audit).await?;
        }
        commit(tx).await?;
        Ok(changed)
    }

    /// An insert whose integrity violations mean `Conflict(what)`.
    async fn insert(&self, sql: &str, params: &[&(dyn ToSql + Sync)], what: &'static str) -> StorageResult<()> {
        let c = self.conn().await?;
        insert(&c, sql, params, what).await
    }
}

/// Applies migrations on a thread of its own: `open` is synchronous (as
/// `App::open` is) and is called from inside the async runtime, which
/// cannot block on a future of its own.
fn run_migrations(target: Target, now_ms: i64, until: u32) -> StorageResult<usize> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::Unavailable(format!("migration runtime: {e}")))?;
        runtime.block_on(async {
            let (mut client, connection) = target.config.connect(target.tls).await.map_err(classify)?;
            let connection = tokio::spawn(connection);
            let applied = migrations::migrate(&mut client, now_ms, until).await.map_err(classify);
            drop(client);
            let _ = connection.await;
            applied
        })
    })
    .join()
    .map_err(|_| StorageError::Unavailable("the migration thread panicked".into()))?
}

// ---- statements --------------------------------------------------------
// Every statement is prepared once per connection and reused.

async fn query(c: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(classify)?;
    c.query(&statement, params).await.map_err(classify)
}

async fn query_opt(c: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(classify)?;
    c.query_opt(&statement, params).await.map_err(classify)
}

async fn execute(c: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(classify)?;
    c.execute(&statement, params).await.map_err(classify)
}

async fn insert(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &'static str,
) -> StorageResult<()> {
    let statement = c.prepare_cached(sql).await.map_err(classify)?;
    c.execute(&statement, params).await.map_err(conflict_as(what))?;
    Ok(())
}

/// Tells every node's waiters that the challenge changed, once (and if)
/// the transaction commits.
async fn announce(tx: &impl GenericClient, challenge_id: &str) -> StorageResult<()> {
    execute(tx, "SELECT pg_notify($1, $2)", &[&listener::CHANNEL, &challenge_id]).await.map(|_| ())
}

async fn begin(c: &mut deadpool_postgres::Object) -> StorageResult<deadpool_postgres::Transaction<'_>> {
    c.transaction().await.map_err(classify)
}

async fn commit(tx: deadpool_postgres::Transaction<'_>) -> StorageResult<()> {
    tx.commit().await.map_err(classify)
}

// ---- rows --------------------------------------------------------------

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StorageResult<T> {
    row.try_get(idx).map_err(|e| StorageError::Corrupt(format!("column {}: {e}", row.columns()[idx].name())))
}

/// A count kept as BIGINT, read back as the `u32` the records hold.
fn get_u32(row: &Row, idx: usize) -> StorageResult<u32> {
    let v: i64 = get(row, idx)?;
    u32::try_from(v)
        .map_err(|_| StorageError::Corrupt(format!("column {}: {v} out of range", row.columns()[idx].name())))
}

fn get_opt_u8(row: &Row, idx: usize) -> StorageResult<Option<u8>> {
    get::<Option<i16>>(row, idx)?
        .map(|v| u8::try_from(v).map_err(|_| StorageError::Corrupt(format!("column {idx}: {v} out of range"))))
        .transpose()
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(what.to_owned())
}

/// A `u32` as the BIGINT it is stored as.
fn wide(v: u32) -> i64 {
    i64::from(v)
}

fn requestor_from(r: &Row) -> StorageResult<Requestor> {
    Ok(Requestor {
        id: get(r, 0)?,
        name: get(r, 1)?,
        callback_secret: StoredSecret::from_columns(get(r, 2)?, get(r, 3)?)
            .ok_or_else(|| corrupt("requestor without a callback secret"))?,
        previous_callback_secret: PreviousSecret::from_columns(get(r, 4)?, get(r, 5)?),
        previous_key_expires_at: get(r, 6)?,
        created_at: get(r, 7)?,
    })
}

fn operator_from(r: &Row) -> StorageResult<Operator> {
    let role: String = get(r, 2)?;
    Ok(Operator {
        id: get(r, 0)?,
        name: get(r, 1)?,
        role: OperatorRole::parse(&role).ok_or_else(|| corrupt("operator role"))?,
        created_at: get(r, 3)?,
        revoked_at: get(r, 4)?,
    })
}

/// The risk engine's counts for card `c` (`$1` finds it, `$2`–`$5` are
/// [`ActivityArgs`]). Each count stops at its limit, and the low-value
/// tally reads only purchases since the last approved challenge (the
/// card's history index carries its columns), so none grows with the
/// card's history. One statement: the figures come from one snapshot.
const ACTIVITY: &str = "\
    (SELECT COUNT(*) FROM (SELECT 1 FROM authentications a WHERE a.card_id = c.id AND a.trans_status = 'Y' \
        LIMIT $4) y), \
    (SELECT COUNT(*) FROM (SELECT 1 FROM authentications a WHERE a.card_id = c.id AND a.created_at >= $3 \
        LIMIT $5) r), \
    (SELECT COUNT(*) FROM authentications a WHERE a.card_id = c.id AND a.low_value_exempt AND a.currency = $2 \
        AND a.created_at > COALESCE(( \
            SELECT MAX(decided_at) FROM challenges ch WHERE ch.card_id = c.id AND ch.state = 'approved'), 0)), \
    (SELECT COALESCE(SUM(a.amount_minor), 0)::BIGINT FROM authentications a WHERE a.card_id = c.id \
        AND a.low_value_exempt AND a.currency = $2 AND a.created_at > COALESCE(( \
            SELECT MAX(decided_at) FROM challenges ch WHERE ch.card_id = c.id AND ch.state = 'approved'), 0))";

/// A [`HistoryQuery`] as the parameters `$2`–`$5` of [`ACTIVITY`].
struct ActivityArgs {
    currency: i32,
    recent_since: i64,
    authenticated_up_to: i64,
    recent_up_to: i64,
}

impl ActivityArgs {
    fn new(q: &HistoryQuery) -> Self {
        Self {
            currency: i32::from(q.currency),
            recent_since: q.recent_since,
            authenticated_up_to: wide(q.authenticated_up_to),
            recent_up_to: wide(q.recent_up_to),
        }
    }

    /// The parameters, `key` (the card's id or number hash) first.
    fn with<'a>(&'a self, key: &'a (dyn ToSql + Sync)) -> [&'a (dyn ToSql + Sync); 5] {
        [key, &self.currency, &self.recent_since, &self.authenticated_up_to, &self.recent_up_to]
    }
}

fn activity_from(row: &Row, at: usize) -> StorageResult<CardActivity> {
    Ok(CardActivity {
        authenticated: get::<i64>(row, at)? as u64,
        recent: get::<i64>(row, at + 1)? as u32,
        low_value_count: get::<i64>(row, at + 2)? as u32,
        low_value_sum: get::<i64>(row, at + 3)? as u64,
    })
}

fn card_from(row: &Row) -> StorageResult<Card> {
    card_at(row, 0)
}

/// The card in the columns from `at` on (as in a join).
fn card_at(row: &Row, at: usize) -> StorageResult<Card> {
    Ok(Card {
        id: get(row, at)?,
        pan_last4: get(row, at + 1)?,
        language: get(row, at + 2)?,
        email: get(row, at + 3)?,
        phone: get(row, at + 4)?,
        blocked_at: get(row, at + 5)?,
        failed_code_attempts: get_u32(row, at + 6)?,
        created_at: get(row, at + 7)?,
    })
}

fn device_from(row: &Row) -> StorageResult<Device> {
    Ok(Device {
        id: get(row, 0)?,
        public_key: get(row, 1)?,
        platform: get(row, 2)?,
        display_name: get(row, 3)?,
        push_token: get(row, 4)?,
        notifications_enabled: get(row, 5)?,
        push_unreachable: get(row, 6)?,
        revoked_at: get(row, 7)?,
        created_at: get(row, 8)?,
    })
}

fn authentication_from(row: &Row) -> StorageResult<Authentication> {
    authentication_at(row, 0)
}

/// The authentication in the columns from `at` on (as in a join).
fn authentication_at(row: &Row, at: usize) -> StorageResult<Authentication> {
    let currency: i32 = get(row, at + 7)?;
    let exponent: i16 = get(row, at + 8)?;
    Ok(Authentication {
        acs_trans_id: get(row, at)?,
        ds_trans_id: get(row, at + 1)?,
        requestor_id: get(row, at + 2)?,
        card_id: get(row, at + 3)?,
        message_version: get(row, at + 4)?,
        message_category: get(row, at + 5)?,
        amount_minor: get::<i64>(row, at + 6)? as u64,
        currency: u16::try_from(currency).map_err(|_| corrupt("authentication currency"))?,
        exponent: u8::try_from(exponent).map_err(|_| corrupt("authentication exponent"))?,
        merchant_name: get(row, at + 9)?,
        merchant_id: get(row, at + 10)?,
        notification_url: get(row, at + 11)?,
        trans_status: get(row, at + 12)?,
        trans_status_reason: get(row, at + 13)?,
        reasons: get(row, at + 14)?,
        low_value_exempt: get(row, at + 15)?,
        authentication_value: get(row, at + 16)?,
        eci: get(row, at + 17)?,
        challenge_id: get(row, at + 18)?,
        created_at: get(row, at + 19)?,
        updated_at: get(row, at + 20)?,
        browser_language: get(row, at + 21)?,
        browser_tz: get(row, at + 22)?,
    })
}

fn challenge_from(row: &Row) -> StorageResult<Challenge> {
    challenge_at(row, 0)
}

/// The challenge in the columns from `at` on (as in a join).
fn challenge_at(row: &Row, at: usize) -> StorageResult<Challenge> {
    let state: String = get(row, at + 4)?;
    let choices: Option<Vec<i16>> = get(row, at + 6)?;
    Ok(Challenge {
        id: get(row, at)?,
        acs_trans_id: get(row, at + 1)?,
        card_id: get(row, at + 2)?,
        nonce: get(row, at + 3)?,
        state: ChallengeState::parse(&state).ok_or_else(|| corrupt("challenge state"))?,
        number_match: get_opt_u8(row, at + 5)?,
        number_choices: choices
            .map(|c| c.into_iter().map(u8::try_from).collect::<Result<Vec<u8>, _>>())
            .transpose()
            .map_err(|_| corrupt("number choices"))?,
        created_at: get(row, at + 7)?,
        expires_at: get(row, at + 8)?,
        decided_at: get(row, at + 9)?,
        decided_by_device: get(row, at + 10)?,
        outcome_reason: get(row, at + 11)?,
        push_deadline: get(row, at + 12)?,
        fallback_reason: get(row, at + 13)?,
    })
}

fn device_challenge_from(row: &Row) -> StorageResult<DeviceChallenge> {
    let at = DEVICE_CHALLENGE_LAYOUT;
    Ok(DeviceChallenge {
        challenge: challenge_at(row, 0)?,
        authentication: authentication_at(row, at.authentication)?,
        card: card_at(row, at.card)?,
        requestor_name: get(row, at.requestor_name)?,
        device_enrolled: get(row, at.enrolled)?,
    })
}

fn delivery_from(row: &Row) -> StorageResult<Delivery> {
    let channel: String = get(row, 2)?;
    let state: String = get(row, 5)?;
    Ok(Delivery {
        id: get(row, 0)?,
        challenge_id: get(row, 1)?,
        channel: ContactChannel::parse(&channel).ok_or_else(|| corrupt("delivery channel"))?,
        destination_masked: get(row, 3)?,
        send_round: get_u32(row, 4)?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state"))?,
        attempts: get_u32(row, 6)?,
        last_error: get(row, 7)?,
        updated_at: get(row, 8)?,
    })
}

/// The challenge in the columns from `at` on; `None` if they are null (no
/// challenge in an outer join).
fn optional_challenge_at(row: &Row, at: usize) -> StorageResult<Option<Challenge>> {
    match get::<Option<String>>(row, at)? {
        Some(_) => challenge_at(row, at).map(Some),
        None => Ok(None),
    }
}

/// A callback attempt in the four columns from `at` on; `None` if they are
/// null (no attempt in an outer join).
fn callback_attempt_at(row: &Row, at: usize) -> StorageResult<Option<CallbackAttempt>> {
    if get::<Option<i64>>(row, at)?.is_none() {
        return Ok(None);
    }
    Ok(Some(CallbackAttempt {
        attempt: get_u32(row, at)?,
        at: get(row, at + 1)?,
        http_status: get::<Option<i32>>(row, at + 2)?
            .map(|s| u16::try_from(s).map_err(|_| corrupt("callback HTTP status")))
            .transpose()?,
        error: get(row, at + 3)?,
    }))
}

/// The code in the columns from `at` on; `None` if they are null (no code
/// in an outer join).
fn one_time_code_at(r: &Row, at: usize) -> StorageResult<Option<OneTimeCode>> {
    let Some(challenge_id): Option<String> = get(r, at)? else { return Ok(None) };
    Ok(Some(OneTimeCode {
        challenge_id,
        salt: get(r, at + 1)?,
        code_hash: get(r, at + 2)?,
        created_at: get(r, at + 3)?,
        expires_at: get(r, at + 4)?,
        resends: get_u32(r, at + 5)?,
        last_sent_at: get(r, at + 6)?,
        used_at: get(r, at + 7)?,
    }))
}

fn code_check_from(row: &Row) -> StorageResult<CodeCheck> {
    let at = CODE_CHECK_LAYOUT;
    Ok(CodeCheck {
        authentication: authentication_at(row, 0)?,
        challenge: challenge_at(row, at.challenge)?,
        card: card_at(row, at.card)?,
        code: one_time_code_at(row, at.code)?,
    })
}

fn audit_from(r: &Row) -> StorageResult<AuditRecord> {
    Ok(AuditRecord {
        id: get(r, 0)?,
        event: AuditEvent {
            at: get(r, 1)?,
            kind: get(r, 2)?,
            actor: get(r, 3)?,
            card_id: get(r, 4)?,
            acs_trans_id: get(r, 5)?,
            challenge_id: get(r, 6)?,
            device_id: get(r, 7)?,
            outcome: get(r, 8)?,
            detail: get(r, 9)?,
        },
    })
}

async fn insert_deliveries(
    c: &impl GenericClient,
    challenge_id: &str,
    round: u32,
    now: i64,
    deliveries: &[NewDelivery],
) -> StorageResult<()> {
    for d in deliveries {
        execute(
            c,
            "INSERT INTO deliveries (challenge_id, channel, destination_masked, send_round, state, next_attempt_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
            &[&challenge_id, &d.channel.as_str(), &d.destination_masked, &wide(round), &d.state.as_str(), &now],
        )
        .await?;
    }
    Ok(())
}

/// An authentication, its challenge (when `with_challenge`) and its audit
/// line in one statement; parameters in that order.
fn record_authentication_sql(with_challenge: bool) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        let authentication = format!(
            "INSERT INTO authentications ({AUTHENTICATION_COLUMNS}) VALUES ({})",
            placeholders(AUTHENTICATION_COLUMNS, 1)
        );
        let audit_after = |from| {
            format!(
                "INSERT INTO audit_events ({AUDIT_INSERT_COLUMNS}) VALUES ({})",
                placeholders(AUDIT_INSERT_COLUMNS, from)
            )
        };
        let after_authentication = 1 + column_count(AUTHENTICATION_COLUMNS);
        let challenge = format!(
            "INSERT INTO challenges ({CHALLENGE_COLUMNS}) VALUES ({})",
            placeholders(CHALLENGE_COLUMNS, after_authentication)
        );
        [
            format!("WITH a AS ({authentication}) {}", audit_after(after_authentication)),
            format!(
                "WITH a AS ({authentication}), ch AS ({challenge}) {}",
                audit_after(after_authentication + column_count(CHALLENGE_COLUMNS))
            ),
        ]
    });
    &SQL[usize::from(with_challenge)]
}

/// Ends a challenge with all it causes, in one statement (its own
/// transaction, one round trip): everything hangs on `ended`, the
/// conditional update, so if the challenge was not pending any more nothing
/// happens and no row comes back. Of concurrent enders the first takes the
/// row lock; the others wait, re-check `state = 'pending'` on the ended row
/// and find none. The notification goes out at commit, as `NOTIFY` does.
///
/// `(state = 'pending') IS TRUE`, not `state = 'pending'`: the plain form
/// lets the planner answer from a pending-only index, filtering on the id,
/// and when the statistics date from a time with few pending challenges it
/// does (that index looks nearly empty) — then every ending scanned all
/// pending challenges: with 10 000 of them, 200 µs became ~2 ms of
/// database CPU. This form is not the indexes' predicate, so the lookup is
/// by primary key whatever the statistics say.
fn end_challenge_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH ended AS (\
                UPDATE challenges SET state = $2, decided_at = $3, decided_by_device = $4, outcome_reason = $5 \
                WHERE id = $1 AND (state = 'pending') IS TRUE RETURNING acs_trans_id, card_id), \
             authentication AS (\
                UPDATE authentications SET trans_status = $6, trans_status_reason = $7, authentication_value = $8, \
                eci = $9, updated_at = $3 WHERE acs_trans_id = (SELECT acs_trans_id FROM ended)), \
             callback AS (\
                INSERT INTO callbacks (acs_trans_id, requestor_id, url, body, state, next_attempt_at, created_at) \
                SELECT $10, $11, $12, $13, 'pending', $3, $3 FROM ended WHERE $10::text IS NOT NULL), \
             code_used AS (\
                UPDATE one_time_codes SET used_at = $3 WHERE $14 AND challenge_id = $1 AND EXISTS (SELECT 1 FROM ended)), \
             failures_cleared AS (\
                UPDATE cards SET failed_code_attempts = 0 \
                WHERE $14 AND id = (SELECT card_id FROM ended) AND failed_code_attempts <> 0), \
             audit AS (INSERT INTO audit_events ({AUDIT_INSERT_COLUMNS}) SELECT {} FROM ended) \
             SELECT pg_notify($15, $1) FROM ended",
            placeholders(AUDIT_INSERT_COLUMNS, 16)
        )
    });
    &SQL
}

/// What completing an enrolment writes after the device: the code's
/// device, the card's link to it (kept if there already), the audit line.
fn enrolment_links_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH code AS (UPDATE enrolment_codes SET device_id = $2 WHERE lookup = $1), \
             link AS (INSERT INTO device_cards (device_id, card_id, enrolled_at) VALUES ($2, $3, $4) \
               ON CONFLICT DO NOTHING) \
             INSERT INTO audit_events ({AUDIT_INSERT_COLUMNS}) VALUES ({})",
            placeholders(AUDIT_INSERT_COLUMNS, 5)
        )
    });
    &SQL
}

/// An audit line's values in the order of [`AUDIT_INSERT_COLUMNS`], for
/// every statement that writes one.
fn audit_params(e: &AuditEvent) -> [&(dyn ToSql + Sync); 9] {
    [&e.at, &e.kind, &e.actor, &e.card_id, &e.acs_trans_id, &e.challenge_id, &e.device_id, &e.outcome, &e.detail]
}

async fn insert_audit(c: &impl GenericClient, e: &AuditEvent) -> StorageResult<()> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("INSERT INTO audit_events ({AUDIT_INSERT_COLUMNS}) VALUES ({})", placeholders(AUDIT_INSERT_COLUMNS, 1))
    });
    execute(c, &SQL, &audit_params(e)).await?;
    Ok(())
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn ping(&self) -> StorageResult<()> {
        self.execute("SELECT 1", &[]).await.map(|_| ())
    }

    fn challenge_events(&self) -> &ChallengeEvents {
        &self.events
    }

    async fn create_requestor(&self, r: &Requestor, api_key_hash: &[u8]) -> StorageResult<()> {
        let (sealed, legacy) = r.callback_secret.columns();
        self.insert(
            "INSERT INTO requestors (id, name, api_key_hash, callback_secret_sealed, callback_secret, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&r.id, &r.name, &api_key_hash, &sealed, &legacy, &r.created_at],
            "requestor",
        )
        .await
    }

    async fn requestor_by_key(&self, api_key_hash: &[u8], now: i64) -> StorageResult<Option<Requestor>> {
        self.read_one(
            &format!(
                "SELECT {REQUESTOR_COLUMNS} FROM requestors \
                 WHERE api_key_hash = $1 OR (previous_api_key_hash = $1 AND previous_key_expires_at > $2)"
            ),
            &[&api_key_hash, &now],
            requestor_from,
        )
        .await
    }

    async fn requestor(&self, id: &str) -> StorageResult<Option<Requestor>> {
        self.read_one(&format!("SELECT {REQUESTOR_COLUMNS} FROM requestors WHERE id = $1"), &[&id], requestor_from)
            .await
    }

    async fn requestors(&self) -> StorageResult<Vec<Requestor>> {
        self.read_all(&format!("SELECT {REQUESTOR_COLUMNS} FROM requestors ORDER BY id"), &[], requestor_from).await
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
                "UPDATE requestors SET previous_api_key_hash = api_key_hash, previous_key_expires_at = $3, \
                 api_key_hash = $2 WHERE id = $1"
            }
            Credential::CallbackSecret => {
                "UPDATE requestors SET previous_callback_secret_sealed = callback_secret_sealed, \
                 previous_callback_secret_until = $3, callback_secret_sealed = $2, callback_secret = '' \
                 WHERE id = $1"
            }
        };
        self.update_audited(sql, &[&id, &new_value, &previous_until], audit).await
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
                 WHERE id = $1 AND previous_api_key_hash IS NOT NULL"
            }
            Credential::CallbackSecret => {
                "UPDATE requestors SET previous_callback_secret_sealed = NULL, previous_callback_secret_until = NULL \
                 WHERE id = $1 AND previous_callback_secret_sealed IS NOT NULL"
            }
        };
        self.update_audited(sql, &[&id], audit).await
    }

    async fn seal_legacy_callback_secret(&self, id: &str, legacy: &str, sealed: &[u8]) -> StorageResult<bool> {
        let changed = self
            .execute(
                "UPDATE requestors SET callback_secret_sealed = $3, callback_secret = '' \
                 WHERE id = $1 AND callback_secret = $2 AND callback_secret_sealed IS NULL",
                &[&id, &legacy, &sealed],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn rekey(&self, value: Rekeyed<'_>, old: &[u8], new: &[u8]) -> StorageResult<bool> {
        let sql = value.update_sql().replace('?', "$");
        let changed = match value.card_id() {
            Some(card_id) => self.execute(&sql, &[&old, &new, &card_id]).await?,
            None => self.execute(&sql, &[&old, &new]).await?,
        };
        Ok(changed > 0)
    }

    async fn create_operator(&self, o: &Operator, api_key_hash: &[u8]) -> StorageResult<()> {
        self.insert(
            "INSERT INTO operators (id, name, role, api_key_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&o.id, &o.name, &o.role.as_str(), &api_key_hash, &o.created_at, &o.revoked_at],
            "operator",
        )
        .await
    }

    async fn operator_by_key(&self, api_key_hash: &[u8]) -> StorageResult<Option<Operator>> {
        self.read_one(
            &format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE api_key_hash = $1 AND revoked_at IS NULL"),
            &[&api_key_hash],
            operator_from,
        )
        .await
    }

    async fn operators(&self) -> StorageResult<Vec<Operator>> {
        self.read_all(&format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY created_at, id"), &[], operator_from)
            .await
    }

    async fn revoke_operator(&self, id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool> {
        let sql = "UPDATE operators SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        self.update_audited(sql, &[&id, &now], audit).await
    }

    async fn create_card(&self, new: &NewCard) -> StorageResult<()> {
        let c = &new.card;
        self.insert(
            "INSERT INTO cards (id, pan_hash, pan_last4, language, email, phone, blocked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&c.id, &new.pan_hash, &c.pan_last4, &c.language, &c.email, &c.phone, &c.blocked_at, &c.created_at],
            "card",
        )
        .await
    }

    async fn card(&self, id: &str) -> StorageResult<Option<Card>> {
        self.read_one(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = $1"), &[&id], card_from).await
    }

    async fn card_by_pan_hash(&self, pan_hash: &[u8]) -> StorageResult<Option<Card>> {
        self.read_one(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE pan_hash = $1"), &[&pan_hash], card_from).await
    }

    async fn card_activity(&self, card_id: &str, history: &HistoryQuery) -> StorageResult<CardActivity> {
        let sql = format!("SELECT {ACTIVITY} FROM cards c WHERE c.id = $1");
        let args = ActivityArgs::new(history);
        let row = self.read_one(&sql, &args.with(&card_id), |r| activity_from(r, 0)).await?;
        Ok(row.unwrap_or_default())
    }

    async fn card_for_purchase(&self, pan_hash: &[u8], history: &HistoryQuery) -> StorageResult<Option<PurchaseCard>> {
        let card_sql =
            format!("SELECT {}, {ACTIVITY} FROM cards c WHERE c.pan_hash = $1", qualified(CARD_COLUMNS, "c"));
        let devices_sql = format!(
            "SELECT {} FROM devices d JOIN device_cards dc ON dc.device_id = d.id JOIN cards c ON c.id = dc.card_id \
             WHERE c.pan_hash = $1 AND d.revoked_at IS NULL ORDER BY dc.enrolled_at, dc.device_id",
            qualified(DEVICE_COLUMNS, "d")
        );
        let args = ActivityArgs::new(history);
        let c = self.conn().await?;
        // Both statements go out together on the one connection (pipelined):
        // one round trip to the database.
        let (card_params, devices_params) = (args.with(&pan_hash), [&pan_hash as &(dyn ToSql + Sync)]);
        let (card, devices) =
            tokio::try_join!(query_opt(&c, &card_sql, &card_params), query(&c, &devices_sql, &devices_params))?;
        let Some(row) = card else { return Ok(None) };
        Ok(Some(PurchaseCard {
            card: card_from(&row)?,
            activity: activity_from(&row, 8)?,
            devices: devices.iter().map(device_from).collect::<StorageResult<_>>()?,
        }))
    }

    async fn import_cards(&self, cards: &[NewCard], audit: &AuditEvent) -> StorageResult<Vec<CardImported>> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        // Rows are written in card-number order, so two imports touching the
        // same cards lock them in the same order and cannot deadlock.
        let mut order: Vec<usize> = (0..cards.len()).collect();
        order.sort_by(|&a, &b| cards[a].pan_hash.cmp(&cards[b].pan_hash));
        let mut out = vec![None; cards.len()];
        for at in order {
            let new = &cards[at];
            let card = &new.card;
            // A concurrent import of the same number waits here for the
            // other's commit, then finds the card instead of failing.
            let inserted = execute(
                &tx,
                "INSERT INTO cards (id, pan_hash, pan_last4, language, email, phone, blocked_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (pan_hash) DO NOTHING",
                &[
                    &card.id,
                    &new.pan_hash,
                    &card.pan_last4,
                    &card.language,
                    &card.email,
                    &card.phone,
                    &card.blocked_at,
                    &card.created_at,
                ],
            )
            .await?;
            let (imported, changed) = if inserted == 1 {
                (CardImported::Created(card.id.clone()), Vec::new())
            } else {
                let row = query_opt(
                    &tx,
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE pan_hash = $1 FOR UPDATE"),
                    &[&new.pan_hash],
                )
                .await?
                .ok_or_else(|| corrupt("an imported card vanished"))?;
                let (merged, changed) = card_from(&row)?.with_imported(card);
                if changed.is_empty() {
                    (CardImported::Unchanged(merged.id), changed)
                } else {
                    execute(
                        &tx,
                        "UPDATE cards SET language = $2, email = $3, phone = $4 WHERE id = $1",
                        &[&merged.id, &merged.language, &merged.email, &merged.phone],
                    )
                    .await?;
                    (CardImported::Updated(merged.id), changed)
                }
            };
            if let Some(line) = audit.card_imported(&imported, &changed) {
                insert_audit(&tx, &line).await?;
            }
            out[at] = Some(imported);
        }
        commit(tx).await?;
        Ok(out.into_iter().flatten().collect())
    }

    async fn set_card_language(
        &self,
        card_id: &str,
        language: Option<&str>,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        self.update_audited("UPDATE cards SET language = $2 WHERE id = $1", &[&card_id, &language], audit).await
    }

    async fn create_enrolment_code(&self, code: &EnrolmentCode) -> StorageResult<()> {
        self.insert(
            "INSERT INTO enrolment_codes (lookup, secret_hash, card_id, created_at, expires_at, attempts_left) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &code.lookup,
                &code.secret_hash,
                &code.card_id,
                &code.created_at,
                &code.expires_at,
                &wide(code.attempts_left),
            ],
            "enrolment code",
        )
        .await
    }

    async fn enrolment_code(&self, lookup: &str) -> StorageResult<Option<EnrolmentCode>> {
        self.read_one(
            "SELECT lookup, secret_hash, card_id, created_at, expires_at, attempts_left, used_at \
             FROM enrolment_codes WHERE lookup = $1",
            &[&lookup],
            |r| {
                Ok(EnrolmentCode {
                    lookup: get(r, 0)?,
                    secret_hash: get(r, 1)?,
                    card_id: get(r, 2)?,
                    created_at: get(r, 3)?,
                    expires_at: get(r, 4)?,
                    attempts_left: get_u32(r, 5)?,
                    used_at: get(r, 6)?,
                })
            },
        )
        .await
    }

    async fn spend_enrolment_attempt(&self, lookup: &str) -> StorageResult<Option<u32>> {
        self.read_one(
            "UPDATE enrolment_codes SET attempts_left = attempts_left - 1 \
             WHERE lookup = $1 AND attempts_left > 0 AND used_at IS NULL RETURNING attempts_left",
            &[&lookup],
            |r| get_u32(r, 0),
        )
        .await
    }

    async fn complete_enrolment(
        &self,
        lookup: &str,
        device: &Device,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<Device> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let spent = query_opt(
            &tx,
            "UPDATE enrolment_codes SET used_at = $2 \
             WHERE lookup = $1 AND used_at IS NULL AND attempts_left > 0 AND expires_at > $2 RETURNING card_id",
            &[&lookup, &now],
        )
        .await?;
        let card_id: String = match spent {
            Some(row) => get(&row, 0)?,
            None => return Err(StorageError::Conflict("enrolment code")),
        };
        // Insert unless the key is known; two enrolments of one new key at
        // once both end up with the one device.
        let d = device;
        let inserted = execute(
            &tx,
            "INSERT INTO devices (id, public_key, platform, display_name, push_token, notifications_enabled, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (public_key) DO NOTHING",
            &[&d.id, &d.public_key, &d.platform, &d.display_name, &d.push_token, &d.notifications_enabled, &now],
        )
        .await?;
        let stored = if inserted == 1 {
            device.clone()
        } else {
            let existing = query_opt(
                &tx,
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = $1 FOR UPDATE"),
                &[&d.public_key],
            )
            .await?
            .ok_or_else(|| corrupt("device vanished during enrolment"))?;
            let existing = device_from(&existing)?;
            if existing.revoked_at.is_some() {
                return Err(StorageError::Conflict("revoked device key"));
            }
            execute(
                &tx,
                "UPDATE devices SET push_token = $2, notifications_enabled = $3, display_name = $4, updated_at = $5, \
                 push_unreachable = FALSE WHERE id = $1",
                &[&existing.id, &d.push_token, &d.notifications_enabled, &d.display_name, &now],
            )
            .await?;
            Device {
                push_token: d.push_token.clone(),
                notifications_enabled: d.notifications_enabled,
                display_name: d.display_name.clone(),
                push_unreachable: false,
                ..existing
            }
        };
        let a = AuditEvent { device_id: Some(stored.id.clone()), card_id: Some(card_id.clone()), ..audit.clone() };
        // The code's device, the card's link and the audit line in one
        // statement: one round trip.
        execute(
            &tx,
            enrolment_links_sql(),
            &[&lookup as &(dyn ToSql + Sync), &stored.id, &card_id, &now]
                .into_iter()
                .chain(audit_params(&a))
                .collect::<Vec<_>>(),
        )
        .await?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn device(&self, id: &str) -> StorageResult<Option<Device>> {
        self.read_one(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"), &[&id], device_from).await
    }

    async fn device_cards(&self, device_id: &str) -> StorageResult<Vec<Card>> {
        let sql = format!(
            "SELECT {} FROM cards c JOIN device_cards dc ON dc.card_id = c.id WHERE dc.device_id = $1 \
             ORDER BY dc.enrolled_at, dc.card_id",
            qualified(CARD_COLUMNS, "c")
        );
        self.read_all(&sql, &[&device_id], card_from).await
    }

    async fn card_devices(&self, card_id: &str) -> StorageResult<Vec<Device>> {
        let sql = format!(
            "SELECT {} FROM devices d JOIN device_cards dc ON dc.device_id = d.id \
             WHERE dc.card_id = $1 AND d.revoked_at IS NULL ORDER BY dc.enrolled_at, dc.device_id",
            qualified(DEVICE_COLUMNS, "d")
        );
        self.read_all(&sql, &[&card_id], device_from).await
    }

    async fn set_push_settings(
        &self,
        device_id: &str,
        token: Option<&str>,
        enabled: bool,
        now: i64,
    ) -> StorageResult<()> {
        self.execute(
            "UPDATE devices SET push_token = $2, notifications_enabled = $3, push_unreachable = FALSE, updated_at = $4 \
             WHERE id = $1",
            &[&device_id, &token, &enabled, &now],
        )
        .await
        .map(|_| ())
    }

    async fn unenrol_card(&self, device_id: &str, card_id: &str, audit: &AuditEvent) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let removed =
            execute(&tx, "DELETE FROM device_cards WHERE device_id = $1 AND card_id = $2", &[&device_id, &card_id])
                .await?;
        if removed == 1 {
            insert_audit(&tx, audit).await?;
        }
        commit(tx).await?;
        Ok(removed == 1)
    }

    async fn revoke_device(&self, device_id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let revoked = execute(
            &tx,
            "UPDATE devices SET revoked_at = $2, push_token = NULL, updated_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&device_id, &now],
        )
        .await?;
        if revoked == 0 {
            return Ok(false);
        }
        let cards = query(&tx, "DELETE FROM device_cards WHERE device_id = $1 RETURNING card_id", &[&device_id])
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<StorageResult<Vec<String>>>()?;
        for line in audit.per_card(&cards) {
            insert_audit(&tx, &line).await?;
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn remember_nonce(&self, device_id: &str, nonce: &[u8], now: i64, window_start: i64) -> StorageResult<bool> {
        // A new nonce is inserted, one last seen before the window is taken
        // afresh, one seen inside it is a replay (no row). Concurrent uses
        // of one nonce wait on its key and only one wins.
        let remembered = self
            .execute(
                "INSERT INTO device_nonces (device_id, nonce, seen_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (device_id, nonce) DO UPDATE SET seen_at = EXCLUDED.seen_at \
                 WHERE device_nonces.seen_at < $4",
                &[&device_id, &nonce, &now, &window_start],
            )
            .await?;
        Ok(remembered == 1)
    }

    async fn forget_nonces(&self, before: i64, limit: u32) -> StorageResult<u64> {
        // Done by whichever node's sweeper gets there first: rows another
        // node is deleting are skipped, never waited for.
        self.execute(
            "DELETE FROM device_nonces WHERE (device_id, nonce) IN ( \
               SELECT device_id, nonce FROM device_nonces WHERE seen_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before, &wide(limit)],
        )
        .await
    }

    async fn record_authentication(&self, new: &NewAuthentication) -> StorageResult<()> {
        let a = &new.authentication;
        let e = &new.audit;
        let amount_minor = a.amount_minor as i64;
        let (currency, exponent) = (i32::from(a.currency), i16::from(a.exponent));
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &a.acs_trans_id,
            &a.ds_trans_id,
            &a.requestor_id,
            &a.card_id,
            &a.message_version,
            &a.message_category,
            &amount_minor,
            &currency,
            &exponent,
            &a.merchant_name,
            &a.merchant_id,
            &a.notification_url,
            &a.trans_status,
            &a.trans_status_reason,
            &a.reasons,
            &a.low_value_exempt,
            &a.authentication_value,
            &a.eci,
            &a.challenge_id,
            &a.created_at,
            &a.updated_at,
            &a.browser_language,
            &a.browser_tz,
        ];
        let challenge_fields;
        if let Some(ch) = &new.challenge {
            challenge_fields = (
                ch.state.as_str(),
                ch.number_match.map(i16::from),
                ch.number_choices.as_ref().map(|c| c.iter().map(|&n| i16::from(n)).collect::<Vec<i16>>()),
            );
            params.extend_from_slice(&[
                &ch.id,
                &ch.acs_trans_id,
                &ch.card_id,
                &ch.nonce,
                &challenge_fields.0,
                &challenge_fields.1,
                &challenge_fields.2,
                &ch.created_at,
                &ch.expires_at,
                &ch.decided_at,
                &ch.decided_by_device,
                &ch.outcome_reason,
                &ch.push_deadline,
                &ch.fallback_reason,
            ]);
        }
        params.extend_from_slice(&audit_params(e));
        // One statement, so one round trip and its own transaction (no
        // BEGIN and COMMIT): PostgreSQL runs the three inserts together and
        // checks the challenge's reference to the authentication at the end.
        let c = self.conn().await?;
        insert(&c, record_authentication_sql(new.challenge.is_some()), &params, "threeDSServerTransID").await
    }

    async fn authentication(&self, acs_trans_id: &str) -> StorageResult<Option<Authentication>> {
        self.read_one(
            &format!("SELECT {AUTHENTICATION_COLUMNS} FROM authentications WHERE acs_trans_id = $1"),
            &[&acs_trans_id],
            authentication_from,
        )
        .await
    }

    async fn challenge(&self, id: &str) -> StorageResult<Option<Challenge>> {
        self.read_one(&format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1"), &[&id], challenge_from)
            .await
    }

    async fn purchase_status(&self, acs_trans_id: &str) -> StorageResult<Option<PurchaseStatus>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| purchase_status_sql("$1"));
        let c = self.conn().await?;
        let rows = query(&c, &SQL, &[&acs_trans_id]).await?;
        // One row per attempt of the latest callback (one without any).
        let Some(first) = rows.first() else { return Ok(None) };
        let at = PURCHASE_STATUS_LAYOUT;
        let callback_state: Option<String> = get(first, at.callback)?;
        let attempts = rows.iter().map(|r| callback_attempt_at(r, at.callback + 1)).filter_map(Result::transpose);
        Ok(Some(PurchaseStatus {
            authentication: authentication_at(first, 0)?,
            challenge: optional_challenge_at(first, at.challenge)?,
            result_delivery: match callback_state {
                Some(state) => Some(CallbackStatus { state, attempts: attempts.collect::<StorageResult<_>>()? }),
                None => None,
            },
        }))
    }

    async fn challenge_for_device(&self, id: &str, device_id: &str) -> StorageResult<Option<DeviceChallenge>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            device_challenge_sql(
                "EXISTS (SELECT 1 FROM device_cards dc WHERE dc.device_id = $2 AND dc.card_id = ch.card_id)",
                "WHERE ch.id = $1",
            )
        });
        self.read_one(&SQL, &[&id, &device_id], device_challenge_from).await
    }

    async fn pending_challenges_for_device(&self, device_id: &str, now: i64) -> StorageResult<Vec<DeviceChallenge>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            device_challenge_sql(
                "TRUE",
                "JOIN device_cards dc ON dc.card_id = ch.card_id \
             WHERE dc.device_id = $1 AND ch.state = 'pending' AND ch.expires_at > $2 ORDER BY ch.created_at, ch.id",
            )
        });
        self.read_all(&SQL, &[&device_id, &now], device_challenge_from).await
    }

    async fn end_challenge(&self, end: &ChallengeEnd) -> StorageResult<bool> {
        let e = &end.audit;
        let cb = end.callback.as_ref();
        let (cb_acs, cb_requestor, cb_url, cb_body) =
            (cb.map(|c| &c.acs_trans_id), cb.map(|c| &c.requestor_id), cb.map(|c| &c.url), cb.map(|c| &c.body));
        let c = self.conn().await?;
        let ended = query_opt(
            &c,
            end_challenge_sql(),
            &[
                &end.challenge_id as &(dyn ToSql + Sync),
                &end.state.as_str(),
                &end.at,
                &end.decided_by_device,
                &end.outcome_reason,
                &end.trans_status,
                &end.trans_status_reason,
                &end.authentication_value,
                &end.eci,
                &cb_acs,
                &cb_requestor,
                &cb_url,
                &cb_body,
                &end.code_verified,
                &listener::CHANNEL,
            ]
            .into_iter()
            .chain(audit_params(e))
            .collect::<Vec<_>>(),
        )
        .await?;
        Ok(ended.is_some())
    }

    async fn expired_challenges(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read_all(
            &format!(
                "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE state = 'pending' AND expires_at <= $1 \
                 ORDER BY expires_at, id LIMIT $2"
            ),
            &[&now, &wide(limit)],
            challenge_from,
        )
        .await
    }

    async fn enqueue_push(
        &self,
        device_id: &str,
        challenge_id: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> StorageResult<()> {
        self.execute(
            "INSERT INTO push_outbox (device_id, challenge_id, payload, created_at) VALUES ($1, $2, $3, $4)",
            &[&device_id, &challenge_id, payload, &now],
        )
        .await
        .map(|_| ())
    }

    async fn outbox_pushes(&self, device_id: Option<&str>, limit: u32) -> StorageResult<Vec<OutboxPush>> {
        self.read_all(
            "SELECT id, device_id, challenge_id, payload, created_at FROM push_outbox \
             WHERE $1::TEXT IS NULL OR device_id = $1 ORDER BY id DESC LIMIT $2",
            &[&device_id, &wide(limit)],
            |r| {
                Ok(OutboxPush {
                    id: get(r, 0)?,
                    device_id: get(r, 1)?,
                    challenge_id: get(r, 2)?,
                    payload: get(r, 3)?,
                    created_at: get(r, 4)?,
                })
            },
        )
        .await
    }

    async fn claim_callbacks(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<CallbackJob>> {
        // Rows another node is claiming right now are skipped, not waited
        // for; a row claimed and committed meanwhile no longer qualifies
        // when its lock is taken (its next attempt is in the future).
        let mut jobs = self
            .read_all(
                "WITH due AS MATERIALIZED ( \
                   SELECT id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1 \
                   ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE callbacks c SET next_attempt_at = $2 FROM due WHERE c.id = due.id \
                 RETURNING c.id, c.acs_trans_id, c.requestor_id, c.url, c.body, c.attempts",
                &[&now, &lease_until, &wide(limit)],
                |r| {
                    Ok(CallbackJob {
                        id: get(r, 0)?,
                        acs_trans_id: get(r, 1)?,
                        requestor_id: get(r, 2)?,
                        url: get(r, 3)?,
                        body: get(r, 4)?,
                        attempts: get_u32(r, 5)?,
                    })
                },
            )
            .await?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn record_callback_attempt(
        &self,
        job: &CallbackJob,
        attempt: &CallbackAttempt,
        next: CallbackNext,
    ) -> StorageResult<()> {
        let (state, next_at) = match next {
            CallbackNext::Delivered => ("delivered", attempt.at),
            CallbackNext::RetryAt(at) => ("pending", at),
            CallbackNext::GiveUp => ("failed", attempt.at),
        };
        let c = self.conn().await?;
        // One statement (its own transaction, one round trip): the attempt
        // and the callback's new state.
        execute(
            &c,
            "WITH attempt AS (INSERT INTO callback_attempts (callback_id, attempt, at, http_status, error) \
               VALUES ($1, $3, $5, $6, $7)) \
             UPDATE callbacks SET state = $2, attempts = $3, next_attempt_at = $4 WHERE id = $1",
            &[
                &job.id,
                &state,
                &wide(attempt.attempt),
                &next_at,
                &attempt.at,
                &attempt.http_status.map(i32::from),
                &attempt.error,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn callback_status(&self, acs_trans_id: &str) -> StorageResult<Option<CallbackStatus>> {
        // The latest callback and its attempts, in one statement.
        let rows = self
            .read_all(
                "SELECT cb.state, a.attempt, a.at, a.http_status, a.error \
                 FROM (SELECT id, state FROM callbacks WHERE acs_trans_id = $1 ORDER BY id DESC LIMIT 1) cb \
                 LEFT JOIN callback_attempts a ON a.callback_id = cb.id ORDER BY a.attempt",
                &[&acs_trans_id],
                |r| Ok((get::<String>(r, 0)?, callback_attempt_at(r, 1)?)),
            )
            .await?;
        let Some((state, _)) = rows.first() else { return Ok(None) };
        let state = state.clone();
        Ok(Some(CallbackStatus { state, attempts: rows.into_iter().filter_map(|(_, a)| a).collect() }))
    }

    async fn set_card_contacts(
        &self,
        card_id: &str,
        email: Option<&str>,
        phone: Option<&str>,
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let changed =
            execute(&tx, "UPDATE cards SET email = $2, phone = $3 WHERE id = $1", &[&card_id, &email, &phone]).await?;
        if changed == 1 {
            insert_audit(&tx, audit).await?;
        }
        commit(tx).await?;
        Ok(changed == 1)
    }

    async fn unblock_card(&self, card_id: &str, audit: &AuditEvent) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let changed =
            execute(&tx, "UPDATE cards SET blocked_at = NULL, failed_code_attempts = 0 WHERE id = $1", &[&card_id])
                .await?;
        if changed == 1 {
            insert_audit(&tx, audit).await?;
        }
        commit(tx).await?;
        Ok(changed == 1)
    }

    async fn mark_push_unreachable(&self, device_id: &str, now: i64) -> StorageResult<()> {
        self.execute("UPDATE devices SET push_unreachable = TRUE, updated_at = $2 WHERE id = $1", &[&device_id, &now])
            .await
            .map(|_| ())
    }

    async fn start_code(&self, new: &NewCode) -> StorageResult<bool> {
        let code = &new.code;
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        // The challenge row's lock orders concurrent starts (and endings):
        // whoever comes second sees the first one's code, or the ending.
        // (By primary key whatever the statistics: see `end_challenge_sql`.)
        let pending = query_opt(
            &tx,
            "SELECT 1 FROM challenges WHERE id = $1 AND (state = 'pending') IS TRUE FOR UPDATE",
            &[&code.challenge_id],
        )
        .await?
        .is_some();
        if !pending {
            return Ok(false);
        }
        let has_code = query_opt(&tx, "SELECT 1 FROM one_time_codes WHERE challenge_id = $1", &[&code.challenge_id])
            .await?
            .is_some();
        if has_code {
            return Ok(false);
        }
        execute(
            &tx,
            "UPDATE challenges SET expires_at = GREATEST(expires_at, $2), fallback_reason = $3, push_deadline = NULL \
             WHERE id = $1",
            &[&code.challenge_id, &new.challenge_expires_at, &new.fallback_reason],
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO one_time_codes (challenge_id, salt, code_hash, created_at, expires_at, resends, last_sent_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $4)",
            &[&code.challenge_id, &code.salt, &code.code_hash, &code.created_at, &code.expires_at],
        )
        .await?;
        insert_deliveries(&tx, &code.challenge_id, 0, code.created_at, &new.deliveries).await?;
        insert_audit(&tx, &new.audit).await?;
        announce(&tx, &code.challenge_id).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn one_time_code(&self, challenge_id: &str) -> StorageResult<Option<OneTimeCode>> {
        let sql = format!("SELECT {ONE_TIME_CODE_COLUMNS} FROM one_time_codes WHERE challenge_id = $1");
        Ok(self.read_one(&sql, &[&challenge_id], |r| one_time_code_at(r, 0)).await?.flatten())
    }

    async fn code_check(&self, acs_trans_id: &str) -> StorageResult<Option<CodeCheck>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| code_check_sql("$1"));
        self.read_one(&SQL, &[&acs_trans_id], code_check_from).await
    }

    async fn record_resend(
        &self,
        challenge_id: &str,
        expected_resends: u32,
        now: i64,
        deliveries: &[NewDelivery],
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let changed = execute(
            &tx,
            "UPDATE one_time_codes SET resends = resends + 1, last_sent_at = $3 \
             WHERE challenge_id = $1 AND resends = $2 AND used_at IS NULL",
            &[&challenge_id, &wide(expected_resends), &now],
        )
        .await?;
        if changed == 0 {
            return Ok(false);
        }
        insert_deliveries(&tx, challenge_id, expected_resends + 1, now, deliveries).await?;
        insert_audit(&tx, audit).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn record_code_failure(
        &self,
        card_id: &str,
        limit: u32,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<CodeFailure> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        let counted = query_opt(
            &tx,
            "UPDATE cards SET failed_code_attempts = failed_code_attempts + 1 WHERE id = $1 \
             RETURNING failed_code_attempts",
            &[&card_id],
        )
        .await?
        .ok_or_else(|| StorageError::Unavailable(format!("no card {card_id} to count a wrong code against")))?;
        let failures = get_u32(&counted, 0)?;
        // Only the failure that reaches the limit first blocks the card.
        let blocked_now = failures >= limit
            && execute(&tx, "UPDATE cards SET blocked_at = $2 WHERE id = $1 AND blocked_at IS NULL", &[&card_id, &now])
                .await?
                == 1;
        let mut audit = audit.clone();
        audit.detail = serde_json::json!({ "consecutiveFailures": failures, "blocked": failures >= limit });
        insert_audit(&tx, &audit).await?;
        commit(tx).await?;
        Ok(CodeFailure { failures, blocked_now })
    }

    async fn deliveries(&self, challenge_id: &str) -> StorageResult<Vec<Delivery>> {
        self.read_all(
            &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE challenge_id = $1 ORDER BY id"),
            &[&challenge_id],
            delivery_from,
        )
        .await
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<Delivery>> {
        let mut claimed = self
            .read_all(
                &format!(
                    "WITH due AS MATERIALIZED ( \
                       SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
                       ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE deliveries d SET next_attempt_at = $2 FROM due WHERE d.id = due.id \
                     RETURNING {}",
                    qualified(DELIVERY_COLUMNS, "d")
                ),
                &[&now, &lease_until, &wide(limit)],
                delivery_from,
            )
            .await?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn record_delivery_attempt(
        &self,
        d: &Delivery,
        at: i64,
        provider: &str,
        error: Option<&str>,
        next: DeliveryNext,
    ) -> StorageResult<()> {
        let attempt = d.attempts + 1;
        let (state, next_at) = match next {
            DeliveryNext::Sent => (DeliveryState::Sent, at),
            DeliveryNext::RetryAt(t) => (DeliveryState::Pending, t),
            DeliveryNext::Failed => (DeliveryState::Failed, at),
            DeliveryNext::Skipped => (DeliveryState::Skipped, at),
        };
        // A skipped send was never tried: no attempt is counted.
        let attempts = if next == DeliveryNext::Skipped { attempt - 1 } else { attempt };
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        if next != DeliveryNext::Skipped {
            execute(
                &tx,
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, provider, error) VALUES ($1, $2, $3, $4, $5)",
                &[&d.id, &wide(attempt), &at, &provider, &error],
            )
            .await?;
        }
        execute(
            &tx,
            "UPDATE deliveries SET state = $2, attempts = $3, next_attempt_at = $4, last_error = $5, updated_at = $6 \
             WHERE id = $1",
            &[&d.id, &state.as_str(), &wide(attempts), &next_at, &error, &at],
        )
        .await?;
        commit(tx).await
    }

    async fn challenges_past_push_deadline(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        self.read_all(
            &format!(
                "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE state = 'pending' AND push_deadline <= $1 \
                 ORDER BY push_deadline, id LIMIT $2"
            ),
            &[&now, &wide(limit)],
            challenge_from,
        )
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
        self.execute(
            "INSERT INTO message_outbox (channel, recipient, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&channel.as_str(), &recipient, &subject, &body, &now],
        )
        .await
        .map(|_| ())
    }

    async fn outbox_messages(&self, limit: u32) -> StorageResult<Vec<OutboxMessage>> {
        self.read_all(
            "SELECT id, channel, recipient, subject, body, created_at FROM message_outbox ORDER BY id DESC LIMIT $1",
            &[&wide(limit)],
            |r| {
                let channel: String = get(r, 1)?;
                Ok(OutboxMessage {
                    id: get(r, 0)?,
                    channel: ContactChannel::parse(&channel).ok_or_else(|| corrupt("message channel"))?,
                    recipient: get(r, 2)?,
                    subject: get(r, 3)?,
                    body: get(r, 4)?,
                    created_at: get(r, 5)?,
                })
            },
        )
        .await
    }

    async fn open_window_session(&self, session: &WindowSession) -> StorageResult<bool> {
        let w = session;
        let opened = self
            .execute(
                "INSERT INTO window_sessions (acs_trans_id, token_hash, three_ds_session_data, window_size, language, \
                 created_at, last_active_at, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (acs_trans_id) DO NOTHING",
                &[
                    &w.acs_trans_id,
                    &w.token_hash,
                    &w.three_ds_session_data,
                    &w.window_size,
                    &w.language,
                    &w.created_at,
                    &w.last_active_at,
                    &w.verified_at,
                ],
            )
            .await?;
        Ok(opened == 1)
    }

    async fn window_session(&self, token_hash: &[u8]) -> StorageResult<Option<WindowSession>> {
        self.read_one(
            "SELECT acs_trans_id, token_hash, three_ds_session_data, window_size, language, created_at, last_active_at, \
             verified_at FROM window_sessions WHERE token_hash = $1",
            &[&token_hash],
            |r| {
                Ok(WindowSession {
                    acs_trans_id: get(r, 0)?,
                    token_hash: get(r, 1)?,
                    three_ds_session_data: get(r, 2)?,
                    window_size: get(r, 3)?,
                    language: get(r, 4)?,
                    created_at: get(r, 5)?,
                    last_active_at: get(r, 6)?,
                    verified_at: get(r, 7)?,
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
        self.execute(
            "UPDATE window_sessions SET last_active_at = GREATEST(last_active_at, $2), language = $3, \
             verified_at = CASE WHEN $4::BOOLEAN THEN COALESCE(verified_at, $2) ELSE verified_at END \
             WHERE acs_trans_id = $1",
            &[&acs_trans_id, &now, &language, &verified],
        )
        .await
        .map(|_| ())
    }

    async fn challenges_without_window(&self, created_before: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        let sql = format!(
            "SELECT {} FROM challenges ch WHERE ch.state = 'pending' AND ch.created_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM window_sessions w WHERE w.acs_trans_id = ch.acs_trans_id) \
             ORDER BY ch.created_at, ch.id LIMIT $2",
            qualified(CHALLENGE_COLUMNS, "ch")
        );
        self.read_all(&sql, &[&created_before, &wide(limit)], challenge_from).await
    }

    async fn challenges_idle_in_window(&self, active_before: i64, limit: u32) -> StorageResult<Vec<Challenge>> {
        let sql = format!(
            "SELECT {} FROM challenges ch JOIN window_sessions w ON w.acs_trans_id = ch.acs_trans_id \
             WHERE ch.state = 'pending' AND w.last_active_at <= $1 ORDER BY w.last_active_at, ch.id LIMIT $2",
            qualified(CHALLENGE_COLUMNS, "ch")
        );
        self.read_all(&sql, &[&active_before, &wide(limit)], challenge_from).await
    }

    async fn delete_ended_window_sessions(&self, ended_before: i64, limit: u32) -> StorageResult<u64> {
        self.execute(
            "DELETE FROM window_sessions WHERE acs_trans_id IN (SELECT w.acs_trans_id FROM window_sessions w \
             JOIN challenges ch ON ch.acs_trans_id = w.acs_trans_id WHERE ch.state <> 'pending' \
             AND COALESCE(ch.decided_at, ch.expires_at) <= $1 LIMIT $2)",
            &[&ended_before, &wide(limit)],
        )
        .await
    }

    async fn set_security_questions(
        &self,
        card_id: &str,
        questions: &[SecurityQuestion],
        audit: &AuditEvent,
    ) -> StorageResult<bool> {
        let mut c = self.conn().await?;
        let tx = begin(&mut c).await?;
        // The card's lock makes concurrent replacements take turns.
        let exists = query_opt(&tx, "SELECT 1 FROM cards WHERE id = $1 FOR UPDATE", &[&card_id]).await?.is_some();
        if !exists {
            return Ok(false);
        }
        execute(&tx, "DELETE FROM security_questions WHERE card_id = $1", &[&card_id]).await?;
        for q in questions {
            execute(
                &tx,
                "INSERT INTO security_questions (card_id, position, question, answer_hash) VALUES ($1, $2, $3, $4)",
                &[&card_id, &wide(q.position), &q.question, &q.answer_hash],
            )
            .await?;
        }
        insert_audit(&tx, audit).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn security_questions(&self, card_id: &str) -> StorageResult<Vec<SecurityQuestion>> {
        self.read_all(
            "SELECT position, question, answer_hash FROM security_questions WHERE card_id = $1 ORDER BY position",
            &[&card_id],
            |r| Ok(SecurityQuestion { position: get_u32(r, 0)?, question: get(r, 1)?, answer_hash: get(r, 2)? }),
        )
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> StorageResult<()> {
        let c = self.conn().await?;
        insert_audit(&c, event).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> StorageResult<Vec<AuditRecord>> {
        let (sql, values) = audit_search::query(AUDIT_COLUMNS, filter, |n| format!("${n}"));
        let values: Vec<Box<dyn ToSql + Sync + Send>> = values
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync + Send> {
                match v {
                    audit_search::Bound::Text(t) => Box::new(t),
                    audit_search::Bound::Int(i) => Box::new(i),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        self.read_all(&sql, &params, audit_from).await
    }
}
