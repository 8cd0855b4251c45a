use super::*;

#[test]
fn addresses_and_chunks() {
    assert_eq!(authority("http://127.0.0.1:9090/").unwrap(), "127.0.0.1:9090");
    assert_eq!(authority("127.0.0.1:9090").unwrap(), "127.0.0.1:9090");
    assert!(authority("https://x").is_err());
    assert!(authority("http://").is_err());
    assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    assert_eq!(dechunk(b"zz\r\n"), b"");
    assert_eq!(dechunk(b"5\r\nab"), b"", "a truncated chunk is not read past the end");
}
