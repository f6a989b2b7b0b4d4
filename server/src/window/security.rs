//! The issuer's security questions: a cardholder with no registered
//! contact answers them before registering an email or phone during a
//! purchase. Answers are kept as keyed hashes of a normalised form, so
//! "Tokyo", " tokyo " and full-width "ＴＯＫＹＯ" are the same answer.

use countersign_core::protocol::CanonicalWriter;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::app::App;
use crate::error::ApiError;
use crate::secrets::{KeyAge, Purpose};
use crate::storage::{AuditEvent, Rekeyed, SecurityQuestion, StorageError};

pub const MAX_QUESTIONS: usize = 5;
const MAX_TEXT_CHARS: usize = 200;

/// NFKC (full-width Latin and digits to half-width, half-width katakana
/// to full-width), lower case, inner whitespace collapsed, ends trimmed.
pub fn normalise(answer: &str) -> String {
    let folded: String = answer.nfkc().flat_map(char::to_lowercase).collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn answer_input(card_id: &str, position: u32, answer: &str) -> Vec<u8> {
    CanonicalWriter::new("countersign.security-answer.v1")
        .str(card_id)
        .u8(position.min(255) as u8)
        .str(&normalise(answer))
        .finish()
}

/// A question and its answer as an operator provisions them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewQuestion {
    #[schema(min_length = 1, max_length = 200)]
    pub question: String,
    #[schema(min_length = 1, max_length = 200)]
    pub answer: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewQuestions {
    #[schema(max_items = 5)]
    pub questions: Vec<NewQuestion>,
}

/// What anyone may read back: the questions, never the answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuestionsView {
    pub card_id: String,
    pub questions: Vec<String>,
}

/// Replaces a card's questions (an empty list removes them). Audited
/// without the answers.
pub async fn provision(app: &App, card_id: &str, new: NewQuestions, actor: &str) -> Result<QuestionsView, ApiError> {
    if new.questions.len() > MAX_QUESTIONS {
        return Err(ApiError::bad_request(format!("questions: at most {MAX_QUESTIONS}")));
    }
    let mut questions = Vec::with_capacity(new.questions.len());
    for (i, q) in new.questions.iter().enumerate() {
        let (question, answer) = (q.question.trim(), normalise(&q.answer));
        if question.is_empty() || answer.is_empty() {
            return Err(ApiError::bad_request(format!("questions[{i}]: question and answer must not be empty")));
        }
        if question.chars().count() > MAX_TEXT_CHARS || q.answer.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request(format!("questions[{i}]: at most {MAX_TEXT_CHARS} characters each")));
        }
        let position = i as u32;
        questions.push(SecurityQuestion {
            position,
            question: question.to_owned(),
            answer_hash: app.secrets.keyed_hash(Purpose::SecurityAnswer, &answer_input(card_id, position, &q.answer)),
        });
    }
    let mut audit = AuditEvent::new(app.now_ms(), "card.security_questions_set", actor.to_owned(), "ok");
    audit.card_id = Some(card_id.to_owned());
    audit.detail = serde_json::json!({ "questions": questions.len() });
    if !app.storage.set_security_questions(card_id, &questions, &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    Ok(QuestionsView { card_id: card_id.to_owned(), questions: questions.into_iter().map(|q| q.question).collect() })
}

pub async fn show(app: &App, card_id: &str) -> Result<QuestionsView, ApiError> {
    app.storage.card(card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let questions = app.storage.security_questions(card_id).await?;
    Ok(QuestionsView { card_id: card_id.to_owned(), questions: questions.into_iter().map(|q| q.question).collect() })
}

/// Whether every answer matches its question (all compared, in constant
/// time each, whatever the first result). Answers right under a previous
/// master key are stored again under the current one.
pub async fn all_correct(
    app: &App,
    card_id: &str,
    questions: &[SecurityQuestion],
    answers: &[String],
) -> Result<bool, StorageError> {
    if questions.is_empty() || answers.len() != questions.len() {
        return Ok(false);
    }
    let checked: Vec<_> = questions
        .iter()
        .zip(answers)
        .map(|(q, a)| {
            let input = answer_input(card_id, q.position, a);
            (app.secrets.verify(Purpose::SecurityAnswer, &input, &q.answer_hash), q, input)
        })
        .collect();
    if checked.iter().any(|(age, ..)| age.is_none()) {
        return Ok(false);
    }
    for (_, q, input) in checked.iter().filter(|(age, ..)| *age == Some(KeyAge::Previous)) {
        let new = app.secrets.keyed_hash(Purpose::SecurityAnswer, input);
        app.storage.rekey(Rekeyed::SecurityAnswer { card_id }, &q.answer_hash, &new).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn answers_normalise_case_width_and_spaces() {
        assert_eq!(normalise("  Tokyo   Tower "), "tokyo tower");
        assert_eq!(normalise("ＴＯＫＹＯ　１２３"), "tokyo 123");
        assert_eq!(normalise("ﾀﾛｳ"), normalise("タロウ"));
        assert_eq!(normalise("Åsa"), "åsa");
    }
}
