//! Interoperability tests of `arca serve` against NBD clients written elsewhere: qemu-img,
//! qemu-io, nbdinfo, nbdcopy, libnbd's Python binding (nbdsh), fio, and raw malformed protocol
//! input. Each test starts its own daemon on an ephemeral loopback port in its own tempdir.
//!
//! A missing client fails the test when `CI=true`; otherwise the test prints a notice and skips.
//! `scripts/test` installs the Debian packages that provide them.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod fio;
mod nbdcopy;
mod nbdinfo;
mod protocol;
mod psk;
mod python;
mod qemu;
mod util;

#[path = "../../../arca-nbd/tests/server/certs.rs"]
mod certs;
mod tls;
