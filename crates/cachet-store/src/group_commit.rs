//! Group commit of audit entries: every entry that arrives while a batch is
//! being written goes into the next batch, and each batch is one
//! transaction — one chain-head read, one lock (PostgreSQL's advisory lock),
//! one fsync — however many attestations it records. Nothing waits on a
//! timer: a lone entry is written at once; under load batches grow by
//! themselves. Each caller is answered only once its own entry is committed,
//! so a token is never handed out before its decision is durable.
//!
//! The writing runs in a task of its own: a caller that goes away (its
//! client disconnected) can neither strand the entries queued behind it nor
//! cut a batch in half.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::audit::{AuditEntry, AuditRecord};
use crate::{StoreError, StoreResult};

/// Most entries in one transaction (a longer queue is written in several).
pub const MAX_BATCH: usize = 256;

type Waiter = (AuditEntry, oneshot::Sender<StoreResult<AuditRecord>>);

/// The queue of entries waiting for the next batch, and the one writer.
#[derive(Default)]
pub struct GroupCommit {
    queue: Arc<Mutex<Vec<Waiter>>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("queued", &lock(&self.queue).len()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupCommit {
    /// Append `entry` with the batch it lands in; `write` appends a batch to
    /// the chain in one transaction and returns the records in order.
    pub async fn append<W, F>(&self, entry: &AuditEntry, write: W) -> StoreResult<AuditRecord>
    where
        W: Fn(Vec<AuditEntry>) -> F + Send + Sync + 'static,
        F: Future<Output = StoreResult<Vec<AuditRecord>>> + Send,
    {
        let (done, answer) = oneshot::channel();
        // Stamped here, in the caller's task (the request id is task-local).
        lock(&self.queue).push((entry.stored().into_owned(), done));
        let (queue, writer) = (self.queue.clone(), self.writer.clone());
        tokio::spawn(async move {
            let _writing = writer.lock().await;
            loop {
                let batch: Vec<Waiter> = {
                    let mut q = lock(&queue);
                    let n = q.len().min(MAX_BATCH);
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                let (entries, waiters): (Vec<AuditEntry>, Vec<_>) = batch.into_iter().unzip();
                match write(entries.clone()).await {
                    Ok(records) if records.len() == waiters.len() => {
                        for (w, r) in waiters.into_iter().zip(records) {
                            let _ = w.send(Ok(r));
                        }
                    }
                    // The batch failed as a whole (nothing of it was kept):
                    // each entry on its own, so one bad entry fails alone.
                    _ => {
                        for (e, w) in entries.into_iter().zip(waiters) {
                            let one = write(vec![e]).await.and_then(|mut r| r.pop().ok_or_else(|| lost("no record")));
                            let _ = w.send(one);
                        }
                    }
                }
            }
        });
        answer.await.map_err(|_| lost("the audit writer stopped before this entry was committed"))?
    }
}

fn lost(why: &str) -> StoreError {
    StoreError::Database(why.to_string())
}
