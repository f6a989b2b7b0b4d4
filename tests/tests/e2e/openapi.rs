//! The OpenAPI document: the server serves the one committed in docs/.

use reqwest::StatusCode;

use crate::support::*;

const REGENERATE: &str = "cargo run -p countersign-server -- openapi > docs/openapi.json";

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let s = TestServer::start().await;
    let resp = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers()["cache-control"].to_str().unwrap().starts_with("public"));
    let served = resp.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        served == committed,
        "docs/openapi.json differs from the document the server serves; regenerate it:\n  {REGENERATE}"
    );
}
