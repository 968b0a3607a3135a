//! The SQLite store: nonces consumed exactly once (also concurrently),
//! admin changes audited in the same transaction, the audit chain detects
//! edits, insertions and deletions, and data survives reopening.

use std::sync::Arc;

use cachet_store::{verify_audit_chain, ApiKeyRecord, AuditEntry, NonceOutcome, SqliteStore, Store};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry { ts: 1, actor: "test".into(), action: action.into(), outcome: "ok".into(), ..Default::default() }
}

fn key(id: &str) -> ApiKeyRecord {
    ApiKeyRecord { id: id.into(), name: "n".into(), role: "admin".into(), secret_hash: "00".into(), created_at: 5, revoked_at: None, tenant: None }
}

#[tokio::test]
async fn a_nonce_is_consumed_once_and_expired_or_unknown_ones_are_named() {
    let dir = tmp("nonce");
    let s = SqliteStore::open_dir(&dir).await.unwrap();
    s.insert_nonce(b"n1", 100, 200).await.unwrap();
    s.insert_nonce(b"n2", 100, 150).await.unwrap();
    assert_eq!(s.consume_nonce(b"n1", 120).await.unwrap(), NonceOutcome::Consumed);
    assert_eq!(s.consume_nonce(b"n1", 121).await.unwrap(), NonceOutcome::AlreadyUsed);
    assert_eq!(s.consume_nonce(b"n2", 150).await.unwrap(), NonceOutcome::Expired);
    assert_eq!(s.consume_nonce(b"zz", 120).await.unwrap(), NonceOutcome::Unknown);
    assert_eq!(s.purge_nonces(160).await.unwrap(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_of_one_nonce_exactly_one_wins() {
    let dir = tmp("race");
    let s = Arc::new(SqliteStore::open_dir(&dir).await.unwrap());
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
            if t.await.unwrap() == NonceOutcome::Consumed {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admin_changes_are_audited_and_the_chain_detects_tampering() {
    let dir = tmp("audit");
    let s = SqliteStore::open_dir(&dir).await.unwrap();
    for i in 0..5 {
        s.insert_api_key(&key(&format!("k{i}")), &entry("api_key.create")).await.unwrap();
    }
    assert!(s.revoke_api_key("k1", 9, &entry("api_key.revoke")).await.unwrap());
    assert!(!s.revoke_api_key("k1", 9, &entry("api_key.revoke")).await.unwrap(), "already revoked");
    s.append_audit(&entry("attest")).await.unwrap();
    let (n, head) = verify_audit_chain(&s).await.unwrap();
    assert_eq!(n, 7);
    assert_eq!(head.len(), 64);

    // Edit one field of entry 3.
    sqlx::query("UPDATE audit_log SET outcome = 'refused' WHERE seq = 3").execute(s.pool()).await.unwrap();
    assert_eq!(verify_audit_chain(&s).await.unwrap_err().seq, 3);
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = 3").execute(s.pool()).await.unwrap();
    verify_audit_chain(&s).await.unwrap();
    // Recompute entry 3's own hash after editing: entry 4 no longer links to it.
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").execute(s.pool()).await.unwrap();
    let r3 = s.audit_page(2, 1).await.unwrap().remove(0);
    sqlx::query("UPDATE audit_log SET hash = ? WHERE seq = 3").bind(r3.expected_hash()).execute(s.pool()).await.unwrap();
    assert_eq!(verify_audit_chain(&s).await.unwrap_err().seq, 4);
    // Delete a middle entry.
    sqlx::query("DELETE FROM audit_log WHERE seq = 5").execute(s.pool()).await.unwrap();
    assert!(verify_audit_chain(&s).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn committed_data_survives_reopening() {
    let dir = tmp("reopen");
    {
        let s = SqliteStore::open_dir(&dir).await.unwrap();
        s.insert_api_key(&key("persist"), &entry("api_key.create")).await.unwrap();
        s.close().await;
    }
    let s = SqliteStore::open_dir(&dir).await.unwrap();
    assert_eq!(s.find_api_key("persist").await.unwrap().unwrap().role, "admin");
    assert!(s.insert_api_key(&key("persist"), &entry("x")).await.is_err(), "duplicate id");
    assert_eq!(verify_audit_chain(&s).await.unwrap().0, 1, "failed insert left no audit entry");
    let _ = std::fs::remove_dir_all(&dir);
}
