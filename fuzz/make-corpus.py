#!/usr/bin/env python3
"""Regenerates the committed seed corpus under fuzz/corpus/<target>/ (not run by CI).

Seeds come from the project's own tests, fixtures, vectors and shipped configuration, written in
each target's input convention (see README.md). Needs python3 with `cryptography` (to sign the
RS256/ES256 seed tokens and build JWKS documents from tests/fixtures/jwt). Deterministic except
for ES256 signatures (ECDSA nonces)."""
import base64, glob, hashlib, hmac, json, os, re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def rd(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def put(target, seeds):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for old in glob.glob(os.path.join(d, "seed-*")):  # regress-* files are kept
        os.remove(old)
    seen = set()
    for s in seeds:
        if isinstance(s, str):
            s = s.encode()
        if s in seen:
            continue
        seen.add(s)
        name = "seed-" + hashlib.sha256(s).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(s)
    print(f"{target}: {len(seen)} seeds")


def rust_literals(path, pattern):
    """String literals (b"..." or "...") of a Rust file matching `pattern`, escapes decoded."""
    text = rd(path).decode()
    out = []
    for m in re.finditer(r'b?"((?:[^"\\]|\\.)*)"', text):
        raw = m.group(1)
        if not re.search(pattern, raw):
            continue
        b = bytearray()
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == "\\" and i + 1 < len(raw):
                n = raw[i + 1]
                if n == "x":
                    b.append(int(raw[i + 2:i + 4], 16)); i += 4; continue
                if n == "u":
                    j = raw.index("}", i); b += chr(int(raw[i + 3:j], 16)).encode(); i = j + 1; continue
                if n == "\n":  # line continuation
                    i += 2
                    while i < len(raw) and raw[i] in " \t\n": i += 1
                    continue
                b += {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}.get(n, n.encode())
                i += 2
            else:
                b += c.encode(); i += 1
        out.append(bytes(b))
    return out


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ------------------------------------------------------------------ canon
paths = (rust_literals("rules/src/canon.rs", r"^/") + rust_literals("rules/src/canon/tests.rs", r"^/")
         + rust_literals("tests/tests/e2e/canon_wire.rs", r"^/"))
put("canon", paths)

# ------------------------------------------------------------------ query
put("query", [
    "a\na=1&b=2&a=3", "a_b\na%5Fb=x+y%21", "a\na&a=", "a\n&&b=1&", "k\nk=%C5%9F", "a\na=%zz", "a\na=%4",
    "a\n%zz=1&a=2", "a\nb=%zz&a=2", "tenant_id\ntenant_id=acme&tenant_id=globex",
    "tenant_id\ntenant%5Fid=acme", "tenant_id\ntenant.id=acme&tenant id=x", "api_key\napi_key=key-acme-1",
    "api_key\napi%5Fkey=%6Bey", "x\nx=%E2%82%AC+%2B%25", "x\nx%", "x\n=x&x", "q\nq=1;q=2",
    "tenant_id\ntenant_id[]=a&tenant_id[x]=b",
    # Name folding (query::fold_name, lookup, fold_names) and the `_method` check.
    "tenant_id\nTENANT.ID=73&tenant_id=12", "tenant_id\ntenant_id%00x=1&tenant+id=2&%20%20tenant_id=3",
    "tenant_id\ntenant[id=1&tenant_id[0]=2&tenant%5Bid%5D=3", "tenant_id\ntenant_%C4%B1d=1&ten%zz=2",
    "s\n%C5%BF=1&S=2", "k\n%E2%84%AA=1&K=2", "ſKı\nſKı=1&SKI=2",
    "İd\n%C4%B0d=1&id=2", "a\na=1;b=2&c;a=3&x=1;a", "_method\n_method=DELETE",
    "x\na=1;_METHOD=put", "x\n_method%00x=DELETE&%5Fmethod[]=1", "x\n.method=DELETE&+_method=GET",
    "debug\nDEBUG=1&de.bug=2&debug%00x=3&x=%41+b&flag", "x\n%zz=%4&=&&%ff%FE=%",
])

# ------------------------------------------------------------------ headers
put("headers", [
    "Example.COM:8080", "example.com.", "[::1]:80", "evil.com/x", "a@b", "host:port", "", "a:1:2",
    "[::1]x", "api.test", "API.Test.:443", "0192f1e2-aaaa-bbbb", "req:abc.def_123", "bad id", "12",
    "0", "007", "123456789012345", "1234567890123456", "+1", " 1", "1,2",
    "6.6.6.6, 198.51.100.7, 10.1.1.1", "6.6.6.6\n198.51.100.7", "10.2.2.2", "198.51.100.7:443",
    "[2001:db8::1]:8080", "6.6.6.6, not-an-ip, 10.3.3.3", "6.6.6.6,", "::ffff:1.2.3.4, 10.0.0.9",
    "2001:db8::5, 2001:DB8::7", "[2001:db8::1], 192.168.1.1",
    # Header-name spellings (overrides::same_name, is_alternate_spelling, …) and method-override
    # values; the binary ones respell an always-stripped header (first byte: which one).
    "X_Forwarded_For\nx-forwarded-for\nX.Forwarded.For", "x-tenant-id\nX_Tenant_Id\nx~tenant|id",
    "X-HTTP-Method-Override\nx_http_method_override\nx-http-method", "X_Original_URL\nx-original-url\nforwarded",
    "x tenant\nx-tenant\nx-tenant-i", "x`tenant\nX-Tenant\nx-tenant", "DELETE\n delete \nDELETE",
    "PUT\nDELETE", "patch\nCONNECT", "\u0130-tenant\n--tenant\n-tenant",
] + [bytes([i]) + b"\x01_\x01\x00.\x01~\x01\x00_\x01\x00\x01" for i in (0, 7, 24, 33, 41, 42)])

# ------------------------------------------------------------------ framing
heads = (rust_literals("rules/src/framing.rs", r"HTTP/1") + rust_literals("rules/src/framing/tests.rs", r"HTTP/1")
         + rust_literals("tests/tests/e2e/framing.rs", r"HTTP/1"))
heads = [h.replace(b"{cl}", cl) for h in heads for cl in ([b"3", b"+3", b"3 ", b"0x3", b"3,3", b"99999999999999999"] if b"{cl}" in h else [b""])]
heads = [h.replace(b"{te}", te) for h in heads for te in ([b"chunked", b"gzip, chunked", b"Chunked", b"chunked, identity", b" chunked"] if b"{te}" in h else [b""])]
heads = [h for h in heads if b"{" not in h]
heads += [b"GET / HTTP/1.1\nHost: a\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\n", b"GET / HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
          b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: 0192f1e2-aaaa-bbbb\r\n\r\n"]
put("framing", heads)

# ------------------------------------------------------------------ jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

SECRET = b"0123456789abcdef0123456789abcdef-hs256-test-secret"
NOW = 1_800_000_000
rsa_key = serialization.load_pem_private_key(rd("tests/fixtures/jwt/rsa1.key.pem"), None)
rsa2_key = serialization.load_pem_private_key(rd("tests/fixtures/jwt/rsa2.key.pem"), None)
ec_key = serialization.load_pem_private_key(rd("tests/fixtures/jwt/ec1.key.pem"), None)


def token(header, claims, alg=None):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    msg = f"{h}.{c}".encode()
    alg = alg or header.get("alg")
    if alg == "HS256":
        sig = hmac.new(SECRET, msg, hashlib.sha256).digest()
    elif alg == "RS256":
        sig = rsa_key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = utils.decode_dss_signature(ec_key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = b""
    return f"{h}.{c}.{b64u(sig)}"


good = {"iss": "https://hs.test/", "sub": "u1", "aud": "portcullis", "exp": NOW + 600, "tenant_id": "acme", "roles": ["admin", "user"], "sid": "s-1", "email": "a@acme.example"}
jwt_seeds = []
for hdr, cl, alg in [
    ({"alg": "HS256", "typ": "JWT", "kid": "h1"}, good, None),
    ({"alg": "HS256"}, dict(good, aud=["x", "portcullis"]), None),
    ({"alg": "HS256"}, dict(good, exp=NOW - 100), None),
    ({"alg": "HS256"}, dict(good, exp=NOW - 10.5), None),
    ({"alg": "HS256"}, dict(good, nbf=NOW + 100), None),
    ({"alg": "HS256"}, dict(good, aud="other"), None),
    ({"alg": "HS256", "kid": "nope"}, good, None),
    ({"alg": "none"}, good, None),
    ({"alg": "NoNe"}, good, "HS256"),
    ({"alg": "HS256", "crit": ["x"]}, good, None),
    ({"alg": "RS256", "kid": "r1"}, dict(good, iss="https://rs.test/"), None),
    ({"alg": "HS256", "kid": "r1"}, dict(good, iss="https://rs.test/"), None),
    ({"alg": "RS256"}, dict(good, iss="https://rs.test/", exp=None), None),
    ({"alg": "ES256"}, dict(good, iss="https://es.test/"), None),
    ({"alg": "ES256"}, dict(good, iss="https://es.test/", tenant_id="a\u0000b"), None),
]:
    jwt_seeds.append(token(hdr, {k: v for k, v in cl.items() if v is not None}, alg))
# Signed mode: header line, claims (the target signs them with the HS256 secret).
for hdr, cl in [
    ({"alg": "HS256", "kid": "h1"}, good), ({"alg": "HS256"}, dict(good, exp=NOW + 1e300)),
    ({"alg": "HS256"}, dict(good, exp=-1)), ({"alg": "HS256"}, dict(good, nbf=NOW + 29.9)),
    ({"alg": "HS256", "typ": 1}, good), ({"alg": "HS256"}, dict(good, roles="a,b")),
    ({"alg": "HS256"}, dict(good, sub="")), ({"alg": "HS256"}, dict(good, exp=18446744073709551615)),
]:
    jwt_seeds.append(json.dumps(hdr) + "\n" + json.dumps(cl))
jwt_seeds.append('{"alg":"HS256","alg":"none"}\n' + json.dumps(good))
jwt_seeds.append('{"alg":"HS256"}\n{"iss":"https://hs.test/","iss":"x","exp":1900000000,"aud":"portcullis","sub":"u"}')
jwt_seeds += ["Bearer abc", "a.b.c", "..", "e30.e30.", "x" * 100]
put("jwt", jwt_seeds)

# ------------------------------------------------------------------ jwks
def jwk_rsa(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64u(n.e.to_bytes(3, "big"))}


def jwk_ec(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": kid, "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}


r1, r2, e1 = jwk_rsa(rsa_key, "r1"), jwk_rsa(rsa2_key, "r2"), jwk_ec(ec_key, "e1")
oct1 = {"kty": "oct", "kid": "h1", "k": b64u(SECRET)}
docs = [
    ("RS256", {"keys": [r1, r2]}), ("RS256", {"keys": [r1, e1, oct1]}), ("RS256", {"keys": [dict(r1, use="enc")]}),
    ("RS256", {"keys": [dict(r1, d="AQAB")]}), ("RS256", {"keys": [dict(r1, n="AQAB")]}), ("RS256", {"keys": [dict(r1, e="AAAAAAEAAQ")]}),
    ("RS256", {"keys": [dict(r1, kid=5)]}), ("RS256", {"keys": [dict(r1, key_ops=["sign"])]}), ("RS256", {"keys": []}),
    ("ES256", {"keys": [e1]}), ("ES256", {"keys": [dict(e1, crv="P-384")]}), ("ES256", {"keys": [dict(e1, x=e1["x"][:-2])]}),
    ("HS256", {"keys": [oct1]}), ("HS256", {"keys": [dict(oct1, k="c2hvcnQ")]}), ("HS256", {"keys": [dict(oct1, alg="RS256")]}),
]
seeds = [f"{alg}\n{json.dumps(doc)}" for alg, doc in docs]
seeds += ["RS256\n[]", "RS256\n{\"keys\":{}}", "ES256\nnull"]
for pem in ["rsa1.pub.pem", "rsa2.pub.pem", "ec1.pub.pem", "rsa1024.pub.pem", "rsa1.key.pem"]:
    text = rd(f"tests/fixtures/jwt/{pem}").decode()
    seeds += [f"PEM RS256\n{text}", f"PEM ES256\n{text}"]
    body = "".join(l for l in text.splitlines() if not l.startswith("-----"))
    seeds.append(b"DER\n" + base64.b64decode(body))
pkcs1 = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
seeds += [f"PEM RS256\n{pkcs1}", "PEM RS256\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
          "PEM RS256\n-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PUBLIC KEY-----\n"]
put("jwks", seeds)

# ------------------------------------------------------------------ webhook
vec = json.loads(rd("tests/fixtures/webhooks.json") if os.path.exists(os.path.join(ROOT, "tests/fixtures/webhooks.json")) else rd("/work/shared/vectors/webhooks.json"))
seeds = []
g = vec["github_x_hub_signature_256"]
for case in g["valid"] + g["invalid"]:
    body = case.get("body", g["body"])
    seeds.append(f"github\nX-Hub-Signature-256: {case['header']}\nX-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\n\n{body}")
s = vec["stripe_signature"]
for case in s["valid"] + s["invalid"]:
    body = case.get("body", s["body"])
    seeds.append(f"stripe {case.get('now', s['now'])}\nStripe-Signature: {case['header']}\n\n{body}")
w = vec["standard_webhooks"]
for case in w["valid"] + w["invalid"]:
    c = dict(w, **case)
    if c.get("secret") != w["secret"]:
        continue  # the fixture verifier holds the first vector's secret only
    seeds.append(f"standard {c['now']}\nwebhook-id: {c['webhook-id']}\nwebhook-timestamp: {c['webhook-timestamp']}\nwebhook-signature: {c['webhook-signature']}\n\n{c['body']}")
seeds += ["generic-hex 1700000000\nx-signature: sha256=00\nx-timestamp: 1700000000\n\n{}", "generic-b64\nx-signature: AAAA\n\nbody",
          "stripe\nStripe-Signature: t=1,t=2,v1=00\n\n", "stripe\nStripe-Signature: v1=00,novalue\n\n", "standard\nwebhook-id: a\nwebhook-id: b\n\n",
          "github\nX-Hub-Signature-256: sha256=" + "0" * 64 + "\nX-Hub-Signature-256: sha256=" + "0" * 64 + "\n\n"]
put("webhook", seeds)

# ------------------------------------------------------------------ pii_stream
seeds = []
for i, path in enumerate(sorted(glob.glob(os.path.join(ROOT, "rules/testdata/pii/*.txt")))):
    lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l.strip() and not l.startswith("#")]
    for j, line in enumerate(lines[:6]):
        line = re.sub(r"^excluded=\d+\t", "", line)
        body = re.sub(r"«[a-z0-9_-]+:(.*?)»", r"\1", line).encode()
        cuts = sorted({(7 * j + 3 * i) % max(len(body), 1), len(body) // 2})
        seeds.append(f"{(i + j) % 7} {' '.join(map(str, cuts))}\n".encode() + body)
seeds.append(b"0\n" + ("lorem ipsum dolor sit amet, " * 40 + "4111 1111 1111 1111").encode())
seeds.append(b"5 150 299 301\n" + b"10000000146 " * 40)
seeds.append(b"6 100 199 200 201\n" + b"12345678950," * 30)
put("pii_stream", seeds)

# ------------------------------------------------------------------ yaml
seeds = [rd(p) for p in sorted(glob.glob(os.path.join(ROOT, "config/rules/*.yaml")) + glob.glob(os.path.join(ROOT, "config/demo-rules/*.yaml")))]
seeds.append(rd("rules/testdata/pii/policy.yaml"))
for doc in ["docs/rules.md", "docs/configuration.md"]:
    for block in re.findall(r"```yaml\n(.*?)```", rd(doc).decode(), re.S):
        seeds.append(block.encode())
seeds += [b"version: 1\nfirewall:\n  - &a {id: x}\n  - *a\n", b"version: 1\nversion: 2\n", b"version: 1\n" + b"  " * 500 + b"x: 1\n",
          b"version: 1\nfirewall: [" * 3 + b"]" * 3, b"--- 1\n--- 2\n", b"version: !!binary AAAA\n", b"{version: 1, pii: [{id: r, detectors: {tckn: redact}}]}"]
put("yaml", seeds)

# ------------------------------------------------------------------ ssrf
seeds = []
for line in rd("rules/testdata/ssrf.txt").decode().splitlines():
    if line.strip() and not line.startswith("#") and not line.startswith("@") and " " in line:
        seeds.append(line.split(" ", 1)[1].replace("{TAB}", "\t").replace("{SP}", " "))
seeds += ["", "http://[fe80::1%25", "http://" + "1." * 200, "%" * 50, "http://xn--/", "http://xn--a.xn--b/", "\\\\[::]"]
put("ssrf", seeds)
