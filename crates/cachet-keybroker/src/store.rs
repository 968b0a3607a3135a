//! Where sealed secrets are kept: a small async interface, so the service's
//! SQL store can hold them, and an in-memory implementation for tests and
//! embedding.
//!
//! Every operation is keyed by `(owner, name)`: there is no way to address
//! a secret without naming its owner, so owner scoping is structural. The
//! caller (the admin API) supplies the owner from the authenticated API
//! key's tenant, never from the request body.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::envelope::Sealed;
use crate::BrokerError;

/// A secret as stored: identity, policy and the sealed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// The owning tenant.
    pub owner: String,
    /// The secret's name within its owner.
    pub name: String,
    /// The release policy (Rego text).
    pub policy: String,
    /// SHA-256 of the policy text (hex).
    pub policy_hash: String,
    /// The value, envelope-encrypted.
    pub sealed: Sealed,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last update (Unix seconds).
    pub updated_at: i64,
    /// Incremented on every update (1 on creation).
    pub version: i64,
}

impl SecretRecord {
    /// Re-base this write on `previous` (what the store holds now) after a
    /// lost compare-and-swap: the next version, the original creation time.
    /// The sealed value does not depend on either, so it is not sealed again.
    pub fn follow(&mut self, previous: Option<&SecretRecord>) {
        self.version = previous.map_or(1, |p| p.version.saturating_add(1));
        self.created_at = previous.map_or(self.updated_at, |p| p.created_at);
    }
}

/// Persistence of sealed secrets.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// Write the secret `(record.owner, record.name)` as a compare-and-swap
    /// on its version: version 1 creates it (refused if it exists), version
    /// n > 1 replaces version n - 1 only. A lost race is
    /// [`BrokerError::Conflict`] and writes nothing.
    async fn put_secret(&self, record: &SecretRecord) -> Result<(), BrokerError>;
    /// The secret `(owner, name)`, if it exists.
    async fn get_secret(&self, owner: &str, name: &str) -> Result<Option<SecretRecord>, BrokerError>;
    /// Delete `(owner, name)`; whether it existed.
    async fn delete_secret(&self, owner: &str, name: &str) -> Result<bool, BrokerError>;
    /// Every secret of `owner`, by name.
    async fn list_secrets(&self, owner: &str) -> Result<Vec<SecretRecord>, BrokerError>;
}

type Records = BTreeMap<(String, String), SecretRecord>;

/// Secrets in memory (tests, embedding).
#[derive(Default)]
pub struct MemorySecretStore {
    records: Mutex<Records>,
}

impl MemorySecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything the store holds, serialised as it would be at rest (for
    /// tests that assert no plaintext is stored).
    pub fn at_rest_bytes(&self) -> Vec<u8> {
        let recs: Vec<SecretRecord> = self.records.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        serde_json::to_vec(&recs).unwrap_or_default()
    }

    /// A store holding what [`MemorySecretStore::at_rest_bytes`] returned
    /// (to simulate a restart in tests).
    pub fn from_at_rest_bytes(bytes: &[u8]) -> Result<Self, BrokerError> {
        let recs: Vec<SecretRecord> = serde_json::from_slice(bytes).map_err(|e| BrokerError::Store(format!("at-rest bytes: {e}")))?;
        let store = Self::new();
        if let Ok(mut m) = store.records.lock() {
            for r in recs {
                m.insert((r.owner.clone(), r.name.clone()), r);
            }
        }
        Ok(store)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Records>, BrokerError> {
        self.records.lock().map_err(|_| BrokerError::Store("lock poisoned".into()))
    }
}

#[async_trait::async_trait]
impl SecretStore for MemorySecretStore {
    async fn put_secret(&self, record: &SecretRecord) -> Result<(), BrokerError> {
        let mut m = self.lock()?;
        let key = (record.owner.clone(), record.name.clone());
        let stored = m.get(&key).map_or(0, |r| r.version);
        if stored != record.version.max(1) - 1 {
            return Err(BrokerError::Conflict(format!(
                "secret {}/{} is at version {stored}, not {}",
                record.owner,
                record.name,
                record.version - 1
            )));
        }
        m.insert(key, record.clone());
        Ok(())
    }

    async fn get_secret(&self, owner: &str, name: &str) -> Result<Option<SecretRecord>, BrokerError> {
        Ok(self.lock()?.get(&(owner.to_string(), name.to_string())).cloned())
    }

    async fn delete_secret(&self, owner: &str, name: &str) -> Result<bool, BrokerError> {
        Ok(self.lock()?.remove(&(owner.to_string(), name.to_string())).is_some())
    }

    async fn list_secrets(&self, owner: &str) -> Result<Vec<SecretRecord>, BrokerError> {
        Ok(self.lock()?.values().filter(|r| r.owner == owner).cloned().collect())
    }
}
