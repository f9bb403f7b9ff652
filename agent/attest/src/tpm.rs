//! The node's TPM through tss-esapi: the endorsement key and its
//! certificate, a restricted ECC P-256 attestation key persisted as blobs
//! across runs, PCR reads, quotes, and ActivateCredential.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tss_esapi::abstraction::{ak, ek, pcr, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{
    AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, PcrSelectionListBuilder, PcrSlot, Private, Public,
    SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::{DeviceConfig, NetworkTPMConfig, TctiNameConf};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

use crate::{files, AttestError};

/// Where swtpm_setup and most platforms persist the RSA 2048 EK.
const EK_RSA_PERSISTENT: u32 = 0x8101_0001;
/// Where the AK is made persistent (owner range), so that a run needs no
/// policy session and Load: "XA" in the low bytes.
pub const AK_PERSISTENT: u32 = 0x8100_5841;
pub const AK_FILE: &str = "ak.json";
pub const EK_FILE: &str = "ek.json";

/// The EK's public part and certificate, read once from the TPM and kept
/// beside the AK. Tampering only makes verification fail: the verifier
/// checks the certificate against the EK and the AK's activation for it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EkCache {
    ek_public_sha256: String,
    /// Base64 TPMT_PUBLIC.
    ek_public: String,
    /// Base64 DER, when the TPM's NV holds a certificate.
    certificate: Option<String>,
}

/// The AK's blobs, loadable only under the EK they were created under.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AkBlobs {
    /// Hex SHA-256 of the EK's TPMT_PUBLIC this AK belongs to.
    ek_public_sha256: String,
    /// Base64 TPMT_PUBLIC.
    public: String,
    /// Base64 TPM2B_PRIVATE contents (encrypted by the TPM; useless elsewhere).
    private: String,
}

/// An open TPM with the EK and AK loaded.
pub struct Tpm {
    ctx: Context,
    /// Loaded only when needed: quoting with a persistent AK needs no EK.
    ek: Option<KeyHandle>,
    ek_transient: bool,
    state_dir: PathBuf,
    ak: KeyHandle,
    ak_transient: bool,
    pub ek_public: Vec<u8>,
    pub ek_certificate: Option<Vec<u8>>,
    pub ak_public: Vec<u8>,
    pub ak_created: bool,
    pub tcti: String,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm")
            .field("tcti", &self.tcti)
            .finish_non_exhaustive()
    }
}

pub fn tcti_conf(tcti: &probe::TpmSource) -> Result<TctiNameConf, AttestError> {
    let bad = |e: tss_esapi::Error| AttestError::Invalid(format!("bad TCTI '{tcti}': {e}"));
    match tcti {
        probe::TpmSource::Device(p) => {
            if !p.exists() {
                return Err(AttestError::NoTpm {
                    tcti: tcti.to_string(),
                    why: format!("{} does not exist", p.display()),
                });
            }
            Ok(TctiNameConf::Device(
                DeviceConfig::from_str(&p.to_string_lossy()).map_err(bad)?,
            ))
        }
        probe::TpmSource::Swtpm { host, port } => Ok(TctiNameConf::Swtpm(
            NetworkTPMConfig::from_str(&format!("host={host},port={port}")).map_err(bad)?,
        )),
        probe::TpmSource::None => Err(AttestError::NoTpm {
            tcti: "none".into(),
            why: "attestation needs a TPM".into(),
        }),
    }
}

impl Tpm {
    /// Open the TPM with the node's AK ready to quote. When the AK is
    /// persistent in this TPM and the EK is cached, that is one command;
    /// otherwise the EK is loaded (persistent, or created from the standard
    /// template) and the AK loaded from its blobs, or created on first use.
    pub fn open(tcti: &probe::TpmSource, state_dir: &Path) -> Result<Tpm, AttestError> {
        let conf = tcti_conf(tcti)?;
        let ctx = Context::new(conf).map_err(|e| AttestError::NoTpm {
            tcti: tcti.to_string(),
            why: e.to_string(),
        })?;
        let mut tpm = Tpm {
            ctx,
            ek: None,
            ek_transient: false,
            state_dir: state_dir.to_path_buf(),
            ak: KeyHandle::Null,
            ak_transient: true,
            ek_public: Vec::new(),
            ek_certificate: None,
            ak_public: Vec::new(),
            ak_created: false,
            tcti: tcti.to_string(),
        };
        if !tpm.open_fast() {
            tpm.ensure_ek()?;
            tpm.load_or_create_ak(&state_dir.join(AK_FILE))?;
        }
        Ok(tpm)
    }

    /// The AK persistent in the TPM with the Name of our blobs, and the EK
    /// it was created under cached: no EK access needed.
    fn open_fast(&mut self) -> bool {
        let read = |name: &str| {
            files::read_optional(&self.state_dir.join(name))
                .ok()
                .flatten()
        };
        let (Some(ak), Some(ek)) = (read(AK_FILE), read(EK_FILE)) else {
            return false;
        };
        let (Ok(ak), Ok(ek)) = (
            serde_json::from_slice::<AkBlobs>(&ak),
            serde_json::from_slice::<EkCache>(&ek),
        ) else {
            return false;
        };
        let (Ok(ak_public), Ok(ek_public)) = (
            xnode_verify::format::unb64("", &ak.public),
            xnode_verify::format::unb64("", &ek.ek_public),
        ) else {
            return false;
        };
        let ek_id = xnode_verify::credential::ek_id(&ek_public);
        if ek.ek_public_sha256 != ek_id || ak.ek_public_sha256 != ek_id {
            return false;
        }
        let Ok(name) = xnode_verify::tpm::name(&ak_public) else {
            return false;
        };
        let Some(handle) = persistent_with_name(&mut self.ctx, AK_PERSISTENT, &name) else {
            return false;
        };
        self.ak = handle;
        self.ak_transient = false;
        self.ak_public = ak_public;
        self.ek_public = ek_public;
        self.ek_certificate = ek
            .certificate
            .and_then(|c| xnode_verify::format::unb64("", &c).ok());
        true
    }

    /// Load the EK, read its public part and certificate, and cache both.
    fn ensure_ek(&mut self) -> Result<KeyHandle, AttestError> {
        if let Some(ek) = self.ek {
            return Ok(ek);
        }
        let (ek, ek_pub, transient) = match persistent_ek(&mut self.ctx) {
            Some((h, public)) => (h, public, false),
            None => {
                let h = ek::create_ek_object_2(
                    &mut self.ctx,
                    AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                    DefaultKey,
                )
                .map_err(AttestError::tpm("creating the endorsement key"))?;
                let (public, _, _) = self
                    .ctx
                    .read_public(h)
                    .map_err(AttestError::tpm("reading the EK"))?;
                (h, public, true)
            }
        };
        self.ek = Some(ek);
        self.ek_transient = transient;
        self.ek_public = ek_pub
            .marshall()
            .map_err(AttestError::tpm("encoding the EK"))?;
        self.ek_certificate = ek::retrieve_ek_pubcert(
            &mut self.ctx,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        )
        .ok()
        .map(trim_der);
        let cache = EkCache {
            ek_public_sha256: xnode_verify::credential::ek_id(&self.ek_public),
            ek_public: xnode_verify::format::b64(&self.ek_public),
            certificate: self
                .ek_certificate
                .as_deref()
                .map(xnode_verify::format::b64),
        };
        let json =
            serde_json::to_vec_pretty(&cache).map_err(|e| AttestError::Invalid(e.to_string()))?;
        files::write_private(&self.state_dir.join(EK_FILE), &json)?;
        Ok(ek)
    }

    fn load_or_create_ak(&mut self, path: &Path) -> Result<(), AttestError> {
        let ek_id = xnode_verify::credential::ek_id(&self.ek_public);
        let corrupted = |why: String| AttestError::Corrupted {
            path: path.to_path_buf(),
            why,
            consequence: "a new AK must be activated with the verifier again",
        };
        let (public, private) = match files::read_optional(path)? {
            Some(bytes) => {
                let blobs: AkBlobs = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupted(format!("not an AK file: {e}")))?;
                if blobs.ek_public_sha256 != ek_id {
                    return Err(AttestError::Invalid(format!(
                        "{} holds an AK of another TPM (EK {}…, this TPM's EK is {}…): point --state-dir elsewhere or move the file away",
                        path.display(),
                        &blobs.ek_public_sha256.get(..16).unwrap_or(""),
                        &ek_id[..16]
                    )));
                }
                let public = Public::unmarshall(
                    &xnode_verify::format::unb64("public", &blobs.public)
                        .map_err(|e| corrupted(e.to_string()))?,
                )
                .map_err(|e| corrupted(format!("public part: {e}")))?;
                let private = Private::try_from(
                    xnode_verify::format::unb64("private", &blobs.private)
                        .map_err(|e| corrupted(e.to_string()))?,
                )
                .map_err(|e| corrupted(format!("private part: {e}")))?;
                (public, private)
            }
            None => {
                let ek = self.ensure_ek()?;
                let created = ak::create_ak_2(
                    &mut self.ctx,
                    ek,
                    HashingAlgorithm::Sha256,
                    AsymmetricAlgorithmSelection::Ecc(
                        tss_esapi::interface_types::ecc::EccCurve::NistP256,
                    ),
                    SignatureSchemeAlgorithm::EcDsa,
                    None,
                    DefaultKey,
                )
                .map_err(AttestError::tpm("creating the attestation key"))?;
                let blobs = AkBlobs {
                    ek_public_sha256: ek_id,
                    public: xnode_verify::format::b64(
                        &created
                            .out_public
                            .marshall()
                            .map_err(AttestError::tpm("encoding the AK"))?,
                    ),
                    private: xnode_verify::format::b64(created.out_private.value()),
                };
                let json = serde_json::to_vec_pretty(&blobs)
                    .map_err(|e| AttestError::Invalid(e.to_string()))?;
                files::write_private(path, &json)?;
                self.ak_created = true;
                (created.out_public, created.out_private)
            }
        };
        let want = public
            .marshall()
            .map_err(AttestError::tpm("encoding the AK"))?;
        let name = xnode_verify::tpm::name(&want)
            .map_err(|e| AttestError::Invalid(format!("AK public part: {e}")))?;
        if let Some(handle) = persistent_with_name(&mut self.ctx, AK_PERSISTENT, &name) {
            self.ak = handle;
            self.ak_transient = false;
        } else {
            let ek = self.ensure_ek()?;
            self.ak = ak::load_ak(&mut self.ctx, ek, None, private, public).map_err(
                AttestError::tpm("loading the attestation key (was the TPM cleared?)"),
            )?;
            self.persist_ak();
        }
        self.ak_public = want;
        Ok(())
    }

    /// Make the loaded AK persistent when the handle is free and the owner
    /// hierarchy has no password; otherwise keep loading it each run.
    fn persist_ak(&mut self) {
        let Ok(handle) = PersistentTpmHandle::new(AK_PERSISTENT) else {
            return;
        };
        let taken = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(handle)))
            .is_ok();
        if taken {
            return; // another object lives there: never evict it
        }
        let ak = ObjectHandle::from(self.ak);
        let persisted = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.evict_control(Provision::Owner, ak, Persistent::Persistent(handle))
            });
        if let Ok(obj) = persisted {
            let _ = self.ctx.flush_context(ak);
            self.ak = KeyHandle::from(obj);
            self.ak_transient = false;
        }
    }

    /// Read the sha256 PCRs `indices`.
    pub fn read_pcrs(&mut self, indices: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, AttestError> {
        let slots = slots(indices)?;
        let sel = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(AttestError::tpm("selecting PCRs"))?;
        let data = pcr::read_all(&mut self.ctx, sel).map_err(AttestError::tpm("reading PCRs"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or_else(|| AttestError::Invalid("the TPM has no active sha256 PCR bank".into()))?;
        indices
            .iter()
            .zip(&slots)
            .map(|(i, s)| {
                bank.get_digest(*s)
                    .map(|d| (*i, d.value().to_vec()))
                    .ok_or_else(|| {
                        AttestError::Invalid(format!("PCR {i} missing from the TPM's answer"))
                    })
            })
            .collect()
    }

    /// Quote the sha256 PCRs `indices` with `qualifying_data`; returns the
    /// TPMS_ATTEST and TPMT_SIGNATURE bytes.
    pub fn quote(
        &mut self,
        indices: &[u8],
        qualifying_data: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        let sel = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots(indices)?)
            .build()
            .map_err(AttestError::tpm("selecting PCRs"))?;
        let data = Data::try_from(qualifying_data.to_vec())
            .map_err(AttestError::tpm("qualifying data"))?;
        let ak = self.ak;
        let (attest, sig) = self
            .ctx
            .execute_with_nullauth_session(|ctx| ctx.quote(ak, data, SignatureScheme::Null, sel))
            .map_err(AttestError::tpm("quoting"))?;
        Ok((
            attest
                .marshall()
                .map_err(AttestError::tpm("encoding the quote"))?,
            sig.marshall()
                .map_err(AttestError::tpm("encoding the signature"))?,
        ))
    }

    /// TPM2_ActivateCredential: unwrap a verifier's credential for this AK.
    pub fn activate_credential(
        &mut self,
        credential_blob: Vec<u8>,
        encrypted_secret: Vec<u8>,
    ) -> Result<Vec<u8>, AttestError> {
        let blob =
            IdObject::try_from(credential_blob).map_err(AttestError::tpm("credential blob"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret)
            .map_err(AttestError::tpm("encrypted secret"))?;
        // The EK's policy requires PolicySecret(TPM_RH_ENDORSEMENT).
        let policy = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(AttestError::tpm("starting a policy session"))?
            .ok_or_else(|| AttestError::Invalid("the TPM returned no session".into()))?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_decrypt(true)
            .with_encrypt(true)
            .build();
        self.ctx
            .tr_sess_set_attributes(policy, attrs, mask)
            .map_err(AttestError::tpm("session attributes"))?;
        let policy_session =
            PolicySession::try_from(policy).map_err(AttestError::tpm("policy session"))?;
        self.ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.policy_secret(
                    policy_session,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(AttestError::tpm("satisfying the EK policy"))?;
        let (ak, ek) = (self.ak, self.ensure_ek()?);
        let out = self
            .ctx
            .execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |ctx| {
                ctx.activate_credential(ak, ek, blob, secret)
            })
            .map_err(AttestError::tpm(
                "activating the credential (not made for this TPM's EK and AK?)",
            ));
        let _ = self
            .ctx
            .flush_context(ObjectHandle::from(SessionHandle::from(policy)));
        Ok(out?.value().to_vec())
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        if self.ak_transient {
            let _ = self.ctx.flush_context(ObjectHandle::from(self.ak));
        }
        if let (Some(ek), true) = (self.ek, self.ek_transient) {
            let _ = self.ctx.flush_context(ObjectHandle::from(ek));
        }
    }
}

/// The object at a persistent handle, if its Name is `name` (ESYS reads
/// the public area once to make the handle; the Name needs no command).
fn persistent_with_name(ctx: &mut Context, handle: u32, name: &[u8]) -> Option<KeyHandle> {
    let handle = PersistentTpmHandle::new(handle).ok()?;
    let obj = ctx
        .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(handle)))
        .ok()?;
    let found = ctx.tr_get_name(obj).ok()?;
    if found.value() == name {
        Some(KeyHandle::from(obj))
    } else {
        let _ = ctx.tr_close(&mut obj.clone());
        None
    }
}

fn persistent_ek(ctx: &mut Context) -> Option<(KeyHandle, Public)> {
    let handle = PersistentTpmHandle::new(EK_RSA_PERSISTENT).ok()?;
    let obj = ctx
        .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(handle)))
        .ok()?;
    let key = KeyHandle::from(obj);
    // Only a restricted decryption key in the endorsement hierarchy is an EK.
    let (public, _, _) = ctx.read_public(key).ok()?;
    let attrs = public.object_attributes();
    (attrs.restricted() && attrs.decrypt() && !attrs.sign_encrypt()).then_some((key, public))
}

fn slots(indices: &[u8]) -> Result<Vec<PcrSlot>, AttestError> {
    indices
        .iter()
        .map(|i| {
            if *i >= 24 {
                return Err(AttestError::Invalid(format!(
                    "PCR {i} does not exist (0-23)"
                )));
            }
            PcrSlot::try_from(1u32 << i).map_err(AttestError::tpm("PCR slot"))
        })
        .collect()
}

/// NV certificate areas may be padded past the DER; keep the certificate.
fn trim_der(mut der: Vec<u8>) -> Vec<u8> {
    if der.len() >= 4 && der[0] == 0x30 && der[1] == 0x82 {
        let len = 4 + u16::from_be_bytes([der[2], der[3]]) as usize;
        der.truncate(len.min(der.len()));
    }
    der
}

/// The measured-boot event log the kernel exposes, when readable.
pub fn read_event_log(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|l| !l.is_empty())
}

pub fn default_event_log() -> PathBuf {
    PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements")
}
