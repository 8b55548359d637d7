//! The engine, the linker and loading components.

use crate::bindings::StepPre;
use crate::cache::CompiledCache;
use crate::limits::Limits;
use crate::state::StepState;
use crate::step::StepPlugin;
use octo_manifest::{Manifest, ManifestError, PluginKind, SectionError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticks. Deadlines and cancellation are checked, and the guest yields to the async
/// executor, once per tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits and places for a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Linear memory a plugin instance may use in total (default 256 MiB).
    pub memory_limit: usize,
    /// How long one step may run before it is stopped (default 10 minutes).
    pub step_deadline: Duration,
    /// How many plugin instances may be alive at once (pool size; default 100).
    pub max_instances: u32,
    /// How instances get their memories, tables and stacks (default: a pool reserved up front).
    pub allocation: Allocation,
    /// Where compiled code is cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// PEM certificates plugins' HTTPS requests trust in addition to the Web PKI roots.
    pub trusted_certificates: Vec<Vec<u8>>,
    /// Size limits on what steps produce and what the host loads.
    pub limits: Limits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit: 256 * 1024 * 1024,
            step_deadline: Duration::from_secs(600),
            max_instances: 100,
            allocation: Allocation::Pooling,
            cache_dir: None,
            trusted_certificates: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How a [`Runtime`] allocates what its instances use. Either way a store holds at most what one
/// slot of the pool holds (memory size, memories, tables, core instances: see `StoreLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// A pool of `max_instances` slots reserved when the runtime starts: instantiation is cheap and
    /// slots are reused. For long-lived processes (the server, the tentacle).
    #[default]
    Pooling,
    /// Mapped when an instance is created, unmapped when it is dropped: nothing reserved at start.
    /// For one-shot runs (`octo run-step`), where setting up the pool costs more than the run gains.
    OnDemand,
}

/// Memories and tables one component instance may have.
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 16;
/// Core instances per component instance the pool is sized for.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Why a component cannot be loaded. Each variant's message is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest section is missing, malformed, or the bytes are not a component.
    #[error(transparent)]
    Manifest(#[from] SectionError),
    /// Wrong kind or unsupported API version.
    #[error(transparent)]
    Incompatible(#[from] ManifestError),
    /// wasmtime rejected the component (invalid binary, unsupported feature).
    #[error("cannot compile plugin {id}: {reason}")]
    Compile {
        /// Plugin id from the manifest.
        id: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// The component does not fit the world it claims (missing exports, unknown imports).
    #[error("plugin {id} does not implement the octo:plugin {kind} world: {reason}")]
    World {
        /// Plugin id.
        id: String,
        /// The world.
        kind: PluginKind,
        /// What did not link.
        reason: String,
    },
    /// The compiled-code cache could not be written or read (other than a stale entry).
    #[error("compiled-code cache: {0}")]
    Cache(String),
}

/// The plugin sandbox: one engine, shared by every plugin this process runs.
pub struct Runtime {
    pub(crate) engine: Engine,
    step_linker: Linker<StepState>,
    cache: CompiledCache,
    pub(crate) config: RuntimeConfig,
    pub(crate) client_tls: Arc<rustls::ClientConfig>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Creates the engine (pooling or on-demand allocator, epoch interruption) and starts the epoch
    /// ticker thread.
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        let strategy = match config.allocation {
            Allocation::Pooling => {
                let mut pool = PoolingAllocationConfig::default();
                let n = config.max_instances.max(1);
                // A Rust wasip2 component has one memory and a handful of core instances (main
                // module plus the adapter shims); leave headroom for components from other
                // toolchains.
                pool.total_component_instances(n)
                    .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT)
                    .total_memories(n * 2)
                    .total_tables(n * 8)
                    .total_stacks(n)
                    .max_memories_per_component(MEMORIES_PER_COMPONENT)
                    .max_tables_per_component(TABLES_PER_COMPONENT)
                    .max_memory_size(config.memory_limit)
                    // Reset the first pages of a reused slot with memset instead of madvise: cheaper
                    // for the small, short-lived instances steps are (see the warm-invocation
                    // benchmark).
                    .linear_memory_keep_resident(64 << 10)
                    .table_keep_resident(1 << 16)
                    .async_stack_keep_resident(1 << 16);
                InstanceAllocationStrategy::Pooling(pool)
            }
            // The store's limiter holds each store to one slot's worth (see `StoreLimits`).
            Allocation::OnDemand => InstanceAllocationStrategy::OnDemand,
        };
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(strategy);
        let engine = Engine::new(&wasm)?;

        let mut step_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut step_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut step_linker)?;
        // Our own interfaces only: WASI and wasi:http were added above.
        use crate::bindings::octo::plugin::{log, process, variables};
        log::add_to_linker::<StepState, HasSelf<StepState>>(&mut step_linker, |s| s)?;
        variables::add_to_linker::<StepState, HasSelf<StepState>>(&mut step_linker, |s| s)?;
        process::add_to_linker::<StepState, HasSelf<StepState>>(&mut step_linker, |s| s)?;

        if let Some(dir) = &config.cache_dir {
            crate::probe_cache::remember_in(dir.clone());
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        let cache = CompiledCache::new(config.cache_dir.clone(), &engine);
        let client_tls = crate::http_client::client_tls(&config.trusted_certificates)
            .map_err(wasmtime::Error::msg)?;
        Ok(Runtime {
            engine,
            step_linker,
            cache,
            config,
            client_tls,
            ticker_stop,
        })
    }

    /// What one store may create: what the pool (sized by `max_instances`) could give one component
    /// instance, enforced by the store's limiter with either allocator.
    pub(crate) fn store_counts(&self) -> crate::limits::StoreCounts {
        let n = self.config.max_instances.max(1);
        crate::limits::StoreCounts {
            core_instances: (n * CORE_INSTANCES_PER_COMPONENT) as usize,
            memories: MEMORIES_PER_COMPONENT.min(n * 2) as usize,
            tables: TABLES_PER_COMPONENT.min(n * 8) as usize,
        }
    }

    /// The limits this runtime enforces.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Loads a step plugin: manifest, kind and API checks, compile (or cached), pre-instantiate.
    pub fn load_step(&self, bytes: &[u8]) -> Result<StepPlugin, LoadError> {
        self.load_step_with_sha256(bytes, None)
    }

    /// [`Runtime::load_step`], given the sha256 (hex) of `bytes` when the caller already has it (a
    /// built-in's, computed when Octo was built), which saves hashing them again. It must be the
    /// digest of these very bytes: it keys the compiled-code cache and the grants bound to them.
    pub fn load_step_with_sha256(
        &self,
        bytes: &[u8],
        sha256: Option<&str>,
    ) -> Result<StepPlugin, LoadError> {
        let manifest = octo_manifest::read_manifest_within(bytes, &self.config.limits.component())?;
        manifest.check_kind(PluginKind::Step)?;
        manifest.check_api_version()?;
        let digest = match sha256 {
            Some(known) => known.to_owned(),
            None => crate::sha256_hex(bytes),
        };
        let component = self.compile(&manifest, bytes, &digest)?;
        let world_error = |e: wasmtime::Error| LoadError::World {
            id: manifest.id.clone(),
            kind: PluginKind::Step,
            reason: one_line(&e),
        };
        let pre = self
            .step_linker
            .instantiate_pre(&component)
            .map_err(world_error)?;
        let pre = StepPre::new(pre).map_err(world_error)?;
        Ok(StepPlugin::new(manifest, digest, pre))
    }

    /// The linker every plugin links against (steps and vendor plugins).
    pub(crate) fn step_linker(&self) -> &Linker<StepState> {
        &self.step_linker
    }

    pub(crate) fn compile_component(
        &self,
        manifest: &Manifest,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        self.compile(manifest, bytes, digest)
    }

    fn compile(
        &self,
        manifest: &Manifest,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        self.cache
            .load_or_compile(&self.engine, bytes, digest)
            .map_err(|e| match e {
                crate::cache::CacheError::Compile(e) => LoadError::Compile {
                    id: manifest.id.clone(),
                    reason: one_line(&e),
                },
                crate::cache::CacheError::Io(e) => LoadError::Cache(e),
            })
    }

    /// Whether compiled code for these bytes is already in the on-disk cache.
    pub fn is_cached(&self, bytes: &[u8]) -> bool {
        self.cache.contains(&crate::sha256_hex(bytes))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("octo-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}

/// wasmtime errors carry a chain of causes over several lines; users get one.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
