//! Wall-clock time as whole Unix seconds, read once at the edge and passed into messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = u64;

/// Source of the current time; tests substitute [`ManualClock`] to test expiry without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        // A clock set before 1970 reads as the epoch, which makes everything look expired.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    seconds: AtomicU64,
}

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self { seconds: AtomicU64::new(start) }
    }

    pub fn set(&self, time: UnixTime) {
        self.seconds.store(time, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: u64) {
        self.seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.seconds.load(Ordering::SeqCst)
    }
}
