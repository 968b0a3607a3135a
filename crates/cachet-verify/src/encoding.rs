//! Evidence arrives as raw bytes, hex text or base64 text; this finds out which.
//!
//! JSON documents (Azure, TPM fixtures) are passed through untouched: their
//! own verifier knows which fields are encoded how.

use base64::Engine;

/// How evidence bytes were encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Raw bytes.
    Binary,
    /// Hexadecimal text (whitespace and a leading `0x` allowed).
    Hex,
    /// Base64 (standard or URL-safe alphabet, padding optional).
    Base64,
    /// A JSON document.
    Json,
}

/// Detect the encoding of `input` and decode it.
///
/// Text is only decoded when *all* of it is in the alphabet; anything else is
/// binary. Hex is tried before base64 because every hex string is also valid
/// base64 text.
pub fn decode_evidence(input: &[u8]) -> (Encoding, Vec<u8>) {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t.trim(),
        Err(_) => return (Encoding::Binary, input.to_vec()),
    };
    if text.is_empty() {
        return (Encoding::Binary, input.to_vec());
    }
    if text.starts_with('{') || text.starts_with('[') {
        return (Encoding::Json, text.as_bytes().to_vec());
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let hex_body = compact.strip_prefix("0x").unwrap_or(&compact);
    if hex_body.len().is_multiple_of(2) && !hex_body.is_empty() && hex_body.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(v) = hex::decode(hex_body) {
            return (Encoding::Hex, v);
        }
    }
    if let Some(v) = decode_base64(&compact) {
        return (Encoding::Base64, v);
    }
    (Encoding::Binary, input.to_vec())
}

/// Decode base64 in either alphabet, with or without padding.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = text.trim();
    for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        if let Ok(v) = engine.decode(t) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        assert_eq!(decode_evidence(b"0x0a0B\n"), (Encoding::Hex, vec![0x0a, 0x0b]));
        assert_eq!(decode_evidence(b"aGVsbG8="), (Encoding::Base64, b"hello".to_vec()));
        assert_eq!(decode_evidence(b"{\"a\":1}").0, Encoding::Json);
        assert_eq!(decode_evidence(&[0x03, 0x00, 0xff, 0xfe]).0, Encoding::Binary);
    }
}
