//! Searching the audit trail: by card, purchase, device, actor, kind,
//! outcome and time, in the order lines were appended, a page at a time.
//! A page that is not the last ends with an opaque cursor for the next;
//! since lines are only ever appended, following cursors never skips or
//! repeats one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{action, record};
use crate::app::App;
use crate::error::ApiError;
use crate::storage::{AuditEvent, AuditFilter};

pub const DEFAULT_AUDIT_PAGE: u32 = 100;
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// A search, as the API's query string or the CLI's flags give it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Lines about this card.
    pub card_id: Option<String>,
    /// Lines about this purchase.
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: Option<String>,
    /// Lines about this device.
    pub device_id: Option<String>,
    /// `operator:ID`, `cli`, `requestor:ID`, `device:ID`, `system`.
    pub actor: Option<String>,
    /// The event type, e.g. `challenge.ended`, `card.unblocked`.
    pub kind: Option<String>,
    /// E.g. `ok`, `approved`, `expired`, `Y`.
    pub outcome: Option<String>,
    /// From this time on (milliseconds since the epoch, inclusive)…
    pub from: Option<i64>,
    /// …until this one (exclusive).
    pub until: Option<i64>,
    /// The `nextCursor` of the previous page (with the same filters).
    pub cursor: Option<String>,
    /// Lines per page: 1 to 1000, 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of audit lines, in the order they were appended.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Where the next page starts; absent on the last page.
    pub next_cursor: Option<String>,
}

pub async fn search_audit(app: &App, q: AuditQuery, actor: &str) -> Result<AuditPage, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: 1 to {MAX_AUDIT_PAGE}")));
    }
    let after_id = q.cursor.as_deref().map(decode_cursor).transpose()?;
    // The search is audited with its filters (ids and times, no secret).
    let mut audit = action(app, "audit.searched", actor);
    audit.detail = serde_json::to_value(AuditQuery { cursor: None, ..q.clone() }).expect("plain data serialises");
    if let Some(filters) = audit.detail.as_object_mut() {
        filters.retain(|_, v| !v.is_null());
    }
    let filter = AuditFilter {
        card_id: q.card_id,
        acs_trans_id: q.acs_trans_id,
        device_id: q.device_id,
        actor: q.actor,
        kind: q.kind,
        outcome: q.outcome,
        from: q.from,
        until: q.until,
        after_id,
        // One more than a page says whether another follows.
        limit: limit + 1,
    };
    let mut records = app.storage.audit_events(&filter).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = records.last().filter(|_| more).map(|r| encode_cursor(r.id));
    record(app, audit).await?;
    Ok(AuditPage { events: records.into_iter().map(|r| r.event).collect(), next_cursor })
}

const CURSOR_PREFIX: &str = "audit.v1:";

fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse().ok())
        .ok_or_else(|| ApiError::bad_request("cursor: not one this server gave out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_others_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in ["42", "", "!!", &URL_SAFE_NO_PAD.encode("audit.v1:x"), &URL_SAFE_NO_PAD.encode("other:42")] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
