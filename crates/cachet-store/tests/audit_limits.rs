//! Audit rows are bounded whatever a caller put in them, and audit pages are
//! bounded by bytes as well as rows, on SQLite and PostgreSQL: an entry with
//! an oversized field is stored cut (with the whole value's SHA-256) and
//! still chains; rows written before the bound (too large for one page
//! together) come back a few at a time, and one alone still comes back.

#[path = "common/pg.rs"]
mod pg;

use cachet_store::audit::{MAX_DETAIL, MAX_FIELD, MAX_PAGE_BYTES};
use cachet_store::{verify_audit_chain, AuditEntry, PostgresStore, SqliteStore, Store};
use serde_json::json;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Append an oversized entry through the store and check what is stored.
async fn oversized_entries_are_stored_bounded(s: &dyn Store) {
    let huge = "F".repeat(60_000);
    let e = AuditEntry {
        ts: 1,
        actor: "client:127.0.0.1".into(),
        action: "attest".into(),
        tee: Some("sim".into()),
        outcome: "refused".into(),
        failed_check: Some(huge.clone()),
        detail: json!({"message": format!("format {huge:?} is not known"), "secrets": vec![huge.clone(); 32]}),
        ..Default::default()
    };
    let rec = s.append_audit(&e).await.unwrap();
    assert!(rec.failed_check.as_ref().unwrap().len() <= MAX_FIELD + 120, "{:?}", rec.failed_check);
    assert!(rec.failed_check.as_ref().unwrap().contains("[truncated: 60000 bytes, sha256:"));
    assert!(rec.detail.len() <= MAX_DETAIL, "{} bytes of detail stored", rec.detail.len());
    let stored = s.audit_page(rec.seq - 1, 1).await.unwrap().remove(0);
    assert_eq!(stored, rec, "what is read back is what was chained");
    verify_audit_chain(s).await.expect("a bounded entry chains like any other");
}

/// Rows as an older release wrote them, unbounded (the chain is not
/// checked here: only paging).
const LEGACY_INSERT_SQLITE: &str =
    "INSERT INTO audit_log (seq, ts, actor, action, tee, outcome, failed_check, token_id, detail, prev_hash, hash) \
                                    VALUES (?, 0, 'client:192.0.2.1', 'attest', NULL, 'refused', NULL, NULL, ?, '', '')";
const LEGACY_INSERT_PG: &str =
    "INSERT INTO audit_log (seq, ts, actor, action, tee, outcome, failed_check, token_id, detail, prev_hash, hash) \
                                VALUES ($1, 0, 'client:192.0.2.1', 'attest', NULL, 'refused', NULL, NULL, $2, '', '')";

/// The sizes of the legacy rows inserted after `first`: three of 40% of a
/// page, then one of three pages.
fn legacy_details() -> Vec<String> {
    let part = usize::try_from(MAX_PAGE_BYTES).unwrap() * 2 / 5;
    vec!["x".repeat(part), "y".repeat(part), "z".repeat(part), "w".repeat(part * 8)]
}

/// Page through the log after `first` and check the byte budget.
async fn pages_are_bounded_by_bytes(s: &dyn Store, first: i64, owner: Option<&str>) {
    let page = |after: i64| async move {
        match owner {
            Some(o) => s.owner_audit_page(o, after, 1000).await.unwrap(),
            None => s.audit_page(after, 1000).await.unwrap(),
        }
    };
    let p1 = page(first).await;
    assert_eq!(p1.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![first + 1, first + 2], "two rows fit in a page, not three");
    let p2 = page(first + 2).await;
    assert_eq!(p2.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![first + 3], "the oversized row starts a page of its own");
    let p3 = page(first + 3).await;
    assert_eq!(p3.len(), 1, "a row over the budget alone still comes back, so paging moves on");
    assert!(p3[0].detail.len() > usize::try_from(MAX_PAGE_BYTES).unwrap());
    assert!(page(first + 4).await.is_empty());
    // Small rows: `limit` still applies.
    let small = match owner {
        Some(o) => s.owner_audit_page(o, 0, 1).await.unwrap(),
        None => s.audit_page(0, 1).await.unwrap(),
    };
    assert_eq!(small.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bounds_entries_and_pages() {
    let dir = temp_dir("audit-limits");
    let s = SqliteStore::open_dir(&dir).await.unwrap();
    oversized_entries_are_stored_bounded(&s).await;
    let first = s.audit_page(0, 1000).await.unwrap().last().unwrap().seq;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.join(cachet_store::sqlite::DB_FILE).display())).await.unwrap();
    for (i, d) in legacy_details().into_iter().enumerate() {
        let seq = first + 1 + i64::try_from(i).unwrap();
        sqlx::query(LEGACY_INSERT_SQLITE).bind(seq).bind(d).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO owner_audit (owner, seq) VALUES ('bank-a', ?)").bind(seq).execute(&pool).await.unwrap();
    }
    pool.close().await;
    pages_are_bounded_by_bytes(&s, first, None).await;
    pages_are_bounded_by_bytes(&s, first, Some("bank-a")).await;
    s.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bounds_entries_and_pages() {
    let Some(cluster) = pg::PgCluster::start("audit-limits") else { return };
    let url = cluster.create_database();
    let s = PostgresStore::open(&url).await.unwrap();
    oversized_entries_are_stored_bounded(&s).await;
    let first = s.audit_page(0, 1000).await.unwrap().last().unwrap().seq;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for (i, d) in legacy_details().into_iter().enumerate() {
        let seq = first + 1 + i64::try_from(i).unwrap();
        sqlx::query(LEGACY_INSERT_PG).bind(seq).bind(d).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO owner_audit (owner, seq) VALUES ('bank-a', $1)").bind(seq).execute(&pool).await.unwrap();
    }
    pool.close().await;
    pages_are_bounded_by_bytes(&s, first, None).await;
    pages_are_bounded_by_bytes(&s, first, Some("bank-a")).await;
}
