//! The tokens auth issues: HS256 JWTs with `tokenID`, `userID` and `iat`, no expiry (they are
//! revoked instead). Verification accepts HS256 only, so `alg: none` and algorithm swaps fail.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "tokenID")]
    pub token_id: String,
    #[serde(rename = "userID")]
    pub user_id: String,
    pub iat: i64,
}

#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Jwt {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Deterministic: the same claims always give the same token, which is how a revoked token is
    /// rebuilt for its broadcast without storing bearer tokens in the database.
    pub fn issue(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// The claims of a token whose HS256 signature verifies; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn claims() -> Claims {
        Claims {
            token_id: "t1".into(),
            user_id: "u1".into(),
            iat: 1_700_000_000,
        }
    }

    #[test]
    fn issued_tokens_verify_and_reissue_identically() {
        let jwt = Jwt::new("a-secret-of-at-least-thirty-two-bytes!");
        let token = jwt.issue(&claims());
        assert_eq!(jwt.verify(&token), Some(claims()));
        assert_eq!(jwt.issue(&claims()), token);
    }

    #[test]
    fn claims_use_the_contract_names() {
        let json = serde_json::to_value(claims()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"tokenID": "t1", "userID": "u1", "iat": 1_700_000_000})
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = Jwt::new("another-secret-of-thirty-two-bytes!!").issue(&claims());
        assert_eq!(
            Jwt::new("a-secret-of-at-least-thirty-two-bytes!").verify(&token),
            None
        );
    }

    #[test]
    fn alg_none_and_edited_claims_are_refused() {
        let jwt = Jwt::new("a-secret-of-at-least-thirty-two-bytes!");
        let token = jwt.issue(&claims());
        let [_, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(jwt.verify(&format!("{none}.{payload}.")), None);
        let edited = URL_SAFE_NO_PAD.encode(br#"{"tokenID":"t1","userID":"admin","iat":1}"#);
        let header = token.split('.').next().unwrap();
        assert_eq!(jwt.verify(&format!("{header}.{edited}.{signature}")), None);
    }
}
