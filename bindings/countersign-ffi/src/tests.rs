//! The conversions at the boundary; the behaviour behind them is tested in
//! core and, through the generated Kotlin, in bindings/kotlin-tests.

use countersign_core::client::{self as core, ClientError, DeviceOptions};
use countersign_core::protocol::wire::{self, ErrorCode};

use crate::*;

fn challenge(number_choices: Option<Vec<u32>>) -> Challenge {
    Challenge {
        server_url: "https://issuer.example".into(),
        challenge_id: "ch-1".into(),
        card: Card { card_id: "card-1".into(), masked_pan: "•••• 10005".into(), issuer_name: "Bank".into() },
        terms: PurchaseTerms {
            amount_minor: 12_800,
            currency: 978,
            exponent: 2,
            merchant_name: "Shop".into(),
            requestor_id: "req".into(),
            merchant_id: "MID".into(),
        },
        requestor_name: "Shop 3DS".into(),
        created_at: 1,
        expires_at: 2,
        nonce: vec![7; 32],
        number_choices,
    }
}

#[test]
fn a_challenge_survives_the_round_trip_through_the_boundary() {
    let shown = challenge(Some(vec![12, 47, 83]));
    let inner: core::Challenge = shown.clone().try_into().unwrap();
    assert_eq!(inner.view.number_choices, Some(vec![12, 47, 83]));
    assert_eq!(Challenge::from(inner), shown);
}

#[test]
fn a_number_that_does_not_fit_the_protocol_is_bad_payload() {
    let result: Result<core::Challenge, _> = challenge(Some(vec![12, 300])).try_into();
    assert!(matches!(result, Err(CountersignError::BadPayload { .. })));
}

#[test]
fn server_refusals_keep_the_wire_code() {
    let error = CountersignError::from(ClientError::ServerRefused {
        status: 422,
        code: ErrorCode::AmountMismatch,
        message: "amount differs".into(),
    });
    assert_eq!(
        error,
        CountersignError::ServerRefused {
            status: 422,
            code: "amount_mismatch".into(),
            reason: "amount differs".into()
        }
    );
    let newer = CountersignError::from(ClientError::ServerRefused {
        status: 400,
        code: ErrorCode::Unknown,
        message: "later".into(),
    });
    assert!(matches!(newer, CountersignError::ServerRefused { code, .. } if code == "unknown"));
}

#[test]
fn a_foreign_exception_of_an_undeclared_type_is_unavailable() {
    let error = DeviceKeyError::from(uniffi::UnexpectedUniFFICallbackError::new("IllegalStateException: gone"));
    assert!(matches!(error, DeviceKeyError::Unavailable { reason } if reason.contains("gone")));
}

#[test]
fn the_default_history_limit_is_core_s() {
    // DeviceConfig's `#[uniffi(default = 500)]` must follow core's default.
    assert_eq!(DeviceOptions::default().history_limit, 500);
}

#[test]
fn outcomes_and_decisions_map_one_to_one() {
    assert_eq!(ChallengeOutcome::from(wire::ChallengeOutcome::Cancelled), ChallengeOutcome::Cancelled);
    let deny = Decision::Deny { reason: DenyReason::NotMe };
    assert_eq!(Decision::from(countersign_core::protocol::Decision::from(deny)), deny);
}
