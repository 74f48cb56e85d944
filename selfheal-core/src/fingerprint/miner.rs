//! The template miner: learns the templates of logs whose shape nobody described.
//!
//! Each line is first normalized ([`Normalizer`]: numbers, addresses, paths, quoted and
//! `key=value` values masked). A template already seen is found with one hash lookup
//! under a read lock: that is the hot path, and threads share it. A new template is
//! compared, Drain-style, with the clusters of the same token count: when enough tokens
//! agree it joins the most similar cluster (the positions that differ become `<*>`),
//! otherwise it starts a cluster of its own.
//!
//! What it learns from Drain's known weaknesses:
//! - masked tokens are values, never words: replaying a learned template (or a line
//!   that already holds `<*>`) lands in the same cluster instead of a new one;
//! - short messages (three tokens or fewer) join a cluster only when their words agree
//!   exactly, so `session opened` and `session closed` stay apart;
//! - the first word is the event's verb or subject more often than not: two lines
//!   whose first words differ (and are words, not values) are never merged.
//!
//! Memory is bounded: at most [`MinerConfig::max_clusters`] clusters (the least recently
//! seen one is evicted) and [`MinerConfig::max_exact`] remembered templates. A
//! cluster's id is derived from the first template it saw and never changes as the
//! cluster generalizes; [`TemplateMiner::snapshot`] and [`TemplateMiner::restore`]
//! carry clusters and ids across restarts.
//!
//! ```
//! use selfheal_core::fingerprint::{MinerConfig, TemplateMiner};
//! let miner = TemplateMiner::new(MinerConfig::default());
//! let a = miner.add(b"Invalid user admin from 10.0.0.7 port 51234");
//! let b = miner.add(b"Invalid user oracle from 10.0.0.9 port 40022");
//! assert_eq!(a, b);
//! assert_eq!(miner.template(a).unwrap(), "Invalid user <*> from <*> port <*>");
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::normalize::MASK;
use super::{FINGERPRINT_VERSION, Fingerprint, Normalizer, fingerprint_id, stack_signature};
use crate::{Error, Fingerprinter, Result, Signal};

/// How the miner groups lines. One configuration serves every kind of log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinerConfig {
    /// The share of a line's tokens that must agree with a cluster's template for the
    /// line to join it (0.0–1.0).
    pub similarity: f64,
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
    exact: foldhash::HashMap<Box<str>, (u32, u32)>,
    /// Token count -> slots.
    by_len: foldhash::HashMap<usize, Vec<u32>>,
    generation: u32,
}

#[derive(Debug)]
struct Cluster {
    id: ClusterId,
    key: String,
    tokens: Vec<String>,
    template: String,
    generation: u32,
    count: AtomicU64,
    last_seen: AtomicU64,
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
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            self.normalizer.template_into(line, &mut buf);
            self.add_normalized(&buf)
        })
    }

    /// Learns from `line` and returns its cluster's id, stable key and current template.
    fn add_full(&self, line: &[u8]) -> (ClusterId, String, String) {
        let id = self.add(line);
        let inner = self.read();
        match inner.find(id) {
            Some(c) => (id, c.key.clone(), c.template.clone()),
            // Evicted in between by another thread: the line's own template.
            None => {
                let t = self.normalizer.template(&String::from_utf8_lossy(line));
                (id, t.clone(), t)
            }
        }
    }

    /// The current template of cluster `id`, if it is still held.
    pub fn template(&self, id: ClusterId) -> Option<String> {
        self.read().find(id).map(|c| c.template.clone())
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

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn add_normalized(&self, line: &str) -> ClusterId {
        let now = self.tick();
        {
            let inner = self.read();
            if let Some(c) = inner.exact_hit(line) {
                c.touch(now);
                return c.id;
            }
        }
        let mut inner = self.write();
        if let Some(c) = inner.exact_hit(line) {
            c.touch(now);
            return c.id;
        }
        let tokens: Vec<&str> = if line.is_empty() {
            Vec::new()
        } else {
            line.split(' ').collect()
        };
        let slot = match inner.best_match(&tokens, self.config.similarity) {
            Some(slot) => {
                inner.merge(slot, &tokens, self.config.max_exact);
                slot
            }
            None => inner.create(line, &tokens, &self.config),
        };
        inner.remember(line, slot, self.config.max_exact);
        let c = inner.slots[slot as usize].as_ref().expect("live slot");
        c.touch(now);
        c.id
    }

    /// The clusters, for persisting.
    pub fn snapshot(&self) -> MinerSnapshot {
        let inner = self.read();
        let mut clusters: Vec<(u64, SavedCluster)> = inner
            .slots
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.generation as u64,
                    SavedCluster {
                        id: c.id.to_string(),
                        key: c.key.clone(),
                        template: c.template.clone(),
                        count: c.count.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        clusters.sort_by_key(|(g, _)| *g);
        MinerSnapshot {
            version: FINGERPRINT_VERSION,
            clusters: clusters.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// A miner holding the clusters of `snapshot`, with the same ids.
    ///
    /// Refuses a snapshot of another fingerprint version or with an id that does not
    /// match its key.
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
                let slot = inner.create(&saved.key, &tokens, &miner.config);
                if let Some(c) = inner.slots[slot as usize].as_mut() {
                    *c.count.get_mut() = saved.count;
                }
                inner.remember(&saved.key, slot, miner.config.max_exact);
                inner.remember(&saved.template, slot, miner.config.max_exact);
            }
        }
        Ok(miner)
    }

    /// The fingerprint of a raw line for `service`: the id is made of the cluster's
    /// stable key, so it does not change as the cluster's template generalizes.
    pub fn fingerprint_bytes(&self, service: &str, line: &[u8]) -> Fingerprint {
        let (_, key, template) = self.add_full(line);
        Fingerprint {
            id: fingerprint_id(service, &key, None),
            template,
            stack: None,
            version: FINGERPRINT_VERSION,
        }
    }
}

impl Cluster {
    fn touch(&self, now: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }
}

impl Inner {
    fn exact_hit(&self, line: &str) -> Option<&Cluster> {
        let &(slot, generation) = self.exact.get(line)?;
        self.slots
            .get(slot as usize)?
            .as_ref()
            .filter(|c| c.generation == generation)
    }

    fn find(&self, id: ClusterId) -> Option<&Cluster> {
        // Rare (reporting, fingerprints): a scan is fine next to the hot path's lookup.
        self.slots.iter().flatten().find(|c| c.id == id)
    }

    fn remember(&mut self, line: &str, slot: u32, max_exact: usize) {
        if self.exact.len() >= max_exact {
            self.exact.clear();
        }
        let generation = self.slots[slot as usize]
            .as_ref()
            .map_or(0, |c| c.generation);
        self.exact.insert(line.into(), (slot, generation));
    }

    /// The most similar cluster of the same token count that `tokens` may join.
    fn best_match(&self, tokens: &[&str], similarity: f64) -> Option<u32> {
        let candidates = self.by_len.get(&tokens.len())?;
        let mut best: Option<(u32, usize, usize)> = None;
        for &slot in candidates {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let Some((same, wild)) = agreement(&c.tokens, tokens) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((_, s, w)) => same > s || (same == s && wild < w),
            };
            if better {
                best = Some((slot, same, wild));
            }
        }
        let (slot, same, wild) = best?;
        let n = tokens.len();
        let mismatched = n - same - wild;
        let ok = if n <= 3 {
            mismatched == 0
        } else {
            same as f64 >= similarity * n as f64
        };
        ok.then_some(slot)
    }

    fn merge(&mut self, slot: u32, tokens: &[&str], max_exact: usize) {
        let Some(c) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let mut changed = false;
        for (t, new) in c.tokens.iter_mut().zip(tokens) {
            if t != new && t != MASK {
                *t = MASK.to_owned();
                changed = true;
            }
        }
        if changed {
            c.template = c.tokens.join(" ");
            let template = c.template.clone();
            self.remember(&template, slot, max_exact);
        }
    }

    fn create(&mut self, key: &str, tokens: &[&str], config: &MinerConfig) -> u32 {
        if self.live >= config.max_clusters.max(1) {
            self.evict_oldest();
        }
        self.generation = self.generation.wrapping_add(1);
        let cluster = Cluster {
            id: ClusterId::of(key),
            key: key.to_owned(),
            tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            template: tokens.join(" "),
            generation: self.generation,
            count: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
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
        self.by_len.entry(tokens.len()).or_default().push(slot);
        self.live += 1;
        slot
    }

    fn evict_oldest(&mut self) {
        let Some((slot, len)) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .min_by_key(|(_, c)| c.last_seen.load(Ordering::Relaxed))
            .map(|(i, c)| (i as u32, c.tokens.len()))
        else {
            return;
        };
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.live -= 1;
        if let Some(list) = self.by_len.get_mut(&len) {
            list.retain(|&s| s != slot);
        }
        tracing::debug!(
            slot,
            "template miner evicted its least recently seen cluster"
        );
    }
}

/// How a line's tokens agree with a template: `(same, wild)` — tokens equal (values
/// included) and template wildcards over a word — or `None` when they may not be merged
/// (their first words differ, or a template word meets a value).
fn agreement(template: &[String], tokens: &[&str]) -> Option<(usize, usize)> {
    let mut same = 0;
    let mut wild = 0;
    for (i, (t, new)) in template.iter().zip(tokens).enumerate() {
        if t == new {
            same += 1;
        } else if t == MASK {
            wild += 1;
        } else if i == 0 {
            return None;
        }
    }
    Some((same, wild))
}

impl Fingerprinter for TemplateMiner {
    fn name(&self) -> &str {
        "template-miner"
    }

    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        let (_, key, template) = self.add_full(signal.message.as_bytes());
        let stack = signal
            .stack
            .as_deref()
            .map(stack_signature)
            .filter(|s| !s.is_empty());
        Fingerprint {
            id: fingerprint_id(&signal.service, &key, stack.as_deref()),
            template,
            stack,
            version: FINGERPRINT_VERSION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(MinerConfig::default())
    }

    #[test]
    fn groups_values_that_are_words() {
        let m = miner();
        let a = m.add(b"Accepted password for alice from 10.0.0.1 port 22 ssh2");
        let b = m.add(b"Accepted password for bob from 10.0.0.2 port 22 ssh2");
        let c = m.add(b"Failed password for bob from 10.0.0.2 port 22 ssh2");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            m.template(a).unwrap(),
            "Accepted password for <*> from <*> port <*>"
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
        let lines = [
            "Invalid user admin from 10.0.0.7",
            "Invalid user oracle from 10.0.0.9",
            "Connection closed by 10.0.0.9 [preauth]",
            "user=alice action=\"delete all\" ok",
        ];
        for l in lines {
            m.add(l.as_bytes());
        }
        let before = m.snapshot();
        for c in &before.clusters {
            let id = m.add(c.template.as_bytes());
            assert_eq!(id.to_string(), c.id, "replaying {:?}", c.template);
        }
        // Lines that already hold masks join the same clusters too.
        m.add(b"Invalid user <*> from <*>");
        assert_eq!(m.len(), before.clusters.len());
    }

    #[test]
    fn snapshot_round_trip_keeps_ids() {
        let m = miner();
        let a = m.add(b"Invalid user admin from 10.0.0.7");
        m.add(b"Invalid user oracle from 10.0.0.9");
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let restored =
            TemplateMiner::restore(MinerConfig::default(), serde_json::from_str(&json).unwrap())
                .unwrap();
        assert_eq!(restored.add(b"Invalid user guest from 10.9.9.9"), a);
        assert_eq!(restored.len(), 1);

        let mut bad: MinerSnapshot = serde_json::from_str(&json).unwrap();
        bad.clusters[0].key.push('x');
        let err = TemplateMiner::restore(MinerConfig::default(), bad).unwrap_err();
        assert!(err.to_string().contains("fix:"), "{err}");
        let mut old: MinerSnapshot = serde_json::from_str(&json).unwrap();
        old.version = 1;
        assert!(TemplateMiner::restore(MinerConfig::default(), old).is_err());
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
        // The oldest of the others is gone; the newest is held.
        let echo = m.add(b"echo thing went sideways");
        assert!(m.template(echo).is_some());
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn shared_across_threads() {
        let m = Arc::new(miner());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let name = ["ann", "bob", "cid", "dan"][t];
                    (0..500)
                        .map(|i| {
                            m.add(format!("worker {name} finished job {i} in {i}ms").as_bytes())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<ClusterId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]));
        assert_eq!(m.len(), 1);
        assert_eq!(m.snapshot().clusters[0].count, 2000);
    }

    #[test]
    fn fingerprint_id_is_stable_as_the_template_generalizes() {
        let m = miner();
        let a = m.fingerprint(&Signal::new("t", "cache miss for key users alice now"));
        let b = m.fingerprint(&Signal::new("t", "cache miss for key users bob now"));
        assert_eq!(a.id, b.id);
        assert_eq!(a.template, "cache miss for key users alice now");
        assert_eq!(b.template, "cache miss for key users <*> now");
        let c = m.fingerprint(&Signal::new("t", "cache miss for key users carol now"));
        assert_eq!(c.id, a.id);
    }
}
