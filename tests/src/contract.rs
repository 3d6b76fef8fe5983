//! The API functions as the tests call them: every answer is held to `docs/openapi.yaml`
//! before the test sees it, so a response the spec does not document fails the test that got it.

use devstack::openapi::{Answer, Contract};
use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::ids::UploadIds;
use exvid_shared::media_bucket::{MediaBucket, MultipartUploads, RenditionFiles};
use exvid_shared::store::VideoStore;
use lambda_http::{Body, Request, Response};
use std::future::Future;
use std::ops::Deref;

/// A function behind the HTTP API.
pub trait ApiFunction {
    fn answer(&self, req: Request) -> impl Future<Output = Response<Body>>;
}

impl<S, B, P, C, I> ApiFunction for upload_intake::Intake<S, B, P, C, I>
where
    S: VideoStore,
    B: MediaBucket + MultipartUploads + RenditionFiles,
    P: BunnyApi + BunnyCaptions,
    C: Clock,
    I: UploadIds,
{
    fn answer(&self, req: Request) -> impl Future<Output = Response<Body>> {
        self.handle(req)
    }
}

impl<S: VideoStore, C: Clock> ApiFunction for playback::Playback<S, C> {
    fn answer(&self, req: Request) -> impl Future<Output = Response<Body>> {
        self.handle(req)
    }
}

impl<S: exvid_shared::store::playback::SessionStore, C: Clock> ApiFunction
    for playback_quality::PlaybackQuality<S, C>
{
    fn answer(&self, req: Request) -> impl Future<Output = Response<Body>> {
        self.handle(req)
    }
}

/// `handle` checks the answer against the spec; everything else is the function's own.
pub struct Contracted<F>(pub F);

impl<F: ApiFunction> Contracted<F> {
    pub async fn handle(&self, req: Request) -> Response<Body> {
        // The route key's path (hostile ids stay one segment); the method as sent.
        let route = exvid_shared::http_edge::route_key(&req);
        let path = route.split_once(' ').map_or(route.as_str(), |(_, p)| p);
        let method = req.method().to_string();
        let r = self.0.answer(req).await;
        Contract::repository().assert(&Answer {
            method: &method,
            path,
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            body: match r.body() {
                Body::Empty => b"",
                Body::Text(t) => t.as_bytes(),
                Body::Binary(b) => b,
                _ => b"",
            },
        });
        r
    }
}

impl<F> Deref for Contracted<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.0
    }
}
