#!/usr/bin/env python3
"""Verify a Cachet attestation token (an EAR JWT) as a relying party.

    python3 -m pip install 'PyJWT[crypto]>=2.8'
    python3 verify_token.py --issuer https://cachet.example.com TOKEN_FILE   # or '-' for stdin

What it checks, in order, and refuses on the first failure (exit 1):

1. the keys: the issuer's OpenID discovery document
   (ISSUER/.well-known/openid-configuration) names this very issuer and its
   `jwks_uri`; the token's `kid` is one of the published keys;
2. the signature, with an algorithm pinned here (ES256, ES384 or PS256, the
   ones Cachet signs with; never `none` or HMAC);
3. `iss` equals the issuer you configured, `exp` is in the future, `iat`
   and `nbf` are not (a few seconds of clock skew allowed);
4. it is an EAR (`eat_profile` = tag:github.com,2023:veraison/ear) with at
   least one submodule, and EVERY submodule's `ear.status` is `affirming`
   (`warning` is accepted only with --accept-warning; `contraindicated` and
   `none` never are);
5. with --nonce HEX: `eat_nonce` is that nonce and `cachet.freshness` is
   `nonce` (the evidence carried it, consumed once by the service);
   with --runtime-data-b64 B64URL: `cachet.runtime_data` is exactly that.

It prints `ACCEPTED` and a one-line summary per submodule (exit 0), or
`REFUSED: <why>` (exit 1). Exit 2 for usage or network errors.
"""

import argparse
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKClient

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
ALGORITHMS = ["ES256", "ES384", "PS256"]


class Refused(Exception):
    pass


def discover(issuer):
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=30) as r:
        conf = json.load(r)
    if conf.get("issuer") != issuer:
        raise Refused(f"discovery document names issuer {conf.get('issuer')!r}, expected {issuer!r}")
    return conf["jwks_uri"]


def verify(token, issuer, accept_warning=False, nonce=None, runtime_data=None, leeway=5):
    jwks = PyJWKClient(discover(issuer))
    try:
        key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss"], "verify_aud": False},
        )
    except jwt.PyJWTError as e:
        raise Refused(f"{type(e).__name__}: {e}") from e

    if claims.get("eat_profile") != EAR_PROFILE:
        raise Refused(f"not an EAR token (eat_profile {claims.get('eat_profile')!r})")
    submods = claims.get("submods")
    if not isinstance(submods, dict) or not submods:
        raise Refused("no submodule (no appraisal) in the token")
    allowed = {"affirming", "warning"} if accept_warning else {"affirming"}
    for name, sub in submods.items():
        status = sub.get("ear.status")
        if status not in allowed:
            reasons = [r.get("rule") for r in sub.get("cachet.reasons", []) if r.get("outcome") != "affirming"]
            raise Refused(f"submodule {name}: ear.status is {status!r}, not {' or '.join(sorted(allowed))}"
                          + (f" (rules: {', '.join(reasons)})" if reasons else ""))
    if nonce is not None:
        if claims.get("eat_nonce") != nonce.lower():
            raise Refused(f"eat_nonce {claims.get('eat_nonce')!r} is not the expected nonce")
        if claims.get("cachet.freshness") != "nonce":
            raise Refused(f"cachet.freshness is {claims.get('cachet.freshness')!r}, not 'nonce'")
    if runtime_data is not None and claims.get("cachet.runtime_data") != runtime_data:
        raise Refused("cachet.runtime_data is not the expected runtime data")
    return claims


def main():
    p = argparse.ArgumentParser(description="Verify a Cachet EAR token.")
    p.add_argument("--issuer", required=True, help="the Cachet service URL (the tokens' iss), e.g. https://cachet.example.com")
    p.add_argument("--accept-warning", action="store_true", help="also accept ear.status 'warning' (e.g. an out-of-date TCB)")
    p.add_argument("--nonce", help="require this eat_nonce (hex) and cachet.freshness 'nonce'")
    p.add_argument("--runtime-data-b64", help="require this cachet.runtime_data (base64url, no padding)")
    p.add_argument("token", help="file holding the token, or - for stdin")
    a = p.parse_args()
    token = (sys.stdin.read() if a.token == "-" else open(a.token, encoding="ascii").read()).strip()
    try:
        claims = verify(token, a.issuer, a.accept_warning, a.nonce, a.runtime_data_b64)
    except Refused as e:
        print(f"REFUSED: {e}")
        return 1
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("ACCEPTED")
    for name, sub in claims["submods"].items():
        print(f"  {name}: {sub['ear.status']}  vector={json.dumps(sub.get('ear.trustworthiness-vector', {}), sort_keys=True)}")
    print(f"  iss={claims['iss']} exp={claims['exp']} freshness={claims.get('cachet.freshness')} "
          f"endorsements={claims.get('cachet.endorsements')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
