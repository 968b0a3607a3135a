//! What real users send: `--tee auto` recognises every family's evidence as
//! the vendors' tools produce it (NVIDIA's SDK evidence list included),
//! evidence sent as another family is named for what it is, and the one
//! nonce rule (8 to 64 bytes) holds in every family.

mod common;

use cachet_verify::{detect_tee, Tee, TrustAnchors, VerifyRequest};
use common::{cases, failed_check, vectors_dir};

fn accepted(tees: &[&str]) -> Vec<common::Case> {
    cases(tees).into_iter().filter(|c| c.expect == "accept").collect()
}

#[test]
fn auto_detects_every_real_case_of_a_recognised_format() {
    let all = accepted(&["sgx", "tdx", "snp", "nitro", "nvgpu", "az-snp-vtpm", "az-tdx-vtpm", "tpm", "nitro-tpm"]);
    assert!(all.len() >= 20, "{} cases", all.len());
    for c in all {
        assert_eq!(detect_tee(&c.evidence_bytes()), Some(c.tee()), "{}", c.id);
    }
}

#[test]
fn nvidia_sdk_evidence_lists_are_detected() {
    let path = vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_gpu_evidence.json");
    let text = std::fs::read(&path).unwrap();
    assert_eq!(detect_tee(&text), Some(Tee::Nvgpu));
    // The SDK's minimal form: [{arch, certificate, evidence, nonce}].
    let list: Vec<serde_json::Value> = serde_json::from_slice(&text).unwrap();
    let minimal: Vec<serde_json::Value> = list
        .iter()
        .map(|e| serde_json::json!({"arch": e["arch"], "certificate": e["certificate"], "evidence": e["evidence"], "nonce": e["nonce"]}))
        .collect();
    assert_eq!(detect_tee(&serde_json::to_vec_pretty(&minimal).unwrap()), Some(Tee::Nvgpu));
    // Not every array is GPU evidence.
    assert_eq!(detect_tee(b"[]"), None);
    assert_eq!(detect_tee(br#"[{"evidence": "AA=="}]"#), None);
}

#[test]
fn evidence_of_another_family_is_named() {
    let snp = accepted(&["snp"]).remove(0).evidence_bytes();
    let tdx = accepted(&["tdx"]).remove(0).evidence_bytes();
    let nitro = accepted(&["nitro"]).remove(0).evidence_bytes();
    let gpu = std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_gpu_evidence.json")).unwrap();
    for (tee, evidence, want) in [
        (Tee::Tdx, &snp, "this looks like an SNP report, not a TDX quote"),
        (Tee::Sgx, &snp, "this looks like an SNP report, not an SGX quote"),
        (Tee::Snp, &tdx, "this looks like a TDX quote, not an SNP report"),
        (Tee::Snp, &nitro, "this looks like a Nitro Enclaves attestation document, not an SNP report"),
        (Tee::Tpm, &gpu, "this looks like NVIDIA GPU evidence, not TPM quote evidence"),
        (Tee::Nitro, &tdx, "this looks like a TDX quote, not a Nitro Enclaves attestation document"),
    ] {
        let v = common::run(tee, evidence, &[], &TrustAnchors::pinned(), 1_750_000_000);
        assert_eq!(failed_check(&v), "Evidence format", "{tee}");
        let msg = v.result.unwrap_err().message;
        assert!(msg.contains(want), "{tee}: {msg}");
    }
}

#[test]
fn a_nonce_of_fewer_than_8_or_more_than_64_bytes_is_refused_in_every_family() {
    for c in accepted(&["sgx", "tdx", "snp", "nitro", "nvgpu", "tpm", "nitro-tpm", "az-snp-vtpm", "az-tdx-vtpm"]) {
        let (ev, ends, anchors) = (c.evidence_bytes(), c.endorsement_files(), TrustAnchors::pinned());
        for n in [0usize, 2, 7, 65] {
            let nonce = vec![0u8; n];
            let v = cachet_verify::verify(
                c.tee(),
                &VerifyRequest { evidence: &ev, endorsements: &ends, anchors: &anchors, at: c.verify_at(), expected_nonce: Some(&nonce) },
            );
            assert_eq!(failed_check(&v), "Nonce", "{}: {n}-byte nonce", c.id);
            assert!(v.result.unwrap_err().message.contains("8 to 64 bytes"), "{}", c.id);
        }
    }
}
