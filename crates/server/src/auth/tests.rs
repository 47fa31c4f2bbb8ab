use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry::cluster::{ClusterId, WorkspacePath};
use serde_json::json;

use super::*;

fn ws(p: &str) -> WorkspacePath {
    WorkspacePath::parse(p).unwrap()
}

fn id(s: &str) -> ClusterId {
    ClusterId::parse(s).unwrap()
}

fn service(dir: &std::path::Path) -> TokenService {
    TokenService::new(
        TokenKeys::load_or_create(dir).unwrap(),
        TokenConfig::default(),
    )
}

fn scope(patterns: &[&str]) -> WorkspaceScope {
    WorkspaceScope::parse(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn user_token(svc: &TokenService, patterns: &[&str]) -> String {
    svc.issue_user_token(&UserTokenRequest {
        name: "alice".into(),
        uid: Some("u-1".into()),
        groups: vec!["dev".into()],
        workspaces: scope(patterns),
        lifetime: Duration::from_secs(3600),
    })
    .unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn signing_key_is_created_once_and_rotation_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TokenKeys::load_or_create(dir.path()).unwrap();
    let key_file = dir.path().join("pki").join(keys::SIGNING_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = TokenKeys::load_or_create(dir.path()).unwrap();
    assert_eq!(keys.signing_kid(), again.signing_kid());
    assert!(!format!("{keys:?}").contains("PRIVATE"));

    let old = TokenService::new(keys.clone(), TokenConfig::default());
    let old_token = user_token(&old, &["acme"]);

    let rotated = TokenKeys::rotate(dir.path()).unwrap();
    assert_ne!(rotated.signing_kid(), keys.signing_kid());
    assert!(rotated.verification_kids().any(|k| k == keys.signing_kid()));
    // A restart after rotation still accepts tokens of the old key.
    let svc = service(dir.path());
    assert_eq!(svc.keys().signing_kid(), rotated.signing_kid());
    assert_eq!(svc.verify(&old_token).unwrap().name, "alice");
    let new_token = user_token(&svc, &["acme"]);
    assert!(svc.verify(&new_token).is_ok());
    // The old key alone does not accept new tokens.
    assert_eq!(old.verify(&new_token), Err(AuthError::Invalid));
    // Dropping the old public key stops accepting its tokens.
    for e in std::fs::read_dir(dir.path().join("pki").join(keys::VERIFICATION_DIR)).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(
        service(dir.path()).verify(&old_token),
        Err(AuthError::Invalid)
    );
}

#[test]
fn valid_user_token() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let auth = Authenticator::new(svc.clone(), vec![]);
    let token = user_token(&svc, &["acme", "beta:*"]);
    let user = auth.authenticate(Some(&bearer(&token))).unwrap();
    assert_eq!(user.name, "alice");
    assert_eq!(user.uid, "u-1");
    assert_eq!(user.groups, vec!["dev", "system:authenticated"]);
    assert_eq!(user.workspaces, scope(&["acme", "beta:*"]));
    assert!(user.extra.contains_key(token::CREDENTIAL_ID));
    let info = user.user_info();
    assert_eq!(info.name, "alice");
    assert!(info.in_group("system:authenticated"));

    let claims = svc.verify_claims(&token).unwrap();
    assert_eq!(claims.iss, token::DEFAULT_ISSUER);
    assert_eq!(claims.aud, vec![token::DEFAULT_AUDIENCE.to_string()]);
    assert!(claims.exp > claims.iat && claims.nbf == claims.iat);

    let admin = svc.issue_admin_token(Duration::from_secs(60)).unwrap();
    let admin = auth.authenticate(Some(&bearer(&admin))).unwrap();
    assert!(admin.groups.contains(&"system:masters".to_string()));
    assert!(admin.workspaces.allows_all_workspaces());
}

/// Signs arbitrary claims with the service's key.
fn signed_with(svc: &TokenService, edit: impl FnOnce(&mut Claims)) -> String {
    let mut claims = svc.base_claims("alice".into(), svc.audiences().to_vec(), 3600);
    claims.workspaces = Some(vec!["*".into()]);
    edit(&mut claims);
    svc.sign(&claims).unwrap()
}

#[test]
fn token_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let auth = Authenticator::new(svc.clone(), vec![]);
    let now = chrono::Utc::now().timestamp();
    let check = |token: &str, want: AuthError, what: &str| {
        assert_eq!(auth.authenticate(Some(&bearer(token))), Err(want), "{what}");
    };

    let ok = signed_with(&svc, |_| {});
    assert!(auth.authenticate(Some(&bearer(&ok))).is_ok());

    check(
        &signed_with(&svc, |c| {
            c.exp = now - 3600;
            c.iat = now - 7200;
            c.nbf = now - 7200;
        }),
        AuthError::Expired,
        "expired",
    );
    check(
        &signed_with(&svc, |c| c.nbf = now + 3600),
        AuthError::NotYetValid,
        "not yet valid",
    );
    check(
        &signed_with(&svc, |c| c.aud = vec!["someone-else".into()]),
        AuthError::Audience,
        "wrong audience",
    );
    // Same keys, other issuer name: not routed to us.
    let other = TokenService::new(
        svc.keys().clone(),
        TokenConfig {
            issuer: "https://evil.example".into(),
            audiences: svc.audiences().to_vec(),
        },
    );
    check(
        &user_token(&other, &["*"]),
        AuthError::Issuer,
        "wrong issuer",
    );
    assert_eq!(
        svc.verify(&user_token(&other, &["*"])),
        Err(AuthError::Issuer)
    );
    check(
        &signed_with(&svc, |c| c.workspaces = None),
        AuthError::Invalid,
        "no workspace claim",
    );
    check(
        &signed_with(&svc, |c| c.workspaces = Some(vec!["ac*".into()])),
        AuthError::Invalid,
        "bad scope pattern",
    );

    // Signed by a key we do not know.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = service(stranger_dir.path());
    check(
        &user_token(&stranger, &["*"]),
        AuthError::Invalid,
        "unknown key",
    );

    // alg: none.
    let payload = ok.split('.').nth(1).unwrap();
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    check(
        &format!("{none_header}.{payload}."),
        AuthError::Invalid,
        "alg none",
    );
    check(
        &format!("{none_header}.{payload}"),
        AuthError::Invalid,
        "alg none, 2 parts",
    );

    // HS256 keyed with the public key (algorithm confusion).
    let claims = svc.verify_claims(&ok).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(svc.keys().signing_kid().to_owned());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(svc.keys().public_pem().as_bytes()),
    )
    .unwrap();
    check(&confused, AuthError::Invalid, "HS256 with the public key");

    // Tampered payload: escalate groups, keep the signature.
    let mut forged = claims.clone();
    forged.groups = vec!["system:masters".into()];
    let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
    let parts: Vec<&str> = ok.split('.').collect();
    check(
        &format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        AuthError::Invalid,
        "tampered payload",
    );
    // Tampered signature.
    let mut sig = parts[2].to_owned();
    let last = if sig.ends_with('A') { "B" } else { "A" };
    sig.replace_range(sig.len() - 1.., last);
    check(
        &format!("{}.{}.{sig}", parts[0], parts[1]),
        AuthError::Invalid,
        "tampered signature",
    );

    check("not-a-jwt", AuthError::Invalid, "garbage");
    check("a.b.c", AuthError::Invalid, "garbage parts");
}

#[test]
fn authorization_header_parsing() {
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
    for bad in ["", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"] {
        assert_eq!(
            bearer_token(Some(bad)),
            Err(AuthError::Malformed),
            "{bad:?}"
        );
    }
    assert_eq!(AuthError::Expired.to_api_error().code(), 401);
    assert_eq!(AuthError::Expired.to_api_error().message, "Unauthorized");
}

#[test]
fn workspace_scopes() {
    let acme = scope(&["acme"]);
    assert!(acme.allows_path(&ws("acme")));
    for other in ["acme2", "acme:child", "root", "beta"] {
        assert!(!acme.allows_path(&ws(other)), "{other}");
    }
    assert!(!acme.allows_all_workspaces());

    let below = scope(&["acme:*"]);
    assert!(below.allows_path(&ws("acme:child")));
    assert!(below.allows_path(&ws("acme:child:grandchild")));
    assert!(!below.allows_path(&ws("acme")));
    assert!(!below.allows_path(&ws("acme2:child")));

    let both = scope(&["acme", "acme:*"]);
    assert!(both.allows_path(&ws("acme")) && both.allows_path(&ws("acme:x")));

    let not_root = scope(&["root:*"]);
    assert!(not_root.allows_path(&ws("acme")) && !not_root.allows_path(&ws("root")));

    let any = scope(&["*"]);
    assert!(any.allows_path(&ws("root")) && any.allows_all_workspaces());
    assert_eq!(scope(&[]), WorkspaceScope::Patterns(vec![]));
    assert!(!scope(&[]).allows_path(&ws("acme")));

    for bad in ["ac*", "*:acme", "acme:**", "Acme", "acme:", "", "acme:*:x"] {
        assert!(ScopePattern::parse(bad).is_err(), "{bad:?}");
    }
    for good in ["*", "acme", "acme:*", "a:b:*", "root", "root:*"] {
        assert_eq!(ScopePattern::parse(good).unwrap().to_string(), good);
    }

    // Through the authenticator: outside the scope is a 401.
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let auth = Authenticator::new(svc.clone(), vec![]);
    let h = bearer(&user_token(&svc, &["acme"]));
    assert!(
        auth.authenticate_in(Some(&h), &ws("acme"), &id("c1"))
            .is_ok()
    );
    assert_eq!(
        auth.authenticate_in(Some(&h), &ws("acme2"), &id("c2")),
        Err(AuthError::WorkspaceNotAllowed)
    );
    assert_eq!(
        auth.authenticate_in(Some(&h), &ws("acme:child"), &id("c3")),
        Err(AuthError::WorkspaceNotAllowed)
    );
}

fn sa_request(expiration: Option<i64>) -> ServiceAccountTokenRequest {
    ServiceAccountTokenRequest {
        workspace: ws("acme"),
        cluster: id("c1"),
        namespace: "ns".into(),
        name: "builder".into(),
        uid: "sa-uid".into(),
        audiences: vec![],
        expiration_seconds: expiration,
    }
}

#[test]
fn service_account_tokens_are_bound_to_their_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let auth = Authenticator::new(svc.clone(), vec![]);
    let issued = svc.issue_service_account_token(&sa_request(None)).unwrap();
    assert_eq!(issued.expiration_seconds, 3600);
    assert_eq!(issued.audiences, svc.audiences());
    let delta = issued.expiration_timestamp.timestamp() - chrono::Utc::now().timestamp();
    assert!((3590..=3600).contains(&delta), "{delta}");

    // Claims as upstream, plus the workspace.
    let payload = issued.token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:ns:builder");
    assert_eq!(claims["kubernetes.io"]["namespace"], "ns");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "builder");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
    assert_eq!(
        claims["wsgate.io/workspace"],
        json!({"path": "acme", "clusterID": "c1"})
    );
    for c in ["iss", "aud", "exp", "iat", "nbf", "jti"] {
        assert!(claims.get(c).is_some(), "{c}");
    }

    let h = bearer(&issued.token);
    let user = auth
        .authenticate_in(Some(&h), &ws("acme"), &id("c1"))
        .unwrap();
    assert_eq!(user.name, "system:serviceaccount:ns:builder");
    assert_eq!(
        user.groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:ns",
            "system:authenticated"
        ]
    );
    assert_eq!(user.uid, "sa-uid");
    assert_eq!(
        user.service_account,
        Some(ServiceAccountRef {
            namespace: "ns".into(),
            name: "builder".into(),
            uid: "sa-uid".into()
        })
    );
    for (path, cluster) in [
        ("acme2", "c1"),
        ("acme:child", "c1"),
        ("root", "root"),
        ("acme", "c9"),
    ] {
        assert_eq!(
            auth.authenticate_in(Some(&h), &ws(path), &id(cluster)),
            Err(AuthError::WorkspaceNotAllowed),
            "{path} {cluster}"
        );
    }
    assert!(!user.workspaces.allows_all_workspaces());

    // A token for another audience is not a credential for wsgate.
    let mut req = sa_request(Some(600));
    req.audiences = vec!["vault".into()];
    let vault = svc.issue_service_account_token(&req).unwrap();
    assert_eq!(vault.audiences, vec!["vault"]);
    assert_eq!(
        auth.authenticate(Some(&bearer(&vault.token))),
        Err(AuthError::Audience)
    );

    // A forged SA token whose sub disagrees with its kubernetes.io claims.
    let forged = signed_with(&svc, |c| {
        c.sub = "system:serviceaccount:kube-system:admin".into();
        c.workspaces = None;
        c.kubernetes = Some(token::KubernetesClaims {
            namespace: "ns".into(),
            serviceaccount: token::ObjectRefClaim {
                name: "builder".into(),
                uid: "x".into(),
            },
        });
        c.workspace = Some(token::BoundWorkspace {
            path: "acme".into(),
            cluster_id: "c1".into(),
        });
    });
    assert_eq!(svc.verify(&forged), Err(AuthError::Invalid));
    // A SA-looking token without the workspace binding.
    let unbound = signed_with(&svc, |c| {
        c.sub = "system:serviceaccount:ns:builder".into();
        c.kubernetes = Some(token::KubernetesClaims {
            namespace: "ns".into(),
            serviceaccount: token::ObjectRefClaim {
                name: "builder".into(),
                uid: "x".into(),
            },
        });
    });
    assert_eq!(svc.verify(&unbound), Err(AuthError::Invalid));
}

#[test]
fn token_request_expiration_rules() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let err = svc
        .issue_service_account_token(&sa_request(Some(599)))
        .unwrap_err();
    let api = err.to_api_error("builder");
    assert_eq!(api.code(), 422);
    assert_eq!(
        api.message,
        "TokenRequest.authentication.k8s.io \"builder\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    assert!(
        svc.issue_service_account_token(&sa_request(Some(600)))
            .is_ok()
    );
    assert!(matches!(
        svc.issue_service_account_token(&sa_request(Some((1 << 32) + 1))),
        Err(ServiceAccountTokenError::ExpirationTooLong(_))
    ));
}

fn external_config(issuer: &str) -> ExternalIssuerConfig {
    serde_json::from_value(json!({
        "issuer": issuer,
        "audiences": ["wsgate"],
        "username_claim": "email",
        "groups_claim": "groups",
        "groups_prefix": "oidc:",
        "workspaces_claim": "ws",
    }))
    .unwrap()
}

fn external_token(key_pem: &str, kid: Option<&str>, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[test]
fn external_issuers() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (private_pem, public_pem) = (key.serialize_pem(), key.public_key_pem());
    let iss = "https://idp.example";
    let issuer =
        ExternalIssuer::from_parts(external_config(iss), &[public_pem.as_bytes()], None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::new(service(dir.path()), vec![issuer]);
    let now = chrono::Utc::now().timestamp();
    let base = json!({"iss": iss, "aud": "wsgate", "exp": now + 600, "iat": now, "nbf": now,
        "sub": "123", "email": "bob@example.com", "email_verified": true,
        "groups": ["devs", "system:masters"], "ws": ["acme"]});
    let with = |patch: serde_json::Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        bearer(&external_token(&private_pem, None, c))
    };

    let user = auth.authenticate(Some(&with(json!({})))).unwrap();
    assert_eq!(user.name, "bob@example.com");
    // Prefixed, so a claimed system: group is harmless.
    assert_eq!(
        user.groups,
        vec!["oidc:devs", "oidc:system:masters", "system:authenticated"]
    );
    assert_eq!(user.workspaces, scope(&["acme"]));

    for (patch, want) in [
        (json!({"exp": now - 3600}), AuthError::Expired),
        (json!({"aud": "other"}), AuthError::Audience),
        (json!({"email_verified": false}), AuthError::Invalid),
        (json!({"email": "system:admin"}), AuthError::Invalid),
        (json!({"email": null}), AuthError::Invalid),
        (json!({"iss": "https://unknown.example"}), AuthError::Issuer),
    ] {
        assert_eq!(
            auth.authenticate(Some(&with(patch.clone()))),
            Err(want),
            "{patch}"
        );
    }
    // Missing workspace claim when one is mapped: valid nowhere.
    let nowhere = auth.authenticate(Some(&with(json!({"ws": null})))).unwrap();
    assert!(!nowhere.workspaces.allows_path(&ws("acme")));

    // Signed by another key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = external_token(&other.serialize_pem(), None, base.clone());
    assert_eq!(
        auth.authenticate(Some(&bearer(&forged))),
        Err(AuthError::Invalid)
    );

    // Default username prefix for a non-email claim.
    let mut cfg = external_config(iss);
    cfg.username_claim = "sub".into();
    cfg.workspaces_claim = None;
    cfg.groups_prefix = String::new();
    let sub_issuer = ExternalIssuer::from_parts(cfg, &[public_pem.as_bytes()], None).unwrap();
    let user = sub_issuer
        .verify(&external_token(&private_pem, None, base.clone()))
        .unwrap();
    assert_eq!(user.name, "https://idp.example#123");
    // Without a groups prefix, system: groups are dropped.
    assert_eq!(user.groups, vec!["devs", "system:authenticated"]);
    assert_eq!(user.workspaces, WorkspaceScope::All);

    // JWKS: asymmetric keys by kid; symmetric keys are refused.
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_decoding_key(&decoding, Some(Algorithm::ES256)).unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = serde_json::to_vec(&json!({"keys": [jwk]})).unwrap();
    let jwks_issuer = ExternalIssuer::from_parts(external_config(iss), &[], Some(&jwks)).unwrap();
    assert!(
        jwks_issuer
            .verify(&external_token(&private_pem, Some("k1"), base.clone()))
            .is_ok()
    );
    assert_eq!(
        jwks_issuer.verify(&external_token(&private_pem, Some("k2"), base.clone())),
        Err(AuthError::Invalid)
    );
    let oct = serde_json::to_vec(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}))
        .unwrap();
    assert!(matches!(
        ExternalIssuer::from_parts(external_config(iss), &[], Some(&oct)),
        Err(IssuerError::NoKeys(_))
    ));
    assert!(ExternalIssuer::from_parts(external_config(iss), &[b"nope"], None).is_err());
    // Files: missing files are a config error naming the issuer.
    let mut cfg = external_config(iss);
    cfg.public_key_files = vec![dir.path().join("missing.pem")];
    assert!(matches!(
        ExternalIssuer::load(cfg),
        Err(IssuerError::Io { .. })
    ));
}

#[test]
fn kubeconfigs() {
    let dir = tempfile::tempdir().unwrap();
    let acme = ws("acme:team-a");
    let params = kubeconfig::KubeconfigParams {
        server: "https://127.0.0.1:6443/",
        workspace: &acme,
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"),
        token: "tok",
        user: "admin",
        client_cert: None,
    };
    let yaml = kubeconfig::render_yaml(&params).unwrap();
    let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(parsed, kubeconfig::render(&params));
    let cluster = &parsed["clusters"][0]["cluster"];
    assert_eq!(
        cluster["server"],
        "https://127.0.0.1:6443/clusters/acme:team-a"
    );
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(ca).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(parsed["users"][0]["user"]["token"], "tok");
    assert_eq!(parsed["current-context"], parsed["contexts"][0]["name"]);

    let path = kubeconfig::write_admin_kubeconfig(dir.path(), &yaml, false)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        kubeconfig::write_admin_kubeconfig(dir.path(), "other", false).unwrap(),
        None
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
}

fn jwks_of(public_pem: &str, kid: &str) -> Vec<u8> {
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_decoding_key(&decoding, Some(Algorithm::ES256)).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_vec(&json!({"keys": [jwk]})).unwrap()
}

#[tokio::test]
async fn jwks_fetched_over_https_and_refreshed() {
    use axum::routing::get;
    let (k1, k2) = (
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    );
    // A real HTTPS server (the generated CA and serving certificate)
    // whose JWKS the test can rotate.
    let dir = tempfile::tempdir().unwrap();
    let material = crate::tls::load_or_create(dir.path(), None, &[]).unwrap();
    let served = std::sync::Arc::new(std::sync::Mutex::new(jwks_of(&k1.public_key_pem(), "k1")));
    let body = served.clone();
    let app = axum::Router::new().route(
        "/keys",
        get(move || {
            let body = body.clone();
            async move { body.lock().map(|b| b.clone()).unwrap_or_default() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::tls::serve_tls(
        listener,
        material.server_config.clone(),
        app,
        async move {
            let _ = stopped.await;
        },
    ));

    let iss = "https://idp.example";
    let mut cfg = external_config(iss);
    cfg.jwks_url = Some(format!("https://localhost:{port}/keys"));
    cfg.jwks_ca_file = Some(dir.path().join("pki").join("ca.crt"));
    let issuer = ExternalIssuer::from_parts(cfg.clone(), &[], None).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": iss, "aud": "wsgate", "exp": now + 600, "iat": now,
        "email": "bob@example.com", "email_verified": true, "ws": ["acme"]});
    let t1 = external_token(&k1.serialize_pem(), Some("k1"), claims.clone());
    let t2 = external_token(&k2.serialize_pem(), Some("k2"), claims.clone());
    // No keys until the first fetch.
    assert_eq!(issuer.verify(&t1), Err(AuthError::Invalid));
    assert_eq!(issuer.refresh().await.unwrap(), 1);
    assert_eq!(issuer.verify(&t1).unwrap().name, "bob@example.com");
    assert_eq!(issuer.verify(&t2), Err(AuthError::Invalid));

    // The IdP rotates its key: the next refresh follows.
    *served.lock().unwrap() = jwks_of(&k2.public_key_pem(), "k2");
    issuer.refresh().await.unwrap();
    assert!(issuer.verify(&t2).is_ok());
    assert_eq!(issuer.verify(&t1), Err(AuthError::Invalid));

    // Through the authenticator's refresher: a token signed with a key the
    // JWKS does not have yet makes it fetch early.
    let k3 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let t3 = external_token(&k3.serialize_pem(), Some("k3"), claims.clone());
    let auth = Authenticator::new(
        service(dir.path()),
        vec![ExternalIssuer::from_parts(cfg.clone(), &[], None).unwrap()],
    );
    auth.spawn_jwks_refresh();
    let eventually = |t: &str| {
        let header = bearer(t);
        let auth = &auth;
        async move {
            for _ in 0..50 {
                if auth.authenticate(Some(&header)).is_ok() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(eventually(&t2).await, "first fetch");
    *served.lock().unwrap() = jwks_of(&k3.public_key_pem(), "k3");
    assert!(auth.authenticate(Some(&bearer(&t3))).is_err());
    assert!(
        eventually(&t3).await,
        "refetched on the unknown kid, long before jwks_refresh"
    );

    // A failed fetch keeps the keys in use.
    *served.lock().unwrap() = b"not json".to_vec();
    assert!(issuer.refresh().await.is_err());
    assert!(issuer.verify(&t2).is_ok());
    // Without the CA the server is not trusted.
    let mut untrusted = cfg.clone();
    untrusted.jwks_ca_file = None;
    let other = ExternalIssuer::from_parts(untrusted, &[], None).unwrap();
    assert!(matches!(
        other.refresh().await,
        Err(IssuerError::Fetch { .. })
    ));
    // Plain HTTP is refused at configuration time.
    let mut plain = cfg;
    plain.jwks_url = Some(format!("http://localhost:{port}/keys"));
    assert!(ExternalIssuer::from_parts(plain, &[], None).is_err());
    let _ = stop.send(());
}
