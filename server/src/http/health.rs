use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `database unavailable`.
    status: &'static str,
}

/// The process is up
#[utoipa::path(
    get, path = "/healthz", tag = "health", operation_id = "healthz",
    responses((status = 200, description = "Up", body = Health, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The server can do its work: the database answers
#[utoipa::path(
    get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer", body = Health,
            example = json!({"status": "database unavailable"})),
    ),
)]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Health>) {
    match app.storage.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ready" })),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "database unavailable" })),
    }
}
