//! Tests of the NBD server over raw TCP against in-memory devices, in one harness.

mod certs;
mod inline;
mod limits;
mod listing;
mod readahead;
mod sessions;
mod support;
mod tls;
