//! Named API tokens with roles: created with a secret shown once, stored only as its SHA-256
//! in the pool's metadata (table `api-tokens`, one row per name), listed and revoked.
//!
//! Secrets are 256 random bits, so a plain hash is enough: nothing is gained by a slow
//! password hash against guessing. The daemon's `--token-file` token (the bootstrap token,
//! never stored) is an admin token named `bootstrap`. Once any token exists, every request
//! needs one.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arca_store::Pool;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parking_lot::RwLock;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::roles::Role;
use crate::server::{ApiJson, ApiPath, St, blocking};

const TABLE: &str = "api-tokens";
/// The name the bootstrap token acts under (never a stored token's name).
pub const BOOTSTRAP: &str = "bootstrap";
const NAME_MAX: usize = 64;
/// Secrets start with this, so a leaked one is recognisable in a scan for secrets.
const SECRET_PREFIX: &str = "arca_";

/// Who made a request: the token's name and role (`anonymous` admin when the API needs no
/// token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }
}

/// A stored token: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    role: Role,
    /// SHA-256 of the secret, hex.
    hash: String,
    created_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// When it was created (UTC, RFC 3339).
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 of A-Z a-z 0-9 . _ -
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: Role,
    /// The bearer token. Shown only in this answer: the daemon keeps only its hash.
    #[schema(example = "arca_<64 hex digits>")]
    pub secret: String,
}

fn sha256_hex(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every row of the table: (name, record).
fn rows(pool: &Pool) -> arca_store::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    pool.app_scan(TABLE, Bound::Unbounded, Bound::Unbounded, false, |k, v| {
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
        true
    })?;
    Ok(out)
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token store: the table, and in memory the callers by hash (updated with the table).
pub struct Tokens {
    pool: Pool,
    bootstrap: Option<String>,
    by_hash: RwLock<HashMap<String, Caller>>,
}

impl Tokens {
    /// Loads the stored tokens; `bootstrap` is the daemon's own admin token, if any.
    pub fn open(pool: Pool, bootstrap: Option<String>) -> arca_store::Result<Tokens> {
        let mut by_hash = HashMap::new();
        for (name, value) in rows(&pool)? {
            // A row that does not decode grants nothing; it is reported, not fatal.
            match serde_json::from_slice::<Stored>(&value) {
                Ok(s) => {
                    by_hash.insert(s.hash, Caller { name, role: s.role });
                }
                Err(e) => tracing::error!(token = %name, "ignoring an unreadable token: {e}"),
            }
        }
        Ok(Tokens {
            pool,
            bootstrap,
            by_hash: RwLock::new(by_hash),
        })
    }

    /// Whether requests must carry a token.
    pub fn required(&self) -> bool {
        self.bootstrap.is_some() || !self.by_hash.read().is_empty()
    }

    /// The caller a presented bearer token stands for.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        if let Some(b) = &self.bootstrap
            && same_secret(presented.as_bytes(), b.as_bytes())
        {
            return Some(Caller {
                name: BOOTSTRAP.into(),
                role: Role::Admin,
            });
        }
        self.by_hash.read().get(&sha256_hex(presented)).cloned()
    }

    fn create(&self, name: &str, role: Role) -> Result<String, ApiError> {
        let valid = !name.is_empty()
            && name.len() <= NAME_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid || name == BOOTSTRAP {
            return Err(ApiError::invalid(format!(
                "invalid token name {name:?}: 1 to {NAME_MAX} of A-Z a-z 0-9 . _ - \
                 (and not {BOOTSTRAP:?})"
            )));
        }
        let mut random = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| ApiError::internal("no randomness for a new token"))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let secret = format!("{SECRET_PREFIX}{hex}");
        let stored = Stored {
            role,
            hash: sha256_hex(&secret),
            created_unix: now_unix(),
        };
        // The lock orders the existence check and the write against other changes.
        let mut by_hash = self.by_hash.write();
        if by_hash.values().any(|c| c.name == name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("a token named {name:?} exists (revoke it first)"),
            ));
        }
        let mut t = self.pool.transaction();
        let value = serde_json::to_vec(&stored).expect("a token record serializes");
        t.put(TABLE, name.as_bytes().to_vec(), value);
        t.commit()?;
        by_hash.insert(
            stored.hash,
            Caller {
                name: name.to_string(),
                role,
            },
        );
        Ok(secret)
    }

    fn list(&self) -> Result<Vec<TokenInfo>, ApiError> {
        let mut out = Vec::new();
        for (name, value) in rows(&self.pool)? {
            if let Ok(s) = serde_json::from_slice::<Stored>(&value) {
                out.push(TokenInfo {
                    name,
                    role: s.role,
                    created: arca_backup::time::format_secs(s.created_unix),
                });
            }
        }
        Ok(out)
    }

    fn revoke(&self, name: &str) -> Result<(), ApiError> {
        let mut by_hash = self.by_hash.write();
        let Some(hash) = by_hash
            .iter()
            .find(|(_, c)| c.name == name)
            .map(|(h, _)| h.clone())
        else {
            return Err(ApiError::not_found(format!("no token named {name:?}")));
        };
        let mut t = self.pool.transaction();
        t.delete(TABLE, name.as_bytes().to_vec());
        t.commit()?;
        by_hash.remove(&hash);
        Ok(())
    }
}

/// Creates a token; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 409, body = crate::types::ErrorBody),
              (status = 422, body = crate::types::ErrorBody)))]
pub(crate) async fn create_token(
    State(s): St,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let secret = blocking({
        let (s, name) = (s.clone(), req.name.clone());
        move || s.tokens.create(&name, req.role)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: req.name,
            role: req.role,
            secret,
        }),
    ))
}

/// The stored tokens (names and roles, never secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>)))]
pub(crate) async fn list_tokens(State(s): St) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(blocking(move || s.tokens.list()).await?))
}

/// Revokes a token: requests with it are refused from now on.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::types::ErrorBody)))]
pub(crate) async fn revoke_token(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || s.tokens.revoke(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{name}", delete(revoke_token))
}

#[derive(OpenApi)]
#[openapi(
    paths(create_token, list_tokens, revoke_token),
    components(schemas(Role, TokenInfo, CreateToken, CreatedToken))
)]
pub struct TokensDoc;
