//! Optionally signed appraisal policies.
//!
//! When the server is configured with policy-signing certificates
//! (`--policy-signing-cert`, [`crate::config::Config::policy_signing_certs`]),
//! `PUT /v1/admin/policies/{name}` accepts only `{"jws": COMPACT_JWS}`: an
//! RFC 7515 compact JWS whose payload is the Rego text, signed by the key of
//! one of those certificates. An admin API key alone then no longer suffices
//! to change how evidence is appraised: whoever holds a policy-signing key
//! must have approved the exact text.
//!
//! What is checked, each refusal with its own stable code:
//! - the form (three base64url parts, a JSON object header, no `crit`, no
//!   unencoded payload) and the algorithm: ES256, ES384, PS256 or RS256 only,
//!   never `none` or HMAC (`policy_signature_invalid`);
//! - the signer: named by `x5t#S256` (base64url SHA-256 of the certificate),
//!   `kid` (hex SHA-256 of the certificate) or `x5c` (the certificate
//!   itself), each of which must name a configured certificate; with none of
//!   them, every configured certificate whose key suits `alg` is tried
//!   (`policy_signer_unknown`);
//! - `alg` matches the certificate's key type (P-256 → ES256, P-384 →
//!   ES384, RSA ≥ 2048 bits → PS256/RS256) and the signature verifies over
//!   the header and payload exactly as received (`policy_signature_invalid`);
//! - the certificate is valid at the time of upload (`policy_signer_not_valid`);
//! - the payload is [`SignedPayload`] — `{"name", "version", "policy"}` — so
//!   a signature binds the text to one policy name and version
//!   (`policy_signature_unbound` otherwise); the server then refuses it
//!   under another name (`policy_signature_name_mismatch`) and unless its
//!   version is greater than every signed version stored under that name
//!   (`policy_signature_rollback`).
//!
//! Configured certificates are trusted as given (pinned, no chain): they are
//! the operator's statement of who may sign policies. Nothing in a JWS header
//! (`x5c`, `jku`, `x5u`) is ever trusted or fetched.
//!
//! Verification reuses `cachet_token::jwk::PublicKey` (the token verifier's
//! key parsing and aws-lc-rs verification, which bind one algorithm to one
//! key type); signing ([`sign_policy`], for `cachet admin policy sign`)
//! reuses `cachet_token::LocalCustody` (PKCS#8 keys, aws-lc-rs).

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use axum::http::StatusCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use cachet_token::jwk::PublicKey;
use cachet_token::{Algorithm, KeyCustody, LocalCustody};
use cachet_verify::x509;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// Largest certificate file read from the configuration (bytes).
pub const MAX_CERT_FILE_LEN: u64 = 1 << 20;
/// Largest encoded JWS header accepted (bytes); real ones are < 4 KiB even
/// with an `x5c` chain.
pub const MAX_HEADER_LEN: usize = 64 << 10;

/// Code: signing is configured and the upload is plain Rego.
pub const SIGNATURE_REQUIRED: &str = "policy_signature_required";
/// Code: the JWS is malformed, uses a refused algorithm, or its signature does not verify.
pub const SIGNATURE_INVALID: &str = "policy_signature_invalid";
/// Code: the JWS names, or verifies with, no configured certificate.
pub const SIGNER_UNKNOWN: &str = "policy_signer_unknown";
/// Code: the signing certificate is expired or not yet valid.
pub const SIGNER_NOT_VALID: &str = "policy_signer_not_valid";
/// Code: a JWS was sent to a server with no policy-signing certificates.
pub const SIGNING_NOT_CONFIGURED: &str = "policy_signing_not_configured";
/// Code: the signed payload is not `{"name", "version", "policy"}`: the
/// signature is not bound to a policy name and version.
pub const SIGNATURE_UNBOUND: &str = "policy_signature_unbound";
/// Code: the policy was signed for another name than the one it is stored under.
pub const NAME_MISMATCH: &str = "policy_signature_name_mismatch";
/// Code: the signed version is not greater than a version already stored
/// under that name (a rollback or a replay).
pub const ROLLBACK: &str = "policy_signature_rollback";

/// A JWS algorithm accepted for policy signatures (RFC 7518). `none` and
/// the HMAC algorithms are not representable, so never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAlg {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (for signers whose tools lack PSS).
    RS256,
}

impl PolicyAlg {
    /// Parse a JWS `alg` (case-sensitive, RFC 7515).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::ES256),
            "ES384" => Some(Self::ES384),
            "PS256" => Some(Self::PS256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::PS256 => "PS256",
            Self::RS256 => "RS256",
        }
    }
}

/// The kind of public key a signing certificate holds: it fixes which
/// algorithms may be used with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Rsa,
}

impl KeyKind {
    fn suits(self, alg: PolicyAlg) -> bool {
        matches!(
            (self, alg),
            (KeyKind::P256, PolicyAlg::ES256) | (KeyKind::P384, PolicyAlg::ES384) | (KeyKind::Rsa, PolicyAlg::PS256 | PolicyAlg::RS256)
        )
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::P256 => "EC P-256 (use ES256)",
            KeyKind::P384 => "EC P-384 (use ES384)",
            KeyKind::Rsa => "RSA (use PS256 or RS256)",
        }
    }

    /// The algorithm `cachet admin policy sign` uses for this key.
    fn signing_alg(self) -> Algorithm {
        match self {
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Rsa => Algorithm::PS256,
        }
    }
}

/// One configured policy-signing certificate, parsed once at start.
#[derive(Debug, Clone)]
pub struct Signer {
    der: Vec<u8>,
    subject: String,
    thumbprint_hex: String,
    x5t_s256: String,
    kind: KeyKind,
    /// The key as the token verifier holds it (ES256/ES384, or PS256 for RSA).
    key: PublicKey,
    /// RSA only: the PKCS#1 `RSAPublicKey` (the SPKI's bit string), for RS256.
    rsa_public_key: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl Signer {
    /// Parse a certificate and check its key can sign policies: EC P-256,
    /// P-384 or RSA of at least 2048 bits, and a `keyUsage` (if present)
    /// that allows digital signatures.
    pub fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let thumbprint_hex = x509::sha256_hex(&der);
        let x5t_s256 = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
        let cert = x509::parse_cert(&der)?;
        let subject = cert.subject().to_string();
        let spki = cert.public_key();
        let kind = match x509::ec_curve(spki) {
            Some("P-256") => KeyKind::P256,
            Some("P-384") => KeyKind::P384,
            _ if PublicKey::from_spki(&thumbprint_hex, Algorithm::PS256, spki.raw).is_ok() => KeyKind::Rsa,
            _ => return Err(format!("'{subject}': unsupported key (policy signers need EC P-256, EC P-384 or RSA of at least 2048 bits)")),
        };
        let key = PublicKey::from_spki(&thumbprint_hex, kind.signing_alg(), spki.raw).map_err(|e| format!("'{subject}': {e}"))?;
        match cert.key_usage() {
            Ok(Some(ku)) if !ku.value.digital_signature() => {
                return Err(format!("'{subject}': its keyUsage does not allow digitalSignature"));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("'{subject}': keyUsage: {e}")),
        }
        let rsa_public_key = if kind == KeyKind::Rsa { spki.subject_public_key.data.to_vec() } else { Vec::new() };
        let (not_before, not_after) = x509::validity_window(&cert);
        Ok(Signer { subject, thumbprint_hex, x5t_s256, kind, key, rsa_public_key, not_before, not_after, der })
    }

    /// What to record about this signer (audit log, API answers).
    pub fn info(&self, alg: PolicyAlg) -> SignerInfo {
        SignerInfo { subject: self.subject.clone(), thumbprint: self.thumbprint_hex.clone(), alg: alg.as_str().to_string(), version: None }
    }

    /// The certificate's subject, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Hex SHA-256 of the certificate (DER): the `kid` a signer uses.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint_hex
    }

    /// Whether the certificate is valid at `now` (bounds inclusive, RFC 5280).
    pub fn check_validity(&self, now: i64) -> Result<(), String> {
        if now < self.not_before {
            return Err(format!("'{}' is not valid before {}", self.subject, x509::fmt_time(self.not_before)));
        }
        if now > self.not_after {
            return Err(format!("'{}' expired at {}", self.subject, x509::fmt_time(self.not_after)));
        }
        Ok(())
    }

    fn verifies(&self, alg: PolicyAlg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.kind.suits(alg) {
            return false;
        }
        match alg {
            PolicyAlg::ES256 | PolicyAlg::ES384 | PolicyAlg::PS256 => self.key.verify(msg, sig).is_ok(),
            PolicyAlg::RS256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key).verify(msg, sig).is_ok(),
        }
    }
}

/// Which certificate signed a policy version (recorded in the audit log
/// and returned by `PUT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignerInfo {
    /// The certificate's subject (RFC 4514 form).
    pub subject: String,
    /// Hex SHA-256 of the certificate (DER).
    pub thumbprint: String,
    /// The JWS algorithm used.
    pub alg: String,
    /// The version the signer gave this policy (absent for signatures made
    /// before versions were signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Why a signed policy was refused; each variant has its own stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Malformed JWS, refused algorithm, algorithm/key mismatch, or a
    /// signature that does not verify with the named certificate.
    #[error("{0}")]
    Invalid(String),
    /// The JWS names, or verifies with, no configured certificate.
    #[error("{0}")]
    SignerUnknown(String),
    /// The signing certificate is expired or not yet valid.
    #[error("{0}")]
    SignerNotValid(String),
    /// The payload does not name the policy and its version.
    #[error("{0}")]
    Unbound(String),
}

impl SignatureError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Invalid(_) => SIGNATURE_INVALID,
            SignatureError::SignerUnknown(_) => SIGNER_UNKNOWN,
            SignatureError::SignerNotValid(_) => SIGNER_NOT_VALID,
            SignatureError::Unbound(_) => SIGNATURE_UNBOUND,
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
    }
}

/// A verified signed policy.
#[derive(Debug, Clone)]
pub struct SignedPolicy {
    /// The policy name the signer bound the text to.
    pub name: String,
    /// The version the signer gave it (at least 1; each upload under a name
    /// must carry a greater one than every version stored before).
    pub version: u64,
    /// The policy text as signed.
    pub text: String,
    /// Who signed it (with `version`).
    pub signer: SignerInfo,
}

/// What a signer signs: the policy text bound to its name and version, so
/// a signature cannot be replayed under another name or to roll back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPayload {
    /// The name the policy is stored under (`PUT /v1/admin/policies/{name}`).
    pub name: String,
    /// A number the signer increases with each version of this policy.
    pub version: u64,
    /// The Rego text.
    pub policy: String,
}

impl SignedPayload {
    /// Parse and check a verified payload.
    fn parse(payload: &[u8]) -> Result<SignedPayload, SignatureError> {
        let advice = "sign with `cachet admin policy sign --name NAME --version N --key KEY.pem --cert CERT.pem POLICY.rego`";
        let p: SignedPayload = serde_json::from_slice(payload).map_err(|e| {
            SignatureError::Unbound(format!(
                "the signed payload must be a JSON object {{\"name\", \"version\", \"policy\"}} that binds the policy text to its name \
                 and version ({e}); {advice}"
            ))
        })?;
        if p.version == 0 {
            return Err(SignatureError::Unbound(format!("the signed version must be at least 1; {advice}")));
        }
        Ok(p)
    }
}

/// The JWS header parameters that matter here. Unknown parameters are
/// ignored (RFC 7515 §4), except that `crit` is refused: none is understood.
#[derive(Debug, Deserialize)]
struct Header {
    alg: Option<Value>,
    kid: Option<Value>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<Value>,
    x5c: Option<Value>,
    crit: Option<Value>,
    b64: Option<Value>,
}

/// The configured policy-signing certificates. Empty means unsigned
/// policies are accepted (the behaviour without this feature).
#[derive(Debug, Clone, Default)]
pub struct PolicySigners {
    signers: Vec<Signer>,
}

impl PolicySigners {
    /// Read the configured certificate files (PEM with one or more
    /// `CERTIFICATE` blocks, or one DER certificate each). A file that
    /// cannot be read or holds an unusable certificate stops the server
    /// from starting, rather than silently accepting unsigned policies.
    pub fn load(paths: &[PathBuf]) -> Result<Self, String> {
        let mut ders = Vec::new();
        for path in paths {
            for der in read_cert_file(path)? {
                ders.push((der, path.as_path()));
            }
        }
        let mut signers: Vec<Signer> = Vec::new();
        for (der, path) in ders {
            let s = Signer::from_der(der).map_err(|e| format!("policy-signing certificate {}: {e}", path.display()))?;
            if let Err(e) = s.check_validity(crate::now()) {
                tracing::warn!(file = %path.display(), "policy-signing certificate not valid now (policies it signs are refused): {e}");
            }
            if !signers.iter().any(|o| o.thumbprint_hex == s.thumbprint_hex) {
                signers.push(s);
            }
        }
        Ok(Self { signers })
    }

    /// From certificates already in memory (DER).
    pub fn from_certificates(ders: Vec<Vec<u8>>) -> Result<Self, String> {
        let signers = ders.into_iter().map(Signer::from_der).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { signers })
    }

    /// Whether no certificate is configured (unsigned policies accepted).
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The configured signers.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// Verify a compact JWS at instant `now` (Unix seconds) and return its
    /// payload and signer. See the module documentation for each check.
    pub fn verify(&self, jws: &str, now: i64) -> Result<SignedPolicy, SignatureError> {
        let invalid = |m: String| SignatureError::Invalid(m);
        let jws = jws.trim_matches(|c: char| c.is_ascii_whitespace());
        let mut parts = jws.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(
                "not a compact JWS: expected three base64url parts separated by dots (header.payload.signature); \
                 produce one with `cachet admin policy sign --name NAME --version N --key KEY.pem --cert CERT.pem POLICY.rego`"
                    .into(),
            ));
        };
        if h.len() > MAX_HEADER_LEN {
            return Err(invalid(format!("JWS header larger than {MAX_HEADER_LEN} bytes")));
        }
        let b64 =
            |part: &str, what: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid(format!("the JWS {what} is not unpadded base64url")));
        let header_bytes = b64(h, "header")?;
        let header: Header = match serde_json::from_slice::<Value>(&header_bytes) {
            Ok(v @ Value::Object(_)) => serde_json::from_value(v).map_err(|e| invalid(format!("JWS header: {e}")))?,
            _ => return Err(invalid("the JWS header is not a JSON object".into())),
        };
        let alg = check_header(&header)?;
        let payload = b64(p, "payload")?;
        let signature = b64(s, "signature")?;
        let signing_input = format!("{h}.{p}");

        let named = self.named_signer(&header)?;
        let candidates: Vec<&Signer> = match named {
            Some(signer) => {
                if !signer.kind.suits(alg) {
                    return Err(invalid(format!(
                        "alg {} does not match the key of certificate '{}': it is {}",
                        alg.as_str(),
                        signer.subject,
                        signer.kind.describe()
                    )));
                }
                vec![signer]
            }
            None => self.signers.iter().filter(|s| s.kind.suits(alg)).collect(),
        };
        if candidates.is_empty() {
            return Err(SignatureError::SignerUnknown(format!(
                "no configured policy-signing certificate has a key for {}; sign with the key of one of the {} configured certificates",
                alg.as_str(),
                self.signers.len()
            )));
        }
        let Some(signer) = candidates.into_iter().find(|c| c.verifies(alg, signing_input.as_bytes(), &signature)) else {
            return Err(match named {
                Some(signer) => invalid(format!(
                    "the signature does not verify with certificate '{}' (sha-256 {}): the policy or signature was altered, \
                     or it was signed with another key; sign the exact text again with that certificate's key",
                    signer.subject, signer.thumbprint_hex
                )),
                None => SignatureError::SignerUnknown(
                    "the signature verifies with none of the configured policy-signing certificates: it was signed by another key, \
                     or the policy or signature was altered; sign with the key of a configured certificate \
                     (cachet admin policy sign puts its thumbprint in kid)"
                        .into(),
                ),
            });
        };
        signer.check_validity(now).map_err(|e| {
            SignatureError::SignerNotValid(format!(
                "policy-signing certificate {e}; sign with the key of a currently valid configured certificate, or have the server's certificate renewed"
            ))
        })?;
        let bound = SignedPayload::parse(&payload)?;
        let mut info = signer.info(alg);
        info.version = Some(bound.version);
        Ok(SignedPolicy { name: bound.name, version: bound.version, text: bound.policy, signer: info })
    }

    /// The certificate the header names by `x5t#S256`, `kid` or `x5c`, if
    /// any; a name that matches no configured certificate is refused, and so
    /// are names that disagree.
    fn named_signer(&self, header: &Header) -> Result<Option<&Signer>, SignatureError> {
        let unknown = |m: String| SignatureError::SignerUnknown(m);
        let mut named: Vec<(&str, &Signer)> = Vec::new();
        if let Some(v) = &header.x5t_s256 {
            let t = v.as_str().ok_or_else(|| SignatureError::Invalid("'x5t#S256' is not a string".into()))?;
            let s = self.signers.iter().find(|s| s.x5t_s256 == t).ok_or_else(|| {
                unknown(format!("'x5t#S256' {t} names no configured policy-signing certificate; sign with the key of a configured one"))
            })?;
            named.push(("x5t#S256", s));
        }
        if let Some(v) = &header.kid {
            let kid = v.as_str().ok_or_else(|| SignatureError::Invalid("'kid' is not a string".into()))?;
            let s = self.signers.iter().find(|s| s.thumbprint_hex.eq_ignore_ascii_case(kid)).ok_or_else(|| {
                unknown(format!(
                    "'kid' {kid:?} is not the SHA-256 thumbprint (hex) of a configured policy-signing certificate; \
                     sign with the key of a configured one, with its thumbprint as kid (or no kid)"
                ))
            })?;
            named.push(("kid", s));
        }
        if let Some(v) = &header.x5c {
            let leaf = v
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .and_then(|c| STANDARD.decode(c).ok())
                .ok_or_else(|| SignatureError::Invalid("'x5c' is not an array of base64 certificates".into()))?;
            let s = self.signers.iter().find(|s| s.der == leaf).ok_or_else(|| {
                unknown(
                    "the 'x5c' certificate is not a configured policy-signing certificate (certificates in the JWS are never trusted)"
                        .into(),
                )
            })?;
            named.push(("x5c", s));
        }
        match named.split_first() {
            None => Ok(None),
            Some(((_, first), rest)) => {
                if let Some((what, _)) = rest.iter().find(|(_, s)| s.thumbprint_hex != first.thumbprint_hex) {
                    return Err(SignatureError::Invalid(format!("'{what}' names a different certificate than '{}'", named[0].0)));
                }
                Ok(Some(first))
            }
        }
    }
}

/// The algorithm, after refusing `none`, HMAC, unknown algorithms, `crit`
/// and unencoded payloads.
fn check_header(header: &Header) -> Result<PolicyAlg, SignatureError> {
    let invalid = |m: String| SignatureError::Invalid(m);
    if header.crit.is_some() {
        return Err(invalid("the JWS header has 'crit': no critical header parameter is supported".into()));
    }
    if header.b64.as_ref().is_some_and(|b| b != &Value::Bool(true)) {
        return Err(invalid("unencoded JWS payloads ('b64') are not supported".into()));
    }
    let alg = match &header.alg {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("'alg' is not a string".into())),
        None => return Err(invalid("the JWS header has no 'alg'".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(invalid("alg 'none' (an unsigned JWS) is never accepted; sign the policy with ES256, ES384, PS256 or RS256".into()));
    }
    if alg.starts_with("HS") {
        return Err(invalid(format!(
            "alg {alg} (HMAC, a shared secret) is never accepted; sign with a certificate's key: ES256, ES384, PS256 or RS256"
        )));
    }
    PolicyAlg::parse(alg).ok_or_else(|| invalid(format!("alg {alg:?} is not accepted; use ES256, ES384, PS256 or RS256")))
}

fn read_cert_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("policy-signing certificate {shown}: {e}"))?;
    if meta.len() > MAX_CERT_FILE_LEN {
        return Err(format!("policy-signing certificate {shown}: larger than {MAX_CERT_FILE_LEN} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("policy-signing certificate {shown}: {e}"))?;
    let pem = x509::certs_from_pem(&bytes);
    if !pem.is_empty() {
        return Ok(pem);
    }
    if x509::is_der_cert(&bytes) {
        return Ok(vec![bytes]);
    }
    Err(format!("policy-signing certificate {shown}: no certificate (a PEM CERTIFICATE block or DER)"))
}

/// Sign policy text, bound to its name and version ([`SignedPayload`]), as
/// a compact JWS (what `cachet admin policy sign` prints): the algorithm
/// follows the certificate's key (P-256 → ES256, P-384 → ES384, RSA →
/// PS256), the header names the certificate by `kid` (hex SHA-256) and
/// `x5t#S256`. `key_pem` is a PKCS#8 private key (PEM `PRIVATE KEY`, or
/// DER); it must be the certificate's key.
pub fn sign_policy(name: &str, version: u64, text: &str, key_pem: &[u8], cert_pem: &[u8]) -> Result<(String, SignerInfo), String> {
    if version == 0 {
        return Err("the version must be at least 1 (and greater than that of every version the server stored)".into());
    }
    let payload =
        serde_json::to_vec(&SignedPayload { name: name.to_string(), version, policy: text.to_string() }).map_err(|e| e.to_string())?;
    let text = payload.as_slice();
    let cert_der = x509::der_from_pem_or_der(cert_pem).map_err(|e| format!("certificate: {e}"))?;
    let signer = Signer::from_der(cert_der).map_err(|e| format!("certificate {e}"))?;
    let pkcs8 = private_key_der(key_pem)?;
    let alg = signer.kind.signing_alg();
    let custody = LocalCustody::new();
    let key = custody
        .import_pkcs8(alg, &pkcs8, "policy-signing")
        .map_err(|e| format!("private key: {e} (the certificate's key is {})", signer.kind.describe()))?;
    let public = PublicKey::from_spki(&signer.thumbprint_hex, alg, &key.public_spki_der).map_err(|e| format!("private key: {e}"))?;
    if public != signer.key {
        return Err(format!("the private key is not the key of certificate '{}'", signer.subject));
    }
    let header = serde_json::json!({"alg": alg.as_str(), "kid": signer.thumbprint_hex, "x5t#S256": signer.x5t_s256});
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(text));
    let sig = custody.sign(alg, &key.handle, signing_input.as_bytes()).map_err(|e| e.to_string())?;
    let policy_alg = match alg {
        Algorithm::ES256 => PolicyAlg::ES256,
        Algorithm::ES384 => PolicyAlg::ES384,
        Algorithm::PS256 => PolicyAlg::PS256,
        Algorithm::RS256 => PolicyAlg::RS256,
    };
    let mut info = signer.info(policy_alg);
    info.version = Some(version);
    Ok((format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)), info))
}

/// A PKCS#8 private key from PEM (`PRIVATE KEY`) or DER, with advice for
/// the other encodings people have.
fn private_key_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(der) = x509::pem_blocks(bytes, "PRIVATE KEY").into_iter().next() {
        return Ok(der);
    }
    for (label, advice) in [
        ("ENCRYPTED PRIVATE KEY", "decrypt it first: openssl pkcs8 -in KEY.pem -out KEY.p8.pem"),
        ("EC PRIVATE KEY", "convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY.p8.pem"),
        ("RSA PRIVATE KEY", "convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY.p8.pem"),
    ] {
        if !x509::pem_blocks(bytes, label).is_empty() {
            return Err(format!("private key: a PEM '{label}' block; {advice}"));
        }
    }
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    Err("private key: no PEM 'PRIVATE KEY' (PKCS#8) block".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_algorithms_are_named() {
        let h = |alg: &str| Header { alg: Some(Value::String(alg.into())), kid: None, x5t_s256: None, x5c: None, crit: None, b64: None };
        for alg in ["none", "None", "HS256", "HS512", "ES512", "EdDSA", ""] {
            assert!(matches!(check_header(&h(alg)), Err(SignatureError::Invalid(_))), "{alg}");
        }
        for alg in ["ES256", "ES384", "PS256", "RS256"] {
            assert_eq!(check_header(&h(alg)).map(PolicyAlg::as_str), Ok(alg));
        }
        let mut crit = h("ES256");
        crit.crit = Some(serde_json::json!(["exp"]));
        assert!(check_header(&crit).is_err());
        let mut b64 = h("ES256");
        b64.b64 = Some(Value::Bool(false));
        assert!(check_header(&b64).is_err());
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let signers = PolicySigners::default();
        for input in ["", ".", "..", "...", "a.b.c", "e30.e30.", "e30..", "!!.!!.!!", "eyJhbGciOiJFUzI1NiJ9.cA.AA", "W10.cA.AA"] {
            assert!(signers.verify(input, 0).is_err(), "{input:?}");
        }
    }
}
