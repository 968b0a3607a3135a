//! Where the signed bytes are: the layouts the mutation engine needs.
//!
//! A mutation of a byte that a signature covers (or that is bound to a
//! signature by a hash) must be refused; a mutation elsewhere may be
//! tolerated as long as the claims do not change. These functions map each
//! format to its signed ranges. They are deliberately independent of the
//! verifiers (written from the formats' specifications, not from the
//! verifiers' parsers), so a verifier that forgets a field is caught.
//! Every function is total: malformed input gives an empty map, never a
//! panic.

use std::ops::Range;

use base64::Engine;

fn le16(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_le_bytes([s[0], s[1]])))
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Keep only the part of each range inside `0..len`, dropping empty ones.
pub fn clip(ranges: Vec<Range<usize>>, len: usize) -> Vec<Range<usize>> {
    ranges.into_iter().map(|r| r.start.min(len)..r.end.min(len)).filter(|r| r.start < r.end).collect()
}

/// Shift ranges by `by` bytes.
pub fn shift(ranges: Vec<Range<usize>>, by: usize) -> Vec<Range<usize>> {
    ranges.into_iter().map(|r| r.start + by..r.end + by).collect()
}

// ---------------------------------------------------------------- DER ----

/// `(tag, header length, content length)` of the DER element at the start
/// of `b` (definite lengths up to 4 bytes).
pub fn tlv(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let l0 = *b.get(1)?;
    if l0 < 0x80 {
        return Some((tag, 2, usize::from(l0)));
    }
    let n = usize::from(l0 & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + i)?);
    }
    Some((tag, 2 + n, len))
}

/// For an X.509 `SEQUENCE { tbs, algorithm, BIT STRING signature }`
/// (certificate or CRL): the whole to-be-signed element and the signature
/// bits (without the unused-bits octet, which verifiers ignore).
pub fn x509_signed_parts(der: &[u8]) -> Option<(Range<usize>, Range<usize>)> {
    let (tag, h, len) = tlv(der)?;
    if tag != 0x30 || h.checked_add(len)? != der.len() {
        return None;
    }
    let (t1, h1, l1) = tlv(der.get(h..)?)?;
    let tbs = h..h + h1 + l1;
    let (t2, h2, l2) = tlv(der.get(tbs.end..)?)?;
    let alg_end = tbs.end + h2 + l2;
    let (t3, h3, l3) = tlv(der.get(alg_end..)?)?;
    let end = alg_end + h3 + l3;
    if t1 != 0x30 || t2 != 0x30 || t3 != 0x03 || end != der.len() || l3 < 2 {
        return None;
    }
    Some((tbs, alg_end + h3 + 1..end))
}

// ---------------------------------------------------------------- PEM ----

/// One PEM block inside some text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemSpan {
    /// The label (`CERTIFICATE`, `X509 CRL`, ...).
    pub label: String,
    /// From `-----BEGIN` to the end of the `-----END ...-----` line.
    pub whole: Range<usize>,
    /// The base64 body (between the header line and `-----END`).
    pub body: Range<usize>,
    /// The decoded body.
    pub der: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Every well-formed PEM block of `text`, in order.
pub fn pem_spans(text: &[u8]) -> Vec<PemSpan> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(begin) = find(text, b"-----BEGIN ", at) {
        let label_start = begin + 11;
        let Some(label_end) = find(text, b"-----", label_start) else { break };
        let label = String::from_utf8_lossy(text.get(label_start..label_end).unwrap_or_default()).into_owned();
        let mut body_start = label_end + 5;
        if text.get(body_start) == Some(&b'\r') {
            body_start += 1;
        }
        if text.get(body_start) == Some(&b'\n') {
            body_start += 1;
        }
        let Some(end_marker) = find(text, b"-----END ", body_start) else { break };
        let Some(end_close) = find(text, b"-----", end_marker + 9) else { break };
        let whole_end = end_close + 5;
        let body = text.get(body_start..end_marker).unwrap_or_default();
        let compact: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&compact) {
            out.push(PemSpan { label, whole: begin..whole_end, body: body_start..end_marker, der });
        }
        at = whole_end;
    }
    out
}

/// `text` with the body of the PEM block `body` replaced by the encoding of
/// `der`: in place, character for character, when the length is unchanged
/// (so line breaks stay where they were), else re-wrapped at 64 columns.
pub fn replace_pem_body(text: &[u8], body: &Range<usize>, der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der).into_bytes();
    let old = text.get(body.clone()).unwrap_or_default();
    let slots = old.iter().filter(|b| !b.is_ascii_whitespace()).count();
    let mut out = text.get(..body.start).unwrap_or_default().to_vec();
    if slots == b64.len() {
        let mut it = b64.iter();
        for &c in old {
            if c.is_ascii_whitespace() {
                out.push(c);
            } else if let Some(n) = it.next() {
                out.push(*n);
            }
        }
    } else {
        for line in b64.chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(text.get(body.end..).unwrap_or_default());
    out
}

// ---------------------------------------------------------------- DCAP ---

/// A DCAP quote's signed ranges and the span of its PEM certification data.
pub type QuoteLayout = (Vec<Range<usize>>, Option<Range<usize>>);

/// Signed ranges of an Intel DCAP quote (v3, v4, v5), and the spans of the
/// PEM chain in its certification data (Intel SGX/TDX DCAP Quote Library
/// API, "Quote Format"). Signed: header and body (ISV signature), the ISV
/// signature itself, the attestation key and QE authentication data (bound
/// by the QE report's report_data), the QE report and its signature.
pub fn dcap_quote(q: &[u8]) -> Option<QuoteLayout> {
    let version = le16(q, 0)?;
    if le16(q, 2)? != 2 {
        return None;
    }
    let body_end = match version {
        3 => 48 + 384,
        4 => 48 + 584,
        5 => 54 + le32(q, 50)?,
        _ => return None,
    };
    let s = body_end + 4;
    let mut signed = vec![0..body_end, s..s + 128];
    let qe = if version == 3 {
        s + 128
    } else {
        if le16(q, s + 128)? != 6 {
            return None;
        }
        s + 134
    };
    signed.push(qe..qe + 448);
    let auth_len = le16(q, qe + 448)?;
    let auth = qe + 450..qe + 450 + auth_len;
    signed.push(auth.clone());
    let cert_type = le16(q, auth.end)?;
    let cert_len = le32(q, auth.end + 2)?;
    let cert_data = auth.end + 6..auth.end + 6 + cert_len;
    if cert_data.end > q.len() {
        return None;
    }
    let chain = (cert_type == 5).then_some(cert_data);
    Some((clip(signed, q.len()), chain))
}

// ---------------------------------------------------------------- SNP ----

/// Signed ranges of an AMD SEV-SNP attestation report (SEV-SNP ABI spec,
/// Table 22): the 0x2A0-byte body and the significant 48 bytes of the
/// little-endian r and s (each in a 72-byte field).
pub fn snp_report(r: &[u8]) -> Option<Vec<Range<usize>>> {
    if r.len() < 0x4A0 || !(2..=5).contains(&le32(r, 0)?) {
        return None;
    }
    Some(vec![0..0x2A0, 0x2A0..0x2A0 + 48, 0x2A0 + 72..0x2A0 + 72 + 48])
}

// ---------------------------------------------------------------- COSE ---

fn cbor_head(d: &[u8], i: usize) -> Option<(u8, usize, usize)> {
    let b = *d.get(i)?;
    let (major, info) = (b >> 5, b & 31);
    if info < 24 {
        return Some((major, usize::from(info), i + 1));
    }
    let n = match info {
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let mut v = 0usize;
    for k in 0..n {
        v = v.checked_shl(8)? | usize::from(*d.get(i + 1 + k)?);
    }
    Some((major, v, i + 1 + n))
}

/// Signed ranges of a COSE_Sign1 (RFC 9052 §4.4): the protected header,
/// the payload and the signature byte strings.
pub fn cose_sign1(d: &[u8]) -> Option<Vec<Range<usize>>> {
    let (mut major, mut val, mut i) = cbor_head(d, 0)?;
    if major == 6 {
        if val != 18 {
            return None;
        }
        (major, val, i) = cbor_head(d, i)?;
    }
    if major != 4 || val != 4 {
        return None;
    }
    let mut ranges = Vec::new();
    for k in 0..4 {
        let (m, v, j) = cbor_head(d, i)?;
        if m == 2 {
            let end = j.checked_add(v)?;
            if end > d.len() {
                return None;
            }
            if k != 1 {
                ranges.push(j..end);
            }
            i = end;
        } else if k == 1 && m == 5 && v == 0 {
            i = j;
        } else {
            return None;
        }
    }
    (ranges.len() == 3).then_some(ranges)
}

// ---------------------------------------------------------------- SPDM ---

/// Signed ranges of an NVIDIA GPU attestation report: SPDM 1.1
/// `GET_MEASUREMENTS` request (37 bytes) and `MEASUREMENTS` response, whose
/// P-384 signature (96 bytes) covers everything before it (DSP0274 §10.11).
pub fn spdm_report(d: &[u8]) -> Option<Vec<Range<usize>>> {
    let req = 37;
    if d.get(1) != Some(&0xE0) {
        return None;
    }
    let rec_len = le16(d, req + 5)? | (usize::from(*d.get(req + 7)?) << 16);
    let at = req + 8 + rec_len + 32;
    let opaque_len = le16(d, at)?;
    let sig = at + 2 + opaque_len;
    if sig + 96 > d.len() {
        return None;
    }
    Some(vec![0..sig, sig..sig + 96])
}

// ---------------------------------------------------------------- HCL ----

/// Signed ranges of an Azure HCL report: the SEV-SNP report inside it (for
/// report type 2) and the runtime claims, whose hash fills the hardware
/// report's report_data (SNP) or the TD quote's (TDX).
pub fn hcl_report(d: &[u8]) -> Option<Vec<Range<usize>>> {
    if !d.starts_with(b"HCLA") {
        return None;
    }
    let report_type = le32(d, 1224)?;
    let var_len = le32(d, 1232)?;
    let var = 1236..1236usize.checked_add(var_len)?;
    if var.end > d.len() {
        return None;
    }
    let mut out = vec![var];
    if report_type == 2 {
        out.extend(shift(snp_report(d.get(32..32 + 0x4A0)?)?, 32));
    }
    Some(out)
}

// ---------------------------------------------------------------- XML ----

/// Signed ranges of an enveloped XML-DSig document (an NVIDIA RIM): every
/// attribute value outside the `Signature` element (canonicalized and
/// digested), and the text of `DigestValue` and `SignatureValue`.
pub fn xml_dsig(d: &[u8]) -> Vec<Range<usize>> {
    let sig = signature_element(d);
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if d.get(i) == Some(&b'<') && !matches!(d.get(i + 1), Some(b'/' | b'!' | b'?')) {
            let Some(close) = find(d, b">", i) else { break };
            let inside_sig = sig.as_ref().is_some_and(|s| s.contains(&i));
            if !inside_sig {
                let mut j = i;
                while j < close {
                    if d.get(j) == Some(&b'=') && matches!(d.get(j + 1), Some(b'"' | b'\'')) {
                        let q = d.get(j + 1).copied().unwrap_or(b'"');
                        if let Some(end) = find(d, &[q], j + 2) {
                            if end > j + 2 {
                                out.push(j + 2..end);
                            }
                            j = end;
                        }
                    }
                    j += 1;
                }
            }
            i = close + 1;
        } else {
            i += 1;
        }
    }
    for name in [&b"DigestValue>"[..], b"SignatureValue>"] {
        let mut at = 0;
        while let Some(p) = find(d, name, at) {
            let start = p + name.len();
            if d.get(p.saturating_sub(1)) != Some(&b'/') {
                if let Some(end) = find(d, b"<", start) {
                    let text = d.get(start..end).unwrap_or_default();
                    if end > start && !text.iter().all(|c| c.is_ascii_whitespace()) {
                        out.push(start..end);
                    }
                }
            }
            at = start;
        }
    }
    out
}

/// The span of the first `<…Signature>` or `<…Signature …>` element.
fn signature_element(d: &[u8]) -> Option<Range<usize>> {
    let mut at = 0;
    while let Some(p) = find(d, b"Signature", at) {
        let after = d.get(p + 9).copied();
        let before = d.get(..p).unwrap_or_default();
        let lt = before.iter().rposition(|c| *c == b'<');
        let is_open = lt.is_some_and(|l| {
            let name = &before[l + 1..];
            name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b':') && !name.contains(&b'/')
        }) && matches!(after, Some(b'>' | b' ' | b'\n' | b'\t' | b'\r'));
        if is_open {
            let start = lt.unwrap_or(p);
            let end = find(d, b"Signature>", p + 9).map(|e| e + 10).unwrap_or(d.len());
            return Some(start..end);
        }
        at = p + 9;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_parts_of_a_tiny_signed_structure() {
        // SEQ { SEQ{1}, SEQ{}, BITSTRING 00 aa bb }
        let der = [0x30, 0x0a, 0x30, 0x01, 0x05, 0x30, 0x00, 0x03, 0x03, 0x00, 0xaa, 0xbb];
        let (tbs, sig) = x509_signed_parts(&der).expect("parts");
        assert_eq!(tbs, 2..5);
        assert_eq!(sig, 10..12);
        assert!(x509_signed_parts(&der[..11]).is_none());
    }

    #[test]
    fn pem_body_replaced_in_place() {
        let text = b"x\n-----BEGIN T-----\nAAEC\nAw==\n-----END T-----\ny";
        let spans = pem_spans(text);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].der, vec![0, 1, 2, 3]);
        let out = replace_pem_body(text, &spans[0].body, &[9, 1, 2, 3]);
        assert_eq!(out, b"x\n-----BEGIN T-----\nCQEC\nAw==\n-----END T-----\ny".to_vec());
        assert_eq!(pem_spans(&out)[0].der, vec![9, 1, 2, 3]);
    }

    #[test]
    fn malformed_inputs_give_no_layout() {
        for bad in [&[][..], &[3, 0, 2, 0], &[0xd2, 0x84], b"HCLA"] {
            assert!(dcap_quote(bad).is_none());
            assert!(snp_report(bad).is_none());
            assert!(cose_sign1(bad).is_none());
            assert!(spdm_report(bad).is_none());
            assert!(hcl_report(bad).is_none());
        }
    }

    #[test]
    fn xml_attribute_values_outside_the_signature() {
        let x = br#"<a k="v1"><b n="v2"/><ds:Signature x="s"><ds:DigestValue>QUJD</ds:DigestValue></ds:Signature></a>"#;
        let r = xml_dsig(x);
        let texts: Vec<&[u8]> = r.iter().map(|r| &x[r.clone()]).collect();
        assert_eq!(texts, vec![&b"v1"[..], b"v2", b"QUJD"]);
    }
}
