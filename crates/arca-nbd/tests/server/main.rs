//! Tests of the NBD server over raw TCP against in-memory devices, in one harness.

mod inline;
mod readahead;
mod sessions;
mod support;
