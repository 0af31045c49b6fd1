//! `tether serve` authentication: JWT validation (time claims, issuer,
//! audience, lifetime, asymmetric keys) and what a refused client is told.

use serde_json::{json, Value};
use test_support::jwt::now;
use test_support::serve::{upgrade_raw, Server};

const SECRET: &[u8] = b"jwt-secret";

fn hs256(claims: &Value) -> String {
    test_support::jwt::hs256(SECRET, claims)
}

/// The status of an upgrade to `path` with this bearer token (and the body
/// when refused).
fn try_token(server: &Server, path: &str, token: &str) -> (u16, String) {
    upgrade_raw(
        server.addr,
        &server.addr.to_string(),
        path,
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

const HS_CONFIG: &str = r#"
[[route]]
path = "/plain"
kind = "echo"
auth = { jwt_secret = "jwt-secret" }

[[route]]
path = "/strict"
kind = "echo"
auth = { jwt_secret = "jwt-secret", issuer = "https://idp.example", audience = ["tether"], leeway = "5s", max_lifetime = "1h" }
"#;

#[test]
fn tokens_not_yet_valid_are_refused() {
    let server = Server::with_config(HS_CONFIG);
    let t = now();
    let future_nbf = hs256(&json!({"exp": t + 600, "nbf": t + 300}));
    assert_eq!(try_token(&server, "/plain", &future_nbf).0, 401);
    let future_iat = hs256(&json!({"exp": t + 600, "iat": t + 300}));
    assert_eq!(try_token(&server, "/plain", &future_iat).0, 401);
    // Within the default leeway (30s) a skewed clock is tolerated.
    let skewed = hs256(&json!({"exp": t + 600, "iat": t + 10, "nbf": t + 10}));
    assert_eq!(try_token(&server, "/plain", &skewed).0, 101);
}

#[test]
fn issuer_audience_and_lifetime_are_checked_when_configured() {
    let server = Server::with_config(HS_CONFIG);
    let t = now();
    let ok = json!({"exp": t + 600, "iat": t, "iss": "https://idp.example", "aud": "tether"});
    assert_eq!(try_token(&server, "/strict", &hs256(&ok)).0, 101);
    let mut list_aud = ok.clone();
    list_aud["aud"] = json!(["other", "tether"]);
    assert_eq!(try_token(&server, "/strict", &hs256(&list_aud)).0, 101);
    for (key, bad) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("other")),
        ("exp", json!(t + 7200)),
    ] {
        let mut claims = ok.clone();
        claims[key] = bad;
        assert_eq!(
            try_token(&server, "/strict", &hs256(&claims)).0,
            401,
            "{claims}"
        );
    }
    for missing in ["iss", "aud", "iat"] {
        let mut claims = ok.clone();
        claims.as_object_mut().unwrap().remove(missing);
        assert_eq!(
            try_token(&server, "/strict", &hs256(&claims)).0,
            401,
            "{claims}"
        );
    }
}

#[test]
fn an_audience_claim_is_accepted_when_no_audience_is_configured() {
    let server = Server::with_config(HS_CONFIG);
    let token = hs256(&json!({"exp": now() + 600, "aud": "anything"}));
    assert_eq!(try_token(&server, "/plain", &token).0, 101);
}

#[test]
fn the_client_is_not_told_why_its_token_failed_but_the_log_says() {
    let server = Server::with_config(HS_CONFIG);
    let expired = hs256(&json!({"exp": 1000, "sub": "old\u{1b}[31m"}));
    let (status, body) = try_token(&server, "/plain", &expired);
    assert_eq!(status, 401);
    assert_eq!(body.trim(), "invalid token");
    let (status, body) = try_token(&server, "/plain", "not.a.jwt");
    assert_eq!((status, body.trim()), (401, "invalid token"));
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("ExpiredSignature")
    ));
}

/// A route verifying JWTs with `key_setting = "FILE"` (a file in the
/// server's directory written by the test).
fn server_with_key(key_setting: &str, file: &str, contents: &str) -> Server {
    let toml = format!(
        "[[route]]\npath = \"/k\"\nkind = \"echo\"\nauth = {{ {key_setting} = \"$DIR/{file}\" }}\n"
    );
    let contents = contents.to_owned();
    let file = file.to_owned();
    Server::with_setup(&toml, &[], move |dir| {
        std::fs::write(dir.join(file), contents).unwrap()
    })
}

fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"exp": now() + 600, "iat": now(), "sub": "ann"});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn es256_tokens_verify_with_a_pem_public_key() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server = server_with_key("jwt_public_key", "ec.pem", &pair.public_key_pem());
    let enc = |p: &rcgen::KeyPair| {
        jsonwebtoken::EncodingKey::from_ec_pem(p.serialize_pem().as_bytes()).unwrap()
    };
    let good = sign(jsonwebtoken::Algorithm::ES256, None, &enc(&pair));
    assert_eq!(try_token(&server, "/k", &good).0, 101);
    let forged = sign(jsonwebtoken::Algorithm::ES256, None, &enc(&other));
    assert_eq!(try_token(&server, "/k", &forged).0, 401);
    // Algorithm confusion: the public key used as an HMAC secret.
    let hs = jsonwebtoken::EncodingKey::from_secret(pair.public_key_pem().as_bytes());
    let confused = sign(jsonwebtoken::Algorithm::HS256, None, &hs);
    assert_eq!(try_token(&server, "/k", &confused).0, 401);
}

#[test]
fn rs256_tokens_verify_with_a_pem_public_key_and_hs256_with_it_fails() {
    let private = include_str!("fixtures/jwt-rsa-test-key.pem");
    let public = include_str!("fixtures/jwt-rsa-test-pub.pem");
    let server = server_with_key("jwt_public_key", "rsa.pem", public);
    let rsa = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let good = sign(jsonwebtoken::Algorithm::RS256, None, &rsa);
    assert_eq!(try_token(&server, "/k", &good).0, 101);
    let hs = jsonwebtoken::EncodingKey::from_secret(public.as_bytes());
    let confused = sign(jsonwebtoken::Algorithm::HS256, None, &hs);
    assert_eq!(try_token(&server, "/k", &confused).0, 401);
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("InvalidAlgorithm")
    ));
}

#[test]
fn eddsa_and_es256_keys_from_a_jwks_are_chosen_by_kid() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // An uncompressed P-256 point: 0x04, x, y.
    let point = ec.public_key_raw();
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64url(ed.public_key_raw())},
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
         "x": b64url(&point[1..33]), "y": b64url(&point[33..])},
    ]});
    let server = server_with_key("jwks", "keys.json", &jwks.to_string());
    let ed_key = jsonwebtoken::EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    let ec_key = jsonwebtoken::EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let eddsa = jsonwebtoken::Algorithm::EdDSA;
    let es256 = jsonwebtoken::Algorithm::ES256;
    assert_eq!(
        try_token(&server, "/k", &sign(eddsa, Some("ed-1"), &ed_key)).0,
        101
    );
    assert_eq!(
        try_token(&server, "/k", &sign(es256, Some("ec-1"), &ec_key)).0,
        101
    );
    // The wrong key for the kid, an unknown kid, no kid among several keys.
    assert_eq!(
        try_token(&server, "/k", &sign(es256, Some("ed-1"), &ec_key)).0,
        401
    );
    assert_eq!(
        try_token(&server, "/k", &sign(eddsa, Some("nope"), &ed_key)).0,
        401
    );
    assert_eq!(try_token(&server, "/k", &sign(eddsa, None, &ed_key)).0, 401);
}

#[test]
fn cookie_auth_open_to_every_origin_is_warned_about_at_startup() {
    let server = Server::with_config(
        "[[route]]\npath = \"/c\"\nkind = \"echo\"\norigins = [\"*\"]\nauth = { tokens = [\"t\"], cookie = \"session\" }\n\
         [[route]]\npath = \"/h\"\nkind = \"echo\"\norigins = [\"*\"]\nauth = { tokens = [\"t\"] }\n",
    );
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("route[0] (/c)")
    ));
    let log = server.log();
    assert!(log.contains("cross-site WebSocket hijacking"), "{log}");
    assert!(!log.contains("route[1] (/h)"), "{log}");
}

#[test]
fn the_demo_publish_token_is_not_written_to_the_log() {
    let server = Server::with_args(&["--publish-token", "known-secret-4711"]);
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("/api/publish")
    ));
    let log = server.log();
    assert!(!log.contains("known-secret-4711"), "{log}");
    // A random one is not logged either (stdout is not a terminal here):
    // the log says how to choose one instead.
    let server = Server::with_args(&[]);
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("TETHER_PUBLISH_TOKEN")
    ));
    let log = server.log();
    assert!(
        !log.split(|c: char| !c.is_ascii_hexdigit())
            .any(|w| w.len() == 32),
        "{log}"
    );
}

#[test]
fn a_refused_host_or_origin_is_logged_with_the_setting_that_would_allow_it() {
    let server = Server::with_config(
        "[[route]]\npath = \"/same\"\nkind = \"echo\"\n\
         [[route]]\npath = \"/listed\"\nkind = \"echo\"\norigins = [\"https://app.example\"]\n",
    );
    let host = server.addr.to_string();
    assert_eq!(upgrade_raw(server.addr, "evil.example", "/same", "").0, 421);
    let (status, _) = upgrade_raw(
        server.addr,
        &host,
        "/same",
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(status, 403);
    let (status, _) = upgrade_raw(
        server.addr,
        &host,
        "/listed",
        "Origin: https://a.example\r\n",
    );
    assert_eq!(status, 403);
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(5),
        || server.log().contains("https://a.example")
    ));
    let log = server.log();
    assert!(
        log.contains(r#"Host "evil.example" not allowed by listen[0] (loopback names only: localhost, 127.0.0.1, [::1]); add "evil.example" to listen[0].allowed_hosts"#),
        "{log}"
    );
    assert!(
        log.contains(&format!(r#"Origin "http://evil.example" is not the origin of Host "{host}" (route[0] (/same) allows the same origin only)"#)),
        "{log}"
    );
    assert!(
        log.contains(r#"Origin "https://a.example" not in route[1] (/listed) origins ["https://app.example"]"#),
        "{log}"
    );
}

#[test]
fn tether_connect_shows_why_the_handshake_was_refused() {
    let server = Server::with_config(
        "[[route]]\npath = \"/private\"\nkind = \"echo\"\nauth = { tokens = [\"t\"] }\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &server.ws_url("/private")])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("authentication required"), "{stderr}");
}

#[test]
fn a_reload_reads_the_key_file_again() {
    let old = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let new = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwks = |pair: &rcgen::KeyPair, kid: &str| {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(pair.public_key_raw())}]})
            .to_string()
    };
    let server = server_with_key("jwks", "keys.json", &jwks(&old, "old"));
    let enc = |p: &rcgen::KeyPair| {
        jsonwebtoken::EncodingKey::from_ed_pem(p.serialize_pem().as_bytes()).unwrap()
    };
    let eddsa = jsonwebtoken::Algorithm::EdDSA;
    let old_token = sign(eddsa, Some("old"), &enc(&old));
    let new_token = sign(eddsa, Some("new"), &enc(&new));
    assert_eq!(try_token(&server, "/k", &old_token).0, 101);
    assert_eq!(try_token(&server, "/k", &new_token).0, 401);
    // The key is rotated on disk; SIGHUP makes the server read it.
    std::fs::write(server.dir.path().join("keys.json"), jwks(&new, "new")).unwrap();
    server.signal("HUP");
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(10),
        || server.log().contains("configuration reloaded")
    ));
    assert_eq!(try_token(&server, "/k", &new_token).0, 101);
    assert_eq!(try_token(&server, "/k", &old_token).0, 401);
}
