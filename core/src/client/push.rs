//! Reading the data of a push notification. A push that is not a
//! Countersign challenge is ignored; one that claims to be but is malformed
//! is an error the app can log, never a crash.

use std::collections::HashMap;

use super::error::ClientError;
use crate::protocol::wire::PushPayload;

/// `Ok(None)` for another kind of push (the app's own, marketing), the
/// payload for a well-formed challenge push, `BadPayload` otherwise.
pub(crate) fn read_push(data: &HashMap<String, String>) -> Result<Option<PushPayload>, ClientError> {
    match data.get(PushPayload::KEY_TYPE) {
        None => return Ok(None),
        Some(kind) if kind != PushPayload::TYPE_CHALLENGE => return Ok(None),
        Some(_) => {}
    }
    PushPayload::from_map(data).map(Some).ok_or_else(|| {
        ClientError::BadPayload(format!(
            "a challenge push needs {} (1 to 64 characters) and {} (ms since the epoch)",
            PushPayload::KEY_CHALLENGE,
            PushPayload::KEY_EXPIRES
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn other_pushes_are_not_ours() {
        assert_eq!(read_push(&map(&[])), Ok(None));
        assert_eq!(read_push(&map(&[("cs_type", "promo")])), Ok(None));
    }

    #[test]
    fn a_malformed_challenge_push_is_bad_payload() {
        for bad in [
            map(&[("cs_type", "challenge")]),
            map(&[("cs_type", "challenge"), ("cs_challenge", "c"), ("cs_expires", "soon")]),
            map(&[("cs_type", "challenge"), ("cs_challenge", ""), ("cs_expires", "1")]),
            map(&[("cs_type", "challenge"), ("cs_challenge", &"x".repeat(65)), ("cs_expires", "1")]),
        ] {
            assert!(matches!(read_push(&bad), Err(ClientError::BadPayload(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_challenge_push_is_read() {
        let push = read_push(&map(&[("cs_type", "challenge"), ("cs_challenge", "ch-1"), ("cs_expires", "42")]))
            .unwrap()
            .unwrap();
        assert_eq!((push.challenge_id.as_str(), push.expires_at), ("ch-1", 42));
    }
}
