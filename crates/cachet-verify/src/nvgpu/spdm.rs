//! SPDM 1.1 `GET_MEASUREMENTS` request and `MEASUREMENTS` response, as an
//! NVIDIA GPU returns them in its attestation report (DMTF DSP0274 1.1.x,
//! §10.11; NVIDIA nvtrust `local_gpu_verifier`, `attestation/spdm_msrt_*`).
//!
//! The report is the request (37 bytes) immediately followed by the
//! response:
//!
//! ```text
//! request  : SPDMVersion(1) Code=0xE0(1) Param1(1) Param2(1) Nonce(32) SlotIDParam(1)
//! response : SPDMVersion(1) Code=0x60(1) Param1(1) Param2(1) NumberOfBlocks(1)
//!            MeasurementRecordLength(3, LE) MeasurementRecord(L1)
//!            Nonce(32) OpaqueLength(2, LE) OpaqueData(L2) Signature(96 for P-384)
//! block    : Index(1) MeasurementSpecification(1)=DMTF MeasurementSize(2, LE) Measurement
//! DMTF     : ValueType(1) ValueSize(2, LE) Value(ValueSize)
//! ```
//!
//! Everything is parsed strictly by the declared lengths. The only bytes
//! tolerated after the signature are zero bytes (some GPU report files are
//! zero-padded after the message; padding carries no information and is not
//! signed, so accepting it cannot change what is verified, while any
//! non-zero trailing byte is refused as data that nothing vouches for).
//!
//! In SPDM 1.0 and 1.1 the responder signs `L1 || L2`, the concatenation of
//! the request and the response up to (not including) the signature field,
//! with no signing-context prefix (SPDM 1.2 added one). So the signed bytes
//! are simply `report[..signature_offset]`.

use std::collections::BTreeSet;

/// Length of the `GET_MEASUREMENTS` request with a signature requested.
pub const REQUEST_LEN: usize = 37;
/// SPDM nonce length.
pub const NONCE_LEN: usize = 32;
/// ECDSA P-384 raw `r || s` signature length (NVIDIA Hopper/Blackwell).
pub const SIGNATURE_LEN: usize = 96;
/// `GET_MEASUREMENTS` request code.
pub const CODE_GET_MEASUREMENTS: u8 = 0xE0;
/// `MEASUREMENTS` response code.
pub const CODE_MEASUREMENTS: u8 = 0x60;
/// MeasurementSpecification bit for the DMTF measurement format.
pub const SPEC_DMTF: u8 = 0x01;
/// SPDM 1.1 caps OpaqueLength at 1024 bytes.
pub const MAX_OPAQUE_LEN: usize = 1024;
/// Largest number of trailing zero bytes tolerated after the signature.
/// Real reports carry none or one; a page is generous and keeps the bound
/// explicit.
pub const MAX_TRAILING_ZEROS: usize = 4096;

/// The parsed `GET_MEASUREMENTS` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// SPDMVersion byte (0x11 for 1.1).
    pub version: u8,
    /// Param1 (bit 0: signature requested).
    pub param1: u8,
    /// Param2 (0xFF: all measurements).
    pub param2: u8,
    /// The requester's nonce: the verifier's freshness challenge.
    pub nonce: [u8; NONCE_LEN],
    /// SlotIDParam: which certificate slot the responder signs with.
    pub slot_id: u8,
}

/// One DMTF-format measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// SPDM measurement index (1-based; NVIDIA's RIM index is this minus one).
    pub index: u8,
    /// DMTFSpecMeasurementValueType (bit 7: raw bit stream, else digest).
    pub value_type: u8,
    /// The measurement value (a SHA-384 digest on NVIDIA GPUs).
    pub value: Vec<u8>,
}

/// One NVIDIA opaque-data field (type, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    /// NVIDIA's `OPAQUE_FIELD_ID_*` number.
    pub id: u16,
    /// The raw value.
    pub value: Vec<u8>,
}

/// The parsed `MEASUREMENTS` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// SPDMVersion byte; must equal the request's.
    pub version: u8,
    /// Param1 as sent.
    pub param1: u8,
    /// Param2 as sent.
    pub param2: u8,
    /// The measurement blocks, in order.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The opaque data, split into NVIDIA's type-length-value fields.
    pub opaque: Vec<OpaqueField>,
    /// The raw signature (`r || s`).
    pub signature: Vec<u8>,
}

/// A parsed report: request, response, and where the signature starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The request.
    pub request: Request,
    /// The response.
    pub response: Response,
    /// Offset of the signature in the whole report: `report[..offset]` is
    /// what the signature covers.
    pub signed_len: usize,
    /// Zero bytes after the signature (tolerated padding).
    pub trailing_zeros: usize,
}

/// A bounds-checked little-endian reader over a byte slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or_else(|| format!("{what}: length overflow"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| format!("{what}: needs {n} bytes at offset {}, only {} left", self.pos, self.remaining()))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn le(&mut self, n: usize, what: &str) -> Result<usize, String> {
        let b = self.take(n, what)?;
        Ok(b.iter().rev().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    fn array32(&mut self, what: &str) -> Result<[u8; NONCE_LEN], String> {
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(self.take(NONCE_LEN, what)?);
        Ok(out)
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

/// Whether an SPDMVersion byte is one whose signature covers `L1 || L2`
/// without a signing-context prefix (1.0 and 1.1).
fn is_supported_version(v: u8) -> bool {
    matches!(v, 0x10 | 0x11)
}

/// Parse a version byte for messages: `0x11` -> `"1.1"`.
pub fn version_string(v: u8) -> String {
    format!("{}.{}", v >> 4, v & 0x0F)
}

/// Parse the 37-byte request.
pub fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    if bytes.len() != REQUEST_LEN {
        return Err(format!("request must be {REQUEST_LEN} bytes, got {}", bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let version = r.u8("request SPDMVersion")?;
    let code = r.u8("request code")?;
    let param1 = r.u8("request Param1")?;
    let param2 = r.u8("request Param2")?;
    let nonce = r.array32("request nonce")?;
    let slot_id = r.u8("request SlotIDParam")?;
    if !is_supported_version(version) {
        return Err(format!(
            "request SPDM version {} is not supported (1.0/1.1 only: later versions sign with a context prefix)",
            version_string(version)
        ));
    }
    if code != CODE_GET_MEASUREMENTS {
        return Err(format!("request code {code:#04x} is not GET_MEASUREMENTS (0xe0)"));
    }
    if param1 & 0x01 == 0 {
        return Err("request did not ask for a signature (Param1 bit 0 clear)".into());
    }
    if slot_id > 7 {
        return Err(format!("request SlotIDParam {slot_id} is out of range 0..7"));
    }
    Ok(Request { version, param1, param2, nonce, slot_id })
}

/// Parse the measurement record: exactly `count` DMTF blocks filling it.
fn parse_blocks(record: &[u8], count: usize) -> Result<Vec<MeasurementBlock>, String> {
    if count == 0 {
        return Err("response carries no measurement blocks".into());
    }
    let mut r = Reader::new(record);
    let mut blocks = Vec::with_capacity(count.min(255));
    let mut seen = BTreeSet::new();
    for n in 0..count {
        let index = r.u8("block index")?;
        let spec = r.u8("block MeasurementSpecification")?;
        let size = r.le(2, "block MeasurementSize")?;
        let body = r.take(size, "block Measurement")?;
        if index == 0 || index == 0xFF {
            return Err(format!("block {n} has reserved index {index}"));
        }
        if !seen.insert(index) {
            return Err(format!("measurement index {index} appears twice"));
        }
        if spec != SPEC_DMTF {
            return Err(format!("block {index}: MeasurementSpecification {spec:#04x} is not DMTF"));
        }
        let mut b = Reader::new(body);
        let value_type = b.u8("DMTF value type")?;
        let value_size = b.le(2, "DMTF value size")?;
        let value = b.take(value_size, "DMTF value")?.to_vec();
        if b.remaining() != 0 {
            return Err(format!("block {index}: MeasurementSize {size} does not equal 3 + value size {value_size}"));
        }
        blocks.push(MeasurementBlock { index, value_type, value });
    }
    if r.remaining() != 0 {
        return Err(format!("{} bytes left in the measurement record after {count} blocks", r.remaining()));
    }
    Ok(blocks)
}

/// Split NVIDIA opaque data into type(2, LE) / size(2, LE) / value fields
/// that must exactly fill it. A field type given twice is refused: which
/// one a reader would use is ambiguous.
pub fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField>, String> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    while r.remaining() > 0 {
        let id = r.le(2, "opaque field type")?;
        let size = r.le(2, "opaque field size")?;
        let value = r.take(size, "opaque field value")?.to_vec();
        let id = u16::try_from(id).map_err(|_| "opaque field type out of range".to_string())?;
        if !seen.insert(id) {
            return Err(format!("opaque field {id} appears twice"));
        }
        out.push(OpaqueField { id, value });
    }
    Ok(out)
}

/// Parse a whole report (request || response [|| zero padding]).
pub fn parse_report(report: &[u8]) -> Result<Report, String> {
    let req_bytes = report
        .get(..REQUEST_LEN)
        .ok_or_else(|| format!("report is {} bytes, shorter than the {REQUEST_LEN}-byte request", report.len()))?;
    let request = parse_request(req_bytes)?;
    let resp = report.get(REQUEST_LEN..).unwrap_or_default();
    let mut r = Reader::new(resp);
    let version = r.u8("response SPDMVersion")?;
    let code = r.u8("response code")?;
    let param1 = r.u8("response Param1")?;
    let param2 = r.u8("response Param2")?;
    let count = usize::from(r.u8("response NumberOfBlocks")?);
    let record_len = r.le(3, "response MeasurementRecordLength")?;
    let record = r.take(record_len, "measurement record")?;
    let nonce = r.array32("response nonce")?;
    let opaque_len = r.le(2, "response OpaqueLength")?;
    let opaque_bytes = r.take(opaque_len, "opaque data")?;
    let signed_len = REQUEST_LEN + r.pos;
    let signature = r.take(SIGNATURE_LEN, "signature")?.to_vec();
    let rest = r.take(r.remaining(), "trailing bytes")?;

    if version != request.version {
        return Err(format!(
            "response version {} differs from request version {}",
            version_string(version),
            version_string(request.version)
        ));
    }
    if code != CODE_MEASUREMENTS {
        return Err(format!("response code {code:#04x} is not MEASUREMENTS (0x60)"));
    }
    if opaque_len > MAX_OPAQUE_LEN {
        return Err(format!("OpaqueLength {opaque_len} exceeds the SPDM limit of {MAX_OPAQUE_LEN}"));
    }
    if let Some(pos) = rest.iter().position(|b| *b != 0) {
        return Err(format!(
            "{} bytes after the signature, non-zero at offset {} (only zero padding is tolerated)",
            rest.len(),
            signed_len + SIGNATURE_LEN + pos
        ));
    }
    if rest.len() > MAX_TRAILING_ZEROS {
        return Err(format!("{} zero bytes after the signature exceed the {MAX_TRAILING_ZEROS}-byte padding limit", rest.len()));
    }
    let blocks = parse_blocks(record, count)?;
    let opaque = parse_opaque(opaque_bytes)?;
    Ok(Report {
        request,
        response: Response { version, param1, param2, blocks, nonce, opaque, signature },
        signed_len,
        trailing_zeros: rest.len(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A structurally valid report with the given blocks and opaque data
    /// (signature bytes are arbitrary).
    pub(crate) fn build(blocks: &[(u8, Vec<u8>)], opaque: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0x11, 0xE0, 0x01, 0xFF];
        out.extend([0xAB; 32]);
        out.push(0);
        let mut record = Vec::new();
        for (i, v) in blocks {
            record.push(*i);
            record.push(1);
            record.extend(u16::try_from(v.len() + 3).unwrap().to_le_bytes());
            record.push(1);
            record.extend(u16::try_from(v.len()).unwrap().to_le_bytes());
            record.extend(v);
        }
        let mut od = Vec::new();
        for (t, v) in opaque {
            od.extend(t.to_le_bytes());
            od.extend(u16::try_from(v.len()).unwrap().to_le_bytes());
            od.extend(v);
        }
        out.extend([0x11, 0x60, 0, 0, u8::try_from(blocks.len()).unwrap()]);
        out.extend(&u32::try_from(record.len()).unwrap().to_le_bytes()[..3]);
        out.extend(record);
        out.extend([0xCD; 32]);
        out.extend(u16::try_from(od.len()).unwrap().to_le_bytes());
        out.extend(od);
        out.extend([0x5A; SIGNATURE_LEN]);
        out
    }

    fn sample() -> Vec<u8> {
        build(&[(1, vec![1; 48]), (2, vec![2; 48])], &[(3, b"545.00\0".to_vec()), (11, vec![0x55])])
    }

    #[test]
    fn parses_a_well_formed_report() {
        let bytes = sample();
        let r = parse_report(&bytes).unwrap();
        assert_eq!(r.request.nonce, [0xAB; 32]);
        assert_eq!(r.response.nonce, [0xCD; 32]);
        assert_eq!(r.response.blocks.len(), 2);
        assert_eq!(r.response.blocks[1].value, vec![2; 48]);
        assert_eq!(r.response.opaque[0], OpaqueField { id: 3, value: b"545.00\0".to_vec() });
        assert_eq!(r.signed_len, bytes.len() - SIGNATURE_LEN);
        assert_eq!(r.trailing_zeros, 0);
    }

    #[test]
    fn tolerates_only_zero_padding() {
        let mut bytes = sample();
        bytes.push(0);
        assert_eq!(parse_report(&bytes).unwrap().trailing_zeros, 1);
        *bytes.last_mut().unwrap() = 1;
        assert!(parse_report(&bytes).unwrap_err().contains("non-zero"));
    }

    #[test]
    fn refuses_truncation_anywhere() {
        let bytes = sample();
        for n in 0..bytes.len() {
            assert!(parse_report(&bytes[..n]).is_err(), "truncated to {n} bytes was accepted");
        }
    }

    #[test]
    fn refuses_inconsistent_lengths_and_codes() {
        let good = sample();
        // Block count larger than the record.
        let mut b = good.clone();
        b[REQUEST_LEN + 4] = 3;
        assert!(parse_report(&b).is_err());
        // Request code.
        let mut b = good.clone();
        b[1] = 0xE1;
        assert!(parse_report(&b).unwrap_err().contains("GET_MEASUREMENTS"));
        // Response version differs from request version.
        let mut b = good.clone();
        b[REQUEST_LEN] = 0x10;
        assert!(parse_report(&b).unwrap_err().contains("differs"));
        // SPDM 1.2 signs with a context prefix: refused rather than misverified.
        let mut b = good.clone();
        b[0] = 0x12;
        b[REQUEST_LEN] = 0x12;
        assert!(parse_report(&b).unwrap_err().contains("not supported"));
        // No signature requested.
        let mut b = good;
        b[2] = 0;
        assert!(parse_report(&b).unwrap_err().contains("signature"));
    }

    #[test]
    fn refuses_duplicate_indices_and_fields() {
        let b = build(&[(1, vec![1; 48]), (1, vec![2; 48])], &[]);
        assert!(parse_report(&b).unwrap_err().contains("twice"));
        let b = build(&[(1, vec![1; 48])], &[(3, vec![1]), (3, vec![2])]);
        assert!(parse_report(&b).unwrap_err().contains("twice"));
    }

    #[test]
    fn opaque_fields_must_fill_their_area() {
        assert!(parse_opaque(&[3, 0, 5, 0, 1, 2]).is_err());
        assert_eq!(parse_opaque(&[]).unwrap(), vec![]);
    }
}
