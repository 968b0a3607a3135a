//! Regression tests for mutation findings in certificate parsing: bytes of a
//! certificate or CRL outside its signed part (outer tags, lengths, the
//! outer signatureAlgorithm, the BIT STRING's unused-bits octet) were not
//! checked, so a genuine certificate could be re-encoded into other byte
//! strings that still verified (a new fingerprint for the same signed
//! certificate). Found by `cachet selftest` (seed 20261123, mutation
//! #188572: tpm-gcp-tdx, the AK certificate's signature BIT STRING tagged
//! `[APPLICATION 3]`; seed 99, #1672: a PCK certificate whose outer
//! algorithm OID was tagged as an OCTET STRING; #27950: AMD ASK PSS
//! parameters).

mod common;

use cachet_verify::x509;

/// A real certificate of each signature kind: ECDSA P-256 (Intel PCK),
/// RSA-PSS (AMD ASK), ECDSA P-384 (NVIDIA device chain), and a CRL.
fn samples() -> Vec<(&'static str, Vec<u8>, bool)> {
    let read = |p: &str| std::fs::read(common::vectors_dir().join(p)).expect("vector file");
    let quote = read("sgx/dcap-qvl/sgx_quote");
    let pck = x509::certs_from_pem(&quote).into_iter().next().expect("PCK certificate in the quote");
    let ask = x509::certs_from_pem(&read("roots/amd_milan_ask_ark_asvk.pem")).into_iter().next().expect("ASK");
    let nv = x509::certs_from_pem(&read("nvidia/nvtrust-2023-full/gpuAkCertChain.txt")).into_iter().next().expect("GPU leaf");
    let coll: serde_json::Value = serde_json::from_slice(&read("sgx/dcap-qvl/sgx_quote_collateral.json")).expect("json");
    let crl = hex::decode(coll["pck_crl"].as_str().expect("pck_crl")).expect("hex");
    vec![("PCK", pck, false), ("ASK", ask, false), ("GPU leaf", nv, false), ("PCK CRL", crl, true)]
}

fn parses(der: &[u8], crl: bool) -> bool {
    if crl {
        x509::parse_crl(der).is_ok()
    } else {
        x509::parse_cert(der).is_ok()
    }
}

/// Offsets of the outer parts: (tbs start, alg start, bit string start).
fn parts(der: &[u8]) -> (usize, usize, usize) {
    let hdr = |at: usize| -> (usize, usize) {
        let l0 = der[at + 1];
        if l0 < 0x80 {
            (2, l0 as usize)
        } else {
            let n = (l0 & 0x7f) as usize;
            (2 + n, der[at + 2..at + 2 + n].iter().fold(0, |a, b| (a << 8) | *b as usize))
        }
    };
    let (h, _) = hdr(0);
    let (th, tl) = hdr(h);
    let alg = h + th + tl;
    let (ah, al) = hdr(alg);
    (h, alg, alg + ah + al)
}

#[test]
fn genuine_certificates_and_crls_parse() {
    for (name, der, crl) in samples() {
        assert!(parses(&der, crl), "{name}");
        assert!(x509::check_signed_envelope(&der).is_ok(), "{name}");
    }
}

#[test]
fn every_byte_outside_the_signed_part_is_fixed() {
    // Flip every bit of every byte that is not inside tbs or the signature
    // value: each must make the certificate (or CRL) unparsable.
    for (name, der, crl) in samples() {
        let (tbs, alg, bits) = parts(&der);
        let outer: Vec<usize> = (0..tbs).chain(alg..bits + 3.min(der.len() - bits)).collect();
        for i in outer {
            for bit in 0..8 {
                let mut m = der.clone();
                m[i] ^= 1 << bit;
                assert!(!parses(&m, crl), "{name}: bit {bit} of byte {i:#x} changed and it still parses");
            }
        }
    }
}

#[test]
fn the_reported_re_encodings_are_refused() {
    for (name, der, crl) in samples() {
        let (_, alg, bits) = parts(&der);
        // BIT STRING tagged [APPLICATION 3].
        let mut m = der.clone();
        m[bits] = 0x43;
        assert!(!parses(&m, crl), "{name}: application-class BIT STRING");
        // Outer algorithm OID tagged as OCTET STRING.
        let mut m = der.clone();
        assert_eq!(m[alg + 2], 0x06, "{name}: OID follows the algorithm SEQUENCE header");
        m[alg + 2] = 0x04;
        assert!(!parses(&m, crl), "{name}: OCTET STRING for the algorithm OID");
        // Unused bits in the signature.
        let mut m = der.clone();
        let l0 = m[bits + 1];
        let unused = bits + if l0 < 0x80 { 2 } else { 2 + (l0 & 0x7f) as usize };
        m[unused] = 1;
        assert!(!parses(&m, crl), "{name}: unused bits");
        // A non-minimal outer length (0x82 LL LL -> 0x83 00 LL LL).
        if der[1] == 0x82 {
            let mut m = vec![0x30, 0x83, 0x00];
            m.extend_from_slice(&der[2..]);
            assert!(!parses(&m, crl), "{name}: non-minimal length");
        }
    }
}

#[test]
fn the_tpm_finding_is_refused_end_to_end() {
    // tpm-gcp-tdx with bit 2 of byte 0xf6a of the evidence JSON flipped:
    // 'A' -> 'E' in the AK certificate's PEM, i.e. its BIT STRING tag.
    let c = common::cases(&["tpm"]).into_iter().find(|c| c.id == "tpm-gcp-tdx").expect("case");
    let mut ev = c.evidence_bytes();
    assert_eq!(ev[0xf6a], b'A');
    ev[0xf6a] ^= 1 << 2;
    let v = common::run(c.tee(), &ev, &c.endorsement_files(), &cachet_verify::TrustAnchors::pinned(), c.verify_at());
    assert_eq!(common::failed_check(&v), "AK certificate chain");
}
