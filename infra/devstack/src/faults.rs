//! The faults the local cloud can be told to inject (`devstack up --drop-provider-events`,
//! `--duplicate-provider-events`, `--provider-errors`, `--provider-hang`, `--table-throttle`):
//! what the load test runs under, and a way to watch recovery by hand. Each is a probability or
//! a count, drawn per event or per call; none is on by default.

use std::future::Future;
use std::time::Duration;

/// How long a provider call told to hang waits before it is answered: under the Bunny client's
/// 5 s timeout (`BUNNY_API_TIMEOUT_MS`), so a hang is a slow answer, not a lost one.
pub const PROVIDER_HANG: Duration = Duration::from_secs(3);

/// The latest a duplicated event's copy arrives after the original: later events overtake it.
pub const COPY_DELAY_MAX_MS: u64 = 2_000;

/// True with probability `p`.
pub fn chance(p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    (random_u32() as f64 / 4_294_967_296.0) < p
}

fn random_u32() -> u32 {
    // A version 7 UUID's last 62 bits are random: a crate for 32 of them is not worth adding
    // to the local cloud.
    uuid::Uuid::now_v7().as_u128() as u32
}

/// How long a copy of a duplicated event waits: 0 to [`COPY_DELAY_MAX_MS`].
pub fn copy_delay() -> Duration {
    Duration::from_millis(u64::from(random_u32()) % (COPY_DELAY_MAX_MS + 1))
}

/// Sends `copies` more deliveries of one event, each after its own [`copy_delay`]: at-least-once
/// delivery, out of order, as providers and EventBridge are allowed to deliver.
pub fn spawn_copies<F, Fut>(copies: u32, deliver: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for _ in 0..copies {
        let delivery = deliver();
        tokio::spawn(async move {
            tokio::time::sleep(copy_delay()).await;
            delivery.await;
        });
    }
}

/// Faults of a provider's API (the Bunny library API, MediaConvert): a call answered 503, or
/// held for [`PROVIDER_HANG`] first.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderFaults {
    /// Probability that a call is answered 503.
    pub errors: f64,
    /// Probability that a call hangs for [`PROVIDER_HANG`] before it is handled.
    pub hang: f64,
}

impl ProviderFaults {
    /// Waits out a hang if one is drawn; true when this call is to be answered 503.
    pub async fn before_call(&self) -> bool {
        if chance(self.hang) {
            tokio::time::sleep(PROVIDER_HANG).await;
        }
        chance(self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_is_never_for_zero_always_for_one_and_about_p_between() {
        assert!((0..1000).all(|_| !chance(0.0)));
        assert!((0..1000).all(|_| chance(1.0)));
        let hits = (0..20_000).filter(|_| chance(0.25)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
    }

    #[test]
    fn copies_wait_at_most_the_max_delay() {
        assert!((0..1000).all(|_| copy_delay() <= Duration::from_millis(COPY_DELAY_MAX_MS)));
    }
}
