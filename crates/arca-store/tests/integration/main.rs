//! Integration tests of the storage engine, in one harness.

mod basic;
mod crash;
mod faults;
mod model;
mod util;
