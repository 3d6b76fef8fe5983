//! A client built on first use. Lambda counts building every client into each cold start's
//! init; a client only some requests need (MediaConvert for videos but not pictures, Bunny on
//! one provider's path, S3 only when a replaced rendition is deleted) is built by the first
//! request that needs it, once, and the others never pay for it. Clients every request uses are
//! built in `main` as before.

use std::sync::OnceLock;

pub struct LazyClient<C> {
    cell: OnceLock<C>,
    make: Box<dyn Fn() -> C + Send + Sync>,
}

impl<C> LazyClient<C> {
    /// `make` runs at most once, on the first [`get`](Self::get).
    pub fn new(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        LazyClient {
            cell: OnceLock::new(),
            make: Box::new(make),
        }
    }

    /// An already built client (tests, callers that need it at once).
    pub fn ready(client: C) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(client);
        LazyClient {
            cell,
            make: Box::new(|| unreachable!("a ready client is never built again")),
        }
    }

    pub fn get(&self) -> &C {
        self.cell.get_or_init(|| (self.make)())
    }

    /// Whether the client has been built (for tests and logs).
    pub fn is_built(&self) -> bool {
        self.cell.get().is_some()
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.is_built())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn built_once_on_first_use() {
        let built = Arc::new(AtomicU32::new(0));
        let b = built.clone();
        let lazy = LazyClient::new(move || b.fetch_add(1, Ordering::SeqCst) + 100);
        assert!(!lazy.is_built());
        assert_eq!(built.load(Ordering::SeqCst), 0);
        assert_eq!(*lazy.get(), 100);
        assert_eq!(*lazy.get(), 100);
        assert_eq!(built.load(Ordering::SeqCst), 1);
        assert!(LazyClient::ready(7).is_built());
        assert_eq!(*LazyClient::ready(7).get(), 7);
    }
}
