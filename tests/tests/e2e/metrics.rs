//! The metrics listener: apart from the API, and labelled by route template.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn metrics_are_served_apart_from_the_api_by_route_template() {
    let s = TestServer::start_with(|c| {
        c.metrics.enabled = true;
        c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let metrics = format!("http://{}", s.metrics_addr().expect("metrics enabled"));
    let acs = uuid::Uuid::new_v4();
    assert_eq!(s.http.get(s.url(&format!("/v1/window/{acs}"))).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(s.http.get(s.url("/no/such/route")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    assert_eq!(s.http.get(s.url("/metrics")).send().await.unwrap().status(), StatusCode::NOT_FOUND, "not on the API");
    assert_eq!(s.http.get(format!("{metrics}/healthz")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let text = s.http.get(format!("{metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("route=\"/v1/window/{acs_trans_id}\",method=\"GET\",status=\"404\""), "{text}");
    assert!(text.contains("route=\"unmatched\",method=\"GET\",status=\"404\""), "{text}");
    assert!(!text.contains(&acs.to_string()) && !text.contains("/no/such/route"), "no raw URIs: {text}");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let s = TestServer::start().await;
    assert_eq!(s.metrics_addr(), None);
}
