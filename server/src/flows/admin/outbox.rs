//! The development outboxes: what would have been pushed, emailed or
//! texted. The message outbox holds one-time codes by design (it *is* the
//! delivery channel in development), so it answers only while a channel
//! delivers to it, to admins only, and every read is audited.

use super::{action, record};
use crate::app::App;
use crate::error::ApiError;
use crate::storage::{OutboxMessage, OutboxPush};

pub const MAX_OUTBOX_PAGE: u32 = 500;

/// The newest messages, newest first.
pub async fn messages(app: &App, limit: u32, actor: &str) -> Result<Vec<OutboxMessage>, ApiError> {
    if !app.uses_message_outbox() {
        return Err(ApiError::not_found("message outbox (no channel delivers to it)"));
    }
    let messages = app.storage.outbox_messages(limit.clamp(1, MAX_OUTBOX_PAGE)).await?;
    record(app, action(app, "outbox.messages_read", actor)).await?;
    Ok(messages)
}

/// The newest pushes (of one device, if given), newest first. They carry a
/// challenge id, never card or purchase details.
pub async fn pushes(app: &App, device_id: Option<&str>, limit: u32, actor: &str) -> Result<Vec<OutboxPush>, ApiError> {
    let pushes = app.storage.outbox_pushes(device_id, limit.clamp(1, MAX_OUTBOX_PAGE)).await?;
    let mut audit = action(app, "outbox.pushes_read", actor);
    audit.device_id = device_id.map(str::to_owned);
    record(app, audit).await?;
    Ok(pushes)
}
