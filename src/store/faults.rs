//! Which storage errors mean "the database cannot be used right now" rather than "this request
//! went wrong": the one classification the HTTP layer (503 instead of 500), the group-commit
//! writers (fail a whole batch at once instead of retrying each item against a dead server)
//! and the outcome writer (keep the outcome and write it when the database is back) share.
//!
//! Connection-level faults are what a PostgreSQL restart, a reset connection or a network cut
//! produce (`Io`, `PoolTimedOut`, `PoolClosed`, `Tls`, `Protocol` from a connection cut
//! mid-message, a crashed SQLite worker, and the server's own "shutting down", "cannot connect
//! now" and connection-exception SQLSTATEs); disk faults are SQLite's "disk full", "read-only"
//! and I/O errors, and their PostgreSQL counterparts (class 53, and a read-only transaction on
//! a standby after a failover). Everything else (a constraint, a bad row, a bug) is not a fault
//! of the database's availability and stays an internal error.

use sqlx::error::DatabaseError as _;

use super::StoreError;

/// Why the database cannot be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// It cannot be reached or does not answer: a cut or refused connection, no free
    /// connection within the acquire timeout, a server shutting down or starting, a busy lock.
    Unreachable,
    /// Its disk is full (SQLite `SQLITE_FULL`; PostgreSQL `53100 disk_full`).
    DiskFull,
    /// It cannot be written: a read-only file or file system, or a PostgreSQL standby.
    ReadOnly,
    /// Reading or writing its files failed (SQLite `SQLITE_IOERR`, `SQLITE_CANTOPEN`).
    DiskError,
}

impl Unavailable {
    /// The error code clients see (`database_unavailable`, `disk_full`, `database_read_only`).
    pub fn code(self) -> &'static str {
        match self {
            Unavailable::Unreachable | Unavailable::DiskError => "database_unavailable",
            Unavailable::DiskFull => "disk_full",
            Unavailable::ReadOnly => "database_read_only",
        }
    }

    /// A sentence for the client.
    pub fn message(self) -> &'static str {
        match self {
            Unavailable::Unreachable => {
                "the database cannot be reached right now; retry after `Retry-After` seconds \
                 (with the same Idempotency-Key, to be safe)"
            }
            Unavailable::DiskFull => {
                "the database's disk is full; this request was not stored; retry after \
                 `Retry-After` seconds"
            }
            Unavailable::ReadOnly => {
                "the database is read-only right now; this request was not stored; retry after \
                 `Retry-After` seconds"
            }
            Unavailable::DiskError => {
                "the database's files cannot be read or written right now; retry after \
                 `Retry-After` seconds"
            }
        }
    }

    /// How long a client should wait before retrying, in seconds.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Unavailable::Unreachable => 2,
            Unavailable::DiskFull | Unavailable::ReadOnly | Unavailable::DiskError => 5,
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unavailable::Unreachable => "database unreachable",
            Unavailable::DiskFull => "database disk full",
            Unavailable::ReadOnly => "database read-only",
            Unavailable::DiskError => "database disk error",
        })
    }
}

impl StoreError {
    /// Whether this error means the database cannot be used right now (see the module docs),
    /// and why; `None` for every error that is the request's or the code's own.
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self {
            StoreError::Unavailable { kind, .. } => Some(*kind),
            StoreError::Database(err) => classify(err),
            StoreError::Migration(sqlx::migrate::MigrateError::Execute(err)) => classify(err),
            _ => None,
        }
    }

    /// A copy of an unavailability error for another caller (the underlying `sqlx::Error`
    /// cannot be cloned; its text is kept).
    pub(crate) fn unavailable_copy(&self) -> Option<StoreError> {
        self.unavailable().map(|kind| StoreError::Unavailable {
            kind,
            cause: match self {
                StoreError::Unavailable { cause, .. } => cause.clone(),
                other => other.to_string(),
            },
        })
    }
}

/// The classification of one `sqlx` error.
pub fn classify(err: &sqlx::Error) -> Option<Unavailable> {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        // What a connection cut in the middle of a message reads as.
        | sqlx::Error::Protocol(_) => Some(Unavailable::Unreachable),
        sqlx::Error::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                let code = sqlite.code().and_then(|code| code.parse::<i32>().ok())?;
                sqlite_code(code)
            } else if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                sqlstate(db.code()?.as_ref())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// SQLite result codes (extended codes carry the primary one in their low byte).
fn sqlite_code(extended: i32) -> Option<Unavailable> {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    match extended & 0xff {
        // Still locked after the busy timeout: another writer holds the database.
        SQLITE_BUSY => Some(Unavailable::Unreachable),
        SQLITE_READONLY => Some(Unavailable::ReadOnly),
        SQLITE_FULL => Some(Unavailable::DiskFull),
        SQLITE_IOERR | SQLITE_CANTOPEN => Some(Unavailable::DiskError),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs that say the server, not the statement, is the problem.
fn sqlstate(code: &str) -> Option<Unavailable> {
    match code {
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up
        // or shutting down), 57P05 idle_session_timeout.
        "57P01" | "57P02" | "57P03" | "57P05" => Some(Unavailable::Unreachable),
        // 53100 disk_full.
        "53100" => Some(Unavailable::DiskFull),
        // 25006 read_only_sql_transaction: connected to a standby (e.g. after a failover).
        "25006" => Some(Unavailable::ReadOnly),
        // Class 08: connection exceptions; class 53: insufficient resources (out of memory,
        // too many connections).
        code if code.starts_with("08") || code.starts_with("53") => Some(Unavailable::Unreachable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_errors_are_unreachable() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        for err in [
            sqlx::Error::Io(reset),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert_eq!(classify(&err), Some(Unavailable::Unreachable), "{err}");
        }
        for err in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            assert_eq!(classify(&err), None, "{err}");
        }
    }

    #[test]
    fn sqlite_codes_are_classified_by_their_primary_code() {
        // SQLITE_FULL, SQLITE_READONLY_DBMOVED (8 | 4 << 8), SQLITE_IOERR_WRITE (10 | 3 << 8),
        // SQLITE_BUSY; SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_ERROR (1) are no fault.
        assert_eq!(sqlite_code(13), Some(Unavailable::DiskFull));
        assert_eq!(sqlite_code(1032), Some(Unavailable::ReadOnly));
        assert_eq!(sqlite_code(778), Some(Unavailable::DiskError));
        assert_eq!(sqlite_code(5), Some(Unavailable::Unreachable));
        assert_eq!(sqlite_code(2067), None);
        assert_eq!(sqlite_code(1), None);
    }

    #[test]
    fn server_sqlstates_are_classified_and_statement_ones_are_not() {
        for code in ["57P01", "57P03", "08006", "08001", "53300"] {
            assert_eq!(sqlstate(code), Some(Unavailable::Unreachable), "{code}");
        }
        assert_eq!(sqlstate("53100"), Some(Unavailable::DiskFull));
        assert_eq!(sqlstate("25006"), Some(Unavailable::ReadOnly));
        // unique_violation, serialization_failure, syntax_error, query_canceled.
        for code in ["23505", "40001", "42601", "57014"] {
            assert_eq!(sqlstate(code), None, "{code}");
        }
    }

    #[test]
    fn copies_keep_the_kind_and_the_text() {
        let err = StoreError::Database(sqlx::Error::PoolTimedOut);
        let copy = err.unavailable_copy().expect("unavailable");
        assert_eq!(copy.unavailable(), Some(Unavailable::Unreachable));
        assert_eq!(copy.to_string(), format!("database unreachable: {err}"));
        assert!(StoreError::NotFound.unavailable_copy().is_none());
    }
}
