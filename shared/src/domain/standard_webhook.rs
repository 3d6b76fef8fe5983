//! Outbound webhook signatures per the Standard Webhooks spec (standardwebhooks.com): headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`), secret `whsec_<base64>`.
//! Any of the spec's reference libraries verifies what this signs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A subscriber signing secret. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_ followed by base64")]
    Malformed,
    #[error("a webhook secret must hold 24 to 64 bytes of key")]
    Length,
}

impl WebhookSecret {
    /// `whsec_` + base64 of 24..=64 random bytes (the spec's form; the prefix is required
    /// here so a secret meant for something else is not taken by mistake).
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let key = s
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(SecretError::Malformed)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(WebhookSecret(key))
    }

    /// The `webhook-signature` value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new(); // HMAC takes keys of any length
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The three headers of one delivery attempt (signed at `timestamp`: receivers reject
    /// old timestamps, so every retry is signed anew with the same id and body).
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.sign(id, timestamp, body)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the spec's reference test suites (standard-webhooks/libraries).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;

    #[test]
    fn signs_the_reference_example() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(
            secret.sign(ID, TS, BODY.as_bytes()),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn malformed_secrets_are_refused_and_never_printed() {
        for bad in ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!"] {
            assert_eq!(
                WebhookSecret::parse(bad).unwrap_err(),
                SecretError::Malformed,
                "{bad}"
            );
        }
        for short in ["whsec_", "whsec_c2hvcnQ="] {
            assert_eq!(
                WebhookSecret::parse(short).unwrap_err(),
                SecretError::Length
            );
        }
        let s = WebhookSecret::parse(SECRET).unwrap();
        assert!(!format!("{s:?}").contains("MfKQ"));
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        let h = s.headers(ID, TS, BODY.as_bytes());
        assert_eq!(h[0], ("webhook-id", ID.to_owned()));
        assert_eq!(h[1], ("webhook-timestamp", TS.to_string()));
        assert_eq!(h[2].1, s.sign(ID, TS, BODY.as_bytes()));
    }
}
