//! The harness shared by the api, cli and interop tests: the daemon under test (`arca serve` on
//! ephemeral loopback ports in its own tempdir, stopped by PID), child processes with a
//! timeout, tool checks, qemu-io, and a bare NBD host. Each harness includes it with
//! `#[path = "../common/mod.rs"] mod common;`.

// Each harness uses a different part of it.
#![allow(dead_code)]

pub mod daemon;
pub mod data;
pub mod http;
pub mod json;
pub mod nbd;
pub mod process;
pub mod qemu;
// The vault tests of cli and api use it; the other harnesses do not.
#[allow(unused_imports)]
pub use arca_testkit::s3;
pub mod tools;
