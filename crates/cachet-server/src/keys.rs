//! The signing-key service: the key ring kept in the store, cached, used to
//! sign tokens and to publish the JWKS; rotation, revocation, import.
//!
//! Other processes (`cachet keys rotate` next to a running server, other
//! replicas) change the same store; the cache is refreshed every
//! [`REFRESH_INTERVAL`] and after every change made here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachet_store::{AuditEntry, SigningKeyRecord, Store, StoreError};
use cachet_token::keyring::{thumbprint_kid, KeyState};
use cachet_token::{jwk, jws, Algorithm, KeyCustody, KeyRing, RotationPolicy, SigningKey, TokenError};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::RwLock;
use utoipa::ToSchema;

/// How often the cached key ring is re-read from the store.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// A key-service failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key operation failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The request names no such key, or is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// A signing key as listed by the admin API and `cachet keys list`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    /// Key ID (RFC 7638 thumbprint).
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Custody (`local`).
    pub custody: String,
    /// `pending`, `active`, `retired`, `expired` or `revoked`.
    pub state: String,
    /// Created and published at (Unix seconds).
    pub created_at: i64,
    /// Signs from (Unix seconds).
    pub active_from: i64,
    /// Leaves the JWKS at (retired keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_until: Option<i64>,
    /// Revoked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Whether a certificate chain is attached (published as `x5c`).
    pub has_certificate: bool,
}

fn to_key(r: SigningKeyRecord) -> Result<SigningKey, KeyError> {
    let alg = Algorithm::parse(&r.alg).ok_or_else(|| KeyError::Invalid(format!("stored key {} has unknown alg {}", r.kid, r.alg)))?;
    Ok(SigningKey {
        kid: r.kid,
        alg,
        custody: r.custody,
        public_spki_der: r.public_spki,
        handle: r.handle,
        cert_chain: r.cert_chain,
        created_at: r.created_at,
        active_from: r.active_from,
        revoked_at: r.revoked_at,
    })
}

fn to_record(k: &SigningKey) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: k.kid.clone(),
        alg: k.alg.as_str().to_string(),
        custody: k.custody.clone(),
        public_spki: k.public_spki_der.clone(),
        handle: k.handle.clone(),
        cert_chain: k.cert_chain.clone(),
        created_at: k.created_at,
        active_from: k.active_from,
        revoked_at: k.revoked_at,
    }
}

fn audit(actor: &str, action: &str, now: i64, detail: Value) -> AuditEntry {
    AuditEntry { ts: now, actor: actor.into(), action: action.into(), outcome: "ok".into(), detail, ..Default::default() }
}

/// Signing keys: store + custody + rotation policy + cache.
pub struct KeyService {
    store: Arc<dyn Store>,
    custody: Arc<dyn KeyCustody>,
    policy: RotationPolicy,
    alg: Algorithm,
    cache: RwLock<Option<(Instant, KeyRing)>>,
}

impl KeyService {
    /// A service over `store` whose new keys use `alg`.
    pub fn new(store: Arc<dyn Store>, custody: Arc<dyn KeyCustody>, policy: RotationPolicy, alg: Algorithm) -> Self {
        Self { store, custody, policy, alg, cache: RwLock::new(None) }
    }

    /// The rotation policy.
    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// Re-read the key ring from the store.
    pub async fn refresh(&self) -> Result<KeyRing, KeyError> {
        let keys = self.store.list_signing_keys().await?.into_iter().map(to_key).collect::<Result<Vec<_>, _>>()?;
        let ring = KeyRing::new(keys, self.policy);
        *self.cache.write().await = Some((Instant::now(), ring.clone()));
        Ok(ring)
    }

    /// The key ring, from the cache when fresh.
    pub async fn ring(&self) -> Result<KeyRing, KeyError> {
        if let Some((at, ring)) = &*self.cache.read().await {
            if at.elapsed() < REFRESH_INTERVAL {
                return Ok(ring.clone());
            }
        }
        self.refresh().await
    }

    async fn create(&self, actor: &str, now: i64, active_from: i64, action: &str) -> Result<SigningKey, KeyError> {
        let custody = self.custody.clone();
        let alg = self.alg;
        // Key generation (RSA especially) is CPU work: keep it off the async workers.
        let generated = tokio::task::spawn_blocking(move || custody.generate(alg, "cachet-token-signing"))
            .await
            .map_err(|e| KeyError::Invalid(format!("key generation task: {e}")))??;
        let kid = thumbprint_kid(alg, &generated.public_spki_der)?;
        let key = SigningKey::new(&kid, alg, self.custody.name(), generated, now, active_from);
        let detail = serde_json::json!({"kid": kid, "alg": alg.as_str(), "active_from": active_from});
        self.store.insert_signing_key(&to_record(&key), &audit(actor, action, now, detail)).await?;
        self.refresh().await?;
        Ok(key)
    }

    /// Seal under the KEK the software keys an earlier version stored as
    /// plaintext PKCS#8 (custody `local`), so the database alone no longer
    /// signs. Runs at start; a key another process sealed first is skipped.
    /// Returns the kids sealed.
    pub async fn seal_plaintext_keys(&self, actor: &str, now: i64) -> Result<Vec<String>, KeyError> {
        const PLAINTEXT: &str = "local";
        if self.custody.name() != cachet_keybroker::custody::SEALED_CUSTODY {
            return Ok(Vec::new());
        }
        let ring = self.refresh().await?;
        let mut sealed = Vec::new();
        for k in ring.keys().iter().filter(|k| k.custody == PLAINTEXT) {
            let moved = self.custody.import_pkcs8(k.alg, &k.handle, "cachet-token-signing")?;
            if moved.public_spki_der != k.public_spki_der {
                return Err(KeyError::Invalid(format!("stored key {} does not match its public key", k.kid)));
            }
            let a = audit(actor, "signing_key.seal", now, serde_json::json!({"kid": k.kid, "from": PLAINTEXT, "to": self.custody.name()}));
            if self.store.move_signing_key(&k.kid, PLAINTEXT, self.custody.name(), &moved.handle, &a).await? {
                tracing::info!(kid = %k.kid, "sealed a plaintext signing key under the key-encryption key");
                sealed.push(k.kid.clone());
            }
        }
        if !sealed.is_empty() {
            self.refresh().await?;
        }
        Ok(sealed)
    }

    /// Make sure some key can sign at `now`: on first start (or when every
    /// key was revoked or expired) create one that signs at once — there is
    /// no earlier token for which it would have to be pre-published.
    pub async fn ensure_signer(&self, actor: &str, now: i64) -> Result<(), KeyError> {
        let ring = self.refresh().await?;
        if ring.signer(now).is_some() {
            return Ok(());
        }
        let key = self.create(actor, now, now, "signing_key.create").await?;
        tracing::info!(kid = %key.kid, alg = %key.alg, "created the first token signing key");
        Ok(())
    }

    /// Rotate: publish a new key now; it signs after the publish lead
    /// (at once when no key is active).
    pub async fn rotate(&self, actor: &str, now: i64) -> Result<KeyInfo, KeyError> {
        let ring = self.refresh().await?;
        let active_from = ring.activation_for_rotation(now);
        let key = self.create(actor, now, active_from, "signing_key.rotate").await?;
        tracing::info!(kid = %key.kid, active_from, "rotated: new signing key published");
        let ring = self.ring().await?;
        Ok(info(&ring, &key, now))
    }

    /// Rotate automatically when the signer is older than `max_age` and no
    /// key is waiting to take over. Returns the new key, if any.
    pub async fn auto_rotate(&self, max_age: i64, now: i64) -> Result<Option<KeyInfo>, KeyError> {
        if max_age <= 0 {
            return Ok(None);
        }
        let ring = self.refresh().await?;
        let pending = ring.keys().iter().any(|k| ring.state(k, now) == KeyState::Pending);
        match ring.signer(now) {
            Some(s) if !pending && now.saturating_sub(s.active_from) >= max_age => Ok(Some(self.rotate("server", now).await?)),
            _ => Ok(None),
        }
    }

    /// Revoke a key (compromise): unpublished at once. When it was the
    /// signing key, a replacement that signs at once is created.
    pub async fn revoke(&self, kid: &str, actor: &str, now: i64) -> Result<bool, KeyError> {
        let ring = self.refresh().await?;
        let was_signer = ring.signer(now).map(|k| k.kid == kid).unwrap_or(false);
        let done =
            self.store.revoke_signing_key(kid, now, &audit(actor, "signing_key.revoke", now, serde_json::json!({"kid": kid}))).await?;
        let ring = self.refresh().await?;
        if done && was_signer && ring.signer(now).is_none() {
            let key = self.create(actor, now, now, "signing_key.emergency_replace").await?;
            tracing::warn!(revoked = %kid, replacement = %key.kid, "revoked the signing key; replacement signs at once");
        }
        Ok(done)
    }

    /// Delete expired and revoked keys (their private keys go with them).
    pub async fn prune(&self, actor: &str, now: i64) -> Result<Vec<String>, KeyError> {
        let ring = self.refresh().await?;
        let gone: Vec<SigningKey> = ring.removable(now).into_iter().cloned().collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let kids: Vec<String> = gone.iter().map(|k| k.kid.clone()).collect();
        self.store.delete_signing_keys(&kids, &audit(actor, "signing_key.prune", now, serde_json::json!({"kids": kids}))).await?;
        for k in &gone {
            if k.custody == self.custody.name() {
                if let Err(e) = self.custody.destroy(&k.handle) {
                    tracing::warn!(kid = %k.kid, error = %e, "could not destroy a pruned key in its custody");
                }
            }
        }
        self.refresh().await?;
        Ok(kids)
    }

    /// Import a PKCS#8 private key (and its certificate chain, leaf first,
    /// whose leaf must certify this key), published now, signing after the
    /// publish lead (at once when no key is active).
    pub async fn import(&self, alg: Algorithm, pkcs8: &[u8], chain: Vec<Vec<u8>>, actor: &str, now: i64) -> Result<KeyInfo, KeyError> {
        let imported = self.custody.import_pkcs8(alg, pkcs8, "cachet-token-signing")?;
        let kid = thumbprint_kid(alg, &imported.public_spki_der)?;
        let ring = self.refresh().await?;
        let mut key = SigningKey::new(&kid, alg, self.custody.name(), imported, now, ring.activation_for_rotation(now));
        check_chain(&key, &chain)?;
        key.cert_chain = chain;
        let detail =
            serde_json::json!({"kid": kid, "alg": alg.as_str(), "active_from": key.active_from, "certificate": !key.cert_chain.is_empty()});
        self.store.insert_signing_key(&to_record(&key), &audit(actor, "signing_key.import", now, detail)).await?;
        let ring = self.refresh().await?;
        Ok(info(&ring, &key, now))
    }

    /// Attach a certificate chain (leaf first) to a key; the leaf must
    /// certify the key's public key.
    pub async fn attach_chain(&self, kid: &str, chain: Vec<Vec<u8>>, actor: &str, now: i64) -> Result<(), KeyError> {
        let ring = self.refresh().await?;
        let key = ring.keys().iter().find(|k| k.kid == kid).ok_or_else(|| KeyError::Invalid(format!("no key {kid}")))?;
        check_chain(key, &chain)?;
        let a = audit(actor, "signing_key.attach_certificate", now, serde_json::json!({"kid": kid, "certificates": chain.len()}));
        self.store.set_signing_key_chain(kid, &chain, &a).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Sign `claims` with the key active at `now`; returns the token and kid.
    pub async fn sign(&self, claims: &Value, now: i64) -> Result<(String, String), KeyError> {
        self.sign_typed(claims, now, "JWT").await
    }

    /// Whether the active key can sign at `now`: its custody must open it (a
    /// replica holding another key-encryption key than the one the shared
    /// keys were sealed under cannot). Signs a throw-away probe; the kid.
    pub async fn check_signer(&self, now: i64) -> Result<String, KeyError> {
        self.sign_typed(&serde_json::json!({"probe": "readiness"}), now, "JWT").await.map(|(_, kid)| kid)
    }

    /// [`KeyService::sign`] with JWS header `typ` (e.g. a release statement).
    pub async fn sign_typed(&self, claims: &Value, now: i64, typ: &str) -> Result<(String, String), KeyError> {
        let mut ring = self.ring().await?;
        if ring.signer(now).is_none() {
            ring = self.refresh().await?;
        }
        let key = ring.signer(now).ok_or(TokenError::NoSigningKey)?;
        let token = jws::sign_typed(claims, key, self.custody.as_ref(), typ)?;
        Ok((token, key.kid.clone()))
    }

    /// Make sure an RS256 key signs the Azure Attestation compatible tokens
    /// at `now` (`crate::maa`): on first start (or after it was revoked)
    /// one is generated in this service's custody, with a self-signed
    /// certificate (`CN=common_name`, signed through the custody) published
    /// as its `x5c`, stored and audited like the other keys. It rotates
    /// apart from the EAR keys (`Algorithm::signs_ear`). Returns it.
    pub async fn ensure_compat_signer(&self, actor: &str, now: i64, common_name: &str) -> Result<SigningKey, KeyError> {
        let ring = self.ring().await?;
        if let Some(k) = ring.compat_signer(now).filter(|k| !k.cert_chain.is_empty()) {
            return Ok(k.clone());
        }
        let ring = self.refresh().await?;
        if let Some(k) = ring.compat_signer(now).filter(|k| !k.cert_chain.is_empty()) {
            return Ok(k.clone());
        }
        let alg = Algorithm::RS256;
        let custody = self.custody.clone();
        let cn = common_name.to_string();
        // RSA generation is CPU work: off the async workers.
        let (generated, cert) = tokio::task::spawn_blocking(move || {
            let g = custody.generate(alg, "cachet-maa-token-signing")?;
            let cert = cachet_token::cert::self_signed(alg, &g.public_spki_der, &cn, now - 300, now + 10 * 365 * 86_400, |tbs| {
                custody.sign(alg, &g.handle, tbs)
            })?;
            Ok::<_, TokenError>((g, cert))
        })
        .await
        .map_err(|e| KeyError::Invalid(format!("key generation task: {e}")))??;
        let kid = thumbprint_kid(alg, &generated.public_spki_der)?;
        let mut key = SigningKey::new(&kid, alg, self.custody.name(), generated, now, now);
        key.cert_chain = vec![cert];
        let detail =
            serde_json::json!({"kid": kid, "alg": alg.as_str(), "active_from": now, "use": "azure-attestation", "certificate": true});
        self.store.insert_signing_key(&to_record(&key), &audit(actor, "signing_key.create", now, detail)).await?;
        self.refresh().await?;
        tracing::info!(kid = %key.kid, "created the RS256 key of the Azure Attestation compatible routes");
        Ok(key)
    }

    /// Sign `claims` with the Azure Attestation compatible key (RS256),
    /// creating it if there is none; returns the token and kid.
    pub async fn sign_compat(&self, claims: &Value, now: i64, common_name: &str) -> Result<(String, String), KeyError> {
        let key = self.ensure_compat_signer("server", now, common_name).await?;
        let token = jws::sign(claims, &key, self.custody.as_ref())?;
        Ok((token, key.kid))
    }

    /// The JWKS document at `now`.
    pub async fn jwks(&self, now: i64) -> Result<Value, KeyError> {
        let ring = self.ring().await?;
        let mut keys = Vec::new();
        for k in ring.published(now) {
            match k.public_key() {
                Ok(pk) => keys.push((pk, k.cert_chain.clone())),
                Err(e) => tracing::error!(kid = %k.kid, error = %e, "stored public key unusable; not published"),
            }
        }
        Ok(jwk::jwks(keys.iter().map(|(k, c)| (k, c.as_slice()))))
    }

    /// Every key with its state.
    pub async fn list(&self, now: i64) -> Result<Vec<KeyInfo>, KeyError> {
        let ring = self.refresh().await?;
        Ok(ring.keys().iter().map(|k| info(&ring, k, now)).collect())
    }
}

/// The listing entry of a key.
pub fn info(ring: &KeyRing, k: &SigningKey, now: i64) -> KeyInfo {
    let state = ring.state(k, now);
    KeyInfo {
        kid: k.kid.clone(),
        alg: k.alg.as_str().into(),
        custody: k.custody.clone(),
        state: state.name().into(),
        created_at: k.created_at,
        active_from: k.active_from,
        published_until: match state {
            KeyState::Retired { until } => Some(until),
            _ => None,
        },
        revoked_at: k.revoked_at,
        has_certificate: !k.cert_chain.is_empty(),
    }
}

fn check_chain(key: &SigningKey, chain: &[Vec<u8>]) -> Result<(), KeyError> {
    let Some(leaf) = chain.first() else { return Ok(()) };
    let pk = key.public_key()?;
    if !pk.matches_certificate(leaf) {
        return Err(KeyError::Invalid("the certificate does not certify this key (public keys differ)".into()));
    }
    Ok(())
}
