//! Self-signed X.509 certificates for token-signing keys.
//!
//! Some relying parties find a token's key only as a certificate: the Azure
//! Attestation SDKs read the `x5c` of each key at `/certs` and check the
//! signature with the first certificate's public key. A key that has no
//! certificate from an operator's CA gets a self-signed one, signed through
//! its [`KeyCustody`](crate::KeyCustody) like a token (so an HSM key never
//! leaves the HSM). The certificate only carries the key: nothing trusts it
//! for being self-signed, exactly as with a bare JWK.
//!
//! DER is written directly (a handful of fixed structures), rather than with
//! a certificate-generation crate that would want the private key itself.

use crate::{Algorithm, TokenError};

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A DER INTEGER from big-endian unsigned bytes.
fn uint(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.is_empty() { vec![0] } else { trimmed };
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

const OID_CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const OID_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x13];

/// The certificate signature AlgorithmIdentifier of a JWS algorithm.
fn signature_algorithm(alg: Algorithm) -> Result<Vec<u8>, TokenError> {
    Ok(match alg {
        // sha256WithRSAEncryption, parameters NULL: the RS256 signature itself.
        Algorithm::RS256 => seq(&[&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], &[0x05, 0x00]]),
        // ecdsa-with-SHA256 / SHA384, no parameters.
        Algorithm::ES256 => seq(&[&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]]),
        Algorithm::ES384 => seq(&[&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]]),
        Algorithm::PS256 => {
            return Err(TokenError::Key("self-signed certificates are made for RS256, ES256 and ES384 keys, not PS256".into()))
        }
    })
}

/// A JWS signature in the form a certificate carries: ECDSA's fixed
/// `r ‖ s` becomes `SEQUENCE { INTEGER r, INTEGER s }`; RSA's is as it is.
fn certificate_signature(alg: Algorithm, sig: &[u8]) -> Result<Vec<u8>, TokenError> {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            if sig.is_empty() || !sig.len().is_multiple_of(2) {
                return Err(TokenError::Sign("an ECDSA signature has two halves of equal size".into()));
            }
            let (r, s) = sig.split_at(sig.len() / 2);
            Ok(seq(&[&uint(r), &uint(s)]))
        }
        _ => Ok(sig.to_vec()),
    }
}

/// `(year, month, day, hour, minute, second)` of Unix seconds (UTC).
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (secs / 3600) as u32, (secs % 3600 / 60) as u32, (secs % 60) as u32)
}

/// RFC 5280 Time: UTCTime through 2049, GeneralizedTime after.
fn time(t: i64) -> Result<Vec<u8>, TokenError> {
    let (y, mo, d, h, mi, s) = civil(t);
    if !(1950..=9999).contains(&y) {
        return Err(TokenError::Key(format!("certificate time {t} is out of range")));
    }
    Ok(if y < 2050 {
        tlv(0x17, format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z").as_bytes())
    })
}

/// A self-signed certificate (DER) for the public key `spki_der` of a key
/// signing with `alg` (RS256, ES256 or ES384): subject and issuer
/// `CN=common_name`, valid from `not_before` to `not_after` (Unix seconds),
/// not a CA, key usage digitalSignature. `sign` signs the TBSCertificate
/// bytes as a JWS of `alg` would (the custody's signature).
pub fn self_signed(
    alg: Algorithm,
    spki_der: &[u8],
    common_name: &str,
    not_before: i64,
    not_after: i64,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, TokenError>,
) -> Result<Vec<u8>, TokenError> {
    if common_name.is_empty() || common_name.len() > 64 {
        return Err(TokenError::Key("a certificate common name is 1 to 64 bytes".into()));
    }
    if not_after <= not_before {
        return Err(TokenError::Key("a certificate must end after it begins".into()));
    }
    let sig_alg = signature_algorithm(alg)?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| TokenError::Key("no randomness for a certificate serial".into()))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01; // positive, never zero, 16 bytes
    let name = seq(&[&tlv(0x31, &seq(&[OID_CN, &tlv(0x0c, common_name.as_bytes())]))]);
    let validity = seq(&[&time(not_before)?, &time(not_after)?]);
    // keyUsage (critical): digitalSignature; basicConstraints: not a CA.
    let key_usage = seq(&[OID_KEY_USAGE, &[0x01, 0x01, 0xff], &tlv(0x04, &tlv(0x03, &[0x07, 0x80]))]);
    let basic = seq(&[OID_BASIC_CONSTRAINTS, &tlv(0x04, &seq(&[]))]);
    let extensions = tlv(0xa3, &seq(&[&key_usage, &basic]));
    let version = tlv(0xa0, &uint(&[2]));
    let tbs = seq(&[&version, &uint(&serial), &sig_alg, &name, &validity, &name, spki_der, &extensions]);
    let sig = certificate_signature(alg, &sign(&tbs)?)?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&sig);
    Ok(seq(&[&tbs, &sig_alg, &tlv(0x03, &bits)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custody::{KeyCustody, LocalCustody};
    use crate::jwk::PublicKey;
    use x509_parser::prelude::FromDer;

    #[test]
    fn civil_time_matches_known_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_751_624_924), (2025, 7, 4, 10, 28, 44));
        assert_eq!(civil(4_102_444_800), (2100, 1, 1, 0, 0, 0));
    }

    #[test]
    fn the_certificate_carries_the_key_and_verifies_with_it() {
        let c = LocalCustody::new();
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
            let k = c.generate(alg, "k").unwrap();
            let (nb, na) = (1_751_624_924, 1_751_624_924 + 40 * 365 * 86_400);
            let der = self_signed(alg, &k.public_spki_der, "Cachet token signing", nb, na, |tbs| c.sign(alg, &k.handle, tbs)).unwrap();
            let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(&der).expect("parses");
            assert!(rest.is_empty());
            assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
            assert_eq!(cert.subject().to_string(), "CN=Cachet token signing");
            assert_eq!(cert.subject(), cert.issuer());
            assert_eq!(cert.validity().not_before.timestamp(), nb);
            assert_eq!(cert.validity().not_after.timestamp(), na);
            assert!(!cert.is_ca());
            let pk = PublicKey::from_spki("k", alg, &k.public_spki_der).unwrap();
            assert!(pk.matches_certificate(&der));
            // The signature is the key's over the TBSCertificate, in X.509's form (ECDSA: DER).
            use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256};
            let v: &dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
                Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
                Algorithm::ES256 => &ECDSA_P256_SHA256_ASN1,
                _ => &ECDSA_P384_SHA384_ASN1,
            };
            let key_bits = cert.public_key().subject_public_key.data.to_vec();
            UnparsedPublicKey::new(v, key_bits)
                .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
                .expect("certificate signature verifies");
        }
    }

    #[test]
    fn pss_keys_and_bad_inputs_are_refused() {
        assert!(self_signed(Algorithm::PS256, &[], "x", 0, 1, |_| Ok(vec![])).is_err());
        assert!(self_signed(Algorithm::RS256, &[], "", 0, 1, |_| Ok(vec![])).is_err());
        assert!(self_signed(Algorithm::RS256, &[], "x", 5, 5, |_| Ok(vec![])).is_err());
        assert!(self_signed(Algorithm::ES256, &[], "x", 0, 1, |_| Ok(vec![1, 2, 3])).is_err());
    }
}
