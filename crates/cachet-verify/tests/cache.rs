//! The endorsement cache changes speed, never verdicts: for every case of
//! `cases.json`, a warm verification (endorsements already checked) gives
//! the same result and the same checks as a cold one, inside and outside
//! the validity window, and a forged per-evidence signature is refused even
//! when everything else is cached.

mod common;

use std::sync::Arc;

use cachet_verify::cache::{verify_cached, VerifyCache};
use cachet_verify::{Tee, TrustAnchors, Verification, VerifyRequest};

fn verdict(v: &Verification) -> (Result<serde_json::Value, String>, Vec<(String, bool)>) {
    let r = v.result.clone().map_err(|e| e.check);
    (r, v.checks.iter().map(|c| (c.name.clone(), c.ok)).collect())
}

fn run(c: &common::Case, evidence: &[u8], at: i64, cache: Option<&Arc<VerifyCache>>) -> Verification {
    let ends = c.endorsement_files();
    let anchors = TrustAnchors::pinned();
    let req = VerifyRequest { evidence, endorsements: &ends, anchors: &anchors, at, expected_nonce: None };
    match cache {
        Some(k) => verify_cached(c.tee(), &req, k),
        None => cachet_verify::verify(c.tee(), &req),
    }
}

const ALL: [&str; 9] = ["sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "nitro", "nitro-tpm", "tpm", "nvgpu"];

#[test]
fn warm_verification_equals_cold_for_every_case() {
    let cache = Arc::new(VerifyCache::default());
    for c in common::cases(&ALL) {
        let ev = c.evidence_bytes();
        let mut instants = vec![c.verify_at()];
        if let Some(t) = c.valid_to.as_deref() {
            instants.push(common::ts(t) + 3600);
        }
        for at in instants {
            let cold = verdict(&run(&c, &ev, at, None));
            let first = verdict(&run(&c, &ev, at, Some(&cache)));
            let warm = verdict(&run(&c, &ev, at, Some(&cache)));
            assert_eq!(first, cold, "{}: first cached run differs from cold", c.id);
            assert_eq!(warm, cold, "{}: warm run differs from cold at {at}", c.id);
        }
    }
    let s = cache.stats();
    println!("cache after all cases: {s:?}");
    assert!(s.hits > 0 && s.entries > 0, "the cache was used");
}

#[test]
fn warm_cache_still_checks_the_per_evidence_signature() {
    // For each family wired to the cache: warm it with the genuine case,
    // then flip one bit of the evidence's signature. The endorsements are
    // cache hits; the evidence signature must still be checked and fail.
    for (tee, sig_range) in [("snp", 0x2A0..0x2A0 + 48), ("nitro", usize::MAX..usize::MAX)] {
        for c in common::cases(&[tee]).into_iter().filter(|c| c.expect == "accept") {
            let cache = Arc::new(VerifyCache::default());
            let ev = c.evidence_bytes();
            assert!(run(&c, &ev, c.verify_at(), Some(&cache)).verified(), "{}", c.id);
            let hits = cache.stats().hits;
            let mut forged = ev.clone();
            let at = if sig_range.start == usize::MAX { forged.len() - 10 } else { sig_range.start + 5 };
            forged[at] ^= 0x01;
            let v = run(&c, &forged, c.verify_at(), Some(&cache));
            assert!(!v.verified(), "{}: forged signature accepted with a warm cache", c.id);
            let failed = common::failed_check(&v);
            assert!(failed.contains("signature"), "{}: refused by {failed}, expected the evidence signature", c.id);
            if tee == "snp" {
                // SNP checks the chain before the report signature (Nitro
                // checks the COSE signature first and stops there).
                assert!(cache.stats().hits > hits, "{}: the chain came from the cache", c.id);
            }
        }
    }
}

/// Offset of the attestation-key signature in a DCAP quote: after the
/// header (48), the body (v3 SGX 384, v4 TD 584, v5 6 + its declared size)
/// and the 4-byte signature data length.
fn dcap_quote_signature_offset(q: &[u8]) -> usize {
    match u16::from_le_bytes([q[0], q[1]]) {
        3 => 48 + 384 + 4,
        4 => 48 + 584 + 4,
        5 => 48 + 6 + u32::from_le_bytes([q[50], q[51], q[52], q[53]]) as usize + 4,
        v => panic!("quote version {v}"),
    }
}

#[test]
fn warm_dcap_cache_still_checks_the_quote_signature() {
    // The PCK chain, CRLs and TCB Info / QE Identity signatures come from
    // the cache; the quote's own signature is checked on every call.
    for c in common::cases(&["sgx", "tdx"]).into_iter().filter(|c| c.expect == "accept") {
        let cache = Arc::new(VerifyCache::default());
        let ev = c.evidence_bytes();
        assert!(run(&c, &ev, c.verify_at(), Some(&cache)).verified(), "{}", c.id);
        let before = cache.stats();
        assert!(run(&c, &ev, c.verify_at(), Some(&cache)).verified(), "{}: warm", c.id);
        let warm = cache.stats();
        // PCK chain, TCB Info and QE Identity signing chains, two CRLs, two signatures.
        assert!(warm.hits >= before.hits + 5, "{}: warm run hit the cache {} times", c.id, warm.hits - before.hits);
        let mut forged = ev.clone();
        forged[dcap_quote_signature_offset(&ev) + 5] ^= 0x01;
        let v = run(&c, &forged, c.verify_at(), Some(&cache));
        assert_eq!(common::failed_check(&v), "Quote signature", "{}: forged quote signature with a warm cache", c.id);
        assert!(cache.stats().hits > warm.hits, "{}: the chain came from the cache", c.id);
    }
}

#[test]
fn cached_chain_expires_on_time() {
    // A chain cached at a valid instant is refused, by the same check as
    // without the cache, one second after its window.
    let cache = Arc::new(VerifyCache::default());
    for c in common::cases(&["sgx", "tdx", "snp", "nitro", "tpm", "nvgpu"]).into_iter().filter(|c| c.expect == "accept") {
        let ev = c.evidence_bytes();
        assert!(run(&c, &ev, c.verify_at(), Some(&cache)).verified(), "{}", c.id);
        // Find the first refused instant without the cache, then compare.
        let (mut lo, mut hi) = (c.verify_at(), c.valid_to() + 30 * 86_400);
        if run(&c, &ev, hi, None).verified() {
            continue; // Never expires within reach (not the case for these families).
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if run(&c, &ev, mid, None).verified() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let cold = run(&c, &ev, hi, None);
        let warm = run(&c, &ev, hi, Some(&cache));
        assert!(!warm.verified(), "{}: accepted from the cache after expiry", c.id);
        assert_eq!(common::failed_check(&warm), common::failed_check(&cold), "{}", c.id);
        assert!(run(&c, &ev, lo, Some(&cache)).verified(), "{}: the last valid second still verifies", c.id);
    }
    assert!(cache.stats().hits > 0);
}

#[test]
fn tee_list_covers_every_real_family() {
    for t in ALL {
        assert!(Tee::parse(t).is_some(), "{t}");
    }
}
