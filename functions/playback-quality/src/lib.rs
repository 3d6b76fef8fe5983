//! Playback quality: players' CMCD reports in, bandwidth stats out.
//!
//! - `POST /v1/media/sessions/{sid}/cmcd?grant=…`: a batch of CMCD records for a playback
//!   session that `GET …/video` granted to the caller (hls.js `cmcd.eventTargets`, or any
//!   reporter posting the same lines or CTA-5004 JSON). One DynamoDB write, no read: 204. A
//!   grant for another viewer or session is a 404 like a missing session; an expired grant or
//!   a full session a 410 (CMCD's "stop sending"); a bad batch a 400 naming record and key.
//! - `GET /v1/media/bandwidth/stats`: per session the figures and verdicts of
//!   [`Quality`], per exercise the share of degraded sessions; by `session`, by `exercise` or
//!   by viewer organisation and `day`, filtered by `viewer` and `from`/`to`, paginated. A
//!   patient sees only their own sessions; specialists and admins those watched in their org;
//!   another org's session is a 404 or simply absent, exactly like a missing one.
//!
//! Logs carry ids only: never a grant, a user agent or a record's values.

use std::collections::BTreeMap;

use lambda_http::http::header::{CONTENT_TYPE, USER_AGENT};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

use exvid_shared::config::{playback_session_key, ConfigError, Env};
use exvid_shared::domain::auth::{ClaimNames, Principal, Role};
use exvid_shared::domain::clock::{Clock, Timestamp};
use exvid_shared::domain::cmcd::{self, CmcdError, Form};
use exvid_shared::domain::ids::{ExerciseId, OrgId};
use exvid_shared::domain::playback_quality::{record_key, Quality, Verdict};
use exvid_shared::domain::playback_session::{Grant, GrantError, GrantKey, SessionId, ViewerId};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::store::playback::{Listing, PlayerClass, Recorded, Session, SessionStore};

/// The function's configuration.
#[derive(Debug, Clone)]
pub struct QualityConfig {
    pub table_name: String,
    pub grant_key: GrantKey,
    /// Days a session is kept (the item's TTL).
    pub retention_days: u32,
    pub claims: ClaimNames,
}

impl QualityConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let retention_days: u32 = env.parsed_or("PLAYBACK_SESSION_RETENTION_DAYS", 30)?;
        if !(1..=365).contains(&retention_days) {
            return Err(ConfigError::Invalid {
                name: "PLAYBACK_SESSION_RETENTION_DAYS",
                reason: "must be between 1 and 365 days".into(),
            });
        }
        Ok(QualityConfig {
            table_name: env.required("TABLE_NAME")?,
            grant_key: grant_key(env)?,
            retention_days,
            claims: env.claim_names(),
        })
    }
}

/// `PLAYBACK_SESSION_KEY`: required here (playback signs the grants this function checks).
pub fn grant_key(env: &Env<'_>) -> Result<GrantKey, ConfigError> {
    playback_session_key(env)?.ok_or(ConfigError::Missing("PLAYBACK_SESSION_KEY"))
}

/// One session in the stats answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStats {
    pub session_id: String,
    pub exercise_id: String,
    pub viewer_id: String,
    pub player: PlayerClass,
    pub started_at: String,
    pub updated_at: String,
    /// The session's figures (startup, throughput, rungs, rebuffering, errors, …).
    #[serde(flatten)]
    pub quality: Quality,
    /// The whole session's verdict and the rule that made it.
    pub verdict: Verdict,
    pub verdict_rule: String,
    /// The last minute's (what `playback.degraded` / `playback.recovered` follow).
    pub current_verdict: Verdict,
    pub current_rule: String,
}

impl SessionStats {
    pub fn of(session: &Session) -> Self {
        let q = Quality::of_session(&session.records);
        let verdict = q.session_verdict();
        let current = Quality::of_current_window(&session.records).current_verdict();
        SessionStats {
            session_id: session.sid.to_string(),
            exercise_id: session.exercise_id.to_string(),
            viewer_id: session.viewer.to_string(),
            player: session.player,
            started_at: session.started_at.to_rfc3339(),
            updated_at: session.updated_at.to_rfc3339(),
            quality: q,
            verdict: verdict.verdict,
            verdict_rule: verdict.rule,
            current_verdict: current.verdict,
            current_rule: current.rule,
        }
    }
}

/// One exercise in the stats answer (over the sessions of the answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExerciseStats {
    pub exercise_id: String,
    pub sessions: u32,
    /// Sessions whose verdict is degraded or poor.
    pub degraded_sessions: u32,
    pub degraded_share: f64,
}

/// `GET /v1/media/bandwidth/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    pub sessions: Vec<SessionStats>,
    pub exercises: Vec<ExerciseStats>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

fn exercise_stats(sessions: &[SessionStats]) -> Vec<ExerciseStats> {
    let mut by: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in sessions {
        let e = by.entry(&s.exercise_id).or_default();
        e.0 += 1;
        if s.verdict != Verdict::Good {
            e.1 += 1;
        }
    }
    by.into_iter()
        .map(|(id, (n, degraded))| ExerciseStats {
            exercise_id: id.to_owned(),
            sessions: n,
            degraded_sessions: degraded,
            degraded_share: f64::from(degraded) / f64::from(n),
        })
        .collect()
}

/// Whether `principal` may see `session`: superadmins all; a caller who is only a patient
/// their own; specialists and admins the sessions watched in their organisation.
pub fn may_see(principal: &Principal, session: &Session) -> bool {
    if principal.has(Role::Superadmin) {
        return true;
    }
    if session.viewer.as_str() == principal.subject {
        return true;
    }
    let staff = principal.has(Role::Specialist) || principal.has(Role::Admin);
    staff && session.org.is_some() && session.org == principal.org
}

/// The longest span one listing may cover.
const MAX_SPAN_SECONDS: u64 = 31 * 86_400;

/// The function: dependencies built once in `main`.
pub struct PlaybackQuality<S, C> {
    sessions: S,
    clock: C,
    config: QualityConfig,
}

impl<S: SessionStore, C: Clock> PlaybackQuality<S, C> {
    pub fn new(sessions: S, clock: C, config: QualityConfig) -> Self {
        PlaybackQuality {
            sessions,
            clock,
            config,
        }
    }

    /// Answers one request; every failure becomes a problem+json response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!(
            "playback_quality",
            request_id = %http_edge::request_id(&req),
            session_id = tracing::field::Empty,
            exercise_id = tracing::field::Empty,
        );
        async {
            match self.serve(&req).await {
                Ok(response) => {
                    tracing::info!(status = response.status().as_u16(), "answered");
                    response
                }
                Err(e) => e.into_response(),
            }
        }
        .instrument(span)
        .await
    }

    async fn serve(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().trim_end_matches('/');
        match (req.method(), path) {
            (&Method::POST, p) if p.starts_with("/v1/media/sessions/") && p.ends_with("/cmcd") => {
                self.report(req).await
            }
            (&Method::GET, "/v1/media/bandwidth/stats") => self.stats(req).await,
            (_, "/v1/media/bandwidth/stats") => Err(ApiError::MethodNotAllowed),
            _ => Err(ApiError::NoRoute),
        }
    }

    async fn report(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let principal = http_edge::principal(req, &self.config.claims)?;
        let sid = SessionId::parse(&http_edge::path_param(req, "sid").unwrap_or_default())?;
        tracing::Span::current().record("session_id", sid.as_str());
        let now = self.clock.now();
        let params = req.query_string_parameters();
        let token = params.first("grant").ok_or(GrantError::Malformed)?;
        let grant = Grant::verify(token, &self.config.grant_key, now)?;
        // A grant for another session or viewer: as if the session did not exist.
        if grant.sid != sid || grant.viewer.as_str() != principal.subject {
            return Err(ApiError::NotFound);
        }
        tracing::Span::current().record("exercise_id", grant.exercise_id.as_str());
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let form = Form::from_content_type(content_type)?;
        let batch = cmcd::parse(http_edge::body_bytes(req), form)?;
        let mut keyed = Vec::with_capacity(batch.records.len());
        let mut unkeyed = 0;
        for (i, (ids, record)) in batch.records.into_iter().enumerate() {
            if ids
                .sid
                .as_deref()
                .is_some_and(|s| SessionId::parse(s).ok() != Some(sid.clone()))
            {
                return Err(CmcdError::InvalidValue {
                    record: i + 1,
                    key: "sid",
                    reason: "is not this playback session".into(),
                }
                .into());
            }
            if ids
                .cid
                .as_deref()
                .is_some_and(|c| c != grant.exercise_id.as_str())
            {
                return Err(CmcdError::InvalidValue {
                    record: i + 1,
                    key: "cid",
                    reason: "is not this session's exercise".into(),
                }
                .into());
            }
            match record_key(&record) {
                Some(key) => keyed.push((key, record)),
                None => unkeyed += 1,
            }
        }
        if keyed.is_empty() {
            tracing::info!(unkeyed, skipped = batch.skipped_newer, "nothing to store");
            return Ok(no_content());
        }
        let ua = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
        let new = Session::new(
            &grant,
            PlayerClass::from_user_agent(ua),
            now,
            self.config.retention_days,
        );
        match self.sessions.record(&new, &keyed, now).await? {
            Recorded::Stored => {
                tracing::info!(records = keyed.len(), unkeyed, "reports stored");
                Ok(no_content())
            }
            Recorded::Full => Err(ApiError::SessionFull),
            Recorded::NotYours => Err(ApiError::NotFound),
        }
    }

    async fn stats(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let principal = http_edge::principal(req, &self.config.claims)?;
        let params = req.query_string_parameters();
        let invalid = |why: String| ApiError::InvalidQuery(why);
        let viewer = params
            .first("viewer")
            .map(ViewerId::parse)
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        let now = self.clock.now();
        let time = |name: &str| {
            params
                .first(name)
                .map(|v| {
                    Timestamp::parse_rfc3339(v)
                        .map_err(|_| invalid(format!("{name} must be an RFC 3339 time")))
                })
                .transpose()
        };
        let to = time("to")?.unwrap_or(now);
        let from = time("from")?.unwrap_or_else(|| to.minus_seconds(MAX_SPAN_SECONDS));
        if from > to {
            return Err(invalid("from is after to".into()));
        }
        if to.unix() - from.unix() > MAX_SPAN_SECONDS as i64 {
            return Err(invalid("from..to spans more than 31 days".into()));
        }
        let limit = match params.first("limit") {
            None => 50,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| invalid("limit must be 1 to 100".into()))?,
        };
        // Every parameter is checked, whichever listing it is for.
        let org_param = params.first("org").map(OrgId::parse).transpose()?;
        let day_param = params
            .first("day")
            .map(|d| {
                Timestamp::parse_rfc3339(&format!("{d}T00:00:00Z"))
                    .map(|t| t.date())
                    .ok()
                    .filter(|parsed| parsed == d)
                    .ok_or_else(|| invalid("day must be YYYY-MM-DD".into()))
            })
            .transpose()?;
        let session_param = params.first("session").map(SessionId::parse).transpose()?;
        let exercise_param = params
            .first("exercise")
            .map(ExerciseId::parse)
            .transpose()?;
        if let Some(c) = params.first("cursor") {
            exvid_shared::store::playback::decode_cursor(c)?;
        }
        let wanted =
            |s: &Session| may_see(&principal, s) && viewer.as_ref().is_none_or(|v| &s.viewer == v);

        if let Some(sid) = session_param {
            tracing::Span::current().record("session_id", sid.as_str());
            let session = self
                .sessions
                .session(&sid)
                .await?
                .filter(|s| wanted(s))
                .ok_or(ApiError::NotFound)?;
            let sessions = vec![SessionStats::of(&session)];
            return Ok(stats_response(sessions, None));
        }
        let listing = match exercise_param {
            Some(id) => {
                tracing::Span::current().record("exercise_id", id.as_str());
                Listing::Exercise(id)
            }
            None => {
                let org = match org_param {
                    Some(org) if principal.has(Role::Superadmin) => Some(org),
                    Some(org) if principal.org.as_ref() == Some(&org) => Some(org),
                    // Another org's day looks exactly like an empty one.
                    Some(_) => return Ok(stats_response(Vec::new(), None)),
                    None => principal.org.clone(),
                };
                let day = day_param.unwrap_or_else(|| to.date());
                Listing::OrgDay { org, day }
            }
        };
        let page = self
            .sessions
            .list(&listing, from, to, params.first("cursor"), limit)
            .await?;
        let sessions = page
            .sessions
            .iter()
            .filter(|s| wanted(s))
            .map(SessionStats::of)
            .collect();
        Ok(stats_response(sessions, page.next))
    }
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn stats_response(sessions: Vec<SessionStats>, next_cursor: Option<String>) -> Response<Body> {
    let view = StatsView {
        exercises: exercise_stats(&sessions),
        sessions,
        next_cursor,
    };
    http_edge::json_response(StatusCode::OK, &view, "private, no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use exvid_shared::domain::ids::Scope;

    fn principal(subject: &str, roles: &[Role], org: Option<&str>) -> Principal {
        Principal {
            subject: subject.into(),
            org: org.map(|o| OrgId::parse(o).unwrap()),
            roles: roles.to_vec(),
        }
    }

    fn session(viewer: &str, org: &str) -> Session {
        let grant = Grant {
            sid: SessionId::random(),
            exercise_id: ExerciseId::parse("ex-1").unwrap(),
            scope: Scope::parse(org).unwrap(),
            org: Some(OrgId::parse(org).unwrap()),
            viewer: ViewerId::parse(viewer).unwrap(),
            exp: 2_000_000_000,
        };
        Session::new(
            &grant,
            PlayerClass::Web,
            Timestamp::from_unix(1_800_000_000).unwrap(),
            30,
        )
    }

    #[test]
    fn who_sees_which_session() {
        let s = session("patient-1", "org-a");
        assert!(may_see(
            &principal("patient-1", &[Role::Patient], Some("org-a")),
            &s
        ));
        assert!(!may_see(
            &principal("patient-2", &[Role::Patient], Some("org-a")),
            &s
        ));
        assert!(may_see(
            &principal("doc", &[Role::Specialist], Some("org-a")),
            &s
        ));
        assert!(!may_see(
            &principal("doc", &[Role::Specialist], Some("org-b")),
            &s
        ));
        assert!(may_see(&principal("root", &[Role::Superadmin], None), &s));
        assert!(!may_see(&principal("nobody", &[], Some("org-a")), &s));
    }

    #[test]
    fn retention_and_key_bounds() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        for (pairs, ok) in [
            (
                vars(&[
                    ("TABLE_NAME", "t"),
                    ("PLAYBACK_SESSION_KEY", "k-0123456789abcdef"),
                ]),
                true,
            ),
            (
                vars(&[("TABLE_NAME", "t"), ("PLAYBACK_SESSION_KEY", "short")]),
                false,
            ),
            (vars(&[("TABLE_NAME", "t")]), false),
            (
                vars(&[
                    ("TABLE_NAME", "t"),
                    ("PLAYBACK_SESSION_KEY", "k-0123456789abcdef"),
                    ("PLAYBACK_SESSION_RETENTION_DAYS", "0"),
                ]),
                false,
            ),
        ] {
            let env = Env::from_fn(|n| pairs.get(n).cloned());
            assert_eq!(QualityConfig::from_env(&env).is_ok(), ok, "{pairs:?}");
        }
    }
}
