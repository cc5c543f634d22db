//! A hash table of boxed records that carry their own name. A slot holds only the box, 8
//! bytes, where a `HashMap<Arc<str>, Box<T>>` takes 24 for the key beside it: a million
//! resources then cost 16 MB of table instead of 48.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;

/// Hash tables keyed by names and ids that clients choose: foldhash is several times
/// faster than SipHash and still seeded per table.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A record that knows its name.
pub(crate) trait Named {
    fn name(&self) -> &Arc<str>;
}

#[derive(Debug)]
pub(crate) struct Table<T> {
    slots: HashTable<Box<T>>,
    /// foldhash, seeded per table, as the state's other tables.
    hasher: foldhash::fast::RandomState,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: HashTable::new(),
            hasher: Default::default(),
        }
    }
}

/// Most names looked up are the record's own `Arc` handed back: equal by address,
/// which saves comparing the bytes.
fn is(t: &impl Named, name: &str) -> bool {
    let own: &str = t.name();
    std::ptr::eq(own, name) || own == name
}

impl<T: Named> Table<T> {
    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&T> {
        let found = self.slots.find(self.hash(name), |t| is(&**t, name));
        found.map(|t| &**t)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        let hash = self.hash(name);
        let found = self.slots.find_mut(hash, |t| is(&**t, name));
        found.map(|t| &mut **t)
    }

    /// The record of `name`, made by `make` if there is none.
    pub(crate) fn get_or_insert_with(&mut self, name: &str, make: impl FnOnce() -> T) -> &mut T {
        let hasher = &self.hasher;
        let entry = self.slots.entry(
            hasher.hash_one(name),
            |t| is(&**t, name),
            |t| hasher.hash_one(&**t.name()),
        );
        entry.or_insert_with(|| Box::new(make())).into_mut()
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Box<T>> {
        let hash = self.hash(name);
        let found = self.slots.find_entry(hash, |t| is(&**t, name));
        found.ok().map(|e| e.remove().0)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|t| &**t)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|t| &mut **t)
    }
}

/// A map of what ended lately (sessions, lost leases): it keeps its `cap` latest
/// insertions, so that a late caller can still be told how a thing ended.
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    /// Each value with the number of its insertion.
    map: HashMap<K, (u64, V)>,
    /// Keys with the number of their insertion, oldest first: an older insertion of a key
    /// inserted again, or removed, forgets nothing when it leaves.
    order: VecDeque<(K, u64)>,
    inserted: u64,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Recent<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Recent {
            map: HashMap::default(),
            order: VecDeque::new(),
            inserted: 0,
            cap,
        }
    }

    /// Inserts `key`, and forgets the oldest insertions beyond `cap`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.inserted += 1;
        self.map.insert(key.clone(), (self.inserted, value));
        self.order.push_back((key, self.inserted));
        while self.order.len() > self.cap {
            let Some((old, n)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(m, _)| *m == n) {
                self.map.remove(&old);
            }
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (_, v))| (k, v))
    }

    /// The keys of the latest insertions, oldest first.
    pub(crate) fn order(&self) -> impl Iterator<Item = &K> {
        self.order.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn a_recent_map_forgets_its_oldest_insertions_beyond_its_cap() {
        let mut recent = Recent::new(2);
        recent.insert(1, "a");
        recent.insert(2, "b");
        recent.insert(3, "c");
        assert_eq!(recent.get(&1), None);
        assert_eq!((recent.get(&2), recent.get(&3)), (Some(&"b"), Some(&"c")));
        assert_eq!(recent.remove(&2), Some("b"));
        assert_eq!(recent.order().copied().collect::<Vec<_>>(), [2, 3]);
        // A key removed, or inserted again, is not forgotten when its older insertion
        // leaves.
        recent.insert(2, "B");
        assert_eq!(recent.get(&2), Some(&"B"));
        recent.insert(3, "C");
        assert_eq!((recent.get(&2), recent.get(&3)), (Some(&"B"), Some(&"C")));
        recent.insert(4, "d");
        assert_eq!((recent.get(&2), recent.get(&3)), (None, Some(&"C")));
    }
}
