//! The local API Gateway on one port: the template's HttpApi routes (read from
//! `template.yaml`), a JWT check standing in for the authorizer, API Gateway v2 payloads with the
//! authorizer's claims, CORS preflights as the template configures them, the Bunny webhook's
//! function URL (`/webhooks/…`), the demo page, and a development token endpoint.
//!
//! Local departure, on purpose: the `X-Exvid-Provider` request header picks which provider's
//! upload-intake handles an upload (both run locally); in AWS the provider is the deployment's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::Request;
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::dev_jwt;
use crate::event_relay::EventRelay;
use crate::functions::{Function, Invocation};
use crate::http_util::{
    content_type_for, header, json as json_response, local_origin, read_body, response, Resp,
};
use crate::mediaconvert::Say;
use crate::template::{BucketCors, Route};

/// API Gateway's payload limit.
const MAX_BODY: usize = 10 << 20;
/// The header choosing the provider of an upload (local only).
pub const PROVIDER_HEADER: &str = "x-exvid-provider";
/// Where the function URL of the webhook function is mounted.
pub const FUNCTION_URL_PREFIX: &str = "/webhooks/";

/// One API route and the functions that can serve it.
pub struct ApiRoute {
    pub route: Route,
    /// By provider name for upload-intake, else one entry under "".
    pub functions: HashMap<String, Arc<Function>>,
}

pub struct Gateway {
    pub routes: Vec<ApiRoute>,
    pub default_provider: String,
    pub webhook: Arc<Function>,
    pub cors: BucketCors,
    pub demo_dir: PathBuf,
    pub vendor: Vec<(&'static str, PathBuf)>,
    /// `docs/openapi.yaml`, served at `/openapi.yaml` and rendered at `/docs`.
    pub spec: PathBuf,
    /// JSON the page reads at start (CDN origins etc.), served at `/local/config`.
    pub page_config: Value,
    pub say: Say,
    /// The local subscriber relaying video.* events to the page.
    pub events: Arc<EventRelay>,
}

fn now() -> (i64, u128) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.as_millis())
}

/// Where the local subscriber receives notify's deliveries.
pub const RELAY_IN: &str = "/local/webhook-in";

fn gateway_message(status: StatusCode, message: &str) -> Resp {
    json_response(status, &json!({ "message": message }))
}

fn query_map(query: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (k, v) = (dec(k), dec(v));
        // API Gateway joins repeated parameters with commas.
        match m.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                m.insert(k, Value::String(v));
            }
        }
    }
    m
}

/// The v2 payload (`version: 2.0`) API Gateway and function URLs send.
#[allow(clippy::too_many_arguments)]
fn v2_event(
    route_key: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    path_parameters: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
) -> Value {
    let (secs, ms) = now();
    let mut hs = Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match hs.get_mut(k.as_str()) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                hs.insert(k.as_str().to_owned(), Value::String(v));
            }
        }
    }
    // API Gateway tells the function how the caller reached it.
    hs.entry("x-forwarded-proto").or_insert(json!("http"));
    let user_agent = hs.get("user-agent").cloned().unwrap_or(json!(""));
    let (body, b64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (json!(text), false),
        Err(_) => (json!(STANDARD.encode(body)), true),
    };
    let mut context = json!({
        "accountId": crate::mediaconvert::ACCOUNT,
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": user_agent},
        "requestId": uuid::Uuid::now_v7().to_string(),
        "routeKey": route_key,
        "stage": "$default",
        "time": time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.format(time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000")).ok())
            .unwrap_or_default(),
        "timeEpoch": ms as u64,
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": hs,
        "requestContext": context,
        "isBase64Encoded": b64,
    });
    if !body.is_null() {
        event["body"] = body;
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query_map(query));
    }
    if let Some(p) = path_parameters {
        event["pathParameters"] = Value::Object(p);
    }
    event
}

/// Turns a function's v2 response into HTTP, as API Gateway does; anything else is a 500.
fn v2_response(payload: &[u8]) -> Option<Resp> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let status = v["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())?;
    let mut b = http::Response::builder().status(status);
    for (k, val) in v["headers"].as_object().into_iter().flatten() {
        if let Some(s) = val.as_str() {
            b = b.header(k.as_str(), s);
        }
    }
    for (k, vals) in v["multiValueHeaders"].as_object().into_iter().flatten() {
        for s in vals
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            b = b.header(k.as_str(), s);
        }
    }
    for c in v["cookies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        b = b.header("set-cookie", c);
    }
    let body = match v["body"].as_str() {
        None => Vec::new(),
        Some(s) if v["isBase64Encoded"].as_bool() == Some(true) => STANDARD.decode(s).ok()?,
        Some(s) => s.as_bytes().to_vec(),
    };
    b.body(Full::new(Bytes::from(body))).ok()
}

async fn invoke(function: Arc<Function>, event: Value) -> Invocation {
    let bytes = event.to_string().into_bytes();
    tokio::task::spawn_blocking(move || function.invoke(&bytes))
        .await
        .unwrap_or_else(|e| Invocation::Failed(format!("invoker panicked: {e}")))
}

impl Gateway {
    fn with_cors(&self, mut r: Resp, origin: Option<&str>) -> Resp {
        if let Some(o) = origin.and_then(|o| o.parse().ok()) {
            let h = r.headers_mut();
            h.insert("access-control-allow-origin", o);
            h.insert("vary", http::HeaderValue::from_static("origin"));
        }
        r
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let r = self.route(req).await;
        // Page assets and preflights are noise; every API call is a line.
        let page = path.starts_with("/demo/") || path.starts_with("/docs") || path == "/";
        if !(page || path == "/openapi.yaml" || method == Method::OPTIONS) {
            (self.say)(format!(
                "gateway: {method} {path} -> {} ({} ms)",
                r.status().as_u16(),
                started.elapsed().as_millis()
            ));
        }
        r
    }

    /// A signed delivery from notify to the local subscriber.
    async fn relay_in(&self, req: Request<Incoming>) -> Resp {
        let headers = req.headers().clone();
        let Some(body) = read_body(req.into_body(), MAX_BODY).await else {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        };
        let status = self.events.receive(
            |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            },
            &body,
        );
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        if status != StatusCode::NO_CONTENT {
            (self.say)(format!(
                "gateway: local subscriber refused a delivery ({status})"
            ));
        }
        crate::http_util::response(status, "text/plain", "")
    }

    async fn route(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_owned();
        let origin = local_origin(&req);
        if path.starts_with(FUNCTION_URL_PREFIX) {
            return self.function_url(req).await;
        }
        if path == RELAY_IN && req.method() == Method::POST {
            return self.relay_in(req).await;
        }
        if req.method() == Method::GET {
            if let Some(r) = self.page(&path) {
                return r;
            }
            if path == "/local/events" {
                let after = query_map(req.uri().query().unwrap_or(""))
                    .get("after")
                    .and_then(|a| a.as_str()?.parse().ok())
                    .unwrap_or(0);
                let events = self.events.after(after, Duration::from_secs(25)).await;
                return self.with_cors(json_response(StatusCode::OK, &events), origin.as_deref());
            }
            if path == "/local/token" {
                return self.with_cors(
                    self.token(req.uri().query().unwrap_or("")),
                    origin.as_deref(),
                );
            }
        }
        if req.method() == Method::OPTIONS {
            return self.preflight(origin.as_deref());
        }
        let method = req.method().as_str().to_owned();
        let Some((api, params)) = self
            .routes
            .iter()
            .find_map(|r| r.route.matches(&method, &path).map(|p| (r, p)))
        else {
            return self.with_cors(
                gateway_message(StatusCode::NOT_FOUND, "Not Found"),
                origin.as_deref(),
            );
        };
        let r = self.api(req, api, params, &method, &path).await;
        self.with_cors(r, origin.as_deref())
    }

    /// An API route: the JWT authorizer, the provider's function, the body limit, then the
    /// payload-v2 invocation.
    async fn api(
        &self,
        req: Request<Incoming>,
        api: &ApiRoute,
        params: Vec<(String, String)>,
        method: &str,
        path: &str,
    ) -> Resp {
        let claims = match dev_jwt::authorize(header(&req, "authorization"), now().0) {
            Ok(c) => c,
            Err(e) => {
                (self.say)(format!("gateway: authorizer refused {method} {path}: {e}"));
                let mut r = gateway_message(StatusCode::UNAUTHORIZED, "Unauthorized");
                r.headers_mut()
                    .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
                return r;
            }
        };
        let provider = header(&req, PROVIDER_HEADER)
            .unwrap_or(&self.default_provider)
            .to_owned();
        let function = match api
            .functions
            .get(&provider)
            .or_else(|| api.functions.get(""))
        {
            Some(f) => f.clone(),
            None => {
                let r = gateway_message(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown provider '{provider}' (local {PROVIDER_HEADER} header)"),
                );
                return r;
            }
        };
        let query = req.uri().query().unwrap_or("").to_owned();
        let headers = req.headers().clone();
        let Some(body) = read_body(req.into_body(), MAX_BODY).await else {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        };
        let params: Map<String, Value> = params
            .into_iter()
            .map(|(k, v)| (k, json!(percent_decode_str(&v).decode_utf8_lossy())))
            .collect();
        let event = v2_event(
            &api.route.route_key(),
            method,
            path,
            &query,
            &headers,
            &body,
            Some(params),
            Some(claims),
        );
        self.answer(function, event).await
    }

    /// Invokes and maps the outcome like API Gateway: function errors and broken responses are
    /// a 500, a timeout a 503.
    async fn answer(&self, function: Arc<Function>, event: Value) -> Resp {
        let name = function.name().to_owned();
        match invoke(function, event).await {
            Invocation::Response(payload) => v2_response(&payload).unwrap_or_else(|| {
                (self.say)(format!("gateway: {name} returned a malformed response"));
                gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }),
            Invocation::Failed(e) => {
                (self.say)(format!("gateway: {name} failed: {e}"));
                gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Invocation::TimedOut => {
                (self.say)(format!("gateway: {name} timed out"));
                gateway_message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
        }
    }

    async fn function_url(&self, req: Request<Incoming>) -> Resp {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let headers = req.headers().clone();
        let Some(body) = read_body(req.into_body(), 6 << 20).await else {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        };
        let event = v2_event(
            "$default", &method, &path, &query, &headers, &body, None, None,
        );
        self.answer(self.webhook.clone(), event).await
    }

    fn preflight(&self, origin: Option<&str>) -> Resp {
        let mut b = http::Response::builder().status(StatusCode::NO_CONTENT);
        if let Some(o) = origin {
            let mut headers = self.cors.headers.clone();
            headers.push(PROVIDER_HEADER.into());
            b = b
                .header("access-control-allow-origin", o)
                .header("vary", "origin")
                .header("access-control-allow-methods", self.cors.methods.join(", "))
                .header("access-control-allow-headers", headers.join(", "))
                .header(
                    "access-control-max-age",
                    self.cors.max_age.unwrap_or(600).to_string(),
                );
        }
        b.body(Full::new(Bytes::new())).expect("valid response")
    }

    /// `GET /local/token?org=ORG&role=ROLE[&sub=ID]`: what `devstack token` prints.
    fn token(&self, query: &str) -> Resp {
        let q = query_map(query);
        let get = |k: &str| q.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let Some(role) = get("role") else {
            return gateway_message(StatusCode::BAD_REQUEST, "role is required");
        };
        let sub = get("sub")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("dev-{role}"));
        let token = dev_jwt::mint(&sub, get("org"), &[role], now().0);
        json_response(
            StatusCode::OK,
            &json!({ "token": token, "expires_in": dev_jwt::TOKEN_TTL_SECONDS }),
        )
    }

    /// The demo page, the API reference, the Markdown topics of `docs/` and their scripts.
    fn page(&self, path: &str) -> Option<Resp> {
        if let Some(topic) = path.strip_prefix("/docs/").filter(|t| t.ends_with(".md")) {
            return Some(self.topic(topic));
        }
        let file = match path {
            "/" | "/demo/" | "/demo/index.html" => self.demo_dir.join("index.html"),
            "/docs" | "/docs/" => self.demo_dir.join("docs.html"),
            "/openapi.yaml" => self.spec.clone(),
            "/local/config" => {
                return Some(json_response(StatusCode::OK, &self.page_config));
            }
            p => {
                let name = p.strip_prefix("/demo/")?;
                if let Some((_, f)) = self.vendor.iter().find(|(n, _)| *n == name) {
                    f.clone()
                } else if matches!(name, "app.js" | "style.css" | "docs.js") {
                    self.demo_dir.join(name)
                } else {
                    return Some(gateway_message(StatusCode::NOT_FOUND, "Not Found"));
                }
            }
        };
        Some(match std::fs::read(&file) {
            Ok(bytes) => {
                let mut r = response(
                    StatusCode::OK,
                    content_type_for(&file.display().to_string()),
                    bytes,
                );
                let h = r.headers_mut();
                h.insert("cache-control", http::HeaderValue::from_static("no-cache"));
                if path.starts_with("/docs") {
                    h.insert(
                        "content-security-policy",
                        http::HeaderValue::from_static(DOCS_CSP),
                    );
                }
                r
            }
            Err(_) => response(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                format!(
                    "{} is missing: run `make dev` (it installs the page's scripts with npm)\n",
                    file.display()
                ),
            ),
        })
    }
}

impl Gateway {
    /// `/docs/{topic}.md`: a Markdown file of `docs/` rendered to HTML (pulldown-cmark), so its
    /// relative links to other topics work as they do on GitHub. Only names made of lowercase
    /// letters, digits and `-`, at most one directory deep: nothing outside `docs/`.
    fn topic(&self, topic: &str) -> Resp {
        let safe = topic.split('/').count() <= 2
            && topic.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .trim_end_matches(".md")
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.trim_end_matches(".md").is_empty()
            });
        let docs = self
            .spec
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let Some(markdown) = safe
            .then(|| std::fs::read_to_string(docs.join(topic)).ok())
            .flatten()
        else {
            return gateway_message(StatusCode::NOT_FOUND, "Not Found");
        };
        let mut r = response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            render_topic(&markdown),
        );
        let h = r.headers_mut();
        h.insert("cache-control", http::HeaderValue::from_static("no-cache"));
        h.insert(
            "content-security-policy",
            http::HeaderValue::from_static(TOPIC_CSP),
        );
        r
    }
}

/// A topic page: the Markdown as HTML (raw HTML in it is shown as text), with the first
/// heading as the title.
fn render_topic(markdown: &str) -> String {
    use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};
    let title = markdown
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("exvid")
        .to_owned();
    let mut events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES)
        .map(|e| match e {
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            other => other,
        })
        .collect();
    // Headings get GitHub's anchors, so `topic.md#heading` links land where they do there
    // (the same rule `infra/check_links.py` checks them by).
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { .. }) = &events[i] {
            let mut text = String::new();
            let mut j = i + 1;
            while j < events.len() && !matches!(events[j], Event::End(TagEnd::Heading(_))) {
                if let Event::Text(t) | Event::Code(t) = &events[j] {
                    text.push_str(t);
                }
                j += 1;
            }
            let slug = github_slug(&text);
            let n = seen.entry(slug.clone()).or_insert(0);
            let id = if *n == 0 {
                slug.clone()
            } else {
                format!("{slug}-{n}")
            };
            *n += 1;
            if let Event::Start(Tag::Heading { id: anchor, .. }) = &mut events[i] {
                *anchor = Some(id.into());
            }
            i = j;
        }
        i += 1;
    }
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — exvid</title><link rel=\"stylesheet\" href=\"/demo/style.css\"></head>\
         <body><main class=\"topic\"><p><a href=\"/\">demo page</a> · <a href=\"/docs\">API reference</a></p>\n{body}</main></body></html>\n",
        escape(&title)
    )
}

/// GitHub's heading anchor: lowercase, punctuation other than `-` and `_` dropped, spaces to `-`.
fn github_slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A topic page is static: its style sheet and nothing else.
const TOPIC_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:";

/// The API reference loads nothing from elsewhere: Redoc, the spec, its search worker.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_render_with_github_anchors_and_no_raw_html() {
        let page = render_topic(
            "# Events\n\n## Verify (`webhook-id`)\n\nSee [the API](api.md#http-api).\n\n## Verify (`webhook-id`)\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(page.contains("<title>Events — exvid</title>"));
        assert!(page.contains(r#"<h2 id="verify-webhook-id">"#), "{page}");
        assert!(page.contains(r#"<h2 id="verify-webhook-id-1">"#), "{page}");
        assert!(page.contains(r#"<a href="api.md#http-api">the API</a>"#));
        assert!(page.contains("<table>"));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert_eq!(
            github_slug("Captions (`PUT/DELETE /v1/x/{lang}`)"),
            "captions-putdelete-v1xlang"
        );
    }

    #[test]
    fn events_look_like_api_gateway_v2() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("u"));
        let e = v2_event(
            "POST /v1/exercises/{id}/video",
            "POST",
            "/v1/exercises/ex-1/video",
            "a=1&a=2&b=x%20y",
            &headers,
            b"{}",
            Some([("id".to_owned(), json!("ex-1"))].into_iter().collect()),
            Some(claims),
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert_eq!(e["queryStringParameters"]["a"], "1,2");
        assert_eq!(e["queryStringParameters"]["b"], "x y");
        assert_eq!(e["pathParameters"]["id"], "ex-1");
        assert_eq!(
            e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"],
            "u"
        );
        assert_eq!(
            e["requestContext"]["routeKey"],
            "POST /v1/exercises/{id}/video"
        );
        assert_eq!(e["body"], "{}");
        assert_eq!(e["isBase64Encoded"], false);
        // The event is what lambda_http reads.
        let req: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
            serde_json::from_value(e).unwrap();
        assert_eq!(req.raw_path.as_deref(), Some("/v1/exercises/ex-1/video"));

        let binary = v2_event(
            "$default",
            "POST",
            "/x",
            "",
            &headers,
            &[0xff, 0xfe],
            None,
            None,
        );
        assert_eq!(binary["isBase64Encoded"], true);
        assert!(binary["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn responses_map_like_api_gateway() {
        let r = v2_response(
            br#"{"statusCode":201,"headers":{"content-type":"application/json"},"body":"{\"a\":1}"}"#,
        )
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["content-type"], "application/json");
        let r = v2_response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(r.status(), 200);
        assert!(v2_response(b"not json").is_none());
        assert!(v2_response(br#"{"statusCode":"x"}"#).is_none());
        assert!(v2_response(br#"{"statusCode":9999}"#).is_none());
    }
}
