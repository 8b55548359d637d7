//! [`PackageClient`]: the I/O half — one configured feed, reached through octo-feed's [`FeedClient`]
//! (its proxy `Connector`, bounded retries, verified streaming into temporary files).
//!
//! Credentials: Basic credentials are bound to the feed URL's origin ([`octo_feed::Authorization`]), so
//! a redirect to another origin (a registry's blob storage, or anything else) is followed without them.
//! An OCI registry's Bearer challenge names a token server (`realm`); it gets the Basic credentials only
//! when it is on the feed's own host and not a downgrade from https to http (otherwise the token is
//! asked for anonymously), and the token it returns is bound to the feed's origin like the credentials.

use crate::credentials::Credentials;
use crate::download::{PackageDownload, PackageFile};
use crate::error::{Cause, PackageError};
use crate::feed::{FeedKind, FeedSpec};
use crate::id::PackageId;
use crate::version::{Version, VersionReq};
use crate::{http_feed, nuget, oci};
use http::header::{self, HeaderValue};
use octo_feed::client::Document;
use octo_feed::{Authorization, ClientError, Downloaded, Expected, FeedClient, RequestOptions};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Redirects followed by package requests.
const MAX_REDIRECTS: u32 = 5;
/// Tag pages followed at most.
const MAX_TAG_PAGES: usize = 100;

/// What `octo feeds test` found.
#[derive(Debug, Clone, Serialize)]
pub struct FeedReport {
    /// The feed's name.
    pub feed: String,
    /// Its kind.
    pub kind: FeedKind,
    /// One line: what answered.
    pub summary: String,
    /// Details (NuGet resource types, the OCI auth scheme, ...).
    pub details: Vec<String>,
}

/// A client for one feed.
pub struct PackageClient {
    spec: FeedSpec,
    http: FeedClient,
    basic: Option<Authorization>,
    /// OCI: bearer tokens by repository ("" for `/v2/`).
    tokens: Mutex<HashMap<String, Authorization>>,
    /// NuGet: the flat container's base URL, once fetched.
    nuget_base: Mutex<Option<String>>,
    /// OCI: tags asked for per page.
    tag_page_size: u32,
}

impl std::fmt::Debug for PackageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageClient")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PackageClient {
    /// A client for `spec`, over `http` (whose connector decides the proxy). Checks the URL; makes no
    /// request.
    pub fn new(spec: FeedSpec, http: FeedClient) -> Result<Self, PackageError> {
        let fail = |cause| PackageError {
            feed: spec.name.clone(),
            package: None,
            cause,
        };
        check_url(&spec).map_err(|m| fail(Cause::InvalidFeed(m)))?;
        let basic = match &spec.credentials {
            Some(c) => {
                let value = HeaderValue::from_str(&c.basic_header_value()).map_err(|_| {
                    fail(Cause::InvalidFeed(
                        "the credentials cannot be sent in a header (control characters)".into(),
                    ))
                })?;
                Some(
                    Authorization::new(&spec.url.replace(['{', '}'], ""), value)
                        .map_err(|e| fail(Cause::Client(Box::new(e))))?,
                )
            }
            None => None,
        };
        Ok(PackageClient {
            spec,
            http,
            basic,
            tokens: Mutex::new(HashMap::new()),
            nuget_base: Mutex::new(None),
            tag_page_size: 100,
        })
    }

    /// OCI: how many tags to ask for per page (`?n=`; default 100). The registry's `Link` header leads to
    /// the next page.
    pub fn with_tag_page_size(mut self, n: u32) -> Self {
        self.tag_page_size = n.max(1);
        self
    }

    /// A client for what a server resolved (a tentacle downloading directly), with the credentials
    /// handed over for this run.
    pub fn for_download(
        download: &PackageDownload,
        credentials: Option<Credentials>,
        http: FeedClient,
    ) -> Result<Self, PackageError> {
        PackageClient::new(
            FeedSpec {
                name: download.feed.clone(),
                kind: download.kind,
                url: download.feed_url.clone(),
                credentials,
            },
            http,
        )
    }

    /// The feed.
    pub fn spec(&self) -> &FeedSpec {
        &self.spec
    }

    fn error(&self, package: Option<&str>, cause: Cause) -> PackageError {
        PackageError {
            feed: self.spec.name.clone(),
            package: package.map(str::to_string),
            cause,
        }
    }

    fn client_error(&self, package: Option<&str>, e: ClientError, sent: bool) -> PackageError {
        self.error(package, Cause::from_client(e, sent))
    }

    /// Reaches the feed and says what it found.
    pub async fn test(&self) -> Result<FeedReport, PackageError> {
        let (summary, details) = match self.spec.kind {
            FeedKind::Nuget => {
                let index = self.service_index(None).await?;
                let base = index
                    .package_base_address()
                    .map_err(|e| self.error(None, Cause::Protocol(e.to_string())))?;
                (
                    format!(
                        "NuGet v3 service index {} answered: {} resources, packages at {base}",
                        index.version,
                        index.resources.len()
                    ),
                    index
                        .resource_types()
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                )
            }
            FeedKind::Oci => {
                let url = format!("{}/v2/", self.registry_origin());
                // First without credentials, to learn the auth scheme; then as a client would.
                let anonymous = RequestOptions::default();
                match self.http.get_document_with(&url, &anonymous).await {
                    Ok(_) => (
                        format!("OCI registry answered {url} (200, no authentication)"),
                        vec!["authentication: none needed".to_string()],
                    ),
                    Err(ClientError::Status {
                        status, challenge, ..
                    }) if status.as_u16() == 401 => {
                        let challenge = challenge.unwrap_or_default();
                        let schemes: Vec<String> = oci::parse_challenges(&challenge)
                            .iter()
                            .map(|c| c.scheme.clone())
                            .collect();
                        self.get_oci(&url, None, "").await?;
                        (
                            format!("OCI registry answered {url} (401, {})", schemes.join(", ")),
                            vec![
                                format!("auth scheme: {}", schemes.join(", ")),
                                "authenticated: /v2/ answered 200".to_string(),
                            ],
                        )
                    }
                    Err(e) => return Err(self.client_error(None, e, false)),
                }
            }
            FeedKind::Http => {
                let prefix = self.spec.url.split('{').next().unwrap_or_default();
                let url = match prefix.rfind('/') {
                    Some(i) if i > "https://".len() => &prefix[..=i],
                    _ => prefix,
                };
                let options = self.options(None, None, true);
                let status = match self.http.get_document_with(url, &options).await {
                    Ok(_) => "200".to_string(),
                    Err(ClientError::Status { status, .. }) => status.to_string(),
                    Err(ClientError::TooLarge { .. }) => "200 (a large body)".to_string(),
                    Err(e) => return Err(self.client_error(None, e, self.basic.is_some())),
                };
                (
                    format!("HTTP feed answered {url} ({status})"),
                    vec![format!("template: {}", self.spec.url)],
                )
            }
        };
        Ok(FeedReport {
            feed: self.spec.name.clone(),
            kind: self.spec.kind,
            summary,
            details,
        })
    }

    /// The versions of `id`, lowest first (OCI: the tags, those that are versions first).
    pub async fn versions(&self, id: &str) -> Result<Vec<String>, PackageError> {
        let pid =
            PackageId::parse(self.spec.kind, id).map_err(|e| self.error(Some(id), e.into()))?;
        match self.spec.kind {
            FeedKind::Nuget => {
                let mut versions: Vec<Version> = self
                    .nuget_versions(&pid)
                    .await?
                    .iter()
                    .filter_map(|v| Version::parse(v).ok())
                    .collect();
                versions.sort();
                versions.dedup();
                Ok(versions.iter().map(Version::normalized).collect())
            }
            FeedKind::Oci => Ok(sort_tags(self.oci_tags(&pid).await?)),
            FeedKind::Http => Err(self.error(
                Some(id),
                Cause::Unsupported(
                    "an http feed has no version list; ask for an exact version (ID@VERSION)"
                        .into(),
                ),
            )),
        }
    }

    /// Resolves `id` and the requirement `req` (see [`crate::version`]; OCI also takes a tag or a
    /// `sha256:` digest) to what to download.
    pub async fn resolve(
        &self,
        id: &str,
        req: Option<&str>,
    ) -> Result<PackageDownload, PackageError> {
        let label = match req {
            Some(r) => format!("{id}@{r}"),
            None => id.to_string(),
        };
        let pid =
            PackageId::parse(self.spec.kind, id).map_err(|e| self.error(Some(&label), e.into()))?;
        match self.spec.kind {
            FeedKind::Nuget => self.resolve_nuget(&pid, req, &label).await,
            FeedKind::Oci => self.resolve_oci(&pid, req, &label).await,
            FeedKind::Http => self.resolve_http(&pid, req, &label).await,
        }
    }

    /// Downloads one file of `download` into a temporary file in `dest_dir`, verifying the sha256 and
    /// size it states (when it states them) and refusing more than `max_size` bytes. The caller renames
    /// the file; on failure nothing is left behind.
    pub async fn download_file(
        &self,
        download: &PackageDownload,
        file: &PackageFile,
        dest_dir: &Path,
        max_size: Option<u64>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Downloaded, PackageError> {
        let label = format!("{}@{}", download.package_id, download.version);
        if !oci::is_plain_file_name(&file.name) {
            return Err(self.error(
                Some(&label),
                Cause::Protocol(format!("file name {:?} is not a plain name", file.name)),
            ));
        }
        let expected = Expected {
            sha256: file.sha256.clone(),
            size: file.size,
            max_size,
        };
        let repo = match self.spec.kind {
            FeedKind::Oci => Some(self.repository(&download.package_id)),
            _ => None,
        };
        let mut retried = false;
        loop {
            let options = self.options(None, repo.as_deref(), true);
            let sent = options.authorization.is_some();
            match self
                .http
                .download_with(&file.url, &options, &expected, dest_dir, progress)
                .await
            {
                Ok(d) => return self.check_sha512(file, d, &label).await,
                Err(ClientError::Status {
                    status,
                    challenge: Some(challenge),
                    ..
                }) if status.as_u16() == 401 && repo.is_some() && !retried => {
                    self.authenticate(&challenge, repo.as_deref().unwrap_or(""), &label)
                        .await?;
                    retried = true;
                }
                Err(e) => return Err(self.client_error(Some(&label), e, sent)),
            }
        }
    }

    /// A download whose file states a SHA-512 (and no sha256 that was checked while streaming) is
    /// kept only when its bytes have it; otherwise it is removed.
    async fn check_sha512(
        &self,
        file: &PackageFile,
        downloaded: Downloaded,
        label: &str,
    ) -> Result<Downloaded, PackageError> {
        let Some(expected) = file.sha512.as_ref().filter(|_| file.sha256.is_none()) else {
            return Ok(downloaded);
        };
        let path = downloaded.path.clone();
        let actual = tokio::task::spawn_blocking(move || sha512_hex_of(&path))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        let failure = match actual {
            Ok(actual) if actual.eq_ignore_ascii_case(expected) => return Ok(downloaded),
            Ok(actual) => Cause::DigestMismatch(format!(
                "{} has SHA-512 {actual}, the feed publishes {expected}; it was discarded",
                file.name
            )),
            Err(e) => Cause::Protocol(format!("cannot read the download of {}: {e}", file.name)),
        };
        let _ = std::fs::remove_file(&downloaded.path);
        Err(self.error(Some(label), failure))
    }

    /// NuGet: fills in the SHA-512 the feed's registration resource publishes for each file of
    /// `download` that has no sha256 (`packageHash`, inline or in the catalog leaf). A feed without
    /// a registration resource, or one that publishes no hash, leaves the files as they are.
    pub async fn fill_published_hashes(
        &self,
        download: &mut PackageDownload,
    ) -> Result<(), PackageError> {
        if self.spec.kind != FeedKind::Nuget || download.fully_pinned() {
            return Ok(());
        }
        let label = download.display_name();
        let id = PackageId::parse(FeedKind::Nuget, &download.package_id)
            .map_err(|e| self.error(Some(&label), e.into()))?;
        let Some(base) = self
            .service_index(Some(&label))
            .await?
            .registrations_base_url()
        else {
            return Ok(());
        };
        let base = url::Url::parse(&self.spec.url)
            .and_then(|u| u.join(&base))
            .map(|u| u.to_string())
            .unwrap_or(base);
        let Some(wanted) = Version::parse(&download.version).ok() else {
            return Ok(());
        };
        let same = |v: &str| Version::parse(v).is_ok_and(|v| v == wanted);
        let in_range = |lower: &str, upper: &str| {
            matches!((Version::parse(lower), Version::parse(upper)),
                (Ok(l), Ok(u)) if l <= wanted && wanted <= u)
        };
        let protocol =
            |e: nuget::NugetError| self.error(Some(&label), Cause::Protocol(e.to_string()));
        let mut url = nuget::registration_url(&base, &id.lower());
        // The index, then at most one page, then at most one catalog leaf.
        let mut hops = 0;
        let hash = loop {
            hops += 1;
            let doc = match self.get(&url, Some(&label)).await {
                Ok(doc) => doc,
                // Not registered: the flat container still has it; no published hash.
                Err(e) if matches!(e.cause, Cause::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            match nuget::find_registered(&doc.body, &same, &in_range).map_err(protocol)? {
                nuget::RegistrationLookup::Found(nuget::Registered::Hash(hash)) => {
                    break Some(hash);
                }
                nuget::RegistrationLookup::Found(nuget::Registered::CatalogLeaf(leaf))
                    if hops < 3 && self.same_origin(&leaf) =>
                {
                    let doc = self.get(&leaf, Some(&label)).await?;
                    break nuget::parse_catalog_leaf(&doc.body).map_err(protocol)?;
                }
                nuget::RegistrationLookup::Page(page) if hops < 2 && self.same_origin(&page) => {
                    url = page;
                }
                _ => break None,
            }
        };
        if let Some(hash) = hash {
            for file in download.files.iter_mut().filter(|f| f.sha256.is_none()) {
                file.sha512 = Some(hash.sha512.clone());
            }
        }
        Ok(())
    }

    /// Whether `url` is on the feed's origin (where its credentials may go).
    fn same_origin(&self, url: &str) -> bool {
        match (
            octo_feed::client::origin_of(url),
            octo_feed::client::origin_of(&self.spec.url),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    // ---- requests ----

    /// Request options: `accept`, the bearer token for `repo` if there is one, else the Basic
    /// credentials; redirects followed when `redirects`.
    fn options(&self, accept: Option<&str>, repo: Option<&str>, redirects: bool) -> RequestOptions {
        let mut headers = Vec::new();
        if let Some(accept) = accept.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.push((header::ACCEPT, accept));
        }
        let token = repo.and_then(|r| self.tokens.lock().ok()?.get(r).cloned());
        RequestOptions {
            headers,
            authorization: token.or_else(|| self.basic.clone()),
            max_redirects: if redirects { MAX_REDIRECTS } else { 0 },
        }
    }

    /// A GET with the feed's credentials (redirects followed).
    async fn get(&self, url: &str, package: Option<&str>) -> Result<Document, PackageError> {
        let options = self.options(None, None, true);
        self.http
            .get_document_with(url, &options)
            .await
            .map_err(|e| self.client_error(package, e, options.authorization.is_some()))
    }

    /// An OCI GET: on a 401 with a challenge, authenticates for `repo` and asks once more.
    async fn get_oci(
        &self,
        url: &str,
        accept: Option<&str>,
        repo: &str,
    ) -> Result<Document, PackageError> {
        let package = (!repo.is_empty()).then_some(repo);
        let mut retried = false;
        loop {
            let options = self.options(accept, Some(repo), true);
            match self.http.get_document_with(url, &options).await {
                Ok(doc) => return Ok(doc),
                Err(ClientError::Status {
                    status,
                    challenge: Some(challenge),
                    ..
                }) if status.as_u16() == 401 && !retried => {
                    self.authenticate(&challenge, repo, package.unwrap_or(""))
                        .await?;
                    retried = true;
                }
                Err(e) => {
                    return Err(self.client_error(package, e, options.authorization.is_some()));
                }
            }
        }
    }

    /// Answers a challenge: Basic → nothing more to try (the credentials were sent, or there are
    /// none); Bearer → a token from the realm, kept for `repo`.
    async fn authenticate(
        &self,
        header: &str,
        repo: &str,
        package: &str,
    ) -> Result<(), PackageError> {
        let package = (!package.is_empty()).then_some(package);
        let challenges = oci::parse_challenges(header);
        let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") else {
            return Err(self.error(
                package,
                Cause::Unauthorized {
                    status: 401,
                    credentials_sent: self.basic.is_some(),
                },
            ));
        };
        let url = oci::token_url(bearer, repo).ok_or_else(|| {
            self.error(
                package,
                Cause::Protocol(format!(
                    "the registry's Bearer challenge has no usable realm: {header:?}"
                )),
            )
        })?;
        let mut options = RequestOptions {
            max_redirects: MAX_REDIRECTS,
            ..RequestOptions::default()
        };
        if let (Some(c), true) = (&self.spec.credentials, self.realm_may_get_credentials(&url)) {
            let value = HeaderValue::from_str(&c.basic_header_value())
                .map_err(|_| self.error(package, Cause::InvalidFeed("bad credentials".into())))?;
            options.authorization = Some(
                Authorization::new(&url, value)
                    .map_err(|e| self.error(package, Cause::Client(Box::new(e))))?,
            );
        }
        let sent = options.authorization.is_some();
        let doc = self
            .http
            .get_document_with(&url, &options)
            .await
            .map_err(|e| self.client_error(package, e, sent))?;
        let token = oci::parse_token(&doc.body)
            .map_err(|e| self.error(package, Cause::Protocol(format!("token server: {e}"))))?;
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            self.error(package, Cause::Protocol("token server: a bad token".into()))
        })?;
        let auth = Authorization::new(&self.registry_origin(), value)
            .map_err(|e| self.error(package, Cause::Client(Box::new(e))))?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(repo.to_string(), auth);
        }
        Ok(())
    }

    /// The realm may get the Basic credentials: same host as the feed, and not https → http.
    fn realm_may_get_credentials(&self, realm: &str) -> bool {
        let (Ok(realm), Ok(feed)) = (url::Url::parse(realm), url::Url::parse(&self.spec.url))
        else {
            return false;
        };
        realm.host_str().map(str::to_ascii_lowercase)
            == feed.host_str().map(str::to_ascii_lowercase)
            && !(feed.scheme() == "https" && realm.scheme() != "https")
    }

    // ---- NuGet ----

    async fn service_index(
        &self,
        package: Option<&str>,
    ) -> Result<nuget::ServiceIndex, PackageError> {
        let doc = self.get(&self.spec.url, package).await?;
        nuget::ServiceIndex::parse(&doc.body)
            .map_err(|e| self.error(package, Cause::Protocol(e.to_string())))
    }

    async fn nuget_base(&self, package: &str) -> Result<String, PackageError> {
        if let Some(base) = self.nuget_base.lock().ok().and_then(|b| b.clone()) {
            return Ok(base);
        }
        let base = self
            .service_index(Some(package))
            .await?
            .package_base_address()
            .map_err(|e| self.error(Some(package), Cause::Protocol(e.to_string())))?;
        let base = url::Url::parse(&self.spec.url)
            .and_then(|u| u.join(&base))
            .map(|u| u.to_string())
            .unwrap_or(base);
        if let Ok(mut cached) = self.nuget_base.lock() {
            *cached = Some(base.clone());
        }
        Ok(base)
    }

    async fn nuget_versions(&self, id: &PackageId) -> Result<Vec<String>, PackageError> {
        let base = self.nuget_base(id.as_str()).await?;
        let doc = self
            .get(&nuget::versions_url(&base, &id.lower()), Some(id.as_str()))
            .await?;
        nuget::parse_versions(&doc.body)
            .map_err(|e| self.error(Some(id.as_str()), Cause::Protocol(e.to_string())))
    }

    async fn resolve_nuget(
        &self,
        id: &PackageId,
        req: Option<&str>,
        label: &str,
    ) -> Result<PackageDownload, PackageError> {
        let requirement = VersionReq::parse(req).map_err(|e| self.error(Some(label), e.into()))?;
        let base = self.nuget_base(label).await?;
        let doc = self
            .get(&nuget::versions_url(&base, &id.lower()), Some(label))
            .await?;
        let listed = nuget::parse_versions(&doc.body)
            .map_err(|e| self.error(Some(label), Cause::Protocol(e.to_string())))?;
        let versions: Vec<Version> = listed
            .iter()
            .filter_map(|v| Version::parse(v).ok())
            .collect();
        let chosen = requirement
            .select(&versions)
            .ok_or_else(|| self.no_match(label, &requirement, &versions))?
            .normalized();
        let id_lower = id.lower();
        Ok(PackageDownload {
            feed: self.spec.name.clone(),
            kind: FeedKind::Nuget,
            feed_url: self.spec.url.clone(),
            package_id: id.as_str().to_string(),
            version: chosen.clone(),
            manifest_digest: None,
            files: vec![PackageFile {
                name: format!("{id_lower}.{chosen}.nupkg"),
                url: nuget::package_url(&base, &id_lower, &chosen),
                sha256: None,
                sha512: None,
                size: None,
                media_type: None,
            }],
        })
    }

    fn no_match(&self, label: &str, req: &VersionReq, versions: &[Version]) -> PackageError {
        let mut sorted: Vec<&Version> = versions.iter().collect();
        sorted.sort();
        sorted.reverse();
        self.error(
            Some(label),
            Cause::NoMatchingVersion {
                requirement: req.to_string(),
                available: sorted.iter().take(10).map(|v| v.normalized()).collect(),
            },
        )
    }

    // ---- OCI ----

    /// `scheme://host:port` of the registry.
    fn registry_origin(&self) -> String {
        match url::Url::parse(&self.spec.url) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => self.spec.url.trim_end_matches('/').to_string(),
        }
    }

    /// The repository of package `id`: the feed URL's path (a namespace), then the id.
    fn repository(&self, id: &str) -> String {
        let namespace = url::Url::parse(&self.spec.url)
            .map(|u| u.path().trim_matches('/').to_string())
            .unwrap_or_default();
        if namespace.is_empty() {
            id.to_string()
        } else {
            format!("{namespace}/{id}")
        }
    }

    async fn oci_tags(&self, id: &PackageId) -> Result<Vec<String>, PackageError> {
        let repo = self.repository(id.as_str());
        let mut url = format!(
            "{}/v2/{repo}/tags/list?n={}",
            self.registry_origin(),
            self.tag_page_size
        );
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let doc = self.get_oci(&url, None, &repo).await?;
            tags.extend(
                oci::parse_tags(&doc.body)
                    .map_err(|e| self.error(Some(id.as_str()), Cause::Protocol(e.to_string())))?,
            );
            let next = doc
                .headers
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|link| oci::next_link(link, &url));
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// GETs a manifest and checks its digest: against `Docker-Content-Digest` when the registry sends it,
    /// and against `by_digest` when it was asked for by digest.
    async fn oci_manifest(
        &self,
        repo: &str,
        reference: &str,
        label: &str,
    ) -> Result<(oci::Manifest, oci::Digest), PackageError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.registry_origin());
        let doc = self
            .get_oci(&url, Some(oci::MANIFEST_ACCEPT), repo)
            .await
            .map_err(|mut e| {
                e.package = Some(label.to_string());
                e
            })?;
        let actual = oci::Digest::from_hex(&octo_fsutil::sha256_hex(&doc.body))
            .expect("sha256_hex is a digest");
        let mismatch = |what: String| self.error(Some(label), Cause::DigestMismatch(what));
        if let Some(header) = doc
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && header != actual.as_str()
        {
            return Err(mismatch(format!(
                "the manifest of {repo}:{reference} hashes to {actual}, the registry says {header}"
            )));
        }
        if reference.starts_with("sha256:") && reference != actual.as_str() {
            return Err(mismatch(format!(
                "the manifest asked for as {reference} hashes to {actual}"
            )));
        }
        let content_type = doc
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let manifest = oci::Manifest::parse(&doc.body, content_type)
            .map_err(|e| self.error(Some(label), Cause::Protocol(e.to_string())))?;
        Ok((manifest, actual))
    }

    async fn resolve_oci(
        &self,
        id: &PackageId,
        req: Option<&str>,
        label: &str,
    ) -> Result<PackageDownload, PackageError> {
        let repo = self.repository(id.as_str());
        let reference = match req.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) if r.starts_with("sha256:") => {
                oci::Digest::parse(r)
                    .map_err(|e| self.error(Some(label), Cause::Protocol(e.to_string())))?;
                r.to_string()
            }
            other => {
                let tags = self.oci_tags(id).await.map_err(|mut e| {
                    e.package = Some(label.to_string());
                    e
                })?;
                match other {
                    Some(r) if tags.iter().any(|t| t == r) => r.to_string(),
                    _ => {
                        let requirement = VersionReq::parse(other)
                            .map_err(|e| self.error(Some(label), e.into()))?;
                        let versions: Vec<Version> =
                            tags.iter().filter_map(|t| Version::parse(t).ok()).collect();
                        match requirement.select(&versions) {
                            Some(v) => v.original().to_string(),
                            None if other.is_none() && tags.iter().any(|t| t == "latest") => {
                                "latest".to_string()
                            }
                            None => {
                                let mut available = sort_tags(tags);
                                available.reverse();
                                available.truncate(10);
                                return Err(self.error(
                                    Some(label),
                                    Cause::NoMatchingVersion {
                                        requirement: other.unwrap_or("latest").to_string(),
                                        available,
                                    },
                                ));
                            }
                        }
                    }
                }
            }
        };
        let (mut manifest, mut digest) = self.oci_manifest(&repo, &reference, label).await?;
        if let oci::Manifest::Index { manifests, .. } = &manifest {
            let chosen = oci::pick_from_index(manifests, oci::current_arch()).ok_or_else(|| {
                self.error(
                    Some(label),
                    Cause::Protocol("the image index lists no manifests".into()),
                )
            })?;
            let chosen = chosen.digest.to_string();
            (manifest, digest) = self.oci_manifest(&repo, &chosen, label).await?;
        }
        let oci::Manifest::Image { layers, .. } = manifest else {
            return Err(self.error(
                Some(label),
                Cause::Protocol("an image index points at another index".into()),
            ));
        };
        if layers.is_empty() {
            return Err(self.error(
                Some(label),
                Cause::Protocol("the manifest has no layers".into()),
            ));
        }
        let mut names: Vec<String> = layers.iter().map(oci::layer_file_name).collect();
        let unique = {
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            sorted.len() == names.len()
        };
        if !unique {
            names = layers.iter().map(|l| l.digest.hex().to_string()).collect();
        }
        let origin = self.registry_origin();
        let files = layers
            .iter()
            .zip(names)
            .map(|(layer, name)| PackageFile {
                name,
                url: format!("{origin}/v2/{repo}/blobs/{}", layer.digest),
                sha256: Some(layer.digest.hex().to_string()),
                sha512: None,
                size: Some(layer.size),
                media_type: Some(layer.media_type.clone()),
            })
            .collect();
        Ok(PackageDownload {
            feed: self.spec.name.clone(),
            kind: FeedKind::Oci,
            feed_url: self.spec.url.clone(),
            package_id: id.as_str().to_string(),
            version: reference,
            manifest_digest: Some(digest.to_string()),
            files,
        })
    }

    // ---- plain HTTP ----

    async fn resolve_http(
        &self,
        id: &PackageId,
        req: Option<&str>,
        label: &str,
    ) -> Result<PackageDownload, PackageError> {
        let version = req.map(str::trim).unwrap_or_default();
        let exact = matches!(VersionReq::parse(Some(version)), Ok(VersionReq::Exact(_)));
        if !exact
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
        {
            return Err(self.error(
                Some(label),
                Cause::Unsupported(
                    "an http feed has no version list; ask for an exact version (ID@1.2.3)".into(),
                ),
            ));
        }
        let url = http_feed::expand(&self.spec.url, id.as_str(), version);
        let sidecar = http_feed::sidecar_url(&url);
        let options = self.options(None, None, true);
        let sha256 = match self.http.get_document_with(&sidecar, &options).await {
            Ok(doc) => Some(
                http_feed::parse_sidecar(&doc.body)
                    .map_err(|m| self.error(Some(label), Cause::Protocol(m)))?,
            ),
            Err(ClientError::Status { status, .. }) if status.as_u16() == 404 => None,
            Err(e) => {
                return Err(self.client_error(Some(label), e, options.authorization.is_some()));
            }
        };
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|p| p.rsplit('/').next())
            .map(|n| {
                percent_encoding::percent_decode_str(n)
                    .decode_utf8_lossy()
                    .to_string()
            })
            .filter(|n| oci::is_plain_file_name(n))
            .unwrap_or_else(|| format!("{}-{version}", id.as_str()));
        Ok(PackageDownload {
            feed: self.spec.name.clone(),
            kind: FeedKind::Http,
            feed_url: self.spec.url.clone(),
            package_id: id.as_str().to_string(),
            version: version.to_string(),
            manifest_digest: None,
            files: vec![PackageFile {
                name,
                url,
                sha256,
                sha512: None,
                size: None,
                media_type: None,
            }],
        })
    }
}

/// Tags that are versions first (by version), then the others alphabetically.
fn sort_tags(tags: Vec<String>) -> Vec<String> {
    let (mut versions, mut others): (Vec<(Version, String)>, Vec<String>) =
        (Vec::new(), Vec::new());
    for t in tags {
        match Version::parse(&t) {
            Ok(v) => versions.push((v, t)),
            Err(_) => others.push(t),
        }
    }
    versions.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    others.sort();
    versions.into_iter().map(|(_, t)| t).chain(others).collect()
}

/// Checks a feed's URL for its kind.
pub fn check_url(spec: &FeedSpec) -> Result<(), String> {
    let url = spec.url.trim();
    let probe = url.replace("{id}", "x").replace("{version}", "1");
    let parsed = url::Url::parse(&probe).map_err(|e| format!("invalid feed URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "invalid feed URL {url:?}: use an http:// or https:// URL with a host"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "invalid feed URL {:?}: put credentials in --username/--password, not in the URL",
            parsed.origin().ascii_serialization()
        ));
    }
    match spec.kind {
        FeedKind::Http => http_feed::check_template(url),
        FeedKind::Nuget | FeedKind::Oci if url.contains('{') => Err(format!(
            "the {} feed URL {url:?} has a '{{': templates are for http feeds",
            spec.kind
        )),
        _ => Ok(()),
    }
}

/// Lowercase hex SHA-512 of the file at `path`.
fn sha512_hex_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FeedKind, url: &str) -> FeedSpec {
        FeedSpec {
            name: "f".into(),
            kind,
            url: url.into(),
            credentials: None,
        }
    }

    #[test]
    fn urls_are_checked_per_kind() {
        assert!(check_url(&spec(FeedKind::Http, "https://h/{id}/{version}.zip")).is_ok());
        assert!(check_url(&spec(FeedKind::Http, "https://h/{id}.zip")).is_err());
        assert!(check_url(&spec(FeedKind::Nuget, "https://h/v3/index.json")).is_ok());
        assert!(check_url(&spec(FeedKind::Oci, "ftp://h")).is_err());
        let e = check_url(&spec(FeedKind::Oci, "https://u:secret@h")).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn repositories_and_tags() {
        let c = PackageClient::new(
            spec(FeedKind::Oci, "http://127.0.0.1:5000/team"),
            FeedClient::new(Default::default()).unwrap(),
        )
        .unwrap();
        assert_eq!(c.repository("app"), "team/app");
        assert_eq!(c.registry_origin(), "http://127.0.0.1:5000");
        assert_eq!(
            sort_tags(vec![
                "latest".into(),
                "1.10.0".into(),
                "1.2.0".into(),
                "dev".into()
            ]),
            ["1.2.0", "1.10.0", "dev", "latest"]
        );
    }
}
