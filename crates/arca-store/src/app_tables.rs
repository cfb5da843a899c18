//! Tables of the layers above: rows keyed and valued by bytes, written by a [`crate::Txn`]
//! and read through [`AppReader`].
//!
//! The tables live in the metadata store as `app:NAME`; keys sort bytewise, so big-endian
//! integers make ordered indexes.

use std::collections::HashMap;
use std::ops::Bound;

use redb::ReadableDatabase;

use crate::error::Result;
use crate::meta_guard::store_error;
use crate::pool::Pool;
use crate::records::APP_TABLE_PREFIX;

/// Longest table name the layers above may use (after the `app:` prefix).
pub const APP_TABLE_NAME_MAX: usize = 64;

/// A write to a table of the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOp {
    Put {
        table: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: String,
        key: Vec<u8>,
    },
    /// Removes every row of the table.
    Clear {
        table: String,
    },
}

pub(crate) fn check_table(table: &str) {
    // Table names are constants of the layer above: a bad one is a programmer error.
    assert!(
        !table.is_empty()
            && table.len() <= APP_TABLE_NAME_MAX
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "bad application table name {table:?}"
    );
}

fn definition(name: &str) -> redb::TableDefinition<'_, &'static [u8], &'static [u8]> {
    redb::TableDefinition::new(name)
}

pub(crate) fn apply_app_ops(
    txn: &redb::WriteTransaction,
    ops: &[AppOp],
) -> std::result::Result<(), redb::Error> {
    let mut tables: HashMap<String, redb::Table<'_, &'static [u8], &'static [u8]>> = HashMap::new();
    for op in ops {
        let name = match op {
            AppOp::Put { table, .. } | AppOp::Delete { table, .. } | AppOp::Clear { table } => {
                format!("{APP_TABLE_PREFIX}{table}")
            }
        };
        if !tables.contains_key(&name) {
            let t = txn.open_table(definition(&name))?;
            tables.insert(name.clone(), t);
        }
        let t = tables.get_mut(&name).expect("opened above");
        match op {
            AppOp::Put { key, value, .. } => {
                t.insert(key.as_slice(), value.as_slice())?;
            }
            AppOp::Delete { key, .. } => {
                t.remove(key.as_slice())?;
            }
            AppOp::Clear { .. } => {
                t.retain(|_, _| false)?;
            }
        }
    }
    Ok(())
}

const READ_CONTEXT: &str = "reading an application table";

/// A consistent read view of the application tables ([`Pool::app_read`]). Every call into the
/// store is guarded (meta_guard.rs); the caller's `visit` runs outside the guard, so its own
/// panics stay its own.
pub struct AppReader {
    txn: redb::ReadTransaction,
    pool: Pool,
}

impl AppReader {
    fn error(&self, e: impl Into<redb::Error>) -> crate::Error {
        store_error(&self.pool.inner.meta_label, READ_CONTEXT, e.into())
    }

    fn table(
        &self,
        table: &str,
    ) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
        check_table(table);
        let name = format!("{APP_TABLE_PREFIX}{table}");
        self.pool.guarded(READ_CONTEXT, || {
            match self.txn.open_table(definition(&name)) {
                Ok(t) => Ok(Some(t)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(t) = self.table(table)? else {
            return Ok(None);
        };
        self.pool.guarded(READ_CONTEXT, || {
            let v = t.get(key).map_err(|e| self.error(e))?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }

    /// Visits the rows whose keys lie in the range, in key order (or reverse order), until
    /// `visit` returns false. A table never written is empty.
    pub fn scan(
        &self,
        table: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let ctx = READ_CONTEXT;
        let Some(t) = self.table(table)? else {
            return Ok(());
        };
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (from, to)
            && a > b
        {
            // redb asserts on inverted ranges; an empty answer is the right one.
            return Ok(());
        }
        let mut range = self.pool.guarded(ctx, || {
            t.range::<&[u8]>((from, to)).map_err(|e| self.error(e))
        })?;
        loop {
            // The store's step is guarded, the caller's visit is not.
            let row = self.pool.guarded(ctx, || {
                let row = if reverse {
                    range.next_back()
                } else {
                    range.next()
                };
                row.transpose().map_err(|e| self.error(e))
            })?;
            match row {
                Some((k, v)) if visit(k.value(), v.value()) => {}
                _ => return Ok(()),
            }
        }
    }
}

impl Pool {
    /// Reads one row of an application table.
    pub fn app_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.app_read(|r| r.get(table, key))
    }

    /// Visits rows of an application table: see [`AppReader::scan`].
    pub fn app_scan(
        &self,
        table: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.app_read(|r| r.scan(table, from, to, reverse, visit))
    }

    /// Runs `f` on one consistent read view of the application tables.
    pub fn app_read<T>(&self, f: impl FnOnce(&AppReader) -> Result<T>) -> Result<T> {
        let db = self.db()?;
        let db = db.as_ref().expect("db() opens the store");
        let txn = self.guarded(READ_CONTEXT, || {
            db.begin_read()
                .map_err(|e| store_error(&self.inner.meta_label, READ_CONTEXT, e.into()))
        })?;
        let reader = AppReader {
            txn,
            pool: self.clone(),
        };
        let r = f(&reader);
        // Ending the read transaction is a call into the store too.
        self.guarded(READ_CONTEXT, move || {
            drop(reader);
            Ok(())
        })?;
        r
    }
}
