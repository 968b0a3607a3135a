//! Which key signs, and which keys relying parties can see, over time.
//!
//! Rotation rules (pure functions of the key list and the time):
//! - **Publish before use.** A rotated-in key is published in the JWKS at
//!   once but signs only from `active_from = created + publish_lead`, so
//!   relying parties that cache the JWKS have it before the first token
//!   signed with it reaches them.
//! - **Keep until expiry.** A key stops signing when a newer key becomes
//!   active (its *retirement*), and stays published for `token_ttl +
//!   clock_skew` after that, so every token it signed can still be checked.
//!   Afterwards it is *expired*: unpublished, and its private key may be
//!   destroyed.
//! - **Revocation** (a compromised key) unpublishes a key at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::custody::CustodyKey;
use crate::jwk::PublicKey;
use crate::{Algorithm, TokenError};

/// One signing key as stored: public part, custody handle, and lifecycle times.
#[derive(Clone)]
pub struct SigningKey {
    /// Key ID (the RFC 7638 JWK thumbprint of the public key).
    pub kid: String,
    /// The algorithm the key signs with.
    pub alg: Algorithm,
    /// Name of the custody holding the private key (`"local"`, `"pkcs11"`).
    pub custody: String,
    /// Public key, X.509 SubjectPublicKeyInfo DER.
    pub public_spki_der: Vec<u8>,
    /// The custody's handle for the private key (opaque; may be secret).
    pub handle: Vec<u8>,
    /// Certificate chain for the key (DER, leaf first), published as `x5c`.
    pub cert_chain: Vec<Vec<u8>>,
    /// When the key was created and published (Unix seconds).
    pub created_at: i64,
    /// From when it may sign.
    pub active_from: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("custody", &self.custody)
            .field("created_at", &self.created_at)
            .field("active_from", &self.active_from)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key record for a key the custody just created.
    pub fn new(kid: &str, alg: Algorithm, custody: &str, key: CustodyKey, created_at: i64, active_from: i64) -> Self {
        Self {
            kid: kid.to_string(),
            alg,
            custody: custody.to_string(),
            public_spki_der: key.public_spki_der,
            handle: key.handle,
            cert_chain: Vec::new(),
            created_at,
            active_from,
            revoked_at: None,
        }
    }

    /// The verification key.
    pub fn public_key(&self) -> Result<PublicKey, TokenError> {
        PublicKey::from_spki(&self.kid, self.alg, &self.public_spki_der)
    }

    fn order(&self) -> (i64, i64, &str) {
        (self.active_from, self.created_at, &self.kid)
    }
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key: the
/// `kid` Cachet gives each key, so a kid names exactly one key.
pub fn thumbprint_kid(alg: Algorithm, spki_der: &[u8]) -> Result<String, TokenError> {
    Ok(thumbprint(&PublicKey::from_spki("", alg, spki_der)?))
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) of `key`.
pub fn thumbprint(key: &PublicKey) -> String {
    let jwk = key.to_jwk(&[]);
    let s = |k: &str| jwk.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    // Required members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = match s("kty").as_str() {
        "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, s("crv"), s("x"), s("y")),
        _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
    };
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Timing parameters of rotation (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a new key is published before it signs.
    pub publish_lead: i64,
    /// Lifetime of tokens (`exp - iat`).
    pub token_ttl: i64,
    /// Allowed clock difference with relying parties.
    pub clock_skew: i64,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self { publish_lead: 3600, token_ttl: 600, clock_skew: 60 }
    }
}

/// Where a key is in its life at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// The key that signs now.
    Active,
    /// Superseded; still published until `until`.
    Retired {
        /// When it leaves the JWKS.
        until: i64,
    },
    /// Superseded and past every token's expiry: unpublished.
    Expired,
    /// Revoked: unpublished at once.
    Revoked,
}

impl KeyState {
    /// Lower-case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired { .. } => "retired",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

/// A set of signing keys and the rotation policy over them.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    policy: RotationPolicy,
}

impl KeyRing {
    /// A ring over the given keys.
    pub fn new(keys: Vec<SigningKey>, policy: RotationPolicy) -> Self {
        Self { keys, policy }
    }

    /// All keys, whatever their state.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The policy in force.
    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// When a newer key took over from `k` (became active after it), by
    /// `now`. A newer key revoked *after* it became active did take over
    /// (revoking it later does not bring `k` back); one revoked before its
    /// activation never did.
    ///
    /// Keys rotate within their role only ([`Algorithm::signs_ear`]): the
    /// Azure Attestation compatible RS256 key and the EAR keys never retire
    /// each other.
    fn retired_at(&self, k: &SigningKey, now: i64) -> Option<i64> {
        self.keys
            .iter()
            .filter(|j| j.alg.signs_ear() == k.alg.signs_ear())
            .filter(|j| j.order() > k.order() && j.active_from <= now)
            .filter(|j| j.revoked_at.is_none_or(|r| r > j.active_from))
            .map(|j| j.active_from)
            .min()
    }

    /// The state of `k` at `now`.
    pub fn state(&self, k: &SigningKey, now: i64) -> KeyState {
        if k.revoked_at.is_some() {
            return KeyState::Revoked;
        }
        if k.active_from > now {
            return KeyState::Pending;
        }
        match self.retired_at(k, now) {
            None => KeyState::Active,
            Some(r) => {
                let until = r.saturating_add(self.policy.token_ttl).saturating_add(self.policy.clock_skew);
                if now < until {
                    KeyState::Retired { until }
                } else {
                    KeyState::Expired
                }
            }
        }
    }

    /// The key to sign with at `now`: the most recently activated key that
    /// is not revoked. `None` when no key is active yet.
    pub fn signer(&self, now: i64) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg.signs_ear() && self.state(k, now) == KeyState::Active)
    }

    /// The key that signs the Azure Attestation compatible tokens at `now`
    /// (an RS256 key; never an EAR key). `None` when there is none yet.
    pub fn compat_signer(&self, now: i64) -> Option<&SigningKey> {
        self.keys.iter().find(|k| !k.alg.signs_ear() && self.state(k, now) == KeyState::Active)
    }

    /// The keys to publish in the JWKS at `now`: pending, active and
    /// retired-but-not-expired keys.
    pub fn published(&self, now: i64) -> Vec<&SigningKey> {
        self.keys.iter().filter(|k| matches!(self.state(k, now), KeyState::Pending | KeyState::Active | KeyState::Retired { .. })).collect()
    }

    /// Keys that may be deleted at `now` (expired or revoked).
    pub fn removable(&self, now: i64) -> Vec<&SigningKey> {
        self.keys.iter().filter(|k| matches!(self.state(k, now), KeyState::Expired | KeyState::Revoked)).collect()
    }

    /// When a key rotated in at `now` may start signing.
    pub fn activation_for_rotation(&self, now: i64) -> i64 {
        // With no key signing yet there is no token to protect: use it at once.
        if self.signer(now).is_none() {
            now
        } else {
            now.saturating_add(self.policy.publish_lead)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(kid: &str, created: i64, active: i64) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            custody: "local".into(),
            public_spki_der: vec![],
            handle: vec![],
            cert_chain: vec![],
            created_at: created,
            active_from: active,
            revoked_at: None,
        }
    }

    const P: RotationPolicy = RotationPolicy { publish_lead: 100, token_ttl: 50, clock_skew: 10 };

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_kept_until_its_tokens_expire() {
        let ring = KeyRing::new(vec![k("old", 0, 0), k("new", 1000, 1100)], P);
        // Between rotation and activation: both published, old still signs.
        assert_eq!(ring.signer(1050).unwrap().kid, "old");
        assert_eq!(ring.published(1050).len(), 2);
        assert_eq!(ring.state(&ring.keys()[1], 1050), KeyState::Pending);
        // New key signs from its activation; old stays for ttl + skew.
        assert_eq!(ring.signer(1100).unwrap().kid, "new");
        assert_eq!(ring.state(&ring.keys()[0], 1100), KeyState::Retired { until: 1160 });
        assert_eq!(ring.published(1159).len(), 2);
        // Old key's last token (iat 1099, exp 1149) + skew has passed.
        assert_eq!(ring.published(1160).iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(ring.removable(1160).len(), 1);
    }

    #[test]
    fn revoking_the_successor_does_not_bring_back_a_retired_key() {
        let mut keys = vec![k("old", 0, 0), k("new", 10, 20)];
        keys[1].revoked_at = Some(1000);
        let ring = KeyRing::new(keys.clone(), P);
        assert_eq!(ring.state(&ring.keys()[0], 1000), KeyState::Expired);
        assert!(ring.signer(1000).is_none(), "a replacement must be created");
        // Revoked while still pending: it never took over, the old key still signs.
        keys[1].revoked_at = Some(15);
        let ring = KeyRing::new(keys, P);
        assert_eq!(ring.signer(1000).unwrap().kid, "old");
    }

    #[test]
    fn a_revoked_key_is_unpublished_at_once_and_never_signs() {
        let mut keys = vec![k("a", 0, 0), k("b", 10, 10)];
        keys[1].revoked_at = Some(20);
        let ring = KeyRing::new(keys, P);
        // "b" is gone at once; "a" (retired when "b" took over) stays only
        // until its own tokens have expired, and never signs again.
        assert_eq!(ring.published(30).iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(ring.signer(30).is_none());
        assert!(ring.published(70).is_empty());
        assert_eq!(ring.removable(70).len(), 2);
    }

    #[test]
    fn the_rs256_compat_key_never_retires_the_ear_key_nor_the_reverse() {
        let mut rs = k("maa", 500, 500);
        rs.alg = Algorithm::RS256;
        let ring = KeyRing::new(vec![k("ear", 0, 0), rs, k("ear2", 1000, 1100)], P);
        // The RS256 key, newer, leaves the EAR key signing, and both are published.
        assert_eq!(ring.signer(600).unwrap().kid, "ear");
        assert_eq!(ring.compat_signer(600).unwrap().kid, "maa");
        assert_eq!(ring.published(600).len(), 3, "ear2 is already published, pending");
        // An EAR rotation retires the old EAR key only.
        assert_eq!(ring.signer(1100).unwrap().kid, "ear2");
        assert_eq!(ring.compat_signer(1100).unwrap().kid, "maa");
        assert_eq!(ring.state(&ring.keys()[1], 5000), KeyState::Active);
        // With only an RS256 key, no EAR key signs (one is made at once).
        let only = KeyRing::new(vec![ring.keys()[1].clone()], P);
        assert!(only.signer(600).is_none());
        assert_eq!(only.activation_for_rotation(600), 600);
    }

    #[test]
    fn the_first_key_is_used_at_once_later_ones_after_the_lead() {
        let empty = KeyRing::new(vec![], P);
        assert_eq!(empty.activation_for_rotation(500), 500);
        let one = KeyRing::new(vec![k("a", 0, 0)], P);
        assert_eq!(one.activation_for_rotation(500), 600);
        let pending_only = KeyRing::new(vec![k("a", 0, 1000)], P);
        assert!(pending_only.signer(500).is_none());
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // The example of RFC 7638 §3.1.
        let jwk = serde_json::json!({
            "kty": "RSA", "alg": "PS256", "kid": "2011-04-29", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(thumbprint(&key), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
