//! Integration tests of the storage engine, in one harness.

mod basic;
mod model;
mod util;
