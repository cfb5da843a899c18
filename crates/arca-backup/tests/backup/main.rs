//! Integration tests of the backup layer on simulated devices, in one harness.

mod util;

mod catalog;
mod copy;
mod expire;
mod metadata_space;
mod pairs;
mod placement;
mod policies;
mod policy_copies;
mod restore;
mod restore_interrupted;
mod snapshot;
mod txn_failures;
mod vault_in_place;
mod vault_wire;
mod vaults;
