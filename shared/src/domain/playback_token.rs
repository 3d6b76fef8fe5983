//! CDN playback tokens: Bunny's Advanced (HS256) token format, used for both CDNs.
//!
//! `message = signature_path ‖ expires ‖ ip_bytes ‖ sorted k=v params joined by '&'`,
//! `token = "HS256-" + ("1-" if IP-bound) + base64url_nopad(HMAC-SHA256(key, message))`.
//!
//! HLS uses the *directory* (path) form with `token_path` set to the video's directory:
//! `https://host/bcdn_token=TOKEN&token_path=%2Fdir%2F&expires=E/dir/playlist.m3u8`. Relative
//! variant and segment URLs resolve under the token prefix, so native players (AVPlayer,
//! ExoPlayer) and hls.js need nothing special. Single files (MP4, poster) use the query form.
//! Bunny's edge checks these natively; the CloudFront Function and the local CDN use
//! [`verify`].

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "HS256-";
const IP_MARK: &str = "1-";
const DIRECTORY_MARK: &str = "/bcdn_token=";

/// Characters percent-encoded in URL parameter values (as `encodeURIComponent`, which Bunny's
/// own signers use: `/` -> `%2F`, `,` -> `%2C`).
const PARAM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The CDN's security key. Never printed.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        TokenKey(key.into())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Optional restrictions carried in (and signed with) a token.
#[derive(Debug, Clone, Default)]
pub struct TokenOptions<'a> {
    /// Directory the token is valid for; any path below it verifies.
    pub token_path: Option<&'a str>,
    /// Bind the token to the viewer's address (IPv6: its /64).
    pub user_ip: Option<IpAddr>,
    pub countries_allowed: Option<&'a str>,
    pub countries_blocked: Option<&'a str>,
    /// Bandwidth limit in kB/s; 0 = none.
    pub speed_limit: u32,
    /// Sign `token_ignore_params=true` instead of the URL's own parameters.
    pub ignore_params: bool,
    /// Query parameters the URL already has.
    pub query: &'a [(&'a str, &'a str)],
}

/// How the token is placed in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlForm {
    /// `host/path?token=…&expires=…`: for single files.
    Query,
    /// `host/bcdn_token=…&expires=…/path`: for directories (HLS).
    Directory,
}

/// The signed parameters, sorted by key (stable, so equal keys keep their order).
fn signed_params(opts: &TokenOptions<'_>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = if opts.ignore_params {
        vec![("token_ignore_params".into(), "true".into())]
    } else {
        let mut p: Vec<(String, String)> = opts
            .query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(c) = opts.countries_allowed.filter(|c| !c.is_empty()) {
            p.push(("token_countries".into(), c.into()));
        }
        if let Some(c) = opts.countries_blocked.filter(|c| !c.is_empty()) {
            p.push(("token_countries_blocked".into(), c.into()));
        }
        if opts.speed_limit > 0 {
            p.push(("limit".into(), opts.speed_limit.to_string()));
        }
        p
    };
    if let Some(tp) = opts.token_path.filter(|p| !p.is_empty()) {
        params.push(("token_path".into(), tp.into()));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// IPv4: its 4 bytes; IPv6: the first 8 bytes followed by 8 zero bytes (the /64).
fn ip_bytes(ip: Option<IpAddr>) -> Vec<u8> {
    match ip {
        None => Vec::new(),
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            o.to_vec()
        }
    }
}

fn compute(
    key: &TokenKey,
    signature_path: &str,
    expires: i64,
    ip: Option<IpAddr>,
    params: &[(String, String)],
) -> String {
    let mut mac = key.mac();
    mac.update(signature_path.as_bytes());
    mac.update(expires.to_string().as_bytes());
    mac.update(&ip_bytes(ip));
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            mac.update(b"&");
        }
        mac.update(k.as_bytes());
        mac.update(b"=");
        mac.update(v.as_bytes());
    }
    let digest = mac.finalize().into_bytes();
    let ip_mark = if ip.is_some() { IP_MARK } else { "" };
    format!("{PREFIX}{ip_mark}{}", URL_SAFE_NO_PAD.encode(digest))
}

/// The token for `path`, valid until `expires` (Unix seconds).
pub fn sign_token(key: &TokenKey, path: &str, expires: i64, opts: &TokenOptions<'_>) -> String {
    let signature_path = opts.token_path.filter(|p| !p.is_empty()).unwrap_or(path);
    compute(
        key,
        signature_path,
        expires,
        opts.user_ip,
        &signed_params(opts),
    )
}

/// A full signed URL. `base` is `scheme://host` (no trailing slash), `path` starts with `/`.
pub fn signed_url(
    key: &TokenKey,
    base: &str,
    path: &str,
    expires: i64,
    opts: &TokenOptions<'_>,
    form: UrlForm,
) -> String {
    let token = sign_token(key, path, expires, opts);
    let mut params = String::new();
    for (k, v) in signed_params(opts) {
        params.push('&');
        params.push_str(&k);
        params.push('=');
        params.extend(utf8_percent_encode(&v, PARAM_VALUE));
    }
    match form {
        UrlForm::Query => format!("{base}{path}?token={token}{params}&expires={expires}"),
        UrlForm::Directory => {
            format!("{base}{DIRECTORY_MARK}{token}{params}&expires={expires}{path}")
        }
    }
}

/// Why a request's token was refused. All of them answer 403 at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token expired")]
    Expired,
    #[error("path is outside the token's directory")]
    PathNotAllowed,
    #[error("path is not allowed")]
    UnsafePath,
    #[error("token is bound to an address and none was given")]
    AddressRequired,
    #[error("signature does not match")]
    BadSignature,
}

/// A request that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The path to fetch from the origin: the request path without the token prefix.
    pub path: String,
    pub expires: i64,
}

fn decode(value: &str) -> Result<String, TokenError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| TokenError::Malformed("parameter is not UTF-8"))
}

fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// Rejects `.`/`..` segments (also percent-encoded), empty segments, backslashes and
/// percent-encoded unreserved characters, so a token for one directory can never reach another
/// through path tricks, and every rule about a path (e.g. "never an original") judges the
/// path the origin will fetch: `%6Friginal.mp4` is refused, not taken for a file other than
/// `original.mp4`.
fn check_path(path: &str) -> Result<(), TokenError> {
    let body = path.strip_prefix('/').ok_or(TokenError::UnsafePath)?;
    if path.contains('\\') || encodes_unreserved(path) {
        return Err(TokenError::UnsafePath);
    }
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let decoded = decode(segment).map_err(|_| TokenError::UnsafePath)?;
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\']) {
            return Err(TokenError::UnsafePath);
        }
        // An empty segment is allowed only at the end (a directory path like `/abc/`).
        if segment.is_empty() && !last {
            return Err(TokenError::UnsafePath);
        }
    }
    Ok(())
}

/// A `%XX` escape of a letter, digit, `-`, `.`, `_` or `~`: never produced by an encoder
/// (RFC 3986 §2.3), only by someone disguising a path.
fn encodes_unreserved(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    })
}

/// `path` is `dir` itself or below it. A `dir` without a trailing `/` still only matches on a
/// segment boundary (`/abc` allows `/abc/x`, not `/abcdef`).
fn within(path: &str, dir: &str) -> bool {
    if dir.ends_with('/') {
        path.starts_with(dir)
    } else {
        path == dir
            || path
                .strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Checks a request URI (`/path?query` as the CDN received it) against `key` at `now`.
/// `client_ip` is needed only for IP-bound tokens.
pub fn verify(
    key: &TokenKey,
    uri: &str,
    now: i64,
    client_ip: Option<IpAddr>,
) -> Result<Verified, TokenError> {
    let (token, path, pairs) = split_token(uri)?;
    check_path(path)?;
    let (expires, params) = signed_parameters(pairs)?;

    let token_path = params
        .iter()
        .find(|(k, _)| k == "token_path")
        .map(|(_, v)| v.as_str());
    if let Some(dir) = token_path {
        if !within(path, dir) {
            return Err(TokenError::PathNotAllowed);
        }
    }
    let signature_path = token_path.unwrap_or(path);

    let body = token
        .strip_prefix(PREFIX)
        .ok_or(TokenError::Malformed("not an HS256 token"))?;
    let ip = if body.starts_with(IP_MARK) {
        Some(client_ip.ok_or(TokenError::AddressRequired)?)
    } else {
        None
    };
    let expected = compute(key, signature_path, expires, ip, &params);
    if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
        return Err(TokenError::BadSignature);
    }
    if now >= expires {
        return Err(TokenError::Expired);
    }
    Ok(Verified {
        path: path.to_owned(),
        expires,
    })
}

/// The token, the file path and the other raw `k=v` pairs, from either form: the directory
/// form (`/bcdn_token=…&expires=…/path`) or the query form (`/path?token=…&expires=…`).
fn split_token(uri: &str) -> Result<(String, &str, Vec<&str>), TokenError> {
    let (raw_path, query) = uri.split_once('?').unwrap_or((uri, ""));
    if let Some(rest) = raw_path.strip_prefix(DIRECTORY_MARK) {
        // A second token in the query would make the URL mean two things (which token, which
        // expiry?): refused. Found by the `playback_token` fuzz target, which signed a path
        // that itself began with a (valid) directory token.
        if query.split('&').any(|pair| split_pair(pair).0 == "token") {
            return Err(TokenError::Malformed("two tokens"));
        }
        let slash = rest
            .find('/')
            .ok_or(TokenError::Malformed("directory token without a path"))?;
        let (segment, path) = rest.split_at(slash);
        let mut pairs = segment.split('&');
        let token = decode(pairs.next().unwrap_or_default())?;
        return Ok((token, path, pairs.collect()));
    }
    let mut token = None;
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match split_pair(pair) {
            ("token", v) => {
                if token.replace(decode(v)?).is_some() {
                    return Err(TokenError::Malformed("duplicate token"));
                }
            }
            _ => pairs.push(pair),
        }
    }
    Ok((token.ok_or(TokenError::Missing)?, raw_path, pairs))
}

/// `expires` and the other signed parameters (decoded, sorted by name); any duplicate is
/// malformed rather than silently resolved one way.
fn signed_parameters(pairs: Vec<&str>) -> Result<(i64, Vec<(String, String)>), TokenError> {
    let mut expires = None;
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in pairs {
        let (k, v) = split_pair(pair);
        let (k, v) = (decode(k)?, decode(v)?);
        if k == "expires" {
            let e: i64 = v
                .parse()
                .map_err(|_| TokenError::Malformed("expires is not a number"))?;
            if expires.replace(e).is_some() {
                return Err(TokenError::Malformed("duplicate expires"));
            }
        } else if k == "token" {
            return Err(TokenError::Malformed("duplicate token"));
        } else {
            if params.iter().any(|(seen, _)| seen == &k) {
                return Err(TokenError::Malformed("duplicate parameter"));
            }
            params.push((k, v));
        }
    }
    let expires = expires.ok_or(TokenError::Malformed("no expires"))?;
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((expires, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "test-key-1234";
    const NOW: i64 = 1_800_000_000;

    fn key() -> TokenKey {
        TokenKey::new(KEY)
    }

    fn dir_url(dir: &str, file: &str, expires: i64) -> String {
        let opts = TokenOptions {
            token_path: Some(dir),
            ..Default::default()
        };
        signed_url(
            &key(),
            "",
            &format!("{dir}{file}"),
            expires,
            &opts,
            UrlForm::Directory,
        )
    }

    #[test]
    fn directory_token_covers_every_file_below_the_directory() {
        let url = dir_url("/vid-1/", "playlist.m3u8", NOW + 60);
        assert!(url.starts_with("/bcdn_token=HS256-"));
        assert!(url.contains("&token_path=%2Fvid-1%2F&expires="));
        let v = verify(&key(), &url, NOW, None).unwrap();
        assert_eq!(v.path, "/vid-1/playlist.m3u8");
        // A player resolves relative URLs against the token prefix.
        let prefix = &url[..url.len() - "playlist.m3u8".len()];
        for rel in ["720p/video.m3u8", "720p/video0.ts", "thumbnail.jpg"] {
            let v = verify(&key(), &format!("{prefix}{rel}"), NOW, None).unwrap();
            assert_eq!(v.path, format!("/vid-1/{rel}"));
        }
    }

    /// Found by the `playback_token` fuzz target: a directory-form URL that also carries a
    /// query token was verified on its directory token alone.
    #[test]
    fn a_url_with_two_tokens_is_refused() {
        let url = dir_url("/vid-1/", "playlist.m3u8", NOW + 60);
        assert!(verify(&key(), &url, NOW, None).is_ok());
        for query in ["?token=HS256-x&expires=1", "?a=1&token=", "?token"] {
            assert_eq!(
                verify(&key(), &format!("{url}{query}"), NOW, None),
                Err(TokenError::Malformed("two tokens")),
                "{query}"
            );
        }
        // Other query parameters stay as they were (ignored by the directory form).
        assert!(verify(&key(), &format!("{url}?v=2"), NOW, None).is_ok());
    }

    #[test]
    fn directory_token_fails_for_another_directory() {
        let url = dir_url("/vid-1/", "playlist.m3u8", NOW + 60);
        let (prefix, _) = url.split_at(url.find("/vid-1/playlist").unwrap());
        assert_eq!(
            verify(&key(), &format!("{prefix}/vid-2/playlist.m3u8"), NOW, None),
            Err(TokenError::PathNotAllowed)
        );
        assert_eq!(
            verify(&key(), &format!("{prefix}/vid-1x/playlist.m3u8"), NOW, None),
            Err(TokenError::PathNotAllowed)
        );
        // Escaping through dot segments, raw or encoded, is refused before anything else.
        for trick in [
            "/vid-1/../vid-2/a.ts",
            "/vid-1/%2e%2e/vid-2/a.ts",
            "/vid-1/%2E%2E/x",
            "/vid-1//x",
            "/vid-1/a%2Fb",
        ] {
            assert_eq!(
                verify(&key(), &format!("{prefix}{trick}"), NOW, None),
                Err(TokenError::UnsafePath),
                "{trick}"
            );
        }
    }

    #[test]
    fn a_moved_token_path_breaks_the_signature() {
        let url = dir_url("/vid-1/", "playlist.m3u8", NOW + 60);
        let forged = url
            .replace("token_path=%2Fvid-1%2F", "token_path=%2Fvid-2%2F")
            .replace("/vid-1/playlist", "/vid-2/playlist");
        assert_eq!(
            verify(&key(), &forged, NOW, None),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_tokens_fail() {
        let url = dir_url("/vid-1/", "a.ts", NOW + 60);
        assert!(verify(&key(), &url, NOW + 59, None).is_ok());
        assert_eq!(
            verify(&key(), &url, NOW + 60, None),
            Err(TokenError::Expired)
        );
        // Extending the expiry by hand breaks the signature.
        let extended = url.replace(
            &format!("expires={}", NOW + 60),
            &format!("expires={}", NOW + 6000),
        );
        assert_eq!(
            verify(&key(), &extended, NOW + 100, None),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn changing_any_single_token_character_fails() {
        let url = dir_url("/vid-1/", "a.ts", NOW + 60);
        let start = url.find("HS256-").unwrap() + "HS256-".len();
        let end = url.find('&').unwrap();
        for i in start..end {
            let mut bytes = url.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                verify(&key(), &tampered, NOW, None).is_err(),
                "position {i}"
            );
        }
        assert_eq!(
            verify(&TokenKey::new("other-key"), &url, NOW, None),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn query_form_round_trips() {
        let url = signed_url(
            &key(),
            "https://cdn.example",
            "/vid-1/play_720p.mp4",
            NOW + 60,
            &TokenOptions::default(),
            UrlForm::Query,
        );
        let uri = url.strip_prefix("https://cdn.example").unwrap();
        assert_eq!(
            verify(&key(), uri, NOW, None).unwrap().path,
            "/vid-1/play_720p.mp4"
        );
        assert_eq!(
            verify(&key(), &uri.replace("720p", "1080p"), NOW, None),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_requests_are_refused_not_panicked_on() {
        for uri in [
            "/vid-1/a.ts",
            "/vid-1/a.ts?expires=1",
            "/bcdn_token=HS256-x&expires=1",
            "/bcdn_token=HS256-x&expires=soon/vid-1/a.ts",
            "/bcdn_token=HS256-x/vid-1/a.ts",
            "/bcdn_token=HS256-x&expires=1&expires=2/vid-1/a.ts",
            "/a.ts?token=x&token=y&expires=1",
            "/a.ts?token=%ff&expires=1",
            "/bcdn_token=HS256-1-abc&expires=9999999999/a.ts",
            "",
            "?",
        ] {
            assert!(verify(&key(), uri, NOW, None).is_err(), "{uri}");
        }
        assert_eq!(
            verify(
                &key(),
                "/bcdn_token=HS256-1-abc&expires=9999999999/a.ts",
                NOW,
                None
            ),
            Err(TokenError::AddressRequired)
        );
    }

    #[test]
    fn ipv6_tokens_bind_to_the_64() {
        let ip: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let opts = TokenOptions {
            user_ip: Some(ip),
            ..Default::default()
        };
        let url = signed_url(&key(), "", "/f.mp4", NOW + 60, &opts, UrlForm::Query);
        assert!(url.contains("token=HS256-1-"));
        assert!(verify(&key(), &url, NOW, Some(same_64)).is_ok());
        assert_eq!(
            verify(&key(), &url, NOW, Some(other_64)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert!(!format!("{:?}", key()).contains(KEY));
    }

    #[test]
    fn an_encoded_unreserved_character_is_refused_even_when_validly_signed() {
        let key = key();
        for path in [
            "/org-a/exercises/ex-1/video/%6Friginal.mp4",
            "/org-a/exercises/ex-1/video/u1/poster/p%2Ejpg",
            "/org-a/%65xercises/ex-1/video/u1/hls/original.m3u8",
        ] {
            let url = signed_url(
                &key,
                "",
                path,
                NOW + 60,
                &TokenOptions::default(),
                UrlForm::Query,
            );
            assert_eq!(
                verify(&key, &url, NOW, None),
                Err(TokenError::UnsafePath),
                "{path}"
            );
        }
        // Other escapes (a space) are not a disguise.
        let url = signed_url(
            &key,
            "",
            "/a/b%20c.jpg",
            NOW + 60,
            &TokenOptions::default(),
            UrlForm::Query,
        );
        assert!(verify(&key, &url, NOW, None).is_ok());
    }
}
