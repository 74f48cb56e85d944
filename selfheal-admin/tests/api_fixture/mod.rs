//! Shared by the HTTP tests: a healer built the way the README shows, with a strategy
//! that counts its runs and keeps one backup, a verifier it heals, and the admin router
//! served on a real socket.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_admin::{AdminConfig, Role};
use selfheal_core::{
    ActionContext, ActionOutcome, Backup, Executor, Healer, HealerConfig, Health, MemoryStore,
    RemediationPlan, Result, Running, Store, Strategy, Uuid, Verifier,
};

/// Health of the fake target, shared by the strategy (which heals it) and the verifier.
#[derive(Debug, Clone)]
pub struct Gauge(pub Arc<AtomicU8>);

#[async_trait]
impl Verifier for Gauge {
    fn name(&self) -> &str {
        "gauge"
    }
    async fn check(&self) -> Result<Health> {
        Ok(Health::new(self.0.load(Ordering::SeqCst), "gauge"))
    }
}

/// `cleanup`: heals the gauge, counts its runs, holds one backup it can restore.
#[derive(Debug, Clone)]
pub struct Cleanup {
    pub gauge: Gauge,
    pub runs: Arc<AtomicUsize>,
    pub backup: Arc<Mutex<Backup>>,
}

#[async_trait]
impl Strategy for Cleanup {
    fn name(&self) -> &str {
        "cleanup"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("cleanup", &ctx.target).step(format!("cleanup {}", ctx.target)))
    }
    async fn execute(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.gauge.0.store(100, Ordering::SeqCst);
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
    async fn backups(&self) -> Result<Vec<Backup>> {
        Ok(vec![self.backup.lock().unwrap().clone()])
    }
    async fn restore_backup(&self, id: Uuid) -> Result<Option<Backup>> {
        let mut b = self.backup.lock().unwrap();
        if b.id != id {
            return Ok(None);
        }
        b.restored_at = Some(chrono::Utc::now());
        Ok(Some(b.clone()))
    }
}

/// A running healer and its admin router on 127.0.0.1.
pub struct Fixture {
    pub base: String,
    pub healer: Healer,
    pub cleanup: Cleanup,
    pub operator: String,
    pub viewer: String,
    pub client: reqwest::Client,
    running: Option<Running>,
}

/// A fresh random token (never a constant in the tests).
pub fn token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

impl Fixture {
    /// Operator `alice` and viewer `victor`, with fresh tokens.
    pub async fn start() -> Fixture {
        let operator = token();
        let viewer = token();
        let config = AdminConfig::default()
            .token(Role::Operator, "alice", &operator)
            .token(Role::Viewer, "victor", &viewer);
        Self::with_config(config, operator, viewer).await
    }

    pub async fn with_config(config: AdminConfig, operator: String, viewer: String) -> Fixture {
        Self::with_store(config, operator, viewer, MemoryStore::new()).await
    }

    /// Operator `alice` and viewer `victor` over `store`.
    pub async fn on(store: impl Store) -> Fixture {
        let operator = token();
        let viewer = token();
        let config = AdminConfig::default()
            .token(Role::Operator, "alice", &operator)
            .token(Role::Viewer, "victor", &viewer);
        Self::with_store(config, operator, viewer, store).await
    }

    pub async fn with_store(
        config: AdminConfig,
        operator: String,
        viewer: String,
        store: impl Store,
    ) -> Fixture {
        let mut hc = HealerConfig::default();
        hc.verification.interval = Duration::from_millis(20);
        hc.verification.window = Duration::from_secs(10);
        hc.verification.quiet_for = Duration::ZERO;
        let gauge = Gauge(Arc::new(AtomicU8::new(10)));
        let cleanup = Cleanup {
            gauge: gauge.clone(),
            runs: Arc::default(),
            backup: Arc::new(Mutex::new(Backup {
                id: Uuid::new_v4(),
                strategy: "cleanup".into(),
                target: "db".into(),
                location: "/etc/db.conf".into(),
                size: 42,
                created_at: chrono::Utc::now(),
                restored_at: None,
            })),
        };
        let builder = Healer::builder()
            .config(hc)
            .store(store)
            .strategy(cleanup.clone())
            .verifier("db", gauge);
        // With the feature, Alertmanager's webhook is served too, as a host would.
        #[cfg(feature = "alertmanager")]
        let (builder, config) = {
            let alerts = selfheal_sources::alertmanager::Alertmanager::new();
            (builder.source(alerts.clone()), config.alertmanager(alerts))
        };
        let healer = builder.build().expect("healer builds");
        let running = healer.spawn();
        let base = serve(selfheal_admin::router(healer.clone(), config)).await;
        Fixture {
            base,
            healer,
            cleanup,
            operator,
            viewer,
            client: reqwest::Client::new(),
            running: Some(running),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.viewer)
    }

    pub fn op(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.operator)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Serves `app` nested under `/selfheal` on a free port; returns the base URL.
pub async fn serve(app: axum::Router) -> String {
    let app = axum::Router::new().nest("/selfheal", app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/selfheal")
}
