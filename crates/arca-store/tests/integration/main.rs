//! Integration tests of the storage engine, in one harness.

mod bad_input;
mod basic;
mod concurrency;
mod crash;
mod faults;
mod model;
mod txn;
mod util;
