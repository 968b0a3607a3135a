//! Mutation self-test: forge real evidence in many small ways and check
//! that every forgery is refused by name, never accepted, never a panic.
//!
//! A verifier is only as good as the forgeries it refuses. For each case
//! (real evidence with its endorsements and validity window) the engine
//! derives, from a seed and an index, one mutation of one of these kinds
//! ([`Kind`]): bit flips, swapped byte windows and inserted bytes inside the
//! signed parts of the evidence or of a load-bearing endorsement (a
//! certificate, CRL, signed collateral body or signature); truncation and
//! extension; two JSON fields swapped; an endorsement part dropped;
//! collateral taken from another case; the verification time moved outside
//! the window; and unconstrained bit flips anywhere ("noise").
//!
//! The oracle ([`Expect`]): a change to signed bytes must be refused; noise
//! and trailing bytes may be tolerated only if the claims stay exactly
//! those of the unmutated case (a change that reaches the claims without a
//! signature is a forgery). Every refusal must name its check. Panics are
//! caught and counted as failures.
//!
//! The engine is pure like the rest of this crate: callers read the case
//! files ([`CaseSpec`], [`Subject`]) and pass bytes in. The same engine runs
//! in `cargo test` (fixed seed, small count), in `cachet selftest
//! --mutations N --seed S` (long runs) and, with a [`crate::cache::VerifyCache`],
//! against the warm path to show the cache never lets a forgery through.

mod layout;
mod model;
mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use model::Inputs;
use model::{Blob, Loc, Model};
pub use rng::Rng;

use crate::cache::VerifyCache;
use crate::{encoding, Endorsement, Tee, TrustAnchors, UnixTime, VerifyRequest};

/// One case of `cases.json`, as written there.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CaseSpec {
    /// Case identifier.
    pub id: String,
    /// Evidence family name ([`Tee::as_str`]).
    pub tee: String,
    /// Evidence file, relative to the vectors folder.
    pub evidence: String,
    /// Endorsement files or folders, relative to the vectors folder.
    #[serde(default)]
    pub endorsements: Vec<String>,
    /// Start of the validity window (RFC 3339).
    pub valid_from: Option<String>,
    /// End of the validity window, exclusive (RFC 3339).
    pub valid_to: Option<String>,
    /// An instant inside the window (RFC 3339).
    pub verify_at: Option<String>,
    /// `accept`, `reject` or `unsettled`.
    #[serde(default)]
    pub expect: String,
}

#[derive(serde::Deserialize)]
struct CasesFile {
    cases: Vec<CaseSpec>,
}

/// Parse the text of a `cases.json`.
pub fn parse_cases(text: &str) -> Result<Vec<CaseSpec>, String> {
    serde_json::from_str::<CasesFile>(text).map(|f| f.cases).map_err(|e| format!("cases.json: {e}"))
}

/// RFC 3339 to Unix seconds.
pub fn parse_time(s: &str) -> Option<UnixTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

impl CaseSpec {
    /// The subject of this case, given the raw evidence file and the
    /// endorsement files (read by the caller, folders expanded in order).
    pub fn subject(&self, evidence_file: &[u8], endorsements: Vec<Endorsement>) -> Result<Subject, String> {
        let tee = Tee::parse(&self.tee).ok_or_else(|| format!("{}: unknown tee {:?}", self.id, self.tee))?;
        let at = self.verify_at.as_deref().and_then(parse_time).ok_or_else(|| format!("{}: no verify_at", self.id))?;
        Ok(Subject {
            id: self.id.clone(),
            tee,
            evidence: encoding::decode_evidence(evidence_file).1,
            endorsements,
            verify_at: at,
            valid_from: self.valid_from.as_deref().and_then(parse_time),
            valid_to: self.valid_to.as_deref().and_then(parse_time),
        })
    }
}

/// A case to mutate: decoded evidence, endorsement files, and its window.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Case identifier (for reports).
    pub id: String,
    /// Evidence family.
    pub tee: Tee,
    /// The evidence, decoded.
    pub evidence: Vec<u8>,
    /// Endorsement files.
    pub endorsements: Vec<Endorsement>,
    /// An instant inside the window.
    pub verify_at: UnixTime,
    /// Start of the validity window.
    pub valid_from: Option<UnixTime>,
    /// End of the validity window (exclusive).
    pub valid_to: Option<UnixTime>,
}

/// What a verification produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Verified, with these claims.
    Accepted(Value),
    /// Refused by the named check.
    Refused {
        /// Failing check.
        check: String,
        /// Why.
        message: String,
    },
    /// The verifier panicked (a bug whatever the input).
    Panicked(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Accepted(_) => f.write_str("ACCEPTED"),
            Outcome::Refused { check, message } => write!(f, "refused by {check:?}: {}", short(message, 140)),
            Outcome::Panicked(m) => write!(f, "PANIC: {}", short(m, 200)),
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n).collect();
        format!("{cut}…")
    }
}

/// The kinds of mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// 1–3 bits flipped in signed bytes of the evidence.
    EvidenceFlip,
    /// Two different byte windows of the evidence's signed bytes swapped.
    EvidenceSwap,
    /// Bytes inserted inside a signed part of the evidence.
    EvidenceInsert,
    /// The evidence (or a signed part of it) cut short.
    EvidenceTruncate,
    /// Bytes appended to the evidence.
    EvidenceExtend,
    /// One bit flipped anywhere in the evidence.
    EvidenceNoise,
    /// One bit flipped in a decoded part of the evidence outside its signed
    /// ranges (a header, padding, an unsigned field).
    EvidenceUnsigned,
    /// Two load-bearing JSON fields swapped (refused, or the same claims:
    /// endorsements are recognised by content, not by field name).
    FieldSwap,
    /// 1–3 bits flipped in signed bytes of a load-bearing endorsement.
    EndorsementFlip,
    /// Two byte windows of a load-bearing endorsement's signed bytes swapped.
    EndorsementSwap,
    /// A load-bearing endorsement file cut short.
    EndorsementTruncate,
    /// One bit flipped anywhere in an endorsement file.
    EndorsementNoise,
    /// A load-bearing endorsement part removed.
    EndorsementDrop,
    /// The endorsements of another case, at this case's time.
    CrossCollateral,
    /// Verified before the window opens.
    TimeBefore,
    /// Verified at or after the window closes.
    TimeAfter,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 16] = [
        Kind::EvidenceFlip,
        Kind::EvidenceSwap,
        Kind::EvidenceInsert,
        Kind::EvidenceTruncate,
        Kind::EvidenceExtend,
        Kind::EvidenceNoise,
        Kind::EvidenceUnsigned,
        Kind::FieldSwap,
        Kind::EndorsementFlip,
        Kind::EndorsementSwap,
        Kind::EndorsementTruncate,
        Kind::EndorsementNoise,
        Kind::EndorsementDrop,
        Kind::CrossCollateral,
        Kind::TimeBefore,
        Kind::TimeAfter,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::EvidenceFlip => "evidence bit flip (signed)",
            Kind::EvidenceSwap => "evidence swapped bytes (signed)",
            Kind::EvidenceInsert => "evidence inserted bytes (signed)",
            Kind::EvidenceTruncate => "evidence truncated",
            Kind::EvidenceExtend => "evidence extended",
            Kind::EvidenceNoise => "evidence bit flip (anywhere)",
            Kind::EvidenceUnsigned => "evidence bit flip (unsigned field)",
            Kind::FieldSwap => "swapped JSON fields",
            Kind::EndorsementFlip => "endorsement bit flip (signed)",
            Kind::EndorsementSwap => "endorsement swapped bytes (signed)",
            Kind::EndorsementTruncate => "endorsement truncated",
            Kind::EndorsementNoise => "endorsement bit flip (anywhere)",
            Kind::EndorsementDrop => "endorsement part dropped",
            Kind::CrossCollateral => "collateral from another case",
            Kind::TimeBefore => "time before the window",
            Kind::TimeAfter => "time after the window",
        }
    }

    fn weight(self) -> u64 {
        match self {
            Kind::EvidenceFlip => 8,
            Kind::EndorsementFlip => 5,
            Kind::EvidenceSwap | Kind::EvidenceNoise | Kind::EvidenceUnsigned => 2,
            _ => 1,
        }
    }
}

/// What a mutation must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused by a named check.
    Refuse,
    /// Refused, or accepted with exactly the unmutated case's claims (the
    /// changed bytes are not covered by any signature and carry no claim).
    RefuseOrSameClaims,
}

/// One mutation of one case.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// Position of the case in the engine.
    pub case: usize,
    /// Index of the mutation in the run (with the seed, replays it).
    pub index: u64,
    /// The kind.
    pub kind: Kind,
    /// Exactly what was changed.
    pub detail: String,
    /// The mutated inputs.
    pub inputs: Inputs,
    /// The verification time.
    pub at: UnixTime,
    /// The required result.
    pub expect: Expect,
}

/// How a mutation's result is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused by a named check, as required.
    Refused,
    /// Accepted with unchanged claims, where that is allowed.
    Tolerated,
    /// Accepted where it had to be refused, or with changed claims: a bug.
    Accepted,
    /// Refused without a check name: a bug.
    Unnamed,
    /// The verifier panicked: a bug.
    Panicked,
}

impl Verdict {
    /// Whether this verdict is a failure of the verifier.
    pub fn is_finding(self) -> bool {
        matches!(self, Verdict::Accepted | Verdict::Unnamed | Verdict::Panicked)
    }
}

/// A mutation that was not refused as required.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Case identifier.
    pub case: String,
    /// Mutation index (replay with the same seed).
    pub index: u64,
    /// Kind of mutation.
    pub kind: Kind,
    /// What was changed.
    pub detail: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What the verifier did.
    pub outcome: String,
}

/// Counts for one kind or one case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Mutations tried.
    pub tried: u64,
    /// Refused by a named check.
    pub refused: u64,
    /// Accepted with unchanged claims where allowed.
    pub tolerated: u64,
    /// Failures (accepted, unnamed refusal, panic).
    pub findings: u64,
}

impl Tally {
    fn add(&mut self, v: Verdict) {
        self.tried += 1;
        match v {
            Verdict::Refused => self.refused += 1,
            Verdict::Tolerated => self.tolerated += 1,
            _ => self.findings += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.tried += o.tried;
        self.refused += o.refused;
        self.tolerated += o.tolerated;
        self.findings += o.findings;
    }
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seed of the run.
    pub seed: u64,
    /// All mutations.
    pub total: Tally,
    /// Accepted where refusal was required, or with changed claims.
    pub accepted: u64,
    /// Panics.
    pub panicked: u64,
    /// Refusals without a check name.
    pub unnamed: u64,
    /// Per kind.
    pub by_kind: BTreeMap<Kind, Tally>,
    /// Per case.
    pub by_case: BTreeMap<String, Tally>,
    /// How often each check was the one that refused.
    pub by_check: BTreeMap<String, u64>,
    /// The first findings (at most [`Report::MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
}

impl Report {
    /// How many findings are kept in full.
    pub const MAX_FINDINGS: usize = 100;

    /// Whether every mutation was refused or tolerated as allowed.
    pub fn clean(&self) -> bool {
        self.total.findings == 0
    }

    fn record(&mut self, engine: &Engine, m: &Mutation, outcome: &Outcome, v: Verdict) {
        let case = engine.cases.get(m.case).map(|c| c.subject.id.clone()).unwrap_or_default();
        self.total.add(v);
        self.by_kind.entry(m.kind).or_default().add(v);
        self.by_case.entry(case.clone()).or_default().add(v);
        match v {
            Verdict::Accepted => self.accepted += 1,
            Verdict::Panicked => self.panicked += 1,
            Verdict::Unnamed => self.unnamed += 1,
            _ => {}
        }
        if let Outcome::Refused { check, .. } = outcome {
            *self.by_check.entry(check.clone()).or_default() += 1;
        }
        if v.is_finding() && self.findings.len() < Self::MAX_FINDINGS {
            self.findings.push(Finding {
                case,
                index: m.index,
                kind: m.kind,
                detail: m.detail.clone(),
                verdict: v,
                outcome: outcome.to_string(),
            });
        }
    }

    fn merge(&mut self, o: Report) {
        self.total.merge(&o.total);
        self.accepted += o.accepted;
        self.panicked += o.panicked;
        self.unnamed += o.unnamed;
        for (k, t) in o.by_kind {
            self.by_kind.entry(k).or_default().merge(&t);
        }
        for (k, t) in o.by_case {
            self.by_case.entry(k).or_default().merge(&t);
        }
        for (k, n) in o.by_check {
            *self.by_check.entry(k).or_default() += n;
        }
        self.findings.extend(o.findings);
        self.findings.sort_by_key(|f| f.index);
        self.findings.truncate(Self::MAX_FINDINGS);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.total;
        writeln!(f, "{:<36} {:>9} {:>9} {:>9} {:>8}", "kind", "tried", "refused", "tolerated", "FAILED")?;
        for k in Kind::ALL {
            if let Some(x) = self.by_kind.get(&k) {
                writeln!(f, "{:<36} {:>9} {:>9} {:>9} {:>8}", k.name(), x.tried, x.refused, x.tolerated, x.findings)?;
            }
        }
        writeln!(f, "{:<36} {:>9} {:>9} {:>9} {:>8}", "case", "tried", "refused", "tolerated", "FAILED")?;
        for (c, x) in &self.by_case {
            writeln!(f, "{:<36} {:>9} {:>9} {:>9} {:>8}", c, x.tried, x.refused, x.tolerated, x.findings)?;
        }
        let mut checks: Vec<_> = self.by_check.iter().collect();
        checks.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = checks.iter().take(12).map(|(c, n)| format!("{c} ({n})")).collect();
        writeln!(f, "refusing checks ({} distinct), most frequent: {}", self.by_check.len(), top.join(", "))?;
        for x in &self.findings {
            writeln!(f, "FINDING case {} mutation #{} [{}] {}: {}", x.case, x.index, x.kind.name(), x.detail, x.outcome)?;
        }
        write!(
            f,
            "mutations: {} tried, {} refused, {} tolerated (unsigned bytes, claims unchanged), {} accepted, {} panics, {} unnamed refusals (seed {})",
            t.tried, t.refused, t.tolerated, self.accepted, self.panicked, self.unnamed, self.seed
        )
    }
}

/// A case ready for mutation.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The case.
    pub subject: Subject,
    /// The unmutated outcome.
    pub base: Outcome,
    /// The window actually observed, `[from, to)`: the first accepted and
    /// the first refused instant around `cases.json`'s window (searched up
    /// to [`EDGE_SEARCH`] beyond it). A window in `cases.json` that is
    /// narrower than the evidence's real one (it may be the intersection
    /// over several pieces of evidence) would otherwise make time mutations
    /// just inside the real window look like accepted forgeries.
    pub window: (Option<UnixTime>, Option<UnixTime>),
    model: Model,
    partners: Vec<usize>,
}

impl Prepared {
    /// Number of blobs with signed bytes (evidence side, endorsement side).
    pub fn signed_blobs(&self) -> (usize, usize) {
        let n = |ev: bool| self.model.blobs.iter().filter(|b| b.loc.in_evidence() == ev && b.signed_len() > 0).count();
        (n(true), n(false))
    }
}

/// The mutation engine over a set of cases.
pub struct Engine {
    cases: Vec<Prepared>,
    anchors: TrustAnchors,
    cache: Option<Arc<VerifyCache>>,
}

/// Verify with panics caught.
fn outcome_of(tee: Tee, inp: &Inputs, anchors: &TrustAnchors, at: UnixTime, cache: Option<&Arc<VerifyCache>>) -> Outcome {
    let req = VerifyRequest { evidence: &inp.evidence, endorsements: &inp.endorsements, anchors, at, expected_nonce: None };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cache {
        Some(c) => crate::cache::verify_cached(tee, &req, c),
        None => crate::verify(tee, &req),
    }));
    match r {
        Ok(v) => match v.result {
            Ok(claims) => Outcome::Accepted(claims),
            Err(e) => Outcome::Refused { check: e.check, message: e.message },
        },
        Err(p) => Outcome::Panicked(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

impl Engine {
    /// Prepare cases: verify each unmutated, find the signed and the
    /// load-bearing parts (by removing each part once), and pair cases for
    /// cross-collateral mutations. `cache`, when given, is used for every
    /// verification, so the warm path is what gets mutated.
    pub fn new(subjects: Vec<Subject>, anchors: TrustAnchors, cache: Option<Arc<VerifyCache>>) -> Engine {
        let mut cases = Vec::new();
        for s in subjects {
            let inputs = Inputs { evidence: s.evidence.clone(), endorsements: s.endorsements.clone() };
            let base = outcome_of(s.tee, &inputs, &anchors, s.verify_at, cache.as_ref());
            let run = |i: &Inputs| outcome_of(s.tee, i, &anchors, s.verify_at, cache.as_ref());
            let refused = |i: &Inputs| !matches!(run(i), Outcome::Accepted(_));
            let same = |i: &Inputs| match (run(i), &base) {
                (Outcome::Accepted(a), Outcome::Accepted(b)) => a == *b,
                (Outcome::Refused { .. }, Outcome::Refused { .. }) => true,
                _ => false,
            };
            let model = model::decompose(s.tee, &s.evidence, &s.endorsements);
            let model = model::analyse(model, &s.evidence, &s.endorsements, &refused, &same);
            let window = if matches!(base, Outcome::Accepted(_)) {
                let refused_at = |t: UnixTime| !matches!(outcome_of(s.tee, &inputs, &anchors, t, cache.as_ref()), Outcome::Accepted(_));
                (
                    s.valid_from.and_then(|f| window_start(f, s.verify_at, &refused_at)),
                    s.valid_to.and_then(|t| window_end(t, s.verify_at, &refused_at)),
                )
            } else {
                // Refused at its own instant: its window is not established
                // (cases.json windows of unsettled cases may belong to other
                // collateral), so time is not mutated.
                (None, None)
            };
            cases.push(Prepared { subject: s, base, window, model, partners: Vec::new() });
        }
        // Collateral from case j is a forgery for case i when i needs its
        // endorsements, j's differ, and i's instant is outside j's window
        // (so something of j's is expired or not yet valid at that time).
        for i in 0..cases.len() {
            let mut partners = Vec::new();
            for j in 0..cases.len() {
                let (a, b) = (&cases[i], &cases[j]);
                let same_files = a.subject.endorsements.len() == b.subject.endorsements.len()
                    && a.subject.endorsements.iter().zip(&b.subject.endorsements).all(|(x, y)| x.bytes == y.bytes);
                let outside = match (b.subject.valid_from, b.subject.valid_to) {
                    (Some(f), Some(t)) => a.subject.verify_at < f || a.subject.verify_at >= t,
                    _ => false,
                };
                if i != j && a.model.endorsements_needed && !same_files && outside && !b.subject.endorsements.is_empty() {
                    partners.push(j);
                }
            }
            cases[i].partners = partners;
        }
        Engine { cases, anchors, cache }
    }

    /// The prepared cases.
    pub fn cases(&self) -> &[Prepared] {
        &self.cases
    }

    /// Mutation number `index` of the run with `seed` (None without cases).
    pub fn mutation(&self, seed: u64, index: u64) -> Option<Mutation> {
        let n = self.cases.len() as u64;
        if n == 0 {
            return None;
        }
        let case = (index % n) as usize;
        let p = self.cases.get(case)?;
        let mut rng = Rng::for_mutation(seed, index);
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| applicable(p, *k)).collect();
        let weights: Vec<u64> = kinds.iter().map(|k| k.weight()).collect();
        let kind = *kinds.get(rng.weighted(&weights)?)?;
        let s = &p.subject;
        let base = Inputs { evidence: s.evidence.clone(), endorsements: s.endorsements.clone() };
        let mk = |kind, detail: String, inputs: Inputs, at, expect| Mutation { case, index, kind, detail, inputs, at, expect };
        let at = s.verify_at;
        let m = match kind {
            Kind::EvidenceFlip | Kind::EndorsementFlip => {
                let b = pick_blob(p, &mut rng, |b| b.loc.in_evidence() == (kind == Kind::EvidenceFlip) && b.signed_len() > 0)?;
                let (bytes, detail) = flip_signed(b, &mut rng);
                mk(kind, detail, p.model.with(&s.evidence, &s.endorsements, &b.loc, Some(&bytes)), at, Expect::Refuse)
            }
            Kind::EvidenceSwap | Kind::EndorsementSwap => {
                let b = pick_blob(p, &mut rng, |b| b.loc.in_evidence() == (kind == Kind::EvidenceSwap) && b.signed_len() >= 2)?;
                let (bytes, detail) = swap_signed(b, &mut rng).unwrap_or_else(|| flip_signed(b, &mut rng));
                mk(kind, detail, p.model.with(&s.evidence, &s.endorsements, &b.loc, Some(&bytes)), at, Expect::Refuse)
            }
            Kind::EvidenceInsert => {
                let b = pick_blob(p, &mut rng, |b| b.loc.in_evidence() && b.signed_len() > 0)?;
                let pos = signed_pos(b, &mut rng);
                let extra: Vec<u8> = (0..rng.between(1, 16)).map(|_| rng.byte()).collect();
                let mut bytes = b.bytes.clone();
                let tail = bytes.split_off(pos.min(bytes.len()));
                bytes.extend_from_slice(&extra);
                bytes.extend_from_slice(&tail);
                let detail = format!("insert {} bytes {} at 0x{pos:x} of {}", extra.len(), hex::encode(&extra), b.what);
                mk(kind, detail, p.model.with(&s.evidence, &s.endorsements, &b.loc, Some(&bytes)), at, Expect::Refuse)
            }
            Kind::EvidenceTruncate => {
                let leaf = pick_blob(p, &mut rng, |b| matches!(b.loc, Loc::EvLeaf { .. }) && b.signed_len() > 0);
                if p.model.evidence_cut == 0 || (leaf.is_some() && rng.below(2) == 0) {
                    let b = leaf?;
                    let end = b.signed.iter().map(|r| r.end).max().unwrap_or(0);
                    let len = rng.below(end);
                    let detail = format!("truncate {} to {len} of {} bytes", b.what, b.bytes.len());
                    mk(kind, detail, p.model.with(&s.evidence, &s.endorsements, &b.loc, Some(b.bytes.get(..len)?)), at, Expect::Refuse)
                } else {
                    let len = rng.below(p.model.evidence_cut);
                    let mut inputs = base;
                    inputs.evidence.truncate(len);
                    mk(kind, format!("truncate evidence to {len} of {} bytes", s.evidence.len()), inputs, at, Expect::Refuse)
                }
            }
            Kind::EvidenceExtend => {
                let n = rng.between(1, 64);
                let extra: Vec<u8> = if p.model.evidence_is_json {
                    (0..n).map(|_| 0x21 + (rng.below(0x5e) as u8)).collect()
                } else {
                    (0..n).map(|_| rng.byte()).collect()
                };
                let mut inputs = base;
                inputs.evidence.extend_from_slice(&extra);
                let expect = if p.model.evidence_is_json { Expect::Refuse } else { Expect::RefuseOrSameClaims };
                mk(kind, format!("append {n} bytes {}", hex::encode(&extra)), inputs, at, expect)
            }
            Kind::EvidenceNoise => {
                let mut inputs = base;
                let pos = rng.below(inputs.evidence.len());
                let bit = rng.below(8);
                let byte = inputs.evidence.get_mut(pos)?;
                *byte ^= 1 << bit;
                mk(kind, format!("flip bit {bit} of evidence byte 0x{pos:x}"), inputs, at, Expect::RefuseOrSameClaims)
            }
            Kind::EvidenceUnsigned => {
                let b = pick_blob(p, &mut rng, |b| b.loc.in_evidence() && unsigned_len(b) > 0)?;
                let mut x = rng.below(unsigned_len(b));
                let mut pos = 0;
                for i in 0..b.bytes.len() {
                    if !b.signed.iter().any(|r| r.contains(&i)) {
                        if x == 0 {
                            pos = i;
                            break;
                        }
                        x -= 1;
                    }
                }
                let bit = rng.below(8);
                let mut bytes = b.bytes.clone();
                *bytes.get_mut(pos)? ^= 1 << bit;
                let detail = format!("flip bit {bit} of unsigned byte 0x{pos:x} of {} ({} bytes)", b.what, b.bytes.len());
                mk(kind, detail, p.model.with(&s.evidence, &s.endorsements, &b.loc, Some(&bytes)), at, Expect::RefuseOrSameClaims)
            }
            Kind::FieldSwap => {
                let (a, b) = pick_swap_pair(p, &mut rng)?;
                let one = p.model.with(&s.evidence, &s.endorsements, &a.loc, Some(&b.bytes));
                let inputs = p.model.with(&one.evidence, &one.endorsements, &b.loc, Some(&a.bytes));
                // Verifiers recognise endorsements by content, so two authentic
                // parts under each other's names may still verify; the claims
                // must then be unchanged.
                mk(kind, format!("swap {} and {}", a.what, b.what), inputs, at, Expect::RefuseOrSameClaims)
            }
            Kind::EndorsementTruncate => {
                let files: Vec<(usize, usize)> = p.model.file_cut.iter().enumerate().filter_map(|(i, c)| c.map(|c| (i, c))).collect();
                let (i, cut) = *files.get(rng.below(files.len()))?;
                let len = rng.below(cut);
                let mut inputs = base;
                let f = inputs.endorsements.get_mut(i)?;
                let detail = format!("truncate endorsement {} to {len} of {} bytes", f.name, f.bytes.len());
                f.bytes.truncate(len);
                mk(kind, detail, inputs, at, Expect::Refuse)
            }
            Kind::EndorsementNoise => {
                let mut inputs = base;
                let i = rng.below(inputs.endorsements.len());
                let f = inputs.endorsements.get_mut(i)?;
                let pos = rng.below(f.bytes.len());
                let bit = rng.below(8);
                *f.bytes.get_mut(pos)? ^= 1 << bit;
                let detail = format!("flip bit {bit} of byte 0x{pos:x} of endorsement {}", f.name);
                mk(kind, detail, inputs, at, Expect::RefuseOrSameClaims)
            }
            Kind::EndorsementDrop => {
                let b = pick_blob(p, &mut rng, droppable)?;
                let inputs = p.model.with(&s.evidence, &s.endorsements, &b.loc, None);
                mk(kind, format!("remove {}", b.what), inputs, at, Expect::Refuse)
            }
            Kind::CrossCollateral => {
                let j = *p.partners.get(rng.below(p.partners.len()))?;
                let other = &self.cases.get(j)?.subject;
                let inputs = Inputs { evidence: s.evidence.clone(), endorsements: other.endorsements.clone() };
                mk(kind, format!("endorsements of case {}", other.id), inputs, at, Expect::Refuse)
            }
            Kind::TimeBefore => {
                let d = log_uniform(&mut rng);
                let t = p.window.0? - d;
                mk(kind, format!("verify at {} ({d} s before the window)", crate::x509::fmt_time(t)), base, t, Expect::Refuse)
            }
            Kind::TimeAfter => {
                let d = log_uniform(&mut rng) - 1;
                let t = p.window.1? + d;
                mk(kind, format!("verify at {} ({d} s after the window closes)", crate::x509::fmt_time(t)), base, t, Expect::Refuse)
            }
        };
        Some(m)
    }

    /// Verify a mutation and judge the result.
    pub fn judge(&self, m: &Mutation) -> (Outcome, Verdict) {
        let Some(p) = self.cases.get(m.case) else {
            return (Outcome::Panicked("no such case".into()), Verdict::Panicked);
        };
        let out = outcome_of(p.subject.tee, &m.inputs, &self.anchors, m.at, self.cache.as_ref());
        let v = match &out {
            Outcome::Panicked(_) => Verdict::Panicked,
            Outcome::Refused { check, .. } if check.trim().is_empty() => Verdict::Unnamed,
            Outcome::Refused { .. } => Verdict::Refused,
            Outcome::Accepted(claims) => match (m.expect, &p.base) {
                (Expect::RefuseOrSameClaims, Outcome::Accepted(base)) if same_claims(base, claims) => Verdict::Tolerated,
                _ => Verdict::Accepted,
            },
        };
        (out, v)
    }

    /// Run mutations `0..count` of `seed` on `threads` threads; `progress`
    /// is called with the number done so far every 1000 mutations.
    pub fn run(&self, seed: u64, count: u64, threads: usize, progress: &(dyn Fn(u64) + Sync)) -> Report {
        let threads = threads.clamp(1, 64) as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let mut report = Report { seed, ..Report::default() };
        let parts: Vec<Report> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|w| {
                    let done = &done;
                    sc.spawn(move || {
                        let mut r = Report { seed, ..Report::default() };
                        let mut i = w;
                        while i < count {
                            if let Some(m) = self.mutation(seed, i) {
                                let (out, v) = self.judge(&m);
                                r.record(self, &m, &out, v);
                            }
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n.is_multiple_of(1000) {
                                progress(n);
                            }
                            i += threads;
                        }
                        r
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for p in parts {
            report.merge(p);
        }
        report
    }
}

/// Claims equal except for members named `sha256` or `*_sha256`: those
/// identify an input by the hash of all its bytes (a RIM file, a
/// certificate), so they follow any change, signed or not, without saying
/// anything new about the platform.
pub fn same_claims(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter().filter(|(k, _)| !(k.as_str() == "sha256" || k.ends_with("_sha256"))).map(|(k, x)| (k.clone(), strip(x))).collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(a) == strip(b)
}

/// How far beyond `cases.json`'s window the real edge is searched for.
pub const EDGE_SEARCH: UnixTime = 7 * 86_400;

/// The last instant X.509 can express (`99991231235959Z`, which RFC 5280
/// §4.1.2.5 defines as "no well-defined expiration date"), plus one second.
const END_OF_TIME: UnixTime = 253_402_300_800;
/// Year 1, the earliest instant searched for a window start.
const START_OF_TIME: UnixTime = -62_135_596_800;

/// The first refused instant after `accepted_at`: searched up to
/// `valid_to + EDGE_SEARCH`, then up to the end of X.509 time; `None` when
/// the evidence never expires (every certificate says 9999-12-31).
fn window_end(valid_to: UnixTime, accepted_at: UnixTime, refused: &dyn Fn(UnixTime) -> bool) -> Option<UnixTime> {
    let mut lo = accepted_at;
    let mut hi = valid_to.saturating_add(EDGE_SEARCH).max(lo + 1);
    if !refused(hi) {
        lo = hi;
        hi = END_OF_TIME.max(lo + 1);
        if !refused(hi) {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if refused(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The first accepted instant at or before `accepted_at`: searched from
/// `valid_from - EDGE_SEARCH`, then from year 1; `None` when even that is
/// accepted.
fn window_start(valid_from: UnixTime, accepted_at: UnixTime, refused: &dyn Fn(UnixTime) -> bool) -> Option<UnixTime> {
    let mut hi = accepted_at;
    let mut lo = valid_from.saturating_sub(EDGE_SEARCH).min(hi - 1);
    if !refused(lo) {
        hi = lo;
        lo = START_OF_TIME.min(hi - 1);
        if !refused(lo) {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if refused(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

fn applicable(p: &Prepared, k: Kind) -> bool {
    let blobs = &p.model.blobs;
    let signed = |ev: bool, min: usize| blobs.iter().any(|b| b.loc.in_evidence() == ev && b.signed_len() >= min);
    let s = &p.subject;
    match k {
        Kind::EvidenceFlip | Kind::EvidenceInsert => signed(true, 1),
        Kind::EvidenceSwap => signed(true, 2),
        Kind::EvidenceTruncate => {
            p.model.evidence_cut > 0 || blobs.iter().any(|b| matches!(b.loc, Loc::EvLeaf { .. }) && b.signed_len() > 0)
        }
        Kind::EvidenceExtend | Kind::EvidenceNoise => !s.evidence.is_empty(),
        Kind::EvidenceUnsigned => blobs.iter().any(|b| b.loc.in_evidence() && unsigned_len(b) > 0),
        Kind::FieldSwap => swap_candidates(p).len() >= 2,
        Kind::EndorsementFlip => signed(false, 1),
        Kind::EndorsementSwap => signed(false, 2),
        Kind::EndorsementTruncate => p.model.file_cut.iter().any(Option::is_some),
        Kind::EndorsementNoise => s.endorsements.iter().any(|e| !e.bytes.is_empty()),
        Kind::EndorsementDrop => blobs.iter().any(droppable),
        Kind::CrossCollateral => !p.partners.is_empty(),
        Kind::TimeBefore => p.window.0.is_some(),
        Kind::TimeAfter => p.window.1.is_some(),
    }
}

/// Bytes of a decoded blob outside its signed ranges (only for blobs that
/// have signed ranges: a blob without any is text or an unused part).
fn unsigned_len(b: &Blob) -> usize {
    if b.signed.is_empty() {
        return 0;
    }
    b.bytes.len().saturating_sub(b.signed_len())
}

fn droppable(b: &Blob) -> bool {
    !b.loc.in_evidence() && b.load_bearing && !matches!(b.loc, Loc::Evidence)
}

fn pick_blob<'a>(p: &'a Prepared, rng: &mut Rng, f: impl Fn(&Blob) -> bool) -> Option<&'a Blob> {
    let c: Vec<&Blob> = p.model.blobs.iter().filter(|b| f(b)).collect();
    c.get(rng.below(c.len())).copied()
}

/// Offset of a random signed byte (uniform over signed bytes).
fn signed_pos(b: &Blob, rng: &mut Rng) -> usize {
    let mut x = rng.below(b.signed_len());
    for r in &b.signed {
        if x < r.len() {
            return r.start + x;
        }
        x -= r.len();
    }
    0
}

fn flip_signed(b: &Blob, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut bytes = b.bytes.clone();
    let n = if rng.below(10) < 7 { 1 } else { rng.between(2, 3) };
    let mut what = Vec::new();
    for _ in 0..n {
        let pos = signed_pos(b, rng);
        let bit = rng.below(8);
        if let Some(x) = bytes.get_mut(pos) {
            *x ^= 1 << bit;
            what.push(format!("bit {bit} of byte 0x{pos:x}"));
        }
    }
    if bytes == b.bytes {
        // Two flips cancelled out: flip one more.
        let pos = signed_pos(b, rng);
        if let Some(x) = bytes.get_mut(pos) {
            *x ^= 1;
            what.push(format!("bit 0 of byte 0x{pos:x}"));
        }
    }
    let detail = format!("flip {} of {} ({} bytes, {} signed)", what.join(", "), b.what, b.bytes.len(), b.signed_len());
    (bytes, detail)
}

fn swap_signed(b: &Blob, rng: &mut Rng) -> Option<(Vec<u8>, String)> {
    for _ in 0..16 {
        let w = rng.between(1, 16);
        let p1 = signed_pos(b, rng);
        let p2 = signed_pos(b, rng);
        let inside = |p: usize| b.signed.iter().any(|r| r.start <= p && p + w <= r.end);
        let (lo, hi) = (p1.min(p2), p1.max(p2));
        if !inside(lo) || !inside(hi) || lo + w > hi {
            continue;
        }
        let (x, y) = (b.bytes.get(lo..lo + w)?, b.bytes.get(hi..hi + w)?);
        if x == y {
            continue;
        }
        let mut bytes = b.bytes.clone();
        let (xs, ys) = (x.to_vec(), y.to_vec());
        bytes.get_mut(lo..lo + w)?.copy_from_slice(&ys);
        bytes.get_mut(hi..hi + w)?.copy_from_slice(&xs);
        return Some((bytes, format!("swap {w} bytes at 0x{lo:x} and 0x{hi:x} of {}", b.what)));
    }
    None
}

fn swap_candidates(p: &Prepared) -> Vec<&Blob> {
    p.model.blobs.iter().filter(|b| b.loc.container().is_some() && b.load_bearing && !b.bytes.is_empty()).collect()
}

fn pick_swap_pair<'a>(p: &'a Prepared, rng: &mut Rng) -> Option<(&'a Blob, &'a Blob)> {
    let c = swap_candidates(p);
    for _ in 0..16 {
        let a = *c.get(rng.below(c.len()))?;
        let b = *c.get(rng.below(c.len()))?;
        if a.loc.container() == b.loc.container() && a.bytes != b.bytes {
            return Some((a, b));
        }
    }
    None
}

/// A positive duration, log-uniform from 1 s to ~10 years.
fn log_uniform(rng: &mut Rng) -> i64 {
    let exp = (rng.next_u64() % 1_000_000) as f64 / 1_000_000.0 * (3.2e8f64).ln();
    (exp.exp() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_edges_are_found_by_bisection() {
        let refused = |t: UnixTime| !(1000..5000).contains(&t);
        assert_eq!(window_end(4000, 2000, &refused), Some(5000));
        assert_eq!(window_start(1500, 2000, &refused), Some(1000));
        // A window far wider than the one given is still found.
        let wide = |t: UnixTime| !(-100_000_000..200_000_000).contains(&t);
        assert_eq!(window_end(4000, 2000, &wide), Some(200_000_000));
        assert_eq!(window_start(1500, 2000, &wide), Some(-100_000_000));
        // Evidence that never expires has no end to mutate past.
        let never = |_: UnixTime| false;
        assert_eq!(window_end(4000, 2000, &never), None);
        assert_eq!(window_start(1500, 2000, &never), None);
    }

    #[test]
    fn same_claims_ignores_input_hashes_only() {
        let a = serde_json::json!({"tcb": "UpToDate", "rim": {"sha256": "aa", "id": 1}, "cert_sha256": "x"});
        let b = serde_json::json!({"tcb": "UpToDate", "rim": {"sha256": "bb", "id": 1}, "cert_sha256": "y"});
        let c = serde_json::json!({"tcb": "OutOfDate", "rim": {"sha256": "aa", "id": 1}, "cert_sha256": "x"});
        assert!(same_claims(&a, &b));
        assert!(!same_claims(&a, &c));
    }

    #[test]
    fn log_uniform_is_positive_and_bounded() {
        let mut r = Rng::for_mutation(3, 4);
        for _ in 0..1000 {
            let d = log_uniform(&mut r);
            assert!((1..=320_000_000).contains(&d));
        }
    }

    #[test]
    fn parses_cases_file() {
        let t =
            r#"{"cases":[{"id":"a","tee":"snp","evidence":"x","encoding":"binary","verify_at":"2025-01-01T00:00:00Z","expect":"accept"}]}"#;
        let c = parse_cases(t).expect("parses");
        assert_eq!(c[0].id, "a");
        let s = c[0].subject(b"\x01\x02", Vec::new()).expect("subject");
        assert_eq!(s.verify_at, 1_735_689_600);
        assert_eq!(s.evidence, vec![1, 2]);
        assert!(parse_cases("{}").is_err());
    }
}
