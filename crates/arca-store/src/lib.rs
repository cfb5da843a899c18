//! Arca's storage engine: a pool of thin volumes on one or more devices, with O(1) snapshots,
//! clones, exact space accounting, crash-safe metadata and fsck.
//!
//! Layers inside the crate, bottom up: [`device`] (I/O engines), [`layout`] (superblocks),
//! `meta_region` (the metadata store's home), `extent_map` and `family` (maps and how snapshots
//! and clones share them), `alloc`, then the [`Pool`] with its control operations, data I/O
//! ([`Export`]), commits and [`Pool::fsck`].

mod alloc;
mod app_tables;
mod commit;
mod control;
pub mod device;
mod error;
mod extent_map;
mod family;
pub mod fsck;
mod generation;
pub mod guards;
mod io;
pub mod layout;
mod load;
mod meta_guard;
mod meta_region;
mod meta_space;
pub mod names;
mod placement;
mod pool;
mod records;
pub mod sim;
mod txn;
mod txn_apply;
mod txn_undo;
mod volume_queries;
mod write_behind;

pub use app_tables::{APP_TABLE_NAME_MAX, AppOp, AppReader};
pub use device::{BlockDevice, FileDevice};
pub use error::{Error, ErrorKind, Result};
pub use fsck::{FsckReport, Problem};
pub use guards::{Guard, GuardEffect, GuardOwner};
pub use io::{Export, ExportInfo, StatusRun, WriteHook, Written, ZeroOptions};
pub use meta_guard::panic_text;
pub use meta_space::{MAP_ENTRY_ROOM_BYTES, MetaSpace};
pub use pool::{
    DeviceStatus, OpenOptions, Pool, PoolConfig, PoolStatus, SECTOR_SIZE, SnapshotInfo,
    VOLUME_SIZE_MAX, VolumeInfo,
};
pub use txn::Txn;
