#!/usr/bin/env python3
"""Generate TEST OCSP fixtures for the NVIDIA GPU revocation checks.

Everything here is made up: a TEST root CA, a TEST intermediate, a TEST
"GPU device" leaf, a delegated OCSP responder, and OCSP responses about
them. None of it is NVIDIA's. Run from the repository root:

    python3 crates/cachet-verify/tests/tools/make_ocsp.py testdata/ocsp

Needs Python's `cryptography` package (pip install cryptography).
ECDSA signatures are randomised, so each run writes different bytes; the
committed fixtures are the ones the tests read.
"""
import datetime as dt
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.timezone.utc
# Tests verify at T0 + 1 day.
T0 = dt.datetime(2025, 6, 1, tzinfo=UTC)
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = dt.datetime(2035, 1, 1, tzinfo=UTC)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cachet TEST (not NVIDIA)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject, key, issuer_name, issuer_key, serial, ca, eku=None):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(issuer_key, hashes.SHA384())


def response(subject, issuer, signer_cert, signer_key, status, this_update, next_update,
             algo=hashes.SHA384(), include=None, revoked_reason=None):
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=subject, issuer=issuer, algorithm=algo, cert_status=status,
        this_update=this_update, next_update=next_update,
        revocation_time=(T0 - dt.timedelta(days=3)) if status == ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=revoked_reason)
    b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    if include:
        b = b.certificates(include)
    return b.sign(signer_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def main(out):
    os.makedirs(out, exist_ok=True)
    k = {n: ec.generate_private_key(ec.SECP384R1()) for n in
         ["root", "ica", "leaf", "responder", "noeku", "rogue"]}
    root = cert("TEST Device Identity CA", k["root"], name("TEST Device Identity CA"), k["root"], 1, True)
    ica = cert("TEST Provisioner ICA", k["ica"], root.subject, k["root"], 0x1CA, True)
    leaf = cert("TEST GPU device leaf", k["leaf"], ica.subject, k["ica"], 0x00B5E2F7A1C30D99, False)
    responder = cert("TEST ICA OCSP responder", k["responder"], ica.subject, k["ica"], 0x5EED, False,
                     [ExtendedKeyUsageOID.OCSP_SIGNING])
    noeku = cert("TEST ICA responder without OCSPSigning", k["noeku"], ica.subject, k["ica"], 0x5EEE, False,
                 [ExtendedKeyUsageOID.CLIENT_AUTH])
    # An unrelated self-issued certificate that claims the ICA's name.
    rogue = cert("TEST Provisioner ICA", k["rogue"], ica.subject, k["rogue"], 0xBAD, True)

    good, revoked = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED
    fresh = (T0, T0 + dt.timedelta(days=7))
    stale = (T0 - dt.timedelta(days=30), T0 - dt.timedelta(days=23))
    files = {
        # Signed by the issuing CA itself.
        "leaf_good.der": response(leaf, ica, ica, k["ica"], good, *fresh),
        "ica_good_sha1.der": response(ica, root, root, k["root"], good, *fresh, algo=hashes.SHA1()),
        # Signed by a delegated responder (id-kp-OCSPSigning, issued by the ICA).
        "leaf_good_delegated.der": response(leaf, ica, responder, k["responder"], good, *fresh, include=[responder]),
        "leaf_revoked.der": response(leaf, ica, ica, k["ica"], revoked, *fresh,
                                     revoked_reason=x509.ReasonFlags.key_compromise),
        "leaf_expired.der": response(leaf, ica, ica, k["ica"], good, *stale),
        # Signed by an unrelated key claiming to be the ICA.
        "leaf_wrong_signer.der": response(leaf, ica, rogue, k["rogue"], good, *fresh, include=[rogue]),
        # Delegated responder issued by the ICA but without id-kp-OCSPSigning.
        "leaf_no_eku_responder.der": response(leaf, ica, noeku, k["noeku"], good, *fresh, include=[noeku]),
        "try_later.der": ocsp.OCSPResponseBuilder.build_unsuccessful(
            ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER),
    }
    for n, c in [("root", root), ("ica", ica), ("leaf", leaf), ("responder", responder)]:
        files[f"{n}.pem"] = c.public_bytes(serialization.Encoding.PEM)
    for n, data in files.items():
        with open(os.path.join(out, n), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "testdata/ocsp")
