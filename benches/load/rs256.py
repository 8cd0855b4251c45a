#!/usr/bin/env python3
"""RS256 helper of benches/load/run.sh (S3-rs: every request carries a token the gateway has not
got in its verified-token cache). Needs the `cryptography` package (python3-cryptography).

  key    make a 2048-bit RSA key pair: the private key (PEM) and the public JWKS the rules read
  sign   sign tokens for tenant `acme` until each shard of the gateway's token cache gets more
         distinct tokens than it holds (so cycling through the file in order misses every time);
         one token a line
  drive  send exactly N requests with the tokens of a file, in file order from an offset, over
         C keep-alive connections (for --instructions: callgrind counts per request)
"""

import argparse
import base64
import hashlib
import http.client
import itertools
import json
import multiprocessing
import sys
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://idp.bench.example/"
KID = "idp-bench-1"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def cmd_key(a):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(a.private, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    pub = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": uint(pub.n), "e": uint(pub.e)}]}
    with open(a.jwks, "w", encoding="utf-8") as f:
        json.dump(jwks, f)


_KEY = None


def _load(path):
    global _KEY
    with open(path, "rb") as f:
        _KEY = serialization.load_pem_private_key(f.read(), password=None)


def _sign(args):
    """Tokens first..first+count-1 (distinct by `jti` and `sub`)."""
    first, count, now = args
    head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}, separators=(",", ":")).encode())
    out = []
    for i in range(first, first + count):
        claims = {
            "iss": ISSUER,
            "aud": "portcullis-bench",
            "sub": f"user-{i}",
            "tenant": "acme",
            "iat": now,
            "exp": now + 86400,
            "jti": f"bench-{now}-{i}",
        }
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _KEY.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        out.append(f"{head}.{body}.{b64(sig)}")
    return out


def shard(token, shards):
    """The gateway's shard of a token: the first byte of its SHA-256, modulo the shard count
    (rules/src/identity/mod.rs, TokenCache)."""
    return hashlib.sha256(token.encode()).digest()[0] % shards


def cmd_sign(a):
    t0 = time.time()
    need = a.per_shard + 1  # more than a shard holds: a token is evicted before it comes round again
    counts = [0] * a.shards
    tokens = []
    now = int(time.time())
    batch = 512
    with multiprocessing.get_context("fork").Pool(a.procs, initializer=_load, initargs=(a.private,)) as pool:
        first = 0
        while min(counts) < need:
            # Enough for the emptiest shard at the expected rate, in parallel batches.
            want = max(batch, (need - min(counts)) * a.shards)
            jobs = [(first + k, min(batch, want - k), now) for k in range(0, want, batch)]
            first += want
            for chunk in pool.imap(_sign, jobs):
                for t in chunk:
                    counts[shard(t, a.shards)] += 1
                    tokens.append(t)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    print(
        f"{len(tokens)} RS256 tokens in {time.time() - t0:.1f} s ({a.procs} processes); "
        f"per cache shard {min(counts)}..{max(counts)} (a shard holds {a.per_shard})"
    )


def cmd_drive(a):
    with open(a.tokens, encoding="utf-8") as f:
        tokens = [line.strip() for line in f if line.strip()]
    host, port = a.addr.rsplit(":", 1)
    seq = itertools.count()
    bad = []

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            i = next(seq)  # atomic under the GIL
            if i >= a.n:
                break
            token = tokens[(a.offset + i) % len(tokens)]
            conn.request("GET", a.path, headers={"Authorization": f"Bearer {token}", "X-Client-Id": a.client_id})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                bad.append(r.status)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bad:
        sys.exit(f"{len(bad)} of {a.n} requests answered non-200 (first: {bad[0]})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("key")
    r.add_argument("--private", required=True)
    r.add_argument("--jwks", required=True)
    r = sub.add_parser("sign")
    r.add_argument("--private", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--shards", type=int, required=True)
    r.add_argument("--per-shard", type=int, required=True)
    r.add_argument("--procs", type=int, default=2)
    r = sub.add_parser("drive")
    r.add_argument("--tokens", required=True)
    r.add_argument("--addr", required=True)
    r.add_argument("--path", required=True)
    r.add_argument("--client-id", required=True)
    r.add_argument("-n", type=int, required=True)
    r.add_argument("-c", type=int, default=10)
    r.add_argument("--offset", type=int, default=0)
    a = p.parse_args()
    {"key": cmd_key, "sign": cmd_sign, "drive": cmd_drive}[a.cmd](a)


if __name__ == "__main__":
    main()
