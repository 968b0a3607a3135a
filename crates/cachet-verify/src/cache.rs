//! A safe cache of checked endorsements: certificate chains, CRLs and signed
//! collateral, keyed by the SHA-256 of every byte that decided the result.
//!
//! Most of the cost of verifying evidence is in the endorsements (the PCK
//! chain and CRLs, TCB Info and QE Identity, the AMD ASK/ARK chain, the
//! Nitro CA bundle), which are the same for many evidences. They are checked
//! once and remembered; what differs for every evidence — the quote, report,
//! document or SPDM signature — is never routed through this cache (the
//! families verify it directly), so it is checked on every call.
//!
//! Why it is safe:
//! - **Content-keyed.** A key is the SHA-256 of a domain tag and of every
//!   input of the check (length-prefixed: leaf, pool, anchors; CRL and
//!   issuer; signer, message and signature). An entry is found only for the
//!   very same bytes, so a changed certificate, CRL or collateral is a miss
//!   and is checked in full.
//! - **Time is never cached.** Entries hold what does not depend on time
//!   (signatures, path, CA constraints) plus each validity window; every hit
//!   re-checks the windows against the request's instant, with the same
//!   check names and messages as the cold path.
//! - **Only successes are cached.** A failure is recomputed every time, so it
//!   is reported exactly as without the cache.
//! - **Bounded.** At most `capacity` entries, oldest evicted first.
//!
//! Use: [`verify_cached`] instead of [`crate::verify`], with one
//! [`VerifyCache`] shared by all verifications (it is `Sync`). The families
//! call [`verify_chain`], [`verify_crl`] and [`collateral_signature`] in place
//! of the uncached helpers, and [`parsed`] around a pure parse of collateral
//! (NVIDIA RIMs); without a cache in scope these are exactly the uncached
//! helpers.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

use crate::anchors::Anchor;
use crate::check::{Checks, VResult};
use crate::x509::{self, VerifiedChain, VerifiedCrl};
use crate::{Tee, UnixTime, Verification, VerifyRequest};

/// Default number of entries (a chain entry holds a few KiB of DER).
pub const DEFAULT_CAPACITY: usize = 4096;

type Key = [u8; 32];

/// One certificate's validity, as the cold path reports it.
#[derive(Debug, Clone)]
struct Window {
    subject: String,
    not_before: UnixTime,
    not_after: UnixTime,
}

#[derive(Debug, Clone)]
enum Entry {
    Chain { chain: VerifiedChain, windows: Vec<Window> },
    Crl(VerifiedCrl),
    Signature,
    Parsed(Parsed),
}

/// The result of a pure parse, of whatever type its domain produces.
#[derive(Clone)]
struct Parsed(Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parsed(..)")
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

/// Counters of cache use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the full check.
    pub misses: u64,
    /// Entries held.
    pub entries: usize,
}

/// The cache. Share one per process (behind an `Arc`).
pub struct VerifyCache {
    inner: Mutex<Inner>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyCache({:?})", self.stats())
    }
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl VerifyCache {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        VerifyCache { inner: Mutex::new(Inner::default()), capacity: capacity.max(1), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> CacheStats {
        let entries = self.inner.lock().map(|i| i.map.len()).unwrap_or(0);
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed), entries }
    }

    /// Forget everything (e.g. after changing trust anchors).
    pub fn clear(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.map.clear();
            i.order.clear();
        }
    }

    fn get(&self, k: &Key) -> Option<Entry> {
        let e = self.inner.lock().ok().and_then(|i| i.map.get(k).cloned());
        let counter = if e.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        e
    }

    fn put(&self, k: Key, e: Entry) {
        if let Ok(mut i) = self.inner.lock() {
            if i.map.insert(k, e).is_none() {
                i.order.push_back(k);
            }
            while i.map.len() > self.capacity {
                match i.order.pop_front() {
                    Some(old) => {
                        i.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<VerifyCache>>> = const { RefCell::new(None) };
}

/// Restores the previous cache when a scope ends (also on panic).
struct Restore(Option<Arc<VerifyCache>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Run `f` with `cache` as this thread's verification cache.
pub fn scope<R>(cache: &Arc<VerifyCache>, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(cache.clone()));
    let _restore = Restore(prev);
    f()
}

/// [`crate::verify`] with `cache` in scope: endorsements seen before are not
/// checked again (their validity is), per-evidence signatures always are.
pub fn verify_cached(tee: Tee, req: &VerifyRequest<'_>, cache: &Arc<VerifyCache>) -> Verification {
    scope(cache, || crate::verify(tee, req))
}

fn current() -> Option<Arc<VerifyCache>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// SHA-256 over a domain tag and length-prefixed parts.
fn key(tag: &str, parts: &[&[u8]]) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(tag.len() as u64).to_be_bytes());
    ctx.update(tag.as_bytes());
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(ctx.finish().as_ref());
    k
}

/// [`x509::verify_chain`], remembered: the path, its signatures and CA
/// constraints are cached by the hash of leaf, pool and anchors; the
/// validity of every certificate is checked at `at` on every call.
pub fn verify_chain<'a>(
    name: &str,
    leaf: &[u8],
    pool: &[Vec<u8>],
    anchors: impl Iterator<Item = &'a Anchor> + Clone,
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<VerifiedChain> {
    let Some(cache) = current() else {
        return x509::verify_chain(name, leaf, pool, anchors, at, checks);
    };
    let fps: Vec<&[u8]> = anchors.clone().map(|a| a.fingerprint.as_bytes()).collect();
    let mut parts: Vec<&[u8]> = vec![leaf];
    parts.extend(pool.iter().map(Vec::as_slice));
    parts.push(b"|anchors|");
    parts.extend(fps);
    let k = key("chain", &parts);
    if let Some(Entry::Chain { chain, windows }) = cache.get(&k) {
        let n = chain.certs.len();
        checks.pass(name, format!("{n} certificates to trusted root {} (cached)", chain.anchor_fingerprint));
        let problems: Vec<String> = windows
            .iter()
            .filter_map(|w| {
                x509::check_window(&format!("certificate '{}'", w.subject), ("notBefore", w.not_before), ("notAfter", w.not_after), at)
                    .err()
            })
            .collect();
        let validity = format!("{name} validity");
        return if problems.is_empty() {
            checks.pass(&validity, format!("all {n} certificates valid at {}", x509::fmt_time(at)));
            Ok(chain)
        } else {
            Err(checks.fail(&validity, x509::stale_chain_message(&problems)))
        };
    }
    let chain = x509::verify_chain(name, leaf, pool, anchors, at, checks)?;
    let windows: Option<Vec<Window>> = chain
        .certs
        .iter()
        .map(|der| {
            x509::parse_cert(der).ok().map(|c| {
                let (not_before, not_after) = x509::validity_window(&c);
                Window { subject: c.subject().to_string(), not_before, not_after }
            })
        })
        .collect();
    if let Some(windows) = windows {
        cache.put(k, Entry::Chain { chain: chain.clone(), windows });
    }
    Ok(chain)
}

/// [`x509::verify_crl`], remembered: signature and issuer name are cached by
/// the hash of CRL and issuer; thisUpdate/nextUpdate are checked at `at` on
/// every call.
pub fn verify_crl(name: &str, crl_der: &[u8], issuer_der: &[u8], at: UnixTime, checks: &mut Checks) -> VResult<VerifiedCrl> {
    let Some(cache) = current() else {
        return x509::verify_crl(name, crl_der, issuer_der, at, checks);
    };
    let k = key("crl", &[crl_der, issuer_der]);
    if let Some(Entry::Crl(v)) = cache.get(&k) {
        if let Err(e) = x509::check_crl_window(v.this_update, v.next_update, at) {
            return Err(checks.fail(name, e));
        }
        checks.pass(name, format!("signed by issuer, current; {} revoked serials (cached)", v.revoked.len()));
        return Ok(v);
    }
    let v = x509::verify_crl(name, crl_der, issuer_der, at, checks)?;
    cache.put(k, Entry::Crl(v.clone()));
    Ok(v)
}

/// A signature over *collateral* (DCAP TCB Info and QE Identity, an NVIDIA
/// RIM), remembered when it verifies: `check` runs unless the same signer,
/// message and signature (under the same `domain`, naming the algorithm and
/// use) verified before. Never use this for a per-evidence signature (quote,
/// report, attestation document, SPDM measurements): those must be checked
/// on every call, and the families verify them directly.
pub fn collateral_signature(
    domain: &str,
    signer: &[u8],
    message: &[u8],
    signature: &[u8],
    check: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let Some(cache) = current() else { return check() };
    let k = key(&format!("sig:{domain}"), &[signer, message, signature]);
    if matches!(cache.get(&k), Some(Entry::Signature)) {
        return Ok(());
    }
    check()?;
    cache.put(k, Entry::Signature);
    Ok(())
}

/// A pure parse of collateral (an NVIDIA RIM: XML, canonicalisation of
/// `SignedInfo` and of the signed document), remembered by the hash of its
/// bytes and shared (a hit copies nothing). Parsing is a function of the
/// bytes alone, so the same bytes give the same value; nothing about
/// authenticity is implied (the caller still
/// verifies the signature and chain, cached or not). Failures are not kept.
pub fn parsed<T: Send + Sync + 'static>(domain: &str, bytes: &[u8], parse: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, String> {
    let Some(cache) = current() else { return parse().map(Arc::new) };
    let k = key(&format!("parse:{domain}"), &[bytes]);
    if let Some(Entry::Parsed(Parsed(v))) = cache.get(&k) {
        if let Ok(t) = v.downcast::<T>() {
            return Ok(t);
        }
    }
    let t = Arc::new(parse()?);
    cache.put(k, Entry::Parsed(Parsed(t.clone())));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_parts_and_domains() {
        assert_ne!(key("a", &[b"xy", b"z"]), key("a", &[b"x", b"yz"]));
        assert_ne!(key("a", &[b"x"]), key("b", &[b"x"]));
        assert_eq!(key("a", &[b"x"]), key("a", &[b"x"]));
    }

    #[test]
    fn collateral_signature_caches_only_success() {
        let cache = Arc::new(VerifyCache::new(8));
        let calls = std::cell::Cell::new(0);
        let ok = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        scope(&cache, || {
            assert!(collateral_signature("d", b"k", b"m", b"s", ok).is_ok());
            assert!(collateral_signature("d", b"k", b"m", b"s", ok).is_ok());
        });
        assert_eq!(calls.get(), 1, "second call answered from the cache");
        let fails = std::cell::Cell::new(0);
        let bad = || {
            fails.set(fails.get() + 1);
            Err("no".to_string())
        };
        scope(&cache, || {
            assert!(collateral_signature("d", b"k", b"m2", b"s", bad).is_err());
            assert!(collateral_signature("d", b"k", b"m2", b"s", bad).is_err());
            // A different message under the same signer and signature is a miss.
            assert!(collateral_signature("d", b"k", b"m3", b"s", ok).is_ok());
        });
        assert_eq!(fails.get(), 2, "failures are never cached");
        assert_eq!(calls.get(), 2);
        // Outside a scope nothing is cached.
        assert!(collateral_signature("d", b"k", b"m", b"s", ok).is_ok());
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn parsed_values_are_kept_per_bytes_and_type_and_only_on_success() {
        let cache = Arc::new(VerifyCache::new(8));
        let calls = std::cell::Cell::new(0);
        let parse_len = |b: &[u8]| {
            calls.set(calls.get() + 1);
            if b.is_empty() {
                Err("empty".to_string())
            } else {
                Ok(b.len())
            }
        };
        scope(&cache, || {
            assert_eq!(parsed("d", b"abc", || parse_len(b"abc")).map(|v| *v), Ok(3));
            assert_eq!(parsed("d", b"abc", || parse_len(b"abc")).map(|v| *v), Ok(3));
            assert_eq!(calls.get(), 1, "the same bytes are parsed once");
            assert_eq!(parsed("d", b"abcd", || parse_len(b"abcd")).map(|v| *v), Ok(4));
            assert_eq!(parsed("other", b"abc", || parse_len(b"abc")).map(|v| *v), Ok(3));
            assert_eq!(calls.get(), 3, "other bytes or another domain parse again");
            assert!(parsed("d", b"", || parse_len(b"")).is_err());
            assert!(parsed("d", b"", || parse_len(b"")).is_err());
            assert_eq!(calls.get(), 5, "failures are never kept");
            // Same domain and bytes but another type: parsed, never mistyped.
            assert_eq!(parsed("d", b"abc", || Ok::<String, String>("x".into())).map(|v| (*v).clone()), Ok("x".to_string()));
        });
    }

    #[test]
    fn capacity_bounds_entries() {
        let cache = Arc::new(VerifyCache::new(2));
        scope(&cache, || {
            for m in [&b"1"[..], b"2", b"3"] {
                let _ = collateral_signature("d", b"k", m, b"s", || Ok(()));
            }
        });
        assert_eq!(cache.stats().entries, 2);
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
    }
}
