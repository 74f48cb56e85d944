//! How the router is configured: who may call it, and limits.
//! (Skeleton: the admin-API helper completes it.)

/// Configuration of [`crate::router`]. The default serves nothing but 401s: configure
/// tokens or the host's auth first.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    pub(crate) metrics: MetricsAuth,
}

impl AdminConfig {
    /// Reads `SELFHEAL_ADMIN_TOKENS` (`role:token,role:token`).
    pub fn from_env() -> std::io::Result<Self> {
        Ok(Self::default())
    }

    /// Who may scrape `/metrics`.
    pub fn metrics(mut self, auth: MetricsAuth) -> Self {
        self.metrics = auth;
        self
    }
}

/// Who may scrape `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsAuth {
    /// The same bearer tokens as the API (viewer or operator).
    #[default]
    Tokens,
    /// Anyone who reaches the endpoint (bind it to a private interface).
    Open,
}
