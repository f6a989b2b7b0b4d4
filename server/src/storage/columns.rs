//! What both backends' SQL shares: the column lists of each record (in
//! the order the row mappers read them) and the joins that read several
//! records in one query. Placeholders are the caller's (`?1` in SQLite,
//! `$1` in PostgreSQL).

pub const REQUESTOR_COLUMNS: &str = "id, name, callback_secret_sealed, callback_secret, \
    previous_callback_secret_sealed, previous_callback_secret_until, previous_key_expires_at, created_at";

pub const OPERATOR_COLUMNS: &str = "id, name, role, created_at, revoked_at";

pub const CARD_COLUMNS: &str = "id, pan_last4, language, email, phone, blocked_at, failed_code_attempts, created_at";

pub const DEVICE_COLUMNS: &str = "id, public_key, platform, display_name, push_token, notifications_enabled, push_unreachable, revoked_at, created_at";

pub const AUTHENTICATION_COLUMNS: &str = "acs_trans_id, ds_trans_id, requestor_id, card_id, message_version, \
    message_category, amount_minor, currency, exponent, merchant_name, merchant_id, notification_url, trans_status, \
    trans_status_reason, reasons, low_value_exempt, authentication_value, eci, challenge_id, created_at, updated_at, \
    browser_language, browser_tz";

pub const CHALLENGE_COLUMNS: &str = "id, acs_trans_id, card_id, nonce, state, number_match, number_choices, created_at, \
    expires_at, decided_at, decided_by_device, outcome_reason, push_deadline, fallback_reason";

pub const ONE_TIME_CODE_COLUMNS: &str =
    "challenge_id, salt, code_hash, created_at, expires_at, resends, last_sent_at, used_at";

pub const DELIVERY_COLUMNS: &str =
    "id, challenge_id, channel, destination_masked, send_round, state, attempts, last_error, updated_at";

pub const AUDIT_COLUMNS: &str = "id, at, kind, actor, card_id, acs_trans_id, challenge_id, device_id, outcome, detail";

pub const AUDIT_INSERT_COLUMNS: &str =
    "at, kind, actor, card_id, acs_trans_id, challenge_id, device_id, outcome, detail";

/// `cols` with each column qualified by a table alias, for joins.
pub fn qualified(cols: &str, alias: &str) -> String {
    cols.split(',').map(|col| format!("{alias}.{}", col.trim())).collect::<Vec<_>>().join(", ")
}

/// How many columns `cols` names; `const`, so the join layouts below are
/// worked out once, when the server is compiled.
pub const fn column_count(cols: &str) -> usize {
    let bytes = cols.as_bytes();
    let (mut count, mut i) = (1, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
}

/// `$from, $from+1, …`, one for each of `columns` (PostgreSQL).
pub fn placeholders(columns: &str, from: usize) -> String {
    (from..from + column_count(columns)).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A query for [`DeviceChallenge`](super::DeviceChallenge)s: challenge,
/// authentication, card and requestor's name, then `enrolled` (an
/// expression for the device's enrolment), then `rest` (joins,
/// conditions, order). [`DeviceChallengeLayout`] says where each starts.
pub fn device_challenge_sql(enrolled: &str, rest: &str) -> String {
    format!(
        "SELECT {}, {}, {}, r.name, {enrolled} FROM challenges ch \
         JOIN authentications a ON a.acs_trans_id = ch.acs_trans_id JOIN cards c ON c.id = ch.card_id \
         LEFT JOIN requestors r ON r.id = a.requestor_id {rest}",
        qualified(CHALLENGE_COLUMNS, "ch"),
        qualified(AUTHENTICATION_COLUMNS, "a"),
        qualified(CARD_COLUMNS, "c")
    )
}

/// Where each record's columns start in a [`device_challenge_sql`] row
/// (the challenge's at 0; the enrolment right after the name).
pub struct DeviceChallengeLayout {
    pub authentication: usize,
    pub card: usize,
    pub requestor_name: usize,
    pub enrolled: usize,
}

pub const DEVICE_CHALLENGE_LAYOUT: DeviceChallengeLayout = {
    let authentication = column_count(CHALLENGE_COLUMNS);
    let card = authentication + column_count(AUTHENTICATION_COLUMNS);
    let requestor_name = card + column_count(CARD_COLUMNS);
    DeviceChallengeLayout { authentication, card, requestor_name, enrolled: requestor_name + 1 }
};

/// A query for a [`CodeCheck`](super::CodeCheck) by acsTransID (`key`, the
/// placeholder): authentication, challenge, card, then the code's columns
/// (null without a code). [`CodeCheckLayout`] says where each starts.
pub fn code_check_sql(key: &str) -> String {
    format!(
        "SELECT {}, {}, {}, {} FROM authentications a JOIN challenges ch ON ch.id = a.challenge_id \
         JOIN cards c ON c.id = ch.card_id LEFT JOIN one_time_codes o ON o.challenge_id = ch.id \
         WHERE a.acs_trans_id = {key}",
        qualified(AUTHENTICATION_COLUMNS, "a"),
        qualified(CHALLENGE_COLUMNS, "ch"),
        qualified(CARD_COLUMNS, "c"),
        qualified(ONE_TIME_CODE_COLUMNS, "o")
    )
}

/// Where each record's columns start in a [`code_check_sql`] row (the
/// authentication's at 0).
pub struct CodeCheckLayout {
    pub challenge: usize,
    pub card: usize,
    pub code: usize,
}

pub const CODE_CHECK_LAYOUT: CodeCheckLayout = {
    let challenge = column_count(AUTHENTICATION_COLUMNS);
    let card = challenge + column_count(CHALLENGE_COLUMNS);
    CodeCheckLayout { challenge, card, code: card + column_count(CARD_COLUMNS) }
};

/// A query for a [`PurchaseStatus`](super::PurchaseStatus) by acsTransID
/// (`key`, the placeholder): authentication, challenge (null without one),
/// then the latest callback's state and one of its attempts per row (null
/// without any), attempts in order. [`PurchaseStatusLayout`] says where
/// each starts. (A correlated subquery, not `LATERAL`: SQLite has none.)
pub fn purchase_status_sql(key: &str) -> String {
    format!(
        "SELECT {}, {}, cb.state, t.attempt, t.at, t.http_status, t.error FROM authentications a \
         LEFT JOIN challenges ch ON ch.id = a.challenge_id \
         LEFT JOIN callbacks cb ON cb.id = \
           (SELECT id FROM callbacks WHERE acs_trans_id = a.acs_trans_id ORDER BY id DESC LIMIT 1) \
         LEFT JOIN callback_attempts t ON t.callback_id = cb.id \
         WHERE a.acs_trans_id = {key} ORDER BY t.attempt",
        qualified(AUTHENTICATION_COLUMNS, "a"),
        qualified(CHALLENGE_COLUMNS, "ch")
    )
}

/// Where each part of a [`purchase_status_sql`] row starts (the
/// authentication's at 0): the challenge, then the callback's state
/// followed by the attempt's four columns.
pub struct PurchaseStatusLayout {
    pub challenge: usize,
    pub callback: usize,
}

pub const PURCHASE_STATUS_LAYOUT: PurchaseStatusLayout = {
    let challenge = column_count(AUTHENTICATION_COLUMNS);
    PurchaseStatusLayout { challenge, callback: challenge + column_count(CHALLENGE_COLUMNS) }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_count_is_the_number_of_names_in_the_list() {
        assert_eq!(column_count("id"), 1);
        assert_eq!(column_count("id, name,created_at"), 3);
        for cols in [AUTHENTICATION_COLUMNS, CHALLENGE_COLUMNS, CARD_COLUMNS, ONE_TIME_CODE_COLUMNS] {
            assert_eq!(column_count(cols), qualified(cols, "t").matches("t.").count(), "{cols}");
        }
    }
}
