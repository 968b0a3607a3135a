//! # cachet-appraise: verified claims in, EAR appraisal out
//!
//! The RATS *Verifier*'s appraisal step. A verifier (`cachet-verify`) says
//! what the evidence claims and that it is genuine; an appraisal policy says
//! whether that is *good enough* — which measurements, which TCB statuses,
//! never debug — and explains each decision.
//!
//! * [`Policy`]: a Rego policy, compiled once ([`Policy::compile`]),
//!   validated before it is stored ([`Policy::validate`]: compiled *and* run
//!   on sample claims of every family), evaluated many times
//!   ([`Policy::evaluate`]) with each rule's outcome in [`Appraisal::reasons`].
//!   [`PolicyCache`] keeps compiled policies by the SHA-256 of their text.
//! * [`ReferenceValues`]: named sets of allowed values with expiry, from a
//!   JSON/TOML file or from in-toto / SLSA provenance ([`provenance`]);
//!   policies see the values live at the appraisal instant.
//! * [`defaults`]: the strict default policy of every TEE family.
//! * [`bounds`]: what one policy may cost (time, memory, threads): guarded
//!   builtins, a deadline per evaluation, oversized values refused.
//! * [`Appraisal`]: the EAR result — `ear.status` and the AR4SI
//!   trustworthiness vector — plus the policy hash.
//!
//! Pure library code: no network, no files, no clock (the appraisal instant
//! is an input).
//!
//! ## In a service
//!
//! * storing a policy: `Policy::validate(name, text)` — compiled and run on
//!   sample claims; on error keep the previous policy and return the
//!   [`PolicyError`] (its `Display` is the user-facing message); on success
//!   `PolicyCache::insert(Arc::new(policy))` and record `policy.hash()`;
//! * attesting: `cache.get_or_compile(name, text)?.evaluate(&input, &refvals, at)`
//!   (engines are `Send + Sync`; evaluations run in parallel), then put
//!   [`Appraisal::to_ear_submod`] in the token's `submods`;
//! * dry run / explanations: the same `evaluate`; [`Appraisal::reasons`] lists
//!   each rule's outcome, [`Appraisal::verification_failed`] covers evidence
//!   that did not verify;
//! * reference values: [`ReferenceValues::parse`] / [`ReferenceValues::to_document`]
//!   round-trip the JSON form; [`provenance::subject_digests`] reads uploads.

#![deny(missing_docs)]

pub mod bounds;
pub mod defaults;
pub mod ear;
pub mod policy;
pub mod provenance;
pub mod refvals;
pub mod samples;

pub use ear::{Appraisal, Reason, Status, TrustVector};
pub use policy::{policy_hash, AppraisalInput, Policy, PolicyCache, PolicyError};
pub use refvals::{RefSet, RefValue, ReferenceValues, RefvalError};

/// Seconds since the Unix epoch, UTC (as in `cachet-verify`).
pub type UnixTime = i64;
