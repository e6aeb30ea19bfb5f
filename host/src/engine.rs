//! The wasmtime engine: its configuration (pooling allocator sized from the
//! limits, epoch interruption), the epoch ticker request deadlines count in,
//! and the on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::Limits;

/// How often the epoch ticks: a running guest yields to the async workers once per tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much of a freed slot's memory (and of its tables) is kept and reset in place:
/// more than a component touches serving a typical request (its stack and a small heap).
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// How many freed slots are decommitted together.
const DECOMMIT_BATCH: usize = 16;

/// Builds the engine and starts the thread that advances its epoch.
pub fn start(limits: &Limits) -> Result<Engine> {
    let engine = build(limits)?;
    let ticking = engine.clone();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
    Ok(engine)
}

fn build(limits: &Limits) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Components here are wasi:http 0.2 proxies, called one request per store: the
    // component-model-async machinery (task tables, a worker fiber disposed with an
    // error value on every store's drop) would be set up and torn down per request
    // for nothing.
    config.concurrency_support(false);
    // Epoch interruption makes a running guest yield once per tick (`invoke`), so a guest
    // stuck in a loop still meets its request deadline.
    config.epoch_interruption(true);
    // Public, chained and streaming requests each have their own slots.
    let instances = (limits.max_concurrent_requests * 2 + limits.max_streaming_requests) as u32;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .max_memory_size(limits.memory_bytes)
        .max_core_instances_per_component(limits.instances_per_request as u32)
        .max_tables_per_component(limits.instances_per_request as u32)
        .max_memories_per_component(4)
        // A freed slot is reset in place, only the pages the guest dirtied (PAGEMAP_SCAN
        // where the kernel has it), instead of by madvise: that cost a page fault per
        // touched page on the slot's next use and a TLB shootdown across threads.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto)
        // What is decommitted still is decommitted in batches: fewer shootdowns.
        .decommit_batch_size(DECOMMIT_BATCH);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Compiles a component, or loads its machine code from the on-disk cache.
/// The cache key covers the `.wasm` bytes and the engine's configuration.
#[allow(
    unsafe_code,
    reason = "wasmtime's deserialize trusts its input; each use says why it may"
)]
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    id: &str,
    source: &Path,
) -> Result<Component> {
    let bytes = std::fs::read(source).map_err(|err| {
        anyhow!(
            "component {id:?}: cannot read {} ({err}); build the components first (`cargo xtask build` or `spin build`)",
            source.display()
        )
    })?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!("{:x}-{:016x}", Sha256::digest(&bytes), engine_hash.finish());
    let cached = cache_dir.join(format!("{}.cwasm", &key[..48]));
    if cached.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (part of the file name), in the
        // host's own state directory.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(err) => tracing::warn!("ignoring unusable cache entry {}: {err}", cached.display()),
        }
    }
    let started = Instant::now();
    let precompiled = engine.precompile_component(&bytes).map_err(|err| {
        anyhow!(
            "component {id:?}: {} is not a valid component: {err}",
            source.display()
        )
    })?;
    tracing::info!(component = id, "compiled in {:?}", started.elapsed());
    std::fs::create_dir_all(cache_dir)?;
    // Several hosts may share a cache (tests do): write privately, rename atomically.
    let temp = cached.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, &precompiled)?;
    std::fs::rename(&temp, &cached)?;
    // SAFETY: produced just above by this engine.
    Ok(unsafe { Component::deserialize(engine, &precompiled)? })
}
