use super::*;

const RSA1_PUB: &str = include_str!("../../../../tests/fixtures/jwt/rsa1.pub.pem");
const EC1_PUB: &str = include_str!("../../../../tests/fixtures/jwt/ec1.pub.pem");
const RSA1_KEY: &str = include_str!("../../../../tests/fixtures/jwt/rsa1.key.pem");

#[test]
fn tlv_short_and_long_form() {
    assert_eq!(read_tlv(&[0x02, 0x01, 0x05, 0xAA]).unwrap(), (0x02, &[0x05][..], &[0xAA][..]));
    let mut long = vec![0x04, 0x81, 0x80];
    long.extend(std::iter::repeat_n(7u8, 0x80));
    let (tag, c, rest) = read_tlv(&long).unwrap();
    assert_eq!((tag, c.len(), rest.len()), (0x04, 0x80, 0));
    let mut two = vec![0x04, 0x82, 0x01, 0x00];
    two.extend(std::iter::repeat_n(1u8, 256));
    assert_eq!(read_tlv(&two).unwrap().1.len(), 256);
    assert_eq!(read_tlv(&[0x05, 0x00]).unwrap(), (0x05, &[][..], &[][..]));
}

#[test]
fn tlv_malformed() {
    for bad in [
        &[][..],
        &[0x30],                                  // no length
        &[0x30, 0x80, 0x00, 0x00],                // indefinite
        &[0x30, 0x85, 1, 1, 1, 1, 1],             // 5-byte length
        &[0x30, 0x82, 0x01],                      // truncated length
        &[0x30, 0x81, 0x05, 1, 2, 3],             // non-minimal (long form for 5)
        &[0x30, 0x82, 0x00, 0x80],                // non-minimal (leading zero)
        &[0x30, 0x03, 1, 2],                      // contents past the end
        &[0x1F, 0x01, 0x00],                      // high tag number
        &[0x30, 0x84, 0xFF, 0xFF, 0xFF],          // truncated 4-byte length
        &[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0], // huge length, no contents
    ] {
        assert!(read_tlv(bad).is_err(), "{bad:02x?}");
    }
    assert!(expect_tlv(&[0x02, 0x00], 0x30).is_err());
    assert!(expect_only(&[0x05, 0x00, 0x00], 0x05).is_err());
}

#[test]
fn integers() {
    assert_eq!(unsigned_integer(&[0x00, 0x80, 0x01]).unwrap(), &[0x80, 0x01]);
    assert_eq!(unsigned_integer(&[0x00, 0x00, 0x01]).unwrap(), &[0x01]);
    assert_eq!(unsigned_integer(&[0x00]).unwrap(), &[] as &[u8]);
    assert!(unsigned_integer(&[]).is_err());
    assert!(unsigned_integer(&[0x80]).is_err());
}

#[test]
fn spki_rsa_and_ec() {
    let (label, der) = pem_decode(RSA1_PUB).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    let spki = parse_spki(&der).unwrap();
    assert_eq!(spki.algorithm, OID_RSA_ENCRYPTION);
    assert_eq!(spki.param_oid, None);
    let (n, e) = parse_rsa_public_key(spki.key).unwrap();
    assert_eq!(n.len(), 256);
    assert_eq!(e, &[0x01, 0x00, 0x01]);

    let (_, der) = pem_decode(EC1_PUB).unwrap();
    let spki = parse_spki(&der).unwrap();
    assert_eq!(spki.algorithm, OID_EC_PUBLIC_KEY);
    assert_eq!(spki.param_oid, Some(OID_PRIME256V1));
    assert_eq!(spki.key.len(), 65);
    assert_eq!(spki.key.first(), Some(&0x04));
}

#[test]
fn spki_truncated_and_overlong() {
    let (_, der) = pem_decode(RSA1_PUB).unwrap();
    for cut in 0..der.len() {
        assert!(parse_spki(der.get(..cut).unwrap()).is_err(), "cut {cut}");
    }
    let mut longer = der.clone();
    longer.push(0);
    assert!(parse_spki(&longer).is_err());
    // Unused bits in the BIT STRING.
    let (_, ec) = pem_decode(EC1_PUB).unwrap();
    let mut bad = ec.clone();
    let pos = bad.windows(3).position(|w| w == [0x03, 0x42, 0x00]).unwrap();
    *bad.get_mut(pos + 2).unwrap() = 1;
    assert!(parse_spki(&bad).is_err());
    // Every single-byte corruption either parses or errors; never panics.
    for i in 0..ec.len() {
        for v in [0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF] {
            let mut c = ec.clone();
            *c.get_mut(i).unwrap() = v;
            let _ = parse_spki(&c);
        }
    }
}

#[test]
fn rsa_public_key_malformed() {
    assert!(parse_rsa_public_key(&[0x30, 0x03, 0x02, 0x01, 0x05]).is_err()); // missing e
    assert!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x00]).is_err());
    assert!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]).is_ok());
    assert!(parse_rsa_public_key(&[0x30, 0x09, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x02, 0x01, 0x01]).is_err());
}

#[test]
fn pem_labels_and_bodies() {
    let (label, der) = pem_decode(RSA1_KEY).unwrap();
    assert_eq!(label, "PRIVATE KEY");
    assert!(!der.is_empty());
    let with_text = format!("subject=whatever\n\n{RSA1_PUB}\ntrailing\n");
    assert!(pem_decode(&with_text).is_ok());
    let crlf = RSA1_PUB.replace('\n', "\r\n");
    assert_eq!(pem_decode(&crlf).unwrap(), pem_decode(RSA1_PUB).unwrap());
    let mismatched = RSA1_PUB.replace("-----END PUBLIC KEY-----", "-----END RSA PUBLIC KEY-----");
    assert!(pem_decode(&mismatched).unwrap_err().contains("does not match"));
    let no_end = RSA1_PUB.replace("-----END PUBLIC KEY-----", "");
    assert!(pem_decode(&no_end).is_err());
    assert!(pem_decode("").is_err());
    assert!(pem_decode("just text").is_err());
    assert!(pem_decode("-----BEGIN X-----\n-----END X-----\n").is_err());
    assert!(pem_decode("-----BEGIN X-----\n!!!!\n-----END X-----\n").is_err());
    assert!(pem_decode("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END X-----\n").is_err());
    // base64url characters are not the standard alphabet.
    assert!(pem_decode("-----BEGIN X-----\nAA-_\n-----END X-----\n").is_err());
    assert!(pem_decode(&"A".repeat(MAX_PEM_LEN + 1)).is_err());
}
