//! An index of path prefixes matched on segment boundaries, ignoring ASCII case — the semantics
//! of [`crate::canon::has_prefix_ignore_case`] — for many prefixes at once: the route table's
//! prefixes within a host group, the firewall's literal `paths`.
//!
//! The prefixes are stored lower-cased without their trailing `/`, sorted; a lookup tries each
//! segment boundary of the path (the whole path, then before each `/`, longest first) with one
//! binary search: `O(segments × log prefixes)`, no allocation.

/// Sorted prefixes, each with a value.
#[derive(Debug, Clone)]
pub(crate) struct Prefixes<V> {
    sorted: Vec<(Box<[u8]>, V)>,
}

impl<V> Default for Prefixes<V> {
    fn default() -> Self {
        Self { sorted: Vec::new() }
    }
}

impl<V> Prefixes<V> {
    /// Builds the index from `(prefix, value)` pairs; `merge` folds the value of a prefix seen
    /// again (after trimming and lower-casing) into the first one's. Prefixes that are `/` (or
    /// empty) match every path and are not indexed: they are the caller's to handle.
    pub(crate) fn new(items: impl IntoIterator<Item = (String, V)>, mut merge: impl FnMut(&mut V, V)) -> Self {
        let mut sorted: Vec<(Box<[u8]>, usize, V)> = Vec::new();
        for (n, (prefix, v)) in items.into_iter().enumerate() {
            let base = prefix.trim_end_matches('/');
            if !base.is_empty() {
                sorted.push((base.to_ascii_lowercase().into_bytes().into_boxed_slice(), n, v));
            }
        }
        // Stable on insertion order for equal prefixes, so `merge` sees them in order.
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<(Box<[u8]>, V)> = Vec::with_capacity(sorted.len());
        for (key, _, v) in sorted {
            match out.last_mut() {
                Some((last, first)) if *last == key => merge(first, v),
                _ => out.push((key, v)),
            }
        }
        Self { sorted: out }
    }

    /// Every indexed prefix of `path`, longest first, with the prefix's length in bytes.
    pub(crate) fn matches<'s, 'p>(&'s self, path: &'p str) -> impl Iterator<Item = (usize, &'s V)> + use<'s, 'p, V> {
        let p = path.as_bytes();
        let ends = std::iter::once(p.len())
            .chain(p.iter().enumerate().rev().filter(|&(k, &b)| b == b'/' && k > 0).map(|(k, _)| k))
            .filter(|_| !self.sorted.is_empty());
        ends.filter_map(move |k| {
            let head = p.get(..k)?;
            let at = self
                .sorted
                .binary_search_by(|(key, _)| key.iter().copied().cmp(head.iter().map(u8::to_ascii_lowercase)))
                .ok()?;
            self.sorted.get(at).map(|(_, v)| (k, v))
        })
    }
}

#[cfg(test)]
mod tests;
