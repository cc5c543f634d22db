//! A hash table of boxed records that carry their own name. A slot holds only the box, 8
//! bytes, where a `HashMap<Arc<str>, Box<T>>` takes 24 for the key beside it: a million
//! resources then cost 16 MB of table instead of 48.

use std::hash::BuildHasher;
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
