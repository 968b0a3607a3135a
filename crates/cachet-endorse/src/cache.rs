//! Where fetched endorsements are kept: a folder for `cachet verify`, the
//! database for `cachet serve` (implemented in `cachet-server`), memory for tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::Fetched;

/// A store of fetched endorsements, keyed by [`crate::Resource::key`].
#[async_trait]
pub trait Cache: Send + Sync {
    /// The entry for `key`, if held.
    async fn get(&self, key: &str) -> Option<Fetched>;
    /// Keep `entry` under `key` (replacing what was there).
    async fn put(&self, key: &str, entry: &Fetched);
    /// Everything held.
    async fn list(&self) -> Vec<Fetched>;
    /// Keep every entry, or none where the cache can promise it (the
    /// service's store: one transaction); an error says why nothing was kept.
    async fn put_all(&self, entries: &[Fetched]) -> Result<(), String> {
        for e in entries {
            self.put(&e.resource.key(), e).await;
        }
        Ok(())
    }
}

/// A cached entry (alias kept for readers of the cache API).
pub type CachedEntry = Fetched;

/// In memory only.
#[derive(Default)]
pub struct MemoryCache(Mutex<HashMap<String, Fetched>>);

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Fetched> {
        self.0.lock().ok()?.get(key).cloned()
    }
    async fn put(&self, key: &str, entry: &Fetched) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), entry.clone());
        }
    }
    async fn list(&self) -> Vec<Fetched> {
        self.0.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// One JSON file per entry in a folder (`cachet verify --cache-dir`), named by
/// the SHA-256 of the key so no key can name a path. Unreadable or corrupt
/// files are misses: the cache never decides a verdict, the verifier does.
pub struct FolderCache {
    dir: PathBuf,
}

impl FolderCache {
    /// A cache in `dir` (created on first write, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FolderCache { dir: dir.into() }
    }

    /// The platform's cache folder for Cachet (`$XDG_CACHE_HOME/cachet/endorsements`,
    /// else `~/.cache/cachet/endorsements`), if a home is known.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("cachet").join("endorsements"))
    }

    fn path(&self, key: &str) -> PathBuf {
        let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        self.dir.join(format!("{}.json", hex::encode(h.as_ref())))
    }
}

/// Largest cache file read back (a RIM is well under this).
const MAX_ENTRY_LEN: u64 = 8 << 20;

#[async_trait]
impl Cache for FolderCache {
    async fn get(&self, key: &str) -> Option<Fetched> {
        let path = self.path(key);
        let meta = tokio::fs::metadata(&path).await.ok()?;
        if meta.len() > MAX_ENTRY_LEN {
            return None;
        }
        let bytes = tokio::fs::read(&path).await.ok()?;
        let f: Fetched = serde_json::from_slice(&bytes).ok()?;
        (f.resource.key() == key).then_some(f)
    }
    async fn put(&self, key: &str, entry: &Fetched) {
        let Ok(json) = serde_json::to_vec(entry) else { return };
        if let Err(e) = write_private(&self.dir, &self.path(key), &json) {
            tracing::warn!("endorsement cache {}: {e}", self.dir.display());
        }
    }
    async fn list(&self) -> Vec<Fetched> {
        let mut out = Vec::new();
        let Ok(mut rd) = tokio::fs::read_dir(&self.dir).await else { return out };
        while let Ok(Some(e)) = rd.next_entry().await {
            let Ok(bytes) = tokio::fs::read(e.path()).await else { continue };
            if let Ok(f) = serde_json::from_slice::<Fetched>(&bytes) {
                out.push(f);
            }
        }
        out
    }
}

/// Write atomically (temporary file, then rename) in a 0700 folder.
fn write_private(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What a slower cache holds, kept in memory for a while: the service's
/// store answers one query per piece per attestation otherwise. Only what is
/// held is remembered, never an absence, so a piece another replica (or an
/// import) adds is seen by the next request; a piece another replica
/// refreshed is seen within [`Remembered::ttl`]. Whether a piece is still
/// valid is decided by its own `next_update`, as always.
pub struct Remembered {
    inner: std::sync::Arc<dyn Cache>,
    ttl: std::time::Duration,
    held: Mutex<HashMap<String, (std::time::Instant, Fetched)>>,
}

/// Most entries remembered (all are forgotten when full).
const MAX_REMEMBERED: usize = 4096;

impl Remembered {
    /// Remember what `inner` answers for `ttl`.
    pub fn new(inner: std::sync::Arc<dyn Cache>, ttl: std::time::Duration) -> Self {
        Remembered { inner, ttl, held: Mutex::new(HashMap::new()) }
    }

    /// How long an answer is remembered.
    pub fn ttl(&self) -> std::time::Duration {
        self.ttl
    }

    fn remember(&self, key: &str, f: &Fetched) {
        if let Ok(mut m) = self.held.lock() {
            if m.len() >= MAX_REMEMBERED {
                m.clear();
            }
            m.insert(key.to_string(), (std::time::Instant::now(), f.clone()));
        }
    }
}

#[async_trait]
impl Cache for Remembered {
    async fn get(&self, key: &str) -> Option<Fetched> {
        let recent = self.held.lock().ok().and_then(|m| m.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, f)| f.clone()));
        if recent.is_some() {
            return recent;
        }
        let f = self.inner.get(key).await?;
        self.remember(key, &f);
        Some(f)
    }

    async fn put(&self, key: &str, entry: &Fetched) {
        self.inner.put(key, entry).await;
        self.remember(key, entry);
    }

    async fn list(&self) -> Vec<Fetched> {
        self.inner.list().await
    }

    async fn put_all(&self, entries: &[Fetched]) -> Result<(), String> {
        self.inner.put_all(entries).await?;
        for e in entries {
            self.remember(&e.resource.key(), e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod remembered_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{Part, Resource};

    /// A cache that counts its reads.
    #[derive(Default)]
    struct Counting(MemoryCache, AtomicUsize);

    #[async_trait]
    impl Cache for Counting {
        async fn get(&self, key: &str) -> Option<Fetched> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.get(key).await
        }
        async fn put(&self, key: &str, entry: &Fetched) {
            self.0.put(key, entry).await
        }
        async fn list(&self) -> Vec<Fetched> {
            self.0.list().await
        }
    }

    fn rim(id: &str, at: i64) -> Fetched {
        Fetched {
            resource: Resource::Rim { id: id.into() },
            parts: vec![Part { name: "rim.xml".into(), bytes: b"<x/>".to_vec() }],
            fetched_at: at,
            next_update: None,
            source: "test".into(),
        }
    }

    #[tokio::test]
    async fn what_is_held_is_remembered_for_its_ttl_and_an_absence_never() {
        let inner = Arc::new(Counting::default());
        let r = Remembered::new(inner.clone(), std::time::Duration::from_secs(60));
        let key = rim("A", 1).resource.key();
        // Absent: asked every time (another replica may add it meanwhile).
        assert!(r.get(&key).await.is_none());
        assert!(r.get(&key).await.is_none());
        assert_eq!(inner.1.load(Ordering::SeqCst), 2);
        // Added behind its back (as another replica does): seen at once.
        inner.put(&key, &rim("A", 1)).await;
        assert_eq!(r.get(&key).await, Some(rim("A", 1)));
        assert_eq!(r.get(&key).await, Some(rim("A", 1)));
        assert_eq!(inner.1.load(Ordering::SeqCst), 3, "held: read once");
        // Written through it: remembered and kept below.
        r.put(&key, &rim("A", 2)).await;
        assert_eq!(r.get(&key).await, Some(rim("A", 2)));
        assert_eq!(inner.0.get(&key).await, Some(rim("A", 2)));
        assert_eq!(inner.1.load(Ordering::SeqCst), 3);
        // With no time to remember, every read goes below.
        let none = Remembered::new(inner.clone(), std::time::Duration::ZERO);
        none.get(&key).await;
        none.get(&key).await;
        assert_eq!(inner.1.load(Ordering::SeqCst), 5);
    }
}
