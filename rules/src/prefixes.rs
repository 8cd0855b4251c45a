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
mod tests {
    use super::*;
    use crate::canon::has_prefix_ignore_case;
    use proptest::prelude::*;

    #[test]
    fn boundaries_and_case() {
        let p = Prefixes::new(
            [("/api".to_string(), 1), ("/API/".to_string(), 2), ("/api/v1".to_string(), 3), ("/".to_string(), 4)],
            |a, b| *a = (*a).min(b),
        );
        let got: Vec<(usize, i32)> = p.matches("/Api/V1/x").map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, [(7, 3), (4, 1)]);
        assert_eq!(p.matches("/apix").count(), 0);
        assert_eq!(p.matches("/api").map(|(_, v)| *v).collect::<Vec<_>>(), [1]);
        assert_eq!(p.matches("/api/").map(|(_, v)| *v).collect::<Vec<_>>(), [1]);
        assert_eq!(p.matches("").count(), 0);
        assert_eq!(p.matches("/é/api").count(), 0);
    }

    proptest! {
        /// Exactly the prefixes `has_prefix_ignore_case` accepts (the `/` prefix aside).
        #[test]
        fn same_as_has_prefix(prefixes in proptest::collection::vec("(/[aAbB%2é]{1,3}){1,3}/?", 0..20), path in "(/[aAbB%2é]{0,3}){0,5}/?") {
            let p = Prefixes::new(prefixes.iter().cloned().map(|s| (s, ())), |_, _| {});
            let mut got: Vec<String> = p.matches(&path).map(|(k, _)| path[..k].to_ascii_lowercase()).collect();
            got.sort();
            let mut want: Vec<String> = prefixes
                .iter()
                .filter(|x| has_prefix_ignore_case(&path, x))
                .map(|x| x.trim_end_matches('/').to_ascii_lowercase())
                .collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(got, want);
        }
    }
}
