//! Bunny's published Advanced (HS256) token vectors (`../shared/fixtures/bunny-token-vectors.json`):
//! the signer must reproduce every token and signed URL, and the verifier must accept each
//! signed URL (and refuse it once tampered or expired).

use std::net::IpAddr;
use std::path::PathBuf;

use exvid_shared::domain::playback_token::{
    sign_token, signed_url, verify, TokenKey, TokenOptions, UrlForm,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    path: String,
    user_ip: String,
    is_directory: bool,
    path_allowed: String,
    countries_allowed: String,
    countries_blocked: String,
    ignore_params: bool,
    speed_limit: u32,
    expect_token: String,
    expect_signed_url: String,
}

#[derive(Deserialize)]
struct Vectors {
    key: String,
    expires: i64,
    host: String,
    cases: Vec<Case>,
}

fn vectors() -> Vectors {
    let dir = std::env::var_os("EXVID_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let path = dir.join("bunny-token-vectors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); the shared fixtures must sit beside the repo or EXVID_FIXTURES_DIR must point at them",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("fixture parses")
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn ip(case: &Case) -> Option<IpAddr> {
    non_empty(&case.user_ip).map(|s| s.parse().expect("fixture ip"))
}

fn options(case: &Case) -> TokenOptions<'_> {
    TokenOptions {
        token_path: non_empty(&case.path_allowed),
        user_ip: ip(case),
        countries_allowed: non_empty(&case.countries_allowed),
        countries_blocked: non_empty(&case.countries_blocked),
        speed_limit: case.speed_limit,
        ignore_params: case.ignore_params,
        query: &[],
    }
}

#[test]
fn signer_reproduces_every_published_vector() {
    let v = vectors();
    assert_eq!(v.cases.len(), 15, "the published set has 15 cases");
    let key = TokenKey::new(v.key.as_bytes());
    for case in &v.cases {
        let opts = options(case);
        assert_eq!(
            sign_token(&key, &case.path, v.expires, &opts),
            case.expect_token,
            "token of {}",
            case.name
        );
        let form = if case.is_directory {
            UrlForm::Directory
        } else {
            UrlForm::Query
        };
        assert_eq!(
            signed_url(&key, &v.host, &case.path, v.expires, &opts, form),
            case.expect_signed_url,
            "signed URL of {}",
            case.name
        );
    }
}

#[test]
fn verifier_accepts_every_published_url_until_it_expires() {
    let v = vectors();
    let key = TokenKey::new(v.key.as_bytes());
    for case in &v.cases {
        let uri = case
            .expect_signed_url
            .strip_prefix(&v.host)
            .expect("vector URL starts with its host");
        let ok = verify(&key, uri, v.expires - 1, ip(case))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(ok.path, case.path, "{}", case.name);
        assert!(
            verify(&key, uri, v.expires, ip(case)).is_err(),
            "{} must expire",
            case.name
        );
        let tampered = uri.replacen("HS256-", "HS256-x", 1);
        assert!(
            verify(&key, &tampered, v.expires - 1, ip(case)).is_err(),
            "{}",
            case.name
        );
        assert!(
            verify(&TokenKey::new("AnotherKey"), uri, v.expires - 1, ip(case)).is_err(),
            "{}",
            case.name
        );
    }
}
