//! Test and benchmark harness pieces shared by several Arca crates. A dev-dependency only: it
//! uses the standard library alone, so even the bottom crates (arca-store, arca-vault) can use
//! it without a dependency cycle.

pub mod bench;
pub mod s3;
