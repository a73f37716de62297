//! The SQLite store: one connection owned by one thread, fed closures over a
//! channel, so no SQLite call ever blocks the async runtime. Versioned
//! migrations run at open; WAL and foreign keys are on; every multi-row write
//! is one transaction. No rusqlite type leaves this module: the submodules
//! add typed methods to [`Store`] per table group.

mod backup;
mod bmnodes;
mod boot_events;
mod console;
mod counts;
mod deploy;
mod jobs;
mod leases;
mod messages;
mod nodes;
mod schema;
mod users;

pub use crate::foundation::states::BmNodeStatus;
pub use backup::{backup, check as check_file, BackupReport};
pub use bmnodes::{BmNode, BmNodeFilter, BootMode, NetworkSettings, PowerState};
pub use boot_events::{BootEvent, EVENTS_MAX, EVENTS_PER_MAC};
pub use console::{ConsoleLine, BYTES_PER_NODE as CONSOLE_BYTES_PER_NODE};
pub use counts::Counts;
pub use jobs::{Job, JobFilter, JobNode, JobStatus, LogLine, StepTime};
pub use leases::{LeaseDb, PxeNode};
pub use messages::{MessageFilter, MessageLevel, StoredMessage};
pub use nodes::{Node, NodeStatus};
pub use users::User;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Why a store call failed. `Conflict` and `NotFound` carry text for the user;
/// the rest are internal and reported as such.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    WrongState(String),
    /// A value refused while applying a change (a bad parameter).
    #[error("{0}")]
    Invalid(String),
    #[error("the store thread has stopped")]
    Closed,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// SQLite could not write: the disk holding the database is full.
    #[error("database or disk is full ({})", .0.display())]
    DiskFull(PathBuf),
}

impl StoreError {
    /// `self`, as [`StoreError::DiskFull`] when SQLite says the disk is full.
    pub(crate) fn on_disk(self, path: &Path) -> StoreError {
        match &self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull =>
            {
                StoreError::DiskFull(path.to_path_buf())
            }
            _ => self,
        }
    }
}

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cheap-to-clone handle to the database threads: one writer, which
/// every change goes through in order, and one reader on its own connection
/// (WAL lets it read the last committed state while the writer works), so
/// that status and describe calls do not queue behind a burst of writes.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Task>,
    read_tx: mpsc::Sender<Task>,
    /// The database file (named when the disk is full).
    path: std::sync::Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` with mode 0600,
    /// applies pending migrations and starts the store thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message,
        };
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| open_err(e.to_string()))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Transactions take the write lock when they begin (waiting in the
        // busy handler): a deferred one that read first and then wants to
        // write fails at once with SQLITE_BUSY when another connection (the
        // DHCP thread's) committed meanwhile, which the busy timeout does
        // not cover (seen as "internal error" on RegisterBMNodes during a
        // DHCP flood).
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        schema::migrate(&mut conn).map_err(|e| open_err(e.to_string()))?;
        let mut reader = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", "ON")?;
        let (read_tx, read_rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("rackboot-store-read".into())
            .spawn(move || {
                while let Ok(task) = read_rx.recv() {
                    task(&mut reader);
                }
            })
            .map_err(|e| open_err(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("rackboot-store".into())
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    task(&mut conn);
                }
                // Every handle is gone: fold the WAL back so the file stands alone.
                let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            })
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            tx,
            read_tx,
            path: std::sync::Arc::new(path.to_path_buf()),
        })
    }

    /// Runs `f` on the store thread and awaits its result.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        });
        self.tx.send(task).map_err(|_| StoreError::Closed)?;
        reply_rx
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|e| e.on_disk(&self.path))
    }

    /// Runs the read-only `f` on the reader thread (it sees every change
    /// committed before the call).
    async fn call_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        });
        self.read_tx.send(task).map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Maps a UNIQUE violation to a conflict with `message`, other errors as is.
fn unique_violation(e: rusqlite::Error, message: impl FnOnce(&str) -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(err, Some(text))
            if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("UNIQUE") =>
        {
            StoreError::Conflict(message(text))
        }
        _ => StoreError::Sqlite(e),
    }
}

impl Store {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folds what the WAL holds into the database file without waiting for
    /// (or holding up) readers and writers — the DHCP thread's connection
    /// never checkpoints itself.
    pub async fn checkpoint_passive(&self) -> Result<(), StoreError> {
        self.call(|c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Folds the WAL back into the database file (on shutdown).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.call(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_disk_is_named_with_the_database_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        // SQLite answers SQLITE_FULL when the file may not grow: as on a
        // full disk (tests/daemon_lifecycle.rs fills a real tmpfs).
        store
            .call(|c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.pragma_update(None, "max_page_count", pages)?;
                Ok(())
            })
            .await
            .unwrap();
        let big = "x".repeat(200_000);
        let e = store
            .call(move |c| {
                c.execute("CREATE TABLE filler (x TEXT)", [])?;
                c.execute("INSERT INTO filler VALUES (?1)", [big])?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(&e, StoreError::DiskFull(p) if p == &path), "{e:?}");
    }
}
