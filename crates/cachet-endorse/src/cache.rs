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
