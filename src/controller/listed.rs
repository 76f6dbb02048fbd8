//! Readiness: the manager is ready once each of its watches has listed its objects once.
//!
//! Part of the wiring in [`super::run`]. Read from the watch streams themselves, after the
//! reflectors have stored each event, rather than through `Store::wait_until_ready`: kube-runtime
//! 5's store readiness keeps the waker of only the last task waiting on it, and the controller
//! already waits on the crate store for its runner. A second waiter there is never woken when
//! the controller polls last, which is what happens on a single-CPU Pod; such a manager stayed
//! unready for good (the node suite's install test, whose manager Pods have a one-CPU limit,
//! caught it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kube::runtime::watcher;

/// Counts the watches that have not listed yet; the last one to list turns `ready` true.
#[derive(Clone)]
pub struct Listings {
    unlisted: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

impl Listings {
    /// Readiness over `watches` watches, each given one [`Listings::watch`].
    pub fn new(watches: usize, ready: Arc<AtomicBool>) -> Listings {
        Listings {
            unlisted: Arc::new(AtomicUsize::new(watches)),
            ready,
        }
    }

    /// For one watch's stream (`inspect_ok`): counts its first complete listing. Later
    /// listings, after the watch is resumed from scratch, change nothing.
    pub fn watch<K>(&self) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
        let listings = self.clone();
        let mut listed = false;
        move |event| {
            if listed || !matches!(event, watcher::Event::InitDone) {
                return;
            }
            listed = true;
            if listings.unlisted.fetch_sub(1, Ordering::AcqRel) == 1 {
                listings.ready.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn init_done() -> watcher::Event<ConfigMap> {
        watcher::Event::InitDone
    }

    #[test]
    fn ready_only_once_every_watch_has_listed() {
        let ready = Arc::new(AtomicBool::new(false));
        let listings = Listings::new(2, ready.clone());
        let (mut crates, mut jobs) = (listings.watch(), listings.watch());
        assert!(!ready.load(Ordering::Acquire));

        crates(&watcher::Event::Init);
        crates(&watcher::Event::InitApply(ConfigMap::default()));
        crates(&init_done());
        assert!(!ready.load(Ordering::Acquire), "one watch of two listed");

        jobs(&watcher::Event::Apply(ConfigMap::default()));
        assert!(!ready.load(Ordering::Acquire), "an event is not a listing");
        jobs(&init_done());
        assert!(ready.load(Ordering::Acquire));
    }

    #[test]
    fn a_watch_that_lists_again_does_not_count_twice() {
        let ready = Arc::new(AtomicBool::new(false));
        let listings = Listings::new(2, ready.clone());
        let (mut crates, _jobs) = (listings.watch(), listings.watch::<ConfigMap>());
        crates(&init_done());
        crates(&watcher::Event::Init);
        crates(&init_done());
        assert!(!ready.load(Ordering::Acquire));
    }
}
