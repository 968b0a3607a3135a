//! The mutable parts of one case: blobs of bytes, where they live, and
//! which of their bytes are signed.
//!
//! A *blob* is a byte string the engine can change and put back: the
//! evidence itself, a field of JSON evidence or of a JSON collateral bundle
//! (re-encoded in the field's own hex/base64/array form), an endorsement
//! file, or a certificate/CRL inside a PEM block of any of these. Signed
//! ranges come from [`super::layout`]; an endorsement part only keeps its
//! signed ranges when it is *load-bearing*, i.e. verification fails without
//! it (so an unused certificate in a bundle, or a root the verifier takes
//! from its pinned set instead, is not expected to make a difference).

// `vec![0..n]` is a list of one signed range, as intended.
#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range;
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;

use super::layout;
use crate::{Endorsement, Tee};

/// A step in a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// Object member.
    Key(String),
    /// Array element.
    Idx(usize),
}

/// How a JSON leaf encodes its bytes, so a changed value is written back
/// the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafEnc {
    /// A string used as text (PEM, embedded JSON).
    Text,
    /// Hexadecimal (upper or lower case).
    Hex {
        /// Upper-case digits.
        upper: bool,
    },
    /// Base64.
    B64 {
        /// URL-safe alphabet.
        url: bool,
        /// With `=` padding.
        pad: bool,
    },
    /// An array of numbers 0..=255.
    Ints,
}

impl LeafEnc {
    fn decode(v: &Value) -> Option<(LeafEnc, Vec<u8>)> {
        match v {
            Value::String(s) => Some(decode_str(s)),
            Value::Array(a) if !a.is_empty() => {
                let bytes: Option<Vec<u8>> = a.iter().map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect();
                bytes.map(|b| (LeafEnc::Ints, b))
            }
            _ => None,
        }
    }

    /// The JSON value carrying `b` in this encoding.
    pub fn encode(self, b: &[u8]) -> Value {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        match self {
            LeafEnc::Text => Value::String(String::from_utf8_lossy(b).into_owned()),
            LeafEnc::Hex { upper: false } => Value::String(hex::encode(b)),
            LeafEnc::Hex { upper: true } => Value::String(hex::encode_upper(b)),
            LeafEnc::B64 { url, pad } => Value::String(match (url, pad) {
                (false, true) => STANDARD.encode(b),
                (false, false) => STANDARD_NO_PAD.encode(b),
                (true, true) => URL_SAFE.encode(b),
                (true, false) => URL_SAFE_NO_PAD.encode(b),
            }),
            LeafEnc::Ints => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        }
    }

    /// The value that stands for "removed".
    pub fn empty(self) -> Value {
        match self {
            LeafEnc::Ints => Value::Array(Vec::new()),
            _ => Value::String(String::new()),
        }
    }
}

fn decode_str(s: &str) -> (LeafEnc, Vec<u8>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = || (LeafEnc::Text, s.as_bytes().to_vec());
    if s.contains("-----BEGIN") || s.trim_start().starts_with('{') || s.trim_start().starts_with('[') {
        return text();
    }
    if s.len() >= 2 && s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        if let Ok(b) = hex::decode(s) {
            let upper = s.bytes().any(|c| c.is_ascii_uppercase());
            return (LeafEnc::Hex { upper }, b);
        }
    }
    if s.len() >= 16 {
        let url = s.contains('-') || s.contains('_');
        let pad = s.ends_with('=');
        let engine = match (url, pad) {
            (false, true) => &STANDARD,
            (false, false) => &STANDARD_NO_PAD,
            (true, true) => &URL_SAFE,
            (true, false) => &URL_SAFE_NO_PAD,
        };
        if let Ok(b) = engine.decode(s) {
            // Only when it round-trips exactly (so re-encoding is faithful).
            if (LeafEnc::B64 { url, pad }).encode(&b) == Value::String(s.to_string()) {
                return (LeafEnc::B64 { url, pad }, b);
            }
        }
    }
    text()
}

/// Where a blob lives, and how to put a changed blob back.
#[derive(Debug, Clone)]
pub enum Loc {
    /// The (decoded) evidence.
    Evidence,
    /// A leaf of JSON evidence.
    EvLeaf {
        /// Path from the root.
        path: Vec<Seg>,
        /// Encoding of the leaf.
        enc: LeafEnc,
    },
    /// Endorsement file number `.0`.
    File(usize),
    /// A leaf of a JSON endorsement file.
    FileLeaf {
        /// Which file.
        file: usize,
        /// Path from the root.
        path: Vec<Seg>,
        /// Encoding of the leaf.
        enc: LeafEnc,
    },
    /// The DER inside a PEM block of another blob.
    Pem {
        /// The blob holding the PEM text.
        parent: Box<Loc>,
        /// That blob's original bytes.
        parent_bytes: Arc<Vec<u8>>,
        /// The base64 body.
        body: Range<usize>,
        /// The whole block (for removal).
        whole: Range<usize>,
    },
}

impl Loc {
    /// Whether this blob is (inside) the evidence rather than an endorsement.
    pub fn in_evidence(&self) -> bool {
        match self {
            Loc::Evidence | Loc::EvLeaf { .. } => true,
            Loc::File(_) | Loc::FileLeaf { .. } => false,
            Loc::Pem { parent, .. } => parent.in_evidence(),
        }
    }

    /// Whether the blob can be removed to test whether it is load-bearing.
    fn removable(&self) -> bool {
        match self {
            Loc::Evidence => false,
            Loc::Pem { parent, .. } => !matches!(**parent, Loc::Evidence),
            _ => true,
        }
    }

    /// The JSON container a leaf belongs to (`None`: evidence), for swaps.
    pub fn container(&self) -> Option<Option<usize>> {
        match self {
            Loc::EvLeaf { .. } => Some(None),
            Loc::FileLeaf { file, .. } => Some(Some(*file)),
            _ => None,
        }
    }
}

/// One mutable byte string.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Where it lives.
    pub loc: Loc,
    /// Its original bytes.
    pub bytes: Vec<u8>,
    /// Ranges whose change must be refused.
    pub signed: Vec<Range<usize>>,
    /// Whether verification fails without it (always true for the evidence).
    pub load_bearing: bool,
    /// For messages: what this is.
    pub what: String,
}

impl Blob {
    /// Number of signed bytes.
    pub fn signed_len(&self) -> usize {
        self.signed.iter().map(|r| r.len()).sum()
    }
}

/// Everything the engine needs to mutate one case.
#[derive(Debug, Clone)]
pub struct Model {
    /// Every blob.
    pub blobs: Vec<Blob>,
    /// The evidence as JSON, when it is JSON and rewriting it is faithful.
    pub evidence_json: Option<Value>,
    /// Each endorsement file as JSON, likewise.
    pub file_json: Vec<Option<Value>>,
    /// Truncating the evidence below this length must be refused.
    pub evidence_cut: usize,
    /// Whether the evidence is JSON text.
    pub evidence_is_json: bool,
    /// Per endorsement file: truncation below this must be refused.
    pub file_cut: Vec<Option<usize>>,
    /// Whether the case is refused without any endorsement at all.
    pub endorsements_needed: bool,
}

fn set_path(v: &mut Value, path: &[Seg], new: Value) -> bool {
    let Some((first, rest)) = path.split_first() else {
        *v = new;
        return true;
    };
    let child = match (first, v) {
        (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
        (Seg::Idx(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    };
    child.is_some_and(|c| set_path(c, rest, new))
}

fn path_str(path: &[Seg]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The inputs of one verification, built from a case and one change.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Evidence bytes.
    pub evidence: Vec<u8>,
    /// Endorsement files.
    pub endorsements: Vec<Endorsement>,
}

impl Model {
    /// The inputs with blob `loc` replaced by `new` (or removed, `None`).
    pub fn with(&self, evidence: &[u8], endorsements: &[Endorsement], loc: &Loc, new: Option<&[u8]>) -> Inputs {
        let mut inp = Inputs { evidence: evidence.to_vec(), endorsements: endorsements.to_vec() };
        self.put(&mut inp, loc, new);
        inp
    }

    fn put(&self, inp: &mut Inputs, loc: &Loc, new: Option<&[u8]>) {
        match loc {
            Loc::Evidence => inp.evidence = new.map(<[u8]>::to_vec).unwrap_or_default(),
            Loc::EvLeaf { path, enc } => {
                let current = serde_json::from_slice::<Value>(&inp.evidence).ok();
                if let Some(mut v) = current.or_else(|| self.evidence_json.clone()) {
                    set_path(&mut v, path, new.map_or_else(|| enc.empty(), |b| enc.encode(b)));
                    inp.evidence = serde_json::to_vec(&v).unwrap_or_default();
                }
            }
            Loc::File(i) => match new {
                Some(b) => {
                    if let Some(f) = inp.endorsements.get_mut(*i) {
                        f.bytes = b.to_vec();
                    }
                }
                None => {
                    if *i < inp.endorsements.len() {
                        inp.endorsements.remove(*i);
                    }
                }
            },
            Loc::FileLeaf { file, path, enc } => {
                let Some(f) = inp.endorsements.get_mut(*file) else { return };
                let current = serde_json::from_slice::<Value>(&f.bytes).ok();
                if let Some(mut v) = current.or_else(|| self.file_json.get(*file).cloned().flatten()) {
                    set_path(&mut v, path, new.map_or_else(|| enc.empty(), |b| enc.encode(b)));
                    f.bytes = serde_json::to_vec(&v).unwrap_or_default();
                }
            }
            Loc::Pem { parent, parent_bytes, body, whole } => {
                let text = match new {
                    Some(der) => layout::replace_pem_body(parent_bytes, body, der),
                    None => {
                        let mut t = parent_bytes.get(..whole.start).unwrap_or_default().to_vec();
                        t.extend_from_slice(parent_bytes.get(whole.end..).unwrap_or_default());
                        t
                    }
                };
                self.put(inp, parent, Some(&text));
            }
        }
    }
}

/// Signed ranges of a certificate or CRL; none for a self-signed root (the
/// verifier compares it with its pinned anchors or ignores it).
///
/// The whole DER counts: the to-be-signed part and the signature are
/// covered by the issuer's signature, and every other byte (outer tags and
/// lengths, the outer algorithm identifier, which RFC 5280 §4.1.1.2 says
/// MUST equal the inner one, the BIT STRING's unused-bits octet) has exactly
/// one valid value, so a change there makes the certificate invalid DER.
fn der_signed(der: &[u8]) -> Vec<Range<usize>> {
    if layout::x509_signed_parts(der).is_none() {
        return Vec::new();
    }
    if let Ok(c) = crate::x509::parse_cert(der) {
        if c.subject() == c.issuer() {
            return Vec::new();
        }
    }
    vec![0..der.len()]
}

/// Signed ranges of some bytes, recognised by content (and by the name of
/// the field they came from).
fn content_signed(tee: Tee, bytes: &[u8], field: &str) -> Vec<Range<usize>> {
    if bytes.starts_with(&[0xff, 0x54, 0x43, 0x47]) {
        // TPMS_ATTEST: every byte is signed by the AK.
        return vec![0..bytes.len()];
    }
    if let Some(r) = layout::hcl_report(bytes) {
        return r;
    }
    if matches!(tee, Tee::Sgx | Tee::Tdx | Tee::AzTdxVtpm) {
        if let Some((r, _)) = layout::dcap_quote(bytes) {
            return r;
        }
    }
    if tee == Tee::Snp {
        if let Some(r) = layout::snp_report(bytes) {
            return r;
        }
    }
    if let Some(r) = layout::cose_sign1(bytes) {
        return r;
    }
    if layout::x509_signed_parts(bytes).is_some() {
        return der_signed(bytes);
    }
    if tee == Tee::Nvgpu {
        if let Some(r) = layout::spdm_report(bytes) {
            return r;
        }
    }
    let f = field.to_ascii_lowercase();
    if f.ends_with("signature") && !bytes.is_empty() {
        return vec![0..bytes.len()];
    }
    Vec::new()
}

/// Blobs of PEM blocks inside `text` (which lives at `parent`).
fn pem_children(parent: &Loc, text: &[u8], what: &str, out: &mut Vec<Blob>) {
    let shared = Arc::new(text.to_vec());
    for (n, p) in layout::pem_spans(text).into_iter().enumerate() {
        let signed = der_signed(&p.der);
        out.push(Blob {
            loc: Loc::Pem { parent: Box::new(parent.clone()), parent_bytes: shared.clone(), body: p.body, whole: p.whole },
            what: format!("{} #{n} in {what}", p.label.to_ascii_lowercase()),
            bytes: p.der,
            signed,
            load_bearing: true,
        });
    }
}

fn json_leaves(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, LeafEnc, Vec<u8>)>) {
    if let Some((enc, bytes)) = LeafEnc::decode(v) {
        out.push((path.clone(), enc, bytes));
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(Seg::Key(k.clone()));
                json_leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Idx(i));
                json_leaves(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Blobs of the leaves of a JSON document living at `file` (None: evidence).
fn leaf_blobs(tee: Tee, v: &Value, file: Option<usize>, what: &str, out: &mut Vec<Blob>) {
    let mut leaves = Vec::new();
    json_leaves(v, &mut Vec::new(), &mut leaves);
    for (path, enc, bytes) in leaves {
        // The name of the nearest object member (an array element is named by its array).
        let field = path.iter().rev().find_map(|s| if let Seg::Key(k) = s { Some(k.clone()) } else { None }).unwrap_or_default();
        let loc = match file {
            None => Loc::EvLeaf { path: path.clone(), enc },
            Some(f) => Loc::FileLeaf { file: f, path: path.clone(), enc },
        };
        let label = format!("{what} {}", path_str(&path));
        let signed = if enc == LeafEnc::Text {
            let t = String::from_utf8_lossy(&bytes);
            if t.contains("-----BEGIN") {
                pem_children(&loc, &bytes, &label, out);
                Vec::new()
            } else if serde_json::from_slice::<Value>(&bytes).is_ok_and(|j| j.is_object()) {
                // Signed JSON text (DCAP TCB Info, QE Identity): signature over the exact bytes.
                vec![0..bytes.len()]
            } else {
                Vec::new()
            }
        } else {
            content_signed(tee, &bytes, &field)
        };
        out.push(Blob { loc, bytes, signed, load_bearing: true, what: label });
    }
}

/// Decompose a case into blobs (before load-bearing analysis).
pub fn decompose(tee: Tee, evidence: &[u8], endorsements: &[Endorsement]) -> Model {
    let mut blobs = Vec::new();
    let first = evidence.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let evidence_json = if matches!(first, Some(b'{' | b'[')) { serde_json::from_slice::<Value>(evidence).ok() } else { None };
    let evidence_is_json = evidence_json.is_some();
    let evidence_cut;
    if let Some(v) = &evidence_json {
        blobs.push(Blob {
            loc: Loc::Evidence,
            bytes: evidence.to_vec(),
            signed: Vec::new(),
            load_bearing: true,
            what: "evidence (JSON text)".into(),
        });
        evidence_cut = evidence.trim_ascii_end().len();
        leaf_blobs(tee, v, None, "evidence", &mut blobs);
    } else {
        let mut signed = content_signed(tee, evidence, "");
        if matches!(tee, Tee::Sgx | Tee::Tdx) {
            if let Some((r, chain)) = layout::dcap_quote(evidence) {
                signed = r;
                if let Some(c) = chain {
                    let mut kids = Vec::new();
                    pem_children(&Loc::Evidence, evidence, "the quote's PCK chain", &mut kids);
                    blobs.extend(kids.into_iter().filter(|b| match &b.loc {
                        Loc::Pem { body, .. } => body.start >= c.start && body.end <= c.end,
                        _ => false,
                    }));
                }
            }
        }
        evidence_cut = signed.iter().map(|r| r.end).max().unwrap_or(0);
        blobs.insert(0, Blob { loc: Loc::Evidence, bytes: evidence.to_vec(), signed, load_bearing: true, what: "evidence".into() });
    }
    let mut file_json = Vec::new();
    for (i, e) in endorsements.iter().enumerate() {
        let name = e.name.rsplit('/').next().unwrap_or(&e.name).to_string();
        let b = &e.bytes;
        let first = b.iter().find(|c| !c.is_ascii_whitespace()).copied();
        let json = if first == Some(b'{') { serde_json::from_slice::<Value>(b).ok() } else { None };
        let mut signed = Vec::new();
        if let Some(v) = &json {
            leaf_blobs(tee, v, Some(i), &name, &mut blobs);
        } else if b.windows(11).any(|w| w == b"-----BEGIN ") {
            pem_children(&Loc::File(i), b, &name, &mut blobs);
        } else if layout::x509_signed_parts(b).is_some() {
            signed = der_signed(b);
        } else if first == Some(b'<') {
            signed = layout::xml_dsig(b);
        }
        file_json.push(json);
        blobs.push(Blob { loc: Loc::File(i), bytes: b.clone(), signed, load_bearing: true, what: name });
    }
    let n = endorsements.len();
    Model { blobs, evidence_json, file_json, evidence_cut, evidence_is_json, file_cut: vec![None; n], endorsements_needed: false }
}

/// Finish the model with the results of removal experiments: `refused(inputs)`
/// says whether verification of the given inputs is refused. Blobs whose
/// removal is not refused lose their signed ranges; JSON containers whose
/// faithful re-serialisation changes the outcome lose their leaves.
pub fn analyse(
    mut m: Model,
    evidence: &[u8],
    endorsements: &[Endorsement],
    refused: &dyn Fn(&Inputs) -> bool,
    same_as_base: &dyn Fn(&Inputs) -> bool,
) -> Model {
    // Re-serialisation must not change the outcome, or leaves cannot be used.
    if let Some(v) = &m.evidence_json {
        let inp = Inputs { evidence: serde_json::to_vec(v).unwrap_or_default(), endorsements: endorsements.to_vec() };
        if !same_as_base(&inp) {
            m.evidence_json = None;
        }
    }
    for i in 0..m.file_json.len() {
        if let Some(v) = m.file_json.get(i).cloned().flatten() {
            let mut ends = endorsements.to_vec();
            if let Some(f) = ends.get_mut(i) {
                f.bytes = serde_json::to_vec(&v).unwrap_or_default();
            }
            if !same_as_base(&Inputs { evidence: evidence.to_vec(), endorsements: ends }) {
                if let Some(slot) = m.file_json.get_mut(i) {
                    *slot = None;
                }
            }
        }
    }
    let ev_ok = m.evidence_json.is_some();
    let files_ok: Vec<bool> = m.file_json.iter().map(Option::is_some).collect();
    m.blobs.retain(|b| usable(&b.loc, ev_ok, &files_ok));
    let model = m.clone();
    for b in &mut m.blobs {
        if b.loc.removable() {
            let inp = model.with(evidence, endorsements, &b.loc, None);
            b.load_bearing = refused(&inp);
            if !b.load_bearing {
                b.signed.clear();
            }
        }
    }
    // Truncation bounds of endorsement files.
    for (i, e) in endorsements.iter().enumerate() {
        let file_lb = m.blobs.iter().any(|b| matches!(b.loc, Loc::File(j) if j == i) && b.load_bearing);
        if !file_lb {
            continue;
        }
        let b = &e.bytes;
        let first = b.iter().find(|c| !c.is_ascii_whitespace()).copied();
        let cut = if model.file_json.get(i).is_some_and(Option::is_some) || first == Some(b'{') {
            Some(b.trim_ascii_end().len())
        } else if layout::x509_signed_parts(b).is_some() {
            Some(b.len())
        } else if first == Some(b'<') {
            b.iter().rposition(|c| *c == b'<')
        } else {
            m.blobs
                .iter()
                .filter(|x| x.load_bearing)
                .filter_map(|x| match &x.loc {
                    Loc::Pem { parent, body, .. } if matches!(**parent, Loc::File(j) if j == i) => Some(body.end),
                    _ => None,
                })
                .max()
        };
        if let Some(slot) = m.file_cut.get_mut(i) {
            *slot = cut.filter(|c| *c > 0);
        }
    }
    m.endorsements_needed = !endorsements.is_empty() && refused(&Inputs { evidence: evidence.to_vec(), endorsements: Vec::new() });
    m
}

fn usable(loc: &Loc, ev_ok: bool, files_ok: &[bool]) -> bool {
    match loc {
        Loc::EvLeaf { .. } => ev_ok,
        Loc::FileLeaf { file, .. } => files_ok.get(*file).copied().unwrap_or(false),
        Loc::Pem { parent, .. } => usable(parent, ev_ok, files_ok),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_encodings_round_trip() {
        for s in ["00ff10", "00FF10", "aGVsbG8gd29ybGQhIQ==", "aGVsbG8gd29ybGQhIQ", "_-_-aGVsbG8gd29ybGQ"] {
            let v = Value::String(s.into());
            let (enc, b) = LeafEnc::decode(&v).expect("leaf");
            assert_eq!(enc.encode(&b), v, "{s}");
        }
        let arr = serde_json::json!([1, 2, 255]);
        assert_eq!(LeafEnc::decode(&arr), Some((LeafEnc::Ints, vec![1, 2, 255])));
        assert_eq!(LeafEnc::decode(&serde_json::json!([1, 256])), None);
    }

    #[test]
    fn leaves_are_put_back_in_place() {
        let v = serde_json::json!({"a": {"sig": "0011"}, "b": [1, 2]});
        let m = Model {
            blobs: Vec::new(),
            evidence_json: Some(v.clone()),
            file_json: Vec::new(),
            evidence_cut: 0,
            evidence_is_json: true,
            file_cut: Vec::new(),
            endorsements_needed: false,
        };
        let loc = Loc::EvLeaf { path: vec![Seg::Key("a".into()), Seg::Key("sig".into())], enc: LeafEnc::Hex { upper: false } };
        let text = serde_json::to_vec(&v).expect("json");
        let inp = m.with(&text, &[], &loc, Some(&[0xab]));
        let out: Value = serde_json::from_slice(&inp.evidence).expect("json");
        assert_eq!(out, serde_json::json!({"a": {"sig": "ab"}, "b": [1, 2]}));
        let gone = m.with(&text, &[], &loc, None);
        let out: Value = serde_json::from_slice(&gone.evidence).expect("json");
        assert_eq!(out["a"]["sig"], "");
    }
}
