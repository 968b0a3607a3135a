//! Sample claims of every TEE family, shaped like the verifiers' output, for
//! validating a policy before it is accepted: a policy that fails on any of
//! them (a builtin error, conflicting rule values, malformed output) is
//! refused before it can replace a working one.

use serde_json::json;

use crate::policy::AppraisalInput;
use crate::refvals::{RefValue, ReferenceValues};

const H32: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H48: &str = "222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222";

/// One plausible claims object per family (`sgx`, `tdx`, ..., `sim`).
pub fn sample_inputs() -> Vec<AppraisalInput> {
    let pcr_bank = |h: &str| json!({"0": h, "4": h, "7": h, "11": h});
    let intel =
        json!({"tcb_status": "UpToDate", "advisory_ids": [], "fmspc": "00906ed50000", "report_data": "00".repeat(64), "debug": false});
    let mut sgx = intel.clone();
    let mut tdx = intel.clone();
    if let (Some(s), Some(t)) = (sgx.as_object_mut(), tdx.as_object_mut()) {
        s.extend(
            json!({"tee": "sgx", "mr_enclave": H32, "mr_signer": H32, "isv_prod_id": 1, "isv_svn": 2, "config_id": "00"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        t.extend(json!({"tee": "tdx", "mr_td": H48, "rtmr0": H48, "rtmr1": H48, "rtmr2": H48, "rtmr3": H48, "mr_config_id": H48, "mr_owner": H48, "mr_owner_config": H48, "mr_seam": H48, "td_attributes": "0000000010000000"}).as_object().cloned().unwrap_or_default());
    }
    let snp = json!({"tee": "snp", "product": "Genoa", "signing_key": "vcek", "debug": false, "vmpl": 0, "measurement": H48, "host_data": H32,
        "policy_flags": {"debug_allowed": false, "migration_agent_allowed": false, "smt_allowed": true}, "reported_tcb": {"raw": "0300000000000873"},
        "report_data": "00".repeat(64), "crl_checked": false});
    let gpu = json!({"debug": false, "driver_version": "535.104.05", "vbios_version": "96.00.5e.00.01", "chip": "GH100", "arch": "HOPPER", "rim_appraisal": "driver+vbios", "rim_status": "match", "measurements": {"0": H48}});
    vec![
        AppraisalInput::new("sgx", sgx),
        AppraisalInput::new("tdx", tdx),
        AppraisalInput::new("snp", snp.clone()),
        AppraisalInput::new(
            "az-snp-vtpm",
            json!({"tee": "az-snp-vtpm", "debug": false, "snp": snp, "measurement": H48, "pcrs": {"sha256": pcr_bank(H32)}}),
        ),
        AppraisalInput::new(
            "az-tdx-vtpm",
            json!({"tee": "az-tdx-vtpm", "debug": false, "tcb_status": "OutOfDate", "advisory_ids": ["INTEL-SA-00960"], "mr_td": H48, "pcrs": {"sha256": pcr_bank(H32)}}),
        ),
        AppraisalInput::new(
            "nitro",
            json!({"tee": "nitro", "module_id": "i-0-enc0", "debug": false, "pcrs": {"0": H48, "1": H48, "2": H48, "8": H48}}),
        ),
        AppraisalInput::new("nitro-tpm", json!({"tee": "nitro-tpm", "ak_trust": "nitro-nsm", "pcrs": {"sha384": pcr_bank(H48)}})),
        AppraisalInput::new(
            "tpm",
            json!({"tee": "tpm", "ak_trust": "certificate", "pcrs": {"sha1": pcr_bank("00"), "sha256": pcr_bank(H32)}}),
        ),
        AppraisalInput::new("nvgpu", json!({"tee": "nvgpu", "debug": false, "gpus": [gpu.clone(), gpu], "revocation_checked": false})),
        AppraisalInput::new("sim", json!({"tee": "sim", "simulated": true, "measurement": H48, "debug": false, "svn": 1})),
    ]
}

/// Reference values that exercise both the matching and the mismatching
/// paths of a policy on the given samples: every top-level string claim
/// of a sample becomes an allowed value of the set of its name, and the
/// sets `pcr1` and `pcr7` hold values nothing matches.
pub fn sample_reference_values(samples: &[AppraisalInput]) -> ReferenceValues {
    let mut r = ReferenceValues::new();
    for s in samples {
        let Some(obj) = s.claims.as_object() else { continue };
        for (k, v) in obj {
            if let Some(text) = v.as_str() {
                if let Ok(rv) = RefValue::new(text) {
                    let _ = r.add_values(k, vec![rv]);
                }
            }
        }
    }
    for name in ["pcr1", "pcr7"] {
        if let Ok(rv) = RefValue::new(&"ff".repeat(32)) {
            let _ = r.add_values(name, vec![rv]);
        }
    }
    r
}
