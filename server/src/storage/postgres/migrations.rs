//! The PostgreSQL schema, as numbered migrations applied in order, once.
//!
//! Its own numbering, independent of SQLite's: version 1 is everything the
//! SQLite backend had reached by its version 2 when PostgreSQL arrived.
//! Several nodes may start at once, so the migrator holds an advisory lock
//! for the whole run and the loser finds the work done.

use tokio_postgres::Client;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, INITIAL),
    (2, CHALLENGE_WINDOW),
    (3, ADMINISTRATION),
    (4, RISK_HISTORY_INDEXES),
    (5, PENDING_BY_CARD),
    (6, ONE_CARD_HISTORY_INDEX),
    (7, AUDIT_BY_CARD_WITHOUT_PURCHASE),
];

/// Any fixed number works as long as nothing else in the database takes the
/// same advisory lock; this one spells "cntrsign".
const MIGRATION_LOCK: i64 = 0x636e_7472_7369_676e;

/// Times are milliseconds since the epoch (BIGINT), read from the server's
/// clock rather than the database's, as in the SQLite schema. Counters that
/// the records hold as `u32` are BIGINT so every value fits.
const INITIAL: &str = r#"
CREATE TABLE requestors (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    api_key_hash    BYTEA NOT NULL UNIQUE,
    callback_secret TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE operators (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('support', 'admin')),
    api_key_hash BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);

-- Card numbers are kept only as a keyed hash, plus the last four digits.
CREATE TABLE cards (
    id                   TEXT PRIMARY KEY,
    pan_hash             BYTEA NOT NULL UNIQUE,
    pan_last4            TEXT NOT NULL,
    language             TEXT,
    email                TEXT,
    phone                TEXT,
    blocked_at           BIGINT,
    failed_code_attempts BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL
);

CREATE TABLE enrolment_codes (
    lookup        TEXT PRIMARY KEY,
    secret_hash   BYTEA NOT NULL,
    card_id       TEXT NOT NULL REFERENCES cards(id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    attempts_left BIGINT NOT NULL,
    used_at       BIGINT,
    device_id     TEXT
);

CREATE TABLE devices (
    id                    TEXT PRIMARY KEY,
    public_key            BYTEA NOT NULL UNIQUE,
    platform              TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    push_token            TEXT,
    notifications_enabled BOOLEAN NOT NULL,
    push_unreachable      BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at            BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE device_cards (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    card_id     TEXT NOT NULL REFERENCES cards(id),
    enrolled_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, card_id)
);
CREATE INDEX device_cards_by_card ON device_cards (card_id);

CREATE TABLE device_nonces (
    device_id TEXT NOT NULL,
    nonce     BYTEA NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX device_nonces_by_age ON device_nonces (seen_at);

CREATE TABLE authentications (
    acs_trans_id         TEXT PRIMARY KEY,
    ds_trans_id          TEXT NOT NULL,
    requestor_id         TEXT NOT NULL REFERENCES requestors(id),
    card_id              TEXT REFERENCES cards(id),
    message_version      TEXT NOT NULL,
    message_category     TEXT NOT NULL,
    amount_minor         BIGINT NOT NULL,
    currency             INTEGER NOT NULL,
    exponent             SMALLINT NOT NULL,
    merchant_name        TEXT NOT NULL,
    merchant_id          TEXT NOT NULL,
    notification_url     TEXT NOT NULL,
    trans_status         TEXT NOT NULL,
    trans_status_reason  TEXT,
    reasons              TEXT[] NOT NULL,
    low_value_exempt     BOOLEAN NOT NULL,
    authentication_value TEXT,
    eci                  TEXT,
    challenge_id         TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    browser_language     TEXT,
    browser_tz           INTEGER,
    UNIQUE (requestor_id, ds_trans_id)
);
CREATE INDEX authentications_by_card ON authentications (card_id, created_at);

CREATE TABLE challenges (
    id                TEXT PRIMARY KEY,
    acs_trans_id      TEXT NOT NULL UNIQUE REFERENCES authentications(acs_trans_id),
    card_id           TEXT NOT NULL REFERENCES cards(id),
    nonce             BYTEA NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    number_match      SMALLINT,
    number_choices    SMALLINT[],
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    decided_at        BIGINT,
    decided_by_device TEXT,
    outcome_reason    TEXT,
    push_deadline     BIGINT,
    fallback_reason   TEXT
);
CREATE INDEX challenges_by_card ON challenges (card_id, state);
-- What the sweepers look for on every node, every second: pending only.
CREATE INDEX challenges_pending_expiry ON challenges (expires_at) WHERE state = 'pending';
CREATE INDEX challenges_pending_push_deadline ON challenges (push_deadline) WHERE state = 'pending';

CREATE TABLE push_outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    payload      JSONB NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX push_outbox_by_device ON push_outbox (device_id, id);

CREATE TABLE callbacks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    acs_trans_id    TEXT NOT NULL REFERENCES authentications(acs_trans_id),
    requestor_id    TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';
CREATE INDEX callbacks_by_transaction ON callbacks (acs_trans_id);

CREATE TABLE callback_attempts (
    callback_id BIGINT NOT NULL REFERENCES callbacks(id),
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    http_status INTEGER,
    error       TEXT,
    PRIMARY KEY (callback_id, attempt)
);

CREATE TABLE audit_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    card_id      TEXT,
    acs_trans_id TEXT,
    challenge_id TEXT,
    device_id    TEXT,
    outcome      TEXT NOT NULL,
    detail       JSONB NOT NULL
);
CREATE INDEX audit_by_card ON audit_events (card_id, id);
CREATE INDEX audit_by_transaction ON audit_events (acs_trans_id, id);

-- The code itself is never stored: with the server's key, `salt` derives it
-- again (so a resend repeats it), and `code_hash` checks an answer.
CREATE TABLE one_time_codes (
    challenge_id TEXT PRIMARY KEY REFERENCES challenges(id),
    salt         BYTEA NOT NULL,
    code_hash    BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    resends      BIGINT NOT NULL DEFAULT 0,
    last_sent_at BIGINT NOT NULL,
    used_at      BIGINT
);

CREATE TABLE deliveries (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    challenge_id       TEXT NOT NULL REFERENCES challenges(id),
    channel            TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    destination_masked TEXT NOT NULL,
    send_round         BIGINT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'restricted', 'skipped')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT NOT NULL,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_challenge ON deliveries (challenge_id);

CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries(id),
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    provider    TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Development delivery only (`transport = "outbox"`): the messages as sent.
CREATE TABLE message_outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient  TEXT NOT NULL,
    subject    TEXT,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#;

/// The browser challenge window: one session per challenge (opened by the
/// first CReq), and the security questions a cardholder without a contact
/// answers before registering one. (SQLite's version 3.)
const CHALLENGE_WINDOW: &str = r#"
-- The window's capability is a random token; only its keyed hash is kept.
CREATE TABLE window_sessions (
    acs_trans_id          TEXT PRIMARY KEY REFERENCES authentications(acs_trans_id),
    token_hash            BYTEA NOT NULL UNIQUE,
    three_ds_session_data TEXT,
    window_size           TEXT NOT NULL,
    language              TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    last_active_at        BIGINT NOT NULL,
    verified_at           BIGINT
);
CREATE INDEX window_sessions_by_activity ON window_sessions (last_active_at);
CREATE INDEX challenges_pending_created ON challenges (created_at) WHERE state = 'pending';

-- Answers are kept only as keyed hashes of their normalised form.
CREATE TABLE security_questions (
    card_id     TEXT NOT NULL REFERENCES cards(id),
    position    BIGINT NOT NULL,
    question    TEXT NOT NULL,
    answer_hash BYTEA NOT NULL,
    PRIMARY KEY (card_id, position)
);
"#;

/// Operating the server: operators can be revoked; requestor credentials
/// rotate with an overlap; callback secrets are sealed rather than kept in
/// the clear; audit lines are searched by time. (SQLite's version 4.)
const ADMINISTRATION: &str = r#"
ALTER TABLE operators ADD COLUMN revoked_at BIGINT;

ALTER TABLE requestors ADD COLUMN previous_api_key_hash BYTEA UNIQUE;
ALTER TABLE requestors ADD COLUMN previous_key_expires_at BIGINT;
ALTER TABLE requestors ADD COLUMN callback_secret_sealed BYTEA;
ALTER TABLE requestors ADD COLUMN previous_callback_secret_sealed BYTEA;
ALTER TABLE requestors ADD COLUMN previous_callback_secret_until BIGINT;
-- `callback_secret` (the secret in the clear) becomes '' once the server,
-- which holds the sealing key, has sealed it at start. It stays, so that
-- nodes of the previous version keep answering during a rolling upgrade.

CREATE INDEX audit_by_time ON audit_events (at);
"#;

/// What the risk engine's low-value tally reads on every AReq: a card's
/// exempt purchases in one currency (with their amounts), and the time of
/// the card's last approved challenge. Without them the tally walks the
/// card's whole history. (SQLite's version 5.)
const RISK_HISTORY_INDEXES: &str = r#"
CREATE INDEX authentications_low_value ON authentications (card_id, currency, created_at) INCLUDE (amount_minor)
    WHERE low_value_exempt;
CREATE INDEX challenges_approved_by_card ON challenges (card_id, decided_at) WHERE state = 'approved';
"#;

/// A device's pull looks for its cards' pending challenges only: the index
/// holds only those, so it stays small and an ending removes an entry
/// rather than rewriting it. (SQLite's version 6.)
const PENDING_BY_CARD: &str = r#"
DROP INDEX challenges_by_card;
CREATE INDEX challenges_pending_by_card ON challenges (card_id, expires_at) WHERE state = 'pending';
"#;

/// One index of a card's purchases answers the risk engine's three history
/// questions, the low-value tally from its included columns: each AReq
/// inserts into one index where it inserted into two, each at a place as
/// random as the card. (SQLite's version 7.)
const ONE_CARD_HISTORY_INDEX: &str = r#"
DROP INDEX authentications_low_value;
DROP INDEX authentications_by_card;
CREATE INDEX authentications_by_card ON authentications (card_id, created_at)
    INCLUDE (low_value_exempt, currency, amount_minor);
"#;

/// Audit lines about a purchase are found by card through the purchase, so
/// the by-card index holds only lines with no purchase: an AReq's line and
/// a challenge's ending's line no longer each write a page of an index at a
/// place as random as the card. (SQLite's version 8.)
const AUDIT_BY_CARD_WITHOUT_PURCHASE: &str = r#"
DROP INDEX audit_by_card;
CREATE INDEX audit_by_card ON audit_events (card_id, id) WHERE acs_trans_id IS NULL;
"#;

/// Applies every migration up to `until` not yet applied, in one
/// transaction under the migration lock; returns how many ran.
pub async fn migrate(client: &mut Client, now_ms: i64, until: u32) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().take_while(|(v, _)| *v as u32 <= until) {
        let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?.is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[version, &now_ms])
                .await?;
            applied += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// The newest migration this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v as u32)
}
