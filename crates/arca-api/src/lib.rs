//! Arca's management API: HTTP/JSON under `/v1` with an OpenAPI document generated from the
//! code, Prometheus metrics, and the JSON types the CLI shares.

mod access;
mod backups;
mod convert;
pub mod error;
pub mod metrics;
mod pairs;
mod panics;
pub mod server;
pub mod types;

pub use metrics::Metrics;
pub use server::{ApiDoc, ApiState, BODY_MAX_BYTES, openapi_json, router, serve};
