//! Admin API keys: creation, hashing, and the request guard.
//!
//! A key reads `cachet_<id>_<secret>`: `id` (16 hex digits) finds the record,
//! `secret` (64 hex digits, 256 random bits) is checked against its stored
//! SHA-256 in constant time. A plain hash suffices because the secret is
//! random and long (nothing to brute-force), unlike a password.
//! Roles: `reader` (read-only routes) ⊂ `admin` (every route), each within its scope: an
//! operator key (no tenant) the whole service, a tenant key its own tenant's objects only.
//!
//! Scopes: a key without a tenant is an **operator** key (it manages the
//! service: appraisal policies, operator reference values, signing keys,
//! every API key, the whole audit log); a key with a tenant is a **tenant**
//! key, confined to that tenant's secrets, release policies, reference
//! values, keys and audit view. Operator-only routes are guarded by
//! [`require_operator_reader`] / [`require_operator_admin`]; the others take
//! the tenant from the key ([`Principal::tenant`]), never from the request.
//! A key may carry an expiry, after which it is refused (`api_key_expired`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
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
    /// Read-only routes within the key's scope (operator: the service; tenant: its own objects).
    Reader,
    /// Every route within the key's scope (operator: the service; tenant: its own objects).
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
    /// The tenant it acts for (the owner of key-broker secrets), if any;
    /// `None`: an operator key.
    pub tenant: Option<String>,
    /// When the key expires (Unix seconds), if it does.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// Whether this is an operator key (one that acts for no tenant).
    pub fn is_operator(&self) -> bool {
        self.tenant.is_none()
    }

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
    new_expiring_api_key(name, role, tenant, None, now)
}

/// Create a key acting for `tenant` (`None`: an operator key) that is
/// refused from `expires_at` (Unix seconds) on, which must be after `now`.
pub fn new_expiring_api_key(name: &str, role: Role, tenant: Option<&str>, expires_at: Option<i64>, now: i64) -> Result<NewApiKey, String> {
    if let Some(e) = expires_at.filter(|e| *e <= now) {
        return Err(format!("the expiry {} is not in the future", format_time(e)));
    }
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
            expires_at,
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

/// RFC 3339 (UTC) of Unix seconds, for messages.
pub fn format_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// Parse an expiry: an RFC 3339 instant, or a duration from `now` as a
/// number with a unit (`90d`, `12h`, `30m`, `3600s`). Returns Unix seconds.
pub fn parse_expiry(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let bad = || format!("expiry {s:?} is neither an RFC 3339 time (2026-12-31T00:00:00Z) nor a duration (90d, 12h, 30m, 3600s)");
    let unit = match s.chars().last() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        Some('m') => 60,
        Some('s') => 1,
        _ => return Err(bad()),
    };
    let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    n.checked_mul(unit).filter(|d| *d > 0).and_then(|d| now.checked_add(d)).ok_or_else(bad)
}

/// Check a presented key at `now`; the role is checked by the caller.
pub async fn authenticate(store: &dyn Store, presented: &str, now: i64) -> Result<Principal, ApiError> {
    let bad = || ApiError::unauthorized("invalid API key");
    let (id, secret) = split_key(presented).ok_or_else(bad)?;
    let rec = store.find_api_key(id).await?.ok_or_else(bad)?;
    let matches = aws_lc_rs::constant_time::verify_slices_are_equal(hash_secret(secret).as_bytes(), rec.secret_hash.as_bytes()).is_ok();
    if !matches || rec.revoked_at.is_some() {
        return Err(bad());
    }
    if let Some(e) = rec.expires_at.filter(|e| now >= *e) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api_key_expired",
            format!("this API key expired at {}; ask an admin for a new one (cachet admin create-key --expires ...)", format_time(e)),
        ));
    }
    let role = Role::parse(&rec.role).ok_or_else(|| ApiError::internal(format!("API key {} has unknown role {}", rec.id, rec.role)))?;
    Ok(Principal { key_id: rec.id, role, tenant: rec.tenant, expires_at: rec.expires_at })
}

/// The bearer token of a request.
fn bearer(req: &Request) -> Result<&str, ApiError> {
    let h = req.headers().get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("an API key is required (Authorization: Bearer ...)"))?;
    let s = h.to_str().map_err(|_| ApiError::unauthorized("invalid Authorization header"))?;
    s.strip_prefix("Bearer ").map(str::trim).ok_or_else(|| ApiError::unauthorized("use Authorization: Bearer <API key>"))
}

/// 403 `operator_only`: a tenant key on a route that manages the service.
pub fn operator_only() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "operator_only",
        "this route needs an operator key (one without a tenant); a tenant key manages only its own secrets, \
         release policies, reference values, API keys and audit view",
    )
}

async fn guard(store: Arc<dyn Store>, need: Role, operator: bool, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let principal = authenticate(store.as_ref(), bearer(&req)?, crate::now()).await?;
    if principal.role < need {
        return Err(ApiError::forbidden(format!("this route needs the {} role", need.as_str())));
    }
    if operator && !principal.is_operator() {
        return Err(operator_only());
    }
    // The key's id and tenant (never the key) for the access log.
    crate::tracing_mw::record_caller(&principal);
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// Middleware for routes any admin-API key (reader or admin) may call; the
/// handler confines a tenant key to its tenant.
pub async fn require_reader(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Reader, false, req, next).await
}

/// Middleware for routes that change state (admin role); the handler
/// confines a tenant key to its tenant.
pub async fn require_admin(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Admin, false, req, next).await
}

/// Middleware for read-only routes of the operator (reader role, no tenant).
pub async fn require_operator_reader(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Reader, true, req, next).await
}

/// Middleware for routes that change the service (admin role, no tenant).
pub async fn require_operator_admin(State(store): State<Arc<dyn Store>>, req: Request, next: Next) -> Result<Response, ApiError> {
    guard(store, Role::Admin, true, req, next).await
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

    #[test]
    fn expiries_are_times_or_durations_and_never_in_the_past() {
        let now = 1_700_000_000;
        assert_eq!(parse_expiry("90d", now), Ok(now + 90 * 86_400));
        assert_eq!(parse_expiry("12h", now), Ok(now + 12 * 3_600));
        assert_eq!(parse_expiry("30m", now), Ok(now + 1_800));
        assert_eq!(parse_expiry("3600s", now), Ok(now + 3_600));
        assert_eq!(parse_expiry("2030-01-01T00:00:00Z", now), Ok(1_893_456_000));
        for bad in ["", "d", "0d", "-1d", "1y", "1.5h", "9999999999999999999d", "tomorrow"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
        assert!(new_expiring_api_key("n", Role::Admin, None, Some(now), now).is_err(), "an expiry must be in the future");
        assert!(new_expiring_api_key("n", Role::Admin, None, Some(now - 1), now).is_err());
        let k = new_expiring_api_key("n", Role::Reader, Some("bank-a"), Some(now + 1), now).unwrap();
        assert_eq!((k.record.expires_at, k.record.tenant.as_deref()), (Some(now + 1), Some("bank-a")));
    }
}
