//! The requests the load sends, and the warm in-process cost of verifying
//! exactly the same cases (same evidence, endorsements and instants),
//! through the endorsement cache as the server does.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cachet_verify::anchors::TrustAnchors;
use cachet_verify::cache::{verify_cached, VerifyCache};
use cachet_verify::selftest::parse_cases;
use cachet_verify::{Endorsement, Tee, UnixTime, VerifyRequest};
use serde_json::json;

use crate::procs::thread_cpu_ns;

/// One prepared request, and what the server hands its verifier for it.
pub struct Req {
    /// Case id (`cases.json`).
    pub id: String,
    /// Family, as sent.
    pub tee: String,
    /// The JSON body of `POST /v1/attest`.
    pub body: Vec<u8>,
    /// The family the server parses from `tee`.
    pub kind: Tee,
    /// The evidence as the server decodes it from the body.
    pub evidence: Vec<u8>,
    /// The endorsements as the server decodes them (names as sent).
    pub endorsements: Vec<Endorsement>,
    /// The verification instant sent as `at`.
    pub at: UnixTime,
}

fn read_endorsements(root: &Path, rel: &str) -> Result<Vec<Endorsement>, String> {
    let p = root.join(rel);
    let mut files = Vec::new();
    if p.is_dir() {
        let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.is_file()));
        files.sort();
    } else {
        files.push(p);
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::read(&f).map(|bytes| Endorsement { name: f.display().to_string(), bytes }).map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

/// The cases named by `ids`, or the first accepted case of each family.
pub fn requests(vectors: &Path, ids: &[String]) -> Result<Vec<Req>, String> {
    let text = std::fs::read_to_string(vectors.join("cases.json")).map_err(|e| format!("cases.json: {e}"))?;
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for c in parse_cases(&text)? {
        let wanted = if ids.is_empty() { c.expect == "accept" && !seen.contains(&c.tee) } else { ids.contains(&c.id) };
        if !wanted {
            continue;
        }
        seen.push(c.tee.clone());
        let raw = std::fs::read(vectors.join(&c.evidence)).map_err(|e| format!("{}: {e}", c.evidence))?;
        let mut ends = Vec::new();
        for e in &c.endorsements {
            ends.extend(read_endorsements(vectors, e)?);
        }
        let s = c.subject(&raw, ends)?;
        // The server names an endorsement by what the request says: the file name.
        let endorsements: Vec<Endorsement> = s
            .endorsements
            .iter()
            .map(|e| Endorsement { name: e.name.rsplit('/').next().unwrap_or("").to_string(), bytes: e.bytes.clone() })
            .collect();
        let body = json!({
            "tee": c.tee,
            "evidence": STANDARD.encode(&s.evidence),
            "endorsements": endorsements.iter().map(|e| json!({"name": e.name, "data": STANDARD.encode(&e.bytes)})).collect::<Vec<_>>(),
            "at": c.verify_at,
        });
        out.push(Req {
            id: c.id.clone(),
            tee: c.tee.clone(),
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
            kind: s.tee,
            evidence: s.evidence,
            endorsements,
            at: s.verify_at,
        });
    }
    if out.is_empty() {
        return Err("no cases selected".into());
    }
    Ok(out)
}

/// The warm in-process cost of one case.
pub struct CaseCost {
    /// Mean thread CPU per verification, seconds.
    pub cpu_s: f64,
    /// Mean wall time per verification, seconds.
    pub wall_s: f64,
    /// Verifications measured.
    pub n: u64,
    /// The failing check when the verifier refused it (the load expects tokens).
    pub refused: Option<String>,
}

/// The warm in-process cost of the mix.
pub struct Warm {
    /// Mean thread CPU per verification of the mix (round robin), seconds.
    pub cpu_s: f64,
    /// Mean wall time per verification of the mix, seconds.
    pub wall_s: f64,
    /// Verifications measured.
    pub n: u64,
    /// Whether thread CPU time could be read (else `cpu_s` is wall time).
    pub cpu_clock: bool,
    /// Per case, in the order of the mix.
    pub cases: Vec<CaseCost>,
}

/// Verify the mix round robin on this thread, as the server does
/// (`cachet_verify::cache::verify_cached` with one shared cache, pinned
/// anchors, no expected nonce), after two unmeasured rounds that fill the
/// cache, for at least `secs` seconds and whole rounds.
pub fn warm_verify(reqs: &[Req], secs: f64) -> Warm {
    let anchors = TrustAnchors::pinned();
    let cache = Arc::new(VerifyCache::default());
    let one = |r: &Req| {
        let req = VerifyRequest { evidence: &r.evidence, endorsements: &r.endorsements, anchors: &anchors, at: r.at, expected_nonce: None };
        verify_cached(r.kind, &req, &cache)
    };
    let mut cases: Vec<CaseCost> = reqs.iter().map(|_| CaseCost { cpu_s: 0.0, wall_s: 0.0, n: 0, refused: None }).collect();
    for _ in 0..2 {
        for (r, c) in reqs.iter().zip(cases.iter_mut()) {
            if let Err(e) = one(r).result {
                c.refused = Some(format!("{}: {}", e.check, e.message));
            }
        }
    }
    let cpu_clock = thread_cpu_ns().is_some();
    let now_cpu = || thread_cpu_ns().unwrap_or(0);
    let (mut cpu_ns, mut wall_ns) = (vec![0u128; reqs.len()], vec![0u128; reqs.len()]);
    let (t0, c0) = (Instant::now(), now_cpu());
    let mut n = 0u64;
    while n == 0 || t0.elapsed().as_secs_f64() < secs {
        for (i, r) in reqs.iter().enumerate() {
            let (w, c) = (Instant::now(), now_cpu());
            std::hint::black_box(one(r));
            cpu_ns[i] += u128::from(now_cpu().saturating_sub(c));
            wall_ns[i] += w.elapsed().as_nanos();
            n += 1;
        }
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), now_cpu().saturating_sub(c0) as f64 / 1e9);
    let rounds = (n / reqs.len().max(1) as u64).max(1) as f64;
    for (i, c) in cases.iter_mut().enumerate() {
        c.n = rounds as u64;
        c.wall_s = wall_ns[i] as f64 / 1e9 / rounds;
        c.cpu_s = if cpu_clock { cpu_ns[i] as f64 / 1e9 / rounds } else { c.wall_s };
    }
    let wall_s = wall / n.max(1) as f64;
    Warm { cpu_s: if cpu_clock { cpu / n.max(1) as f64 } else { wall_s }, wall_s, n, cpu_clock, cases }
}
