use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn decode(enc: Encoding, data: &[u8], chunk: usize) -> Result<Vec<u8>, DecodeError> {
    let mut d = Decoder::new(enc).unwrap();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        d.push(c, &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

fn body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..2000 {
        b.extend_from_slice(
            format!("{{\"id\":\"ORD-{i}\",\"name\":\"Çağrı Öztürk\",\"tckn\":\"10000000146\"}},").as_bytes(),
        );
    }
    b
}

#[test]
fn parses_content_encoding() {
    assert_eq!(Encoding::parse(None), Some(Encoding::Identity));
    assert_eq!(Encoding::parse(Some(b" GZip ")), Some(Encoding::Gzip));
    assert_eq!(Encoding::parse(Some(b"x-gzip")), Some(Encoding::Gzip));
    assert_eq!(Encoding::parse(Some(b"deflate")), Some(Encoding::Deflate));
    assert_eq!(Encoding::parse(Some(b"br")), Some(Encoding::Brotli));
    assert_eq!(Encoding::parse(Some(b"identity")), Some(Encoding::Identity));
    for bad in [&b"zstd"[..], b"gzip, br", b"compress", b"gzip;q=1", b"\xff"] {
        assert_eq!(Encoding::parse(Some(bad)), None, "{bad:?}");
    }
    assert!(Decoder::new(Encoding::Identity).is_none());
}

#[test]
fn every_encoding_round_trips_in_any_chunking() {
    let b = body();
    for (enc, data) in [
        (Encoding::Gzip, gzip(&b)),
        (Encoding::Deflate, zlib(&b)),
        (Encoding::Deflate, raw(&b)),
        (Encoding::Brotli, br(&b)),
    ] {
        for chunk in [1, 2, 7, 1000, 1 << 20] {
            assert_eq!(decode(enc, &data, chunk).unwrap(), b, "{enc:?} {chunk}");
        }
    }
    assert_eq!(decode(Encoding::Gzip, &gzip(b""), 3).unwrap(), b"");
}

#[test]
fn corrupt_and_truncated_streams_are_errors() {
    let b = body();
    let mut g = gzip(&b);
    g[20] ^= 0xff;
    g[30] ^= 0xff;
    assert_eq!(decode(Encoding::Gzip, &g, 100), Err(DecodeError::Corrupt));
    assert_eq!(decode(Encoding::Gzip, b"not gzip at all", 4), Err(DecodeError::Corrupt));
    assert_eq!(decode(Encoding::Brotli, b"\xff\xff\xff\xff not brotli", 4), Err(DecodeError::Corrupt));
    let g = gzip(&b);
    assert_eq!(decode(Encoding::Gzip, &g[..g.len() - 4], 64), Err(DecodeError::Corrupt), "no trailer");
    assert_eq!(decode(Encoding::Gzip, &g[..g.len() / 2], 64), Err(DecodeError::Corrupt), "half");
    assert_eq!(decode(Encoding::Gzip, b"\x1f\x8b\x08\x00garbage that is not deflate", 64), Err(DecodeError::Corrupt));
    let z = zlib(&b);
    assert_eq!(decode(Encoding::Deflate, &z[..z.len() / 2], 64), Err(DecodeError::Corrupt), "zlib half");
    let full = br(&b);
    assert_eq!(decode(Encoding::Brotli, &full[..full.len() / 2], 64), Err(DecodeError::Corrupt));
    // A single byte of `deflate` cannot be anything.
    assert_eq!(decode(Encoding::Deflate, b"x", 1), Err(DecodeError::Corrupt));
    // After an error, the decoder stays failed.
    let mut d = Decoder::new(Encoding::Gzip).unwrap();
    let mut out = Vec::new();
    assert!(d.push(b"garbage garbage garbage", &mut out).is_err());
    assert_eq!(d.push(&gzip(b"ok"), &mut out), Err(DecodeError::Corrupt));
}

#[test]
fn bombs_stop_at_their_budget() {
    // 64 MiB of zeros: ~65 KiB gzip, ~1000×.
    let zeros = vec![0u8; 64 << 20];
    for (enc, data) in [(Encoding::Gzip, gzip(&zeros)), (Encoding::Brotli, br(&zeros))] {
        let mut d = Decoder::new(enc).unwrap();
        let mut out = Vec::new();
        let mut err = None;
        for c in data.chunks(16 * 1024) {
            if let Err(e) = d.push(c, &mut out) {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => e,
            None => d.finish(&mut out).unwrap_err(),
        };
        assert_eq!(err, DecodeError::Ratio, "{enc:?}");
        assert!(out.len() as u64 <= data.len() as u64 * MAX_RATIO + SLACK, "{enc:?} {}", out.len());
    }
    // A moderately compressible body is not a bomb.
    let b = body();
    assert_eq!(decode(Encoding::Gzip, &gzip(&b), 512).unwrap(), b);
}
