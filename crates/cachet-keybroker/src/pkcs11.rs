//! PKCS#11 HSM custody (the `cryptoki` crate): a key-encryption key and
//! token-signing keys that never leave the HSM.
//!
//! - [`Pkcs11Kek`]: an AES-256 secret key object, generated in the token
//!   (`CKA_SENSITIVE` true, `CKA_EXTRACTABLE` false, so `CKA_NEVER_EXTRACTABLE`
//!   and `CKA_ALWAYS_SENSITIVE` hold), or imported once by its owner (bring
//!   your own key) with the same attributes. Data keys are wrapped with
//!   `CKM_AES_GCM` inside the token (`C_Encrypt` / `C_Decrypt`), with the
//!   secret's identity as GCM associated data. A KEK object found with
//!   exportable attributes is refused.
//! - [`Pkcs11Custody`]: `cachet_token::KeyCustody` for token signing: ES256,
//!   ES384 (`CKM_ECDSA` over a software SHA-2 digest) and PS256
//!   (`CKM_SHA256_RSA_PKCS_PSS`), private keys generated non-extractable in
//!   the token. The custody handle is the object's `CKA_ID`, not key material.
//!
//! [`Hsm`] is one logged-in session on one token, serialised by a mutex
//! (PKCS#11 sessions are not thread-safe). When the token goes away (device
//! removed, sessions closed, logged out), every operation fails as
//! [`BrokerError::Unavailable`] — never as an integrity error — and the next
//! one opens a new session and logs in again, so the service recovers by
//! itself once the token is back. Tests run SoftHSM2.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cachet_token::{Algorithm, CustodyKey, KeyCustody, TokenError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::AuthPin;
use der::asn1::ObjectIdentifier;
use zeroize::Zeroizing;

use crate::kek::KeyEncryptionKey;
use crate::secret::KeyBytes;
use crate::BrokerError;

/// Where Debian's SoftHSM2 installs its PKCS#11 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

fn hsm_err(what: &str) -> impl Fn(cryptoki::error::Error) -> BrokerError + '_ {
    move |e| {
        if is_outage(&e) {
            BrokerError::Unavailable(format!("{what}: {}", short(&e)))
        } else {
            BrokerError::Hsm(format!("{what}: {}", short(&e)))
        }
    }
}

/// Whether a PKCS#11 failure means the token, slot or session went away
/// (or our login did), rather than that the request itself was wrong.
fn is_outage(e: &CkError) -> bool {
    match e {
        CkError::Pkcs11(rv, _) => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
        ),
        _ => false,
    }
}

/// A PKCS#11 error in a few words (the crate's Display quotes the whole
/// specification text of the return value).
fn short(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f}: {rv:?}"),
        other => other.to_string(),
    }
}

/// A logged-in session on one PKCS#11 token. Open one per process and
/// share it (`Arc`): PKCS#11 modules are initialised once per process.
pub struct Hsm {
    session: Mutex<Conn>,
    token_label: String,
    pin: Zeroizing<String>,
    /// Incremented each time a new session replaces a lost one, so holders
    /// of object handles look their objects up again.
    generation: AtomicU64,
    ctx: Pkcs11,
}

/// The session and the initialisation of the module it was opened in.
pub struct Conn {
    session: Session,
    epoch: u64,
}

impl std::ops::Deref for Conn {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

/// How many times this process re-initialised a PKCS#11 module (a session
/// opened before a re-initialisation is gone, and its handle number may be
/// reused by a new one, so it must never be closed afterwards).
static MODULE_EPOCH: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm").field("token_label", &self.token_label).finish_non_exhaustive()
    }
}

impl Hsm {
    /// Load `module`, find the initialised token labelled `token_label`,
    /// open a read-write session and log in as the user with `pin`.
    pub fn open(module: &Path, token_label: &str, pin: &str) -> Result<Arc<Hsm>, BrokerError> {
        let ctx = Pkcs11::new(module).map_err(hsm_err("loading the PKCS#11 module"))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(hsm_err("C_Initialize"))?;
        let pin = Zeroizing::new(pin.to_string());
        let session = login(&ctx, token_label, &pin)?;
        let conn = Conn { session, epoch: MODULE_EPOCH.load(Ordering::Acquire) };
        Ok(Arc::new(Hsm { session: Mutex::new(conn), token_label: token_label.to_string(), pin, generation: AtomicU64::new(0), ctx }))
    }

    /// The session (one user at a time).
    pub fn session(&self) -> Result<MutexGuard<'_, Conn>, BrokerError> {
        self.session.lock().map_err(|_| BrokerError::Hsm("the HSM session lock is poisoned".into()))
    }

    /// Run `op` on the session. If it fails because the token or session
    /// went away, reconnect ([`Hsm::reconnect`]) and run it once more; if
    /// that fails too, the error says the custody is unavailable.
    pub fn with_session<T>(&self, op: impl Fn(&Session, u64) -> Result<T, BrokerError>) -> Result<T, BrokerError> {
        let mut conn = self.session()?;
        let run = |conn: &Conn| match op(conn, self.generation.load(Ordering::Acquire)) {
            // An unexplained failure while the token does not answer is the token's.
            Err(BrokerError::Hsm(m)) if !self.token_answers(conn) => Err(BrokerError::Unavailable(m)),
            other => other,
        };
        match run(&conn) {
            Err(BrokerError::Unavailable(first)) => {
                self.reconnect(&mut conn).map_err(|e| BrokerError::Unavailable(format!("{first}; reconnecting failed: {e}")))?;
                run(&conn)
            }
            other => other,
        }
    }

    /// Replace a lost session: open a new one and log in again. When the
    /// module itself lost the token (SoftHSM2, for one, keeps failing once
    /// its token store went away, even after it is back), finalise and
    /// re-initialise the module first.
    fn reconnect(&self, conn: &mut Conn) -> Result<(), BrokerError> {
        let fresh = match login(&self.ctx, &self.token_label, &self.pin) {
            Ok(s) => s,
            Err(_) => {
                // Every session of the module ends here, this one included.
                let _ = self.ctx.clone().finalize();
                MODULE_EPOCH.fetch_add(1, Ordering::AcqRel);
                self.ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(hsm_err("C_Initialize"))?;
                login(&self.ctx, &self.token_label, &self.pin)?
            }
        };
        let epoch = MODULE_EPOCH.load(Ordering::Acquire);
        let old = std::mem::replace(conn, Conn { session: fresh, epoch });
        if old.epoch == epoch {
            drop(old); // C_CloseSession on the lost session; an error is ignored.
        } else {
            // Opened before a re-initialisation: its handle number may now be
            // another live session's, so it must not be closed.
            std::mem::forget(old);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Whether the token answers and our session is logged in, reconnecting
    /// when it was lost (for `/readyz`).
    pub fn check(&self) -> Result<(), BrokerError> {
        self.with_session(|s, _| {
            let info = s.get_session_info().map_err(hsm_err("C_GetSessionInfo"))?;
            // The token itself must answer too (a session can outlive its token's store).
            self.ctx.get_token_info(info.slot_id()).map_err(|e| BrokerError::Unavailable(format!("C_GetTokenInfo: {}", short(&e))))?;
            match info.session_state() {
                SessionState::RwUser | SessionState::RoUser => Ok(()),
                // Logged out (e.g. the token was reset): log in again.
                other => Err(BrokerError::Unavailable(format!("the HSM session is not logged in ({other:?})"))),
            }
        })
    }

    /// After an operation failed with an error that may be the request's
    /// fault or the token's (SoftHSM2 answers both a GCM tag mismatch and a
    /// vanished token store with `CKR_GENERAL_ERROR`): whether the token
    /// still answers, so the failure can be named correctly.
    fn token_answers(&self, s: &Session) -> bool {
        s.get_session_info().ok().is_some_and(|i| self.ctx.get_token_info(i.slot_id()).is_ok())
    }

    fn find_one(&self, template: &[Attribute], what: &str) -> Result<Option<ObjectHandle>, BrokerError> {
        self.with_session(|s, _| find_in(s, template, what))
    }
}

/// Find the token labelled `token_label`, open a read-write session on it
/// and log in as the user. Already logged in (another session of this
/// process is) counts as logged in.
fn login(ctx: &Pkcs11, token_label: &str, pin: &str) -> Result<Session, BrokerError> {
    let mut found = None;
    for slot in ctx.get_slots_with_token().map_err(|e| BrokerError::Unavailable(format!("C_GetSlotList: {}", short(&e))))? {
        let info = ctx.get_token_info(slot).map_err(|e| BrokerError::Unavailable(format!("C_GetTokenInfo: {}", short(&e))))?;
        if info.label().trim_end() == token_label {
            found = Some(slot);
            break;
        }
    }
    let slot = found.ok_or_else(|| BrokerError::Unavailable(format!("no initialised token labelled {token_label:?}")))?;
    let session = ctx.open_rw_session(slot).map_err(|e| BrokerError::Unavailable(format!("C_OpenSession: {}", short(&e))))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(hsm_err("C_Login")(e)),
    }
}

/// The one object matching `template`, if any.
fn find_in(s: &Session, template: &[Attribute], what: &str) -> Result<Option<ObjectHandle>, BrokerError> {
    let found = s.find_objects(template).map_err(hsm_err("C_FindObjects"))?;
    match found.as_slice() {
        [] => Ok(None),
        [h] => Ok(Some(*h)),
        _ => Err(BrokerError::Hsm(format!("{} objects match {what}; refusing to guess", found.len()))),
    }
}

/// Attributes a KEK object must have: usable for encryption only, never exportable.
fn kek_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// A key-encryption key held in a PKCS#11 token.
pub struct Pkcs11Kek {
    hsm: Arc<Hsm>,
    /// The object handle and the session generation it was found in.
    handle: Mutex<(u64, ObjectHandle)>,
    label: String,
    id: String,
}

impl std::fmt::Debug for Pkcs11Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Kek").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What a KEK's protection attributes say, as read from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KekProtection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`: never was extractable (true for keys made
    /// in the token or imported non-extractable).
    pub never_extractable: bool,
    /// Whether `C_GetAttributeValue(CKA_VALUE)` returned key bytes.
    pub value_readable: bool,
}

impl Pkcs11Kek {
    fn find(hsm: &Hsm, label: &str) -> Result<Option<ObjectHandle>, BrokerError> {
        hsm.find_one(
            &[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES), Attribute::Label(label.as_bytes().to_vec())],
            &format!("the AES key label {label:?}"),
        )
    }

    fn checked(hsm: Arc<Hsm>, handle: ObjectHandle, label: &str) -> Result<Self, BrokerError> {
        let generation = hsm.generation.load(Ordering::Acquire);
        let kek = Self {
            id: format!("pkcs11:{}/{label}", hsm.token_label),
            hsm,
            handle: Mutex::new((generation, handle)),
            label: label.to_string(),
        };
        let p = kek.protection()?;
        if !p.sensitive || p.extractable || p.value_readable {
            return Err(BrokerError::Hsm(format!(
                "the key {label:?} can leave the HSM (sensitive={}, extractable={}); refusing to use it as a KEK",
                p.sensitive, p.extractable
            )));
        }
        Ok(kek)
    }

    /// Open the AES KEK labelled `label`; it must exist.
    pub fn open(hsm: Arc<Hsm>, label: &str) -> Result<Self, BrokerError> {
        let h = Self::find(&hsm, label)?.ok_or_else(|| BrokerError::Hsm(format!("no AES key labelled {label:?} in the token")))?;
        Self::checked(hsm, h, label)
    }

    /// Open the KEK labelled `label`, generating it inside the token
    /// (`CKM_AES_KEY_GEN`, 256 bits, non-extractable) if there is none.
    pub fn open_or_generate(hsm: Arc<Hsm>, label: &str) -> Result<Self, BrokerError> {
        if let Some(h) = Self::find(&hsm, label)? {
            return Self::checked(hsm, h, label);
        }
        let mut t = kek_template(label);
        t.push(Attribute::ValueLen(32.into()));
        let h = hsm.session()?.generate_key(&Mechanism::AesKeyGen, &t).map_err(hsm_err("C_GenerateKey"))?;
        Self::checked(hsm, h, label)
    }

    /// Bring your own key: import the owner's 256-bit KEK into the token as
    /// a sensitive, non-extractable object labelled `label`. From then on
    /// it is used only inside the HSM. Refused if the label is taken.
    pub fn import(hsm: Arc<Hsm>, label: &str, key: &KeyBytes<32>) -> Result<Self, BrokerError> {
        if Self::find(&hsm, label)?.is_some() {
            return Err(BrokerError::Hsm(format!("an AES key labelled {label:?} already exists")));
        }
        let mut t = kek_template(label);
        t.push(Attribute::Class(ObjectClass::SECRET_KEY));
        t.push(Attribute::KeyType(KeyType::AES));
        t.push(Attribute::Value(key.expose().to_vec()));
        let h = hsm.session()?.create_object(&t);
        // The template held a copy of the key bytes.
        for a in t.iter_mut() {
            if let Attribute::Value(v) = a {
                crate::secret::wipe(v);
            }
        }
        let h = h.map_err(hsm_err("C_CreateObject"))?;
        Self::checked(hsm, h, label)
    }

    /// The KEK's object handle in the session of `generation` (looked up
    /// again by label after a reconnect).
    fn object(&self, s: &Session, generation: u64) -> Result<ObjectHandle, BrokerError> {
        let mut cached = self.handle.lock().map_err(|_| BrokerError::Hsm("the KEK handle lock is poisoned".into()))?;
        if cached.0 == generation {
            return Ok(cached.1);
        }
        let template =
            [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES), Attribute::Label(self.label.as_bytes().to_vec())];
        let h = find_in(s, &template, "the KEK label")?
            .ok_or_else(|| BrokerError::Unavailable(format!("the token has no AES key labelled {:?} (another token?)", self.label)))?;
        *cached = (generation, h);
        Ok(h)
    }

    /// Read the KEK's protection attributes from the token, and try to read
    /// its value (which a conforming token refuses for a sensitive key).
    pub fn protection(&self) -> Result<KekProtection, BrokerError> {
        let handle = self.hsm.with_session(|s, g| self.object(s, g))?;
        let s = self.hsm.session()?;
        let attrs = s
            .get_attributes(handle, &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::NeverExtractable])
            .map_err(hsm_err("C_GetAttributeValue"))?;
        let flag = |want: AttributeType| {
            attrs.iter().find_map(|a| match (a, want) {
                (Attribute::Sensitive(v), AttributeType::Sensitive)
                | (Attribute::Extractable(v), AttributeType::Extractable)
                | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable) => Some(*v),
                _ => None,
            })
        };
        let value_readable = match s.get_attributes(handle, &[AttributeType::Value]) {
            Ok(v) => v.iter().any(|a| matches!(a, Attribute::Value(b) if !b.is_empty())),
            Err(_) => false,
        };
        Ok(KekProtection {
            sensitive: flag(AttributeType::Sensitive).unwrap_or(false),
            extractable: flag(AttributeType::Extractable).unwrap_or(true),
            never_extractable: flag(AttributeType::NeverExtractable).unwrap_or(false),
            value_readable,
        })
    }
}

impl KeyEncryptionKey for Pkcs11Kek {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn key_id(&self) -> &str {
        &self.id
    }

    /// The token answers, we are logged in (reconnecting if needed), and
    /// the key is there.
    fn check(&self) -> Result<(), BrokerError> {
        self.hsm.check()?;
        self.hsm.with_session(|s, g| self.object(s, g).map(|_| ()))
    }

    fn wrap(&self, dek: &KeyBytes<32>, aad: &[u8]) -> Result<Vec<u8>, BrokerError> {
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| BrokerError::Crypto("random IV".into()))?;
        let ct = self.hsm.with_session(|s, g| {
            let handle = self.object(s, g)?;
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, aad, 128.into()).map_err(hsm_err("GCM parameters"))?;
            s.encrypt(&Mechanism::AesGcm(params), handle, dek.expose()).map_err(hsm_err("C_Encrypt (AES-GCM)"))
        })?;
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes<32>, BrokerError> {
        if wrapped.len() != crate::kek::WRAPPED_LEN {
            return Err(BrokerError::Integrity("wrapped data key has the wrong length".into()));
        }
        let (iv, ct) = wrapped.split_at(12);
        let dek = self.hsm.with_session(|s, g| {
            let handle = self.object(s, g)?;
            let mut iv = iv.to_vec();
            let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(hsm_err("GCM parameters"))?;
            s.decrypt(&Mechanism::AesGcm(params), handle, ct).map(Zeroizing::new).map_err(|e| match hsm_err("C_Decrypt (AES-GCM)")(e) {
                // The token is there and answers: the record does not authenticate.
                BrokerError::Hsm(_) if self.hsm.token_answers(s) => BrokerError::Integrity(
                    "the HSM could not unwrap the data key (altered record, wrong KEK or wrong secret identity)".into(),
                ),
                BrokerError::Hsm(m) => BrokerError::Unavailable(m),
                outage => outage,
            })
        })?;
        KeyBytes::from_slice(&dek).ok_or_else(|| BrokerError::Integrity("wrapped data key has the wrong length".into()))
    }
}

/// Token-signing keys in the HSM, as a `cachet_token` key custody.
pub struct Pkcs11Custody {
    hsm: Arc<Hsm>,
}

impl Pkcs11Custody {
    /// A custody signing with keys in `hsm`.
    pub fn new(hsm: Arc<Hsm>) -> Self {
        Self { hsm }
    }
}

/// The private key with `CKA_ID` `id` in the session.
fn private_key_in(s: &Session, id: &[u8]) -> Result<ObjectHandle, BrokerError> {
    find_in(s, &[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(id.to_vec())], "the signing key id")?
        .ok_or_else(|| BrokerError::Unavailable("the signing key is not in the HSM (another token?)".into()))
}

fn decode_handle(handle: &[u8]) -> Result<Vec<u8>, TokenError> {
    std::str::from_utf8(handle)
        .ok()
        .and_then(|s| s.strip_prefix("pkcs11:id="))
        .and_then(|h| hex::decode(h).ok())
        .filter(|id| id.len() == 16)
        .ok_or_else(|| TokenError::Key("not a PKCS#11 custody handle".into()))
}

fn tok(e: BrokerError) -> TokenError {
    TokenError::Key(e.to_string())
}

/// SubjectPublicKeyInfo DER of an EC point on `curve_oid`.
fn ec_spki(curve_oid: ObjectIdentifier, point: &[u8]) -> Result<Vec<u8>, TokenError> {
    use der::Encode;
    let bad = |_| TokenError::Key("cannot encode the EC public key".into());
    let params = curve_oid.to_der().map_err(bad)?;
    let spki = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(der::asn1::AnyRef::try_from(params.as_slice()).map_err(bad)?),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(point).map_err(bad)?,
    };
    spki.to_der().map_err(bad)
}

impl KeyCustody for Pkcs11Custody {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, alg: Algorithm, kid: &str) -> Result<CustodyKey, TokenError> {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| TokenError::Key("random key id".into()))?;
        let common = |private: bool| {
            let mut t = vec![Attribute::Token(true), Attribute::Id(id.to_vec()), Attribute::Label(kid.as_bytes().to_vec())];
            if private {
                t.extend([
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Decrypt(false),
                    Attribute::Derive(false),
                ]);
            } else {
                t.push(Attribute::Verify(true));
            }
            t
        };
        let s = self.hsm.session().map_err(tok)?;
        let spki = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                use der::{Decode, Encode};
                let (oid, coord) = if alg == Algorithm::ES256 { (OID_P256, 32) } else { (OID_P384, 48) };
                let mut pub_t = common(false);
                pub_t.push(Attribute::EcParams(oid.to_der().map_err(|_| TokenError::Key("curve OID".into()))?));
                let (pubk, _) = s
                    .generate_key_pair(&Mechanism::EccKeyPairGen, &pub_t, &common(true))
                    .map_err(|e| TokenError::Key(format!("C_GenerateKeyPair: {e}")))?;
                let attrs =
                    s.get_attributes(pubk, &[AttributeType::EcPoint]).map_err(|e| TokenError::Key(format!("C_GetAttributeValue: {e}")))?;
                let raw = attrs
                    .into_iter()
                    .find_map(|a| if let Attribute::EcPoint(p) = a { Some(p) } else { None })
                    .ok_or_else(|| TokenError::Key("the HSM returned no EC point".into()))?;
                // CKA_EC_POINT is a DER OCTET STRING (some tokens give the raw point).
                let point = if raw.len() == 2 * coord + 1 && raw.first() == Some(&4) {
                    raw
                } else {
                    der::asn1::OctetString::from_der(&raw).map_err(|_| TokenError::Key("malformed CKA_EC_POINT".into()))?.into_bytes()
                };
                if point.len() != 2 * coord + 1 || point.first() != Some(&4) {
                    return Err(TokenError::Key("the HSM returned an EC point of the wrong size".into()));
                }
                ec_spki(oid, &point)?
            }
            Algorithm::PS256 | Algorithm::RS256 => {
                let mut pub_t = common(false);
                pub_t.push(Attribute::ModulusBits(3072.into()));
                pub_t.push(Attribute::PublicExponent(vec![1, 0, 1]));
                let (pubk, _) = s
                    .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &pub_t, &common(true))
                    .map_err(|e| TokenError::Key(format!("C_GenerateKeyPair: {e}")))?;
                let attrs = s
                    .get_attributes(pubk, &[AttributeType::Modulus, AttributeType::PublicExponent])
                    .map_err(|e| TokenError::Key(format!("C_GetAttributeValue: {e}")))?;
                let mut n = None;
                let mut e = None;
                for a in attrs {
                    match a {
                        Attribute::Modulus(v) => n = Some(v),
                        Attribute::PublicExponent(v) => e = Some(v),
                        _ => {}
                    }
                }
                let (n, e) = n.zip(e).ok_or_else(|| TokenError::Key("the HSM returned no RSA public key".into()))?;
                crate::jwe::rsa_spki_der(&n, &e).map_err(tok)?
            }
        };
        Ok(CustodyKey { public_spki_der: spki, handle: format!("pkcs11:id={}", hex::encode(id)).into_bytes() })
    }

    fn sign(&self, alg: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let id = decode_handle(handle)?;
        self.hsm
            .with_session(|s, _| {
                let key = private_key_in(s, &id)?;
                let sig = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => {
                        let d = if alg == Algorithm::ES256 { &aws_lc_rs::digest::SHA256 } else { &aws_lc_rs::digest::SHA384 };
                        let digest = aws_lc_rs::digest::digest(d, message);
                        s.sign(&Mechanism::Ecdsa, key, digest.as_ref())
                    }
                    Algorithm::PS256 => s.sign(
                        &Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                            hash_alg: MechanismType::SHA256,
                            mgf: PkcsMgfType::MGF1_SHA256,
                            s_len: 32.into(),
                        }),
                        key,
                        message,
                    ),
                    // RSASSA-PKCS1-v1_5 SHA-256 (the Azure Attestation compatible key).
                    Algorithm::RS256 => s.sign(&Mechanism::Sha256RsaPkcs, key, message),
                };
                sig.map_err(hsm_err("HSM C_Sign"))
            })
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    fn destroy(&self, handle: &[u8]) -> Result<(), TokenError> {
        let id = decode_handle(handle)?;
        let s = self.hsm.session().map_err(tok)?;
        for h in s.find_objects(&[Attribute::Id(id)]).map_err(|e| TokenError::Key(format!("C_FindObjects: {e}")))? {
            s.destroy_object(h).map_err(|e| TokenError::Key(format!("C_DestroyObject: {e}")))?;
        }
        Ok(())
    }
}
