//! Fleet mode: the guards held across replicas through the store. A replica takes the
//! target's lease before it acts and renews it while it acts; a replica that finds a
//! fix of the same episode by another replica closes its incident instead of running
//! it again; the rate limit counts the whole fleet's actions.
//!
//! Fencing: before each step that acts (execute, rollback) the replica confirms with
//! the store that it still holds the lease ([`Healer::confirm_lease`]). A replica that
//! lost it (a renewal refused, or none succeeded for a whole TTL) stops and records why
//! instead of acting next to the replica that took over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, IncidentStatus, LeaseGrant, Phase};

/// Whether this replica may act now.
pub(super) enum Turn {
    /// Go ahead (holding the lease, unless fleet mode is off or the store is unreachable).
    Go(Option<LeaseHold>),
    /// Do not act: the incident was closed, escalated or the healer shut down.
    Stop,
}

/// A lease this replica holds, renewed in the background until it is handed back.
pub(super) struct LeaseHold {
    target: String,
    fingerprint: String,
    renew: JoinHandle<()>,
    /// Set by the renewal task when the store refused a renewal, or when no renewal
    /// succeeded for a whole TTL: the lease may be someone else's now.
    lost: Arc<AtomicBool>,
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        // Without renewal the lease lapses after its TTL: a dropped hold (a replica
        // dying mid-action) frees the target for the others.
        self.renew.abort();
    }
}

/// A replica name for leases: `<hostname>-<pid>-<random>`.
pub(super) fn default_replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".to_owned());
    let random = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

impl Healer {
    /// This replica's name in leases and cooldowns.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Waits for this replica's turn to run `strategy` for incident `id`.
    pub(super) async fn fleet_turn(&self, id: Uuid, strategy: &str) -> Turn {
        let fleet = &self.inner.config.guards.fleet;
        if !fleet.enabled {
            return Turn::Go(None);
        }
        let Some(incident) = self.snapshot(id) else {
            return Turn::Stop;
        };
        // The builder refuses fleet mode on a store that cannot coordinate, so this is
        // only a guard: without coordination nothing is run, rather than run unfenced.
        let Some(store) = self.inner.store.fleet() else {
            tracing::error!(
                store = self.inner.store.name(),
                "fleet mode on a store without fleet coordination; not acting"
            );
            return Turn::Stop;
        };
        let me = self.replica();
        let target = incident.target.as_str();
        let deadline = Instant::now() + fleet.lease_wait;
        let mut waiting = false;
        loop {
            match store.acquire_lease(target, me, fleet.lease_ttl).await {
                Ok(LeaseGrant::Acquired { .. }) => break,
                Ok(LeaseGrant::Held { holder, expires_at }) => {
                    if !waiting {
                        waiting = true;
                        self.fleet_wait(id, format!(
                            "replica `{holder}` holds the lease on `{target}` (until {expires_at}); waiting for it"
                        ))
                        .await;
                    }
                    if Instant::now() >= deadline {
                        self.escalate(id, format!(
                            "replica `{holder}` held the lease on `{target}` for more than {:?}; \
                             check that replica, or raise guards.fleet.lease_wait",
                            fleet.lease_wait
                        ))
                        .await;
                        return Turn::Stop;
                    }
                }
                // The store is unreachable: heal alone rather than not at all.
                Err(e) => {
                    self.store_failed("acquire_lease", &e);
                    return Turn::Go(None);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(fleet.poll) => {}
                _ = self.inner.cancel.cancelled() => return Turn::Stop,
            }
        }
        let hold = self.hold_lease(target, &incident.fingerprint);

        // Another replica may have fixed this episode while we waited.
        match store.shared_cooldown(strategy, target).await {
            Ok(Some(c)) if c.holder != me && c.started_at >= incident.opened_at => {
                let why = format!(
                    "replica `{}` ran `{strategy}` on `{target}` after this incident opened; \
                     standing by instead of running it again",
                    c.holder
                );
                self.fleet_release(hold).await;
                self.audit(AuditEntry {
                    incident: Some(id),
                    pattern: incident.pattern.clone(),
                    action: Some(strategy.to_owned()),
                    detail: serde_json::json!({"replica": c.holder, "cooldown_until": c.until}),
                    ..AuditEntry::new("self_heal.handled_by_peer", why.clone())
                })
                .await;
                self.close(id, IncidentStatus::Closed, why).await;
                return Turn::Stop;
            }
            Ok(Some(c)) => {
                self.fleet_release(hold).await;
                let left = (c.until - chrono::Utc::now()).num_seconds().max(0);
                self.escalate(id, format!(
                    "`{strategy}` ran on `{target}` (replica `{}`) before this incident opened; \
                     its cooldown has {left}s left, so the error came back after a fix",
                    c.holder
                ))
                .await;
                return Turn::Stop;
            }
            Ok(None) => {}
            Err(e) => self.store_failed("shared_cooldown", &e),
        }

        // Attempts at this episode, whichever replica made them.
        let max = self.inner.config.guards.max_attempts;
        match store
            .count_attempt(target, &incident.fingerprint, fleet.lease_wait)
            .await
        {
            Ok(n) if n > max => {
                self.fleet_release(hold).await;
                self.escalate(
                    id,
                    format!(
                        "the fleet has used its {max} attempt(s) at this error on `{target}` \
                     (max_attempts = {max}); a human should look"
                    ),
                )
                .await;
                return Turn::Stop;
            }
            Ok(_) => {}
            Err(e) => self.store_failed("count_attempt", &e),
        }
        // The fleet-wide rate limit.
        let per_hour = self.inner.config.guards.max_actions_per_hour;
        loop {
            match store.take_rate_permit(me, per_hour).await {
                Ok(true) => break,
                Err(e) => {
                    self.store_failed("take_rate_permit", &e);
                    break;
                }
                Ok(false) => {
                    if !waiting {
                        waiting = true;
                        self.fleet_wait(
                            id,
                            format!("the fleet's rate limit of {per_hour} actions an hour is reached; waiting"),
                        )
                        .await;
                    }
                    if Instant::now() >= deadline {
                        self.fleet_release(hold).await;
                        self.escalate(id, format!(
                            "the fleet's rate limit of {per_hour} actions an hour stayed reached for {:?}",
                            fleet.lease_wait
                        ))
                        .await;
                        return Turn::Stop;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(fleet.poll) => {}
                _ = self.inner.cancel.cancelled() => {
                    self.fleet_release(hold).await;
                    return Turn::Stop;
                }
            }
        }
        Turn::Go(Some(hold))
    }

    /// Starts renewing the lease on `target` every third of its TTL.
    fn hold_lease(&self, target: &str, fingerprint: &str) -> LeaseHold {
        let store = self.inner.store.clone();
        let me = self.inner.replica.clone();
        let ttl = self.inner.config.guards.fleet.lease_ttl;
        let owned = target.to_owned();
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let renew = tokio::spawn(async move {
            let every = (ttl / 3).max(Duration::from_millis(10));
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let Some(fleet) = store.fleet() else { return };
                match fleet.renew_lease(&owned, &me, ttl).await {
                    Ok(true) => last_ok = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(target_system = %owned, "lost the lease while acting; the next step that acts stops");
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(target_system = %owned, error = %e, "could not renew the lease");
                        if last_ok.elapsed() >= ttl {
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        });
        LeaseHold {
            target: target.to_owned(),
            fingerprint: fingerprint.to_owned(),
            renew,
            lost,
        }
    }

    /// Records that a step (`execute`, `rollback`) did not run because the lease was
    /// lost: audited, and a phase on the event stream.
    pub(super) async fn fenced(
        &self,
        incident: &crate::Incident,
        strategy: &str,
        step: &str,
        why: &str,
    ) {
        tracing::warn!(target_system = %incident.target, strategy, step, reason = why, "fenced: not acting without the lease");
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            action: Some(strategy.to_owned()),
            detail: serde_json::json!({"step": step, "replica": self.replica()}),
            ..AuditEntry::new("self_heal.fenced", why.to_owned())
        })
        .await;
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Fenced,
            format!("`{strategy}` {step} not run: {why}"),
        );
    }

    /// Confirms, before a step that acts, that this replica still holds the lease in
    /// `hold` (a renewal the store must grant). `Err` says why it does not: then the
    /// step must not run. Without a hold (fleet mode off) there is nothing to confirm.
    pub(super) async fn confirm_lease(&self, hold: Option<&LeaseHold>) -> Result<(), String> {
        let Some(hold) = hold else { return Ok(()) };
        let target = &hold.target;
        if hold.lost.load(Ordering::SeqCst) {
            return Err(format!(
                "this replica lost its lease on `{target}` while acting (a renewal was refused \
                 or failed for a whole lease TTL); another replica may be acting on it"
            ));
        }
        let Some(store) = self.inner.store.fleet() else {
            return Err("the store has no fleet coordination".into());
        };
        let ttl = self.inner.config.guards.fleet.lease_ttl;
        match store.renew_lease(target, self.replica(), ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                hold.lost.store(true, Ordering::SeqCst);
                Err(format!(
                    "this replica no longer holds the lease on `{target}`: another replica took \
                     it over, so this one does not act"
                ))
            }
            Err(e) => Err(format!(
                "could not confirm the lease on `{target}` with the store ({e}); not acting \
                 without it"
            )),
        }
    }

    /// Hands the lease back after acting, starting the fleet's cooldown of `strategy`;
    /// a verified fix (`fixed`) ends the episode's attempt count.
    pub(super) async fn fleet_done(&self, hold: Option<LeaseHold>, strategy: &str, fixed: bool) {
        let Some(hold) = hold else { return };
        hold.renew.abort();
        let Some(store) = self.inner.store.fleet() else {
            return;
        };
        if fixed && let Err(e) = store.clear_attempts(&hold.target, &hold.fingerprint).await {
            self.store_failed("clear_attempts", &e);
        }
        let length = self
            .inner
            .backoff
            .cooldown(strategy, &hold.target)
            .max(self.inner.config.guards.cooldown);
        if let Err(e) = store
            .start_shared_cooldown(strategy, &hold.target, self.replica(), length)
            .await
        {
            self.store_failed("start_shared_cooldown", &e);
        }
        self.fleet_release(Some(hold)).await;
    }

    /// Hands the lease back without acting.
    pub(super) async fn fleet_release(&self, hold: impl Into<Option<LeaseHold>>) {
        let Some(hold) = hold.into() else { return };
        hold.renew.abort();
        let Some(store) = self.inner.store.fleet() else {
            return;
        };
        if let Err(e) = store.release_lease(&hold.target, self.replica()).await {
            self.store_failed("release_lease", &e);
        }
    }

    async fn fleet_wait(&self, id: Uuid, why: String) {
        let incident = self.set_status(id, IncidentStatus::Queued, None).await;
        let target = incident.as_ref().map_or("", |i| i.target.as_str());
        self.emit(incident.as_ref(), target, Phase::Queued, why.clone());
        self.audit(AuditEntry {
            incident: Some(id),
            ..AuditEntry::new("self_heal.fleet_wait", why)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Healer, HealerConfig};

    #[test]
    fn fleet_mode_loads_from_toml_and_bad_values_are_refused() {
        let config: HealerConfig = toml::from_str(
            r#"
            [guards.fleet]
            enabled = true
            replica = "api-7"
            lease_ttl = "30s"
            lease_wait = "10m"
            poll = "500ms"
            "#,
        )
        .unwrap();
        let fleet = &config.guards.fleet;
        assert!(fleet.enabled);
        assert_eq!(fleet.lease_ttl, Duration::from_secs(30));
        assert_eq!(fleet.lease_wait, Duration::from_secs(600));
        let healer = Healer::builder().config(config.clone()).build().unwrap();
        assert_eq!(healer.replica(), "api-7");

        let mut unnamed = config.clone();
        unnamed.guards.fleet.replica.clear();
        let a = Healer::builder().config(unnamed.clone()).build().unwrap();
        let b = Healer::builder().config(unnamed).build().unwrap();
        assert_ne!(a.replica(), b.replica(), "every replica gets its own name");
        assert!(a.replica().contains(&std::process::id().to_string()));

        let mut bad = config;
        bad.guards.fleet.poll = Duration::ZERO;
        let e = Healer::builder().config(bad).build().unwrap_err();
        assert!(e.message().contains("guards.fleet"), "{e}");
    }
}
