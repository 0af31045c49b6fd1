//! Route authentication: finding the bearer token in a request and checking
//! it, either against the configured opaque tokens or as a JWT.
//!
//! JWTs are verified with one kind of key, chosen by the route's settings:
//! an HS256 secret (`jwt_secret`), a public key in a PEM file
//! (`jwt_public_key`: RSA, EC P-256/P-384 or Ed25519) or a JWKS file (`jwks`,
//! the key picked by the token's `kid`). Only the algorithms of that key's
//! type are accepted, so a token cannot pick a weaker or different
//! algorithm (an HS256 token "signed" with a public RSA key fails). Key
//! files are read when the configuration is validated: a reload re-reads
//! them.
//!
//! Time claims are checked with a leeway for clock skew: `exp` (required),
//! `nbf` and `iat` (not in the future), and optionally the lifetime
//! `exp - iat`. `iss` and `aud` are checked when configured (and then
//! required); an `aud` is ignored when no audience is configured.
//!
//! The client is only told "invalid token"; the reason goes to the log.

use super::config::AuthConfig;
use super::policy::Grants;
use super::query::query_param;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::path::Path;

/// Why authentication failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token anywhere.
    Missing,
    /// A token that is not accepted; the reason is for the log only.
    Invalid(String),
}

/// Compare secrets without an early exit on the first different byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Find the token in a request's headers and query string (without `?`):
/// `Authorization: Bearer`, the cookie, or the query parameter.
pub fn find_token(auth: &AuthConfig, headers: &http::HeaderMap, query: &str) -> Option<String> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some((scheme, tok)) = v.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(tok.trim().to_owned());
            }
        }
    }
    if let Some(name) = &auth.cookie {
        for v in headers.get_all(http::header::COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            for pair in v.split(';') {
                if let Some((k, val)) = pair.trim().split_once('=') {
                    if k == name {
                        return Some(val.to_owned());
                    }
                }
            }
        }
    }
    query_param(query, &auth.query_param)
}

/// Check a token: one of the opaque tokens (full access) or a valid JWT.
pub fn check_token(auth: &AuthConfig, token: Option<&str>) -> Result<Grants, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    if auth
        .tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        return Ok(Grants::all());
    }
    let Some(jwt) = &auth.jwt else {
        return Err(AuthError::Invalid("not one of `auth.tokens`".into()));
    };
    let claims = jwt.verify(token).map_err(AuthError::Invalid)?;
    Ok(Grants {
        subscribe: Some(claims.subscribe),
        publish: Some(claims.publish),
        subject: claims.sub,
    })
}

/// The claims a route uses, and the time claims checked beyond what
/// `jsonwebtoken` checks.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    exp: Option<f64>,
}

/// Verification keys with the algorithms each may be used with.
enum Keys {
    /// One key (a secret or a PEM public key).
    One(DecodingKey, Vec<Algorithm>),
    /// A JWKS.
    Set(Vec<SetKey>),
}

/// A JWKS key: `(kid, key, algorithms)`.
type SetKey = (Option<String>, DecodingKey, Vec<Algorithm>);

/// A route's JWT settings, with the keys loaded.
pub struct JwtVerifier {
    keys: Keys,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    leeway: u64,
    /// Longest `exp - iat` accepted, in seconds.
    max_lifetime: Option<u64>,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::One(_, algs) => format!("one key for {algs:?}"),
            Keys::Set(set) => format!("{} JWKS keys", set.len()),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Where a route's JWT keys come from (exactly one).
pub enum KeySource<'a> {
    /// HS256 shared secret.
    Secret(&'a str),
    /// A PEM public key file.
    PemFile(&'a Path),
    /// A JWKS (JSON Web Key Set) file.
    JwksFile(&'a Path),
}

/// The checks besides the signature.
pub struct ClaimRules {
    /// Clock skew tolerated, seconds.
    pub leeway: u64,
    /// Longest `exp - iat`, seconds.
    pub max_lifetime: Option<u64>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must be in the token).
    pub audience: Option<Vec<String>>,
}

impl JwtVerifier {
    /// Load the keys (reading files) and keep the rules. Errors name the
    /// file and what is wrong with it, not the config key (the caller adds
    /// that).
    pub fn load(source: KeySource<'_>, rules: ClaimRules) -> Result<JwtVerifier, String> {
        let keys = match source {
            KeySource::Secret(s) => Keys::One(
                DecodingKey::from_secret(s.as_bytes()),
                vec![Algorithm::HS256],
            ),
            KeySource::PemFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let (key, algs) = pem_key(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
                Keys::One(key, algs)
            }
            KeySource::JwksFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Keys::Set(jwks_keys(&text).map_err(|e| format!("{}: {e}", path.display()))?)
            }
        };
        Ok(JwtVerifier {
            keys,
            leeway: rules.leeway,
            max_lifetime: rules.max_lifetime,
            issuer: rules.issuer,
            audience: rules.audience,
        })
    }

    /// The key and algorithms for a token with this `kid`.
    fn key_for(&self, kid: Option<&str>) -> Result<(&DecodingKey, &[Algorithm]), String> {
        match &self.keys {
            Keys::One(k, algs) => Ok((k, algs)),
            Keys::Set(set) => {
                let found = match kid {
                    Some(kid) => set.iter().find(|(id, _, _)| id.as_deref() == Some(kid)),
                    None if set.len() == 1 => set.first(),
                    None => None,
                };
                let (_, k, algs) = found.ok_or_else(|| match kid {
                    Some(kid) => format!("no key with kid {kid:?} in the JWKS"),
                    None => "the token has no kid and the JWKS has several keys".to_owned(),
                })?;
                Ok((k, algs))
            }
        }
    }

    /// Verify signature and claims; the error is the reason, for the log.
    fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("JWT header: {e}"))?;
        let (key, algs) = self.key_for(header.kid.as_deref())?;
        let mut v = Validation::new(algs[0]);
        v.algorithms = algs.to_vec();
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(a) => {
                v.set_audience(a);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| format!("JWT: {e}"))?
            .claims;
        let now = jsonwebtoken::get_current_timestamp() as f64;
        if let Some(iat) = claims.iat {
            if iat > now + self.leeway as f64 {
                return Err(format!(
                    "JWT: issued in the future (iat {iat}, now {now}, leeway {}s)",
                    self.leeway
                ));
            }
        }
        if let Some(max) = self.max_lifetime {
            let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
                return Err("JWT: no iat, required by `max_lifetime`".into());
            };
            if exp - iat > max as f64 {
                return Err(format!(
                    "JWT: lifetime exp - iat = {}s exceeds `max_lifetime` ({max}s)",
                    exp - iat
                ));
            }
        }
        Ok(claims)
    }
}

/// RSA keys may sign with PKCS#1 v1.5 or PSS.
const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A public key from PEM: Ed25519, EC or RSA, with its algorithms.
fn pem_key(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, vec![Algorithm::EdDSA]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        // The curve picks between these; a signature made for the other
        // one fails to verify.
        return Ok((k, vec![Algorithm::ES256, Algorithm::ES384]));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, RSA_ALGS.to_vec()));
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519 `PUBLIC KEY`)".into())
}

/// The keys of a JWKS document, each with the algorithms its type allows
/// (narrowed to its `alg` when given). Symmetric (`oct`) keys are refused:
/// a key set is for public keys.
fn jwks_keys(text: &str) -> Result<Vec<SetKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    let mut out = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let name = match &jwk.common.key_id {
            Some(kid) => format!("key {kid:?}"),
            None => format!("key {i}"),
        };
        let mut algs = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                ref c => return Err(format!("{name}: curve {c:?} is not supported")),
            },
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            AlgorithmParameters::OctetKey(_) => {
                return Err(format!(
                    "{name} is a symmetric (oct) key; use `jwt_secret` for HS256"
                ))
            }
        };
        if let Some(alg) = jwk.common.key_algorithm {
            let alg: Algorithm = alg
                .to_string()
                .parse()
                .map_err(|_| format!("{name}: alg {alg} cannot sign JWTs"))?;
            if !algs.contains(&alg) {
                return Err(format!("{name}: alg {alg:?} does not fit its key type"));
            }
            algs = vec![alg];
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{name}: {e}"))?;
        out.push((jwk.common.key_id.clone(), key, algs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules {
            leeway: 30,
            max_lifetime: None,
            issuer: None,
            audience: None,
        }
    }

    fn auth(jwt: Option<JwtVerifier>) -> AuthConfig {
        AuthConfig {
            tokens: vec!["opaque".into()],
            jwt: jwt.map(std::sync::Arc::new),
            cookie: None,
            query_param: "access_token".into(),
        }
    }

    #[test]
    fn jwt_grants_come_from_claims() {
        let jwt = JwtVerifier::load(KeySource::Secret("s3cret"), rules()).unwrap();
        let auth = auth(Some(jwt));
        let claims = serde_json::json!({"sub": "ann", "exp": 4_000_000_000u64, "subscribe": ["a"], "publish": []});
        let sign = |secret: &[u8]| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let g = check_token(&auth, Some(&sign(b"s3cret"))).unwrap();
        assert!(g.may_subscribe("a") && !g.may_subscribe("b") && !g.may_publish("a"));
        assert!(check_token(&auth, Some("opaque")).unwrap().may_publish("x"));
        assert_eq!(check_token(&auth, None).unwrap_err(), AuthError::Missing);
        assert!(matches!(
            check_token(&auth, Some(&sign(b"other"))),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn jwks_refuses_symmetric_keys_and_mismatched_alg() {
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}"#;
        let err = |text: &str| jwks_keys(text).err().unwrap_or_default();
        assert!(err(oct).contains("symmetric"));
        let ed = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"RS256"}]}"#;
        assert!(err(ed).contains("does not fit"), "{}", err(ed));
        assert!(jwks_keys(r#"{"keys":[]}"#).is_err());
    }

    #[test]
    fn pem_that_is_not_a_public_key_is_refused() {
        assert!(
            pem_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(pem_key(b"hello").is_err());
    }
}
