//! Key-encryption keys: what wraps each secret's data key.
//!
//! Two custodians implement [`KeyEncryptionKey`]: [`LocalFileKek`], a
//! 256-bit key in a file only the service's user may read (the embedded
//! default), and [`crate::pkcs11::Pkcs11Kek`], an AES key inside a PKCS#11
//! HSM that never leaves it. Both wrap with AES-256-GCM under associated
//! data naming the secret, in the same format (`iv(12) ‖ ciphertext ‖
//! tag(16)`), so a wrapped data key moved to another secret's record does
//! not unwrap.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::secret::KeyBytes;
use crate::BrokerError;

/// Length of a KEK-wrapped data key: IV, 32-byte key, GCM tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + 32 + 16;

/// Wraps and unwraps data keys. Implementations are used from many threads.
pub trait KeyEncryptionKey: Send + Sync {
    /// Which custodian (`"local-file"`, `"pkcs11"`), recorded with each
    /// sealed secret.
    fn kind(&self) -> &'static str;

    /// A stable identifier of this KEK (not secret), recorded with each
    /// sealed secret so opening under another KEK fails by name rather than
    /// as a decryption error.
    fn key_id(&self) -> &str;

    /// Encrypt a 32-byte data key, authenticating `aad` with it.
    fn wrap(&self, dek: &KeyBytes<32>, aad: &[u8]) -> Result<Vec<u8>, BrokerError>;

    /// Decrypt a wrapped data key; fails if it or `aad` was altered.
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes<32>, BrokerError>;

    /// Whether the KEK can be used now (an HSM answers and holds it), for
    /// readiness checks. A key in memory always can.
    fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// AES-256-GCM seal of `plaintext` under `key` with a random IV:
/// `iv ‖ ciphertext ‖ tag`.
pub(crate) fn gcm_seal(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, BrokerError> {
    let crypto = |what: &str| BrokerError::Crypto(what.to_string());
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| crypto("AES-256-GCM key"))?);
    let mut iv = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| crypto("random IV"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&iv);
    let mut body = plaintext.to_vec();
    let sealed = k.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut body);
    if sealed.is_err() {
        crate::secret::wipe(&mut body);
        return Err(crypto("AES-256-GCM seal"));
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Inverse of [`gcm_seal`]; the plaintext is wiped on drop.
pub(crate) fn gcm_open(key: &[u8], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, BrokerError> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| BrokerError::Crypto("AES-256-GCM key".into()))?);
    if sealed.len() < NONCE_LEN + 16 {
        return Err(BrokerError::Integrity("ciphertext too short".into()));
    }
    let (iv, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| BrokerError::Integrity("bad IV".into()))?;
    let mut buf = Zeroizing::new(body.to_vec());
    let n = k
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| BrokerError::Integrity("authentication failed (altered ciphertext, wrong key or wrong secret identity)".into()))?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// The embedded default: a 256-bit KEK in a local file.
///
/// Created on first start with permissions 0600 (exclusive create, so two
/// starting processes cannot both write one); refused at start when group
/// or others may access it, when it is not a regular file, or when it does
/// not hold exactly 32 bytes.
pub struct LocalFileKek {
    key: KeyBytes<32>,
    id: String,
    path: PathBuf,
}

impl std::fmt::Debug for LocalFileKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFileKek").field("id", &self.id).field("path", &self.path).finish_non_exhaustive()
    }
}

/// `local:` and the first 16 hex digits of SHA-256 over a label and the key:
/// a key check value that names the key without revealing it.
fn local_key_id(key: &KeyBytes<32>) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"cachet-kek-id-v1\0");
    ctx.update(key.expose());
    let d = ctx.finish();
    format!("local:{}", hex::encode(d.as_ref().get(..8).unwrap_or_default()))
}

impl LocalFileKek {
    /// Open the key file at `path`, creating it (0600, 32 random bytes) if
    /// it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Self, BrokerError> {
        match Self::open(path) {
            Err(BrokerError::KeyFileMissing(_)) => Self::create(path),
            other => other,
        }
    }

    /// Open an existing key file, checking its permissions first.
    pub fn open(path: &Path) -> Result<Self, BrokerError> {
        let io = |e: std::io::Error| BrokerError::KeyFile(format!("{}: {e}", path.display()));
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BrokerError::KeyFileMissing(path.display().to_string())),
            Err(e) => return Err(io(e)),
        };
        if !meta.file_type().is_file() {
            return Err(BrokerError::KeyFile(format!("{} is not a regular file", path.display())));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(BrokerError::KeyFile(format!(
                "{} has permissions {mode:04o}: group or others may access the key-encryption key; \
                 refusing to start (chmod 600 it, and consider the key exposed if it was world-readable)",
                path.display()
            )));
        }
        let mut f = File::open(path).map_err(io)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(33));
        (&mut f).take(33).read_to_end(&mut buf).map_err(io)?;
        let key = KeyBytes::<32>::from_slice(&buf)
            .ok_or_else(|| BrokerError::KeyFile(format!("{} holds {} bytes, not a 32-byte key", path.display(), buf.len())))?;
        Ok(Self { id: local_key_id(&key), key, path: path.to_path_buf() })
    }

    fn create(path: &Path) -> Result<Self, BrokerError> {
        let io = |e: std::io::Error| BrokerError::KeyFile(format!("{}: {e}", path.display()));
        let key = KeyBytes::<32>::random().map_err(|_| BrokerError::Crypto("random KEK".into()))?;
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
        // The umask cannot widen 0600, but a pre-set default ACL could: set it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        f.write_all(key.expose()).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(Self { id: local_key_id(&key), key, path: path.to_path_buf() })
    }
}

impl KeyEncryptionKey for LocalFileKek {
    fn kind(&self) -> &'static str {
        "local-file"
    }

    fn key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, dek: &KeyBytes<32>, aad: &[u8]) -> Result<Vec<u8>, BrokerError> {
        gcm_seal(self.key.expose(), dek.expose(), aad)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes<32>, BrokerError> {
        let dek = gcm_open(self.key.expose(), wrapped, aad)?;
        KeyBytes::from_slice(&dek).ok_or_else(|| BrokerError::Integrity("wrapped data key has the wrong length".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_0600_reopened_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        let a = LocalFileKek::open_or_create(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = LocalFileKek::open_or_create(&p).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        let dek = KeyBytes::<32>::random().unwrap();
        let w = a.wrap(&dek, b"aad").unwrap();
        assert_eq!(w.len(), WRAPPED_LEN);
        assert_eq!(b.unwrap(&w, b"aad").unwrap().expose(), dek.expose());
        assert!(b.unwrap(&w, b"other aad").is_err());
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert!(b.unwrap(&bad, b"aad").is_err());
    }

    #[test]
    fn a_readable_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        LocalFileKek::open_or_create(&p).unwrap();
        for mode in [0o644, 0o604, 0o640, 0o660] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = LocalFileKek::open_or_create(&p).unwrap_err();
            assert!(matches!(e, BrokerError::KeyFile(ref m) if m.contains("refusing to start")), "{mode:o}: {e}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(LocalFileKek::open(&p).is_ok());
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        std::fs::write(&p, [1u8; 31]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(LocalFileKek::open_or_create(&p), Err(BrokerError::KeyFile(_))));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(LocalFileKek::open(&link), Err(BrokerError::KeyFile(_))));
    }
}
