//! Comparing the GPU's measurements with a RIM's golden values, as NVIDIA's
//! verifier does (nvtrust `local_gpu_verifier/src/verifier/verifier.py`):
//!
//! - golden index `i` (0-based) is compared with SPDM measurement block
//!   `i + 1` (the report's indices start at 1);
//! - only `active` golden measurements are compared; a measurement matches
//!   when it equals one of the listed alternatives (and has their size);
//! - when the report says NVDEC0 is disabled, index 35 is not compared;
//! - the driver RIM and the VBIOS RIM must not both have an active
//!   measurement at the same index.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::rim::Rim;

/// The golden index NVIDIA skips when NVDEC0 is disabled.
pub const NVDEC0_INDEX: u32 = 35;

/// The GPU's measurements keyed by NVIDIA index (SPDM index minus one).
pub type Measurements = BTreeMap<u32, Vec<u8>>;

/// Which RIM a manifest is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// The GPU driver (measurements the driver loads).
    Driver,
    /// The VBIOS (firmware on the board).
    Vbios,
}

impl Component {
    /// `"driver"` / `"vbios"`: used in check names and claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Driver => "driver",
            Component::Vbios => "vbios",
        }
    }
}

/// The outcome of comparing one RIM with the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Active golden indices whose value the GPU reported.
    pub matched: Vec<u32>,
    /// Active golden indices the GPU did not report with a listed value.
    pub mismatched: Vec<u32>,
    /// Active golden indices not compared (NVDEC0 disabled).
    pub skipped: Vec<u32>,
}

impl Comparison {
    /// Whether every compared index matched.
    pub fn all_matched(&self) -> bool {
        self.mismatched.is_empty()
    }
}

/// Compare one RIM's active golden values with the GPU's measurements.
pub fn compare(rim: &Rim, measurements: &Measurements, nvdec0_disabled: bool) -> Comparison {
    let mut c = Comparison { matched: Vec::new(), mismatched: Vec::new(), skipped: Vec::new() };
    for g in rim.golden.iter().filter(|g| g.active) {
        if g.index == NVDEC0_INDEX && nvdec0_disabled {
            c.skipped.push(g.index);
            continue;
        }
        let ok = measurements.get(&g.index).is_some_and(|v| v.len() == g.size && g.values.iter().any(|a| a == v));
        if ok {
            c.matched.push(g.index);
        } else {
            c.mismatched.push(g.index);
        }
    }
    c
}

/// Active indices present in both RIMs (NVIDIA refuses such a pair).
pub fn overlap(a: &Rim, b: &Rim) -> Vec<u32> {
    a.golden.iter().filter(|g| g.active).filter(|g| b.golden.iter().any(|h| h.active && h.index == g.index)).map(|g| g.index).collect()
}

/// Indices at which two RIMs' golden measurements differ (activity, size
/// or the set of accepted values; names aside). Empty when they state the
/// same values, e.g. one release re-signed.
pub fn differing(a: &Rim, b: &Rim) -> Vec<u32> {
    let norm = |r: &Rim| -> BTreeMap<u32, (bool, usize, Vec<Vec<u8>>)> {
        r.golden
            .iter()
            .map(|g| {
                let mut v = g.values.clone();
                v.sort();
                (g.index, (g.active, g.size, v))
            })
            .collect()
    };
    let (x, y) = (norm(a), norm(b));
    let mut out: Vec<u32> = x.keys().chain(y.keys()).copied().filter(|i| x.get(i) != y.get(i)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The claims for one compared RIM.
pub fn to_json(rim: &Rim, c: &Comparison) -> Value {
    json!({
        "id": rim.tag_id,
        "sha256": rim.sha256,
        "version": rim.version,
        "product": rim.product,
        "matched": c.matched,
        "mismatched": c.mismatched,
        "skipped": c.skipped,
        "all_matched": c.all_matched(),
    })
}

/// Whether a version string from a RIM names the same release as the
/// report's (NVIDIA compares them case-insensitively).
pub fn same_version(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// A guess at which component a RIM is for from its version's shape, for
/// naming checks of RIMs that match neither of the report's versions:
/// VBIOS versions are five dot-separated two-digit hex groups.
pub fn component_by_shape(version: &str) -> Component {
    let groups: Vec<&str> = version.trim().split('.').collect();
    if groups.len() == 5 && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit())) {
        Component::Vbios
    } else {
        Component::Driver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvgpu::rim::Golden;

    fn rim(golden: Vec<Golden>) -> Rim {
        crate::nvgpu::rim::tests_support::rim_with(golden)
    }

    fn g(index: u32, active: bool, values: &[u8]) -> Golden {
        Golden { index, name: String::new(), active, size: 2, values: values.iter().map(|v| vec![*v, *v]).collect() }
    }

    #[test]
    fn compares_active_indices_with_alternatives() {
        let r = rim(vec![g(0, true, &[1]), g(1, true, &[7, 2]), g(2, false, &[9]), g(3, true, &[4])]);
        let m: Measurements = [(0, vec![1, 1]), (1, vec![2, 2]), (2, vec![0, 0]), (3, vec![5, 5])].into();
        let c = compare(&r, &m, false);
        assert_eq!(c.matched, vec![0, 1]);
        assert_eq!(c.mismatched, vec![3]);
        assert!(!c.all_matched());
    }

    #[test]
    fn missing_or_wrong_size_is_a_mismatch() {
        let r = rim(vec![g(0, true, &[1]), g(1, true, &[1])]);
        let m: Measurements = [(0, vec![1, 1, 1])].into();
        assert_eq!(compare(&r, &m, false).mismatched, vec![0, 1]);
    }

    #[test]
    fn nvdec_disabled_skips_index_35_only() {
        let r = rim(vec![g(35, true, &[1]), g(36, true, &[1])]);
        let m: Measurements = [(36, vec![1, 1])].into();
        let c = compare(&r, &m, true);
        assert_eq!((c.skipped, c.matched, c.mismatched), (vec![35], vec![36], vec![]));
        assert_eq!(compare(&r, &m, false).mismatched, vec![35]);
    }

    #[test]
    fn overlap_counts_only_active_pairs() {
        let a = rim(vec![g(1, true, &[1]), g(2, true, &[1]), g(3, false, &[1])]);
        let b = rim(vec![g(1, false, &[1]), g(2, true, &[1]), g(3, true, &[1])]);
        assert_eq!(overlap(&a, &b), vec![2]);
    }

    #[test]
    fn differing_names_every_index_that_is_not_the_same() {
        let a = rim(vec![g(0, true, &[1]), g(1, true, &[7, 2]), g(2, false, &[9])]);
        let same = rim(vec![g(0, true, &[1]), g(1, true, &[2, 7]), g(2, false, &[9])]);
        assert!(differing(&a, &same).is_empty(), "alternatives in another order are the same values");
        let b = rim(vec![g(0, true, &[1]), g(1, true, &[7]), g(2, true, &[9]), g(3, true, &[1])]);
        assert_eq!(differing(&a, &b), vec![1, 2, 3]);
    }

    #[test]
    fn version_shapes() {
        assert_eq!(component_by_shape("96.00.5E.00.01"), Component::Vbios);
        assert_eq!(component_by_shape("545.00"), Component::Driver);
        assert_eq!(component_by_shape("550.90.07"), Component::Driver);
        assert!(same_version("96.00.5e.00.01", "96.00.5E.00.01"));
    }
}
