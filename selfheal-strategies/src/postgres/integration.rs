//! [`PostgresIntegration`]: the Postgres strategies and verifier in one call.

use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{HealerBuilder, Integration, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{PgPoolHandle, PostgresVerifier, ResetPgPool, TerminateIdleConnections, pg_error};

/// The stock Postgres pieces, registered with
/// [`HealerBuilder::integrate`](selfheal_core::HealerBuilder::integrate):
/// `postgres_terminate_idle` ([`TerminateIdleConnections`]), the target's
/// [`PostgresVerifier`], and `postgres_reset_pool` ([`ResetPgPool`]) when the service
/// shares its pool as a [`PgPoolHandle`].
///
/// **The healer's own connection.** [`connect`](Self::connect) opens one connection for
/// the healer, as the service's role with `application_name = selfheal`, and keeps it
/// open for the healer's lifetime (no idle timeout, no maximum lifetime). When the
/// service's sessions take every slot, the healer still has its own to list and end
/// them: a role may end its own sessions without any grant. It costs the server one
/// slot. To act through a superuser instead (which may also use the slots reserved for
/// superusers), use [`connect_with`](Self::connect_with).
///
/// **Defaults.** Short of slots, `postgres_terminate_idle` ends the idle sessions of the
/// service's role, oldest idle first, as many as the service pool's size needs plus a
/// margin of 2, never active ones, never the healer's own, never the protected
/// application names.
///
/// ```no_run
/// use std::sync::Arc;
/// use selfheal_core::Healer;
/// use selfheal_strategies::{PgPoolHandle, PostgresIntegration};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// // The service's pool, shared so the healer can also reset it.
/// let pool = Arc::new(PgPoolHandle::from_url("postgres://app@127.0.0.1/app")?);
/// let healer = Healer::builder()
///     .integrate(PostgresIntegration::for_handle("postgres", pool.clone()).await?)
///     .build()?;
/// # drop(healer); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresIntegration {
    target: String,
    own: PgPool,
    role: Option<String>,
    headroom: u32,
    handle: Option<Arc<PgPoolHandle>>,
    protected: Vec<String>,
}

impl PostgresIntegration {
    /// The `application_name` of the healer's own connection.
    pub const APPLICATION_NAME: &'static str = "selfheal";

    /// For `target`, with the healer's own connection opened now as `service`'s role (see
    /// the type's docs). Registers no pool reset: the service keeps its own pool.
    ///
    /// Errors: `Unavailable` when the connection cannot be opened (the server is down or
    /// already has no free slot: build the healer before the service's traffic starts).
    pub async fn connect(target: impl Into<String>, service: &PgPool) -> Result<Self> {
        let options = (*service.connect_options()).clone();
        let headroom = service.options().get_max_connections();
        let mut integration = Self::connect_with(target, options).await?;
        integration.headroom = headroom;
        Ok(integration)
    }

    /// As [`connect`](Self::connect), for the pool the service shares as `handle`; also
    /// registers `postgres_reset_pool` on it.
    pub async fn for_handle(target: impl Into<String>, handle: Arc<PgPoolHandle>) -> Result<Self> {
        let mut integration = Self::connect(target, &handle.pool()).await?;
        integration.handle = Some(handle);
        Ok(integration)
    }

    /// For `target`, with the healer's own connection opened now with `options` (its
    /// `application_name` set to `selfheal`). The role of `options` is taken as the
    /// service's role unless [`service_role`](Self::service_role) says otherwise.
    pub async fn connect_with(
        target: impl Into<String>,
        options: PgConnectOptions,
    ) -> Result<Self> {
        let role = options.get_username().to_owned();
        let own = PgPoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.application_name(Self::APPLICATION_NAME))
            .await
            .map_err(|e| pg_error("the healer's own Postgres connection could not open", e))?;
        Ok(PostgresIntegration {
            target: target.into(),
            own,
            role: Some(role),
            headroom: TerminateIdleConnections::DEFAULT_HEADROOM,
            handle: None,
            protected: Vec::new(),
        })
    }

    /// The service's role, whose idle sessions are ended when the server is short of
    /// slots (default: the role the healer connects as).
    pub fn service_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Free slots to make when short of them (default: the service pool's size).
    pub fn headroom(mut self, slots: u32) -> Self {
        self.headroom = slots;
        self
    }

    /// Application names whose sessions are never ended (besides `selfheal`).
    pub fn protect<I, S>(mut self, application_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protected
            .extend(application_names.into_iter().map(Into::into));
        self
    }

    /// The healer's own pool (one connection, kept open).
    pub fn own_pool(&self) -> &PgPool {
        &self.own
    }
}

impl Integration for PostgresIntegration {
    fn register(self, builder: HealerBuilder) -> HealerBuilder {
        let mut terminate = TerminateIdleConnections::new(self.own.clone())
            .headroom(self.headroom)
            .protect(self.protected);
        if let Some(role) = self.role {
            terminate = terminate.service_role(role);
        }
        let builder = builder
            .strategy(terminate)
            .verifier(self.target, PostgresVerifier::new(self.own));
        match self.handle {
            Some(handle) => builder.strategy(ResetPgPool::new(handle)),
            None => builder,
        }
    }
}
