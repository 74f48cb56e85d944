//! Conformance checks for what replicas share through the store: leases, cooldowns and
//! the global rate limit.

use std::time::Duration;

use uuid::Uuid;

use super::{ok, unique};
use crate::{LeaseGrant, Store};

/// A lease is held by one holder at a time, renewed by its holder, released only by
/// it, and free once it expires; of eight concurrent requests exactly one wins.
pub async fn leases_are_exclusive_and_expire(store: &dyn Store) {
    let fleet = store.fleet().unwrap_or_else(|| {
        panic!(
            "{}: a fleet check needs a store with fleet coordination",
            store.name()
        )
    });
    let s = store.name();
    let target = unique("lease_target");
    let minute = Duration::from_secs(60);

    let a = ok(
        s,
        "acquire_lease",
        fleet.acquire_lease(&target, "replica-a", minute).await,
    );
    let LeaseGrant::Acquired { expires_at } = a else {
        panic!("[{s}] a free lease must be granted, got {a:?}");
    };
    let b = ok(
        s,
        "acquire_lease",
        fleet.acquire_lease(&target, "replica-b", minute).await,
    );
    match &b {
        LeaseGrant::Held {
            holder,
            expires_at: until,
        } => {
            assert_eq!(holder, "replica-a", "[{s}] the lease names its holder");
            assert_eq!(*until, expires_at, "[{s}] and when it lapses");
        }
        other => panic!("[{s}] a held lease must be refused to another holder, got {other:?}"),
    }
    let renewed = ok(
        s,
        "acquire_lease",
        fleet.acquire_lease(&target, "replica-a", minute).await,
    );
    match renewed {
        LeaseGrant::Acquired { expires_at: later } => assert!(
            later >= expires_at,
            "[{s}] renewing moves the expiry forward: {later} < {expires_at}"
        ),
        other => panic!("[{s}] the holder renews its own lease, got {other:?}"),
    }
    assert!(
        ok(
            s,
            "renew_lease",
            fleet.renew_lease(&target, "replica-a", minute).await
        ),
        "[{s}] the holder renews"
    );
    assert!(
        !ok(
            s,
            "renew_lease",
            fleet.renew_lease(&target, "replica-b", minute).await
        ),
        "[{s}] another holder cannot renew it"
    );
    assert!(
        !ok(
            s,
            "release_lease",
            fleet.release_lease(&target, "replica-b").await
        ),
        "[{s}] only the holder can release a lease"
    );
    assert!(
        !ok(
            s,
            "acquire_lease",
            fleet.acquire_lease(&target, "replica-b", minute).await
        )
        .acquired(),
        "[{s}] a refused release leaves the lease with its holder"
    );
    assert!(ok(
        s,
        "release_lease",
        fleet.release_lease(&target, "replica-a").await
    ));
    assert!(
        !ok(
            s,
            "renew_lease",
            fleet.renew_lease(&target, "replica-a", minute).await
        ),
        "[{s}] a renewal after the release does not take the lease back"
    );
    assert!(
        ok(
            s,
            "acquire_lease",
            fleet.acquire_lease(&target, "replica-b", minute).await
        )
        .acquired(),
        "[{s}] a released lease is free"
    );

    // A holder that dies stops renewing: its lease lapses and another takes over.
    let short = unique("lease_expiry");
    assert!(
        ok(
            s,
            "acquire_lease",
            fleet.acquire_lease(&short, "dead", Duration::ZERO).await
        )
        .acquired()
    );
    let next = ok(
        s,
        "acquire_lease",
        fleet.acquire_lease(&short, "alive", minute).await,
    );
    assert!(
        next.acquired(),
        "[{s}] an expired lease is free, got {next:?}"
    );

    // Eight replicas at once: exactly one wins.
    let race = unique("lease_race");
    let take = |i: u32| {
        let race = race.clone();
        async move {
            ok(
                s,
                "acquire_lease",
                fleet
                    .acquire_lease(&race, &format!("replica-{i}"), minute)
                    .await,
            )
            .acquired()
        }
    };
    let won = tokio::join!(
        take(0),
        take(1),
        take(2),
        take(3),
        take(4),
        take(5),
        take(6),
        take(7)
    );
    let winners = [won.0, won.1, won.2, won.3, won.4, won.5, won.6, won.7]
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(winners, 1, "[{s}] eight concurrent requests, one lease");
}

/// A cooldown started by one replica is seen by all, names who started it, is
/// replaced by a newer one and ends when its time is up.
pub async fn cooldowns_are_shared(store: &dyn Store) {
    let fleet = store.fleet().unwrap_or_else(|| {
        panic!(
            "{}: a fleet check needs a store with fleet coordination",
            store.name()
        )
    });
    let s = store.name();
    let target = unique("cooldown_target");
    assert_eq!(
        ok(
            s,
            "shared_cooldown",
            fleet.shared_cooldown("restart", &target).await
        ),
        None,
        "[{s}] no cooldown before one is started"
    );
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(5);
    ok(
        s,
        "start_shared_cooldown",
        fleet
            .start_shared_cooldown("restart", &target, "replica-a", Duration::from_secs(600))
            .await,
    );
    let c = ok(
        s,
        "shared_cooldown",
        fleet.shared_cooldown("restart", &target).await,
    )
    .unwrap_or_else(|| panic!("[{s}] a started cooldown must be visible"));
    assert_eq!(c.holder, "replica-a");
    assert!(c.started_at >= before, "[{s}] started now: {c:?}");
    let length = c.until - c.started_at;
    assert!(
        (length - chrono::TimeDelta::seconds(600)).abs() < chrono::TimeDelta::seconds(1),
        "[{s}] it lasts what was asked: {c:?}"
    );
    assert_eq!(
        ok(
            s,
            "shared_cooldown",
            fleet.shared_cooldown("reset_pool", &target).await
        ),
        None,
        "[{s}] cooldowns are per strategy"
    );
    ok(
        s,
        "start_shared_cooldown",
        fleet
            .start_shared_cooldown("restart", &target, "replica-b", Duration::from_secs(60))
            .await,
    );
    let c = ok(
        s,
        "shared_cooldown",
        fleet.shared_cooldown("restart", &target).await,
    );
    assert_eq!(
        c.map(|c| c.holder).as_deref(),
        Some("replica-b"),
        "[{s}] replaced"
    );
    ok(
        s,
        "start_shared_cooldown",
        fleet
            .start_shared_cooldown("restart", &target, "replica-b", Duration::ZERO)
            .await,
    );
    assert_eq!(
        ok(
            s,
            "shared_cooldown",
            fleet.shared_cooldown("restart", &target).await
        ),
        None,
        "[{s}] a cooldown that ended is gone"
    );
}

/// The global rate limit counts every permit granted in the last hour, whoever asked.
/// Works on a store that granted up to 40 permits this hour already.
pub async fn rate_permits_are_counted_fleet_wide(store: &dyn Store) {
    let fleet = store.fleet().unwrap_or_else(|| {
        panic!(
            "{}: a fleet check needs a store with fleet coordination",
            store.name()
        )
    });
    let s = store.name();
    let limit = 20;
    let mut granted = 0;
    for i in 0..=limit {
        let holder = format!("replica-{}", i % 3);
        if !ok(
            s,
            "take_rate_permit",
            fleet.take_rate_permit(&holder, limit).await,
        ) {
            break;
        }
        granted += 1;
    }
    assert!(
        granted <= limit,
        "[{s}] never more than the limit: {granted}"
    );
    let other = Uuid::new_v4().to_string();
    assert!(
        !ok(
            s,
            "take_rate_permit",
            fleet.take_rate_permit(&other, limit).await
        ),
        "[{s}] the limit holds for every holder"
    );
    // Find how many were granted this hour: the smallest limit that still grants one.
    let mut count = None;
    for k in limit..=2 * limit {
        if ok(
            s,
            "take_rate_permit",
            fleet.take_rate_permit(&other, k + 1).await,
        ) {
            count = Some(k);
            break;
        }
    }
    let count = count.unwrap_or_else(|| panic!("[{s}] a higher limit must grant a permit"));
    // Now count + 1 are granted: limits up to count + 1 refuse, count + 2 grants.
    for k in [count, count + 1] {
        assert!(
            !ok(
                s,
                "take_rate_permit",
                fleet.take_rate_permit("replica-0", k).await
            ),
            "[{s}] {} permits granted, limit {k} must refuse",
            count + 1
        );
    }
    assert!(
        ok(
            s,
            "take_rate_permit",
            fleet.take_rate_permit("replica-1", count + 2).await
        ),
        "[{s}] {} permits granted, limit {} must grant one",
        count + 1,
        count + 2
    );
}

/// Attempts at an episode (a fingerprint on a target) are counted across holders, per
/// episode; a cleared episode, or one idle for longer than the window, starts over.
pub async fn attempts_are_counted_per_episode(store: &dyn Store) {
    let fleet = store.fleet().unwrap_or_else(|| {
        panic!(
            "{}: a fleet check needs a store with fleet coordination",
            store.name()
        )
    });
    let s = store.name();
    let target = unique("attempts_target");
    let hour = Duration::from_secs(3600);
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(ok(
            s,
            "count_attempt",
            fleet.count_attempt(&target, "fp-a", hour).await,
        ));
    }
    assert_eq!(counts, [1, 2, 3], "[{s}] attempts add up");
    assert_eq!(
        ok(
            s,
            "count_attempt",
            fleet.count_attempt(&target, "fp-b", hour).await
        ),
        1,
        "[{s}] per fingerprint"
    );
    let other = unique("attempts_other");
    assert_eq!(
        ok(
            s,
            "count_attempt",
            fleet.count_attempt(&other, "fp-a", hour).await
        ),
        1,
        "[{s}] per target"
    );
    ok(
        s,
        "clear_attempts",
        fleet.clear_attempts(&target, "fp-a").await,
    );
    assert_eq!(
        ok(
            s,
            "count_attempt",
            fleet.count_attempt(&target, "fp-a", hour).await
        ),
        1,
        "[{s}] a cleared episode starts over"
    );
    assert_eq!(
        ok(
            s,
            "count_attempt",
            fleet.count_attempt(&target, "fp-b", Duration::ZERO).await
        ),
        1,
        "[{s}] an episode idle for longer than the window starts over"
    );
}
