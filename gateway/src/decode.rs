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
mod tests;
