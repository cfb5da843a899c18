//! Tests of the `arca` command-line client: the real binary against a real daemon
//! (`arca serve --api`) that each test starts on ephemeral loopback ports in its own tempdir.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod backups;
#[path = "../../../arca-nbd/tests/server/certs.rs"]
mod certs;
mod errors;
mod https;
mod metadata_room;
mod pairs;
mod placement;
mod policies;
mod pool_jobs;
mod restore_interrupted;
mod scenarios;
mod snapshots;
mod stale;
mod tokens;
mod util;
mod vault_dr;
mod vault_failures;
mod vaults;
mod volumes;
