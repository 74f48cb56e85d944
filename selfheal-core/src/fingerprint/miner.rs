//! The template miner: learns the templates of logs whose shape nobody described.
//!
//! Each line is first normalized ([`Normalizer`]: numbers, addresses, paths, quoted and
//! `key=value` values masked). A template already seen is found with one hash lookup
//! under a read lock: that is the hot path, and threads share it. A new template is
//! compared, Drain-style, with the clusters of the same token count that share enough
//! of its tokens at the same positions to be joined (an index of the clusters' tokens
//! finds them, so a line unlike any other costs a few lookups, not a comparison with
//! every cluster; see `token_index.rs`). When enough tokens
//! agree ([`MinerConfig::similarity`]), the words that differ are counted as *variants*
//! of that cluster: a line whose words were seen there before joins that variant; a
//! set of positions that shows more than [`MinerConfig::max_variants`] distinct words
//! becomes `<*>` and its variants merge into the cluster. So `VM Started` and
//! `VM Paused` stay two events while the sixth user name in `Invalid user admin` makes
//! `Invalid user <*>`. A one-word position also becomes a value when it shares
//! three of its words with another cluster's: words seen in place of each other in two
//! different events are names, not what tells events apart (`session opened for user
//! news …` and `session closed for user news` with the same three users).
//!
//! What it learns from Drain's known weaknesses:
//! - masked tokens are values, never words: replaying a learned template (or a line
//!   that already holds `<*>`) lands in the same cluster instead of a new one;
//! - a word that fits a value's shape is that value, and values of two shapes are one
//!   (`chdir(pwd)` and `chdir(<*>)`, `<*>,` and `LOCAL(<*>),`, `ws=<*>,` and
//!   `ws=<*>{<*>},`), as are `true` and `false`; the template keeps what both shapes
//!   share around one `<*>` (see `values.rs`);
//! - short messages group by their words: `session opened` and `session closed` are two
//!   variants, never one cluster unless that position keeps changing;
//! - the first word is the event's verb or subject more often than not: two lines
//!   whose first words differ (and are words, not values) are never merged.
//!
//! Memory is bounded: at most [`MinerConfig::max_clusters`] clusters (the least recently
//! seen one is evicted, with its variants, found in O(log n) by `recency.rs`) and
//! [`MinerConfig::max_exact`] remembered templates. "Seen" is as fine as the recency
//! clock, which advances with each new template: clusters seen between two new
//! templates count as seen together, and the lowest slot goes first among them. A
//! cluster's id is derived from the first template it saw and never changes as the
//! cluster generalizes; a variant merged into its cluster answers with the
//! cluster's id from then on ([`TemplateMiner::resolve`] maps older ids).
//! [`TemplateMiner::snapshot`] and [`TemplateMiner::restore`] carry clusters, variants and
//! ids across restarts.
//!
//! ```
//! use selfheal_core::fingerprint::{MinerConfig, TemplateMiner};
//! let miner = TemplateMiner::new(MinerConfig::default());
//! let started = miner.add(b"VM Started (Lifecycle Event) 42");
//! let paused = miner.add(b"VM Paused (Lifecycle Event) 43");
//! assert_ne!(started, paused);
//! let users: Vec<_> = ["admin", "oracle", "test", "guest", "pi", "ubuntu"]
//!     .iter()
//!     .map(|u| miner.add(format!("Invalid user {u} from 10.0.0.7 port 51234").as_bytes()))
//!     .collect();
//! assert!(users.iter().all(|id| miner.resolve(*id) == users[0]));
//! assert_eq!(miner.template(users[0]).unwrap(), "Invalid user <*> from <*> port <*>");
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::normalize::MASK;
use super::recency::{Recency, Seen};
use super::token_index::TokenIndex;
use super::values::{merged, one_value};
use super::{FINGERPRINT_VERSION, Fingerprint, Normalizer, fingerprint_id, stack_signature};
use crate::{Error, Fingerprinter, Result, Signal};

/// How the miner groups lines. One configuration serves every kind of log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinerConfig {
    /// The share of a line's tokens that must agree with a cluster's template for the
    /// line to join it (0.0–1.0).
    pub similarity: f64,
    /// A set of word positions (in lines that otherwise agree) that shows more than this
    /// many distinct words becomes a value (`<*>`); up to it, each word is its own event.
    pub max_variants: usize,
    /// At most this many clusters; the least recently seen one is evicted for a new one.
    pub max_clusters: usize,
    /// At most this many distinct normalized lines are remembered for the one-lookup
    /// hot path (the cache is cleared when it fills up).
    pub max_exact: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            similarity: 0.5,
            max_variants: 4,
            max_clusters: 10_000,
            max_exact: 100_000,
        }
    }
}

/// The stable id of a learned cluster: the first 16 hex digits of sha256 over the first
/// template the cluster saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl ClusterId {
    fn of(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        ClusterId(u64::from_be_bytes(b))
    }
}

/// The persisted form of a miner's clusters (serde: JSON, TOML, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerSnapshot {
    /// [`FINGERPRINT_VERSION`] of the miner that wrote it.
    pub version: u32,
    /// The clusters, oldest first.
    pub clusters: Vec<SavedCluster>,
}

/// One persisted cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCluster {
    /// Its id (16 hex digits), derived from `key`.
    pub id: String,
    /// The first template the cluster saw: what its id is made of.
    pub key: String,
    /// The template as learned so far.
    pub template: String,
    /// How many lines joined it.
    pub count: u64,
    /// For a variant: the id of the cluster it is a variant of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a variant: the token positions where it differs from its cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<usize>,
    /// For a variant merged into its cluster: that cluster's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

/// A Drain-style template miner, shared safely across threads (`&self` everywhere).
#[derive(Debug)]
pub struct TemplateMiner {
    config: MinerConfig,
    normalizer: Normalizer,
    inner: RwLock<Inner>,
    clock: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Vec<Option<Cluster>>,
    free: Vec<u32>,
    live: usize,
    /// Normalized line -> (slot, generation of the cluster in it).
    exact: foldhash::HashMap<Arc<str>, (u32, u64)>,
    /// The clusters (not variants) a new template may join, by their tokens.
    index: TokenIndex,
    /// The clusters (not variants), least recently seen first: what to evict.
    recency: Recency,
    /// Cluster id -> slot, clusters and variants.
    ids: foldhash::HashMap<ClusterId, u32>,
    /// Word -> where it is one of the words seen at a cluster's one-word variant
    /// position: (cluster slot, its generation, position).
    alternatives: foldhash::HashMap<Box<str>, Vec<(u32, u64, usize)>>,
    /// Counts every cluster and variant created: tells a slot's occupants apart, and
    /// orders clusters by age.
    generation: u64,
}

#[derive(Debug)]
struct Cluster {
    id: ClusterId,
    /// The first template it saw (shares the allocation with the first `template`).
    key: Arc<str>,
    /// The tokens joined with single spaces: [`Cluster::tokens`] splits them again.
    template: Arc<str>,
    generation: u64,
    count: AtomicU64,
    last_seen: AtomicU64,
    /// A variant: its cluster's slot and the positions where it differs.
    parent: Option<(u32, Vec<usize>)>,
    /// A variant merged into its cluster: the cluster's slot.
    merged: Option<u32>,
    /// A cluster: the variants seen per set of differing positions.
    variants: Vec<Variant>,
    /// A cluster: the slots of the variants merged into it (they go when it goes).
    merged_variants: Vec<u32>,
    /// The fingerprint id for the first service that asked (without a stack): a
    /// service asks again and again, and the id of (service, key) never changes.
    service_id: OnceLock<(Box<str>, Arc<str>)>,
}

impl Cluster {
    /// The fingerprint id of a line of this cluster for `service` with `stack`.
    fn fingerprint_id(&self, service: &str, stack: Option<&str>) -> Arc<str> {
        if stack.is_some() {
            return fingerprint_id(service, &self.key, stack).into();
        }
        if let Some((s, id)) = self.service_id.get()
            && **s == *service
        {
            return id.clone();
        }
        let id: Arc<str> = fingerprint_id(service, &self.key, None).into();
        // The first service keeps the slot; others compute theirs.
        let _ = self.service_id.set((service.into(), id.clone()));
        id
    }
}

#[derive(Debug)]
struct Variant {
    positions: Vec<usize>,
    /// The words at `positions` (joined with U+001F) and the slot of the variant holding them.
    values: Vec<(String, u32)>,
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl TemplateMiner {
    /// An empty miner.
    pub fn new(config: MinerConfig) -> Self {
        TemplateMiner {
            config,
            normalizer: Normalizer::default(),
            inner: RwLock::new(Inner::default()),
            clock: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Learns from `line` (any bytes) and returns the id of the cluster it belongs to.
    pub fn add(&self, line: &[u8]) -> ClusterId {
        self.add_with(line, |c| c.id)
    }

    /// Learns from `line` and runs `f` on its cluster, under the lock.
    fn add_with<R>(&self, line: &[u8], f: impl FnOnce(&Cluster) -> R) -> R {
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            self.normalizer.template_into(line, &mut buf);
            self.add_normalized(&buf, f)
        })
    }

    /// The current template of cluster `id`, if it is still held.
    pub fn template(&self, id: ClusterId) -> Option<String> {
        self.read().find(id).map(|c| c.template.to_string())
    }

    /// How many clusters are held.
    pub fn len(&self) -> usize {
        self.read().live
    }

    /// No cluster learned yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a way that
        // breaks lookups, so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The recency clock: read on the hot path, advanced on the slow one (each new
    /// template), which is all least-recently-seen eviction needs.
    fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn add_normalized<R>(&self, line: &str, f: impl FnOnce(&Cluster) -> R) -> R {
        let now = self.now();
        {
            let inner = self.read();
            if let Some(c) = inner.exact_hit(line) {
                c.touch(now);
                return f(c);
            }
        }
        let mut inner = self.write();
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(c) = inner.exact_hit(line) {
            c.touch(now);
            return f(c);
        }
        let tokens: Vec<&str> = split_tokens(line).collect();
        // One allocation for the remembered line and, when it makes a cluster, its key
        // and template.
        let shared: Arc<str> = line.into();
        let slot = inner.place(&shared, &tokens, &self.config);
        inner.remember(shared, slot, self.config.max_exact);
        let slot = inner.resolve_slot(slot);
        let c = inner.slots[slot as usize].as_ref().expect("live slot");
        c.touch(now);
        f(c)
    }

    /// The id that now answers for `id`: the cluster a merged variant joined, or `id`.
    pub fn resolve(&self, id: ClusterId) -> ClusterId {
        let inner = self.read();
        match inner.slot_of(id) {
            Some(slot) => {
                let slot = inner.resolve_slot(slot);
                inner.slots[slot as usize].as_ref().map_or(id, |c| c.id)
            }
            None => id,
        }
    }

    /// The clusters and variants, for persisting.
    pub fn snapshot(&self) -> MinerSnapshot {
        let inner = self.read();
        let id_of = |slot: u32| {
            inner.slots[slot as usize]
                .as_ref()
                .map(|c| c.id.to_string())
                .unwrap_or_default()
        };
        let mut clusters: Vec<(u64, SavedCluster)> = inner
            .slots
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.generation,
                    SavedCluster {
                        id: c.id.to_string(),
                        key: c.key.to_string(),
                        template: c.template.to_string(),
                        count: c.count.load(Ordering::Relaxed),
                        parent: c.parent.as_ref().map(|(p, _)| id_of(*p)),
                        positions: c
                            .parent
                            .as_ref()
                            .map(|(_, p)| p.clone())
                            .unwrap_or_default(),
                        merged_into: c.merged.map(id_of),
                    },
                )
            })
            .collect();
        // Oldest first: a cluster always comes before its variants.
        clusters.sort_by_key(|(g, _)| *g);
        MinerSnapshot {
            version: FINGERPRINT_VERSION,
            clusters: clusters.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// A miner holding the clusters of `snapshot`, with the same ids.
    ///
    /// Refuses a snapshot of another fingerprint version, with an id that does not match
    /// its key, or with a variant whose cluster is missing.
    pub fn restore(config: MinerConfig, snapshot: MinerSnapshot) -> Result<Self> {
        if snapshot.version != FINGERPRINT_VERSION {
            return Err(Error::invalid(format!(
                "miner snapshot is for fingerprint version {}, this is version {}; \
                 fix: start from an empty miner (ids of another version are not comparable)",
                snapshot.version, FINGERPRINT_VERSION
            )));
        }
        let miner = TemplateMiner::new(config);
        {
            let mut inner = miner.write();
            let mut slots: std::collections::HashMap<String, (u32, ClusterId)> = Default::default();
            for saved in snapshot.clusters {
                let id = ClusterId::of(&saved.key);
                if id.to_string() != saved.id {
                    return Err(Error::invalid(format!(
                        "miner snapshot cluster {} does not match its key {:?}; \
                         fix: restore an unedited snapshot",
                        saved.id, saved.key
                    )));
                }
                let tokens: Vec<&str> = if saved.template.is_empty() {
                    Vec::new()
                } else {
                    saved.template.split(' ').collect()
                };
                let parent = match &saved.parent {
                    None => None,
                    Some(p) => Some(*slots.get(p).ok_or_else(|| {
                        Error::invalid(format!(
                            "miner snapshot variant {} names cluster {p}, which comes nowhere \
                             before it; fix: restore an unedited snapshot",
                            saved.id
                        ))
                    })?),
                };
                // A variant whose cluster made room for a later one (a snapshot taken
                // under a larger `max_clusters`) went with it.
                let parent = match parent {
                    Some((slot, id)) if inner.holds(slot, id) => Some(slot),
                    Some(_) => continue,
                    None => None,
                };
                if !inner.make_room(&miner.config, parent) {
                    continue;
                }
                let (key, template): (Arc<str>, Arc<str>) =
                    (saved.key.into(), saved.template.as_str().into());
                let slot = inner.create(key.clone(), template.clone(), parent.is_none());
                if let Some(root) = parent {
                    let value = join_at(&tokens, &saved.positions);
                    inner.link_variant(root, slot, saved.positions.clone(), value);
                    if let Some(c) = inner.slots[slot as usize]
                        .as_mut()
                        .filter(|_| saved.merged_into.is_some())
                    {
                        c.merged = Some(root);
                    }
                }
                if let Some(c) = inner.slots[slot as usize].as_mut() {
                    *c.count.get_mut() = saved.count;
                }
                inner.remember(key, slot, miner.config.max_exact);
                inner.remember(template, slot, miner.config.max_exact);
                slots.insert(saved.id, (slot, id));
            }
        }
        Ok(miner)
    }

    /// The fingerprint of a raw line for `service`: the id is made of the cluster's
    /// stable key, so it does not change as the cluster's template generalizes.
    pub fn fingerprint_bytes(&self, service: &str, line: &[u8]) -> Fingerprint {
        self.fingerprint_with(service, line, None)
    }

    fn fingerprint_with(&self, service: &str, line: &[u8], stack: Option<String>) -> Fingerprint {
        let (id, template) = self.add_with(line, |c| {
            (
                c.fingerprint_id(service, stack.as_deref()),
                Arc::clone(&c.template),
            )
        });
        Fingerprint {
            id,
            template,
            stack,
            version: FINGERPRINT_VERSION,
        }
    }
}

impl Cluster {
    /// The tokens of its template.
    fn tokens(&self) -> impl Iterator<Item = &str> {
        split_tokens(&self.template)
    }

    /// Its template's token at `p`.
    fn token(&self, p: usize) -> Option<&str> {
        self.tokens().nth(p)
    }

    fn touch(&self, now: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.last_seen.load(Ordering::Relaxed) < now {
            self.last_seen.store(now, Ordering::Relaxed);
        }
    }
}

impl Inner {
    fn exact_hit(&self, line: &str) -> Option<&Cluster> {
        let &(slot, generation) = self.exact.get(line)?;
        let c = self.slots.get(slot as usize)?.as_ref()?;
        if c.generation != generation {
            return None;
        }
        match c.merged {
            Some(root) => self.slots[root as usize].as_ref(),
            None => Some(c),
        }
    }

    fn slot_of(&self, id: ClusterId) -> Option<u32> {
        self.ids.get(&id).copied()
    }

    fn find(&self, id: ClusterId) -> Option<&Cluster> {
        let slot = self.resolve_slot(self.slot_of(id)?);
        self.slots[slot as usize].as_ref()
    }

    fn resolve_slot(&self, mut slot: u32) -> u32 {
        // One level in practice (variants merge into clusters, clusters never merge).
        for _ in 0..4 {
            match self.slots[slot as usize].as_ref().and_then(|c| c.merged) {
                Some(root) => slot = root,
                None => break,
            }
        }
        slot
    }

    fn remember(&mut self, line: Arc<str>, slot: u32, max_exact: usize) {
        if self.exact.len() >= max_exact {
            self.exact.clear();
        }
        let generation = self.slots[slot as usize]
            .as_ref()
            .map_or(0, |c| c.generation);
        self.exact.insert(line, (slot, generation));
    }

    /// Where a new template goes: an existing cluster or variant, a new variant, or a new
    /// cluster. Returns its slot.
    fn place(&mut self, line: &Arc<str>, tokens: &[&str], config: &MinerConfig) -> u32 {
        let Some((root, differ)) = self.best_root(tokens, config.similarity) else {
            self.make_room(config, None);
            return self.create(line.clone(), line.clone(), true);
        };
        if differ.is_empty() {
            // Differs only where the cluster already has values, maybe in other shapes:
            // those positions keep what both shapes share around one value.
            // A word that turns out to be a value there takes the variants that differ
            // from the cluster by that word alone with it.
            let c = self.slots[root as usize].as_ref().expect("live root");
            let shapes: Vec<(usize, String)> = c
                .tokens()
                .zip(tokens)
                .enumerate()
                .filter(|(_, (t, new))| t != *new && *t != MASK)
                .map(|(p, (t, new))| (p, merged(t, new)))
                .filter(|(p, shape)| c.token(*p) != Some(shape.as_str()))
                .collect();
            if shapes.is_empty() {
                return root;
            }
            for &(p, _) in &shapes {
                self.forget_alternatives(root, p);
            }
            self.set_tokens(root, &shapes, config.max_exact);
            for (p, _) in shapes {
                self.merge_variants(root, &[p]);
            }
            return root;
        }
        let value = join_at(tokens, &differ);
        let c = self.slots[root as usize].as_ref().expect("live root");
        let known = c
            .variants
            .iter()
            .find(|v| v.positions == differ)
            .and_then(|v| v.values.iter().find(|(w, _)| *w == value))
            .map(|(_, slot)| *slot);
        if let Some(slot) = known {
            return slot;
        }
        // Each differing position must show more than `max_variants` distinct words
        // (the cluster's own, the variants', this one) before it becomes a value, or
        // share enough of them with another cluster's position.
        let generalize = match c.variants.iter().find(|v| v.positions == differ) {
            None => config.max_variants < 2,
            Some(v) => (0..differ.len()).all(|k| {
                let mut words: Vec<&str> = v
                    .values
                    .iter()
                    .filter_map(|(w, _)| w.split('\u{1f}').nth(k))
                    .collect();
                words.extend(c.token(differ[k]));
                words.push(tokens[differ[k]]);
                words.sort_unstable();
                words.dedup();
                words.len() > config.max_variants
            }),
        };
        let elsewhere = match differ[..] {
            [p] if !generalize => self.shared_words(root, p, tokens[p]),
            _ => Vec::new(),
        };
        if generalize || !elsewhere.is_empty() {
            self.generalize(root, &differ, config.max_exact);
            for (other, p) in elsewhere {
                self.generalize(other, &[p], config.max_exact);
            }
            return root;
        }
        if !self.make_room(config, Some(root)) {
            return root;
        }
        let slot = self.create(line.clone(), line.clone(), false);
        self.link_variant(root, slot, differ, value);
        slot
    }

    fn link_variant(&mut self, root: u32, slot: u32, positions: Vec<usize>, value: String) {
        if let Some(v) = self.slots[slot as usize].as_mut() {
            v.parent = Some((root, positions.clone()));
        }
        let Some(c) = self.slots[root as usize].as_mut() else {
            return;
        };
        if let [p] = positions[..]
            && let Some(own) = c.token(p).filter(|t| *t != MASK)
        {
            let (own, generation) = (own.to_owned(), c.generation);
            self.note_alternative(&own, root, generation, p);
            self.note_alternative(&value, root, generation, p);
        }
        let Some(c) = self.slots[root as usize].as_mut() else {
            return;
        };
        match c.variants.iter_mut().find(|v| v.positions == positions) {
            Some(v) => v.values.push((value, slot)),
            None => c.variants.push(Variant {
                positions,
                values: vec![(value, slot)],
            }),
        }
    }

    /// Records that `word` was seen at one-word variant position `pos` of cluster `root`.
    fn note_alternative(&mut self, word: &str, root: u32, generation: u64, pos: usize) {
        let at = self.alternatives.entry(word.into()).or_default();
        if !at.contains(&(root, generation, pos)) {
            at.push((root, generation, pos));
        }
    }

    /// The words seen at one-word variant position `pos` of cluster `root`: its own and
    /// its variants'.
    fn words_at(&self, root: u32, pos: usize) -> Vec<&str> {
        let Some(c) = self.slots[root as usize].as_ref() else {
            return Vec::new();
        };
        let mut words: Vec<&str> = c
            .variants
            .iter()
            .filter(|v| v.positions == [pos])
            .flat_map(|v| v.values.iter().map(|(w, _)| w.as_str()))
            .collect();
        words.extend(c.token(pos));
        words.sort_unstable();
        words.dedup();
        words
    }

    /// Forgets the words of one-word variant position `pos` of cluster `root` (it became
    /// a value, or the cluster goes).
    fn forget_alternatives(&mut self, root: u32, pos: usize) {
        let Some(generation) = self.slots[root as usize].as_ref().map(|c| c.generation) else {
            return;
        };
        let words: Vec<Box<str>> = self
            .words_at(root, pos)
            .into_iter()
            .map(Box::from)
            .collect();
        for word in words {
            if let Some(at) = self.alternatives.get_mut(&word) {
                at.retain(|&e| e != (root, generation, pos));
                if at.is_empty() {
                    self.alternatives.remove(&word);
                }
            }
        }
    }

    /// The other clusters' one-word variant positions that share at least
    /// [`SHARED_WORDS`] words with position `pos` of cluster `root` once `word` is seen
    /// there. Words seen in place of each other in two different events are names (of
    /// users, hosts, services), not the words that tell events apart: `session opened
    /// for user news` and `session closed for user news` with the same three users.
    fn shared_words(&self, root: u32, pos: usize, word: &str) -> Vec<(u32, usize)> {
        let Some(at) = self.alternatives.get(word) else {
            return Vec::new();
        };
        let mut here = self.words_at(root, pos);
        here.push(word);
        let mut found = Vec::new();
        for &(other, generation, p) in at {
            let current = self.slots[other as usize]
                .as_ref()
                .is_some_and(|c| c.generation == generation && c.parent.is_none());
            if other == root || !current {
                continue;
            }
            let there = self.words_at(other, p);
            let shared = there.iter().filter(|w| here.contains(w)).count();
            if shared >= SHARED_WORDS {
                found.push((other, p));
            }
        }
        found
    }

    /// `positions` of cluster `root` become values; the variants there merge into it.
    fn generalize(&mut self, root: u32, positions: &[usize], max_exact: usize) {
        if let [p] = positions {
            self.forget_alternatives(root, *p);
        }
        let masks: Vec<(usize, String)> = positions.iter().map(|&p| (p, MASK.to_owned())).collect();
        self.set_tokens(root, &masks, max_exact);
        self.merge_variants(root, positions);
    }

    /// Cluster `root`'s tokens at some positions change: its template, index entries and
    /// remembered templates follow.
    fn set_tokens(&mut self, root: u32, changes: &[(usize, String)], max_exact: usize) {
        let Some(c) = self.slots[root as usize].as_mut() else {
            return;
        };
        let mut tokens: Vec<&str> = c.tokens().collect();
        for (p, t) in changes {
            if let Some(slot) = tokens.get_mut(*p) {
                *slot = t;
            }
        }
        let template: Arc<str> = tokens.join(" ").into();
        self.index.insert(root, &tokens);
        c.template = template.clone();
        self.remember(template, root, max_exact);
    }

    /// The variants of cluster `root` that differ from it at `positions` merge into it.
    fn merge_variants(&mut self, root: u32, positions: &[usize]) {
        let Some(c) = self.slots[root as usize].as_mut() else {
            return;
        };
        let merged: Vec<u32> = match c.variants.iter().position(|v| v.positions == positions) {
            Some(i) => c
                .variants
                .remove(i)
                .values
                .into_iter()
                .map(|(_, s)| s)
                .collect(),
            None => Vec::new(),
        };
        let mut moved = 0;
        for &slot in &merged {
            if let Some(v) = self.slots[slot as usize].as_mut() {
                v.merged = Some(root);
                moved += v.count.swap(0, Ordering::Relaxed);
            }
        }
        if let Some(c) = self.slots[root as usize].as_mut() {
            c.count.fetch_add(moved, Ordering::Relaxed);
            c.merged_variants.extend(merged);
        }
    }

    /// The most similar cluster (not variant) of the same token count that `tokens` may
    /// join, and the positions where its words differ. Ties go to the oldest cluster.
    fn best_root(&mut self, tokens: &[&str], similarity: f64) -> Option<(u32, Vec<usize>)> {
        let min_same = min_same(similarity, tokens.len());
        let mut best: Option<(u32, usize, usize, u64)> = None;
        for &slot in self.index.candidates(tokens, min_same) {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let Some((same, wild)) = agreement(&c.template, tokens) else {
                continue;
            };
            if same < min_same {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, s, w, g)) => {
                    same > s || (same == s && (wild < w || (wild == w && c.generation < g)))
                }
            };
            if better {
                best = Some((slot, same, wild, c.generation));
            }
        }
        let (slot, ..) = best?;
        let c = self.slots[slot as usize].as_ref()?;
        Some((slot, differing(&c.template, tokens)))
    }

    /// Slot `slot` still holds cluster `id`.
    fn holds(&self, slot: u32, id: ClusterId) -> bool {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.id == id)
    }

    /// Evicts the least recently seen clusters until one more fits in `max_clusters`,
    /// never cluster `keep` (the one a new variant joins). `false` when only `keep` and its
    /// variants are left: the line then joins `keep` as it is.
    fn make_room(&mut self, config: &MinerConfig, keep: Option<u32>) -> bool {
        while self.live >= config.max_clusters.max(1) {
            if !self.evict_oldest(keep) {
                return false;
            }
        }
        true
    }

    /// A new cluster, or a new variant (`root` false, linked by the caller). Call
    /// [`Inner::make_room`] first.
    fn create(&mut self, key: Arc<str>, template: Arc<str>, root: bool) -> u32 {
        self.generation += 1;
        let id = ClusterId::of(&key);
        let cluster = Cluster {
            id,
            key,
            template,
            generation: self.generation,
            count: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
            parent: None,
            merged: None,
            variants: Vec::new(),
            merged_variants: Vec::new(),
            service_id: OnceLock::new(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(cluster);
                slot
            }
            None => {
                self.slots.push(Some(cluster));
                (self.slots.len() - 1) as u32
            }
        };
        if root {
            if let Some(c) = self.slots[slot as usize].as_ref() {
                let tokens: Vec<&str> = c.tokens().collect();
                self.index.insert(slot, &tokens);
            }
            self.recency.push(slot, self.generation, 0);
        }
        self.ids.insert(id, slot);
        self.live += 1;
        slot
    }

    /// Evicts the least recently seen cluster (other than `keep`) with its variants.
    /// Returns whether there was one.
    fn evict_oldest(&mut self, keep: Option<u32>) -> bool {
        let slots = &self.slots;
        let Some(slot) = self.recency.pop_oldest(keep, |slot, generation| {
            match slots.get(slot as usize).and_then(Option::as_ref) {
                Some(c) if c.generation == generation && c.parent.is_none() => {
                    Seen::At(c.last_seen.load(Ordering::Relaxed))
                }
                _ => Seen::Gone,
            }
        }) else {
            return false;
        };
        let one_word: Vec<usize> = self.slots[slot as usize]
            .as_ref()
            .map(|c| {
                c.variants
                    .iter()
                    .filter_map(|v| match v.positions[..] {
                        [p] => Some(p),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for p in one_word {
            self.forget_alternatives(slot, p);
        }
        let Some(c) = self.slots[slot as usize].take() else {
            return false;
        };
        self.index.remove(slot);
        let variants = c
            .variants
            .iter()
            .flat_map(|v| v.values.iter().map(|(_, s)| *s))
            .chain(c.merged_variants.iter().copied());
        let mut freed = vec![(slot, c.id)];
        for s in variants {
            // A variant restored as merged is listed twice; take it once.
            if let Some(v) = self.slots[s as usize].take() {
                freed.push((s, v.id));
            }
        }
        for (s, id) in freed {
            if self.ids.get(&id) == Some(&s) {
                self.ids.remove(&id);
            }
            self.free.push(s);
            self.live -= 1;
        }
        tracing::debug!(
            slot,
            "template miner evicted its least recently seen cluster"
        );
        true
    }
}

/// The fewest equal tokens a line of `len` tokens needs to join a cluster: the least
/// whole number that is at least `similarity × len`.
fn min_same(similarity: f64, len: usize) -> usize {
    let bound = similarity * len as f64;
    if bound.is_nan() || bound <= 0.0 {
        0
    } else if bound > len as f64 {
        len + 1
    } else {
        bound.ceil() as usize
    }
}

/// The words of `tokens` at `positions`, joined with U+001F.
fn join_at(tokens: &[&str], positions: &[usize]) -> String {
    let mut out = String::new();
    for (i, &p) in positions.iter().enumerate() {
        if i > 0 {
            out.push('\u{1f}');
        }
        out.push_str(tokens.get(p).copied().unwrap_or(""));
    }
    out
}

/// Messages of at most this many tokens never merge over a different first word.
const SHORT: usize = 4;

/// A one-word variant position that shares this many words with another cluster's
/// becomes a value in both ([`Inner::shared_words`]).
const SHARED_WORDS: usize = 3;

/// The positions where a line's words differ from a template's (not where the template
/// holds a value).
fn differing(template: &str, tokens: &[&str]) -> Vec<usize> {
    split_tokens(template)
        .zip(tokens)
        .enumerate()
        .filter(|(_, (t, new))| t != *new && *t != MASK && !one_value(t, new))
        .map(|(i, _)| i)
        .collect()
}

/// How a line's tokens agree with a template: `(same, wild)` — tokens equal (values
/// included) and template wildcards over a word — or `None` when they may not be merged
/// (a short message whose first words differ).
fn agreement(template: &str, tokens: &[&str]) -> Option<(usize, usize)> {
    let mut same = 0;
    let mut wild = 0;
    for (i, (t, new)) in split_tokens(template).zip(tokens).enumerate() {
        if t == *new {
            same += 1;
        } else if t == MASK || one_value(t, new) {
            wild += 1;
        } else if i == 0 && tokens.len() <= SHORT {
            return None;
        }
    }
    Some((same, wild))
}

/// The tokens of a line or template: split at single spaces, none in an empty one.
fn split_tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split(' ')
        .take(if line.is_empty() { 0 } else { usize::MAX })
}

impl Fingerprinter for TemplateMiner {
    fn name(&self) -> &str {
        "template-miner"
    }

    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        let stack = signal
            .stack
            .as_deref()
            .map(stack_signature)
            .filter(|s| !s.is_empty());
        self.fingerprint_with(&signal.service, signal.message.as_bytes(), stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const USERS: [&str; 7] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];

    fn miner() -> TemplateMiner {
        TemplateMiner::new(MinerConfig::default())
    }

    #[test]
    fn a_position_with_many_words_becomes_a_value() {
        let m = miner();
        let ids: Vec<ClusterId> = USERS
            .iter()
            .map(|u| {
                m.add(format!("Accepted password for {u} from 10.0.0.1 port 22 ssh2").as_bytes())
            })
            .collect();
        let failed = m.add(b"Failed password for bob from 10.0.0.2 port 22 ssh2");
        // The first four users were variants; the fifth made the position a value.
        assert_eq!(ids[4], ids[0]);
        assert_eq!(ids[6], ids[0]);
        assert!(ids.iter().all(|id| m.resolve(*id) == ids[0]));
        assert_ne!(m.resolve(failed), ids[0]);
        assert_eq!(
            m.template(ids[0]).unwrap(),
            "Accepted password for <*> from <*> port <*>"
        );
        assert_eq!(
            m.snapshot().clusters.iter().map(|c| c.count).sum::<u64>(),
            8
        );
    }

    #[test]
    fn a_few_alternatives_stay_events_of_their_own() {
        let m = miner();
        let events = ["Started", "Paused", "Resumed", "Stopped"];
        let first: Vec<ClusterId> = events
            .iter()
            .map(|e| m.add(format!("[instance: 42] VM {e} (Lifecycle Event)").as_bytes()))
            .collect();
        let again: Vec<ClusterId> = events
            .iter()
            .map(|e| m.add(format!("[instance: 7] VM {e} (Lifecycle Event)").as_bytes()))
            .collect();
        assert_eq!(first, again);
        let distinct: std::collections::HashSet<_> =
            first.iter().map(|id| m.resolve(*id)).collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn values_of_another_shape_are_still_values() {
        let m = miner();
        let ip = m.add(b"synchronized to 10.100.20.250, stratum 3");
        let local = m.add(b"synchronized to LOCAL(0), stratum 10");
        assert_eq!(local, ip);
        assert_eq!(m.template(ip).unwrap(), "synchronized to <*>, stratum <*>");
        // Named values are not one value: `uid=` and `pid=` stay apart.
        let uid = m.add(b"lookup failed for uid=42 in table users");
        let pid = m.add(b"lookup failed for pid=42 in table users");
        assert_ne!(m.resolve(uid), m.resolve(pid));
    }

    #[test]
    fn words_that_fit_a_value_are_that_value() {
        let m = miner();
        for (first, second, template) in [
            (
                "ciod: LOGIN chdir(/p/gb2/glosli/t800) failed: No such file",
                "ciod: LOGIN chdir(pwd) failed: No such file",
                "ciod: LOGIN chdir(<*>) failed: No such file",
            ),
            // Booleans are values, whatever they are glued to.
            (
                "updateClipping isOverlap:false, getTopPadding=333.0",
                "updateClipping isOverlap:true, getTopPadding=12.5",
                "updateClipping isOverlap:<*>, getTopPadding=<*>",
            ),
        ] {
            let id = m.add(first.as_bytes());
            assert_eq!(m.add(second.as_bytes()), id, "{second}");
            assert_eq!(m.template(id).unwrap(), template);
        }
        let path = m.add(b"ciod: LOGIN chdir(/p/gb2/glosli/t800) failed: No such file");
        // A word does not fit another name's value.
        let other = m.add(b"ciod: LOGIN chmod(pwd) failed: No such file");
        assert_ne!(m.resolve(other), path);
    }

    #[test]
    fn a_position_that_becomes_a_value_takes_its_variants() {
        let m = miner();
        let first = m.add(b"alpha.service: told me to run this job now");
        let second = m.add(b"beta.service: told me to run this job now");
        assert_ne!(m.resolve(second), first, "two words: two events so far");
        // The normalizer masked this one's name: the position is a value, so the
        // variant that differed there alone merges.
        let masked = m.add(b"10.0.0.7: told me to run this job now");
        assert_eq!(masked, first);
        assert_eq!(m.resolve(second), first);
        assert_eq!(
            m.template(first).unwrap(),
            "<*>: told me to run this job now"
        );
    }

    #[test]
    fn names_shared_by_two_events_are_values_in_both() {
        let m = miner();
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        for user in ["news", "cyrus", "test"] {
            opened.push(m.add(format!("session opened for user {user} by (uid=0)").as_bytes()));
            closed.push(m.add(format!("session closed for user {user}").as_bytes()));
        }
        // Three users, under `max_variants` in each event, but the same three in both.
        assert!(opened.iter().all(|id| m.resolve(*id) == opened[0]));
        assert!(closed.iter().all(|id| m.resolve(*id) == closed[0]));
        assert_ne!(opened[0], closed[0]);
        assert_eq!(
            m.template(opened[0]).unwrap(),
            "session opened for user <*> by (uid=<*>)"
        );
        assert_eq!(
            m.template(closed[0]).unwrap(),
            "session closed for user <*>"
        );
        assert!(m.read().alternatives.is_empty(), "forgotten once values");

        // Two shared words are not enough: `initialization.` and `finalization.` tell
        // events apart in both `Starting` and `Ending` lines.
        let m = miner();
        let ids: Vec<ClusterId> = ["Starting", "Ending"]
            .iter()
            .flat_map(|verb| {
                ["initialization.", "finalization."]
                    .map(|what| format!("{verb} TrustedInstaller {what}"))
            })
            .map(|line| m.add(line.as_bytes()))
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().map(|id| m.resolve(*id)).collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn shared_names_are_still_found_after_a_restore() {
        let m = miner();
        for user in ["news", "cyrus"] {
            m.add(format!("session opened for user {user} by (uid=0)").as_bytes());
            m.add(format!("session closed for user {user}").as_bytes());
        }
        let restored = TemplateMiner::restore(MinerConfig::default(), m.snapshot()).unwrap();
        let opened = restored.add(b"session opened for user test by (uid=0)");
        let closed = restored.add(b"session closed for user test");
        assert_eq!(
            restored.template(opened).unwrap(),
            "session opened for user <*> by (uid=<*>)"
        );
        assert_eq!(
            restored.template(closed).unwrap(),
            "session closed for user <*>"
        );
    }

    #[test]
    fn short_messages_group_only_when_their_words_agree() {
        let m = miner();
        let opened = m.add(b"session opened");
        let closed = m.add(b"session closed");
        let again = m.add(b"session opened");
        let numbered = m.add(b"retry 3");
        let numbered2 = m.add(b"retry 17");
        assert_ne!(opened, closed);
        assert_eq!(opened, again);
        assert_eq!(numbered, numbered2);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn replaying_templates_does_not_multiply_clusters() {
        let m = miner();
        for u in USERS {
            m.add(format!("Invalid user {u} from 10.0.0.7").as_bytes());
        }
        m.add(b"Connection closed by 10.0.0.9 [preauth]");
        m.add(b"user=alice action=\"delete all\" ok");
        let before = m.snapshot();
        for c in &before.clusters {
            let id = m.add(c.template.as_bytes());
            let want = c.merged_into.as_ref().unwrap_or(&c.id);
            assert_eq!(&id.to_string(), want, "replaying {:?}", c.template);
        }
        // Lines that already hold masks join the same clusters too.
        m.add(b"Invalid user <*> from <*>");
        assert_eq!(m.len(), before.clusters.len());
    }

    #[test]
    fn snapshot_round_trip_keeps_ids_and_variants() {
        let m = miner();
        let a = m.add(b"Invalid user admin from 10.0.0.7");
        for u in USERS {
            m.add(format!("Invalid user {u} from 10.0.0.7").as_bytes());
        }
        let started = m.add(b"VM Started 1");
        let paused = m.add(b"VM Paused 2");
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let restored =
            TemplateMiner::restore(MinerConfig::default(), serde_json::from_str(&json).unwrap())
                .unwrap();
        assert_eq!(restored.add(b"Invalid user guest from 10.9.9.9"), a);
        assert_eq!(restored.resolve(a), a);
        assert_eq!(restored.add(b"VM Started 9"), started);
        assert_eq!(restored.add(b"VM Paused 9"), paused);
        assert_eq!(restored.len(), m.len());
        assert_eq!(
            restored.snapshot(),
            m.snapshot().clone_with_counts(&restored.snapshot())
        );

        let mut bad: MinerSnapshot = serde_json::from_str(&json).unwrap();
        bad.clusters[0].key.push('x');
        let err = TemplateMiner::restore(MinerConfig::default(), bad).unwrap_err();
        assert!(err.to_string().contains("fix:"), "{err}");
        let mut old: MinerSnapshot = serde_json::from_str(&json).unwrap();
        old.version = 1;
        assert!(TemplateMiner::restore(MinerConfig::default(), old).is_err());
    }

    impl MinerSnapshot {
        /// This snapshot with the counts of `other` (restoring then adding changes counts).
        fn clone_with_counts(&self, other: &MinerSnapshot) -> MinerSnapshot {
            let mut out = self.clone();
            for (c, o) in out.clusters.iter_mut().zip(&other.clusters) {
                c.count = o.count;
            }
            out
        }
    }

    /// Lines of six random words: each its own cluster.
    fn random_lines(n: usize, seed: u64) -> Vec<String> {
        selfheal_testsupport::random_word_lines(n, 6, seed)
    }

    #[test]
    fn eviction_goes_by_last_seen_oldest_first() {
        let m = TemplateMiner::new(MinerConfig {
            max_clusters: 12,
            ..MinerConfig::default()
        });
        // A cluster whose name position is a value (a root and three merged variants):
        // each new name is a new template, so it moves the recency clock, which
        // advances with each new template.
        for u in USERS {
            m.add(format!("sink event for {u}").as_bytes());
        }
        assert_eq!(m.len(), 4);
        let lines = random_lines(8, 7);
        let ids: Vec<ClusterId> = lines.iter().map(|l| m.add(l.as_bytes())).collect();
        assert_eq!(m.len(), 12);
        // Seen again in this order: 5 is now the oldest, 6 the newest.
        let order = [5, 2, 7, 0, 3, 1, 4, 6];
        let names = [
            "kilo", "lima", "mike", "oscar", "papa", "quebec", "romeo", "sierra",
        ];
        for (&i, name) in order.iter().zip(names) {
            m.add(lines[i].as_bytes());
            m.add(format!("sink event for {name}").as_bytes());
        }
        assert_eq!(m.len(), 12);
        // Each new cluster evicts exactly the oldest that is left, in that order.
        for (k, new) in random_lines(8, 99).iter().enumerate() {
            let id = m.add(new.as_bytes());
            assert_eq!(m.len(), 12, "the cap holds");
            assert!(m.template(id).is_some());
            for (j, &i) in order.iter().enumerate() {
                assert_eq!(
                    m.template(ids[i]).is_some(),
                    j > k,
                    "after {} new clusters, cluster {i} (seen {j}th)",
                    k + 1
                );
            }
        }
        let sink = m.add(b"sink event for nobody");
        assert_eq!(m.template(sink).unwrap(), "sink event for <*>");
    }

    #[test]
    fn random_words_at_the_cap_keep_the_bound_and_restore() {
        let config = MinerConfig {
            max_clusters: 300,
            ..MinerConfig::default()
        };
        let m = TemplateMiner::new(config.clone());
        let lines = random_lines(2_000, 42);
        for line in &lines {
            let id = m.add(line.as_bytes());
            assert!(m.template(id).is_some());
        }
        assert_eq!(m.len(), 300);
        // The last 300 lines are the clusters held, each with its own template.
        for line in &lines[lines.len() - 300..] {
            assert_eq!(m.template(m.add(line.as_bytes())).as_deref(), Some(&**line));
        }
        assert_eq!(m.template(ClusterId::of(&lines[0])), None, "evicted");
        let snapshot = m.snapshot();
        let restored = TemplateMiner::restore(config, snapshot.clone()).unwrap();
        assert_eq!(restored.len(), 300);
        assert_eq!(restored.snapshot(), snapshot);
        for line in &lines[lines.len() - 300..] {
            assert_eq!(
                restored.add(line.as_bytes()),
                ClusterId::of(line),
                "same ids after the round trip"
            );
        }
        assert_eq!(restored.len(), 300);
    }

    #[test]
    fn evicting_a_cluster_takes_its_variants_and_merged_variants() {
        let m = TemplateMiner::new(MinerConfig {
            max_clusters: 12,
            ..MinerConfig::default()
        });
        // Cluster, merged variants (the 5th user generalized the position)...
        let users: Vec<ClusterId> = USERS
            .iter()
            .map(|u| m.add(format!("Accepted password for {u} from 10.0.0.1").as_bytes()))
            .collect();
        // ...and a cluster with two live variants.
        let vm: Vec<ClusterId> = ["Started", "Paused", "Resumed"]
            .iter()
            .map(|e| m.add(format!("VM {e} (Lifecycle Event)").as_bytes()))
            .collect();
        let held = m.len();
        assert_eq!(held, 4 + 3);
        assert!(
            !m.read().alternatives.is_empty(),
            "Started, Paused, Resumed"
        );
        // Twelve new clusters: everything above goes, variants with their clusters.
        for line in random_lines(12, 5) {
            m.add(line.as_bytes());
            assert!(m.len() <= 12);
        }
        assert_eq!(m.len(), 12);
        for id in users.iter().chain(&vm) {
            assert!(m.template(*id).is_none(), "{id} still held");
        }
        let inner = m.read();
        assert!(inner.alternatives.is_empty(), "their words went with them");
        assert_eq!(inner.ids.len(), 12);
    }

    /// The index finds what a scan of every cluster of the same length finds.
    #[test]
    fn the_index_agrees_with_a_scan() {
        let config = MinerConfig {
            max_clusters: 64,
            ..MinerConfig::default()
        };
        let m = TemplateMiner::new(config.clone());
        // Lines from a few words: many share tokens, lengths and positions.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let words = ["a", "b", "c", "d", "e", "<*>", "f", "g"];
        for _ in 0..3_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 1 + (seed % 7) as usize;
            let line: Vec<&str> = (0..len)
                .map(|i| words[((seed >> (8 + 3 * i)) % 8) as usize])
                .collect();
            let mut inner = m.write();
            let scanned = inner.scan_best_root(&line, config.similarity);
            let indexed = inner.best_root(&line, config.similarity);
            assert_eq!(indexed, scanned, "{line:?}");
            drop(inner);
            m.add(line.join(" ").as_bytes());
        }
    }

    impl Inner {
        /// `best_root` by comparing with every cluster, oldest first (the reference).
        fn scan_best_root(&self, tokens: &[&str], similarity: f64) -> Option<(u32, Vec<usize>)> {
            let mut roots: Vec<&Cluster> = self
                .slots
                .iter()
                .flatten()
                .filter(|c| c.parent.is_none() && c.tokens().count() == tokens.len())
                .collect();
            roots.sort_by_key(|c| c.generation);
            let mut best: Option<(&Cluster, usize, usize)> = None;
            for c in roots {
                let Some((same, wild)) = agreement(&c.template, tokens) else {
                    continue;
                };
                if best.is_none_or(|(_, s, w)| same > s || (same == s && wild < w)) {
                    best = Some((c, same, wild));
                }
            }
            let (c, same, _) = best?;
            if (same as f64) < similarity * tokens.len() as f64 {
                return None;
            }
            Some((self.slot_of(c.id)?, differing(&c.template, tokens)))
        }
    }

    #[test]
    fn cluster_cap_evicts_the_least_recently_seen() {
        let m = TemplateMiner::new(MinerConfig {
            max_clusters: 3,
            ..MinerConfig::default()
        });
        let keep = m.add(b"alpha event happened here");
        for word in ["bravo", "charlie", "delta", "echo"] {
            m.add(format!("{word} thing went sideways").as_bytes());
            m.add(b"alpha event happened here");
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.add(b"alpha event happened here"), keep);
        assert_eq!(m.template(keep).unwrap(), "alpha event happened here");
        let echo = m.add(b"echo thing went sideways");
        assert!(m.template(echo).is_some());
        // bravo was the least recently seen: it is gone, and comes back as new.
        assert_eq!(m.len(), 3);
        let bravo = m.add(b"bravo thing went sideways");
        assert_eq!(m.template(bravo).unwrap(), "bravo thing went sideways");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_variant_never_evicts_the_cluster_it_joins() {
        let config = MinerConfig {
            max_clusters: 1,
            ..MinerConfig::default()
        };
        let m = TemplateMiner::new(config.clone());
        let delta = m.add(b"alpha beta gamma delta");
        let epsilon = m.add(b"alpha beta gamma epsilon");
        // No room for a variant but the cluster itself: the line joins it as it is.
        assert_eq!(epsilon, delta);
        assert_eq!(m.len(), 1);
        let restored = TemplateMiner::restore(config.clone(), m.snapshot()).unwrap();
        assert_eq!(restored.len(), 1);
        assert_eq!(restored.snapshot(), m.snapshot());
        // A new cluster still replaces the old one.
        m.add(b"something else entirely happened");
        assert_eq!(m.len(), 1);
        assert!(TemplateMiner::restore(config, m.snapshot()).is_ok());
    }

    #[test]
    fn a_snapshot_restores_under_a_smaller_cap() {
        let m = miner();
        for e in ["Started", "Paused", "Resumed"] {
            m.add(format!("VM {e} (Lifecycle Event)").as_bytes());
        }
        for w in ["bravo", "charlie", "delta"] {
            m.add(format!("{w} thing went sideways").as_bytes());
        }
        let small = MinerConfig {
            max_clusters: 2,
            ..MinerConfig::default()
        };
        let restored = TemplateMiner::restore(small.clone(), m.snapshot()).unwrap();
        assert!(restored.len() <= 2, "{}", restored.len());
        assert!(TemplateMiner::restore(small, restored.snapshot()).is_ok());
    }

    mod props {
        use super::*;
        use crate::fingerprint::normalize::tests::props::tricky_line;
        use proptest::prelude::*;

        /// Lines from a few words, so they share lengths and words and form variants.
        fn wordy_line() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    "(alpha|beta|gamma|delta|epsilon|zeta|eta|theta)",
                    "[0-9]{1,3}",
                    "[日本語中]{1,2}",
                ],
                1..6,
            )
            .prop_map(|w| w.join(" "))
        }

        proptest! {
            #[test]
            fn the_cap_holds_and_snapshots_restore(
                lines in proptest::collection::vec(prop_oneof![wordy_line(), tricky_line()], 1..60),
                max_clusters in 1usize..6,
                max_variants in 1usize..4,
            ) {
                let config = MinerConfig { max_clusters, max_variants, ..MinerConfig::default() };
                let m = TemplateMiner::new(config.clone());
                for line in &lines {
                    let id = m.add(line.as_bytes());
                    prop_assert!(m.len() <= max_clusters, "{} > {max_clusters}", m.len());
                    prop_assert!(m.template(id).is_some(), "{line:?}");
                }
                let snapshot = m.snapshot();
                let restored = TemplateMiner::restore(config.clone(), snapshot.clone());
                prop_assert!(restored.is_ok(), "{:?}", restored.err());
                let restored = restored.unwrap();
                prop_assert_eq!(restored.len(), m.len());
                prop_assert_eq!(restored.snapshot().clusters.len(), snapshot.clusters.len());
                // Through JSON too.
                let json = serde_json::to_string(&snapshot).unwrap();
                prop_assert!(TemplateMiner::restore(config, serde_json::from_str(&json).unwrap()).is_ok());
            }
        }
    }

    #[test]
    fn shared_across_threads() {
        let m = Arc::new(miner());
        let handles: Vec<_> = (0..USERS.len())
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    (0..300)
                        .map(|i| {
                            m.add(
                                format!("worker {} finished job {i} in {i}ms", USERS[t]).as_bytes(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<ClusterId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let root = m.resolve(ids[0]);
        assert!(ids.iter().all(|id| m.resolve(*id) == root));
        assert_eq!(
            m.template(root).unwrap(),
            "worker <*> finished job <*> in <*>"
        );
        let total: u64 = m.snapshot().clusters.iter().map(|c| c.count).sum();
        assert_eq!(total, 300 * USERS.len() as u64);
    }

    #[test]
    fn fingerprint_id_is_stable_as_the_template_generalizes() {
        let m = miner();
        let first = m.fingerprint(&Signal::new("t", "cache miss for key users alice now"));
        let mut last = first.clone();
        for u in USERS {
            last = m.fingerprint(&Signal::new(
                "t",
                format!("cache miss for key users {u} now"),
            ));
        }
        assert_eq!(&*first.template, "cache miss for key users alice now");
        assert_eq!(&*last.template, "cache miss for key users <*> now");
        assert_eq!(last.id, first.id);
        let again = m.fingerprint(&Signal::new("t", "cache miss for key users zoe now"));
        assert_eq!(again.id, first.id);
        // The id is sha256 over service:key:stack, whichever service asks first.
        let other =
            m.fingerprint(&Signal::new("t", "cache miss for key users zoe now").service("b"));
        assert_eq!(*other.id, fingerprint_id("b", &first.template, None));
        assert_eq!(*first.id, fingerprint_id("", &first.template, None));
        let with_stack = m.fingerprint(
            &Signal::new("t", "cache miss for key users zoe now")
                .stack("Traceback (most recent call last):\n  File \"/app/c.py\", line 3, in get\nKeyError: 'x'"),
        );
        assert_eq!(
            *with_stack.id,
            fingerprint_id("", &first.template, Some("KeyError|c.get"))
        );
    }
}
