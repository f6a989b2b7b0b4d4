//! Signed JSON Web Tokens, as much as the two push providers need: ES256
//! provider tokens for APNs and RS256 grant assertions for Google's OAuth
//! token endpoint. Keys are PKCS#8 PEM files (Apple's `.p8`, the
//! `private_key` of a Firebase service account); reading one is a start-up
//! step, so a bad key stops the server instead of failing the first push.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Map, Value};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// A private key that signs tokens. Errors never include key material.
pub struct SigningKey {
    pair: KeyPair,
    rng: SystemRandom,
}

enum KeyPair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl SigningKey {
    /// A P-256 key from a PKCS#8 PEM document, such as an APNs `.p8` file.
    pub fn es256_from_pem(pem: &str) -> Result<Self, String> {
        let der = pkcs8_der(pem)?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).map_err(|e| {
            format!(
                "not a P-256 (ES256) private key ({e}); a key without its public half can be rewritten with \
                 `openssl pkcs8 -topk8 -nocrypt`"
            )
        })?;
        Ok(Self { pair: KeyPair::Es256(pair), rng })
    }

    /// An RSA key from a PKCS#8 PEM document, such as a Firebase service
    /// account's `private_key`.
    pub fn rs256_from_pem(pem: &str) -> Result<Self, String> {
        let der = pkcs8_der(pem)?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA (RS256) private key ({e})"))?;
        Ok(Self { pair: KeyPair::Rs256(pair), rng: SystemRandom::new() })
    }

    pub fn algorithm(&self) -> &'static str {
        match self.pair {
            KeyPair::Es256(_) => "ES256",
            KeyPair::Rs256(_) => "RS256",
        }
    }

    /// `header.claims.signature`, each part base64url without padding. The
    /// header gets `alg` from the key; `extra_header` adds to it (`kid`, `typ`).
    pub fn sign(&self, extra_header: &[(&str, &str)], claims: &Value) -> Result<String, String> {
        let mut header = Map::new();
        header.insert("alg".into(), Value::from(self.algorithm()));
        for (name, value) in extra_header {
            header.insert((*name).into(), Value::from(*value));
        }
        let mut token = String::new();
        URL_SAFE_NO_PAD.encode_string(Value::Object(header).to_string(), &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
        let signature = match &self.pair {
            KeyPair::Es256(pair) => {
                pair.sign(&self.rng, token.as_bytes()).map_err(|_| "ES256 signing failed")?.as_ref().to_vec()
            }
            KeyPair::Rs256(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut sig)
                    .map_err(|_| "RS256 signing failed")?;
                sig
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// The DER inside a `BEGIN PRIVATE KEY` PEM block. Other labels get a
/// message saying how to convert them, since ring reads PKCS#8 only.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    let Some(start) = pem.find(PEM_BEGIN) else {
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") || pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            return Err("the key is in the traditional OpenSSL format; convert it to PKCS#8 with \
                        `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`"
                .into());
        }
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err("the key is encrypted; store it unencrypted (PKCS#8) with restricted file permissions".into());
        }
        return Err(format!("no `{PEM_BEGIN}` block found"));
    };
    let body = &pem[start + PEM_BEGIN.len()..];
    let end = body.find(PEM_END).ok_or_else(|| format!("no `{PEM_END}` line found"))?;
    let base64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(base64).map_err(|e| format!("the PEM block is not valid base64 ({e})"))
}

#[cfg(test)]
pub(crate) mod tests {
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey,
    };
    use serde_json::json;

    use super::*;

    /// A throwaway RSA key, used by tests only.
    pub const TEST_RSA_PEM: &str = include_str!("../../tests/fixtures/fcm-test-only-rsa-key.pem");

    /// A fresh P-256 key as a `.p8` file holds it, and its public point.
    pub fn p256_pem() -> (String, Vec<u8>) {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let body = STANDARD.encode(doc.as_ref());
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        (format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", lines.join("\n")), pair.public_key().as_ref().to_vec())
    }

    fn parts(token: &str) -> (Value, Value, Vec<u8>, &str) {
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let (header, claims) = signed.split_once('.').unwrap();
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        (
            serde_json::from_slice(&decode(header)).unwrap(),
            serde_json::from_slice(&decode(claims)).unwrap(),
            decode(signature),
            signed,
        )
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let (pem, public) = p256_pem();
        let key = SigningKey::es256_from_pem(&pem).unwrap();
        let token = key.sign(&[("kid", "ABC123DEFG")], &json!({"iss": "TEAM123456", "iat": 1_700_000_000})).unwrap();
        let (header, claims, signature, signed) = parts(&token);
        assert_eq!(header, json!({"alg": "ES256", "kid": "ABC123DEFG"}));
        assert_eq!(claims, json!({"iss": "TEAM123456", "iat": 1_700_000_000}));
        assert_eq!(signature.len(), 64, "JWS wants r||s, not DER");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public).verify(signed.as_bytes(), &signature).unwrap();
        assert!(!token.contains('='), "no padding");
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key() {
        let key = SigningKey::rs256_from_pem(TEST_RSA_PEM).unwrap();
        let token = key.sign(&[("typ", "JWT"), ("kid", "k1")], &json!({"iss": "a@b"})).unwrap();
        let (header, _, signature, signed) = parts(&token);
        assert_eq!(header["alg"], "RS256");
        let pair = RsaKeyPair::from_pkcs8(&pkcs8_der(TEST_RSA_PEM).unwrap()).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public().as_ref())
            .verify(signed.as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn bad_keys_are_explained_without_their_contents() {
        let err = SigningKey::es256_from_pem("").err().unwrap();
        assert!(err.contains("no `-----BEGIN PRIVATE KEY-----`"), "{err}");
        let err = SigningKey::es256_from_pem("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----")
            .err()
            .unwrap();
        assert!(err.contains("openssl pkcs8 -topk8"), "{err}");
        let err = SigningKey::es256_from_pem(&format!("{PEM_BEGIN}\n!!!!\n{PEM_END}")).err().unwrap();
        assert!(err.contains("base64"), "{err}");
        let err = SigningKey::es256_from_pem(&format!("{PEM_BEGIN}\nAAAA")).err().unwrap();
        assert!(err.contains("END PRIVATE KEY"), "{err}");
        // Each kind of key where the other is expected.
        let err = SigningKey::es256_from_pem(TEST_RSA_PEM).err().unwrap();
        assert!(err.contains("not a P-256"), "{err}");
        let err = SigningKey::rs256_from_pem(&p256_pem().0).err().unwrap();
        assert!(err.contains("not an RSA"), "{err}");
        assert!(!err.contains("MII") && !err.contains("MIG"), "{err}");
    }
}
