//! The boundary with redb: errors and panics of the metadata store become engine errors that
//! name the metadata region.
//!
//! redb trusts the pages of a cleanly closed store without verifying their checksums, so a
//! damaged page can make it panic (`entered unreachable code` on a page type byte it does not
//! know, slice indexes out of range) instead of returning an error. Every call into redb is
//! therefore made through [`guard`], which catches the panic and reports the region as damaged
//! ([`ErrorKind::Corrupt`]). What a caught panic may leave behind:
//! - our locks: parking_lot locks are released as the panic unwinds (they do not poison), and
//!   no in-memory state of the pool is changed inside a guarded call except by `load` (whose
//!   pool is discarded on error) and the commit (whose drained changes are put back);
//! - redb's own state: the `Database` is not trusted again. The caller marks it broken and the
//!   next user reopens it from the region ([`crate::Pool`]'s `db()`), which either works or
//!   fails the same way, as an error.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::sync::atomic::Ordering;

use redb::Database;

use crate::error::{Error, ErrorKind, Result};
use crate::pool::Pool;

/// How errors name the region: "metadata region (device D, bytes A..B)".
pub(crate) fn region_label(device: &str, offset: u64, len: u64) -> String {
    format!(
        "metadata region (device {device}, bytes {offset}..{})",
        offset.saturating_add(len)
    )
}

/// Maps a store error: "region full" is no space, damaged pages, bad lengths and tables of the
/// wrong type are corruption, and the rest (device errors, misuse of the store) I/O errors.
pub(crate) fn store_error(region: &str, context: &str, e: redb::Error) -> Error {
    use std::io::ErrorKind as Io;
    // The region refuses to grow past its end with StorageFull (meta_region.rs).
    if matches!(&e, redb::Error::Io(io) if io.kind() == Io::StorageFull) {
        return Error::new(ErrorKind::NoSpace, format!("{context}: {region}: {e}"));
    }
    let kind = match &e {
        // What the region returns for reads past its length, and redb for a foreign header.
        redb::Error::Io(io) if matches!(io.kind(), Io::InvalidData | Io::UnexpectedEof) => {
            ErrorKind::Corrupt
        }
        // The device failed (now or earlier: redb then refuses until reopened).
        redb::Error::Io(_) | redb::Error::PreviousIo => ErrorKind::Io,
        // What the store found on the region: damaged pages or tables not as this build wrote
        // them.
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. } => ErrorKind::Corrupt,
        redb::Error::ValueTooLarge(_) => ErrorKind::InvalidArgument,
        // How the store was used (a transaction still open, a lock): not the region's damage.
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("{context}: {region}: {e}"))
}

/// The text of a panic's payload (also for the layers above that catch panics).
pub fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".to_string())
}

/// Runs `f`, which calls into redb. A panic inside becomes a [`ErrorKind::Corrupt`] error
/// naming the region; the caller must then stop using the `Database` (see the module doc).
/// Returns whether it panicked, so the caller can do that.
pub(crate) fn guard<T>(
    region: &str,
    context: &str,
    f: impl FnOnce() -> Result<T>,
) -> (Result<T>, bool) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => (r, false),
        Err(p) => {
            let text = panic_text(&*p);
            tracing::error!("{context}: the metadata store panicked on damaged data: {text}");
            let e = Error::new(
                ErrorKind::Corrupt,
                format!("{context}: {region} is damaged: the metadata store failed on it ({text})"),
            );
            (Err(e), true)
        }
    }
}

/// Drops a `Database` that may sit on damaged pages: redb writes on close, and may panic there.
pub(crate) fn drop_db(db: Database) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(db))) {
        tracing::error!(
            "closing the metadata store failed on damaged data: {}",
            panic_text(&*p)
        );
    }
}

impl Pool {
    /// Runs `f`, which calls into redb, at the boundary: a panic becomes an error naming the
    /// region and marks the store instance broken, so the next `db()` reopens it.
    pub(crate) fn guarded<T>(&self, context: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (r, panicked) = guard(&self.inner.meta_label, context, f);
        if panicked {
            self.inner.db_broken.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Closes the store instance (after a failed commit or a panic); the next `db()` reopens
    /// it from the region. The caller must not hold a guard from `db()`.
    pub(crate) fn discard_db(&self) {
        let old = {
            let mut w = self.inner.db.write();
            self.inner.db_broken.store(false, Ordering::SeqCst);
            w.take()
        };
        if let Some(db) = old {
            drop_db(db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_corrupt_error_naming_the_region() {
        let region = region_label("sim0", 65536, 4096);
        let (r, panicked) = guard::<()>(&region, "reading", || panic!("unreachable page"));
        let e = r.unwrap_err();
        assert!(panicked);
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(
            e.to_string()
                .contains("metadata region (device sim0, bytes 65536..69632) is damaged"),
            "{e}"
        );
        assert!(e.to_string().contains("unreachable page"), "{e}");
        let (r, panicked) = guard(&region, "reading", || Ok(5));
        assert_eq!(r.unwrap(), 5);
        assert!(!panicked);
    }

    #[test]
    fn store_errors_are_classified() {
        let region = "metadata region (device d, bytes 1..2)";
        let eio = redb::Error::Io(std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(store_error(region, "c", eio).kind(), ErrorKind::Io);
        let full = redb::Error::Io(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "metadata region full: 9 bytes needed, 8 available",
        ));
        assert_eq!(store_error(region, "c", full).kind(), ErrorKind::NoSpace);
        let bad = redb::Error::Corrupted("bad page".into());
        let e = store_error(region, "c", bad);
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(
            e.to_string().starts_with("c: metadata region (device d"),
            "{e}"
        );
    }
}
