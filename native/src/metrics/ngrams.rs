//! N-gram counting that keeps first-seen order, like the Python dicts the reference scorers use.

use std::collections::HashMap;

/// Counts of all 1..=n-grams of a token list, iterable in Python-dict insertion order.
#[derive(Default, Clone)]
pub struct NgramCounts {
    /// `(n-gram joined by spaces, order, count)` in first-insertion order.
    entries: Vec<(String, usize, usize)>,
    index: HashMap<String, usize>,
}

impl NgramCounts {
    /// Count every n-gram of order 1..=`max_order`, orders in increasing order, as `precook` does.
    pub fn new(words: &[&str], max_order: usize) -> Self {
        let mut counts = NgramCounts::default();
        for k in 1..=max_order {
            for window in words.windows(k) {
                counts.add(window.join(" "), k, 1);
            }
        }
        counts
    }

    fn add(&mut self, key: String, order: usize, count: usize) {
        if let Some(&i) = self.index.get(&key) {
            self.entries[i].2 += count;
        } else {
            self.index.insert(key.clone(), self.entries.len());
            self.entries.push((key, order, count));
        }
    }

    /// The count of an n-gram (0 when absent).
    pub fn get(&self, key: &str) -> usize {
        self.index.get(key).map_or(0, |&i| self.entries[i].2)
    }

    /// `(n-gram, order, count)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, usize, usize)> {
        self.entries.iter().map(|(k, o, c)| (k.as_str(), *o, *c))
    }

    /// Raise each count to at least `other`'s (Python `Counter |=`, or a max-merge of dicts).
    pub fn max_merge(&mut self, other: &NgramCounts) {
        for (key, order, count) in other.iter() {
            match self.index.get(key) {
                Some(&i) => self.entries[i].2 = self.entries[i].2.max(count),
                None => self.add(key.to_string(), order, count),
            }
        }
    }
}
