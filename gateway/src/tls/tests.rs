use super::*;

#[test]
fn wildcards_cover_one_label() {
    assert!(name_matches("*.example.com", "a.example.com"));
    assert!(name_matches("*.example.com", "A.Example.COM."));
    assert!(!name_matches("*.example.com", "example.com"));
    assert!(!name_matches("*.example.com", "a.b.example.com"));
    assert!(!name_matches("*.example.com", ".example.com"));
    assert!(name_matches("api.example.com", "API.example.com"));
    assert!(!name_matches("api.example.com", "api.example.com.evil"));
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let key = |n: &[&str]| CertPair {
        key: Arc::new(CertifiedKey::new(
            vec![],
            #[allow(clippy::unwrap_used)]
            provider()
                .key_provider
                .load_private_key(PrivateKeyDer::from(rustls::pki_types::PrivatePkcs8KeyDer::from(ring_key().to_vec())))
                .unwrap(),
        )),
        names: n.iter().map(|s| s.to_string()).collect(),
        not_after: 0,
    };
    let store = CertStore { pairs: vec![key(&["default.test"]), key(&["*.a.test"]), key(&["x.a.test"])] };
    let idx = |sni| {
        let p = store.pick(sni).map(|p| p.names.clone());
        store.pairs.iter().position(|q| Some(q.names.clone()) == p)
    };
    assert_eq!(idx(Some("x.a.test")), Some(2));
    assert_eq!(idx(Some("y.a.test")), Some(1));
    assert_eq!(idx(Some("other.test")), Some(0));
    assert_eq!(idx(None), Some(0));
}

fn ring_key() -> Vec<u8> {
    #[allow(clippy::unwrap_used)]
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    doc.as_ref().to_vec()
}
