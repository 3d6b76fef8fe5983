//! The plumbing every local HTTP service shares: serving a bound listener with an async handler
//! (HTTP/1.1, keep-alive), reading a body with a size limit, and the few response shapes used.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub type Resp = Response<Full<Bytes>>;

/// Serves `listener` until the task is dropped; each connection on its own task.
pub fn serve<F, Fut>(listener: TcpListener, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Binds `127.0.0.1:port` (0: any free port) with one clear line when it is taken.
pub async fn bind(port: u16, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("port {port} ({what}) is already in use; stop what runs there or pick another --port")
        } else {
            format!("cannot listen on 127.0.0.1:{port} ({what}): {e}")
        }
    })
}

/// The whole body, or `None` when it is larger than `limit` or the connection broke.
pub async fn read_body(body: Incoming, limit: usize) -> Option<Bytes> {
    Limited::new(body, limit)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

pub fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

pub fn json(status: StatusCode, body: &serde_json::Value) -> Resp {
    response(status, "application/json", body.to_string())
}

pub fn text(status: StatusCode, body: &str) -> Resp {
    response(status, "text/plain; charset=utf-8", body.to_owned())
}

/// The request's header as a string, if present and readable.
pub fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `Origin` to echo in CORS answers: loopback origins only (the demo page and a frontend
/// developer's dev server), never a wildcard with credentials.
pub fn local_origin<B>(req: &Request<B>) -> Option<String> {
    let origin = header(req, "origin")?;
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]").then(|| origin.to_owned())
}

/// Adds the CORS answer for `origin` (when there is one), exposing `exposed` headers.
pub fn allow_origin(
    b: http::response::Builder,
    origin: Option<&str>,
    exposed: &str,
) -> http::response::Builder {
    match origin {
        Some(o) => b
            .header("access-control-allow-origin", o)
            .header("vary", "origin")
            .header("access-control-expose-headers", exposed),
        None => b,
    }
}

/// Content types of the media the local cloud stores and serves.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        // Captions: served as nothing else (with nosniff), never as HTML.
        "vtt" => "text/vtt; charset=utf-8",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_origins_are_echoed() {
        let req = |o: &str| Request::builder().header("origin", o).body(()).unwrap();
        assert_eq!(
            local_origin(&req("http://127.0.0.1:8700")).as_deref(),
            Some("http://127.0.0.1:8700")
        );
        assert!(local_origin(&req("http://localhost:3000")).is_some());
        assert!(local_origin(&req("https://evil.example")).is_none());
        assert!(local_origin(&req("http://127.0.0.1.evil.example")).is_none());
        assert!(local_origin(&Request::new(())).is_none());
    }

    #[test]
    fn media_content_types() {
        assert_eq!(
            content_type_for("a/original.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type_for("x/video0.ts"), "video/mp2t");
        assert_eq!(content_type_for("play_720p.MP4"), "video/mp4");
        assert_eq!(content_type_for("thumbnail.jpg"), "image/jpeg");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
