//! The SQLite schema, as numbered migrations applied in order, once.

use rusqlite::{Connection, TransactionBehavior};

const MIGRATIONS: &[(u32, &str)] = &[
    (1, INITIAL),
    (2, ONE_TIME_CODES),
    (3, CHALLENGE_WINDOW),
    (4, ADMINISTRATION),
    (5, RISK_HISTORY_INDEXES),
    (6, PENDING_CHALLENGE_INDEXES),
    (7, ONE_CARD_HISTORY_INDEX),
    (8, AUDIT_BY_CARD_WITHOUT_PURCHASE),
];

const INITIAL: &str = r#"
CREATE TABLE requestors (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    api_key_hash    BLOB NOT NULL UNIQUE,
    callback_secret TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE operators (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('support', 'admin')),
    api_key_hash BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);

-- Card numbers are kept only as a keyed hash, plus the last four digits.
CREATE TABLE cards (
    id         TEXT PRIMARY KEY,
    pan_hash   BLOB NOT NULL UNIQUE,
    pan_last4  TEXT NOT NULL,
    language   TEXT,
    email      TEXT,
    phone      TEXT,
    blocked_at INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE enrolment_codes (
    lookup        TEXT PRIMARY KEY,
    secret_hash   BLOB NOT NULL,
    card_id       TEXT NOT NULL REFERENCES cards(id),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL,
    used_at       INTEGER,
    device_id     TEXT
);

CREATE TABLE devices (
    id                    TEXT PRIMARY KEY,
    public_key            BLOB NOT NULL UNIQUE,
    platform              TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    push_token            TEXT,
    notifications_enabled INTEGER NOT NULL,
    revoked_at            INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

CREATE TABLE device_cards (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    card_id     TEXT NOT NULL REFERENCES cards(id),
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, card_id)
) WITHOUT ROWID;
CREATE INDEX device_cards_by_card ON device_cards (card_id);

CREATE TABLE device_nonces (
    device_id TEXT NOT NULL,
    nonce     BLOB NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
) WITHOUT ROWID;
CREATE INDEX device_nonces_by_age ON device_nonces (seen_at);

CREATE TABLE authentications (
    acs_trans_id         TEXT PRIMARY KEY,
    ds_trans_id          TEXT NOT NULL,
    requestor_id         TEXT NOT NULL REFERENCES requestors(id),
    card_id              TEXT REFERENCES cards(id),
    message_version      TEXT NOT NULL,
    message_category     TEXT NOT NULL,
    amount_minor         INTEGER NOT NULL,
    currency             INTEGER NOT NULL,
    exponent             INTEGER NOT NULL,
    merchant_name        TEXT NOT NULL,
    merchant_id          TEXT NOT NULL,
    notification_url     TEXT NOT NULL,
    trans_status         TEXT NOT NULL,
    trans_status_reason  TEXT,
    reasons              TEXT NOT NULL,
    low_value_exempt     INTEGER NOT NULL,
    authentication_value TEXT,
    eci                  TEXT,
    challenge_id         TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    UNIQUE (requestor_id, ds_trans_id)
);
CREATE INDEX authentications_by_card ON authentications (card_id, created_at);

CREATE TABLE challenges (
    id                TEXT PRIMARY KEY,
    acs_trans_id      TEXT NOT NULL UNIQUE REFERENCES authentications(acs_trans_id),
    card_id           TEXT NOT NULL REFERENCES cards(id),
    nonce             BLOB NOT NULL,
    state             TEXT NOT NULL,
    number_match      INTEGER,
    number_choices    TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_at        INTEGER,
    decided_by_device TEXT,
    outcome_reason    TEXT
);
CREATE INDEX challenges_pending_by_card ON challenges (card_id, state, expires_at);
CREATE INDEX challenges_by_state_expiry ON challenges (state, expires_at);

CREATE TABLE push_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE callbacks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    acs_trans_id    TEXT NOT NULL REFERENCES authentications(acs_trans_id),
    requestor_id    TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (state, next_attempt_at);
CREATE INDEX callbacks_by_transaction ON callbacks (acs_trans_id);

CREATE TABLE callback_attempts (
    callback_id INTEGER NOT NULL REFERENCES callbacks(id),
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    http_status INTEGER,
    error       TEXT,
    PRIMARY KEY (callback_id, attempt)
);

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    card_id      TEXT,
    acs_trans_id TEXT,
    challenge_id TEXT,
    device_id    TEXT,
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX audit_by_card ON audit_events (card_id, at);
CREATE INDEX audit_by_transaction ON audit_events (acs_trans_id);
"#;

/// The one-time-code fallback: codes, their deliveries, the development
/// message outbox, and what the fallback needs to know of cards, devices
/// and challenges.
const ONE_TIME_CODES: &str = r#"
ALTER TABLE devices ADD COLUMN push_unreachable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN failed_code_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE authentications ADD COLUMN browser_language TEXT;
ALTER TABLE authentications ADD COLUMN browser_tz INTEGER;
ALTER TABLE challenges ADD COLUMN push_deadline INTEGER;
ALTER TABLE challenges ADD COLUMN fallback_reason TEXT;
CREATE INDEX challenges_push_deadline ON challenges (state, push_deadline);

-- The code itself is never stored: with the server's key, `salt` derives it
-- again (so a resend repeats it), and `code_hash` checks an answer.
CREATE TABLE one_time_codes (
    challenge_id TEXT PRIMARY KEY REFERENCES challenges(id),
    salt         BLOB NOT NULL,
    code_hash    BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    resends      INTEGER NOT NULL DEFAULT 0,
    last_sent_at INTEGER NOT NULL,
    used_at      INTEGER
);

CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    challenge_id       TEXT NOT NULL REFERENCES challenges(id),
    channel            TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    destination_masked TEXT NOT NULL,
    send_round         INTEGER NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'restricted', 'skipped')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER NOT NULL,
    last_error         TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_challenge ON deliveries (challenge_id);

CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    provider    TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Development delivery only (`transport = "outbox"`): the messages as sent.
CREATE TABLE message_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#;

/// The browser challenge window: one session per challenge (opened by the
/// first CReq), and the security questions a cardholder without a contact
/// answers before registering one.
const CHALLENGE_WINDOW: &str = r#"
-- The window's capability is a random token; only its keyed hash is kept.
CREATE TABLE window_sessions (
    acs_trans_id          TEXT PRIMARY KEY REFERENCES authentications(acs_trans_id),
    token_hash            BLOB NOT NULL UNIQUE,
    three_ds_session_data TEXT,
    window_size           TEXT NOT NULL,
    language              TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    last_active_at        INTEGER NOT NULL,
    verified_at           INTEGER
);
CREATE INDEX window_sessions_by_activity ON window_sessions (last_active_at);

-- Answers are kept only as keyed hashes of their normalised form.
CREATE TABLE security_questions (
    card_id     TEXT NOT NULL REFERENCES cards(id),
    position    INTEGER NOT NULL,
    question    TEXT NOT NULL,
    answer_hash BLOB NOT NULL,
    PRIMARY KEY (card_id, position)
);
"#;

/// Operating the server: operators can be revoked; requestor credentials
/// rotate with an overlap; callback secrets are sealed rather than kept in
/// the clear; audit lines are searched by time.
const ADMINISTRATION: &str = r#"
ALTER TABLE operators ADD COLUMN revoked_at INTEGER;

ALTER TABLE requestors ADD COLUMN previous_api_key_hash BLOB;
ALTER TABLE requestors ADD COLUMN previous_key_expires_at INTEGER;
CREATE UNIQUE INDEX requestors_by_previous_key ON requestors (previous_api_key_hash);
-- `callback_secret` (the secret in the clear) becomes '' once the server,
-- which holds the sealing key, has sealed it at start.
ALTER TABLE requestors ADD COLUMN callback_secret_sealed BLOB;
ALTER TABLE requestors ADD COLUMN previous_callback_secret_sealed BLOB;
ALTER TABLE requestors ADD COLUMN previous_callback_secret_until INTEGER;

CREATE INDEX audit_by_time ON audit_events (at);
"#;

/// What the risk engine's low-value tally reads on every AReq: a card's
/// exempt purchases in one currency (and their amounts, so the index
/// answers alone), and the time of the card's last approved challenge.
/// Without them the tally walks the card's whole history. Both are
/// partial, so other purchases and challenges cost no index insert.
const RISK_HISTORY_INDEXES: &str = r#"
CREATE INDEX authentications_low_value ON authentications (card_id, currency, created_at, amount_minor)
    WHERE low_value_exempt = 1;
CREATE INDEX challenges_approved_by_card ON challenges (card_id, decided_at) WHERE state = 'approved';
"#;

/// What the sweepers and the device's pull look for is pending challenges
/// only, so their indexes hold only those (as PostgreSQL's always did):
/// they stay small however many purchases are stored, and ending a
/// challenge removes its entries instead of moving them to another state's
/// place in each index (three fewer index pages written per ending).
const PENDING_CHALLENGE_INDEXES: &str = r#"
DROP INDEX challenges_pending_by_card;
DROP INDEX challenges_by_state_expiry;
DROP INDEX challenges_push_deadline;
CREATE INDEX challenges_pending_by_card ON challenges (card_id, expires_at) WHERE state = 'pending';
CREATE INDEX challenges_pending_expiry ON challenges (expires_at) WHERE state = 'pending';
CREATE INDEX challenges_pending_push_deadline ON challenges (push_deadline) WHERE state = 'pending';
CREATE INDEX challenges_pending_created ON challenges (created_at) WHERE state = 'pending';
"#;

/// One index of a card's purchases answers all three history questions the
/// risk engine asks on every AReq (purchases since a time, the low-value
/// tally since the last approved challenge, earlier authenticated ones):
/// it carries the tally's columns, so the tally reads the index alone.
/// Each AReq inserts into it once; the two it replaces (all of a card's
/// purchases, its exempt ones) each wrote a page of their own, at a place
/// as random as the card.
const ONE_CARD_HISTORY_INDEX: &str = r#"
DROP INDEX authentications_low_value;
DROP INDEX authentications_by_card;
CREATE INDEX authentications_by_card
    ON authentications (card_id, created_at, low_value_exempt, currency, amount_minor);
"#;

/// Audit lines about a purchase are found by card through the purchase
/// (`authentications_by_card`, then `audit_by_transaction`), so the by-card
/// index holds only lines with no purchase. An AReq and a challenge's end
/// each append a line about a purchase: neither now writes a page of an
/// index keyed by card, at a place as random as the card.
const AUDIT_BY_CARD_WITHOUT_PURCHASE: &str = r#"
DROP INDEX audit_by_card;
CREATE INDEX audit_by_card ON audit_events (card_id) WHERE acs_trans_id IS NULL;
"#;

/// Applies every migration up to `until` not yet applied; returns how many ran.
pub fn migrate(conn: &mut Connection, now_ms: i64, until: u32) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().take_while(|(v, _)| *v <= until) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| {
                r.get(0)
            })?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", (version, now_ms))?;
            applied += 1;
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// The newest migration this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}
