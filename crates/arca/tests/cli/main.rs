//! Tests of the `arca` command-line client: the real binary against a real daemon
//! (`arca serve --api`) that each test starts on ephemeral loopback ports in its own tempdir.

mod auth;
mod backups;
mod errors;
mod metadata_room;
#[path = "../common/nbd.rs"]
mod nbd;
mod pairs;
mod placement;
mod pool_jobs;
#[path = "../common/process.rs"]
mod process;
mod restore_interrupted;
mod scenarios;
mod snapshots;
mod stale;
mod util;
mod volumes;
