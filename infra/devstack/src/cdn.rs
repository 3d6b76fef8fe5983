//! The local CDNs: Bunny's pull zone and CloudFront, each on its own port. Every request must
//! carry a valid HS256 token (directory or query form), checked by the same
//! [`playback_token::verify`] the CloudFront Function mirrors; anything else is a 403, and an
//! uploaded original is never served. Objects come from S3 (moto) with their content type,
//! byte ranges (MP4 seeking) and CORS for the page.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use exvid_shared::domain::media_keys;
use exvid_shared::domain::playback_token::{verify, TokenKey};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::Request;

use crate::http_util::{allow_origin, header, local_origin, Resp};
use crate::mediaconvert::Say;
use crate::object_store::ObjectStore;

/// The Content-Security-Policy of every served file (the template's response headers policy).
pub const MEDIA_CSP: &str =
    "default-src 'none'; img-src 'self' data:; media-src 'self' blob:; style-src 'unsafe-inline'; sandbox";

#[derive(Clone)]
pub struct Cdn {
    pub name: &'static str,
    pub key: TokenKey,
    pub bucket: String,
    /// CloudFront's origin holds the originals too: refuse them (Bunny's has none).
    pub refuse_originals: bool,
    pub store: ObjectStore,
    pub say: Say,
}

fn answer(status: StatusCode, origin: Option<&str>) -> http::response::Builder {
    allow_origin(
        http::Response::builder().status(status),
        origin,
        "content-length, content-range, accept-ranges",
    )
}

fn cache_control(key: &str) -> &'static str {
    if key.ends_with(".m3u8") || key.ends_with(".vtt") {
        "no-cache"
    } else {
        "private, max-age=60"
    }
}

fn empty(b: http::response::Builder) -> Resp {
    b.header("cache-control", "no-store")
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

impl Cdn {
    pub async fn handle(self, req: Request<Incoming>) -> Resp {
        let origin = local_origin(&req);
        let origin = origin.as_deref();
        match *req.method() {
            Method::OPTIONS => {
                return empty(
                    answer(StatusCode::NO_CONTENT, origin)
                        .header("access-control-allow-methods", "GET, HEAD, OPTIONS")
                        .header("access-control-allow-headers", "range")
                        .header("access-control-max-age", "600"),
                )
            }
            Method::GET | Method::HEAD => {}
            _ => return empty(answer(StatusCode::METHOD_NOT_ALLOWED, origin)),
        }
        let uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let verified = match verify(&self.key, &uri, now, None) {
            Ok(v) => v,
            Err(e) => {
                (self.say)(format!("{}: 403 {} ({e})", self.name, req.uri().path()));
                return empty(answer(StatusCode::FORBIDDEN, origin));
            }
        };
        if self.refuse_originals && media_keys::is_original(&verified.path) {
            (self.say)(format!(
                "{}: 403 {} (an original)",
                self.name, verified.path
            ));
            return empty(answer(StatusCode::FORBIDDEN, origin));
        }
        let key = verified.path.trim_start_matches('/');
        let range = header(&req, "range").filter(|r| r.starts_with("bytes="));
        let object = match self.store.get(&self.bucket, key, range).await {
            Ok(Some(o)) => o,
            Ok(None) => return empty(answer(StatusCode::NOT_FOUND, origin)),
            Err(e) => {
                (self.say)(format!("{}: origin error for {key}: {e}", self.name));
                if range.is_some() && e.contains("InvalidRange") {
                    return empty(answer(StatusCode::RANGE_NOT_SATISFIABLE, origin));
                }
                return empty(answer(StatusCode::BAD_GATEWAY, origin));
            }
        };
        let status = if object.content_range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let mut b = answer(status, origin)
            .header("content-type", &object.content_type)
            .header("accept-ranges", "bytes")
            // Playlists and captions change in place (a caption track rewrites the master):
            // revalidated each time, as the distribution keeps them seconds (PlaylistCachePolicy).
            .header("cache-control", cache_control(key))
            // As the distribution's response headers policy: never sniffed, no script in an
            // SVG opened as a document.
            .header("x-content-type-options", "nosniff")
            .header("content-security-policy", MEDIA_CSP);
        if let Some(cr) = &object.content_range {
            b = b.header("content-range", cr);
        }
        if let Some(etag) = &object.etag {
            b = b.header("etag", etag);
        }
        let body = if req.method() == Method::HEAD {
            b = b.header("content-length", object.body.len());
            Bytes::new()
        } else {
            object.body
        };
        b.body(Full::new(body)).expect("valid response")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn serves_the_csp_the_distribution_sets() {
        let template = include_str!("../../../template.yaml");
        assert!(template.contains(&format!("ContentSecurityPolicy: \"{}\"", super::MEDIA_CSP)));
    }
}
