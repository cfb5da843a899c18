//! Arca's management API: HTTP/JSON under `/v1` with an OpenAPI document generated from the
//! code, Prometheus metrics, the web console's files, and the JSON types the CLI shares.

mod access;
pub mod audit;
mod backup_json;
mod backups;
pub mod checks;
mod console;
mod convert;
pub mod error;
mod jobs;
pub mod metrics;
mod newest;
mod pairs;
mod panics;
mod policies;
mod pool;
pub mod rate;
pub mod roles;
pub mod server;
mod snapshots;
pub mod tls;
pub mod tokens;
pub mod types;
mod vaults;
mod volumes;

pub use metrics::Metrics;
pub use server::{ApiDoc, ApiState, BODY_MAX_BYTES, openapi_json, router, serve};
pub use tls::serve_tls;
