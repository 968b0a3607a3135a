//! The simulated TEE as an evidence source: software-signed reports for
//! development, accepted only by a service started with
//! `--insecure-simulated-tee` (see [`crate::simulated`]). Never chosen by
//! auto-detection.

use cachet_verify::Tee;

use crate::simulated::{ReportOptions, SimulatedTee};
use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "sim";

/// A simulated TEE and what its reports claim.
#[derive(Debug)]
pub struct SimulatedSource {
    /// The simulated TEE (its root key signs the reports).
    pub tee: SimulatedTee,
    /// Measurement, debug flag, SVN of the pretend workload.
    pub options: ReportOptions,
}

impl EvidenceSource for SimulatedSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        let evidence = self.tee.report(&input.report_data(), &self.options).map_err(|e| CollectError::failed(NAME, e.to_string()))?;
        Ok(Evidence { tee: Tee::Simulated, evidence, endorsements: Vec::new(), backend: NAME })
    }
}
