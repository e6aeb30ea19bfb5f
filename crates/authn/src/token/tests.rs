use ed25519_dalek::Signer;
use jwt_simple::prelude::{
    Claims as JwtClaims, Ed25519KeyPair, EdDSAPublicKeyLike, HS256Key, MACLike,
};
use serde_json::{Value, json};

use super::*;
use crate::{generate_key_pair, keys::parse_signing_key};

const ISS: &str = "spinmesh";
const AUD: &str = "spinmesh-api";
const NOW: u64 = 1_750_000_000;
const TTL: u64 = 900;

struct Fixture {
    signing_key: String,
    issuer: Issuer,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let keys = generate_key_pair().unwrap();
    Fixture {
        issuer: Issuer::new(&keys.signing_key, ISS, AUD, TTL).unwrap(),
        verifier: Verifier::from_base64(&keys.public_key, ISS, AUD).unwrap(),
        signing_key: keys.signing_key,
    }
}

impl Fixture {
    fn token(&self) -> String {
        self.issuer
            .issue("42", "alice", &[Role::User], NOW)
            .unwrap()
            .token
    }

    fn kid(&self) -> &str {
        self.issuer.public_key().kid()
    }

    /// A token signed with our key over arbitrary header and payload JSON, to reach
    /// the checks that come after the signature.
    fn sign_raw(&self, header: &str, payload: &str) -> String {
        let signing = parse_signing_key(&self.signing_key).unwrap();
        let signed = format!("{}.{}", b64(header), b64(payload));
        let signature = signing.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn header(&self) -> String {
        json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid()}).to_string()
    }

    fn assert_invalid(&self, token: &str, reason: &'static str) {
        assert_eq!(
            self.verifier.verify(token, NOW),
            Err(Error::Invalid(reason)),
            "token: {token}"
        );
    }
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text.as_bytes())
}

fn valid_payload() -> Value {
    json!({
        "sub": "42", "username": "alice", "roles": ["user"], "iss": ISS, "aud": AUD,
        "iat": NOW, "nbf": NOW, "exp": NOW + TTL, "jti": "abc"
    })
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ---- round trips -------------------------------------------------------------------

#[test]
fn issued_token_verifies_with_typed_claims() {
    let f = fixture();
    let issued = f
        .issuer
        .issue("42", "alice", &[Role::User, Role::Admin], NOW)
        .unwrap();
    assert_eq!(issued.expires_at, NOW + TTL);
    assert_eq!(issued.expires_in, TTL);
    let claims = f.verifier.verify(&issued.token, NOW).unwrap();
    assert_eq!(
        claims,
        Claims {
            sub: "42".into(),
            username: "alice".into(),
            roles: vec![Role::User, Role::Admin],
            iss: ISS.into(),
            aud: AUD.into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + TTL,
            jti: issued.jti.clone(),
        }
    );
    assert!(claims.has_role(Role::Admin));
    assert_eq!(
        claims.require(Role::Service),
        Err(Error::Forbidden(Role::Service))
    );
}

#[test]
fn header_carries_alg_typ_and_kid() {
    let f = fixture();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(&f.token())[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "JWT", "kid": f.kid()})
    );
}

#[test]
fn token_ids_are_unique() {
    let f = fixture();
    let a = f.issuer.issue("42", "alice", &[], NOW).unwrap();
    let b = f.issuer.issue("42", "alice", &[], NOW).unwrap();
    assert_ne!(a.jti, b.jti);
    assert_ne!(a.token, b.token);
}

#[test]
fn token_signed_through_jwt_simple_api_verifies() {
    // Independent of `Issuer`: jwt-simple's own claim builder and clock.
    let key_pair = Ed25519KeyPair::generate();
    let public =
        PublicKey::from_base64(&URL_SAFE_NO_PAD.encode(key_pair.public_key().to_bytes())).unwrap();
    let key_pair = key_pair.with_key_id(public.kid());
    let claims = JwtClaims::with_custom_claims(
        json!({"username": "bob", "roles": ["service"]}),
        Duration::from_mins(5),
    )
    .with_issuer(ISS)
    .with_audience(AUD)
    .with_subject("svc-orders")
    .with_jwt_id("j1");
    let token = key_pair.sign(claims).unwrap();
    let verified = Verifier::new(public, ISS, AUD)
        .verify(&token, now_unix())
        .unwrap();
    assert_eq!(verified.sub, "svc-orders");
    assert_eq!(verified.roles, vec![Role::Service]);
}

#[test]
fn jwt_simple_accepts_our_tokens_too() {
    // Our tokens are standard: a third party using jwt-simple (or the JWKS) can verify them.
    let f = fixture();
    let public = jwt_simple::prelude::Ed25519PublicKey::from_bytes(
        &URL_SAFE_NO_PAD
            .decode(f.issuer.public_key().to_base64())
            .unwrap(),
    )
    .unwrap();
    let token = f
        .issuer
        .issue("42", "alice", &[Role::User], now_unix())
        .unwrap()
        .token;
    let claims = public.verify_token::<Value>(&token, None).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("42"));
    assert_eq!(claims.custom["roles"], json!(["user"]));
}

#[test]
fn audience_may_be_an_array() {
    let f = fixture();
    let mut payload = valid_payload();
    payload["aud"] = json!(["other", AUD]);
    let claims = f
        .verifier
        .verify(&f.sign_raw(&f.header(), &payload.to_string()), NOW)
        .unwrap();
    assert_eq!(claims.aud, AUD);
}

#[test]
fn header_without_kid_or_typ_is_accepted() {
    let f = fixture();
    let token = f.sign_raw(r#"{"alg":"EdDSA"}"#, &valid_payload().to_string());
    assert!(f.verifier.verify(&token, NOW).is_ok());
}

// ---- time --------------------------------------------------------------------------

#[test]
fn expiry_is_exact_without_leeway() {
    let f = fixture();
    let verifier = f.verifier.clone().with_leeway(0);
    let token = f.token();
    assert!(verifier.verify(&token, NOW + TTL - 1).is_ok());
    assert_eq!(verifier.verify(&token, NOW + TTL), Err(Error::Expired));
    assert_eq!(verifier.verify(&token, u64::MAX), Err(Error::Expired));
}

#[test]
fn leeway_is_clamped_to_sixty_seconds() {
    let f = fixture();
    let verifier = f.verifier.clone().with_leeway(3600);
    assert_eq!(verifier.leeway_secs(), 60);
    let token = f.token();
    assert!(verifier.verify(&token, NOW + TTL + 59).is_ok());
    assert_eq!(verifier.verify(&token, NOW + TTL + 60), Err(Error::Expired));
    assert_eq!(f.verifier.leeway_secs(), Verifier::DEFAULT_LEEWAY_SECS);
}

#[test]
fn not_yet_valid_token_is_invalid_not_expired() {
    let f = fixture();
    let verifier = f.verifier.clone().with_leeway(60);
    let token = f.token();
    assert!(verifier.verify(&token, NOW - 60).is_ok());
    assert_eq!(
        verifier.verify(&token, NOW - 61),
        Err(Error::Invalid("not yet valid"))
    );
}

#[test]
fn future_issued_at_is_rejected() {
    let f = fixture();
    let mut payload = valid_payload();
    payload["iat"] = json!(NOW + 3600);
    f.assert_invalid(
        &f.sign_raw(&f.header(), &payload.to_string()),
        "issued in the future",
    );
}

// ---- issuer, audience, claims --------------------------------------------------------

#[test]
fn wrong_issuer_or_audience_is_rejected() {
    let f = fixture();
    let token = f.token();
    let other_iss = Verifier::new(f.issuer.public_key().clone(), "someone-else", AUD);
    assert_eq!(
        other_iss.verify(&token, NOW),
        Err(Error::Invalid("wrong issuer"))
    );
    let other_aud = Verifier::new(f.issuer.public_key().clone(), ISS, "another-api");
    assert_eq!(
        other_aud.verify(&token, NOW),
        Err(Error::Invalid("wrong audience"))
    );
    // Wrong audience wins over expiry: an expired token for someone else is still not ours.
    assert_eq!(
        other_aud.verify(&token, NOW + 10 * TTL),
        Err(Error::Invalid("wrong audience"))
    );
}

#[test]
fn claims_with_wrong_shape_are_rejected_even_when_signed() {
    let f = fixture();
    let cases: Vec<(&str, Value)> = vec![
        ("roles", json!(["root"])),
        ("roles", json!("admin")),
        ("exp", json!("tomorrow")),
        ("exp", json!(-1)),
        ("exp", json!(1.5)),
        ("sub", json!(42)),
        ("aud", json!({"aud": AUD})),
    ];
    for (field, value) in cases {
        let mut payload = valid_payload();
        payload[field] = value;
        f.assert_invalid(
            &f.sign_raw(&f.header(), &payload.to_string()),
            "malformed claims",
        );
    }
    for field in [
        "sub", "username", "roles", "iss", "aud", "iat", "nbf", "exp", "jti",
    ] {
        let mut payload = valid_payload();
        payload.as_object_mut().unwrap().remove(field);
        f.assert_invalid(
            &f.sign_raw(&f.header(), &payload.to_string()),
            "malformed claims",
        );
    }
    f.assert_invalid(&f.sign_raw(&f.header(), "[]"), "malformed claims");
    f.assert_invalid(&f.sign_raw(&f.header(), "not json"), "malformed claims");
    let mut payload = valid_payload();
    payload["sub"] = json!("");
    f.assert_invalid(
        &f.sign_raw(&f.header(), &payload.to_string()),
        "empty subject or token id",
    );
}

// ---- algorithm and header ------------------------------------------------------------

#[test]
fn alg_none_is_rejected() {
    let f = fixture();
    let parts = segments(&f.token());
    let none_header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    f.assert_invalid(
        &format!("{none_header}.{}.", parts[1]),
        "unexpected algorithm",
    );
    f.assert_invalid(
        &format!("{none_header}.{}.{}", parts[1], parts[2]),
        "unexpected algorithm",
    );
    // Even with no signature segment at all.
    f.assert_invalid(
        &format!("{none_header}.{}", parts[1]),
        "token must have three segments",
    );
}

#[test]
fn hs256_with_public_key_as_secret_is_rejected() {
    // The classic confusion: a verifier that lets the token choose HMAC and feeds it the
    // public key as the secret would accept this forgery.
    let f = fixture();
    let public_b64 = f.issuer.public_key().to_base64();
    let raw_public = URL_SAFE_NO_PAD.decode(&public_b64).unwrap();
    for secret in [raw_public.as_slice(), public_b64.as_bytes()] {
        let claims = JwtClaims::with_custom_claims(
            json!({"username": "mallory", "roles": ["admin"]}),
            Duration::from_hours(1),
        )
        .with_issuer(ISS)
        .with_audience(AUD)
        .with_subject("1")
        .with_jwt_id("x");
        let forged = HS256Key::from_bytes(secret)
            .with_key_id(f.kid())
            .authenticate(claims)
            .unwrap();
        assert_eq!(
            f.verifier.verify(&forged, now_unix()),
            Err(Error::Invalid("unexpected algorithm"))
        );
    }
}

#[test]
fn only_the_exact_eddsa_alg_is_accepted() {
    let f = fixture();
    let payload = valid_payload().to_string();
    for alg in ["eddsa", "EDDSA", "Ed25519", "ES256", "RS256", "HS256", ""] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": f.kid()}).to_string();
        f.assert_invalid(&f.sign_raw(&header, &payload), "unexpected algorithm");
    }
    f.assert_invalid(
        &f.sign_raw(
            &format!(r#"{{"alg":["EdDSA"],"kid":"{}"}}"#, f.kid()),
            &payload,
        ),
        "malformed header",
    );
}

#[test]
fn unexpected_header_members_are_rejected() {
    let f = fixture();
    let payload = valid_payload().to_string();
    let kid = f.kid();
    let typ = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}).to_string();
    f.assert_invalid(&f.sign_raw(&typ, &payload), "unexpected token type");
    for header in [
        json!({"alg": "EdDSA", "kid": kid, "jwk": {"kty": "OKP"}}).to_string(),
        json!({"alg": "EdDSA", "kid": kid, "jku": "http://evil.example/jwks"}).to_string(),
        json!({"alg": "EdDSA", "kid": kid, "crit": ["exp"]}).to_string(),
        json!({"alg": "EdDSA", "kid": kid, "cty": "JWT"}).to_string(),
        format!(r#"{{"alg":"EdDSA","alg":"EdDSA","kid":"{kid}"}}"#),
        "[]".to_owned(),
        String::new(),
    ] {
        f.assert_invalid(&f.sign_raw(&header, &payload), "malformed header");
    }
}

// ---- keys ----------------------------------------------------------------------------

#[test]
fn token_signed_by_another_key_is_rejected() {
    let f = fixture();
    let other = fixture();
    // Another key with its own kid: we don't know that kid.
    f.assert_invalid(&other.token(), "unknown key id");
    // Another key claiming our kid, or naming none: the signature fails.
    let payload = valid_payload().to_string();
    f.assert_invalid(&other.sign_raw(&f.header(), &payload), "bad signature");
    f.assert_invalid(
        &other.sign_raw(r#"{"alg":"EdDSA"}"#, &payload),
        "bad signature",
    );
}

#[test]
fn wrong_kid_is_rejected() {
    let f = fixture();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "some-other-kid"}).to_string();
    f.assert_invalid(
        &f.sign_raw(&header, &valid_payload().to_string()),
        "unknown key id",
    );
}

#[test]
fn rotation_overlap_accepts_old_and_new_keys() {
    let old = fixture();
    let new = fixture();
    let verifier = new
        .verifier
        .clone()
        .with_key(old.issuer.public_key().clone());
    assert_eq!(verifier.keys().len(), 2);
    assert!(verifier.verify(&new.token(), NOW).is_ok());
    assert!(verifier.verify(&old.token(), NOW).is_ok());
    let old_no_kid = old.sign_raw(r#"{"alg":"EdDSA"}"#, &valid_payload().to_string());
    assert!(verifier.verify(&old_no_kid, NOW).is_ok());
    // Adding the same key twice does not duplicate it.
    assert_eq!(
        verifier
            .with_key(new.issuer.public_key().clone())
            .keys()
            .len(),
        2
    );
}

#[test]
fn issuer_rejects_bad_configuration() {
    assert!(matches!(
        Issuer::new("short", ISS, AUD, TTL),
        Err(Error::KeyConfig(_))
    ));
    let keys = generate_key_pair().unwrap();
    assert!(matches!(
        Issuer::new(&keys.signing_key, ISS, AUD, 0),
        Err(Error::KeyConfig(_))
    ));
    let issuer = Issuer::new(&keys.signing_key, ISS, AUD, TTL).unwrap();
    assert_eq!(issuer.public_key().to_base64(), keys.public_key);
    assert!(!format!("{issuer:?}").contains(&keys.signing_key));
}

// ---- tampering -----------------------------------------------------------------------

#[test]
fn tampered_payload_is_rejected() {
    let f = fixture();
    let parts = segments(&f.token());
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["admin"]);
    let forged = format!("{}.{}.{}", parts[0], b64(&payload.to_string()), parts[2]);
    f.assert_invalid(&forged, "bad signature");

    payload["roles"] = json!(["user"]);
    payload["exp"] = json!(NOW + 100 * TTL);
    let forged = format!("{}.{}.{}", parts[0], b64(&payload.to_string()), parts[2]);
    f.assert_invalid(&forged, "bad signature");
}

#[test]
fn tampered_header_is_rejected() {
    let f = fixture();
    let parts = segments(&f.token());
    // Same meaning, different bytes: the signature covers the bytes.
    let reordered = b64(&format!(
        r#"{{"kid":"{}","alg":"EdDSA","typ":"JWT"}}"#,
        f.kid()
    ));
    f.assert_invalid(
        &format!("{reordered}.{}.{}", parts[1], parts[2]),
        "bad signature",
    );
}

#[test]
fn tampered_signature_is_rejected() {
    let f = fixture();
    let parts = segments(&f.token());
    let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    signature[10] ^= 0x01;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    f.assert_invalid(&flipped, "bad signature");

    let truncated = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 2]
    );
    f.assert_invalid(&truncated, "malformed signature");
    let zeros = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    f.assert_invalid(&zeros, "bad signature");
    let long = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode([0u8; 65])
    );
    f.assert_invalid(&long, "malformed signature");
}

#[test]
fn non_canonical_base64_is_rejected() {
    let f = fixture();
    let token = f.token();
    let parts = segments(&token);
    // 64 bytes encode to 86 chars; the last char has 4 unused low bits. Setting one
    // yields a different string for the same bytes, which must not be accepted.
    let last = parts[2].chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    assert_eq!(index % 16, 0, "canonical encoding has zero trailing bits");
    let twin = alphabet.as_bytes()[index + 1] as char;
    let malleated = format!(
        "{}.{}.{}{twin}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 1]
    );
    f.assert_invalid(&malleated, "malformed signature");

    // Padding, standard-alphabet characters and garbage in each segment.
    f.assert_invalid(
        &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        "malformed header",
    );
    f.assert_invalid(
        &format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        "malformed signature",
    );
    f.assert_invalid(
        &format!("{}.{}.{}+/", parts[0], parts[1], &parts[2][..84]),
        "malformed signature",
    );
    f.assert_invalid(
        &format!("{}.{}.{}", parts[0], parts[1], "!!!"),
        "malformed signature",
    );
    f.assert_invalid(
        &format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
        "bad signature",
    );
    f.assert_invalid(&format!(" {token}"), "malformed header");
    f.assert_invalid(&format!("{token} "), "malformed signature");
}

#[test]
fn wrong_segment_count_is_rejected() {
    let f = fixture();
    let token = f.token();
    let parts = segments(&token);
    for bad in [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        parts[0].clone(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}."),
        format!("{token}.{}", parts[2]),
        format!(".{token}"),
    ] {
        let err = f.verifier.verify(&bad, NOW).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{bad:?}: {err:?}");
    }
    f.assert_invalid(&format!("{token}."), "token must have three segments");
}

#[test]
fn huge_token_is_rejected_before_decoding() {
    let f = fixture();
    let huge = format!("{}{}", f.token(), "A".repeat(Verifier::MAX_TOKEN_LEN));
    f.assert_invalid(&huge, "token too long");
    f.assert_invalid(&"x".repeat(Verifier::MAX_TOKEN_LEN + 1), "token too long");
    // A signed token just under the limit is still judged on its merits.
    let mut payload = valid_payload();
    payload["pad"] = json!("p".repeat(5000));
    let big = f.sign_raw(&f.header(), &payload.to_string());
    assert!(big.len() <= Verifier::MAX_TOKEN_LEN);
    assert!(f.verifier.verify(&big, NOW).is_ok());
}

#[test]
fn errors_do_not_echo_the_token() {
    let f = fixture();
    let token = f.token();
    let err = f.verifier.verify(&format!("{token}x"), NOW).unwrap_err();
    assert!(!err.to_string().contains(&token[..20]));
}

#[test]
fn verified_claims_can_be_rechecked_without_the_signature() {
    let f = fixture();
    let (claims, kid) = f.verifier.verify_keyed(&f.token(), NOW).unwrap();
    assert_eq!(kid, f.kid());
    assert_eq!(f.verifier.recheck(&claims, &kid, NOW + 10), Ok(()));
    // Expiry still applies (the leeway included), as does the key being trusted.
    let after = claims.exp + f.verifier.leeway_secs();
    assert_eq!(
        f.verifier.recheck(&claims, &kid, after),
        Err(Error::Expired)
    );
    let other = fixture();
    assert_eq!(
        other.verifier.recheck(&claims, &kid, NOW),
        Err(Error::Invalid("unknown key id"))
    );
    // A verifier for another audience does not take them either.
    let elsewhere = Verifier::new(f.issuer.public_key().clone(), ISS, "other-api");
    assert_eq!(
        elsewhere.recheck(&claims, &kid, NOW),
        Err(Error::Invalid("wrong issuer or audience"))
    );
}
