//! The tentacle's RPC service: one implementation, served on listening connections and on
//! polling connections alike. Every refusal is a JSON [`ErrorBody`] with its HTTP status.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use octo_comms::rpc::RpcService;
use octo_comms::rpc::body::{self, BodyError, RpcBody};
use octo_comms::tls::PeerInfo;
use octo_protocol::{
    Capabilities, Completed, Empty, ErrorBody, ErrorCode, FileDownload, PackageFileRef,
    PackagePresence, PackageQuery, PluginPresence, PluginQuery, StartStep, StatusRequest, Stored,
    TicketRequest, paths,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::files::FileArea;
use crate::packages::{self, PackageCache, PackageMeta};
use crate::plugins::{PluginCache, PutError};
use crate::steps::Steps;

/// What the service works on.
pub struct TentacleService {
    steps: Arc<Steps>,
    plugins: PluginCache,
    files: FileArea,
    packages: Option<PackageCache>,
}

impl TentacleService {
    /// A service over these parts.
    pub fn new(steps: Arc<Steps>, plugins: PluginCache, files: FileArea) -> Self {
        Self {
            steps,
            plugins,
            files,
            packages: None,
        }
    }

    /// Serves the package calls from `packages`.
    pub fn with_packages(mut self, packages: PackageCache) -> Self {
        self.packages = Some(packages);
        self
    }

    fn package_cache(&self) -> Result<&PackageCache, ErrorBody> {
        self.packages.as_ref().ok_or_else(|| {
            ErrorBody::new(ErrorCode::UnknownCall, "this tentacle has no package cache")
        })
    }

    /// The capabilities answer.
    pub fn capabilities() -> Capabilities {
        Capabilities {
            protocol_version: octo_protocol::PROTOCOL_VERSION,
            agent: format!("tentacle {}", env!("CARGO_PKG_VERSION")),
            services: paths::ALL.iter().map(|p| p.to_string()).collect(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            max_json_request: octo_protocol::MAX_JSON_REQUEST as u64,
            max_plugin_size: octo_protocol::MAX_PLUGIN_SIZE,
            max_file_size: octo_protocol::MAX_FILE_SIZE,
        }
    }
}

/// The answer for a refusal.
pub fn refusal(error: ErrorBody) -> Response<RpcBody> {
    let status = StatusCode::from_u16(error.error.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    body::json_response(status, &error)
}

fn ok<T: Serialize>(value: &T) -> Response<RpcBody> {
    body::json_response(StatusCode::OK, value)
}

fn body_refusal(error: BodyError) -> ErrorBody {
    let code = match error {
        BodyError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    };
    ErrorBody::new(code, error.to_string())
}

async fn json<T: DeserializeOwned>(request: Request<Incoming>) -> Result<T, ErrorBody> {
    body::read_json(request.into_body(), octo_protocol::MAX_JSON_REQUEST)
        .await
        .map_err(body_refusal)
}

fn answer<T: Serialize>(result: Result<T, ErrorBody>) -> Response<RpcBody> {
    match result {
        Ok(value) => ok(&value),
        Err(error) => refusal(error),
    }
}

impl RpcService for TentacleService {
    async fn call(&self, peer: PeerInfo, request: Request<Incoming>) -> Response<RpcBody> {
        if request.method() != Method::POST {
            return refusal(ErrorBody::new(
                ErrorCode::BadRequest,
                "every call is a POST",
            ));
        }
        let path = request.uri().path().to_owned();
        tracing::debug!(peer = %peer.thumbprint.short(), %path, "call");
        match path.as_str() {
            paths::CAPABILITIES => {
                answer(json::<Empty>(request).await.map(|_| Self::capabilities()))
            }
            paths::STEP_START => match json::<StartStep>(request).await {
                Ok(start) => answer(self.steps.start(start).await),
                Err(e) => refusal(e),
            },
            paths::STEP_STATUS => match json::<StatusRequest>(request).await {
                Ok(status) => answer(self.steps.status(status).await),
                Err(e) => refusal(e),
            },
            paths::STEP_CANCEL => answer(
                json::<TicketRequest>(request)
                    .await
                    .and_then(|r| self.steps.cancel(&r.ticket)),
            ),
            paths::STEP_COMPLETE => answer(json::<TicketRequest>(request).await.and_then(|r| {
                self.steps
                    .complete(&r.ticket)
                    .map(|()| Completed { ticket: r.ticket })
            })),
            paths::PLUGIN_HAS => {
                answer(json::<PluginQuery>(request).await.map(|q| PluginPresence {
                    sha256: q.sha256,
                    present: self.plugins.has(&q.sha256),
                }))
            }
            paths::PLUGIN_GET => match json::<PluginQuery>(request).await {
                Ok(q) => match self.plugins.read(&q.sha256) {
                    Ok(Some(bytes)) => body::stream_response(std::io::Cursor::new(bytes)),
                    Ok(None) => refusal(ErrorBody::new(
                        ErrorCode::PluginMissing,
                        format!("this tentacle does not have plugin {}", q.sha256),
                    )),
                    Err(e) => refusal(ErrorBody::new(ErrorCode::Internal, e.to_string())),
                },
                Err(e) => refusal(e),
            },
            paths::FILE_UPLOAD => {
                let query = request.uri().query().unwrap_or("").to_owned();
                match paths::parse_file_upload(&query) {
                    Ok((file, digest)) => {
                        answer(self.files.upload(&file, &digest, request.into_body()).await)
                    }
                    Err(e) => {
                        let code = match e {
                            paths::UploadQueryError::Path(_) => ErrorCode::PathRefused,
                            _ => ErrorCode::BadRequest,
                        };
                        refusal(ErrorBody::new(code, e.to_string()))
                    }
                }
            }
            paths::PACKAGE_HAS => answer(json::<PackageQuery>(request).await.and_then(|q| {
                Ok(PackagePresence {
                    present: self.package_cache()?.has(&q.sha256),
                    sha256: q.sha256,
                })
            })),
            paths::PACKAGE_PUT => {
                let cache = match self.package_cache() {
                    Ok(c) => c.clone(),
                    Err(e) => return refusal(e),
                };
                let query = request.uri().query().unwrap_or("").to_owned();
                let Some(put) = paths::parse_package_put(&query) else {
                    return refusal(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "a package upload needs sha256=, name= (a plain file name), feed=, id= and version=",
                    ));
                };
                let file = PackageFileRef {
                    name: put.name.clone(),
                    sha256: put.sha256,
                    size: 0,
                };
                let meta = PackageMeta {
                    feed: &put.feed,
                    id: &put.id,
                    version: &put.version,
                };
                match cache
                    .put_body(
                        &meta,
                        &file,
                        request.into_body(),
                        octo_protocol::MAX_FILE_SIZE,
                    )
                    .await
                {
                    Ok(size) => ok(&Stored {
                        name: put.name,
                        size,
                        sha256: put.sha256,
                    }),
                    Err(e @ packages::PutError::DigestMismatch { .. }) => {
                        refusal(ErrorBody::new(ErrorCode::DigestMismatch, e.to_string()))
                    }
                    Err(e @ packages::PutError::TooLarge(_)) => {
                        refusal(ErrorBody::new(ErrorCode::TooLarge, e.to_string()))
                    }
                    Err(e) => refusal(ErrorBody::new(ErrorCode::Internal, e.to_string())),
                }
            }
            paths::FILE_DOWNLOAD => {
                // A path that is not a valid relative path is a refused path, not a bad body.
                let raw: serde_json::Value = match json(request).await {
                    Ok(v) => v,
                    Err(e) => return refusal(e),
                };
                let download: FileDownload = match serde_json::from_value(raw) {
                    Ok(d) => d,
                    Err(e) => {
                        return refusal(ErrorBody::new(ErrorCode::PathRefused, e.to_string()));
                    }
                };
                match self.files.open(&download.path).await {
                    Ok((file, digest)) => {
                        let mut response = body::stream_response(file);
                        response.headers_mut().insert(
                            paths::SHA256_HEADER,
                            digest
                                .to_hex()
                                .parse()
                                .expect("hex is a valid header value"),
                        );
                        response
                    }
                    Err(e) => refusal(e),
                }
            }
            other => match paths::parse_plugin_put(other) {
                Some(Ok(digest)) => {
                    let reader = body::body_reader(request.into_body(), None);
                    match self
                        .plugins
                        .put(&digest, reader, octo_protocol::MAX_PLUGIN_SIZE)
                        .await
                    {
                        Ok(size) => ok(&Stored {
                            name: digest.to_hex(),
                            size,
                            sha256: digest,
                        }),
                        Err(e @ PutError::DigestMismatch { .. }) => {
                            refusal(ErrorBody::new(ErrorCode::DigestMismatch, e.to_string()))
                        }
                        Err(e @ PutError::TooLarge(_)) => {
                            refusal(ErrorBody::new(ErrorCode::TooLarge, e.to_string()))
                        }
                        Err(e) => refusal(ErrorBody::new(ErrorCode::BadRequest, e.to_string())),
                    }
                }
                Some(Err(e)) => refusal(ErrorBody::new(ErrorCode::BadRequest, e.to_string())),
                None => refusal(ErrorBody::new(
                    ErrorCode::UnknownCall,
                    format!("no such call: {other}"),
                )),
            },
        }
    }
}
