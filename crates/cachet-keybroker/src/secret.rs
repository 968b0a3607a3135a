//! Secret values: bytes that must never be printed, logged or left in memory.

use zeroize::{Zeroize, Zeroizing};

/// Largest secret value accepted (bytes). Secrets are keys, passwords and
/// small credentials; anything larger belongs in storage encrypted with one.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// A secret value. Its `Debug` prints only the length, it has no `Display`
/// and no `Serialize`, and its bytes are overwritten when it is dropped, so
/// a value cannot reach a log line, an error message or an audit entry by
/// accident: the only way out is [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Take ownership of `bytes` (wiped on drop).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copy `bytes` into a new secret value.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The bytes, for the code that must encrypt them or hand them to the
    /// workload. Named so every use is easy to find in review.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

/// A fixed-size key (data key, KEK) wiped on drop, with a redacting `Debug`.
#[derive(Clone)]
pub struct KeyBytes<const N: usize>(Zeroizing<[u8; N]>);

impl<const N: usize> KeyBytes<N> {
    /// Fresh random key bytes from the system generator.
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut k = Zeroizing::new([0u8; N]);
        aws_lc_rs::rand::fill(k.as_mut())?;
        Ok(Self(k))
    }

    /// From a slice of exactly `N` bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; N]);
        if bytes.len() != N {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Debug for KeyBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyBytes<{N}>(<redacted>)")
    }
}

/// Wipe a buffer that held secret bytes (for temporary `Vec`s that cannot
/// be `Zeroizing` because an API hands them back by value).
pub fn wipe(buf: &mut Vec<u8>) {
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let v = SecretValue::from_slice(b"hunter2-very-secret");
        let shown = format!("{v:?} {:?}", Some(&v));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("19 bytes"));
        let k = KeyBytes::<32>::from_slice(&[0x41; 32]).unwrap();
        assert!(!format!("{k:?}").contains("41"));
        assert!(!format!("{k:?}").contains('A'));
    }

    #[test]
    fn key_bytes_need_the_exact_length_and_are_random() {
        assert!(KeyBytes::<32>::from_slice(&[0; 31]).is_none());
        let (a, b) = (KeyBytes::<32>::random().unwrap(), KeyBytes::<32>::random().unwrap());
        assert_ne!(a.expose(), b.expose());
    }
}
