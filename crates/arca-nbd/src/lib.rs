//! An NBD server (fixed newstyle handshake, structured replies, `base:allocation`) over the
//! [`Device`] and [`Exports`] traits. It knows nothing of pools: the binary adapts the storage
//! engine to these traits.

pub mod access;
pub mod device;
mod handshake;
mod inflight;
pub mod proto;
mod psk;
mod readahead;
mod server;
pub mod tls;
mod transmission;

pub use access::{AccessRules, Client, Grant, Identity, RuleError};
pub use device::{DevError, DevResult, Device, ExportSummary, Exports, Extent};
pub use server::{Limits, Server, SessionInfo};
pub use tls::{TlsConfig, TlsMode, TlsSetupError};
