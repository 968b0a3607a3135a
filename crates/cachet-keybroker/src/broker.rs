//! The key broker: owners put secrets with release policies; attested
//! workloads ask for them; each secret is released only under its own
//! owner's policy, encrypted to the key the workload bound into its evidence.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope;
use crate::jwe::{self, WorkloadKey};
use crate::kek::KeyEncryptionKey;
use crate::policy::ReleasePolicies;
use crate::refvals::OwnerReferenceValues;
use crate::secret::SecretValue;
use crate::store::{SecretRecord, SecretStore};
use crate::BrokerError;

/// Most secrets one release request may name.
pub const MAX_SECRETS_PER_REQUEST: usize = 32;

/// Longest owner or secret name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `s` is a valid owner (tenant) or secret name:
/// 1–128 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit. No `/`
/// (it separates owner and name in release requests), no path tricks.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_names(owner: &str, name: &str) -> Result<(), BrokerError> {
    if !valid_name(owner) {
        return Err(BrokerError::Invalid("owner names are 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit".into()));
    }
    if !valid_name(name) {
        return Err(BrokerError::Invalid("secret names are 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit".into()));
    }
    Ok(())
}

/// What may be shown about a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// The owning tenant.
    pub owner: String,
    /// The name within the owner.
    pub name: String,
    /// The release policy (Rego).
    pub policy: String,
    /// SHA-256 of the policy (hex).
    pub policy_hash: String,
    /// KEK custodian and id the value is sealed under.
    pub kek: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last update (Unix seconds).
    pub updated_at: i64,
    /// Version (1 on creation).
    pub version: i64,
    /// The stored policy text no longer has the stored hash: it was edited
    /// outside the service, and the secret will not be released until its
    /// owner writes it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy_altered: bool,
}

impl From<&SecretRecord> for SecretMeta {
    fn from(r: &SecretRecord) -> Self {
        SecretMeta {
            owner: r.owner.clone(),
            name: r.name.clone(),
            policy: r.policy.clone(),
            policy_hash: r.policy_hash.clone(),
            kek: format!("{} {}", r.sealed.kek_kind, r.sealed.kek_id),
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
            policy_altered: !policy_intact(r),
        }
    }
}

/// Whether a record's policy text still has the hash stored (and sealed)
/// with it. The seal binds the hash; this names an edited text early.
pub fn policy_intact(r: &SecretRecord) -> bool {
    cachet_appraise::policy_hash(&r.policy) == r.policy_hash
}

/// How often [`KeyBroker::put_secret`] retries a write that lost a race.
pub const MAX_PUT_ATTEMPTS: usize = 64;

/// A release request: verified token claims and the secrets wanted.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The claims of an attestation token whose signature, issuer and
    /// expiry the caller has verified (`cachet_token::jws::verify`).
    pub claims: Value,
    /// Secrets wanted, as `owner/name`.
    pub secrets: Vec<String>,
    /// The key the requester wants the secrets encrypted to, if it names
    /// one: it must be the key bound in the token (else: key substitution).
    pub workload_key: Option<Value>,
}

/// What happened to one requested secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResult {
    /// `owner/name` as requested.
    pub secret: String,
    /// The owner (empty when the reference was malformed).
    pub owner: String,
    /// Whether the secret was released.
    pub released: bool,
    /// Why it was released or refused (never the value).
    pub reason: String,
    /// The stable code of a refusal (`policy_refused`, `no_such_secret`,
    /// `secret_policy_altered`, `key_custody_unavailable`, ...); `None` when released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// SHA-256 of the owner's policy that decided, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The value as a compact JWE encrypted to the workload key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwe: Option<String>,
}

/// The broker's answer to a release request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// The token's `jti`.
    pub token_id: Option<String>,
    /// RFC 7638 thumbprint of the workload key the JWEs are encrypted to.
    pub workload_key: Option<String>,
    /// One result per distinct requested secret, in request order.
    pub results: Vec<ReleaseResult>,
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Refuse tokens whose evidence was not bound to a verifier nonce
    /// (`cachet.freshness` other than `nonce`). On by default.
    pub require_freshness: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self { require_freshness: true }
    }
}

/// The runtime data bound in the token (`cachet.runtime_data`, base64url)
/// parsed as JSON, when it is JSON.
pub fn runtime_data_json(claims: &Value) -> Option<Value> {
    let b = URL_SAFE_NO_PAD.decode(claims.get("cachet.runtime_data")?.as_str()?).ok()?;
    serde_json::from_slice::<Value>(&b).ok()
}

/// The workload's public key from the token's runtime data. The runtime
/// data is a UTF-8 JSON object that is either the public JWK itself or has
/// it under `"jwk"` (room for other members beside it).
pub fn workload_key_of(claims: &Value) -> Result<WorkloadKey, String> {
    let rd = claims.get("cachet.runtime_data").ok_or("the token carries no runtime data, so no workload key to encrypt to")?;
    let bytes = rd.as_str().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or("the token's runtime data is not base64url")?;
    let json: Value =
        serde_json::from_slice(&bytes).map_err(|_| "the token's runtime data is not a JSON object carrying a JWK".to_string())?;
    let jwk = if json.get("kty").is_some() {
        &json
    } else {
        json.get("jwk").ok_or("the token's runtime data has no JWK (neither a JWK nor a \"jwk\" member)")?
    };
    WorkloadKey::from_jwk(jwk).map_err(|e| e.to_string())
}

/// Owners' secrets, sealed under a KEK, released under owners' policies.
pub struct KeyBroker {
    kek: Arc<dyn KeyEncryptionKey>,
    store: Arc<dyn SecretStore>,
    policies: ReleasePolicies,
    refvals: RwLock<Arc<OwnerReferenceValues>>,
    config: BrokerConfig,
}

impl KeyBroker {
    /// A broker sealing with `kek` and keeping secrets in `store`.
    pub fn new(kek: Arc<dyn KeyEncryptionKey>, store: Arc<dyn SecretStore>, config: BrokerConfig) -> Self {
        Self { kek, store, policies: ReleasePolicies::default(), refvals: RwLock::default(), config }
    }

    /// Replace the reference values release policies see: each owner's
    /// policies read only the view `refvals` gives that owner.
    pub fn set_reference_values(&self, refvals: OwnerReferenceValues) {
        if let Ok(mut r) = self.refvals.write() {
            *r = Arc::new(refvals);
        }
    }

    /// The release-policy validator and cache.
    pub fn release_policies(&self) -> &ReleasePolicies {
        &self.policies
    }

    /// The KEK in use (its `kind` and `key_id`).
    pub fn kek(&self) -> &dyn KeyEncryptionKey {
        self.kek.as_ref()
    }

    /// Create or replace `owner`'s secret `name` with `value` and `policy`.
    /// The policy is validated first, so a broken policy never replaces a
    /// working one; the value is sealed under a fresh data key.
    pub async fn put_secret(
        &self,
        owner: &str,
        name: &str,
        value: &SecretValue,
        policy: &str,
        now: i64,
    ) -> Result<SecretMeta, BrokerError> {
        let previous = self.store.get_secret(owner, name).await?;
        let mut record = self.prepare_secret(owner, name, value, policy, previous.as_ref(), now)?;
        for _ in 0..MAX_PUT_ATTEMPTS {
            match self.store.put_secret(&record).await {
                Ok(()) => return Ok(SecretMeta::from(&record)),
                Err(BrokerError::Conflict(_)) => {
                    let previous = self.store.get_secret(owner, name).await?;
                    record.follow(previous.as_ref());
                }
                Err(e) => return Err(e),
            }
        }
        Err(BrokerError::Conflict(format!("secret {owner}/{name} kept changing; try again")))
    }

    /// The record [`KeyBroker::put_secret`] stores, without storing it (for
    /// callers that write it together with an audit entry): names and policy
    /// validated, value sealed, version and creation time carried over from
    /// `previous`.
    pub fn prepare_secret(
        &self,
        owner: &str,
        name: &str,
        value: &SecretValue,
        policy: &str,
        previous: Option<&SecretRecord>,
        now: i64,
    ) -> Result<SecretRecord, BrokerError> {
        check_names(owner, name)?;
        if value.is_empty() {
            return Err(BrokerError::Invalid("a secret value cannot be empty".into()));
        }
        self.policies.validate(policy)?;
        let policy_hash = cachet_appraise::policy_hash(policy);
        let sealed = envelope::seal(self.kek.as_ref(), owner, name, &policy_hash, value)?;
        Ok(SecretRecord {
            owner: owner.to_string(),
            name: name.to_string(),
            policy: policy.to_string(),
            policy_hash,
            sealed,
            created_at: previous.map_or(now, |p| p.created_at),
            updated_at: now,
            version: previous.map_or(1, |p| p.version.saturating_add(1)),
        })
    }

    /// `owner`'s secret `name`, without its value. A secret whose stored
    /// policy was edited outside the service is [`BrokerError::PolicyAltered`].
    pub async fn get_secret(&self, owner: &str, name: &str) -> Result<Option<SecretMeta>, BrokerError> {
        check_names(owner, name)?;
        match self.store.get_secret(owner, name).await? {
            Some(r) if !policy_intact(&r) => Err(policy_altered(owner, name)),
            r => Ok(r.as_ref().map(SecretMeta::from)),
        }
    }

    /// `owner`'s secrets, without values.
    pub async fn list_secrets(&self, owner: &str) -> Result<Vec<SecretMeta>, BrokerError> {
        if !valid_name(owner) {
            return Err(BrokerError::Invalid("bad owner name".into()));
        }
        Ok(self.store.list_secrets(owner).await?.iter().map(SecretMeta::from).collect())
    }

    /// Delete `owner`'s secret `name`; whether it existed.
    pub async fn delete_secret(&self, owner: &str, name: &str) -> Result<bool, BrokerError> {
        check_names(owner, name)?;
        self.store.delete_secret(owner, name).await
    }

    /// Decide a release request at `now` (Unix seconds). Each requested
    /// secret is decided by its own owner's policy alone; released values
    /// come back as JWEs encrypted to the workload key bound in the token.
    /// Errors only for a malformed request (too many names); refusals are
    /// per-secret results with reasons.
    pub async fn release(&self, req: &ReleaseRequest, now: i64) -> Result<ReleaseResponse, BrokerError> {
        let mut seen = BTreeSet::new();
        let wanted: Vec<&String> = req.secrets.iter().filter(|s| seen.insert(s.as_str())).collect();
        if wanted.is_empty() {
            return Err(BrokerError::Invalid("name at least one secret".into()));
        }
        if wanted.len() > MAX_SECRETS_PER_REQUEST {
            return Err(BrokerError::Invalid(format!("at most {MAX_SECRETS_PER_REQUEST} secrets per request")));
        }
        let token_id = req.claims.get("jti").and_then(Value::as_str).map(str::to_string);
        let key = workload_key_of(&req.claims);
        let refuse_all = |code: &str, reason: String, key: Option<String>| ReleaseResponse {
            token_id: token_id.clone(),
            workload_key: key,
            results: wanted
                .iter()
                .map(|s| ReleaseResult {
                    secret: s.to_string(),
                    owner: s.split_once('/').map(|(o, _)| o.to_string()).filter(|o| valid_name(o)).unwrap_or_default(),
                    released: false,
                    reason: reason.clone(),
                    code: Some(code.to_string()),
                    policy_hash: None,
                    jwe: None,
                })
                .collect(),
        };
        // Request-wide preconditions: a live token, freshness, the key.
        match req.claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp > now => {}
            _ => return Ok(refuse_all("token_expired", "the attestation token has expired".into(), None)),
        }
        if self.config.require_freshness && req.claims.get("cachet.freshness").and_then(Value::as_str) != Some("nonce") {
            return Ok(refuse_all(
                "freshness_not_established",
                "the attestation did not establish freshness (no verifier nonce bound in the evidence)".into(),
                None,
            ));
        }
        let key = match key {
            Ok(k) => k,
            Err(e) => return Ok(refuse_all("no_workload_key", format!("no usable workload key: {e}"), None)),
        };
        let thumb = key.thumbprint();
        if let Some(asked) = &req.workload_key {
            match WorkloadKey::from_jwk(asked) {
                Ok(k) if k == key => {}
                Ok(k) => {
                    return Ok(refuse_all(
                        "key_substitution",
                        format!("key substitution: the request names key {} but the attestation is bound to key {thumb}", k.thumbprint()),
                        Some(thumb),
                    ))
                }
                Err(e) => return Ok(refuse_all("workload_key_unusable", format!("the requested key is unusable: {e}"), Some(thumb))),
            }
        }
        let refvals = self.refvals.read().map(|r| r.clone()).unwrap_or_default();
        let mut results = Vec::with_capacity(wanted.len());
        for s in wanted {
            results.push(self.release_one(s, &req.claims, &key, &refvals, now).await);
        }
        Ok(ReleaseResponse { token_id, workload_key: Some(thumb), results })
    }

    async fn release_one(
        &self,
        reference: &str,
        claims: &Value,
        key: &WorkloadKey,
        refvals: &OwnerReferenceValues,
        now: i64,
    ) -> ReleaseResult {
        let mut r = ReleaseResult {
            secret: reference.to_string(),
            owner: String::new(),
            released: false,
            reason: String::new(),
            code: None,
            policy_hash: None,
            jwe: None,
        };
        let refuse = |mut r: ReleaseResult, code: &str, reason: String| {
            r.code = Some(code.to_string());
            r.reason = reason;
            r
        };
        let Some((owner, name)) = reference.split_once('/').filter(|(o, n)| valid_name(o) && valid_name(n)) else {
            return refuse(r, "invalid_reference", "not a secret reference (owner/name)".into());
        };
        r.owner = owner.to_string();
        let record = match self.store.get_secret(owner, name).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return refuse(r, "no_such_secret", "no such secret".into()),
            Err(e) => return refuse(r, e.code(), format!("the secret store failed: {e}")),
        };
        // The policy that decides must be the one sealed with the value: an
        // edited text is named here, an edited text *and* hash fails the seal.
        if !policy_intact(&record) {
            return refuse(r, "secret_policy_altered", policy_altered(owner, name).to_string());
        }
        // The owner's policy reads the owner's reference values only.
        let decision = self.policies.decide(&record.policy, claims, &refvals.for_owner(owner), now);
        r.policy_hash = Some(decision.policy_hash.clone());
        if !decision.allowed {
            return refuse(r, "policy_refused", decision.reason);
        }
        r.reason = decision.reason;
        let value = match envelope::open(self.kek.as_ref(), owner, name, &decision.policy_hash, &record.sealed) {
            Ok(v) => v,
            Err(e) => return refuse(r, e.code(), format!("the secret could not be opened: {e}")),
        };
        let mut extra = Map::new();
        extra.insert("cachet.secret".into(), reference.into());
        if let Some(jti) = claims.get("jti") {
            extra.insert("cachet.token_id".into(), jti.clone());
        }
        match jwe::encrypt(key, value.expose(), &extra) {
            Ok(j) => {
                r.released = true;
                r.jwe = Some(j);
                r
            }
            Err(e) => refuse(r, "encryption_failed", format!("encrypting to the workload key failed: {e}")),
        }
    }
}

/// The error for a secret whose stored policy does not match its seal.
fn policy_altered(owner: &str, name: &str) -> BrokerError {
    BrokerError::PolicyAltered(format!(
        "secret {owner}/{name}: the stored release policy does not match the policy hash sealed with the value \
         (edited outside the service); it is not released. Its owner should check the database's integrity and PUT the secret again"
    ))
}
