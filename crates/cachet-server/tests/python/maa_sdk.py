"""The unmodified Azure Attestation SDK for Python against `cachet serve`.

Run by crates/cachet-server/tests/maa.rs against a live HTTPS server on
loopback (the SDK's bearer-token policy refuses plain http:// endpoints).
The SDK checks each token itself: signature with the `x5c` of the key at
/certs (RS256), expiry and not-before, issuer.

Environment: MAA_URL (the instance URL, also the expected issuer), MAA_CA
(PEM of the CA that signed the server's TLS certificate), MAA_QUOTE (path of
an SGX quote). Prints one JSON object on stdout: what the SDK returned.
"""

import json
import os
import struct
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.security.attestation import AttestationClient


class StaticCredential:
    """The SDK insists on a credential; Cachet's MAA routes need none."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("not-an-azure-ad-token", int(time.time()) + 3600)


def result_dict(result, token):
    return {
        "issuer": result.issuer,
        "version": result.version,
        "attestation_type": result.verifier_type,
        "mr_enclave": result.mr_enclave,
        "mr_signer": result.mr_signer,
        "product_id": result.product_id,
        "svn": result.svn,
        "is_debuggable": result.is_debuggable,
        "policy_hash": result.policy_hash.hex() if result.policy_hash else None,
        "enclave_held_data": result.enclave_held_data.hex() if result.enclave_held_data else None,
        "nonce": result.nonce,
        "runtime_claims": result.runtime_claims,
        "alg": token.algorithm,
        "kid": token.key_id,
        "token": token.to_jwt_string(),
    }


def main():
    url = os.environ["MAA_URL"]
    ca = os.environ["MAA_CA"]
    quote = open(os.environ["MAA_QUOTE"], "rb").read()
    out = {}
    client = AttestationClient(
        url,
        StaticCredential(),
        connection_verify=ca,
        validate_token=True,
        validate_issuer=True,
        issuer=url,
        validation_slack=5,
    )
    meta = client.get_open_id_metadata()
    out["metadata"] = meta
    signers = client.get_signing_certificates()
    out["signers"] = [{"kid": s.key_id, "certificates": len(s.certificates)} for s in signers]

    result, token = client.attest_sgx_enclave(quote)
    out["sgx"] = result_dict(result, token)

    # An Open Enclave remote report: oe_report_header_t (version 1, type
    # SGX remote = 2, size) and the same quote.
    report = struct.pack("<IIQ", 1, 2, len(quote)) + quote
    result, token = client.attest_open_enclave(report)
    out["open_enclave"] = result_dict(result, token)

    # Runtime data the quote was not made with: refused (MAA's binding).
    try:
        client.attest_sgx_enclave(quote, runtime_data=b"not what the enclave bound")
        out["unbound"] = {"refused": False}
    except HttpResponseError as e:
        out["unbound"] = {"refused": True, "status": e.status_code, "code": e.error.code if e.error else None}

    # A draft policy (Cachet Rego) yields an unsecured token the SDK accepts as such.
    draft = 'package cachet\nimport rego.v1\nstatus := "affirming"\n'
    result, token = client.attest_sgx_enclave(quote, draft_policy=draft)
    out["draft"] = {"alg": token.algorithm, "mr_enclave": result.mr_enclave}

    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints this
        print(f"SDK call failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
