//! What every instance on one database must agree on, checked at start
//! before anything is signed or sealed: the key-encryption key (secrets and
//! software signing keys are sealed under it: a replica holding another
//! cannot open them) and, on a database shared by replicas, the token issuer
//! (a token from one replica must be accepted by a relying party that
//! discovered another). The first instance to start claims each value
//! (`Store::claim_setting`); a later one with another value is refused.

use cachet_keybroker::KeyEncryptionKey;
use cachet_store::Store;

use crate::config::Config;

/// Whether `config` names a database that several replicas share.
pub fn shared(config: &Config) -> bool {
    config.database_url.as_deref().is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// Refuse to start when this instance disagrees with the deployment.
pub async fn check(config: &Config, store: &dyn Store, kek: Option<&dyn KeyEncryptionKey>) -> Result<(), String> {
    let read = |e: cachet_store::StoreError| format!("the store: {e}");
    if let Some(kek) = kek {
        let mine = format!("{} {}", kek.kind(), kek.key_id());
        let held = store.claim_setting("kek", &mine).await.map_err(read)?;
        if held != mine {
            return Err(format!(
                "this database's secrets and signing keys are sealed under the key-encryption key {held}, but this \
                 server holds {mine}: give every replica the same KEK (the same key file, or the same HSM key) — or \
                 point this one at its own database"
            ));
        }
    }
    if shared(config) {
        let Some(issuer) = &config.issuer else {
            return Err("a shared database (--database-url postgres://…) serves several replicas, which must issue tokens \
                        under one name: set --issuer to the URL relying parties use, the same on every replica"
                .into());
        };
        let held = store.claim_setting("issuer", issuer).await.map_err(read)?;
        if held != *issuer {
            return Err(format!(
                "this deployment's tokens are issued as {held}, but this replica was started with --issuer {issuer}: \
                 give every replica the same --issuer (to rename the whole deployment, stop every replica and delete \
                 the row 'issuer' of the table 'deployment')"
            ));
        }
    }
    Ok(())
}
