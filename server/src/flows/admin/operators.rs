//! Operator API keys, each with a role. The first admin key comes from the
//! CLI (`countersign operator create`); admins make the others.

use countersign_core::protocol::wire::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{action, check_text, new_api_key, record};
use crate::app::App;
use crate::error::ApiError;
use crate::secrets::Purpose;
use crate::storage::{Operator, OperatorRole};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOperatorRequest {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    pub role: OperatorRole,
}

/// Returned once: the key is stored only as a keyed hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOperator {
    pub id: String,
    pub name: String,
    pub role: OperatorRole,
    pub api_key: String,
}

/// An operator as others see it: never its key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub id: String,
    pub name: String,
    pub role: OperatorRole,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<Operator> for OperatorView {
    fn from(o: Operator) -> Self {
        Self { id: o.id, name: o.name, role: o.role, created_at: o.created_at, revoked_at: o.revoked_at }
    }
}

pub async fn create_operator(
    app: &App,
    name: &str,
    role: OperatorRole,
    actor: &str,
) -> Result<CreatedOperator, ApiError> {
    check_text("name", name, 64)?;
    let api_key = new_api_key("cso");
    let operator = Operator {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role,
        created_at: app.now_ms(),
        revoked_at: None,
    };
    app.storage.create_operator(&operator, &app.secrets.keyed_hash(Purpose::ApiKey, api_key.as_bytes())).await?;
    let mut audit = action(app, "operator.created", actor);
    audit.detail = serde_json::json!({ "operatorId": operator.id, "role": role.as_str() });
    record(app, audit).await?;
    Ok(CreatedOperator { id: operator.id, name: operator.name, role, api_key })
}

pub async fn operators(app: &App, actor: &str) -> Result<Vec<OperatorView>, ApiError> {
    let operators = app.storage.operators().await?;
    record(app, action(app, "operators.listed", actor)).await?;
    Ok(operators.into_iter().map(OperatorView::from).collect())
}

/// Revokes an operator's key at once. An admin may revoke their own: the
/// CLI can always create a new admin.
pub async fn revoke_operator(app: &App, operator_id: &str, actor: &str) -> Result<OperatorView, ApiError> {
    let mut audit = action(app, "operator.revoked", actor);
    audit.detail = serde_json::json!({ "operatorId": operator_id });
    let revoked = app.storage.revoke_operator(operator_id, audit.at, &audit).await?;
    // Operators are few: reading them all finds this one.
    let operator = app.storage.operators().await?.into_iter().find(|o| o.id == operator_id);
    match operator {
        None => Err(ApiError::not_found("operator")),
        Some(_) if !revoked => Err(ApiError::conflict(ErrorCode::BadRequest, "this operator was revoked already")),
        Some(o) => Ok(o.into()),
    }
}
