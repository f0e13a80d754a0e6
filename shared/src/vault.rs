//! The token vault: Stripe tokens sealed with AES-256-GCM under a KMS data key (envelope
//! encryption), bound to the tenant by the encryption context `{workspace_id, account_id}`.
//!
//! A sealed token copied to another tenant's record does not open: KMS refuses to decrypt the data
//! key under a different context, and the context is also the AES-GCM associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::secrets::Secret;
use crate::stripe::client::AccountCredential;

#[derive(Debug, Error)]
pub enum VaultError {
    /// KMS refused or failed (throttling, network, a disabled key). Its messages never hold
    /// key material or tokens.
    #[error("the key service refused or failed: {}", aws_sdk_kms::error::DisplayErrorContext(.0.as_ref()))]
    Kms(#[source] Box<aws_sdk_kms::Error>),
    #[error("the sealed token does not open under this workspace and account")]
    WrongContext,
    #[error("the sealed token is damaged")]
    Corrupt,
    #[error("the connection holds no token (erased on disconnect or revocation)")]
    Missing,
}

/// What is stored: the KMS-encrypted data key, the nonce and the AES-GCM ciphertext, base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedToken {
    pub key: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The tenant a token belongs to; becomes the KMS encryption context.
#[derive(Debug, Clone, Copy)]
pub struct TokenOwner<'a> {
    pub workspace_id: &'a str,
    pub account_id: &'a str,
}

/// What the vault needs of a stored grant to open its token: whose it is, the sealed token (none
/// once erased) and the mode it reads. The store's connection row implements it, so the vault
/// never depends on how a connection is stored.
pub trait SealedGrant {
    fn owner(&self) -> TokenOwner<'_>;
    fn sealed_token(&self) -> Option<&SealedToken>;
    fn livemode(&self) -> bool;
}

impl TokenOwner<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "workspace_id={};account_id={}",
            self.workspace_id, self.account_id
        )
        .into_bytes()
    }
}

fn kms(e: impl Into<aws_sdk_kms::Error>) -> VaultError {
    VaultError::Kms(Box::new(e.into()))
}

#[derive(Clone, Debug)]
pub struct Vault {
    kms: aws_sdk_kms::Client,
    key_id: String,
}

impl Vault {
    pub fn new(kms: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            kms,
            key_id: key_id.into(),
        }
    }

    pub async fn seal(
        &self,
        owner: TokenOwner<'_>,
        token: &Secret,
    ) -> Result<SealedToken, VaultError> {
        let out = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .encryption_context("workspace_id", owner.workspace_id)
            .encryption_context("account_id", owner.account_id)
            .send()
            .await
            .map_err(kms)?;
        let plaintext_key = out.plaintext().ok_or(VaultError::Corrupt)?.as_ref();
        let encrypted_key = out.ciphertext_blob().ok_or(VaultError::Corrupt)?.as_ref();
        let cipher = Aes256Gcm::new_from_slice(plaintext_key).map_err(|_| VaultError::Corrupt)?;
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: &owner.aad(),
                },
            )
            .map_err(|_| VaultError::Corrupt)?;
        Ok(SealedToken {
            key: B64.encode(encrypted_key),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        })
    }

    /// The grant's Stripe credential, its token opened under the grant's own tenant.
    pub async fn credential(
        &self,
        grant: &impl SealedGrant,
    ) -> Result<AccountCredential, VaultError> {
        let sealed = grant.sealed_token().ok_or(VaultError::Missing)?;
        let owner = grant.owner();
        let access_token = self.open(owner, sealed).await?;
        Ok(AccountCredential {
            account_id: owner.account_id.to_string(),
            access_token,
            livemode: grant.livemode(),
        })
    }

    pub async fn open(
        &self,
        owner: TokenOwner<'_>,
        sealed: &SealedToken,
    ) -> Result<Secret, VaultError> {
        let encrypted_key = B64.decode(&sealed.key).map_err(|_| VaultError::Corrupt)?;
        let nonce = B64.decode(&sealed.nonce).map_err(|_| VaultError::Corrupt)?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Corrupt)?;
        if nonce.len() != 12 {
            return Err(VaultError::Corrupt);
        }
        let out = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(encrypted_key))
            .encryption_context("workspace_id", owner.workspace_id)
            .encryption_context("account_id", owner.account_id)
            .send()
            .await
            .map_err(|e| {
                let service = e
                    .as_service_error()
                    .map(|s| s.is_invalid_ciphertext_exception())
                    .unwrap_or(false);
                if service {
                    VaultError::WrongContext
                } else {
                    kms(e)
                }
            })?;
        let key = out.plaintext().ok_or(VaultError::Corrupt)?.as_ref();
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| VaultError::Corrupt)?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &owner.aad(),
                },
            )
            .map_err(|_| VaultError::WrongContext)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| VaultError::Corrupt)
    }
}
