//! Operating the cache, beside serving it: `prefetch`, `lock` (complete lock files), `gc`,
//! `verify` (audit), `export`/`import` (bundles) and the status page's snapshot.
//!
//! Every operation goes through the same core as serving (`mirror::Mirror`: its releases are
//! verified the same way, its archives fetched through the same path) and reaches stored data
//! only through `store::Store` and its keys, never by building paths.

mod audit;
mod bundle;
mod gc;
mod lock;
mod prefetch;
mod status;

pub use audit::{audit, AuditMode, AuditReport, Damage};
pub use bundle::{export_bundle, import_bundle, BundleFilter, BundleReport};
pub use gc::{collect_garbage, GcReport};
pub use lock::{merge_lock, select_version, LockRequest, LockTarget};
pub use prefetch::{
    prefetch, prefetch_plan, quarantine_note, resolve_provider, PrefetchItem, PrefetchOutcome,
    PrefetchPlan, PrefetchRequest, DEFAULT_REGISTRY_HOST,
};
pub use status::{
    status, CachedArchiveStatus, CachedRelease, StatusCache, StatusSnapshot, MAX_RELEASES_SHOWN,
    STATUS_REFRESH,
};

use crate::{
    mirror::{MirrorError, SetupError},
    store::{LayoutError, StoreError},
};

/// Why an operation stopped.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{0}")]
    Bundle(String),
    #[error("bundle refused, nothing imported: {}", .0.join("; "))]
    BundleRefused(Vec<String>),
    #[error("{0}")]
    Lock(String),
    #[error("internal error: {0}")]
    Internal(String),
}
