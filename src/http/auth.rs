//! Bearer tokens. Values are resolved once when the server starts and kept
//! only as SHA-256 digests; a request's token is hashed and compared with
//! every configured digest in constant time, so neither logs nor timing say
//! anything about a token.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::config::{RateLimit, Scope, TokenSettings};
use super::problem::Problem;
use super::rate::Limiter;

struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The configured tokens, ready to check requests against, and each
/// token's rate limit.
pub struct Tokens(Vec<Token>, Limiter);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|t| format!("{} (redacted)", t.name)))
            .finish()
    }
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Reads every token's value; a missing one names the token, never its value.
    pub async fn resolve(settings: &[TokenSettings], rate: RateLimit) -> anyhow::Result<Tokens> {
        let mut tokens = Vec::new();
        for t in settings {
            let value = t.secret.resolve().await.map_err(|e| {
                anyhow::anyhow!(
                    "http token `{}` ({:?}) is not available: {e}",
                    t.name,
                    t.secret
                )
            })?;
            tokens.push(Token {
                name: t.name.clone(),
                digest: digest(value.as_bytes()),
                scopes: t.scopes.clone(),
            });
        }
        Ok(Tokens(tokens, Limiter::new(rate, "token")))
    }

    /// The name of the token that authorises `scope`: 401 without a known
    /// token, 403 with one that lacks the scope, 429 over its rate limit.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<&str, Problem> {
        let unauthorized = |detail: &str| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                detail.to_string(),
            )
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"driftwatch\"")
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`"))?;
        let t = self
            .find(presented)
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        if t.allows(scope) {
            self.1.check(&t.name)?;
            Ok(&t.name)
        } else {
            Err(missing_scope(scope))
        }
    }

    /// The configured token whose value is `presented`.
    fn find(&self, presented: &str) -> Option<&Token> {
        let d = digest(presented.as_bytes());
        // Compare against every token so the time taken does not depend on which matched.
        let mut found = None;
        for t in &self.0 {
            if same(&t.digest, &d) {
                found = Some(t);
            }
        }
        found
    }

    /// The name of the token whose value is `presented` (the dashboard's sign-in form).
    pub fn name_of(&self, presented: &str) -> Option<&str> {
        self.find(presented).map(|t| t.name.as_str())
    }

    /// Whether the token named `name` is still configured and allows `scope`:
    /// a dashboard session holds a token's name, and its scopes are the
    /// config's at each request.
    pub fn named_allows(&self, name: &str, scope: Scope) -> Option<bool> {
        self.0
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.allows(scope))
    }
}

impl Token {
    fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// 403 for a known caller without `scope`.
pub fn missing_scope(scope: Scope) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Missing scope",
        format!("this token lacks the `{}` scope", scope.as_str()),
    )
}
