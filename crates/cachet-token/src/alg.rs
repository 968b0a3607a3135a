//! The JWS algorithms tokens may be signed with.

use serde::{Deserialize, Serialize};

/// A JWS signature algorithm (RFC 7518). ES256 is the default: compact
/// signatures, supported by every JWT library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    #[default]
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PSS with SHA-256 (and MGF1 SHA-256, salt 32 bytes), RSA 3072.
    PS256,
}

impl Algorithm {
    /// Every algorithm supported.
    pub const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::PS256];

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::PS256 => "PS256",
        }
    }

    /// Parse a JWS `alg` name (case-sensitive, as RFC 7515 requires).
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse(s).ok_or_else(|| format!("unknown token algorithm {s:?}; expected ES256, ES384 or PS256"))
    }
}
