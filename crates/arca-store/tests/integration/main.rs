//! Integration tests of the storage engine, in one harness.

mod bad_input;
mod basic;
mod cached_reads;
mod concurrency;
mod crash;
mod faults;
mod meta_space;
mod model;
mod txn;
mod util;
mod write_behind;
