//! The Bearer token flow against a real registry: docker-registry configured with `auth: token`, and a
//! token server fixture written here (Basic credentials in, an ES256 JWT with the certificate in `x5c`
//! out, granting what the scope asks for the one user). The registry's challenge names the realm; the
//! client fetches a token for the repository and retries. Artifacts are pushed with oras through the
//! same token server.

use base64::Engine;
use octo_feed::{ClientConfig, FeedClient};
use octo_packages::{Cause, Credentials, FeedKind, FeedSpec, PackageClient};
use octo_test_support::feeds::{Registry, Reply, Request, Routed, oras_push_token};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "octo-registry";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A token server: Basic ann/s3cret → a JWT for the requested scope.
fn token_server() -> (Routed, String) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["octo-token".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "octo-token");
    let cert = params.self_signed(&key).unwrap();
    let cert_pem = cert.pem();
    let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
    let rng = ring::rand::SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
            .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ann:s3cret")
    );
    let server = Routed::start(move |r: &Request| {
        if r.header("authorization") != Some(basic.as_str()) {
            return Reply::status(401);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let access: Vec<serde_json::Value> = query_param(&r.path, "scope")
            .map(|scope| {
                let parts: Vec<&str> = scope.splitn(3, ':').collect();
                vec![serde_json::json!({
                    "type": parts[0],
                    "name": parts.get(1).copied().unwrap_or_default(),
                    // The one user owns every repository (oras reuses its first token to push).
                    "actions": ["pull", "push"],
                })]
            })
            .unwrap_or_default();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": "octo-test", "sub": "ann", "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now - 10,
            "jti": format!("{now}-{}", r.path.len()), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = signer
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        let token = format!("{signing_input}.{}", b64(signature.as_ref()));
        Reply::ok(serde_json::json!({"token": token, "expires_in": 300}).to_string())
    });
    (server, cert_pem)
}

fn client(url: &str, credentials: Option<(&str, &str)>) -> PackageClient {
    let http = FeedClient::new(ClientConfig {
        attempts: 1,
        backoff_base: Duration::from_millis(5),
        webpki_roots: false,
        ..ClientConfig::default()
    })
    .unwrap();
    PackageClient::new(
        FeedSpec {
            name: "tokens".into(),
            kind: FeedKind::Oci,
            url: url.into(),
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.into(),
                password: p.into(),
            }),
        },
        http,
    )
    .unwrap()
}

#[tokio::test]
async fn docker_registry_with_the_bearer_token_flow() {
    let (tokens, cert_pem) = token_server();
    let realm = format!("{}/token", tokens.base_url);
    let registry = Registry::start_with_token(&realm, SERVICE, &cert_pem);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.tgz"), b"tarball").unwrap();
    let pushed_ok = std::panic::catch_unwind(|| {
        oras_push_token(
            &registry.host(),
            "team/app:2.0.0",
            ("ann", "s3cret"),
            work.path(),
            &["app.tgz"],
        )
    });
    if pushed_ok.is_err() {
        panic!(
            "registry log: {}\ntoken requests: {:#?}",
            registry.log(),
            tokens.requests()
        );
    }
    let pushed = tokens.requests().len();
    assert!(pushed > 0, "oras used the token server");

    let feed = client(&registry.url(), Some(("ann", "s3cret")));
    let report = feed.test().await.unwrap();
    assert!(report.summary.contains("(401, bearer)"), "{report:?}");
    let d = feed.resolve("team/app", None).await.unwrap();
    assert_eq!(
        (d.version.as_str(), d.files[0].name.as_str()),
        ("2.0.0", "app.tgz")
    );
    let dir = tempfile::tempdir().unwrap();
    let done = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), b"tarball");
    let ours: Vec<_> = tokens.requests().into_iter().skip(pushed).collect();
    assert!(
        ours.iter()
            .any(|r| r.path.contains("scope=repository%3Ateam%2Fapp%3Apull")
                && r.path.contains(&format!("service={SERVICE}"))),
        "{ours:#?}"
    );
    // A fresh client (a tentacle given the resolved download) gets its own token for the blob.
    let tentacle = PackageClient::for_download(
        &d,
        Some(Credentials {
            username: "ann".into(),
            password: "s3cret".into(),
        }),
        FeedClient::new(ClientConfig::default()).unwrap(),
    )
    .unwrap();
    let done = tentacle
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), b"tarball");

    // Wrong credentials: the token server says no; the error says credentials were sent.
    let e = client(&registry.url(), Some(("ann", "wrong")))
        .resolve("team/app", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.cause,
            Cause::Unauthorized {
                credentials_sent: true,
                ..
            }
        ),
        "{e}"
    );
}
