//! Several replicas on one PostgreSQL database: two `PostgresStore` handles
//! with separate connection pools stand for two `cachet serve` processes.
//! A nonce is consumed exactly once however the consumers are spread over
//! the replicas, concurrent admin writes through both leave one unbroken
//! audit chain (and gapless policy versions), and replicas starting at once
//! migrate the database once.

#[path = "common/pg.rs"]
mod pg;

use std::sync::Arc;

use cachet_store::{verify_audit_chain, ApiKeyRecord, AuditEntry, NonceOutcome, PolicyRow, PostgresStore, SecretRow, Store};
use pg::PgCluster;

/// Two handles on one fresh database, opened (and migrating) concurrently.
async fn replicas(tag: &str) -> Option<(PgCluster, Arc<PostgresStore>, Arc<PostgresStore>)> {
    let cluster = PgCluster::start(tag)?;
    let url = cluster.create_database();
    let (a, b) = tokio::join!(PostgresStore::open(&url), PostgresStore::open(&url));
    Some((cluster, Arc::new(a.unwrap()), Arc::new(b.unwrap())))
}

fn entry(action: &str, n: usize) -> AuditEntry {
    AuditEntry { ts: 1, actor: format!("replica-test-{n}"), action: action.into(), outcome: "ok".into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nonce_issued_by_one_replica_is_consumed_once_across_both() {
    let Some((_cluster, a, b)) = replicas("nonce").await else { return };
    for round in 0..5u8 {
        let nonce = vec![round; 32];
        a.insert_nonce(&nonce, 0, i64::MAX).await.unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let s: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
                let n = nonce.clone();
                tokio::spawn(async move { s.consume_nonce(&n, 10).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        let wins = outcomes.iter().filter(|o| **o == NonceOutcome::Consumed).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().all(|o| matches!(o, NonceOutcome::Consumed | NonceOutcome::AlreadyUsed)), "{outcomes:?}");
        assert_eq!(b.consume_nonce(&nonce, 11).await.unwrap(), NonceOutcome::AlreadyUsed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_writes_on_both_replicas_leave_one_audit_chain() {
    let Some((_cluster, a, b)) = replicas("audit").await else { return };
    const PER_REPLICA: usize = 12;
    let mut tasks = Vec::new();
    for (r, s) in [a.clone(), b.clone()].into_iter().enumerate() {
        for i in 0..PER_REPLICA {
            let s = s.clone();
            let n = r * PER_REPLICA + i;
            tasks.push(tokio::spawn(async move {
                let key = ApiKeyRecord {
                    id: format!("k{n}"),
                    name: "n".into(),
                    role: "admin".into(),
                    secret_hash: "00".into(),
                    created_at: 1,
                    revoked_at: None,
                    tenant: None,
                    expires_at: None,
                };
                s.insert_api_key(&key, &entry("api_key.create", n)).await.unwrap();
                // The same policy name from every task: versions must come out gapless.
                let p = PolicyRow {
                    name: "shared".into(),
                    version: 0,
                    text: format!("v{n}"),
                    hash: "h".into(),
                    created_at: 1,
                    created_by: "t".into(),
                    signer: None,
                    jws: None,
                };
                s.put_policy(&p, &AuditEntry { detail: serde_json::json!({}), ..entry("policy.put", n) }).await.unwrap();
                let sec = SecretRow {
                    owner: format!("o{}", n % 3),
                    name: format!("s{n}"),
                    policy: "p".into(),
                    policy_hash: "h".into(),
                    sealed: "{}".into(),
                    created_at: 1,
                    updated_at: 1,
                    version: 1,
                };
                s.put_secret(&sec, &entry("secret.put", n)).await.unwrap();
                s.append_owner_audit(&entry("secret.release", n), &[format!("o{}", n % 3)]).await.unwrap();
                s.append_audit(&entry("attest", n)).await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = 2 * PER_REPLICA * 5;
    for s in [&a, &b] {
        let (n, head) = verify_audit_chain(s.as_ref()).await.expect("one unbroken chain");
        assert_eq!(n as usize, total);
        assert_eq!(head, verify_audit_chain(a.as_ref()).await.unwrap().1, "both replicas see the same head");
    }
    let versions: Vec<i64> = b.policy_versions("shared").await.unwrap().into_iter().map(|p| p.version).collect();
    assert_eq!(versions, (1..=(2 * PER_REPLICA) as i64).collect::<Vec<_>>());
    assert_eq!(a.list_api_keys().await.unwrap().len(), 2 * PER_REPLICA);
    // Each owner's index holds exactly its own entries (2 per task).
    for o in 0..3 {
        let page = a.owner_audit_page(&format!("o{o}"), 0, 1000).await.unwrap();
        assert_eq!(page.len(), 2 * (2 * PER_REPLICA) / 3, "owner o{o}");
    }
}
