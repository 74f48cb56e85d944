//! The store traits, one per concern ([`Store`] and its parts), the reporting types
//! ([`report`]), the fleet coordination types ([`fleet`]) and [`BufferedStore`], which
//! rides out outages.

mod buffered;
pub mod fleet;
pub mod report;
mod traits;

pub use buffered::{BufferedStore, DEFAULT_CAPACITY};
pub use traits::{
    AuditStore, ControlStore, DiagnosisCache, FleetStore, IncidentFilter, IncidentStore,
    PatternStore, ReportStore, Store,
};
#[cfg(any(test, feature = "test-util"))]
pub use traits::{
    MockAuditStore, MockControlStore, MockDiagnosisCache, MockFleetStore, MockIncidentStore,
    MockPatternStore, MockStore,
};

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// `now + length` to the microsecond, saturating at the year 9999 (a time every store
/// can hold).
pub fn fleet_expiry(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    let latest = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(now);
    chrono::TimeDelta::from_std(length)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map_or(latest, |t| t.min(latest))
        .trunc_subsecs(6)
}
