//! The core of selfheal: domain types, the plug-in traits, and the healing pipeline.
//!
//! This crate has no database, HTTP or LLM dependency. Stores, strategies and advisors
//! live in their own crates and plug in through the traits here.
//!
//! The store a healer is built with is buffered by default: the builder wraps it in a
//! [`store::BufferedStore`], so an outage of the store costs no record
//! ([`Healer::store_buffer`] gives its counters); opt out with
//! [`HealerBuilder::unbuffered`]. Audit records the store refuses for any reason wait
//! in a bounded backlog and are retried ([`Healer::audit_waiting`]).
//!
//! ```
//! use selfheal_core::{Healer, MemoryStore, Pattern, Signal};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let healer = Healer::builder().store(MemoryStore::new()).build()?;
//! let running = healer.spawn();
//! healer.admin().add_pattern(Pattern::new("pool_timeout").regex("pool timed out"), "docs").await?;
//! healer.observe(Signal::new("postgres", "pool timed out while waiting for an open connection"));
//! running.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod approval_link;
mod audit;
pub mod catalog;
mod config;
mod error;
mod event;
pub mod fingerprint;
mod healer;
mod incident;
mod layer;
mod matcher;
mod memory;
mod pattern;
mod policy;
mod redact;
mod signal;
pub mod source;
pub mod store;
mod strict;
#[cfg(feature = "test-util")]
pub mod testkit;
mod traits;

pub use approval_link::{ApprovalLinks, LinkAction, LinkClaim};
pub use audit::{
    AuditEntry, AuditRecord, ChainError, ChainHead, GENESIS_HASH, NIST_CONTROLS, verify_chain,
    verify_checkpoint,
};
pub use config::{
    BackoffConfig, BreakerConfig, DetectionConfig, EscalationConfig, FeedbackConfig, FleetConfig,
    GuardConfig, HealerConfig, IntakeConfig, LimitsConfig, PolicyConfig, RedactionConfig,
    SafetyConfig, StormConfig, VerificationConfig,
};
pub use error::{Error, ErrorKind, Result};
pub(crate) use event::EventData;
pub use event::{HealingEvent, Phase};
pub use fingerprint::{Fingerprint, Normalizer};
pub use healer::{
    AUDIT_BACKLOG, Admin, Backup, BindingIssue, BindingProblem, CHECKED_AT_START, Healer,
    HealerBuilder, Integration, LEARNED_PREFIX, Learned, PatternStats, Running, SafetyStatus,
    Silence, SilenceScope, SilenceStatus, Stats, WeakHealer, template_regex,
};
pub use incident::{
    ActionOutcome, ActionRecord, ActionStatus, Approval, ApprovalState, Command, Decided, Decision,
    Diagnosis, Health, Incident, IncidentStatus, PatternMatch, PlannedStep, RemediationPlan, Risk,
};
pub use layer::{DEFAULT_TARGET, HealerLayer, OwnWork, signal_for as event_signal};
pub use matcher::Matcher;
pub use memory::{MemoryLimits, MemoryStore};
pub use pattern::{FixBinding, Pattern, PatternMode, Severity};
pub use policy::decide;
pub use redact::{EMAIL_MASK, MASK, Redactor};
pub use signal::{
    ERROR_FIELDS, Level, MAX_CHAIN_LEVELS, MAX_FIELD_BYTES, MAX_FIELDS, MAX_MESSAGE_BYTES,
    MAX_STACK_BYTES, Signal, SignalSource, error_chain,
};
pub use store::fleet::{LeaseGrant, SharedCooldown};
pub use store::report::{HourlyCount, LastAction, OverviewRow, PatternReport, StrategyRate};
pub use store::{
    AuditStore, ControlStore, DiagnosisCache, FleetStore, IncidentFilter, IncidentStore,
    PatternStore, ReportStore, Store,
};
#[cfg(any(test, feature = "test-util"))]
pub use store::{
    MockAuditStore, MockControlStore, MockDiagnosisCache, MockFleetStore, MockIncidentStore,
    MockPatternStore, MockStore,
};
pub use traits::{
    ActionContext, AdviceRequest, Applicability, Executor, Fingerprinter, LlmAdvisor, Notification,
    NotificationLink, Notifier, Strategy, Verifier,
};
#[cfg(any(test, feature = "test-util"))]
pub use traits::{
    MockExecutor, MockFingerprinter, MockLlmAdvisor, MockNotifier, MockStrategy, MockVerifier,
};
/// Ids of incidents, actions and approvals.
pub use uuid::Uuid;

/// The traits and types most integrations need.
pub mod prelude {
    pub use crate::{
        AuditStore, ControlStore, DiagnosisCache, Executor, Fingerprinter, FleetStore, Healer,
        IncidentStore, Integration, LlmAdvisor, Notifier, Pattern, PatternStore, ReportStore,
        Signal, Store, Strategy, Verifier,
    };
}
