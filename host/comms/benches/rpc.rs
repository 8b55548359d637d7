//! RPC round trip on a warm listening-direction connection over loopback: mutual TLS, HTTP/2,
//! a small JSON call and answer.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::identity::Identity;
use octo_comms::rpc::body::{self, RpcBody};
use octo_comms::rpc::{H2Options, RpcService};
use octo_comms::tls::{PeerInfo, TlsClient, TlsServer};
use octo_comms::trust::TrustStore;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Status {
    ticket: String,
    after_sequence: u64,
}

struct Echo;

impl RpcService for Echo {
    async fn call(&self, _peer: PeerInfo, request: Request<Incoming>) -> Response<RpcBody> {
        match body::read_json::<Status, _>(request.into_body(), 64 * 1024).await {
            Ok(status) => body::json_response(StatusCode::OK, &status),
            Err(e) => e.into_response(),
        }
    }
}

fn rpc_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let octo = Identity::generate("octo-server").unwrap();
        let tentacle = Identity::generate("tentacle").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(endpoint::serve_listening(
            listener,
            TlsServer::new(&tentacle, TrustStore::from_thumbprints([octo.thumbprint()])).unwrap(),
            Arc::new(Echo),
            H2Options::default(),
            CancellationToken::new(),
        ));
        let tls =
            TlsClient::new(&octo, TrustStore::from_thumbprints([tentacle.thumbprint()])).unwrap();
        endpoint::connect_listening(
            &DialTarget::new("127.0.0.1", port),
            &tls,
            Some(tentacle.thumbprint()),
            &H2Options::default(),
        )
        .await
        .unwrap()
        .client
    });
    let request = Status {
        ticket: "ServerTasks-1234".into(),
        after_sequence: 42,
    };
    c.bench_function("rpc_round_trip_small_json_warm_listening", |b| {
        b.to_async(&runtime).iter(|| async {
            let answer: Status = client.call_json("/status", &request).await.unwrap();
            assert_eq!(answer.after_sequence, 42);
        })
    });
}

criterion_group!(benches, rpc_round_trip);
criterion_main!(benches);
