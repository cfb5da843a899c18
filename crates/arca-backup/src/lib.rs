//! The backup layer of Arca: the catalog of backups the array manages (records, indexes,
//! descriptors on destinations), backup, restore, verify, retention, catalog check and
//! rebuild, and the job runner long operations report progress through.
//!
//! Modules: [`record`] (the management information), [`catalog`] (tables and queries),
//! [`copier`] (the image walk and copy every copy, digest, restore and pair copy uses),
//! [`digest`] (content digests), [`retention`] (the prune planner),
//! [`backups`] and its operation modules (create, restore, verify, expire, check), [`jobs`],
//! [`ids`] (the backup, job and pair ids other crates pass back), [`policy`] (backup
//! policies: calendars, the scheduler and its runs),
//! [`vaults`] (the vault registry), [`copies`] and `vault_copies` (copies off the array,
//! host-written information).

/// `as_str`, `ALL` and `Display` for an enum the API sends as a plain string. The names must be
/// the serde names (a unit test in arca-api checks every such enum).
#[macro_export]
macro_rules! wire_names {
    ($t:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name the API sends.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($t::$v => $s),*
                }
            }

            /// Every value, for tests and help texts.
            pub const ALL: &'static [$t] = &[$($t::$v),*];
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod backups;
pub mod catalog;
mod check;
pub mod copier;
pub mod copies;
mod create;
pub mod digest;
pub mod digest_store;
mod expire;
pub mod ids;
pub mod jobs;
mod pair_backups;
pub mod pairs;
mod placement;
pub mod policy;
pub mod record;
mod record_legacy;
mod restore;
mod restore_state;
pub mod retention;
mod stored;
mod targets;
pub mod time;
mod vault_copies;
pub mod vault_copy;
mod vault_restore;
mod vault_rewrite;
pub mod vaults;
mod verify;
pub mod volumes;

pub use backups::*;
pub use check::{CatalogProblem, CatalogReport, RebuildReport};
pub use create::{CreateRequest, Created, SET_VOLUMES_MAX, Target, TargetKind};
pub use expire::{DeleteOptions, PruneItem, PruneReport, PruneRequest, deletion_refusal};
pub use ids::{BackupId, JobId, PairId};
pub use jobs::{
    BackupCopied, CopiedToVault, Digested, Job, JobContext, JobError, JobKind, JobManager,
    JobResult, JobSnapshot, JobState, PairCopied, PolicyRan, RestoredInPlace, RestoredNew,
    RolledBack,
};
pub use pairs::{PairRecord, PairState, Pairs};
pub use policy::Policies;
pub use record::*;
pub use restore::{RestoreTo, Restored};
pub use vault_copies::Annotation;
pub use vault_copy::{VaultCopied, VaultMetrics};
pub use vault_restore::ImportReport;
pub use vaults::{NewVault, RemovedVault, Secret, VaultEntry, VaultKey, VaultLocation};
pub use verify::Verification;
