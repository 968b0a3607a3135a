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
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA 3072. Only the key of the Azure
    /// Attestation compatible routes uses it (clients such as the Azure SDK
    /// for Python check nothing else); EAR tokens never do, see
    /// [`Algorithm::signs_ear`].
    RS256,
}

impl Algorithm {
    /// Every algorithm supported.
    pub const ALL: [Algorithm; 4] = [Algorithm::ES256, Algorithm::ES384, Algorithm::PS256, Algorithm::RS256];

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::PS256 => "PS256",
            Algorithm::RS256 => "RS256",
        }
    }

    /// Whether keys of this algorithm sign EAR tokens (and take part in
    /// their rotation). RS256 keys sign only the tokens of the Azure
    /// Attestation compatible routes: they rotate apart, so a new RS256 key
    /// never retires the EAR signing key, nor the reverse.
    pub fn signs_ear(self) -> bool {
        !matches!(self, Algorithm::RS256)
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
        match Algorithm::parse(s) {
            Some(a) if a.signs_ear() => Ok(a),
            Some(_) => Err(format!(
                "{s} is used only by the Azure Attestation compatible key, which the service makes itself; choose ES256, ES384 or PS256"
            )),
            None => Err(format!("unknown token algorithm {s:?}; expected ES256, ES384 or PS256")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs256_parses_as_a_stored_alg_but_is_refused_as_a_token_alg() {
        assert_eq!(Algorithm::parse("RS256"), Some(Algorithm::RS256));
        assert!(!Algorithm::RS256.signs_ear());
        let e = "RS256".parse::<Algorithm>().unwrap_err();
        assert!(e.contains("ES256, ES384 or PS256"), "{e}");
        for a in ["ES256", "ES384", "PS256"] {
            assert!(a.parse::<Algorithm>().unwrap().signs_ear());
        }
    }
}
