//! Development JWTs: the local cloud's stand-in for the identity provider and API Gateway's JWT
//! authorizer. HS256 with a local key; the gateway checks signature, `exp`, `iss` and `aud`
//! like the authorizer does and hands the claims on, stringified as API Gateway does.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Issuer and audience of local tokens (the template's `JwtIssuer`/`JwtAudience` in AWS).
pub const ISSUER: &str = "https://auth.exvid.localhost/";
pub const AUDIENCE: &str = "exvid-local";
/// The local signing key. Development only: anyone with the repo can mint tokens with it.
pub const SIGNING_KEY: &[u8] = b"exvid-devstack-local-jwt-signing-key";
/// Lifetime of a minted token.
pub const TOKEN_TTL_SECONDS: i64 = 12 * 3600;

fn mac() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(SIGNING_KEY).expect("HMAC takes any key length")
}

/// A token for `sub` in `org` with `roles`, valid from `now` for [`TOKEN_TTL_SECONDS`].
pub fn mint(sub: &str, org: Option<&str>, roles: &[&str], now: i64) -> String {
    let mut claims = json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + TOKEN_TTL_SECONDS, "roles": roles,
    });
    if let Some(org) = org {
        claims["org_id"] = json!(org);
    }
    sign(&claims)
}

/// Signs arbitrary claims (tests use it for expired or foreign tokens).
pub fn sign(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut m = mac();
    m.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// Why the authorizer refuses a request (always 401 to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("wrong issuer or audience")]
    Audience,
}

/// Checks an `Authorization` header value and returns the claims as API Gateway passes them to
/// the function: every value a string, arrays as `[a b]`.
pub fn authorize(header: Option<&str>, now: i64) -> Result<Map<String, Value>, JwtError> {
    let token = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(JwtError::Missing)?;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |x: &str| URL_SAFE_NO_PAD.decode(x).map_err(|_| JwtError::Malformed);
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let mut m = mac();
    m.update(format!("{h}.{p}").as_bytes());
    let expected = m.finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(&decode(s)?)) {
        return Err(JwtError::Signature);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Malformed)?;
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp > now => {}
        _ => return Err(JwtError::Expired),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    if !aud_ok || claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return Err(JwtError::Audience);
    }
    Ok(claims
        .into_iter()
        .map(|(k, v)| (k, Value::String(stringify(&v))))
        .collect())
}

/// API Gateway's rendering of a claim value.
fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(stringify).collect::<Vec<_>>().join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_287_600;

    #[test]
    fn minted_tokens_pass_with_claims_as_api_gateway_gives_them() {
        let t = mint("dev-admin", Some("org-a"), &["admin", "specialist"], NOW);
        let claims = authorize(Some(&format!("Bearer {t}")), NOW + 60).unwrap();
        assert_eq!(claims["sub"], "dev-admin");
        assert_eq!(claims["org_id"], "org-a");
        assert_eq!(claims["roles"], "[admin specialist]");
        assert_eq!(claims["exp"], (NOW + TOKEN_TTL_SECONDS).to_string());
    }

    #[test]
    fn bad_tokens_are_refused() {
        let t = mint("u", Some("org-a"), &["admin"], NOW);
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(authorize(None, NOW), Err(JwtError::Missing));
        assert_eq!(authorize(Some(&t), NOW), Err(JwtError::Missing));
        assert_eq!(
            authorize(Some(&bearer("a.b")), NOW),
            Err(JwtError::Malformed)
        );
        assert_eq!(
            authorize(Some(&bearer(&t)), NOW + TOKEN_TTL_SECONDS),
            Err(JwtError::Expired)
        );
        // Another payload under the same signature.
        let (h, rest) = t.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let forged_payload = URL_SAFE_NO_PAD.encode(
            json!({"sub":"u","org_id":"org-b","roles":["superadmin"],"iss":ISSUER,"aud":AUDIENCE,"exp":NOW+60}).to_string(),
        );
        assert_eq!(
            authorize(Some(&bearer(&format!("{h}.{forged_payload}.{sig}"))), NOW),
            Err(JwtError::Signature)
        );
        // alg "none" is not an option.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            authorize(Some(&bearer(&format!("{none}.{forged_payload}."))), NOW),
            Err(JwtError::Algorithm)
        );
        let foreign =
            sign(&json!({"sub":"u","iss":"https://elsewhere/","aud":AUDIENCE,"exp":NOW+60}));
        assert_eq!(
            authorize(Some(&bearer(&foreign)), NOW),
            Err(JwtError::Audience)
        );
    }
}
