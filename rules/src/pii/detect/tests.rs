use super::*;
use proptest::prelude::*;

proptest! {
    /// The memoised keyword search answers exactly as the plain one, for windows moving
    /// forward by any steps.
    #[test]
    fn keyword_scan_agrees_with_near_keyword(
        parts in prop::collection::vec(prop::sample::select(&[
            "vkn", "VKN", "vergi", "Tax", "syntax", "ssn", "social security", "x", " ", "1234567890", "é", ":",
        ][..]), 0..120),
        steps in prop::collection::vec((0usize..40, 9usize..12), 1..40),
    ) {
        let hay = parts.concat().into_bytes();
        let mut scan = KeywordScan::new(VKN_KEYWORDS);
        let mut start = 0;
        for (gap, len) in steps {
            start += gap;
            let end = start + len;
            prop_assert_eq!(scan.near(&hay, start, end), near_keyword(&hay, start, end, VKN_KEYWORDS), "{}..{}", start, end);
        }
    }
}
