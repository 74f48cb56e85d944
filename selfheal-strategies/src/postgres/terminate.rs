//! [`TerminateIdleConnections`]: free connection slots held by idle sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Applicability, Error, ErrorKind, Executor, RemediationPlan,
    Result, Risk, Strategy,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, instrument, warn};

use super::{check_plan, describe, params_object, pg_error};

/// The session states that count as idle.
const IDLE_STATES: [&str; 3] = [
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
];

/// The filters shared by planning and execution: idle client backends, not this
/// session, not a protected application, not a superuser unless allowed.
/// `$1` states, `$2` idle seconds, `$3` protected application names, `$4` allow
/// superusers, `$5` database or null, `$6` user or null.
const FILTERS: &str = "a.backend_type = 'client backend' \
    AND a.pid <> pg_backend_pid() \
    AND a.state = ANY($1) \
    AND a.state_change < now() - make_interval(secs => $2) \
    AND NOT (coalesce(a.application_name, '') = ANY($3)) \
    AND ($4 OR NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = a.usesysid AND r.rolsuper)) \
    AND ($5::text IS NULL OR a.datname::text = $5) \
    AND ($6::text IS NULL OR a.usename::text = $6)";

/// Frees connection slots by terminating idle sessions with `pg_terminate_backend`,
/// through the healer's own pool (which keeps its connection when the server has no
/// slot left for new ones).
///
/// It acts on the situation at hand. It reads the server's slots first
/// (`max_connections` less the reserved ones, against the client backends connected):
///
/// - **Short of slots** (fewer free than the [`headroom`](Self::headroom), default
///   5): it ends idle sessions however long they have been idle, oldest idle first,
///   only as many as the headroom needs plus [`MARGIN`](Self::MARGIN) (2), and only
///   the [`service_role`](Self::service_role)'s when the binding names no `user`.
/// - **Slots free**: a cleanup of forgotten sessions, those idle longer than
///   `idle_for` (default 5 minutes), at most `max`.
///
/// An `idle_for` or `user` the binding gives applies in both cases.
///
/// Never terminated: active sessions (only the `states` given, default `idle`), the
/// session running the statement (`pg_backend_pid()`), sessions whose
/// `application_name` is protected (by default the pool's own application name and
/// `selfheal`: name the healer's pool so all its connections are spared), superusers
/// unless [`allow_superusers`](Self::allow_superusers), non-client backends
/// (autovacuum, replication), and sessions that became active or reconnected since
/// the plan.
///
/// - **Parameters**: `idle_for` (`"5m"`, `"90s"` or seconds), `max` (default 100),
///   `states` (default `["idle"]`; also `"idle in transaction"`,
///   `"idle in transaction (aborted)"`), `database`, `user` (only those).
/// - **Applicable** ([`Strategy::applicable`]) when some session qualifies now; else the
///   healer skips it, saying why, and asks no one.
/// - **Plan**: the server's slots and the rule applied, then every session it would end
///   (pid, user, application, database, idle time); risk [`Risk::Medium`] (their
///   clients see a closed connection and must reconnect). Refuses
///   ([`ErrorKind::Conflict`]) when none qualifies.
/// - **Execute**: terminates the planned sessions that still match every filter (and
///   began before the plan: a reused pid is spared), then waits until they are gone
///   (at most [`exit_timeout`](Self::exit_timeout), 5 s). The outcome says how many
///   were terminated.
/// - **Rollback**: none.
///
/// A role may end its own sessions; ending other roles' needs `pg_signal_backend` (or
/// superuser).
#[derive(Debug, Clone)]
pub struct TerminateIdleConnections {
    pool: PgPool,
    protected: Vec<String>,
    allow_superusers: bool,
    exit_timeout: Duration,
    role: Option<String>,
    headroom: u32,
}

/// The connection slots of the server as ordinary roles see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slots {
    /// `max_connections`.
    max: i64,
    /// Slots reserved for superusers (and `pg_use_reserved_connections`, PG 16+).
    reserved: i64,
    /// Client backends connected now.
    used: i64,
}

impl Slots {
    /// Slots an ordinary role can still take.
    fn free(&self) -> i64 {
        (self.max - self.reserved - self.used).max(0)
    }
}

/// One session a plan would end: pid, user, application, database, state, idle seconds.
type Candidate = (i32, String, String, String, String, f64);

/// The resolved parameters.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    /// `None` when the binding gives none: the default applies, or none at all when
    /// the server is short of slots.
    idle_for: Option<Duration>,
    max: i64,
    states: Vec<String>,
    database: Option<String>,
    user: Option<String>,
}

impl TerminateIdleConnections {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "postgres_terminate_idle";
    /// Default idle time before a session may be ended while the server has free slots.
    pub const DEFAULT_IDLE_FOR: Duration = Duration::from_secs(300);
    /// Default number of free slots the strategy makes when the server is short of them.
    pub const DEFAULT_HEADROOM: u32 = 5;
    /// Sessions terminated beyond the ones needed for the headroom, when short of slots.
    pub const MARGIN: i64 = 2;

    /// Terminates through `pool` (the healer's own; give it an `application_name`).
    pub fn new(pool: PgPool) -> Self {
        let mut protected = vec!["selfheal".to_owned()];
        match pool.connect_options().get_application_name() {
            Some(own) if own != "selfheal" => protected.push(own.to_owned()),
            Some(_) => {}
            None => warn!(
                "the pool of postgres_terminate_idle has no application_name: only the session running the statement is known to be the healer's; set one (e.g. `selfheal`) so all its connections are spared"
            ),
        }
        TerminateIdleConnections {
            pool,
            protected,
            allow_superusers: false,
            exit_timeout: Duration::from_secs(5),
            role: None,
            headroom: Self::DEFAULT_HEADROOM,
        }
    }

    /// The service's own role: when the server is short of slots and the binding names
    /// no `user`, only this role's idle sessions are terminated. Default: none (any
    /// role's, superusers excepted unless allowed).
    pub fn service_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// How many slots ordinary roles should find free (default
    /// [`DEFAULT_HEADROOM`](Self::DEFAULT_HEADROOM); give the service pool's size).
    /// With fewer free, the server is short of slots: sessions are ended however long
    /// they have been idle, oldest idle first, as many as the headroom needs plus
    /// [`MARGIN`](Self::MARGIN) and never more than `max`.
    pub fn headroom(mut self, slots: u32) -> Self {
        self.headroom = slots;
        self
    }

    /// Also never terminate sessions with these application names (added to the pool's
    /// own and `selfheal`).
    pub fn protect<I, S>(mut self, application_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protected
            .extend(application_names.into_iter().map(Into::into));
        self
    }

    /// Whether superusers' sessions may be terminated too (default `false`). Only the
    /// host's configuration decides this, never a fix's parameters.
    pub fn allow_superusers(mut self, allow: bool) -> Self {
        self.allow_superusers = allow;
        self
    }

    /// How long to wait for terminated sessions to exit before reporting (default 5 s).
    pub fn exit_timeout(mut self, timeout: Duration) -> Self {
        self.exit_timeout = timeout;
        self
    }

    /// The application names that are never terminated.
    pub fn protected(&self) -> &[String] {
        &self.protected
    }

    fn resolve(&self, params: &Value) -> Result<Params> {
        let map = params_object(
            Self::NAME,
            params,
            &["idle_for", "max", "states", "database", "user"],
        )?;
        let get = |key: &str| map.and_then(|m| m.get(key));
        let idle_for = match get("idle_for") {
            None => None,
            Some(Value::String(s)) => Some(humantime::parse_duration(s).map_err(|e| {
                Error::invalid(format!(
                    "postgres_terminate_idle: `idle_for` \"{s}\" is not a duration ({e}); write e.g. \"5m\" or \"90s\""
                ))
            })?),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(secs) if secs.is_finite() && secs >= 0.0 => {
                    Some(Duration::from_secs_f64(secs))
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "postgres_terminate_idle: `idle_for` must be a positive number of seconds, got {n}"
                    )));
                }
            },
            Some(other) => {
                return Err(Error::invalid(format!(
                    "postgres_terminate_idle: `idle_for` must be a duration like \"5m\", got {other}"
                )));
            }
        };
        let max = match get("max") {
            None => 100,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    return Err(Error::invalid(format!(
                        "postgres_terminate_idle: `max` must be a whole number in 1..=10000, got {v}"
                    )));
                }
            },
        };
        let states = match get("states") {
            None => vec!["idle".to_owned()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|s| match s.as_str() {
                    Some(s) if IDLE_STATES.contains(&s) => Ok(s.to_owned()),
                    _ => Err(Error::invalid(format!(
                        "postgres_terminate_idle: state {s} is not one of {}",
                        IDLE_STATES.map(|s| format!("\"{s}\"")).join(", ")
                    ))),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "postgres_terminate_idle: `states` must be a non-empty list such as [\"idle\"], got {other}"
                )));
            }
        };
        let text = |key: &str| -> Result<Option<String>> {
            match get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(other) => Err(Error::invalid(format!(
                    "postgres_terminate_idle: `{key}` must be a name, got {other}"
                ))),
            }
        };
        Ok(Params {
            idle_for,
            max,
            states,
            database: text("database")?,
            user: text("user")?,
        })
    }

    fn bind_filters<'q, O>(
        &self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
        p: &Params,
        idle_for: Duration,
        user: Option<&String>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(p.states.clone())
            .bind(idle_for.as_secs_f64())
            .bind(self.protected.clone())
            .bind(self.allow_superusers)
            .bind(p.database.clone())
            .bind(user.cloned())
    }

    /// The server's connection slots as ordinary roles see them.
    async fn slots(&self) -> Result<Slots> {
        let (max, reserved, used): (i64, i64, i64) = sqlx::query_as(
            "SELECT current_setting('max_connections')::int8, \
             current_setting('superuser_reserved_connections')::int8 \
               + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int8, \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| pg_error("reading the connection slots failed", e))?;
        Ok(Slots {
            max,
            reserved,
            used,
        })
    }

    /// Which sessions to end, given the parameters and the server's slots.
    fn select(&self, p: &Params, slots: Slots) -> Selection {
        let short = slots.free() < i64::from(self.headroom);
        if short {
            let needed = i64::from(self.headroom) - slots.free() + Self::MARGIN;
            Selection {
                idle_for: p.idle_for.unwrap_or(Duration::ZERO),
                user: p.user.clone().or_else(|| self.role.clone()),
                limit: needed.min(p.max),
                slots,
                short,
            }
        } else {
            Selection {
                idle_for: p.idle_for.unwrap_or(Self::DEFAULT_IDLE_FOR),
                user: p.user.clone(),
                limit: p.max,
                slots,
                short,
            }
        }
    }

    /// The sessions a plan made now would end, oldest idle first, and why those.
    async fn candidates(&self, p: &Params) -> Result<(Selection, Vec<Candidate>)> {
        let sel = self.select(p, self.slots().await?);
        let sql = format!(
            "SELECT a.pid, coalesce(a.usename::text, '') AS usename, \
             coalesce(a.application_name, '') AS application_name, \
             coalesce(a.datname::text, '') AS datname, a.state, \
             extract(epoch FROM now() - a.state_change)::float8 AS idle_secs \
             FROM pg_stat_activity a WHERE {FILTERS} ORDER BY a.state_change LIMIT $7"
        );
        let found: Vec<Candidate> = self
            // Built from constants only; every value is a bind parameter.
            .bind_filters(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)),
                p,
                sel.idle_for,
                sel.user.as_ref(),
            )
            .bind(sel.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| pg_error("listing idle sessions failed", e))?;
        Ok((sel, found))
    }

    /// Why nothing qualifies.
    fn nothing_to_terminate(&self, p: &Params, sel: &Selection) -> String {
        format!(
            "no session in state {}{}{} outside the protected ones ({}){} ({}): nothing to terminate",
            p.states.join("/"),
            if sel.idle_for.is_zero() {
                String::new()
            } else {
                format!(
                    " idle for more than {}",
                    humantime::format_duration(sel.idle_for)
                )
            },
            sel.user
                .as_ref()
                .map_or_else(String::new, |u| format!(" of role {u}")),
            self.protected.join(", "),
            if self.allow_superusers {
                ""
            } else {
                ", superusers excluded"
            },
            sel.describe(self.headroom),
        )
    }
}

/// What a plan made now would end: the age threshold, the role and how many.
#[derive(Debug, Clone, PartialEq)]
struct Selection {
    idle_for: Duration,
    user: Option<String>,
    limit: i64,
    slots: Slots,
    /// Fewer slots free than the headroom: age does not protect a session.
    short: bool,
}

impl Selection {
    /// The server's state and the rule it selects by, for people.
    fn describe(&self, headroom: u32) -> String {
        let free = format!(
            "{} of {} slots free for ordinary roles",
            self.slots.free(),
            self.slots.max
        );
        if self.short {
            format!(
                "{free}, short of the headroom of {headroom}: at most {} idle session(s), oldest idle first, however long idle",
                self.limit
            )
        } else {
            format!("{free}: only sessions idle longer than the threshold")
        }
    }
}

#[async_trait]
impl Strategy for TerminateIdleConnections {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.resolve(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "idle_for": {"type": ["string", "number"], "description": "idle time before a session may be ended, e.g. \"5m\" (default) or seconds"},
                "max": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100},
                "states": {"type": "array", "items": {"enum": IDLE_STATES}, "minItems": 1},
                "database": {"type": "string"},
                "user": {"type": "string"}
            },
            "additionalProperties": false
        })
    }

    /// Applicable when some session qualifies now.
    async fn applicable(&self, ctx: &ActionContext) -> Result<Applicability> {
        let p = self.resolve(&ctx.params)?;
        let (sel, found) = self.candidates(&p).await?;
        Ok(if found.is_empty() {
            Applicability::not_applicable(self.nothing_to_terminate(&p, &sel))
        } else {
            Applicability::Applicable
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let p = self.resolve(&ctx.params)?;
        let (sel, found) = self.candidates(&p).await?;
        let (planned_at,): (f64,) = sqlx::query_as("SELECT extract(epoch FROM now())::float8")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_error("reading the server clock failed", e))?;
        if found.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                self.nothing_to_terminate(&p, &sel),
            ));
        }
        let server = describe(&self.pool.connect_options());
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .step(format!(
                "postgres {server}: {}; pg_terminate_backend on {} idle session(s):",
                sel.describe(self.headroom),
                found.len()
            ));
        const SHOWN: usize = 20;
        for (pid, user, application, database, state, idle_secs) in found.iter().take(SHOWN) {
            plan = plan.step(format!(
                "  pid {pid} user {user} application '{application}' database {database} {state} for {}s",
                idle_secs.round()
            ));
        }
        if found.len() > SHOWN {
            plan = plan.step(format!("  … and {} more", found.len() - SHOWN));
        }
        // The selection as made: execution re-checks these filters, not new ones.
        plan.params = json!({
            "idle_for": sel.idle_for.as_secs_f64(),
            "max": sel.limit,
            "states": p.states,
            "database": p.database,
            "user": sel.user,
            "pids": found.iter().map(|c| c.0).collect::<Vec<_>>(),
            "planned_at": planned_at,
        });
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        check_plan(plan, Self::NAME)?;
        let mut filters = plan.params.clone();
        let (pids, planned_at) = match filters.as_object_mut() {
            Some(map) => (map.remove("pids"), map.remove("planned_at")),
            None => (None, None),
        };
        let p = self.resolve(&filters)?;
        let pids: Vec<i32> = pids
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Error::invalid("this plan has no `pids`; make plans with its plan()"))?;
        let planned_at = planned_at.and_then(|v| v.as_f64()).ok_or_else(|| {
            Error::invalid("this plan has no `planned_at`; make plans with its plan()")
        })?;
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would terminate up to {} session(s)", pids.len()),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let sql = format!(
            "SELECT a.pid, pg_terminate_backend(a.pid) FROM pg_stat_activity a \
             WHERE {FILTERS} AND a.pid = ANY($7) AND a.backend_start <= to_timestamp($8)"
        );
        let signalled: Vec<(i32, bool)> = self
            // Built from constants only; every value is a bind parameter.
            .bind_filters(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)),
                &p,
                p.idle_for.unwrap_or(Self::DEFAULT_IDLE_FOR),
                p.user.as_ref(),
            )
            .bind(pids.clone())
            .bind(planned_at)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| pg_error("pg_terminate_backend failed", e))?;
        let terminated: Vec<i32> = signalled
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(pid, _)| *pid)
            .collect();
        let spared = pids.len() - signalled.len();
        // The sessions end (and free their slots) a moment after the signal: wait until
        // they are gone, polling, for at most `exit_timeout`.
        let deadline = Instant::now() + self.exit_timeout;
        let lingering = loop {
            let (left,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&terminated)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| pg_error("checking the terminated sessions failed", e))?;
            if left == 0 || Instant::now() >= deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        info!(
            terminated = terminated.len(),
            spared, lingering, "terminated idle postgres sessions"
        );
        let mut outcome = ActionOutcome::ok(started.elapsed());
        outcome.stdout = format!(
            "terminated {} of {} planned session(s){}: {:?}",
            terminated.len(),
            pids.len(),
            if spared > 0 {
                format!(" ({spared} no longer idle or gone)")
            } else {
                String::new()
            },
            terminated
        );
        if terminated.is_empty() {
            outcome.success = false;
            outcome.stderr =
                "no planned session was terminated: they became active or ended since the plan"
                    .into();
        } else if lingering > 0 {
            outcome.stderr = format!(
                "{lingering} terminated session(s) had not exited after {:?}",
                self.exit_timeout
            );
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy() -> TerminateIdleConnections {
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(
            sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(1)
                .application_name("healer-admin"),
        );
        TerminateIdleConnections::new(pool).protect(["migrations"])
    }

    #[tokio::test]
    async fn the_pools_own_name_is_protected() {
        assert_eq!(
            strategy().protected(),
            ["selfheal", "healer-admin", "migrations"]
        );
    }

    #[tokio::test]
    async fn short_of_slots_age_gives_way_to_a_bounded_count_of_the_services_role() {
        let s = strategy().service_role("app").headroom(5);
        let p = s.resolve(&Value::Null).unwrap();
        // 17 client backends on 20 slots, 3 reserved: none free for ordinary roles.
        let full = Slots {
            max: 20,
            reserved: 3,
            used: 17,
        };
        let sel = s.select(&p, full);
        assert!(sel.short);
        assert_eq!(
            (sel.idle_for, sel.user.as_deref(), sel.limit),
            (
                Duration::ZERO,
                Some("app"),
                5 + TerminateIdleConnections::MARGIN
            )
        );
        // 2 free: 3 more needed, plus the margin.
        let sel = s.select(&p, Slots { used: 15, ..full });
        assert_eq!(sel.limit, 3 + TerminateIdleConnections::MARGIN);
        // Never more than `max`, and an explicit age or role still applies.
        let p = s
            .resolve(&json!({"max": 4, "idle_for": "10s", "user": "batch"}))
            .unwrap();
        let sel = s.select(&p, full);
        assert_eq!(
            (sel.idle_for, sel.user.as_deref(), sel.limit),
            (Duration::from_secs(10), Some("batch"), 4)
        );
        // Enough free: the 5-minute cleanup of forgotten sessions, any ordinary role.
        let p = s.resolve(&Value::Null).unwrap();
        let sel = s.select(&p, Slots { used: 5, ..full });
        assert!(!sel.short);
        assert_eq!(
            (sel.idle_for, sel.user, sel.limit),
            (TerminateIdleConnections::DEFAULT_IDLE_FOR, None, 100)
        );
    }

    #[tokio::test]
    async fn params_are_checked_and_defaulted() {
        let s = strategy();
        let p = s.resolve(&Value::Null).unwrap();
        assert_eq!(
            (p.idle_for, p.max, p.states.as_slice()),
            (None, 100, ["idle".to_owned()].as_slice())
        );
        let p = s
            .resolve(&json!({"idle_for": "90s", "states": ["idle", "idle in transaction"], "user": "app"}))
            .unwrap();
        assert_eq!(p.idle_for, Some(Duration::from_secs(90)));
        assert_eq!(p.user.as_deref(), Some("app"));
        assert_eq!(
            s.resolve(&json!({"idle_for": 2.5})).unwrap().idle_for,
            Some(Duration::from_millis(2500))
        );
        for (bad, says) in [
            (json!({"idle_for": "soon"}), "not a duration"),
            (json!({"idle_for": -1}), "positive"),
            (json!({"max": 0}), "1..=10000"),
            (json!({"states": ["active"]}), "not one of"),
            (json!({"states": []}), "non-empty"),
            (
                json!({"allow_superusers": true}),
                "no parameter `allow_superusers`",
            ),
            (json!({"user": 3}), "must be a name"),
        ] {
            let err = s.validate(&bad).unwrap_err();
            assert!(err.message().contains(says), "{bad}: {err}");
        }
    }
}
