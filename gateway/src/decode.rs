//! Decoding a compressed upstream response body for the PII scan.
//!
//! The gateway asks the upstream for `Accept-Encoding: identity` on every scanned route; an
//! upstream that compresses anyway gets its body decoded here (`gzip`/`x-gzip`, `deflate` — zlib
//! or raw —, `br`), chunk by chunk, never holding more than one chunk's output.
//!
//! Decompression bombs: the output may never exceed [`MAX_RATIO`] times the compressed bytes
//! seen so far (plus [`SLACK`] for a small first chunk), and each call writes into a sink that
//! refuses bytes past that budget, so a bomb costs at most its budget in memory and time, then
//! [`DecodeError::Ratio`]. Real JSON compresses 5–20×, highly repetitive JSON under 100×.

use std::io::Write;

/// Largest decoded/encoded ratio accepted.
pub const MAX_RATIO: u64 = 200;

/// Output always allowed, whatever the ratio (a tiny gzip of a moderate body is not a bomb).
pub const SLACK: u64 = 1024 * 1024;

/// A `Content-Encoding` the gateway can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No `Content-Encoding`, or `identity`.
    Identity,
    /// `gzip` / `x-gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped as RFC 9110 says, or raw as some servers send it).
    Deflate,
    /// `br`.
    Brotli,
}

impl Encoding {
    /// The encoding of a `Content-Encoding` header value (absent: `Identity`). `None` for
    /// anything else, and for a list of several codings (`gzip, br`), never worth decoding twice.
    pub fn parse(value: Option<&[u8]>) -> Option<Encoding> {
        let Some(v) = value else { return Some(Encoding::Identity) };
        let v = v.trim_ascii();
        let is = |name: &[u8]| v.eq_ignore_ascii_case(name);
        if v.is_empty() || is(b"identity") {
            Some(Encoding::Identity)
        } else if is(b"gzip") || is(b"x-gzip") {
            Some(Encoding::Gzip)
        } else if is(b"deflate") {
            Some(Encoding::Deflate)
        } else if is(b"br") {
            Some(Encoding::Brotli)
        } else {
            None
        }
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid stream of its encoding (or truncated).
    Corrupt,
    /// Past [`MAX_RATIO`]: a decompression bomb, or not worth scanning.
    Ratio,
}

impl DecodeError {
    /// For events and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecodeError::Corrupt => "decode_error",
            DecodeError::Ratio => "decompression_ratio",
        }
    }
}

/// Collects the decoder's output, refusing bytes past its budget.
#[derive(Debug, Default)]
struct Sink {
    out: Vec<u8>,
    /// Bytes it may still take.
    room: u64,
    /// It refused bytes.
    over: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.room {
            self.over = true;
            return Err(std::io::Error::other("decompression ratio exceeded"));
        }
        self.room -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Gzip(flate2::write::GzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Raw(flate2::write::DeflateDecoder<Sink>),
    Brotli(Box<brotli::DecompressorWriter<Sink>>),
    /// `deflate` before its first two bytes tell zlib from raw.
    Undecided(Vec<u8>),
}

/// Decodes one body, chunk by chunk.
pub struct Decoder {
    inner: Inner,
    seen_in: u64,
    given_out: u64,
    failed: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("in", &self.seen_in).field("out", &self.given_out).finish()
    }
}

impl Decoder {
    /// A decoder for `encoding`; `None` for identity (nothing to decode).
    pub fn new(encoding: Encoding) -> Option<Decoder> {
        let inner = match encoding {
            Encoding::Identity => return None,
            Encoding::Gzip => Inner::Gzip(flate2::write::GzDecoder::new(Sink::default())),
            Encoding::Deflate => Inner::Undecided(Vec::new()),
            Encoding::Brotli => Inner::Brotli(Box::new(brotli::DecompressorWriter::new(Sink::default(), 16 * 1024))),
        };
        Some(Decoder { inner, seen_in: 0, given_out: 0, failed: false })
    }

    /// Decodes the next compressed chunk, appending what it yields to `out`. After an error,
    /// every call returns it again.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::Corrupt);
        }
        self.seen_in += input.len() as u64;
        if let Inner::Undecided(head) = &mut self.inner {
            head.extend_from_slice(input);
            let (Some(&a), Some(&b)) = (head.first(), head.get(1)) else { return Ok(()) };
            // A zlib header: CM 8 (deflate), window ≤ 32 KiB, FCHECK makes it a multiple of 31.
            let zlib = a & 0x0f == 8 && a >> 4 <= 7 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0;
            let head = std::mem::take(head);
            self.inner = if zlib {
                Inner::Zlib(flate2::write::ZlibDecoder::new(Sink::default()))
            } else {
                Inner::Raw(flate2::write::DeflateDecoder::new(Sink::default()))
            };
            return self.write(&head, out);
        }
        self.write(input, out)
    }

    /// Ends the body: flushes what the decoder still holds.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::Corrupt);
        }
        self.set_room();
        let r = match &mut self.inner {
            Inner::Gzip(d) => d.try_finish(),
            Inner::Zlib(d) => d.try_finish(),
            Inner::Raw(d) => d.try_finish(),
            Inner::Brotli(d) => d.close(),
            Inner::Undecided(h) if h.is_empty() => Ok(()),
            Inner::Undecided(_) => return Err(DecodeError::Corrupt),
        };
        self.drain(r, out)
    }

    fn set_room(&mut self) {
        let budget = self.seen_in.saturating_mul(MAX_RATIO).saturating_add(SLACK);
        let room = budget.saturating_sub(self.given_out);
        if let Some(sink) = self.sink() {
            sink.room = room;
        }
    }

    fn sink(&mut self) -> Option<&mut Sink> {
        Some(match &mut self.inner {
            Inner::Gzip(d) => d.get_mut(),
            Inner::Zlib(d) => d.get_mut(),
            Inner::Raw(d) => d.get_mut(),
            Inner::Brotli(d) => d.get_mut(),
            Inner::Undecided(_) => return None,
        })
    }

    fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.set_room();
        let r = match &mut self.inner {
            Inner::Gzip(d) => d.write_all(input),
            Inner::Zlib(d) => d.write_all(input),
            Inner::Raw(d) => d.write_all(input),
            Inner::Brotli(d) => d.write_all(input),
            Inner::Undecided(_) => Ok(()),
        };
        self.drain(r, out)
    }

    fn drain(&mut self, r: std::io::Result<()>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let Some(sink) = self.sink() else { return Ok(()) };
        let over = sink.over;
        let got = std::mem::take(&mut sink.out);
        self.given_out += got.len() as u64;
        out.extend_from_slice(&got);
        match r {
            Ok(()) => Ok(()),
            Err(_) => {
                self.failed = true;
                Err(if over { DecodeError::Ratio } else { DecodeError::Corrupt })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
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
        assert_eq!(
            decode(Encoding::Gzip, b"\x1f\x8b\x08\x00garbage that is not deflate", 64),
            Err(DecodeError::Corrupt)
        );
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
}
