//! Compact JWS (RFC 7515) signing and verification.
//!
//! Signing goes through a [`KeyCustody`], so the private key may live in an
//! HSM. Verification takes the published keys and refuses anything but the
//! exact algorithm the key is published for (no `none`, no algorithm
//! substitution), then checks `exp`, `nbf`/`iat` and `iss`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::custody::KeyCustody;
use crate::jwk::PublicKey;
use crate::keyring::SigningKey;
use crate::{Algorithm, TokenError};

/// Largest token accepted for verification (bytes).
pub const MAX_TOKEN_LEN: usize = 1 << 20;

/// Sign `claims` (a JSON object) as a compact JWS with `key`, putting its
/// `kid` and algorithm in the header.
pub fn sign(claims: &Value, key: &SigningKey, custody: &dyn KeyCustody) -> Result<String, TokenError> {
    sign_typed(claims, key, custody, "JWT")
}

/// [`sign`] with another `typ` header (RFC 8725 §3.11: explicit typing, so
/// one kind of signed statement cannot be taken for another).
pub fn sign_typed(claims: &Value, key: &SigningKey, custody: &dyn KeyCustody, typ: &str) -> Result<String, TokenError> {
    if key.custody != custody.name() {
        return Err(TokenError::Key(format!("key {} belongs to the {} custody, not {}", key.kid, key.custody, custody.name())));
    }
    let header = json!({"alg": key.alg.as_str(), "typ": typ, "kid": key.kid});
    let encode = |v: &Value| serde_json::to_vec(v).map(|b| URL_SAFE_NO_PAD.encode(b));
    let signing_input = format!(
        "{}.{}",
        encode(&header).map_err(|e| TokenError::Sign(e.to_string()))?,
        encode(claims).map_err(|e| TokenError::Sign(e.to_string()))?
    );
    let sig = custody.sign(key.alg, &key.handle, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A token's parts, decoded but NOT verified.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The protected header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
    /// `header.payload`, the bytes signed.
    pub signing_input: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Split and decode a compact JWS without checking anything but its form.
pub fn decode(token: &str) -> Result<Decoded, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("token too large".into()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("a compact JWS has three dot-separated parts".into()));
    };
    let b64 = |s: &str, what: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed(format!("{what} is not base64url")));
    let json = |b: Vec<u8>, what: &str| {
        serde_json::from_slice::<Value>(&b)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| TokenError::Malformed(format!("{what} is not a JSON object")))
    };
    Ok(Decoded {
        header: json(b64(h, "header")?, "header")?,
        claims: json(b64(p, "payload")?, "payload")?,
        signing_input: format!("{h}.{p}"),
        signature: b64(s, "signature")?,
    })
}

/// What a verifier requires of a token besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The instant to check `exp`/`nbf`/`iat` against (Unix seconds).
    pub now: i64,
    /// Allowed clock difference (seconds).
    pub leeway: i64,
    /// Required `iss`, if any.
    pub issuer: Option<&'a str>,
}

/// Verify a token against the published keys and return its claims.
pub fn verify(token: &str, keys: &[PublicKey], want: &Expectations<'_>) -> Result<Value, TokenError> {
    let d = decode(token)?;
    let alg = d.header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = d.header.get("kid").and_then(Value::as_str).ok_or_else(|| TokenError::Refused("no 'kid' in header".into()))?;
    if d.header.get("crit").is_some() {
        return Err(TokenError::Refused("'crit' header parameters are not supported".into()));
    }
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| TokenError::Refused(format!("unknown key '{kid}'")))?;
    if Algorithm::parse(alg) != Some(key.alg) {
        return Err(TokenError::Refused(format!("algorithm {alg:?} is not the key's {}", key.alg)));
    }
    key.verify(d.signing_input.as_bytes(), &d.signature)?;
    let num = |name: &str| d.claims.get(name).and_then(Value::as_i64);
    let exp = num("exp").ok_or_else(|| TokenError::Refused("no 'exp'".into()))?;
    if want.now >= exp.saturating_add(want.leeway) {
        return Err(TokenError::Refused("expired".into()));
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = num(name) {
            if t > want.now.saturating_add(want.leeway) {
                return Err(TokenError::Refused(format!("'{name}' is in the future")));
            }
        }
    }
    if let Some(iss) = want.issuer {
        let actual = d.claims.get("iss").and_then(Value::as_str);
        if actual != Some(iss) {
            let actual = actual.map(|a| format!("{a:?}")).unwrap_or_else(|| "absent".into());
            return Err(TokenError::Refused(format!(
                "wrong issuer: expected {iss:?}, the token's is {actual} (a token from another service, or from this one before its --issuer changed)"
            )));
        }
    }
    Ok(d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custody::LocalCustody;

    fn key(alg: Algorithm, custody: &LocalCustody) -> (SigningKey, PublicKey) {
        let k = custody.generate(alg, "k1").unwrap();
        let pk = PublicKey::from_spki("k1", alg, &k.public_spki_der).unwrap();
        (SigningKey::new("k1", alg, "local", k, 0, 0), pk)
    }

    fn want(now: i64) -> Expectations<'static> {
        Expectations { now, leeway: 0, issuer: Some("https://cachet.test") }
    }

    #[test]
    fn a_signed_token_verifies_and_any_altered_byte_is_refused() {
        let custody = LocalCustody::new();
        for alg in Algorithm::ALL {
            let (sk, pk) = key(alg, &custody);
            let claims = json!({"iss": "https://cachet.test", "iat": 100, "exp": 200, "x": "y"});
            let token = sign(&claims, &sk, &custody).unwrap();
            assert_eq!(verify(&token, std::slice::from_ref(&pk), &want(150)).unwrap(), claims);
            let bytes = token.as_bytes();
            for i in (0..bytes.len()).step_by(7) {
                let mut t = bytes.to_vec();
                t[i] = if t[i] == b'A' { b'B' } else { b'A' };
                if t == bytes {
                    continue;
                }
                let t = String::from_utf8(t).unwrap();
                assert!(verify(&t, std::slice::from_ref(&pk), &want(150)).is_err(), "{alg}: byte {i}");
            }
        }
    }

    #[test]
    fn expiry_issuer_kid_and_algorithm_are_enforced() {
        let custody = LocalCustody::new();
        let (sk, pk) = key(Algorithm::ES256, &custody);
        let token = sign(&json!({"iss": "https://cachet.test", "iat": 100, "exp": 200}), &sk, &custody).unwrap();
        let keys = std::slice::from_ref(&pk);
        assert_eq!(verify(&token, keys, &want(200)), Err(TokenError::Refused("expired".into())));
        assert!(verify(&token, keys, &want(50)).is_err(), "iat in the future");
        let other = Expectations { issuer: Some("https://evil"), ..want(150) };
        assert!(verify(&token, keys, &other).is_err());
        assert!(verify(&token, &[], &want(150)).is_err(), "unknown kid");
        // alg=none with the signature stripped.
        let parts: Vec<&str> = token.split('.').collect();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        assert!(verify(&format!("{none}.{}.", parts[1]), keys, &want(150)).is_err());
    }
}
