"""Independent check of Cachet's attestation tokens with PyJWT.

Run by crates/cachet-server/tests/python_interop.rs against a live server:
discover the keys through /.well-known/openid-configuration, verify a
token's signature, issuer and expiry with PyJWT's PyJWKClient, and check
that a token with one byte altered, or whose key was removed from the JWKS,
is refused.

Environment: CACHET_URL (issuer), CACHET_TOKEN (ES256 token, short-lived),
CACHET_ADMIN_KEY (to revoke the key), CACHET_OTHER (JSON list of
{"url", "token", "alg"} for the other algorithms).
"""

import base64
import json
import os
import sys
import time
import urllib.request

import jwt
from jwt import PyJWKClient

PASSED = []


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        print(f"{len(PASSED)} passed, 1 failed")
        sys.exit(1)
    PASSED.append(name)
    print(f"ok   {name}")


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def discover(base):
    conf = get_json(base + "/.well-known/openid-configuration")
    return conf["issuer"], PyJWKClient(conf["jwks_uri"], cache_jwk_set=False, cache_keys=False)


def verify(client, token, issuer, alg):
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=[alg], issuer=issuer,
                      options={"require": ["exp", "iat", "iss"], "verify_aud": False})


def refused(fn):
    try:
        fn()
    except jwt.PyJWTError as e:
        return type(e).__name__
    return None


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    base = os.environ["CACHET_URL"]
    token = os.environ["CACHET_TOKEN"]
    admin_key = os.environ["CACHET_ADMIN_KEY"]
    issuer, client = discover(base)
    check("issuer is the server URL", issuer == base, issuer)

    claims = verify(client, token, issuer, "ES256")
    check("ES256 token verifies (signature, issuer, expiry)", claims["iss"] == issuer)
    check("EAR profile", claims["eat_profile"] == "tag:github.com,2023:veraison/ear", claims)
    check("submodule status", claims["submods"]["sim"]["ear.status"] in ("affirming", "warning", "contraindicated"))
    check("nonce claim", len(claims.get("eat_nonce", "")) == 64, claims.get("eat_nonce"))

    check("wrong issuer refused",
          refused(lambda: jwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=["ES256"],
                                     issuer="https://evil.example")) == "InvalidIssuerError")
    check("other algorithm refused",
          refused(lambda: jwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=["HS256"])) is not None)

    header, payload, sig = token.split(".")
    raw_sig = bytearray(b64d(sig))
    for i in (0, len(raw_sig) // 2, len(raw_sig) - 1):
        s = bytearray(raw_sig)
        s[i] ^= 0x01
        bad = ".".join([header, payload, b64e(bytes(s))])
        check(f"signature byte {i} altered: refused", refused(lambda: verify(client, bad, issuer, "ES256")) is not None)
    body = b64d(payload)
    pos = body.index(b'"jti":"') + 8
    altered = body[:pos] + bytes([body[pos] ^ 0x01]) + body[pos + 1:]
    bad = ".".join([header, b64e(altered), sig])
    check("payload byte altered (jti): refused", refused(lambda: verify(client, bad, issuer, "ES256")) == "InvalidSignatureError")
    hdr = json.loads(b64d(header))
    hdr["alg"] = "none"
    bad = ".".join([b64e(json.dumps(hdr).encode()), payload, ""])
    check("alg=none refused", refused(lambda: verify(client, bad, issuer, "ES256")) is not None)

    for other in json.loads(os.environ.get("CACHET_OTHER", "[]")):
        iss, cl = discover(other["url"])
        c = verify(cl, other["token"], iss, other["alg"])
        check(f"{other['alg']} token verifies", c["iss"] == iss)
        h, p, s = other["token"].split(".")
        raw = bytearray(b64d(s))
        raw[len(raw) // 3] ^= 0x80
        check(f"{other['alg']} altered signature refused",
              refused(lambda: verify(cl, ".".join([h, p, b64e(bytes(raw))]), iss, other["alg"])) is not None)

    # Expiry: wait until the short-lived token has expired.
    wait = claims["exp"] - time.time() + 1.5
    if wait > 0:
        time.sleep(wait)
    check("expired token refused", refused(lambda: verify(client, token, issuer, "ES256")) == "ExpiredSignatureError")

    # Remove the key from the JWKS (revocation), then look it up afresh.
    kid = hdr["kid"]
    req = urllib.request.Request(f"{base}/v1/admin/signing-keys/{kid}", method="DELETE",
                                 headers={"Authorization": f"Bearer {admin_key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        check("key revoked through the admin API", r.status == 204, r.status)
    _, fresh = discover(base)
    kids = [k.key_id for k in fresh.get_signing_keys()]
    check("revoked key gone from the JWKS", kid not in kids, kids)
    check("token whose key was removed refused",
          refused(lambda: verify(fresh, token, issuer, "ES256")) == "PyJWKClientError")

    print(f"{len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
