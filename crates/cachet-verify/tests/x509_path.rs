//! RFC 5280 path rules shared by every family (`x509::verify_chain`,
//! `x509::verify_crl`): keyUsage keyCertSign on certificate issuers and
//! cRLSign on CRL issuers, basicConstraints pathLenConstraint, critical
//! extensions that are not processed, and a CRL without nextUpdate. Each
//! rule has a chain made with rcgen that breaks only that rule, next to one
//! that keeps it. Pinned roots make none of this reachable with genuine
//! vendor chains; the families' own tests show those still verify.

use cachet_verify::anchors::AnchorKind;
use cachet_verify::x509::{self, VerifiedChain, VerifiedCrl};
use cachet_verify::{Checks, TrustAnchors};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, CustomExtension, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber, SigningKey,
};

/// 2025-01-01T00:00:00Z, inside every certificate's window.
const AT: i64 = 1_735_689_600;

fn key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn params(cn: &str, ca: Option<Option<u8>>, usages: &[KeyUsagePurpose]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2030, 1, 1);
    p.is_ca = match ca {
        Some(Some(n)) => IsCa::Ca(BasicConstraints::Constrained(n)),
        Some(None) => IsCa::Ca(BasicConstraints::Unconstrained),
        None => IsCa::ExplicitNoCa,
    };
    p.key_usages = usages.to_vec();
    p
}

const CA_USAGES: &[KeyUsagePurpose] = &[KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

type Ca = CertifiedIssuer<'static, KeyPair>;

fn root(p: CertificateParams) -> Ca {
    CertifiedIssuer::self_signed(p, key()).unwrap()
}

fn ca(p: CertificateParams, issuer: &Ca) -> Ca {
    CertifiedIssuer::signed_by(p, key(), issuer).unwrap()
}

fn leaf(p: CertificateParams, issuer: &Ca) -> Vec<u8> {
    p.signed_by(&key(), issuer).unwrap().der().to_vec()
}

fn anchors(root: &Ca) -> TrustAnchors {
    let mut a = TrustAnchors::empty();
    a.push(AnchorKind::TpmEkRoot, root.der().to_vec());
    a
}

/// `x509::verify_chain` from `leaf` through `pool` to `root`.
fn verify(leaf: &[u8], pool: &[&Ca], root: &Ca) -> Result<VerifiedChain, String> {
    let pool: Vec<Vec<u8>> = pool.iter().map(|c| c.der().to_vec()).collect();
    let a = anchors(root);
    let mut checks = Checks::new();
    x509::verify_chain("chain", leaf, &pool, a.all().iter(), AT, &mut checks).map_err(|e| e.message)
}

fn leaf_params() -> CertificateParams {
    params("leaf", None, &[KeyUsagePurpose::DigitalSignature])
}

#[test]
fn a_well_formed_chain_verifies() {
    let r = root(params("root", Some(Some(1)), CA_USAGES));
    let i = ca(params("int", Some(Some(0)), CA_USAGES), &r);
    let chain = verify(&leaf(leaf_params(), &i), &[&i], &r).expect("root(pathLen 1) → int(pathLen 0) → leaf");
    assert_eq!(chain.certs.len(), 3);
}

#[test]
fn an_issuer_whose_key_usage_lacks_key_cert_sign_is_refused() {
    let r = root(params("root", Some(None), CA_USAGES));
    let bad = ca(params("int", Some(None), &[KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]), &r);
    let e = verify(&leaf(leaf_params(), &bad), &[&bad], &r).unwrap_err();
    assert!(e.contains("'CN=int'") && e.contains("keyCertSign"), "{e}");
    // RFC 5280 4.2.1.3: an absent keyUsage permits every use.
    let none = ca(params("int", Some(None), &[]), &r);
    assert!(verify(&leaf(leaf_params(), &none), &[&none], &r).is_ok());
    // The anchor's own keyUsage is honoured too.
    let r2 = root(params("root", Some(None), &[KeyUsagePurpose::CrlSign]));
    let e = verify(&leaf(leaf_params(), &r2), &[], &r2).unwrap_err();
    assert!(e.contains("'CN=root'") && e.contains("keyCertSign"), "{e}");
}

#[test]
fn a_path_len_constraint_is_enforced() {
    // Root with pathLen 0: no intermediate may follow it.
    let r0 = root(params("root", Some(Some(0)), CA_USAGES));
    let i = ca(params("int", Some(None), CA_USAGES), &r0);
    let e = verify(&leaf(leaf_params(), &i), &[&i], &r0).unwrap_err();
    assert!(e.contains("'CN=root'") && e.contains("pathLenConstraint 0") && e.contains("1 intermediate"), "{e}");
    // …but it may issue the leaf directly.
    assert!(verify(&leaf(leaf_params(), &r0), &[], &r0).is_ok());
    // An intermediate with pathLen 0 below which another CA sits.
    let r = root(params("root", Some(None), CA_USAGES));
    let upper = ca(params("upper", Some(Some(0)), CA_USAGES), &r);
    let lower = ca(params("lower", Some(None), CA_USAGES), &upper);
    let e = verify(&leaf(leaf_params(), &lower), &[&lower, &upper], &r).unwrap_err();
    assert!(e.contains("'CN=upper'") && e.contains("pathLenConstraint 0"), "{e}");
    let upper1 = ca(params("upper", Some(Some(1)), CA_USAGES), &r);
    let lower1 = ca(params("lower", Some(None), CA_USAGES), &upper1);
    assert!(verify(&leaf(leaf_params(), &lower1), &[&lower1, &upper1], &r).is_ok());
}

#[test]
fn a_ca_without_basic_constraints_ca_is_refused() {
    let r = root(params("root", Some(None), CA_USAGES));
    let not_ca = ca(params("int", None, CA_USAGES), &r);
    let e = verify(&leaf(leaf_params(), &not_ca), &[&not_ca], &r).unwrap_err();
    assert!(e.contains("not a CA"), "{e}");
}

fn with_extension(mut p: CertificateParams, oid: &[u64], content: Vec<u8>, critical: bool) -> CertificateParams {
    let mut ext = CustomExtension::from_oid_content(oid, content);
    ext.set_criticality(critical);
    p.custom_extensions.push(ext);
    p
}

#[test]
fn an_unprocessed_critical_extension_is_refused() {
    let r = root(params("root", Some(None), CA_USAGES));
    let i = ca(params("int", Some(None), CA_USAGES), &r);
    // A private extension (NULL content): refused when critical, ignored when not.
    let crit = leaf(with_extension(leaf_params(), &[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0], true), &i);
    let e = verify(&crit, &[&i], &r).unwrap_err();
    assert!(e.contains("'CN=leaf'") && e.contains("critical extension 1.3.6.1.4.1.99999.1"), "{e}");
    let plain = leaf(with_extension(leaf_params(), &[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0], false), &i);
    assert!(verify(&plain, &[&i], &r).is_ok());
    // Name constraints are not processed here: a CA that carries them
    // critically (as RFC 5280 requires) is refused rather than obeyed in part.
    let mut nc = params("int", Some(None), CA_USAGES);
    nc.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.com".into())],
        excluded_subtrees: vec![],
    });
    let nc = ca(nc, &r);
    let e = verify(&leaf(leaf_params(), &nc), &[&nc], &r).unwrap_err();
    assert!(e.contains("critical extension 2.5.29.30"), "{e}");
    // A critical subjectAltName (TPM EK certificates have an empty subject
    // and a critical SAN) is understood.
    let mut san = leaf_params();
    san.distinguished_name = rcgen::DistinguishedName::new();
    san.subject_alt_names = vec![rcgen::SanType::DnsName("tpm.example".try_into().unwrap())];
    let san = leaf(san, &i);
    assert!(x509::parse_cert(&san).unwrap().extensions().iter().any(|e| e.critical && e.oid.to_id_string() == "2.5.29.17"));
    assert!(verify(&san, &[&i], &r).is_ok());
}

// ------------------------------------------------------------------ CRLs

fn crl_params() -> CertificateRevocationListParams {
    let t = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).unwrap();
    CertificateRevocationListParams {
        this_update: t(AT - 3600),
        next_update: t(AT + 86_400),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: SerialNumber::from_slice(&[7]),
            revocation_time: t(AT - 7200),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
}

fn check_crl(crl: &[u8], issuer: &[u8]) -> Result<VerifiedCrl, String> {
    let mut checks = Checks::new();
    x509::verify_crl("CRL", crl, issuer, AT, &mut checks).map_err(|e| e.message)
}

/// A CA certificate (keyUsage `usages`) and, signed with the same key and
/// name, a CRL.
fn ca_and_crl(usages: &[KeyUsagePurpose], crl: CertificateRevocationListParams) -> (Vec<u8>, Vec<u8>, KeyPair) {
    let k = key();
    let cert = params("crl-ca", Some(None), usages).self_signed(&k).unwrap().der().to_vec();
    // rcgen itself refuses to sign a CRL for an issuer without cRLSign; the
    // verifier must refuse it however it was made: sign as an issuer whose
    // parameters name no keyUsage, then present the certificate that has one.
    let same_key = KeyPair::try_from(k.serialize_der().as_slice()).unwrap();
    let signer = rcgen::Issuer::new(params("crl-ca", Some(None), &[]), same_key);
    let der = crl.signed_by(&signer).unwrap().der().to_vec();
    (cert, der, k)
}

#[test]
fn a_crl_issuer_without_crl_sign_is_refused() {
    let (ok_cert, crl, _) = ca_and_crl(CA_USAGES, crl_params());
    let v = check_crl(&crl, &ok_cert).expect("issuer with cRLSign");
    assert!(v.is_revoked(&[7]));
    let (no_ku, crl, _) = ca_and_crl(&[], crl_params());
    assert!(check_crl(&crl, &no_ku).is_ok(), "an absent keyUsage permits signing CRLs");
    let (bad, crl, _) = ca_and_crl(&[KeyUsagePurpose::KeyCertSign], crl_params());
    let e = check_crl(&crl, &bad).unwrap_err();
    assert!(e.contains("cRLSign"), "{e}");
}

#[test]
fn a_crl_with_a_critical_issuing_distribution_point_is_refused() {
    let mut p = crl_params();
    p.issuing_distribution_point = Some(rcgen::CrlIssuingDistributionPoint {
        distribution_point: rcgen::CrlDistributionPoint { uris: vec!["http://crl.example/ca.crl".into()] },
        scope: Some(rcgen::CrlScope::UserCertsOnly),
    });
    let (cert, crl, _) = ca_and_crl(CA_USAGES, p);
    let e = check_crl(&crl, &cert).unwrap_err();
    assert!(e.contains("critical extension 2.5.29.28"), "{e}");
}

/// DER: tag, minimal length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend(content);
    out
}

/// The elements of a DER SEQUENCE, each with its header.
fn elements(seq: &[u8]) -> Vec<Vec<u8>> {
    let header = |b: &[u8]| -> (usize, usize) {
        if b[1] < 0x80 {
            (2, b[1] as usize)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (2 + n, b[2..2 + n].iter().fold(0, |a, x| (a << 8) | *x as usize))
        }
    };
    let (h, len) = header(seq);
    let mut body = &seq[h..h + len];
    let mut out = Vec::new();
    while !body.is_empty() {
        let (eh, el) = header(body);
        out.push(body[..eh + el].to_vec());
        body = &body[eh + el..];
    }
    out
}

#[test]
fn a_crl_without_next_update_is_refused() {
    let (cert, crl, k) = ca_and_crl(CA_USAGES, crl_params());
    assert!(check_crl(&crl, &cert).is_ok());
    // The same CRL re-signed without its nextUpdate (the element after thisUpdate).
    let outer = elements(&crl);
    let tbs: Vec<Vec<u8>> = elements(&outer[0]);
    assert!(matches!(tbs[3][0], 0x17 | 0x18) && matches!(tbs[4][0], 0x17 | 0x18), "thisUpdate, nextUpdate");
    let kept: Vec<u8> = tbs.iter().enumerate().filter(|(i, _)| *i != 4).flat_map(|(_, e)| e.clone()).collect();
    let tbs = tlv(0x30, &kept);
    let mut sig = vec![0u8];
    sig.extend(k.sign(&tbs).unwrap());
    let stripped = tlv(0x30, &[tbs, outer[1].clone(), tlv(0x03, &sig)].concat());
    assert!(x509::parse_crl(&stripped).unwrap().next_update().is_none());
    let e = check_crl(&stripped, &cert).unwrap_err();
    assert!(e.contains("no nextUpdate"), "{e}");
}
