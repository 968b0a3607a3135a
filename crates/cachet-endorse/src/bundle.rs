//! Endorsement bundles: the air-gapped path.
//!
//! `cachet endorsements fetch|export` write, `cachet endorsements import` and
//! `POST /v1/admin/endorsements/import` read one JSON file,
//! `{"format":"cachet-endorsements/1","entries":[Fetched...]}`. A bundle
//! crosses an air gap by hand, so nothing in it is trusted for being there:
//! every entry is checked again as the family fetchers check a vendor's
//! answer (its parts load with `cachet-verify`'s loaders for its kind and are
//! the resource its key names: the FMSPC's TCB Info, the chip's VCEK at its
//! TCB, the CA's CRL, the RIM of that id), and where it is a signed document
//! (Intel TCB Info, QE Identity, CRLs; AMD chains and CRLs) its signature and
//! chain to the pinned roots verify. The verifier checks all again, with
//! validity at the verification instant, each time an entry is used.
//! One bad entry refuses the whole bundle, named, so nothing is imported
//! partially.

use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};
use cachet_verify::dcap::collateral::{from_endorsements, SignedJson};
use cachet_verify::nvgpu::rim;
use cachet_verify::snp::certs::common_name;
use cachet_verify::x509::{certs_from_pem, parse_cert, parse_crl, verify_chain, verify_crl};
use cachet_verify::{AnchorKind, Checks, TrustAnchors};
use serde::{Deserialize, Serialize};

use crate::needs::{AmdKey, IntelTee, PckCa};
use crate::{Fetched, Resource};

/// The format tag of a bundle.
pub const FORMAT: &str = "cachet-endorsements/1";
/// Largest bundle read (bytes): every recorded family's endorsements fit many times over.
pub const MAX_BUNDLE_LEN: usize = 64 << 20;
/// Most entries in a bundle.
pub const MAX_ENTRIES: usize = 4096;
/// Most parts in one entry (an Intel signed document has two).
const MAX_PARTS: usize = 8;

/// A bundle of endorsements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// The endorsements, each as fetched.
    pub entries: Vec<Fetched>,
}

/// Why a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle at all (size, JSON, format tag).
    #[error("not an endorsement bundle: {0}")]
    Malformed(String),
    /// One entry is not what its key says; nothing of the bundle is imported.
    #[error("entry {index} ({key}) refused, nothing imported: {message}")]
    Entry {
        /// Position in `entries`.
        index: usize,
        /// Its resource key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Every entry passed, but the cache could not keep them; nothing was kept.
    #[error("the bundle is sound but could not be kept, nothing imported: {0}; try again, or check the store")]
    Keep(String),
}

impl Bundle {
    /// A bundle of `entries`, sorted by key (stable output for diffs).
    pub fn new(mut entries: Vec<Fetched>) -> Self {
        entries.sort_by_key(|e| e.resource.key());
        Bundle { format: FORMAT.into(), entries }
    }

    /// The bundle as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Read and check a bundle: bounded, the right format, no key twice, and
    /// every entry [`check_entry`]. Any failure refuses the whole bundle.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::Malformed(format!("larger than {} MiB", MAX_BUNDLE_LEN >> 20)));
        }
        let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if b.format != FORMAT {
            return Err(BundleError::Malformed(format!("format {:?}, expected {FORMAT:?}", b.format)));
        }
        if b.entries.len() > MAX_ENTRIES {
            return Err(BundleError::Malformed(format!("{} entries, at most {MAX_ENTRIES}", b.entries.len())));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, e) in b.entries.iter().enumerate() {
            let key = e.resource.key();
            let refuse = |message: String| BundleError::Entry { index, key: key.clone(), message };
            if !seen.insert(key.clone()) {
                return Err(refuse("the same resource appears twice".into()));
            }
            check_entry(e).map_err(refuse)?;
        }
        Ok(b)
    }
}

/// Whether `f`'s parts are what its resource names, read with the
/// verifier's own loaders (the checks the family fetchers make on a vendor's answer).
pub fn check_entry(f: &Fetched) -> Result<(), String> {
    if f.parts.is_empty() || f.parts.len() > MAX_PARTS {
        return Err(format!("{} parts (1 to {MAX_PARTS} expected)", f.parts.len()));
    }
    match &f.resource {
        Resource::TcbInfo { tee, fmspc } => {
            let c = from_endorsements(&f.endorsements());
            if !c.problems.is_empty() || c.tcb_infos.len() != 1 || !c.qe_identities.is_empty() {
                return Err(format!("not one TCB Info the verifier can read ({}): {}", c.summary(), c.problems.join("; ")));
            }
            let id = if *tee == IntelTee::Sgx { "SGX" } else { "TDX" };
            signed_body_says(&c.tcb_infos[0].body, &[("id", id), ("fmspc", fmspc)])?;
            intel_signed(&c.tcb_infos[0], &c.certs)
        }
        Resource::QeIdentity { tee } => {
            let c = from_endorsements(&f.endorsements());
            if !c.problems.is_empty() || c.qe_identities.len() != 1 || !c.tcb_infos.is_empty() {
                return Err(format!("not one QE Identity the verifier can read ({}): {}", c.summary(), c.problems.join("; ")));
            }
            let id = if *tee == IntelTee::Sgx { "QE" } else { "TD_QE" };
            signed_body_says(&c.qe_identities[0].body, &[("id", id)])?;
            intel_signed(&c.qe_identities[0], &c.certs)
        }
        Resource::PckCrl { ca } => one_crl(
            f,
            match ca {
                PckCa::Processor => "Intel SGX PCK Processor CA",
                PckCa::Platform => "Intel SGX PCK Platform CA",
            },
            AnchorKind::IntelSgxRoot,
        ),
        Resource::RootCaCrl => one_crl(f, "Intel SGX Root CA", AnchorKind::IntelSgxRoot),
        Resource::Vcek { product, hwid, tcb } => {
            let [p] = f.parts.as_slice() else { return Err("a VCEK entry has one part".into()) };
            crate::kds::check_vcek(&p.bytes, *product, hwid, tcb)?;
            Ok(())
        }
        Resource::AmdChain { product, key } => {
            let [p] = f.parts.as_slice() else { return Err("an AMD chain entry has one part".into()) };
            let intermediate = match key {
                AmdKey::Vcek => format!("SEV-{}", product.as_str()),
                AmdKey::Vlek => format!("SEV-VLEK-{}", product.as_str()),
            };
            let root = format!("ARK-{}", product.as_str());
            let names: Vec<String> = certs_from_pem(&p.bytes)
                .iter()
                .map(|der| parse_cert(der).ok().and_then(|c| common_name(c.subject())).unwrap_or_default())
                .collect();
            if !names.contains(&intermediate) || !names.contains(&root) {
                return Err(format!("expected the PEM certificates {intermediate} and {root}, got {names:?}"));
            }
            let certs = certs_from_pem(&p.bytes);
            let leaf = names.iter().position(|n| *n == intermediate).map(|i| &certs[i]).ok_or("no intermediate")?;
            chain_to(leaf, &certs, AnchorKind::AmdArk(crate::kds::to_verify(*product)))
        }
        Resource::AmdCrl { product, .. } => {
            one_crl(f, &format!("ARK-{}", product.as_str()), AnchorKind::AmdArk(crate::kds::to_verify(*product)))
        }
        Resource::Rim { id } => {
            let [p] = f.parts.as_slice() else { return Err("a RIM entry has one part".into()) };
            let doc = rim::parse(&p.bytes).map_err(|e| format!("not a RIM: {e}"))?;
            if !crate::nvidia::names_version(id, &doc.version) {
                return Err(format!("a RIM of version {} under id {id}", doc.version));
            }
            Ok(())
        }
        Resource::Ocsp { .. } => {
            let [p] = f.parts.as_slice() else { return Err("an OCSP entry has one part".into()) };
            crate::nvidia::check_ocsp_answer(&f.resource, &p.bytes, f.fetched_at).map(|_| ())
        }
    }
}

/// The signed text (exact bytes the signature covers) says `expect` (case-insensitive values).
fn signed_body_says(body: &str, expect: &[(&str, &str)]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("the signed body is not JSON: {e}"))?;
    for (k, want) in expect {
        let got = v.get(*k).and_then(|g| g.as_str()).unwrap_or("");
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!("its {k} is {got:?}, its key says {want:?}"));
        }
    }
    Ok(())
}

/// Exactly one part is a CRL, issued by `issuer_cn` and signed by it, the
/// issuer chaining to the pinned `root`; the other parts are its issuer chain (PEM).
fn one_crl(f: &Fetched, issuer_cn: &str, root: AnchorKind) -> Result<(), String> {
    let mut crls = Vec::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for p in &f.parts {
        match parse_crl(&p.bytes) {
            Ok(crl) => {
                let issuer = common_name(crl.issuer()).unwrap_or_default();
                if issuer != issuer_cn {
                    return Err(format!("{}: the CRL is issued by '{issuer}', not '{issuer_cn}'", p.name));
                }
                let this_update = crl.last_update().timestamp();
                crls.push((p, this_update));
            }
            Err(e) => {
                let certs = certs_from_pem(&p.bytes);
                if certs.is_empty() {
                    return Err(format!("{}: neither a CRL nor PEM certificates: {e}", p.name));
                }
                pool.extend(certs);
            }
        }
    }
    let [(p, at)] = crls.as_slice() else {
        return Err(format!("{} CRLs, expected one issued by '{issuer_cn}'", crls.len()));
    };
    let anchors = TrustAnchors::pinned();
    pool.extend(anchors.of_kind(root).map(|a| a.der.clone()));
    // The issuer: the pinned root itself, or a certificate of the chain that chains to it.
    let issuer = pool
        .iter()
        .find(|der| parse_cert(der).is_ok_and(|c| common_name(c.subject()).as_deref() == Some(issuer_cn)))
        .ok_or_else(|| format!("{}: no certificate of '{issuer_cn}' to check the CRL's signature with", p.name))?;
    chain_to(issuer, &pool, root)?;
    let mut checks = Checks::new();
    verify_crl(&p.name, &p.bytes, issuer, *at, &mut checks).map(|_| ()).map_err(|e| format!("{}: {}", p.name, e.message))
}

/// `leaf` chains through `pool` to a pinned root of kind `root`, every
/// certificate valid at the leaf's own notBefore (a bundle may be imported
/// long after it was fetched; the verifier checks validity at use).
fn chain_to(leaf: &[u8], pool: &[Vec<u8>], root: AnchorKind) -> Result<(), String> {
    let at = parse_cert(leaf).map_err(|e| format!("certificate: {e}"))?.validity().not_before.timestamp();
    let anchors = TrustAnchors::pinned();
    let mut checks = Checks::new();
    verify_chain("issuer chain", leaf, pool, anchors.of_kind(root), at, &mut checks).map(|_| ()).map_err(|e| e.message)
}

/// Intel's signature over a TCB Info / QE Identity text verifies with a
/// certificate of its issuer chain, which chains to the pinned Intel SGX Root CA.
fn intel_signed(sj: &SignedJson, certs: &[Vec<u8>]) -> Result<(), String> {
    let alg: &'static dyn VerificationAlgorithm = if sj.signature.len() == 64 { &ECDSA_P256_SHA256_FIXED } else { &ECDSA_P256_SHA256_ASN1 };
    let mut pool = sj.issuer_chain.clone();
    pool.extend(certs.iter().cloned());
    let signer = pool
        .iter()
        .find(|der| {
            parse_cert(der).is_ok_and(|c| {
                UnparsedPublicKey::new(alg, c.public_key().subject_public_key.data.as_ref())
                    .verify(sj.body.as_bytes(), &sj.signature)
                    .is_ok()
            })
        })
        .ok_or("Intel's signature over the signed text does not verify with any certificate of its issuer chain")?;
    chain_to(signer, &pool, AnchorKind::IntelSgxRoot)
}

/// Check all of `bytes` as a bundle, then keep every entry in `cache`: a bad
/// entry refuses the bundle before anything is written. Returns what was kept.
pub async fn import(cache: &dyn crate::Cache, bytes: &[u8]) -> Result<Vec<Fetched>, BundleError> {
    let b = Bundle::parse(bytes)?;
    cache.put_all(&b.entries).await.map_err(BundleError::Keep)?;
    Ok(b.entries)
}

/// Everything `cache` holds that still passes [`check_entry`], as a bundle
/// (an entry that does not is left out with a warning: an importer would refuse it).
pub async fn export(cache: &dyn crate::Cache) -> Bundle {
    let entries = cache
        .list()
        .await
        .into_iter()
        .filter(|e| match check_entry(e) {
            Ok(()) => true,
            Err(m) => {
                tracing::warn!("endorsement {} left out of the export: {m}", e.resource.key());
                false
            }
        })
        .collect();
    Bundle::new(entries)
}

/// One held endorsement for listings (`cachet endorsements list`,
/// `GET /v1/admin/endorsements`): key, kind, source, fetch time, age at `now`
/// and next update (RFC 3339), whether it is past it.
pub fn summary(f: &Fetched, now: i64) -> serde_json::Value {
    let rfc = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).ok().and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
    };
    let kind = serde_json::to_value(&f.resource).ok().and_then(|v| v.get("kind").cloned()).unwrap_or_default();
    serde_json::json!({
        "key": f.resource.key(),
        "kind": kind,
        "source": f.source,
        "fetched_at": rfc(f.fetched_at),
        "age_s": now.saturating_sub(f.fetched_at),
        "next_update": f.next_update.and_then(rfc),
        "stale": f.next_update.is_some_and(|n| now >= n),
    })
}
