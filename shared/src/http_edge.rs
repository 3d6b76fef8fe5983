//! The HTTP edge of the API functions: the caller from the authorizer's claims, path parameters,
//! and the one mapping of every error to an RFC 9457 `application/problem+json` answer.
//!
//! Problem `type`s are stable URNs (`urn:exvid:problem:<slug>`) frontends may switch on.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::domain::auth::{authorize, Access, Action, AuthError, ClaimNames, Principal};
use crate::domain::ids::IdError;
use crate::domain::upload_request::IntakeError;
use crate::domain::video::{Ignored, Provider};
use crate::media_bucket::BucketError;
use crate::store::StoreError;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The line of a refused file the problem is about (caption files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: Option<String>,
    ) -> Self {
        Problem {
            type_uri: format!("urn:exvid:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            line: None,
        }
    }
}

/// Everything an API function can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("forbidden")]
    Forbidden,
    /// No record, or one the caller may not know about: the same answer either way.
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record (or the configured provider) needs a CDN or API this deployment has no
    /// configuration for.
    #[error("provider {0} is not configured")]
    ProviderNotConfigured(Provider),
    /// The request body is not an acceptable upload request.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// The exercise already belongs to another scope than the one asked for.
    #[error("exercise belongs to scope {stored}")]
    ScopeConflict { stored: String },
    /// No scope asked for and none implied by the caller's org.
    #[error("scope required")]
    ScopeRequired,
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A route this function does not serve.
    #[error("no such route")]
    NoRoute,
    /// A webhook whose signature does not verify (or is missing).
    #[error("webhook signature refused: {0}")]
    InvalidSignature(#[from] crate::bunny::webhook::SignatureError),
    /// A body over the endpoint's limit, refused before it is parsed.
    #[error("body of {size} bytes exceeds {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    /// A body that is not the JSON the endpoint takes.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// The video provider's API failed. `retryable`: it could not be reached or kept failing
    /// (503, retry later); otherwise it refused or answered nonsense (502).
    #[error("{provider} API failed: {detail}")]
    Upstream {
        provider: Provider,
        retryable: bool,
        detail: String,
    },
    /// The record refused the change (it moved on while the request ran).
    #[error("change refused: {0}")]
    Refused(Ignored),
    /// A multipart route named an upload that is not the exercise's upload in progress (a
    /// newer one replaced it, it completed, expired or was aborted).
    #[error("upload not in progress: {0}")]
    UploadNotActive(String),
    /// Part numbers or a completion the upload cannot take.
    #[error(transparent)]
    Parts(#[from] crate::domain::multipart::CompletionError),
    /// A playback report batch that is not CMCD exvid can take.
    #[error(transparent)]
    Report(#[from] crate::domain::cmcd::CmcdError),
    /// A playback session grant that does not verify (or has expired: 410, the player stops).
    #[error(transparent)]
    Grant(#[from] crate::domain::playback_session::GrantError),
    /// The playback session takes no more reports.
    #[error("playback session is full")]
    SessionFull,
    #[error(transparent)]
    Sessions(#[from] crate::store::playback::SessionStoreError),
    /// A query parameter the route cannot take.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A caption file or track refused; a file's refusal names its line.
    #[cfg(feature = "captions")]
    #[error(transparent)]
    Captions(#[from] crate::domain::captions::CaptionError),
    /// A change that needs a playing video (captions are checked against its duration).
    #[error("no video plays yet")]
    NotPlaying,
    /// A body of a type the route does not take.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// Automatic captions asked of a path that has none, or for a language that has a track.
    #[error("automatic captions: {0}")]
    AutomaticCaptions(String),
}

/// The one conversion of an access decision into the HTTP answer.
pub fn allowed(access: Access) -> Result<(), ApiError> {
    match access {
        Access::Allow => Ok(()),
        Access::Forbidden => Err(ApiError::Forbidden),
        Access::NotFound => Err(ApiError::NotFound),
    }
}

/// A domain refusal of a request's change, as `principal` may see it: another scope is a 409
/// naming it only to a caller who may read that scope (else a 404: no existence leak).
pub fn refusal(principal: &Principal, why: Ignored) -> ApiError {
    match why {
        Ignored::ScopeMismatch { stored, .. } => {
            if authorize(principal, Action::Read, &stored) == Access::NotFound {
                ApiError::NotFound
            } else {
                ApiError::ScopeConflict {
                    stored: stored.to_string(),
                }
            }
        }
        Ignored::NoRecord => ApiError::NotFound,
        other => ApiError::Refused(other),
    }
}

/// A Bunny API failure as the HTTP API reports it (details stay in the log): an outage is
/// retryable (503), a refusal or nonsense answer is not (502).
#[cfg(feature = "bunny")]
impl From<crate::bunny::client::BunnyError> for ApiError {
    fn from(e: crate::bunny::client::BunnyError) -> Self {
        ApiError::Upstream {
            provider: Provider::BunnyStream,
            retryable: matches!(e, crate::bunny::client::BunnyError::Unavailable { .. }),
            detail: e.to_string(),
        }
    }
}

impl ApiError {
    /// The single mapping from errors to HTTP answers. Details of server-side failures stay in
    /// the logs; the caller gets a stable type and a safe sentence.
    pub fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::InvalidId(e) => Problem::new(
                S::BAD_REQUEST,
                "invalid-id",
                "Invalid identifier",
                Some(e.to_string()),
            ),
            ApiError::Auth(_) | ApiError::Forbidden | ApiError::NotFound => self.access_problem(),
            ApiError::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                None,
            ),
            ApiError::Store(e) => store_problem(e),
            ApiError::Refused(_) => conflict("the video changed while this request ran; retry"),
            ApiError::Intake(e) => intake_problem(e),
            ApiError::ScopeConflict { .. } | ApiError::ScopeRequired => self.scope_problem(),
            ApiError::Bucket(_) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Temporarily unavailable",
                Some("media storage could not be reached; retry shortly".into()),
            ),
            ApiError::NoRoute => Problem::new(S::NOT_FOUND, "no-route", "No such endpoint", None),
            ApiError::InvalidSignature(e) => Problem::new(
                S::UNAUTHORIZED,
                "invalid-signature",
                "Invalid signature",
                Some(e.to_string()),
            ),
            ApiError::BodyTooLarge { limit, .. } => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Body too large",
                Some(format!("this endpoint takes at most {limit} bytes")),
            ),
            ApiError::MalformedBody(e) => Problem::new(
                S::BAD_REQUEST,
                "malformed-body",
                "Malformed request body",
                Some(e.clone()),
            ),
            ApiError::Upstream { .. } | ApiError::ProviderNotConfigured(_) => {
                self.provider_problem()
            }
            ApiError::UploadNotActive(why) => Problem::new(
                S::CONFLICT,
                "upload-not-active",
                "Upload not in progress",
                Some(why.clone()),
            ),
            ApiError::Parts(e) if e.ends_the_upload() => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "file-too-large",
                "File too large",
                Some(format!("{e}; the upload was aborted")),
            ),
            ApiError::Parts(e) => Problem::new(
                S::BAD_REQUEST,
                "invalid-parts",
                "Invalid parts",
                Some(e.to_string()),
            ),
            ApiError::Report(_)
            | ApiError::Grant(_)
            | ApiError::SessionFull
            | ApiError::Sessions(_)
            | ApiError::InvalidQuery(_) => self.playback_problem(),
            #[cfg(feature = "captions")]
            ApiError::Captions(e) => captions_problem(e),
            ApiError::NotPlaying => Problem::new(
                S::CONFLICT,
                "video-not-ready",
                "No video plays yet",
                Some("captions belong to a ready video; add them once it plays".into()),
            ),
            ApiError::UnsupportedMediaType(why) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                Some(why.clone()),
            ),
            ApiError::AutomaticCaptions(why) => Problem::new(
                S::CONFLICT,
                "automatic-captions-unavailable",
                "Automatic captions are not available",
                Some(why.clone()),
            ),
        }
    }

    fn playback_problem(&self) -> Problem {
        use crate::domain::cmcd::CmcdError;
        use crate::domain::playback_session::GrantError;
        use crate::store::playback::SessionStoreError;
        use StatusCode as S;
        let closed = || {
            Problem::new(
                S::GONE,
                "session-closed",
                "Playback session closed",
                Some("this playback session takes no more reports; start a new one".into()),
            )
        };
        match self {
            ApiError::Report(CmcdError::TooLarge) => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Body too large",
                Some(CmcdError::TooLarge.to_string()),
            ),
            ApiError::Report(e @ CmcdError::UnsupportedContentType(_)) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported report type",
                Some(e.to_string()),
            ),
            ApiError::Report(e) => Problem::new(
                S::BAD_REQUEST,
                "invalid-report",
                "Invalid playback report",
                Some(e.to_string()),
            ),
            ApiError::Grant(GrantError::Expired) | ApiError::SessionFull => closed(),
            ApiError::Grant(e) => Problem::new(
                S::FORBIDDEN,
                "invalid-grant",
                "Invalid playback session grant",
                Some(e.to_string()),
            ),
            ApiError::Sessions(SessionStoreError::BadCursor) | ApiError::InvalidQuery(_) => {
                Problem::new(
                    S::BAD_REQUEST,
                    "invalid-query",
                    "Invalid query",
                    Some(match self {
                        ApiError::InvalidQuery(why) => why.clone(),
                        _ => "the cursor is not one a previous page returned".into(),
                    }),
                )
            }
            ApiError::Sessions(SessionStoreError::Unavailable(_)) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Temporarily unavailable",
                Some("the session store could not be reached; retry shortly".into()),
            ),
            _ => Problem::new(S::INTERNAL_SERVER_ERROR, "internal", "Internal error", None),
        }
    }

    fn access_problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::Auth(AuthError::Unauthenticated) => Problem::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                Some("the request carries no authenticated subject".into()),
            ),
            ApiError::Auth(e) => Problem::new(
                S::FORBIDDEN,
                "invalid-claims",
                "Unusable credentials",
                Some(e.to_string()),
            ),
            ApiError::Forbidden => Problem::new(
                S::FORBIDDEN,
                "forbidden",
                "Not allowed",
                Some("your role does not allow this action on this exercise".into()),
            ),
            _ => Problem::new(
                S::NOT_FOUND,
                "not-found",
                "Not found",
                Some("no video for this exercise".into()),
            ),
        }
    }

    fn scope_problem(&self) -> Problem {
        match self {
            ApiError::ScopeConflict { stored } => Problem::new(
                StatusCode::CONFLICT,
                "scope-conflict",
                "Exercise belongs to another scope",
                Some(format!("this exercise's media belong to scope '{stored}'")),
            ),
            _ => Problem::new(
                StatusCode::BAD_REQUEST,
                "scope-required",
                "Scope required",
                Some(
                    "your token names no organisation; say which scope the exercise belongs to"
                        .into(),
                ),
            ),
        }
    }

    fn provider_problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::Upstream {
                retryable: true, ..
            } => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "provider-unavailable",
                "Video provider unavailable",
                Some("the video provider could not be reached; retry shortly".into()),
            ),
            ApiError::ProviderNotConfigured(p) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "provider-not-configured",
                "Provider not configured",
                Some(format!(
                    "this deployment has no configuration for {p} videos"
                )),
            ),
            _ => Problem::new(
                S::BAD_GATEWAY,
                "provider-error",
                "Video provider error",
                Some("the video provider refused the request; nothing was changed".into()),
            ),
        }
    }

    /// The answer; server-side failures are logged at error level, caller mistakes at info.
    pub fn into_response(self) -> Response<Body> {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, "request refused");
        }
        let unauthenticated = matches!(self, ApiError::Auth(AuthError::Unauthenticated));
        let mut response = problem_response(&problem);
        if unauthenticated {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            self,
            ApiError::Store(StoreError::Unavailable(_))
                | ApiError::Sessions(crate::store::playback::SessionStoreError::Unavailable(_))
                | ApiError::Bucket(_)
                | ApiError::Upstream {
                    retryable: true,
                    ..
                }
        ) {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("2"));
        }
        response
    }
}

fn conflict(detail: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "conflict",
        "Concurrent change",
        Some(detail.into()),
    )
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::Conflict { .. } | StoreError::Contended { .. } => {
            conflict("the video changed while this request ran; retry")
        }
        StoreError::PointerExists(_) => conflict("the provider video is already in use"),
        StoreError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Temporarily unavailable",
            Some("the video store could not be reached; retry shortly".into()),
        ),
        StoreError::Corrupt(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            None,
        ),
    }
}

#[cfg(feature = "captions")]
fn captions_problem(e: &crate::domain::captions::CaptionError) -> Problem {
    use crate::domain::captions::CaptionError as E;
    let mut p = match e {
        E::TooLarge { .. } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            Some(e.to_string()),
        ),
        E::Language(_) | E::Label => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-track",
            "Invalid caption track",
            Some(e.to_string()),
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-captions",
            "Invalid caption file",
            Some(e.to_string()),
        ),
    };
    p.line = e.line();
    p
}

fn intake_problem(e: &IntakeError) -> Problem {
    use StatusCode as S;
    let (status, slug, title) = match e {
        IntakeError::MalformedBody(_) => {
            (S::BAD_REQUEST, "malformed-body", "Malformed request body")
        }
        IntakeError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "file-too-large", "File too large"),
        IntakeError::Empty => (S::BAD_REQUEST, "empty-file", "Empty file"),
        IntakeError::UnsupportedType { .. } => (
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported file type",
        ),
        IntakeError::ExtensionMismatch { .. } => (
            S::BAD_REQUEST,
            "extension-mismatch",
            "File name does not match its type",
        ),
        IntakeError::InvalidScope(_) => (S::BAD_REQUEST, "invalid-id", "Invalid identifier"),
    };
    Problem::new(status, slug, title, Some(e.to_string()))
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::Binary(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn problem_response(problem: &Problem) -> Response<Body> {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = response(
        status,
        "application/problem+json",
        serde_json::to_vec(problem).unwrap_or_default(),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON success answer with an explicit `Cache-Control`.
pub fn json_response<T: Serialize>(
    status: StatusCode,
    body: &T,
    cache_control: &str,
) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = response(status, "application/json", bytes);
            if let Ok(v) = HeaderValue::from_str(cache_control) {
                r.headers_mut().insert(CACHE_CONTROL, v);
            }
            r.headers_mut()
                .insert("vary", HeaderValue::from_static("Authorization"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "response did not serialize");
            problem_response(&Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                None,
            ))
        }
    }
}

/// The caller, from the API Gateway v2 JWT authorizer's claims.
pub fn principal(req: &Request, names: &ClaimNames) -> Result<Principal, ApiError> {
    let empty = Default::default();
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .unwrap_or(&empty),
        _ => &empty,
    };
    Ok(Principal::from_claims(claims, names)?)
}

/// API Gateway's route key (`POST /v1/exercises/{id}/video`), else method and path.
pub fn route_key(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone(),
        _ => None,
    }
    .filter(|k| !k.is_empty() && k != "$default")
    .unwrap_or_else(|| format!("{} {}", req.method(), req.uri().path()))
}

/// The request body's bytes (API Gateway's base64 already undone by the runtime).
pub fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

/// A path parameter as API Gateway decoded it.
pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .map(str::to_owned)
}

/// API Gateway's request id (what its access logs show), else Lambda's.
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_rfc9457_json() {
        let r = ApiError::NotFound.into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
        let Body::Binary(bytes) = r.body() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v["type"], "urn:exvid:problem:not-found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["title"], "Not found");
    }

    #[test]
    fn server_details_do_not_leak() {
        let e = ApiError::Store(StoreError::Unavailable(
            "dynamodb.eu-west-1 secret-ish detail".into(),
        ));
        let p = e.problem();
        assert_eq!(p.status, 503);
        assert!(!serde_json::to_string(&p).unwrap().contains("secret-ish"));
        let r = e.into_response();
        assert_eq!(r.headers()["retry-after"], "2");
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let r = ApiError::Auth(AuthError::Unauthenticated).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
