//! Read caches in front of the database for the reads that pollers repeat many times a
//! second with nothing changed in between: service views (`DescribeServices`, `slipway
//! status`), task definitions and meta values (the admin token on every API request).
//!
//! Each cache is invalidated by a write generation, never by time: every write that can
//! change what a cache holds bumps that cache's generation after it commits (or fails), and
//! an entry read from the database is kept only if no such write started and finished
//! while it was being read. So a read that begins after a write of this process returned
//! never sees what was there before it. Writes of other servers sharing a PostgreSQL
//! database bump the generations when their notification arrives (see `notify`): a read on
//! this server may answer from before such a write for as long as the notification takes
//! (milliseconds on one network), and never longer.
//!
//! This module owns the caches and calls nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries a cache holds at most; past it the cache starts over (a bound on memory, not an
/// eviction policy: the hot set of a poller is far smaller).
const MAX_ENTRIES: usize = 4096;

/// One cache: a map valid for one write generation.
pub(crate) struct Cached<K, V> {
    written: AtomicU64,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    generation: u64,
    map: HashMap<K, V>,
}

impl<K: Hash + Eq, V: Clone> Inner<K, V> {
    /// Drops what an older generation left.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            self.map.clear();
            self.generation = generation;
        }
    }
}

/// Bumps a cache's generation when dropped: a write holds one from before it starts until
/// after it committed or failed.
#[must_use = "the generation is bumped when the guard is dropped, after the write"]
pub(crate) struct Written<'a>(&'a AtomicU64);

impl Drop for Written<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl<K: Hash + Eq, V: Clone> Cached<K, V> {
    pub fn new() -> Self {
        Cached {
            written: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                generation: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// The generation to pass to [`Cached::insert`]: taken before reading the database.
    pub fn generation(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Declares a write; hold the guard until the write is over.
    pub fn write(&self) -> Written<'_> {
        Written(&self.written)
    }

    /// The cached values of `keys`, in order (`None`: not cached).
    pub fn get_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>) -> Vec<Option<V>>
    where
        K: 'k,
    {
        let now = self.generation();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.at(now);
        keys.into_iter()
            .map(|k| inner.map.get(k).cloned())
            .collect()
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.get_many([key]).pop().flatten()
    }

    /// The values of `keys`, in order: the cached ones, and the others from `read`, which
    /// gets the keys not cached and returns one value for each, in their order (and which
    /// are then kept, see [`Cached::insert`]).
    pub async fn get_or_read<E, F, Fut>(&self, keys: Vec<K>, read: F) -> Result<Vec<V>, E>
    where
        K: Clone,
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<V>, E>>,
    {
        let generation = self.generation();
        let mut values = self.get_many(&keys);
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
        if !missing.is_empty() {
            let fresh = read(missing.iter().map(|&i| keys[i].clone()).collect()).await?;
            for (&i, value) in missing.iter().zip(fresh) {
                self.insert(generation, keys[i].clone(), value.clone());
                values[i] = Some(value);
            }
        }
        Ok(values.into_iter().flatten().collect())
    }

    /// Keeps `value`, read from the database after [`Cached::generation`] returned
    /// `generation`, unless a write has finished since.
    pub fn insert(&self, generation: u64, key: K, value: V) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        inner.at(generation);
        if inner.map.len() >= MAX_ENTRIES {
            inner.map.clear();
        }
        inner.map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_invalidates_what_was_cached() {
        let c: Cached<&str, u32> = Cached::new();
        let g = c.generation();
        c.insert(g, "a", 1);
        assert_eq!(c.get(&"a"), Some(1));
        drop(c.write());
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn a_read_that_overlapped_a_write_is_not_kept() {
        let c: Cached<&str, u32> = Cached::new();
        let g = c.generation();
        // A write starts and finishes while the value is being read from the database.
        let w = c.write();
        drop(w);
        c.insert(g, "a", 1);
        assert_eq!(c.get(&"a"), None);
        // A write in flight when the value is kept: kept, then dropped once the write ends.
        let g = c.generation();
        let w = c.write();
        c.insert(g, "a", 1);
        assert_eq!(c.get(&"a"), Some(1));
        drop(w);
        assert_eq!(c.get(&"a"), None);
    }

    #[tokio::test]
    async fn get_or_read_reads_only_what_is_not_cached() {
        let c: Cached<u32, u32> = Cached::new();
        let read =
            |keys: Vec<u32>| async move { Ok::<_, ()>(keys.iter().map(|k| k * 10).collect()) };
        assert_eq!(c.get_or_read(vec![1, 2], read).await, Ok(vec![10, 20]));
        let asked = std::sync::Mutex::new(Vec::new());
        let values = c
            .get_or_read(vec![3, 1, 2], |keys: Vec<u32>| {
                asked.lock().unwrap().extend(keys.iter().copied());
                async move { Ok::<_, ()>(keys.iter().map(|k| k * 10).collect()) }
            })
            .await;
        assert_eq!(values, Ok(vec![30, 10, 20]));
        assert_eq!(*asked.lock().unwrap(), [3], "1 and 2 came from the cache");
        // A failed read keeps nothing and passes the error on.
        drop(c.write());
        assert_eq!(
            c.get_or_read(vec![1], |_| async { Err::<Vec<u32>, _>("down") })
                .await,
            Err("down")
        );
        assert_eq!(c.get(&1), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c: Cached<usize, usize> = Cached::new();
        let g = c.generation();
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(g, i, i);
        }
        let kept = c.get_many(&(0..MAX_ENTRIES + 10).collect::<Vec<_>>());
        assert!(kept.iter().flatten().count() <= MAX_ENTRIES);
        assert_eq!(c.get(&(MAX_ENTRIES + 9)), Some(MAX_ENTRIES + 9));
    }
}
