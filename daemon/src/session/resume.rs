//! Native sessions whose socket dropped, kept for `limits.resume_window_s` (protocol §1.6).
//!
//! A parked session keeps its stream (the worker goes on processing the audio it received),
//! its finals and its slot. It leaves the store when its client resumes it, when the window
//! expires, when a new client needs its slot (oldest first), or at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::native::Parked;

struct Entry {
    session: Box<Parked>,
    nonce: u64,
    since: Instant,
}

/// The parked sessions, by session id.
#[derive(Default)]
pub struct ResumeStore {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    next_nonce: AtomicU64,
}

fn lock(entries: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    // A panic while holding the lock cannot leave the map inconsistent (single operations).
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

impl ResumeStore {
    /// Keep `session` for `window`; afterwards it is dropped (its stream aborted, its slot
    /// freed) unless it was taken back.
    pub fn park(&self, id: String, session: Box<Parked>, window: Duration) {
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        lock(&self.entries).insert(
            id.clone(),
            Entry {
                session,
                nonce,
                since: Instant::now(),
            },
        );
        self.report();
        let entries = Arc::downgrade(&self.entries);
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            let Some(entries) = entries.upgrade() else {
                return;
            };
            let expired = {
                let mut map = lock(&entries);
                match map.get(&id) {
                    Some(e) if e.nonce == nonce => map.remove(&id),
                    _ => None,
                }
            };
            if expired.is_some() {
                tracing::info!(session = %id, "resume window expired; session dropped");
                metrics::gauge!(crate::metrics::SESSIONS_PARKED).set(lock(&entries).len() as f64);
            }
        });
    }

    /// Take a parked session back for resumption.
    pub fn take(&self, id: &str) -> Option<Box<Parked>> {
        let taken = lock(&self.entries).remove(id).map(|e| e.session);
        self.report();
        taken
    }

    /// Drop the session parked longest and hand over its slot.
    pub fn evict_oldest(&self) -> Option<OwnedSemaphorePermit> {
        let evicted = {
            let mut map = lock(&self.entries);
            let id = map
                .iter()
                .min_by_key(|(_, e)| e.since)
                .map(|(id, _)| id.clone())?;
            map.remove(&id).map(|e| (id, e.session))
        };
        self.report();
        let (id, session) = evicted?;
        tracing::info!(session = %id, "parked session dropped to admit a new client");
        Some(session.into_permit())
    }

    /// Drop every parked session (shutdown).
    pub fn clear(&self) {
        lock(&self.entries).clear();
        self.report();
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.entries).is_empty()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    fn report(&self) {
        metrics::gauge!(crate::metrics::SESSIONS_PARKED).set(self.len() as f64);
    }
}
