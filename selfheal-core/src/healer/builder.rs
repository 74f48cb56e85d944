//! Wiring a [`Healer`]: store, fingerprinter, strategies, verifiers, executor, advisor, notifiers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::breaker::Breaker;
use super::dependency::Dependencies;
use super::dry_run::DryRunSwitch;
use super::self_caused::Acting;
use super::silence::Silences;
use super::storm::Storm;
use super::{Healer, Inner, detector::Detector, guard::Guards};
use crate::store::BufferedStore;
use crate::{
    ActionOutcome, Command, Error, ErrorKind, Executor, Fingerprinter, HealerConfig, LlmAdvisor,
    Matcher, MemoryStore, Normalizer, Notifier, Result, Store, Strategy, Verifier,
};

/// A bundle of strategies, verifiers and handles for one piece of software (Redis,
/// Postgres, …), registered in one call with [`HealerBuilder::integrate`].
///
/// The stock ones live in `selfheal-strategies` (`RedisIntegration`,
/// `PostgresIntegration`); write your own to wire a component your services share:
///
/// ```
/// use selfheal_core::{Healer, HealerBuilder, Integration};
///
/// /// Our queue: its verifier and strategies, wired the same way in every service.
/// struct Queue;
///
/// impl Integration for Queue {
///     fn register(self, builder: HealerBuilder) -> HealerBuilder {
///         builder.depends_on("api", ["queue"]) // and .strategy(..), .verifier("queue", ..)
///     }
/// }
///
/// let healer = Healer::builder().integrate(Queue).build()?;
/// # drop(healer); Ok::<(), selfheal_core::Error>(())
/// ```
pub trait Integration {
    /// Registers its pieces on `builder` and hands it back.
    fn register(self, builder: HealerBuilder) -> HealerBuilder;
}

/// Configures a [`Healer`]. Everything has a default: an in-memory store, the
/// normalizing fingerprinter, no strategies, and an executor that refuses to run
/// commands until you give it a real one.
#[derive(Default)]
pub struct HealerBuilder {
    config: HealerConfig,
    store: Option<Arc<dyn Store>>,
    /// The store given rides out outages itself (a `BufferedStore`, a `MemoryStore`).
    store_buffers: bool,
    unbuffered: bool,
    fingerprinter: Option<Arc<dyn Fingerprinter>>,
    strategies: Vec<Arc<dyn Strategy>>,
    verifiers: Vec<(String, Arc<dyn Verifier>)>,
    executor: Option<Arc<dyn Executor>>,
    advisor: Option<Arc<dyn LlmAdvisor>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    approval_links: Option<crate::ApprovalLinks>,
    sources: Vec<Arc<dyn crate::source::Source>>,
}

impl std::fmt::Debug for HealerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealerBuilder")
            .field("config", &self.config)
            .field(
                "strategies",
                &self.strategies.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HealerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: HealerConfig) -> Self {
        self.config = config;
        self
    }

    /// The store (default: [`MemoryStore`]). It is buffered: the healer wraps it in a
    /// [`BufferedStore`] (its counters: [`Healer::store_buffer`]), so an outage of the
    /// store costs no record, unless you opt out with [`HealerBuilder::unbuffered`]. A
    /// `BufferedStore` or a `MemoryStore` given here is used as it is.
    pub fn store(mut self, store: impl Store) -> Self {
        let any: &dyn std::any::Any = &store;
        self.store_buffers = any.is::<BufferedStore>() || any.is::<MemoryStore>();
        self.store = Some(Arc::new(store));
        self
    }

    /// The store, shared. Buffered like [`HealerBuilder::store`]; a `BufferedStore` of
    /// your own, shared this way, wants [`HealerBuilder::unbuffered`].
    pub fn store_arc(mut self, store: Arc<dyn Store>) -> Self {
        self.store_buffers = false;
        self.store = Some(store);
        self
    }

    /// Uses the store as it is, without the [`BufferedStore`] the healer wraps it in by
    /// default: a write the store refuses then costs that write (audit records excepted:
    /// the healer keeps and retries those itself, up to [`crate::AUDIT_BACKLOG`]).
    pub fn unbuffered(mut self) -> Self {
        self.unbuffered = true;
        self
    }

    /// The fingerprinter (default: [`Normalizer`]).
    pub fn fingerprinter(mut self, fingerprinter: impl Fingerprinter) -> Self {
        self.fingerprinter = Some(Arc::new(fingerprinter));
        self
    }

    /// Registers a strategy under its name.
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategies.push(Arc::new(strategy));
        self
    }

    /// Registers a shared strategy under its name.
    pub fn strategy_arc(mut self, strategy: Arc<dyn Strategy>) -> Self {
        self.strategies.push(strategy);
        self
    }

    /// The verifier of `target`'s health.
    pub fn verifier(mut self, target: impl Into<String>, verifier: impl Verifier) -> Self {
        self.verifiers.push((target.into(), Arc::new(verifier)));
        self
    }

    /// The executor strategies run commands through.
    pub fn executor(mut self, executor: impl Executor) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// An advisor for incidents no pattern explains.
    pub fn advisor(mut self, advisor: impl LlmAdvisor) -> Self {
        self.advisor = Some(Arc::new(advisor));
        self
    }

    /// Declares that `target` depends on `dependencies`: while one of them is
    /// unhealthy, `target`'s failures are attributed to it and only it is remediated.
    pub fn depends_on<I, S>(mut self, target: impl Into<String>, dependencies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config
            .safety
            .dependencies
            .entry(target.into())
            .or_default()
            .extend(dependencies.into_iter().map(Into::into));
        self
    }

    /// Registers an [`Integration`]: its strategies, verifiers and handles, with its
    /// defaults.
    pub fn integrate(self, integration: impl Integration) -> Self {
        integration.register(self)
    }

    /// Adds a notifier.
    pub fn notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifiers.push(Arc::new(notifier));
        self
    }

    /// Puts signed Approve / Reject links in every "approve this fix?" notification,
    /// pointing at the admin router mounted at `links`' public URL (see
    /// [`crate::approval_link`]). Give every replica the same secret.
    pub fn approval_links(mut self, links: crate::ApprovalLinks) -> Self {
        self.approval_links = Some(links);
        self
    }

    /// Adds a [`Source`](crate::source::Source) that feeds the healer: it runs from
    /// [`Healer::spawn`] until shutdown (see [`crate::source`]). `build` refuses two
    /// sources with one name.
    pub fn source(mut self, source: impl crate::source::Source) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Also masks whatever matches `pattern` (a regex) as `[REDACTED]`, on top of the
    /// built-in rules, everywhere the healer redacts (`[redaction] extra` in TOML).
    /// `build` refuses a pattern that does not compile.
    pub fn redact(mut self, pattern: impl Into<String>) -> Self {
        self.config.redaction.extra.push(pattern.into());
        self
    }

    /// Validates the configuration and builds the healer. Nothing runs until
    /// [`Healer::spawn`].
    ///
    /// When the pipeline starts ([`Healer::spawn`]), the stored patterns' fix bindings
    /// (the stock catalog's, when the store holds it) are checked against the
    /// registered strategies, with a warning for each that cannot run: one listing the
    /// strategies that are not registered (you may not use Redis, say), one per fix
    /// whose parameters the strategy refuses, naming the pattern, the strategy and what
    /// to do ([`Admin::binding_problems`](super::Admin::binding_problems)). A store
    /// without stock patterns gets no warning about them.
    pub fn build(self) -> Result<Healer> {
        self.config.validate()?;
        let mut source_names = std::collections::HashSet::new();
        for s in &self.sources {
            if !source_names.insert(s.name().to_owned()) {
                return Err(Error::invalid(format!(
                    "two sources are named `{}`; give each a unique name (it keys the \
                     source's stored cursor)",
                    s.name()
                )));
            }
        }
        let mut strategies = HashMap::new();
        for s in self.strategies {
            let name = s.name().to_owned();
            if strategies.insert(name.clone(), s).is_some() {
                return Err(Error::invalid(format!(
                    "two strategies are registered as `{name}`; give each a unique name"
                )));
            }
        }
        let mut verifiers = HashMap::new();
        for (target, v) in self.verifiers {
            if verifiers.insert(target.clone(), v).is_some() {
                return Err(Error::invalid(format!(
                    "two verifiers are registered for target `{target}`; combine them into one"
                )));
            }
        }
        let (events, _) = broadcast::channel(self.config.intake.event_capacity);
        let guards = Guards::new(&self.config.guards);
        let safety = &self.config.safety;
        let storm = Storm::new(safety.storm.clone());
        let dependencies = Dependencies::new(&safety.dependencies);
        for target in verifiers.keys().chain(dependencies.targets()) {
            storm.know(target);
        }
        let (store, store_buffer) = match self.store {
            None => (Arc::new(MemoryStore::new()) as Arc<dyn Store>, None),
            Some(store) if self.unbuffered || self.store_buffers => (store, None),
            Some(store) => {
                let buffer = Arc::new(BufferedStore::new(store));
                (buffer.clone() as Arc<dyn Store>, Some(buffer))
            }
        };
        if self.config.guards.fleet.enabled && store.fleet().is_none() {
            return Err(Error::invalid(format!(
                "guards.fleet.enabled is set, but the store `{}` cannot coordinate replicas \
                 (its `fleet()` is None): use SqliteStore, PostgresStore or MemoryStore, or \
                 implement FleetStore for this store",
                store.name()
            )));
        }
        Ok(Healer {
            inner: Arc::new(Inner {
                store,
                store_buffer,
                fingerprinter: self
                    .fingerprinter
                    .unwrap_or_else(|| Arc::new(Normalizer::default())),
                strategies,
                verifiers,
                executor: self.executor.unwrap_or_else(|| Arc::new(NoExecutor)),
                advisor: self.advisor,
                notifiers: self.notifiers,
                approval_links: self.approval_links,
                redactor: crate::Redactor::from_config(&self.config.redaction)?,
                queue: super::queue::Queue::new(
                    self.config.intake.queue_capacity,
                    self.config.intake.queue_bytes(),
                ),
                spawned: AtomicBool::new(false),
                sources: super::sources::Sources::new(
                    self.sources,
                    self.config.intake.queue_capacity,
                ),
                tracked: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                events,
                matcher: RwLock::new((0, Arc::new(Matcher::default()))),
                loads: AtomicU64::new(0),
                detector: Detector::default(),
                guards,
                open: DashMap::new(),
                by_fingerprint: DashMap::new(),
                by_target: DashMap::new(),
                notified: DashMap::new(),
                blocked_by: DashMap::new(),
                chain_check: Default::default(),
                evidence: Default::default(),
                pending: DashMap::new(),
                trail: Default::default(),
                store_errors: AtomicU64::new(0),
                replica: if self.config.guards.fleet.replica.is_empty() {
                    super::fleet::default_replica_name()
                } else {
                    self.config.guards.fleet.replica.clone()
                },
                storm,
                backoff: Backoff::new(self.config.guards.cooldown, safety.backoff.clone()),
                breaker: Breaker::new(safety.breaker.clone()),
                silences: Silences::default(),
                dependencies,
                dry_run: DryRunSwitch::new(safety),
                control: Default::default(),
                acting: Acting::default(),
                external: Default::default(),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                config: self.config,
            }),
        })
    }
}

/// The executor used when none is configured: refuses, saying what to do.
#[derive(Debug)]
struct NoExecutor;

#[async_trait]
impl Executor for NoExecutor {
    fn name(&self) -> &str {
        "none"
    }

    async fn run(&self, command: &Command) -> Result<ActionOutcome> {
        Err(Error::new(
            ErrorKind::Execution,
            format!(
                "no executor is configured, so `{}` was not run; add one with Healer::builder().executor(..)",
                command.preview()
            ),
        ))
    }
}
