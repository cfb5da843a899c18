//! The backup layer of Arca. For now it holds the job runner that long operations (copy
//! backups, restores, verification, pair resync, pool checks) report progress through.

pub mod jobs;

pub use jobs::{Job, JobContext, JobError, JobId, JobManager, JobSnapshot, JobState};
