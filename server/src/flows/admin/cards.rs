//! Cards as operators manage them: registered by number (kept only as a
//! keyed hash and the last four digits), shown masked, with a language and
//! contacts of their own, unblocked after too many wrong codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{card_action, check_contacts, conflict_or, record};
use crate::app::App;
use crate::delivery::Language;
use crate::emv::Pan;
use crate::error::ApiError;
use crate::flows::rekey;
use crate::secrets::Purpose;
use crate::storage::{Card, NewCard, Rekeyed};
use crate::window::security::{self, NewQuestions, QuestionsView};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCardRequest {
    /// The card number: 13 to 19 digits, Luhn-valid. Kept only as a keyed
    /// hash and its last four digits.
    pub acct_number: String,
    /// The language of messages to the cardholder: `ja`, `en` or `sv`
    /// (a tag such as `ja-JP` is read as `ja`).
    #[schema(pattern = "^([jJ][aA]|[eE][nN]|[sS][vV])(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// E.164, e.g. `+46701234567`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
}

/// A card as operators see it: never the full number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    pub card_id: String,
    pub masked_pan: String,
    pub language: Option<String>,
    pub has_email: bool,
    pub has_phone: bool,
    pub blocked: bool,
    pub created_at: i64,
}

impl From<&Card> for CardView {
    fn from(c: &Card) -> Self {
        Self {
            card_id: c.id.clone(),
            masked_pan: c.masked_pan(),
            language: c.language.clone(),
            has_email: c.email.is_some(),
            has_phone: c.phone.is_some(),
            blocked: c.blocked_at.is_some(),
            created_at: c.created_at,
        }
    }
}

/// A card's contacts for one-time codes; an absent one is removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contacts {
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// E.164, e.g. `+46701234567`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
}

/// The language messages to the cardholder are written in; none = the
/// browser's (then English).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardLanguage {
    /// `ja`, `en` or `sv` (a tag such as `sv-SE` is read as `sv`).
    #[schema(pattern = "^([jJ][aA]|[eE][nN]|[sS][vV])(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
}

/// A card as a request describes it, checked: what `create_card` and an
/// import row share.
pub(super) async fn new_card(app: &App, req: NewCardRequest) -> Result<NewCard, ApiError> {
    let pan = Pan::parse(req.acct_number.trim()).map_err(|e| ApiError::bad_request(format!("acctNumber: {e}")))?;
    let language = req.language.as_deref().map(language_code).transpose()?;
    check_contacts(req.email.as_deref(), req.phone.as_deref())?;
    if app.secrets.previous_ids().next().is_some() {
        // A card registered before a master-key rotation is re-keyed first,
        // so the number stays unique across keys (no second card for it).
        let by_hash = |hash: Vec<u8>| async move { app.storage.card_by_pan_hash(&hash).await };
        rekey::find(app, Purpose::CardNumber, pan.as_str().as_bytes(), Rekeyed::PanHash, by_hash).await?;
    }
    let card = Card {
        id: uuid::Uuid::new_v4().to_string(),
        pan_last4: pan.last_digits(4).to_owned(),
        language,
        email: req.email,
        phone: req.phone,
        blocked_at: None,
        failed_code_attempts: 0,
        created_at: app.now_ms(),
    };
    Ok(NewCard { card, pan_hash: app.secrets.keyed_hash(Purpose::CardNumber, pan.as_str().as_bytes()) })
}

/// A language the cardholder messages and the window are written in: one
/// BCP 47 tag (not a browser's list) of which only the language counts —
/// the rule the schemas' `language` pattern states.
fn language_code(tag: &str) -> Result<String, ApiError> {
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    let well_formed = primary.len() == 2
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    well_formed
        .then(|| Language::from_tag(primary))
        .flatten()
        .map(|l| l.as_str().to_owned())
        .ok_or_else(|| ApiError::bad_request("language: one of ja, en, sv"))
}

pub async fn create_card(app: &App, req: NewCardRequest, actor: &str) -> Result<CardView, ApiError> {
    let new = new_card(app, req).await?;
    app.storage.create_card(&new).await.map_err(|e| conflict_or(e, "this card number is already registered"))?;
    record(app, card_action(app, "card.created", actor, &new.card.id)).await?;
    Ok(CardView::from(&new.card))
}

/// Shows a card, masked.
pub async fn show_card(app: &App, card_id: &str, actor: &str) -> Result<CardView, ApiError> {
    let view = card(app, card_id).await?;
    record(app, card_action(app, "card.viewed", actor, card_id)).await?;
    Ok(view)
}

async fn card(app: &App, card_id: &str) -> Result<CardView, ApiError> {
    let card = app.storage.card(card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    Ok(CardView::from(&card))
}

pub async fn set_language(app: &App, card_id: &str, req: CardLanguage, actor: &str) -> Result<CardView, ApiError> {
    let language = req.language.as_deref().map(language_code).transpose()?;
    let mut audit = card_action(app, "card.language_changed", actor, card_id);
    audit.detail = serde_json::json!({ "language": language });
    if !app.storage.set_card_language(card_id, language.as_deref(), &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    card(app, card_id).await
}

/// Replaces one card's contacts. Each card (primary, additional,
/// supplementary) has its own, so no other card changes.
pub async fn set_contacts(app: &App, card_id: &str, contacts: Contacts, actor: &str) -> Result<CardView, ApiError> {
    check_contacts(contacts.email.as_deref(), contacts.phone.as_deref())?;
    let mut audit = card_action(app, "card.contacts_changed", actor, card_id);
    audit.detail = serde_json::json!({ "hasEmail": contacts.email.is_some(), "hasPhone": contacts.phone.is_some() });
    if !app.storage.set_card_contacts(card_id, contacts.email.as_deref(), contacts.phone.as_deref(), &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    card(app, card_id).await
}

/// Lifts the block that too many wrong codes put on a card.
pub async fn unblock_card(app: &App, card_id: &str, actor: &str) -> Result<CardView, ApiError> {
    let audit = card_action(app, "card.unblocked", actor, card_id);
    if !app.storage.unblock_card(card_id, &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    crate::metrics::card_unblocked();
    card(app, card_id).await
}

/// Replaces a card's security questions; the answers are kept only as
/// keyed hashes and never shown again.
pub async fn set_security_questions(
    app: &App,
    card_id: &str,
    questions: NewQuestions,
    actor: &str,
) -> Result<QuestionsView, ApiError> {
    security::provision(app, card_id, questions, actor).await
}

/// A card's security questions, without answers.
pub async fn security_questions(app: &App, card_id: &str, actor: &str) -> Result<QuestionsView, ApiError> {
    let view = security::show(app, card_id).await?;
    record(app, card_action(app, "card.security_questions_viewed", actor, card_id)).await?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_is_one_well_formed_tag_of_ja_en_sv() {
        for (tag, code) in [("ja", "ja"), ("EN", "en"), ("sv-SE", "sv"), ("en-GB-oxendict", "en"), ("ja-JP-x-a1", "ja")]
        {
            assert_eq!(language_code(tag).unwrap(), code, "{tag}");
        }
        for tag in ["fr", "", "j", "jpn", "ja_JP", "ja,en", "sv;q=0.9", " ja", "ja-", "ja--JP", "ja-toolongsub"] {
            assert!(language_code(tag).is_err(), "{tag:?} accepted");
        }
    }
}
