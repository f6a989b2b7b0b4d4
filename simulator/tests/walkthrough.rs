//! The README's walkthrough, with the real `countersign-device` binary
//! against a real server on loopback: enrol with a code, list, show and
//! approve a purchase with number matching, then see the result.

use std::process::Command;
use std::sync::Arc;

use countersign_server::clock::SystemClock;
use countersign_server::flows::admin::{self, NewCardRequest, NewRequestorRequest};
use serde_json::{Value, json};

fn device(state: &std::path::Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_countersign-device"))
        .arg("--state")
        .arg(state)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).into_owned();
    if out.status.success() { Ok(serde_json::from_str(&text).unwrap_or(Value::Null)) } else { Err(text) }
}

async fn run_device(state: std::path::PathBuf, args: Vec<String>) -> Result<Value, String> {
    tokio::task::spawn_blocking(move || device(&state, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn enrol_list_show_approve() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = countersign_server::config::Config::default();
    config.database.url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    config.secrets.master_key_file = dir.path().join("master.key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    config.server.public_url = Some(base.clone());
    let app = countersign_server::App::open(config, Arc::new(SystemClock)).unwrap();
    let server = countersign_server::start(app.clone(), listener).unwrap();

    let shop =
        admin::create_requestor(&app, NewRequestorRequest { id: "shop-1".into(), name: "Demo Shop".into() }, "test")
            .await
            .unwrap();
    let card = admin::create_card(
        &app,
        NewCardRequest { acct_number: "378282246310005".into(), language: Some("sv".into()), email: None, phone: None },
        "test",
    )
    .await
    .unwrap();
    let code = admin::create_enrolment_code(&app, &card.card_id, "test").await.unwrap().code;

    let state = dir.path().join("device.json");
    let enrolled = run_device(
        state.clone(),
        vec![
            "enrol".into(),
            "--server".into(),
            base.clone(),
            "--code".into(),
            code.clone(),
            "--push-token".into(),
            "t".into(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(enrolled["card"]["maskedPan"], "•••• 0005");
    let again = run_device(state.clone(), vec!["enrol".into(), "--code".into(), code]).await;
    assert!(again.unwrap_err().contains("enrolment_code_used"));

    let areq = json!({
        "messageType": "AReq", "messageVersion": "2.3.1", "threeDSServerTransID": uuid::Uuid::new_v4().to_string(),
        "deviceChannel": "02", "messageCategory": "01", "acctNumber": "378282246310005", "cardExpiryDate": "3012",
        "purchaseAmount": "129900", "purchaseCurrency": "752", "purchaseExponent": "2", "purchaseDate": "20261122101500",
        "merchantName": "Cykelbutiken", "mcc": "5940", "merchantCountryCode": "752", "acquirerMerchantID": "M-9",
        "threeDSRequestorID": "shop-1", "threeDSRequestorName": "Demo Shop", "notificationURL": "http://127.0.0.1:9/n",
        "browserAcceptHeader": "text/html", "browserJavaEnabled": false, "browserLanguage": "sv-SE", "browserColorDepth": "24",
        "browserScreenHeight": "900", "browserScreenWidth": "1440", "browserTZ": "-60", "browserUserAgent": "Mozilla/5.0"
    });
    let http = reqwest::Client::new();
    let ares: Value = http
        .post(format!("{base}/v1/authentications"))
        .bearer_auth(&shop.api_key)
        .json(&areq)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ares["transStatus"], "C", "{ares}");
    let status_url = format!("{base}/v1/authentications/{}", ares["acsTransID"].as_str().unwrap());
    let status: Value = http.get(&status_url).bearer_auth(&shop.api_key).send().await.unwrap().json().await.unwrap();
    let number = status["challenge"]["numberMatch"].as_u64().unwrap().to_string();

    let pending = run_device(state.clone(), vec!["pending".into()]).await.unwrap();
    let id = pending["challenges"][0]["challengeId"].as_str().unwrap().to_owned();
    let shown = run_device(state.clone(), vec!["show".into(), id.clone()]).await.unwrap();
    assert_eq!(shown["merchantName"], "Cykelbutiken");
    assert_eq!(shown["amountMinor"], 129_900);
    let receipt = run_device(state.clone(), vec!["approve".into(), id, "--number".into(), number]).await.unwrap();
    assert_eq!(receipt["outcome"], "approved");

    let status: Value = http.get(&status_url).bearer_auth(&shop.api_key).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["transStatus"], "Y");
    server.stop().await;
}
