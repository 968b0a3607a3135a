//! Public keys as JSON Web Keys (RFC 7517) and the JWKS relying parties fetch.

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as X509PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{Algorithm, TokenError};

/// The key material of a public key, in the form the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Uncompressed EC point `04 ‖ x ‖ y`.
    Ec(Vec<u8>),
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A token-verification key: its `kid`, algorithm and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Key ID, as in the JWS header and the JWKS.
    pub kid: String,
    /// The one algorithm this key is used with.
    pub alg: Algorithm,
    material: Material,
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

fn ec_point_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::ES256 => Some(65),
        Algorithm::ES384 => Some(97),
        Algorithm::PS256 | Algorithm::RS256 => None,
    }
}

impl PublicKey {
    /// From an X.509 SubjectPublicKeyInfo (DER), checking it suits `alg`.
    pub fn from_spki(kid: &str, alg: Algorithm, spki_der: &[u8]) -> Result<Self, TokenError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| TokenError::Key(format!("public key: {e}")))?;
        if !rest.is_empty() {
            return Err(TokenError::Key("public key: trailing bytes".into()));
        }
        let parsed = spki.parsed().map_err(|e| TokenError::Key(format!("public key: {e}")))?;
        let material = match (alg, parsed) {
            (Algorithm::ES256 | Algorithm::ES384, X509PublicKey::EC(point)) => {
                let p = point.data().to_vec();
                if Some(p.len()) != ec_point_len(alg) || p.first() != Some(&4) {
                    return Err(TokenError::Key(format!("EC key does not match {alg}")));
                }
                Material::Ec(p)
            }
            (Algorithm::PS256 | Algorithm::RS256, X509PublicKey::RSA(rsa)) => {
                let n = strip_zeros(rsa.modulus);
                if n.len() < 256 {
                    return Err(TokenError::Key("RSA keys shorter than 2048 bits are refused".into()));
                }
                Material::Rsa { n, e: strip_zeros(rsa.exponent) }
            }
            _ => return Err(TokenError::Key(format!("key type does not match {alg}"))),
        };
        Ok(Self { kid: kid.to_string(), alg, material })
    }

    /// From a JWK (as found in a JWKS). `alg` and `kid` are required.
    pub fn from_jwk(jwk: &Value) -> Result<Self, TokenError> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let b64 = |name: &str| {
            field(name).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or_else(|| TokenError::Key(format!("JWK: missing or bad '{name}'")))
        };
        let kid = field("kid").ok_or_else(|| TokenError::Key("JWK: no 'kid'".into()))?;
        let alg = field("alg").and_then(Algorithm::parse).ok_or_else(|| TokenError::Key("JWK: no supported 'alg'".into()))?;
        let material = match (field("kty"), alg) {
            (Some("EC"), Algorithm::ES256 | Algorithm::ES384) => {
                let want_crv = if alg == Algorithm::ES256 { "P-256" } else { "P-384" };
                if field("crv") != Some(want_crv) {
                    return Err(TokenError::Key(format!("JWK: curve is not {want_crv}")));
                }
                let (x, y) = (b64("x")?, b64("y")?);
                let half = ec_point_len(alg).unwrap_or(1) / 2;
                if x.len() != half || y.len() != half {
                    return Err(TokenError::Key("JWK: coordinate length".into()));
                }
                let mut p = vec![4u8];
                p.extend_from_slice(&x);
                p.extend_from_slice(&y);
                Material::Ec(p)
            }
            (Some("RSA"), Algorithm::PS256 | Algorithm::RS256) => Material::Rsa { n: strip_zeros(&b64("n")?), e: strip_zeros(&b64("e")?) },
            _ => return Err(TokenError::Key("JWK: key type does not match its alg".into())),
        };
        Ok(Self { kid: kid.to_string(), alg, material })
    }

    /// The JWK, with the certificate chain (`x5c`, leaf first, and its
    /// SHA-256 thumbprint `x5t#S256`) when one is given.
    pub fn to_jwk(&self, x5c: &[Vec<u8>]) -> Value {
        let mut jwk = match &self.material {
            Material::Ec(p) => {
                let half = (p.len().saturating_sub(1)) / 2;
                let (x, y) = p.get(1..).unwrap_or_default().split_at(half.min(p.len().saturating_sub(1)));
                json!({
                    "kty": "EC",
                    "crv": if self.alg == Algorithm::ES384 { "P-384" } else { "P-256" },
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
            Material::Rsa { n, e } => json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}),
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.alg.as_str().into();
        jwk["use"] = "sig".into();
        if let Some(leaf) = x5c.first() {
            jwk["x5c"] = x5c.iter().map(|c| Value::from(STANDARD.encode(c))).collect();
            let t = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
            jwk["x5t#S256"] = URL_SAFE_NO_PAD.encode(t.as_ref()).into();
        }
        jwk
    }

    /// Whether `sig` is this key's JWS signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        let ok = match (&self.material, self.alg) {
            (Material::Ec(p), Algorithm::ES256) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p).verify(msg, sig).is_ok(),
            (Material::Ec(p), Algorithm::ES384) => UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, p).verify(msg, sig).is_ok(),
            (Material::Rsa { n, e }, Algorithm::PS256) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PSS_2048_8192_SHA256, msg, sig).is_ok()
            }
            (Material::Rsa { n, e }, Algorithm::RS256) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig).is_ok()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(TokenError::Refused("signature does not verify".into()))
        }
    }

    /// Whether this key is the public half of the certificate `cert_der`.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> bool {
        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert_der) else {
            return false;
        };
        PublicKey::from_spki(&self.kid, self.alg, cert.public_key().raw).map(|k| k.material == self.material).unwrap_or(false)
    }
}

/// A JWKS document (`{"keys": [...]}`) from keys and their certificate chains.
pub fn jwks<'a>(keys: impl IntoIterator<Item = (&'a PublicKey, &'a [Vec<u8>])>) -> Value {
    json!({ "keys": keys.into_iter().map(|(k, chain)| k.to_jwk(chain)).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custody::{KeyCustody, LocalCustody};

    #[test]
    fn jwk_round_trips_and_verifies_for_every_algorithm() {
        let c = LocalCustody::new();
        for alg in Algorithm::ALL {
            let k = c.generate(alg, "kid-1").unwrap();
            let pk = PublicKey::from_spki("kid-1", alg, &k.public_spki_der).unwrap();
            let jwk = pk.to_jwk(&[]);
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(jwk.get("x5c").is_none());
            let back = PublicKey::from_jwk(&jwk).unwrap();
            assert_eq!(back, pk);
            let sig = c.sign(alg, &k.handle, b"hello").unwrap();
            back.verify(b"hello", &sig).unwrap();
            assert!(back.verify(b"hellO", &sig).is_err());
        }
    }

    #[test]
    fn a_key_is_refused_for_another_algorithm() {
        let c = LocalCustody::new();
        let k = c.generate(Algorithm::ES256, "k").unwrap();
        assert!(PublicKey::from_spki("k", Algorithm::ES384, &k.public_spki_der).is_err());
        assert!(PublicKey::from_spki("k", Algorithm::PS256, &k.public_spki_der).is_err());
        let mut jwk = PublicKey::from_spki("k", Algorithm::ES256, &k.public_spki_der).unwrap().to_jwk(&[]);
        jwk["alg"] = "ES384".into();
        assert!(PublicKey::from_jwk(&jwk).is_err());
    }
}
