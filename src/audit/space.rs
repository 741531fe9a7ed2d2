//! The disk under the audit log: how much is left, and what kmsd does as it runs out.
//!
//! A thread samples the filesystem holding the database every second (and once, synchronously, at start-up). The
//! space available to the log is the filesystem's free space plus the database's own free pages, which new records
//! reuse (an archived and pruned range leaves them). Available space at or above the soft floor is [`Level::Ample`]. Below it is [`Level::Low`]: calls from unauthenticated
//! callers are still refused, but recorded only as a summary at most every few seconds (`service::call`), so an
//! anonymous flood cannot fill the disk while authenticated calls keep working. Below the hard floor is
//! [`Level::Critical`]: every record fails closed (the call is answered UNAVAILABLE and health turns NOT_SERVING)
//! except those of archiving and pruning the log, which may use the space under the hard floor: that reserve is how
//! an operator always gets out of a full disk (`kmsctl audit archive`).
//!
//! Invariant: the level only reflects measurements; it changes nothing stored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::AuditReader;

/// The floors, in bytes of free space on the database's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceLimits {
    pub soft_floor: u64,
    pub hard_floor: u64,
}

impl Default for SpaceLimits {
    fn default() -> Self {
        SpaceLimits {
            soft_floor: 512 * 1024 * 1024,
            hard_floor: 64 * 1024 * 1024,
        }
    }
}

impl SpaceLimits {
    pub fn check(&self) -> Result<(), String> {
        if self.soft_floor < self.hard_floor {
            return Err(format!(
                "disk_soft_floor ({}) must be at least disk_hard_floor ({})",
                self.soft_floor, self.hard_floor
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ample = 0,
    Low = 1,
    Critical = 2,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ample => "ample",
            Level::Low => "low",
            Level::Critical => "critical",
        }
    }

    fn from_u8(n: u8) -> Level {
        match n {
            0 => Level::Ample,
            1 => Level::Low,
            _ => Level::Critical,
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceReport {
    /// Free bytes an unprivileged writer may use, and the filesystem's size.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// The database file and its write-ahead log.
    pub database_bytes: u64,
    /// The database's free pages: room for records without the file growing.
    pub reusable_bytes: u64,
}

impl SpaceReport {
    /// What the log can still grow into: free space on the filesystem and inside the database.
    pub fn available(&self) -> u64 {
        self.free_bytes.saturating_add(self.reusable_bytes)
    }
}

pub struct SpaceWatch {
    /// The SQLite file measured; `None` for an unmeasured watch.
    db_path: Option<PathBuf>,
    limits: SpaceLimits,
    level: AtomicU8,
    report: Mutex<SpaceReport>,
    changes: watch::Sender<Level>,
    /// Dropping the sender stops the sampling thread, which is then joined: see [`SpaceWatch::stop`].
    thread: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl SpaceWatch {
    /// Measures now, then every `every` on a thread of its own for as long as the watch lives.
    pub fn start(db_path: &Path, limits: SpaceLimits, every: Duration) -> Arc<Self> {
        let (changes, _) = watch::channel(Level::Ample);
        let watch = Arc::new(SpaceWatch {
            db_path: Some(db_path.to_owned()),
            limits,
            level: AtomicU8::new(Level::Ample as u8),
            report: Mutex::new(SpaceReport::default()),
            changes,
            thread: Mutex::new(None),
        });
        watch.sample();
        let weak: Weak<SpaceWatch> = Arc::downgrade(&watch);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("kmsd-space".into())
            .spawn(move || {
                // Its own read connection, closed when the thread ends: before the database is closed.
                let mut reader = None;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let Some(watch) = weak.upgrade() else {
                        return;
                    };
                    if reader.is_none() {
                        reader = watch
                            .db_path
                            .as_deref()
                            .and_then(|p| AuditReader::open(p).ok());
                    }
                    watch.sample_with(reader.as_ref());
                }
            });
        match spawned {
            Ok(handle) => {
                *watch.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, handle))
            }
            Err(e) => tracing::error!(
                error = %e,
                "cannot start the disk space watch; free space is measured only at start-up"
            ),
        }
        watch
    }

    /// A watch that measures nothing and stays [`Level::Ample`]: for a database on another machine.
    pub fn unmeasured(limits: SpaceLimits) -> Arc<Self> {
        let (changes, _) = watch::channel(Level::Ample);
        Arc::new(SpaceWatch {
            db_path: None,
            limits,
            level: AtomicU8::new(Level::Ample as u8),
            report: Mutex::new(SpaceReport::default()),
            changes,
            thread: Mutex::new(None),
        })
    }

    /// Stops sampling and waits until the thread has closed its connection: a connection left open would keep
    /// SQLite from folding the WAL back into the database when the daemon closes it.
    pub fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, handle)) = thread {
            drop(stop);
            let _ = handle.join();
        }
    }

    pub fn limits(&self) -> SpaceLimits {
        self.limits
    }

    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Follows the level as it changes.
    pub fn changes(&self) -> watch::Receiver<Level> {
        self.changes.subscribe()
    }

    pub fn report(&self) -> SpaceReport {
        *self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Measures the filesystem and the database now, and moves the level.
    pub fn sample(&self) -> SpaceReport {
        let reader = self
            .db_path
            .as_deref()
            .and_then(|p| AuditReader::open(p).ok());
        self.sample_with(reader.as_ref())
    }

    fn sample_with(&self, reader: Option<&AuditReader>) -> SpaceReport {
        let Some(db_path) = self.db_path.as_deref() else {
            return self.report();
        };
        let dir = db_path.parent().unwrap_or(Path::new("."));
        let (free_bytes, total_bytes) = match rustix::fs::statvfs(dir) {
            Ok(s) => (
                s.f_bavail.saturating_mul(s.f_frsize),
                s.f_blocks.saturating_mul(s.f_frsize),
            ),
            Err(e) => {
                // Unknown is not full: the writer's own failures still fail closed.
                tracing::warn!(error = %e, dir = %dir.display(), "cannot measure free disk space");
                return self.report();
            }
        };
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let report = SpaceReport {
            free_bytes,
            total_bytes,
            database_bytes: size(db_path) + size(Path::new(&wal)),
            reusable_bytes: reader.and_then(|r| r.free_page_bytes().ok()).unwrap_or(0),
        };
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = report;
        let available = report.available();
        let level = if available < self.limits.hard_floor {
            Level::Critical
        } else if available < self.limits.soft_floor {
            Level::Low
        } else {
            Level::Ample
        };
        let before = Level::from_u8(self.level.swap(level as u8, Ordering::Relaxed));
        if before != level {
            match level {
                Level::Ample => {
                    tracing::info!(available, "free disk space is above the soft floor again")
                }
                Level::Low => tracing::warn!(
                    available,
                    soft_floor = self.limits.soft_floor,
                    "free disk space is below the soft floor: unauthenticated calls are recorded only as \
                     summaries; archive the audit log (kmsctl audit archive) to free space"
                ),
                Level::Critical => tracing::error!(
                    available,
                    hard_floor = self.limits.hard_floor,
                    "free disk space is below the hard floor: every call fails closed until the audit log is \
                     archived (kmsctl audit archive) or the disk grows"
                ),
            }
            self.changes.send_replace(level);
        }
        report
    }
}
