//! Integration tests of the storage engine, in one harness.

mod bad_input;
mod basic;
mod cached_reads;
mod concurrency;
mod corrupt_metadata;
mod crash;
mod faults;
mod fsck_under_load;
mod meta_space;
mod model;
mod placement;
mod stale_device;
mod txn;
mod txn_abort;
mod util;
mod write_behind;
