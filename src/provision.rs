//! Creating operators' keys and merchants: shared by the API, the CLI and the first start.
//!
//! Service layer: uses the store, the secrets' sealing and the key types; nothing of HTTP.

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, AuditId, MerchantId, RequestId, SecretId};
use crate::keys::{ApiToken, Mode, ScopeSet, TokenKind};
use crate::secrets::{Encryptor, SecretAad, SigningSecret};
use crate::store::{KeyKind, NewApiKey, NewAuditEvent, NewMerchant, NewSecret, Store, StoreResult};

/// Who asked for a change, for the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Actor {
    pub key_id: Option<ApiKeyId>,
    pub request_id: Option<RequestId>,
}

/// A key row about to be stored, and the token to show once.
pub fn new_key(
    kind: TokenKind,
    merchant_id: Option<MerchantId>,
    name: &str,
    scopes: ScopeSet,
    now: Timestamp,
) -> (NewApiKey, ApiToken) {
    let token = ApiToken::generate(kind);
    let key = NewApiKey {
        id: ApiKeyId::new(),
        merchant_id,
        kind: match kind {
            TokenKind::Merchant(mode) => KeyKind::Merchant(mode),
            TokenKind::Operator => KeyKind::Operator,
        },
        name: name.to_owned(),
        token_hash: token.hash(),
        display_prefix: token.display_prefix(),
        scopes,
        created_at: now,
    };
    (key, token)
}

/// Creates an operator key; the token is returned once.
pub async fn create_operator_key(
    store: &dyn Store,
    name: &str,
    actor: Actor,
    now: Timestamp,
) -> StoreResult<(NewApiKey, ApiToken)> {
    let (key, token) = new_key(TokenKind::Operator, None, name, ScopeSet::default(), now);
    let audit = NewAuditEvent {
        id: AuditId::new(),
        merchant_id: None,
        mode: None,
        actor_key_id: actor.key_id,
        action: "operator_key.create",
        target: key.id.to_string(),
        request_id: actor.request_id,
        details: serde_json::json!({ "name": name }),
        created_at: now,
    };
    store.insert_operator_key(&key, &audit).await?;
    Ok((key, token))
}

/// A secret row ready to insert: sealed for its own row, with its fingerprint.
pub fn seal_new_secret(
    encryptor: &Encryptor,
    secret: &SigningSecret,
    id: SecretId,
    merchant_id: MerchantId,
    mode: Mode,
    now: Timestamp,
) -> NewSecret {
    let aad = SecretAad {
        secret_id: id,
        merchant_id,
        mode,
    };
    NewSecret {
        id,
        mode,
        fingerprint: secret.fingerprint(),
        key_id: encryptor.key_id().to_owned(),
        ciphertext: encryptor.seal(secret, &aad),
        created_at: now,
    }
}

/// A new merchant with everything it starts with.
pub struct CreatedMerchant {
    pub merchant: NewMerchant,
    /// The first live and test keys, with their tokens (shown once).
    pub keys: Vec<(NewApiKey, ApiToken)>,
}

/// Creates a merchant, its first live and test API keys (all scopes) and its first active
/// signing secret per mode, in one transaction.
pub async fn create_merchant(
    store: &dyn Store,
    encryptor: &Encryptor,
    name: &str,
    actor: Actor,
    now: Timestamp,
) -> StoreResult<CreatedMerchant> {
    let id = MerchantId::new();
    let mut keys = Vec::new();
    let mut secrets = Vec::new();
    for mode in Mode::ALL {
        keys.push(new_key(
            TokenKind::Merchant(mode),
            Some(id),
            &format!("Default {mode} key"),
            ScopeSet::all(),
            now,
        ));
        secrets.push(seal_new_secret(
            encryptor,
            &SigningSecret::generate(),
            SecretId::new(),
            id,
            mode,
            now,
        ));
    }
    let merchant = NewMerchant {
        id,
        name: name.to_owned(),
        created_at: now,
        keys: keys.iter().map(|(key, _)| key.clone()).collect(),
        secrets,
    };
    let audit = NewAuditEvent {
        id: AuditId::new(),
        merchant_id: Some(id),
        mode: None,
        actor_key_id: actor.key_id,
        action: "merchant.create",
        target: id.to_string(),
        request_id: actor.request_id,
        details: serde_json::json!({
            "name": name,
            "api_keys": keys.iter().map(|(key, _)| key.id.to_string()).collect::<Vec<_>>(),
        }),
        created_at: now,
    };
    store.create_merchant(&merchant, &audit).await?;
    Ok(CreatedMerchant { merchant, keys })
}
