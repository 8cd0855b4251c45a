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
