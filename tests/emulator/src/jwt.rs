//! RS256 registry tokens as GitLab issues them and a registry checks them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) struct Keys {
    signing: SigningKey<Sha256>,
    verifying: VerifyingKey<Sha256>,
    pub(crate) kid: String,
    pub(crate) public_pem: String,
    /// The PEM these keys came from, to notice a configuration change.
    pub(crate) source_pem: String,
    /// Tokens whose signature was already checked, with their claims. A
    /// signature's validity is a function of the token's bytes and the key
    /// alone, so remembering it changes no answer; it spares the RSA check
    /// (most of the emulator's CPU time) on every request of a run that
    /// presents the same token thousands of times. Time, issuer and
    /// audience are still checked per request by the caller.
    verified: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Claims>>>,
}

/// Enough for every token of a benchmark's shards; beyond it the cache starts over.
const VERIFIED_TOKENS_KEPT: usize = 4096;

impl Keys {
    pub(crate) fn from_pem(pem: &str) -> Result<Keys, String> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|err| format!("signing key is neither PKCS#8 nor PKCS#1 RSA PEM: {err}"))?;
        let public = private.to_public_key();
        let der = public
            .to_public_key_der()
            .map_err(|err| format!("cannot encode the public key: {err}"))?;
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| format!("cannot encode the public key: {err}"))?;
        Ok(Keys {
            kid: libtrust_key_id(der.as_bytes()),
            verifying: VerifyingKey::new(public),
            signing: SigningKey::new(private),
            public_pem,
            source_pem: pem.to_string(),
            verified: Default::default(),
        })
    }

    /// `header.payload.signature` with the `kid` header Distribution looks up.
    pub(crate) fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default())
        );
        let signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// Checks the signature (and that the header claims RS256) and returns the
    /// claims; time and audience checks are the caller's.
    pub(crate) fn verify(&self, token: &str) -> Result<std::sync::Arc<Claims>, String> {
        let known = self
            .verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(token).cloned());
        if let Some(claims) = known {
            return Ok(claims);
        }
        let claims = std::sync::Arc::new(self.verify_signature(token)?);
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_TOKENS_KEPT {
                cache.clear();
            }
            cache.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed token".to_string());
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or("malformed token header")?;
        if header.get("alg").and_then(|alg| alg.as_str()) != Some("RS256") {
            return Err("token is not RS256".to_string());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
            .ok_or("malformed token signature")?;
        let signing_input = &token[..header_payload_len(token)];
        self.verifying
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| "invalid token signature".to_string())?;
        URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| "malformed token claims".to_string())
    }
}

fn header_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub access: Vec<Access>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
    /// GitLab's `meta` (§7): project, and the tag rules that apply to this
    /// token (`tag_deny_access_patterns`, `tag_immutable_patterns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// The tag rules a registry token carries for one repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TokenRules {
    pub delete_deny: Vec<String>,
    pub immutable: Vec<String>,
}

impl Access {
    pub(crate) fn rules(&self) -> TokenRules {
        let strings = |value: Option<&serde_json::Value>| -> Vec<String> {
            value
                .and_then(|v| v.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let meta = self.meta.as_ref();
        TokenRules {
            delete_deny: strings(
                meta.and_then(|m| m.get("tag_deny_access_patterns"))
                    .and_then(|p| p.get("delete")),
            ),
            immutable: strings(meta.and_then(|m| m.get("tag_immutable_patterns"))),
        }
    }
}

/// The libtrust key id Docker Distribution derives from a key: SHA-256 of the DER
/// SubjectPublicKeyInfo, first 30 bytes, base32 without padding, `:` every 4
/// characters (`ABCD:EFGH:…`, 12 groups).
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let encoded = base32_no_pad(&hash[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 (standard alphabet), padding dropped.
fn base32_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors, padding removed.
        let cases = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, expected) in cases {
            assert_eq!(base32_no_pad(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn key_id_has_twelve_groups_of_four() {
        let kid = libtrust_key_id(b"anything");
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12, "{kid}");
        assert!(groups.iter().all(|group| group.len() == 4), "{kid}");
    }

    #[test]
    fn signed_token_verifies_and_tampering_is_detected() {
        let keys = Keys::from_pem(crate::DEFAULT_SIGNING_KEY_PEM).expect("test key parses");
        let claims = Claims {
            iss: "gitlab-issuer".into(),
            aud: "container_registry".into(),
            sub: "someone".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            jti: "x".into(),
            access: vec![],
        };
        let token = keys.sign(&claims);
        assert_eq!(*keys.verify(&token).expect("verifies"), claims);
        let mut forged = claims.clone();
        forged.access.push(Access {
            kind: "repository".into(),
            name: "group/project".into(),
            actions: vec!["delete".into()],
            meta: None,
        });
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert!(keys.verify(&parts.join(".")).is_err());
    }
}
