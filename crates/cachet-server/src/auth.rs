//! Admin API keys: creation, hashing, and the request guard.
//!
//! A key reads `cachet_<id>_<secret>`: `id` (16 hex digits) finds the record,
//! `secret` (64 hex digits, 256 random bits) is checked against its stored
//! SHA-256 in constant time. A plain hash suffices because the secret is
//! random and long (nothing to brute-force), unlike a password.
//! Roles: `reader` (read-only admin routes) ⊂ `admin` (everything).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use cachet_store::{ApiKeyRecord, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only admin routes (key lists, audit log).
    Reader,
    /// Every admin route.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of an admin route.
#[derive(Debug, Clone)]
pub struct Principal {
    /// API key id.
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// The tenant it acts for (the owner of key-broker secrets), if any.
    pub tenant: Option<String>,
}

impl Principal {
    /// The audit actor name.
    pub fn actor(&self) -> String {
        format!("api-key:{}", self.key_id)
    }
}

/// A freshly created key: the secret string (shown once) and its record.
pub struct NewApiKey {
    /// The full key to give the user; not stored anywhere.
    pub key: String,
    /// What is stored.
    pub record: ApiKeyRecord,
}

/// Hex SHA-256 of a key's secret part.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()))
}

/// Create a key with a random id and secret, acting for no tenant.
pub fn new_api_key(name: &str, role: Role, now: i64) -> Result<NewApiKey, String> {
    new_tenant_api_key(name, role, None, now)
}

/// Create a key acting for `tenant` (which owns the secrets it puts);
/// tenant names are those of secret owners (1-128 of `A-Z a-z 0-9 . _ -`).
pub fn new_tenant_api_key(name: &str, role: Role, tenant: Option<&str>, now: i64) -> Result<NewApiKey, String> {
    if let Some(t) = tenant {
        if !cachet_keybroker::broker::valid_name(t) {
            return Err(format!("invalid tenant {t:?}: 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit"));
        }
    }
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness".to_string())?;
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness".to_string())?;
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    Ok(NewApiKey {
        key: format!("cachet_{id}_{secret}"),
        record: ApiKeyRecord {
            id,
            name: name.to_string(),
            role: role.as_str().into(),
            secret_hash: hash_secret(&secret),
            created_at: now,
            revoked_at: None,
            tenant: tenant.map(str::to_string),
        },
    })
}

/// Split `cachet_<id>_<secret>`.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("cachet_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex16 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex16(id, 16) && hex16(secret, 64)).then_some((id, secret))
}

/// Check a presented key; the role is checked by the caller.
pub async fn authenticate(store: &dyn Store, presented: &str) -> Result<Principal, ApiError> {
    let bad = || ApiError::unauthorized("invalid API key");
    let (id, secret) = split_key(presented).ok_or_else(bad)?;
    let rec = store.find_api_key(id).await?.ok_or_else(bad)?;
    let matches = aws_lc_rs::constant_time::verify_slices_are_equal(hash_secret(secret).as_bytes(), rec.secret_hash.as_bytes()).is_ok();
    if !matches || rec.revoked_at.is_some() {
        return Err(bad());
    }
    let role = Role::parse(&rec.role).ok_or_else(|| ApiError::internal(format!("API key {} has unknown role {}", rec.id, rec.role)))?;
    Ok(Principal { key_id: rec.id, role, tenant: rec.tenant })
}

/// The bearer token of a request.
fn bearer(req: &Request) -> Result<&str, ApiError> {
    let h = req.headers().get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("an API key is required (Authorization: Bearer ...)"))?;
    let s = h.to_str().map_err(|_| ApiError::unauthorized("invalid Authorization header"))?;
    s.strip_prefix("Bearer ").map(str::trim).ok_or_else(|| ApiError::unauthorized("use Authorization: Bearer <API key>"))
}

async fn guard(store: Arc<dyn Store>, need: Role, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let principal = authenticate(store.as_ref(), bearer(&req)?).await?;
    if principal.role < need {
        return Err(ApiError::forbidden(format!("this route needs the {} role", need.as_str())));
    }
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// Middleware for routes any admin-API key (reader or admin) may call.
pub async fn require_reader(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Reader, req, next).await
}

/// Middleware for routes that change state (admin role).
pub async fn require_admin(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Admin, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_only_in_their_exact_form() {
        let k = new_api_key("n", Role::Admin, 0).unwrap();
        let (id, secret) = split_key(&k.key).unwrap();
        assert_eq!(id, k.record.id);
        assert_eq!(hash_secret(secret), k.record.secret_hash);
        assert!(!k.record.secret_hash.contains(secret));
        for bad in ["", "cachet_", "cachet_zz_zz", &k.key[..k.key.len() - 1], &k.key.replace("cachet_", "other_")] {
            assert!(split_key(bad).is_none(), "{bad}");
        }
    }
}
