//! Store behaviour, run against both backends (embedded SQLite and a real,
//! private PostgreSQL): nonces consumed exactly once (also concurrently),
//! admin changes audited in the same transaction, the audit chain detects
//! edits, insertions and deletions, data survives reopening, duplicates are
//! `Conflict`, and every record kind round-trips (policy signers and JWSs
//! too). Reference sets and API keys belong to their tenant (sets keyed by
//! owner, a tenant's changes in its own audit view, key expiry kept). A
//! database migrated by an older release (before policy signers) opens,
//! migrates and keeps its policies and reference sets, on both backends.
//!
//! Each behaviour is one function taking a [`Fixture`]; `both!` runs it
//! once per backend (`<behaviour>::sqlite`, `<behaviour>::postgres`).

#[path = "common/pg.rs"]
mod pg;

use std::path::PathBuf;
use std::sync::Arc;

use cachet_store::{
    verify_audit_chain, ApiKeyRecord, AuditEntry, NonceOutcome, PolicyRow, PostgresStore, ReferenceSetRow, SecretRow, SigningKeyRecord,
    SqliteStore, Store, StoreError,
};
use pg::PgCluster;

/// A fresh, empty store of one backend, plus raw SQL access for tampering.
struct Fixture {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite { dir: PathBuf, raw: SqliteStore },
    Postgres { url: String, raw: PostgresStore, _cluster: PgCluster },
}

impl Fixture {
    async fn sqlite(tag: &str) -> Option<Fixture> {
        let dir = std::env::temp_dir().join(format!("cachet-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let raw = SqliteStore::open_dir(&dir).await.unwrap();
        Some(Fixture { store: Arc::new(raw.clone()), backend: Backend::Sqlite { dir, raw } })
    }

    async fn postgres(tag: &str) -> Option<Fixture> {
        let cluster = PgCluster::start(tag)?;
        let url = cluster.create_database();
        let raw = PostgresStore::open(&url).await.unwrap();
        Some(Fixture { store: Arc::new(raw.clone()), backend: Backend::Postgres { url, raw, _cluster: cluster } })
    }

    /// Run one SQL statement directly (valid in both dialects), bypassing the store.
    async fn exec(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite { raw, .. } => sqlx::query(sql).execute(raw.pool()).await.map(|_| ()).unwrap(),
            Backend::Postgres { raw, .. } => sqlx::query(sql).execute(raw.pool()).await.map(|_| ()).unwrap(),
        }
    }

    /// Close the store and open the same database again.
    async fn reopen(&self) -> Arc<dyn Store> {
        self.store.close().await;
        match &self.backend {
            Backend::Sqlite { dir, .. } => Arc::new(SqliteStore::open_dir(dir).await.unwrap()),
            Backend::Postgres { url, .. } => cachet_store::open_url(url).await.unwrap(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Backend::Sqlite { dir, .. } = &self.backend {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Run a behaviour against each backend.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Fixture::sqlite(stringify!($name)).await.unwrap()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(f) = super::Fixture::postgres(stringify!($name)).await {
                    super::$name(f).await;
                }
            }
        }
    };
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry { ts: 1, actor: "test".into(), action: action.into(), outcome: "ok".into(), ..Default::default() }
}

fn key(id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: "n".into(),
        role: "admin".into(),
        secret_hash: "00".into(),
        created_at: 5,
        revoked_at: None,
        tenant: None,
        expires_at: None,
    }
}

both!(a_nonce_is_consumed_once_and_expired_or_unknown_ones_are_named);
async fn a_nonce_is_consumed_once_and_expired_or_unknown_ones_are_named(f: Fixture) {
    let s = &f.store;
    s.insert_nonce(b"n1", 100, 200).await.unwrap();
    s.insert_nonce(b"n2", 100, 150).await.unwrap();
    assert_eq!(s.consume_nonce(b"n1", 120).await.unwrap(), NonceOutcome::Consumed);
    assert_eq!(s.consume_nonce(b"n1", 121).await.unwrap(), NonceOutcome::AlreadyUsed);
    assert_eq!(s.consume_nonce(b"n2", 150).await.unwrap(), NonceOutcome::Expired);
    assert_eq!(s.consume_nonce(b"zz", 120).await.unwrap(), NonceOutcome::Unknown);
    assert!(matches!(s.insert_nonce(b"n1", 1, 2).await, Err(StoreError::Conflict(_))), "a nonce is issued once");
    assert_eq!(s.purge_nonces(160).await.unwrap(), 1);
    assert_eq!(s.consume_nonce(b"n2", 150).await.unwrap(), NonceOutcome::Unknown, "purged");
    s.ping().await.unwrap();
}

both!(concurrent_consumers_of_one_nonce_exactly_one_wins);
async fn concurrent_consumers_of_one_nonce_exactly_one_wins(f: Fixture) {
    let s = f.store.clone();
    for round in 0..5u8 {
        let nonce = vec![round; 32];
        s.insert_nonce(&nonce, 0, i64::MAX).await.unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (s, n) = (s.clone(), nonce.clone());
                tokio::spawn(async move { s.consume_nonce(&n, 10).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                NonceOutcome::Consumed => wins += 1,
                other => assert_eq!(other, NonceOutcome::AlreadyUsed, "round {round}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

both!(admin_changes_are_audited_and_the_chain_detects_tampering);
async fn admin_changes_are_audited_and_the_chain_detects_tampering(f: Fixture) {
    let s = f.store.as_ref();
    for i in 0..5 {
        s.insert_api_key(&key(&format!("k{i}")), &entry("api_key.create")).await.unwrap();
    }
    assert!(s.revoke_api_key("k1", 9, &entry("api_key.revoke")).await.unwrap());
    assert!(!s.revoke_api_key("k1", 9, &entry("api_key.revoke")).await.unwrap(), "already revoked");
    s.append_audit(&entry("attest")).await.unwrap();
    let (n, head) = verify_audit_chain(s).await.unwrap();
    assert_eq!(n, 7);
    assert_eq!(head.len(), 64);

    // Edit one field of entry 3.
    f.exec("UPDATE audit_log SET outcome = 'refused' WHERE seq = 3").await;
    assert_eq!(verify_audit_chain(s).await.unwrap_err().seq, 3);
    f.exec("UPDATE audit_log SET outcome = 'ok' WHERE seq = 3").await;
    verify_audit_chain(s).await.unwrap();
    // Recompute entry 3's own hash after editing: entry 4 no longer links to it.
    f.exec("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").await;
    let r3 = s.audit_page(2, 1).await.unwrap().remove(0);
    f.exec(&format!("UPDATE audit_log SET hash = '{}' WHERE seq = 3", r3.expected_hash())).await;
    assert_eq!(verify_audit_chain(s).await.unwrap_err().seq, 4);
    // Delete a middle entry.
    f.exec("DELETE FROM audit_log WHERE seq = 5").await;
    assert!(verify_audit_chain(s).await.is_err());
}

both!(committed_data_survives_reopening);
async fn committed_data_survives_reopening(f: Fixture) {
    f.store.insert_api_key(&key("persist"), &entry("api_key.create")).await.unwrap();
    f.store.put_policy(&policy("p", "v1"), &entry("policy.put")).await.unwrap();
    f.store.put_policy(&signed_policy("p", "v2"), &entry("policy.put")).await.unwrap();
    let s = f.reopen().await;
    assert_eq!(s.find_api_key("persist").await.unwrap().unwrap().role, "admin");
    assert!(matches!(s.insert_api_key(&key("persist"), &entry("x")).await, Err(StoreError::Conflict(_))), "duplicate id");
    assert_eq!(
        s.policy_versions("p").await.unwrap(),
        [PolicyRow { version: 1, ..policy("p", "v1") }, PolicyRow { version: 2, ..signed_policy("p", "v2") }],
        "policies, signers and JWSs survive reopening (migrations ran again without touching them)"
    );
    assert_eq!(verify_audit_chain(s.as_ref()).await.unwrap().0, 3, "failed insert left no audit entry");
}

/// A temporary migrations folder holding this crate's `backend` migrations
/// numbered up to `last` only: what an older Cachet would have applied.
fn old_migrations(backend: &str, last: i64, tag: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let dst = std::env::temp_dir().join(format!("cachet-old-migrations-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    let mut copied = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version <= last {
            std::fs::copy(&path, dst.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, last, "migrations 1..={last} of {backend}");
    dst
}

/// The columns of `policies` before signers were recorded.
const OLD_POLICY_INSERT: &str =
    "INSERT INTO policies (name, version, text, hash, created_at, created_by) VALUES ('old', 1, 'package old', 'sha-256:00', 5, 'api-key:k')";

/// A reference set as releases before tenants stored it (no owner).
const OLD_REFSET_INSERT: &str = "INSERT INTO reference_sets (name, doc, updated_at, updated_by) VALUES ('old', '{}', 5, 'k')";

fn old_policy() -> PolicyRow {
    PolicyRow {
        name: "old".into(),
        version: 1,
        text: "package old".into(),
        hash: "sha-256:00".into(),
        created_at: 5,
        created_by: "api-key:k".into(),
        signer: None,
        jws: None,
    }
}

/// After an upgrade, the old version reads as unsigned and new versions
/// (signed or not) follow it.
async fn upgraded_store_keeps_and_extends_old_policies(s: &dyn Store) {
    let sets = s.list_reference_sets().await.unwrap();
    let kept =
        ReferenceSetRow { owner: None, name: "old".into(), doc: "{}".into(), updated_at: 5, updated_by: "k".into(), shared_with: vec![] };
    assert_eq!(sets, [kept], "an old reference set is kept as an operator set, shared with nobody");
    assert_eq!(s.get_policy("old", None).await.unwrap(), Some(old_policy()), "the old policy is kept, unsigned");
    assert_eq!(s.put_policy(&signed_policy("old", "v2"), &entry("policy.put")).await.unwrap(), 2);
    assert_eq!(s.policy_versions("old").await.unwrap(), [old_policy(), PolicyRow { version: 2, ..signed_policy("old", "v2") }]);
}

#[tokio::test]
async fn an_sqlite_database_from_before_policy_signers_opens_and_keeps_its_policies() {
    let dir = std::env::temp_dir().join(format!("cachet-store-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cachet.db");
    // A database as the previous release left it: migrations 1-3, one policy.
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&file).create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
        let old = old_migrations("sqlite", 3, "sqlite");
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        sqlx::query(OLD_POLICY_INSERT).execute(&pool).await.unwrap();
        sqlx::query(OLD_REFSET_INSERT).execute(&pool).await.unwrap();
        assert!(sqlx::query("SELECT signer FROM policies").fetch_all(&pool).await.is_err(), "no signer column yet");
        pool.close().await;
        let _ = std::fs::remove_dir_all(&old);
    }
    // Opening it runs the new migration and keeps the policy.
    let store = SqliteStore::open_file(&file).await.unwrap();
    upgraded_store_keeps_and_extends_old_policies(&store).await;
    store.close().await;
    // And opening it again (nothing left to migrate) still works.
    let store = SqliteStore::open_file(&file).await.unwrap();
    assert_eq!(store.policy_versions("old").await.unwrap().len(), 2);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_before_policy_signers_opens_and_keeps_its_policies() {
    let Some(cluster) = PgCluster::start("upgrade") else { return };
    let url = cluster.create_database();
    {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let old = old_migrations("postgres", 1, "postgres");
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        sqlx::query(OLD_POLICY_INSERT).execute(&pool).await.unwrap();
        sqlx::query(OLD_REFSET_INSERT).execute(&pool).await.unwrap();
        pool.close().await;
        let _ = std::fs::remove_dir_all(&old);
    }
    let store = PostgresStore::open(&url).await.unwrap();
    upgraded_store_keeps_and_extends_old_policies(&store).await;
    store.pool().close().await;
}

fn signing_key(kid: &str, created_at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        custody: "local".into(),
        public_spki: vec![0x30, 0x59, 0, 0xff],
        handle: vec![1, 2, 3, 0],
        cert_chain: vec![],
        created_at,
        active_from: created_at + 10,
        revoked_at: None,
    }
}

both!(signing_keys_rotate_revoke_carry_chains_and_are_pruned);
async fn signing_keys_rotate_revoke_carry_chains_and_are_pruned(f: Fixture) {
    let s = f.store.as_ref();
    s.insert_signing_key(&signing_key("new", 200), &entry("signing_key.rotate")).await.unwrap();
    s.insert_signing_key(&signing_key("old", 100), &entry("signing_key.generate")).await.unwrap();
    assert!(matches!(s.insert_signing_key(&signing_key("old", 1), &entry("x")).await, Err(StoreError::Conflict(_))));
    let keys = s.list_signing_keys().await.unwrap();
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["old", "new"], "oldest first");
    assert_eq!(keys[0], signing_key("old", 100), "bytes and times round-trip");

    let chain = vec![vec![0x30, 0x82, 0, 1], vec![0xde, 0xad]];
    assert!(s.set_signing_key_chain("old", &chain, &entry("signing_key.certificate")).await.unwrap());
    assert!(!s.set_signing_key_chain("nope", &chain, &entry("x")).await.unwrap());
    assert!(s.revoke_signing_key("old", 150, &entry("signing_key.revoke")).await.unwrap());
    assert!(!s.revoke_signing_key("old", 151, &entry("signing_key.revoke")).await.unwrap(), "already revoked");
    let old = s.list_signing_keys().await.unwrap().remove(0);
    assert_eq!((old.cert_chain, old.revoked_at), (chain, Some(150)));

    assert_eq!(s.delete_signing_keys(&["zz".into()], &entry("x")).await.unwrap(), 0);
    assert_eq!(s.delete_signing_keys(&["old".into(), "zz".into()], &entry("signing_key.prune")).await.unwrap(), 1);
    assert_eq!(s.list_signing_keys().await.unwrap().len(), 1);
    // Changes that changed nothing left no audit record.
    let actions: Vec<String> = s.audit_page(0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        ["signing_key.rotate", "signing_key.generate", "signing_key.certificate", "signing_key.revoke", "signing_key.prune"]
    );
    verify_audit_chain(s).await.unwrap();
}

fn secret(owner: &str, name: &str, version: i64) -> SecretRow {
    SecretRow {
        owner: owner.into(),
        name: name.into(),
        policy: "package p".into(),
        policy_hash: "h".into(),
        sealed: format!("{{\"v\":{version}}}"),
        created_at: 1,
        updated_at: version,
        version,
    }
}

both!(secrets_are_per_owner_and_their_audit_is_indexed_by_owner);
async fn secrets_are_per_owner_and_their_audit_is_indexed_by_owner(f: Fixture) {
    let s = f.store.as_ref();
    s.put_secret(&secret("alice", "db", 1), &entry("secret.put")).await.unwrap();
    s.put_secret(&secret("alice", "db", 2), &entry("secret.put")).await.unwrap();
    s.put_secret(&secret("alice", "api", 1), &entry("secret.put")).await.unwrap();
    s.put_secret(&secret("bob", "db", 1), &entry("secret.put")).await.unwrap();
    assert_eq!(s.get_secret("alice", "db").await.unwrap().unwrap(), secret("alice", "db", 2), "replaced");
    assert_eq!(s.get_secret("carol", "db").await.unwrap(), None);
    let names: Vec<String> = s.list_secrets("alice").await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["api", "db"]);
    assert!(s.delete_secret("bob", "db", &entry("secret.delete")).await.unwrap());
    assert!(!s.delete_secret("bob", "db", &entry("secret.delete")).await.unwrap());
    let rec = s.append_owner_audit(&entry("secret.release"), &["alice".into(), "bob".into(), "alice".into()]).await.unwrap();
    assert_eq!(rec.seq, 6);
    let alice: Vec<i64> = s.owner_audit_page("alice", 0, 100).await.unwrap().into_iter().map(|r| r.seq).collect();
    let bob: Vec<i64> = s.owner_audit_page("bob", 0, 100).await.unwrap().into_iter().map(|r| r.seq).collect();
    assert_eq!((alice, bob), (vec![1, 2, 3, 6], vec![4, 5, 6]));
    assert_eq!(s.owner_audit_page("alice", 2, 1).await.unwrap()[0].seq, 3, "paged");
    verify_audit_chain(s).await.unwrap();
}

both!(secret_writes_are_a_compare_and_swap_on_the_version);
/// 16 writers at once, each reading the current version and writing the
/// next (retrying when it lost): every write gets its own version, 1..16,
/// and each is stored and audited. A stale write is refused and changes
/// nothing.
async fn secret_writes_are_a_compare_and_swap_on_the_version(f: Fixture) {
    let writers = (0..16).map(|i| {
        let s = f.store.clone();
        tokio::spawn(async move {
            loop {
                let current = s.get_secret("alice", "db").await.unwrap().map_or(0, |r| r.version);
                let mut row = secret("alice", "db", current + 1);
                row.sealed = format!("{{\"writer\":{i}}}");
                match s.put_secret(&row, &entry("secret.put")).await {
                    Ok(()) => return (row.version, i),
                    Err(StoreError::Conflict(m)) => assert!(m.contains("alice/db"), "{m}"),
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    let mut versions = Vec::new();
    for w in writers.collect::<Vec<_>>() {
        versions.push(w.await.unwrap());
    }
    let mut seen: Vec<i64> = versions.iter().map(|(v, _)| *v).collect();
    seen.sort();
    assert_eq!(seen, (1..=16).collect::<Vec<_>>(), "each write its own version");
    let stored = f.store.get_secret("alice", "db").await.unwrap().unwrap();
    let last_writer = versions.iter().find(|(v, _)| *v == 16).unwrap().1;
    assert_eq!((stored.version, stored.sealed), (16, format!("{{\"writer\":{last_writer}}}")));
    assert_eq!(f.store.owner_audit_page("alice", 0, 100).await.unwrap().len(), 16, "one audit entry per stored write");

    // Stale writes: a second create, an old version, a version from the future.
    for v in [1, 16, 18] {
        let e = f.store.put_secret(&secret("alice", "db", v), &entry("secret.put")).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "version {v}: {e}");
    }
    assert_eq!(f.store.get_secret("alice", "db").await.unwrap().unwrap().version, 16);
    assert_eq!(f.store.owner_audit_page("alice", 0, 100).await.unwrap().len(), 16, "a refused write is not audited");
    verify_audit_chain(f.store.as_ref()).await.unwrap();
}

/// `sqlite:PATH` (as `--database-url` gives it) creates the database owner-only,
/// and SQLite's WAL file inherits that.
#[tokio::test]
async fn an_sqlite_file_named_by_url_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("cachet-store-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.join("cachet.db");
    let s = cachet_store::open_url(&format!("sqlite:{}", db.display())).await.unwrap();
    s.put_secret(&secret("alice", "db", 1), &entry("secret.put")).await.unwrap();
    for f in [db.clone(), dir.join("cachet.db-wal")] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    s.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn policy(name: &str, text: &str) -> PolicyRow {
    PolicyRow {
        name: name.into(),
        version: 99,
        text: text.into(),
        hash: format!("sha-256:{text}"),
        created_at: 7,
        created_by: "k".into(),
        signer: None,
        jws: None,
    }
}

/// A policy version as stored from a signed upload: the signer's JSON and
/// the compact JWS (with characters that need care in SQL text: quotes).
fn signed_policy(name: &str, text: &str) -> PolicyRow {
    PolicyRow {
        signer: Some(r#"{"subject":"CN=O'Brien, O=Example","thumbprint":"ab01","alg":"ES256"}"#.into()),
        jws: Some(format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", text.len())),
        ..policy(name, text)
    }
}

both!(policies_keep_every_version_and_reference_sets_are_replaced);
async fn policies_keep_every_version_and_reference_sets_are_replaced(f: Fixture) {
    let s = f.store.as_ref();
    let audit = AuditEntry { detail: serde_json::json!({"name": "p"}), ..entry("policy.put") };
    assert_eq!(s.put_policy(&policy("p", "v1"), &audit).await.unwrap(), 1);
    assert_eq!(s.put_policy(&policy("p", "v2"), &audit).await.unwrap(), 2);
    assert_eq!(s.put_policy(&policy("a", "x"), &audit).await.unwrap(), 1);
    assert_eq!(s.get_policy("p", None).await.unwrap().unwrap().text, "v2");
    assert_eq!(s.get_policy("p", Some(1)).await.unwrap().unwrap(), PolicyRow { version: 1, ..policy("p", "v1") });
    assert_eq!(s.get_policy("p", Some(3)).await.unwrap(), None);
    let current: Vec<(String, i64)> = s.list_policies().await.unwrap().into_iter().map(|p| (p.name, p.version)).collect();
    assert_eq!(current, [("a".to_string(), 1), ("p".to_string(), 2)]);
    assert_eq!(s.policy_versions("p").await.unwrap().len(), 2);
    let last = s.audit_page(1, 1).await.unwrap().remove(0);
    assert_eq!(last.detail, r#"{"name":"p","version":2}"#, "the audit entry names the version stored");

    // A signed version keeps its signer and JWS; the unsigned ones keep none.
    assert_eq!(s.put_policy(&signed_policy("p", "v3"), &audit).await.unwrap(), 3);
    let v3 = s.get_policy("p", None).await.unwrap().unwrap();
    assert_eq!(v3, PolicyRow { version: 3, ..signed_policy("p", "v3") }, "signer and jws round-trip");
    assert!(v3.signer.as_deref().is_some_and(|j| j.contains("O'Brien")) && v3.jws.is_some());
    let versions = s.policy_versions("p").await.unwrap();
    let signed: Vec<(i64, bool, bool)> = versions.iter().map(|r| (r.version, r.signer.is_some(), r.jws.is_some())).collect();
    assert_eq!(signed, [(1, false, false), (2, false, false), (3, true, true)]);
    assert_eq!(s.get_policy("p", Some(1)).await.unwrap().unwrap().signer, None);
    let listed = s.list_policies().await.unwrap();
    assert_eq!(listed.iter().find(|r| r.name == "p").and_then(|r| r.signer.clone()), v3.signer, "the listing reads them too");

    let set = |doc: &str| ReferenceSetRow {
        owner: None,
        name: "mr_td".into(),
        doc: doc.into(),
        updated_at: 3,
        updated_by: "k".into(),
        shared_with: vec![],
    };
    s.put_reference_set(&set("{\"values\":[]}"), &entry("refvals.put")).await.unwrap();
    s.put_reference_set(&set("{\"values\":[1]}"), &entry("refvals.put")).await.unwrap();
    assert_eq!(s.list_reference_sets().await.unwrap(), [set("{\"values\":[1]}")]);
    assert!(s.delete_reference_set(None, "mr_td", &entry("refvals.delete")).await.unwrap());
    assert!(!s.delete_reference_set(None, "mr_td", &entry("refvals.delete")).await.unwrap());
    assert!(s.list_reference_sets().await.unwrap().is_empty());
    assert_eq!(verify_audit_chain(s).await.unwrap().0, 7);
}

both!(reference_sets_and_api_keys_belong_to_their_tenant);
async fn reference_sets_and_api_keys_belong_to_their_tenant(f: Fixture) {
    let s = f.store.as_ref();
    // One name, three owners: the operator (shared with bank-a) and two tenants.
    let set = |owner: Option<&str>, doc: &str, shared: &[&str]| ReferenceSetRow {
        owner: owner.map(str::to_string),
        name: "approved".into(),
        doc: doc.into(),
        updated_at: 3,
        updated_by: "k".into(),
        shared_with: shared.iter().map(|t| t.to_string()).collect(),
    };
    let (op, a, b) = (set(None, "op", &["bank-a"]), set(Some("bank-a"), "a", &[]), set(Some("bank-b"), "b", &[]));
    for r in [&op, &a, &b] {
        s.put_reference_set(r, &entry("refvals.put")).await.unwrap();
    }
    assert_eq!(s.list_reference_sets().await.unwrap(), [op.clone(), a.clone(), b.clone()], "operator first, each owner's own row");
    // Replacing bank-a's set leaves the others; deleting is per owner.
    let a2 = set(Some("bank-a"), "a2", &[]);
    s.put_reference_set(&a2, &entry("refvals.put")).await.unwrap();
    assert_eq!(s.list_reference_sets().await.unwrap(), [op.clone(), a2.clone(), b.clone()]);
    assert!(!s.delete_reference_set(Some("bank-c"), "approved", &entry("refvals.delete")).await.unwrap());
    assert!(s.delete_reference_set(Some("bank-b"), "approved", &entry("refvals.delete")).await.unwrap());
    assert_eq!(s.list_reference_sets().await.unwrap(), [op, a2]);
    // A tenant's changes (sets, keys) are in its own audit view, not another's.
    let tenant_key = ApiKeyRecord { tenant: Some("bank-a".into()), expires_at: Some(99), ..key("ka") };
    s.insert_api_key(&tenant_key, &entry("api_key.create")).await.unwrap();
    assert_eq!(s.find_api_key("ka").await.unwrap(), Some(tenant_key), "tenant and expiry round-trip");
    assert!(s.revoke_api_key("ka", 10, &entry("api_key.revoke")).await.unwrap());
    s.insert_api_key(&key("operator"), &entry("api_key.create")).await.unwrap();
    let actions = |owner: &'static str| async move {
        s.owner_audit_page(owner, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect::<Vec<_>>()
    };
    assert_eq!(actions("bank-a").await, ["refvals.put", "refvals.put", "api_key.create", "api_key.revoke"]);
    assert_eq!(actions("bank-b").await, ["refvals.put", "refvals.delete"]);
    // A corrupt sharing list is reported, never read as "shared with nobody".
    f.exec("UPDATE reference_sets SET shared_with = 'nope' WHERE owner = ''").await;
    assert!(matches!(s.list_reference_sets().await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn an_unknown_database_url_scheme_is_refused() {
    let e = cachet_store::open_url("mysql://u:secret@h/db").await.err().expect("refused");
    assert!(!e.to_string().contains("secret"), "{e}");
}

both!(endorsements_are_cached_by_key_replaced_and_unaudited);
async fn endorsements_are_cached_by_key_replaced_and_unaudited(f: Fixture) {
    let row = |key: &str, body: &str, next: Option<i64>| cachet_store::EndorsementRow {
        key: key.into(),
        kind: "tcb_info".into(),
        body: body.into(),
        fetched_at: 10,
        next_update: next,
        source: "https://pcs.example/tdx/certification/v4/tcb".into(),
    };
    assert_eq!(f.store.get_endorsement("intel/tdx/tcb/00806f050000").await.unwrap(), None);
    f.store.put_endorsement(&row("intel/tdx/tcb/00806f050000", "{\"v\":1}", Some(100))).await.unwrap();
    f.store.put_endorsement(&row("intel/rootcacrl", "{}", None)).await.unwrap();
    // A refresh replaces the entry under the same key.
    f.store.put_endorsement(&row("intel/tdx/tcb/00806f050000", "{\"v\":2}", Some(200))).await.unwrap();
    let s = f.reopen().await;
    assert_eq!(
        s.get_endorsement("intel/tdx/tcb/00806f050000").await.unwrap(),
        Some(row("intel/tdx/tcb/00806f050000", "{\"v\":2}", Some(200)))
    );
    let keys: Vec<String> = s.list_endorsements().await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["intel/rootcacrl", "intel/tdx/tcb/00806f050000"]);
    assert_eq!(verify_audit_chain(s.as_ref()).await.unwrap().0, 0, "a cache, not admin state");
}

both!(a_set_of_endorsements_is_kept_whole_or_not_at_all);
async fn a_set_of_endorsements_is_kept_whole_or_not_at_all(f: Fixture) {
    let row = |key: &str| cachet_store::EndorsementRow {
        key: key.into(),
        kind: "crl".into(),
        body: "{}".into(),
        fetched_at: 10,
        next_update: None,
        source: "bundle".into(),
    };
    f.store.put_endorsements(&[row("intel/rootcacrl"), row("intel/pckcrl/processor")]).await.unwrap();
    assert_eq!(f.store.list_endorsements().await.unwrap().len(), 2);
    // The store refuses the third row of the next set (a trigger standing in
    // for a disk or connection failure mid-import): none of the set is kept.
    match &f.backend {
        Backend::Sqlite { raw, .. } => {
            sqlx::query(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON endorsements WHEN NEW.key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .execute(raw.pool())
            .await
            .unwrap();
        }
        Backend::Postgres { raw, .. } => {
            sqlx::query(
                "CREATE FUNCTION refuse_bad() RETURNS trigger AS $$ BEGIN IF NEW.key = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .execute(raw.pool())
            .await
            .unwrap();
            sqlx::query("CREATE TRIGGER refuse_bad BEFORE INSERT ON endorsements FOR EACH ROW EXECUTE FUNCTION refuse_bad()")
                .execute(raw.pool())
                .await
                .unwrap();
        }
    }
    let err = f.store.put_endorsements(&[row("amd/Milan/vcek/cert_chain"), row("nvidia/rim/X"), row("bad")]).await;
    assert!(err.is_err(), "the failing row fails the set");
    let keys: Vec<String> = f.store.list_endorsements().await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["intel/pckcrl/processor", "intel/rootcacrl"], "nothing of the failed set was kept");
}

both!(the_first_claim_of_a_deployment_setting_holds);
async fn the_first_claim_of_a_deployment_setting_holds(f: Fixture) {
    assert_eq!(f.store.claim_setting("issuer", "https://a.example").await.unwrap(), "https://a.example");
    assert_eq!(f.store.claim_setting("issuer", "https://b.example").await.unwrap(), "https://a.example", "the first claim holds");
    assert_eq!(f.store.claim_setting("kek", "local-file local:1").await.unwrap(), "local-file local:1", "settings are apart");
    let s = f.reopen().await;
    assert_eq!(s.claim_setting("issuer", "https://c.example").await.unwrap(), "https://a.example", "kept across restarts");
}

both!(concurrent_appends_are_batched_into_one_unbroken_chain);
async fn concurrent_appends_are_batched_into_one_unbroken_chain(f: Fixture) {
    // Appenders from many tasks at once (group commit: several per transaction).
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = f.store.clone();
            tokio::spawn(async move { s.append_audit(&AuditEntry { token_id: Some(format!("t{i}")), ..entry("attest") }).await.unwrap() })
        })
        .collect();
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await.unwrap());
    }
    let mut seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "each entry its own place in the chain");
    // What each caller was answered is what was committed.
    let s = f.reopen().await;
    let stored = s.audit_page(0, 1000).await.unwrap();
    for r in &records {
        assert_eq!(&stored[usize::try_from(r.seq - 1).unwrap()], r);
    }
    assert_eq!(verify_audit_chain(s.as_ref()).await.unwrap().0, 200);
}
