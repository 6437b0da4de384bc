//! `Host`: loads a proxy-wasm module into one or more wasmtime instances (workers) that share
//! one world, and drives it the way Envoy would. `stream` drives HTTP streams, `calls` answers
//! callouts, `state` reads and changes the shared world (clock, shared data, queues, metrics,
//! logs).

mod calls;
mod state;
mod stream;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wasmtime::{
    CallHook, Config, Engine, Extern, ExternType, Instance, Linker, Module, Store, Val,
};

use crate::abi::{self, Callback, VmState};
use crate::model::{Answer, Call, Ctx, Error, LogLevel};
use crate::world::World;

type Responder = Box<dyn FnMut(&Call) -> Answer + Send>;

/// How to build a [`Host`]: `Host::builder(path).workers(2).fuel(true).build()`.
pub struct Builder {
    path: PathBuf,
    workers: usize,
    fuel: bool,
    vm_config: Vec<u8>,
    clusters: Option<BTreeSet<String>>,
    seed: Option<u64>,
    properties: Vec<(String, Vec<u8>)>,
}

impl Builder {
    /// Number of VM instances of the module (Envoy runs one per worker thread), sharing shared
    /// data, queues, metrics and the clock. Default 1.
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n.max(1);
        self
    }

    /// Count wasmtime fuel (≈ wasm operators executed); see [`Host::fuel_used`]. On by
    /// default (one compiled variant for every test); turn it off for wall-time benchmarks.
    pub fn fuel(mut self, on: bool) -> Builder {
        self.fuel = on;
        self
    }

    /// The VM configuration buffer given to `proxy_on_vm_start`.
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Builder {
        self.vm_config = bytes.into();
        self
    }

    /// Restrict `proxy_http_call` to these clusters (others get `BadArgument`, as in Envoy).
    /// By default any cluster name is accepted.
    pub fn clusters(mut self, names: &[&str]) -> Builder {
        self.clusters = Some(names.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Seed of the deterministic WASI `random_get`.
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// A plugin-wide property (`plugin_name`, `node.id`, …).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Builder {
        self.properties.push((path.to_owned(), value.into()));
        self
    }

    /// Compiles (once per process and file) and instantiates the module on every worker.
    pub fn build(self) -> Result<Host, Error> {
        let module = compile(&self.path, self.fuel)?;
        let engine = module.engine().clone();
        let world = Arc::new(Mutex::new(World::new()));
        {
            let mut w = lock(&world);
            w.vm_config = self.vm_config;
            w.clusters = self.clusters;
            if let Some(seed) = self.seed {
                w.rng = seed;
            }
            for (k, v) in self.properties {
                w.plugin_properties.insert(k, v);
            }
        }
        let mut linker: Linker<VmState> = Linker::new(&engine);
        abi::define(&mut linker).map_err(|e| Error::Load(format!("{e}")))?;
        crate::wasi::define(&mut linker).map_err(|e| Error::Load(format!("{e}")))?;
        let mut host = Host {
            world,
            workers: Vec::new(),
            responder: None,
            held: BTreeSet::new(),
            fuel: self.fuel,
            fuel_used: 0,
            peak_memory: 0,
            vm_started: false,
        };
        for index in 0..self.workers {
            let mut store = Store::new(
                &engine,
                VmState {
                    world: host.world.clone(),
                    worker: index,
                    effective: 0,
                    callback: Callback::Idle,
                    call_response: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    host_calls: 0,
                },
            );
            store.call_hook(|mut data, hook| {
                if matches!(hook, CallHook::CallingHost) {
                    data.data_mut().host_calls += 1;
                }
                Ok(())
            });
            if self.fuel {
                store
                    .set_fuel(u64::MAX)
                    .map_err(|e| Error::Load(format!("{e}")))?;
            }
            if index == 0 {
                refuse_unknown_imports(&mut linker, &mut store, &module)?;
            }
            let instance = linker.instantiate(&mut store, &module).map_err(|e| {
                Error::Load(format!("instantiating {}: {e:?}", self.path.display()))
            })?;
            let root = lock(&host.world).new_context(index, 0, None);
            host.workers.push(Worker {
                store,
                instance,
                root,
                crashed: None,
            });
            for start in ["_initialize", "_start"] {
                let w = &mut host.workers[index];
                if w.instance.get_func(&mut w.store, start).is_some() {
                    host.invoke(index, Callback::Initialize, 0, start, &[])?;
                    break;
                }
            }
            host.invoke(
                index,
                Callback::ContextCreate,
                root,
                "proxy_on_context_create",
                &[i(root), i(0)],
            )?;
        }
        Ok(host)
    }
}

struct Worker {
    store: Store<VmState>,
    instance: Instance,
    root: u32,
    crashed: Option<String>,
}

/// A proxy-wasm host: one plugin, one or more VM instances, one shared world. No globals: make
/// one per test.
pub struct Host {
    world: Arc<Mutex<World>>,
    workers: Vec<Worker>,
    responder: Option<Responder>,
    held: BTreeSet<u32>,
    fuel: bool,
    fuel_used: u64,
    peak_memory: usize,
    vm_started: bool,
}

fn i(v: u32) -> Val {
    Val::I32(v as i32)
}

fn lock(world: &Arc<Mutex<World>>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

type ModuleCache = Mutex<HashMap<(PathBuf, bool, u64, Option<std::time::SystemTime>), Module>>;

/// Compiled modules, per process: compiling a filter takes a while, instantiating is cheap.
fn compile(path: &Path, fuel: bool) -> Result<Module, Error> {
    static CACHE: OnceLock<ModuleCache> = OnceLock::new();
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Load(format!(
            "{}: {e} (build it first, e.g. `cargo build --target wasm32-wasip1 --release -p <crate>`)",
            path.display()
        ))
    })?;
    let key = (path.to_path_buf(), fuel, meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Default::default);
    // Held while compiling, so parallel tests wait for one compilation instead of repeating it.
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = cache.get(&key) {
        return Ok(m.clone());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
    let mut config = Config::new();
    config.consume_fuel(fuel);
    let engine = Engine::new(&config).map_err(|e| Error::Load(format!("{e}")))?;
    let module = match load_compiled(&engine, &bytes, fuel) {
        Some(m) => m,
        None => {
            let m = Module::new(&engine, &bytes)
                .map_err(|e| Error::Load(format!("{}: {e:?}", path.display())))?;
            store_compiled(&m, &bytes, fuel);
            m
        }
    };
    let exports: BTreeSet<&str> = module.exports().map(|e| e.name()).collect();
    if !exports.contains("proxy_abi_version_0_2_1") {
        let found: Vec<&&str> = exports
            .iter()
            .filter(|n| n.starts_with("proxy_abi"))
            .collect();
        return Err(Error::Load(format!(
            "{} does not export proxy_abi_version_0_2_1 (ABI exports found: {found:?}); this host speaks ABI 0.2.1 only",
            path.display()
        )));
    }
    for required in ["memory", "proxy_on_context_create"] {
        if !exports.contains(required) {
            return Err(Error::Load(format!(
                "{} does not export {required}",
                path.display()
            )));
        }
    }
    if !exports.contains("proxy_on_memory_allocate") && !exports.contains("malloc") {
        return Err(Error::Load(format!(
            "{} exports neither proxy_on_memory_allocate nor malloc",
            path.display()
        )));
    }
    cache.insert(key, module.clone());
    Ok(module)
}

/// Compiled code cached on disk (`$DYNEDGE_TEST_HOST_CACHE`, else the temp dir), keyed by the
/// module's bytes: cranelift in a debug build takes tens of seconds on a large filter.
fn cache_file(bytes: &[u8], fuel: bool) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    fuel.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    let dir = std::env::var_os("DYNEDGE_TEST_HOST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("dynedge-test-host-cache"));
    dir.join(format!("{:016x}.cwasm", h.finish()))
}

fn load_compiled(engine: &Engine, bytes: &[u8], fuel: bool) -> Option<Module> {
    let file = cache_file(bytes, fuel);
    if !file.is_file() {
        return None;
    }
    // SAFETY: the file was written by `store_compiled` from `Module::serialize` for this exact
    // module and engine settings (wasmtime re-checks version and settings and errors if they
    // differ); it is only as trusted as the cache directory.
    unsafe { Module::deserialize_file(engine, &file) }.ok()
}

fn store_compiled(module: &Module, bytes: &[u8], fuel: bool) {
    let file = cache_file(bytes, fuel);
    let Ok(data) = module.serialize() else { return };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Write then rename, so a parallel reader never sees half a file.
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
}

/// Every import the host does not provide becomes a function that traps naming the call.
fn refuse_unknown_imports(
    linker: &mut Linker<VmState>,
    store: &mut Store<VmState>,
    module: &Module,
) -> Result<(), Error> {
    let mut missing = Vec::new();
    for import in module.imports() {
        if let ExternType::Func(ty) = import.ty() {
            if linker
                .get(&mut *store, import.module(), import.name())
                .is_err()
            {
                missing.push((import.module().to_owned(), import.name().to_owned(), ty));
            }
        }
    }
    for (m, n, ty) in missing {
        let why = abi::refusal(&m, &n);
        linker
            .func_new(&m, &n, ty, move |_c, _args, _results| {
                Err(wasmtime::format_err!("{why}"))
            })
            .map_err(|e| Error::Load(format!("{e}")))?;
    }
    Ok(())
}

impl Host {
    /// Loads the module with one worker.
    pub fn load(path: impl AsRef<Path>) -> Result<Host, Error> {
        Host::builder(path).build()
    }

    /// A builder for more workers, fuel metering, VM configuration, cluster names, seed.
    pub fn builder(path: impl AsRef<Path>) -> Builder {
        Builder {
            path: path.as_ref().to_path_buf(),
            workers: 1,
            fuel: true,
            vm_config: Vec::new(),
            clusters: None,
            seed: None,
            properties: Vec::new(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Calls an export on a worker's VM with the effective context `ctx`. Missing optional
    /// callbacks return `None`. A trap becomes [`Error::Trap`] with the host's notes and the
    /// module's last critical log lines, and marks the worker crashed (as Envoy fails the VM).
    fn invoke(
        &mut self,
        worker: usize,
        callback: Callback,
        ctx: u32,
        export: &str,
        args: &[Val],
    ) -> Result<Option<i32>, Error> {
        let Some(w) = self.workers.get_mut(worker) else {
            return Err(Error::Usage(format!("no worker {worker}")));
        };
        if let Some(why) = &w.crashed {
            return Err(Error::Usage(format!(
                "worker {worker} crashed earlier ({why}); cannot call {export}"
            )));
        }
        let Some(func) = w.instance.get_func(&mut w.store, export) else {
            return Ok(None);
        };
        let (notes_before, logs_before) = {
            let world = lock(&self.world);
            (world.abi_errors.len(), world.logs.len())
        };
        let fuel_before = if self.fuel {
            w.store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        let saved = (w.store.data().callback, w.store.data().effective);
        w.store.data_mut().callback = callback;
        w.store.data_mut().effective = ctx;
        let n_results = func.ty(&w.store).results().len();
        let mut results = vec![Val::I32(0); n_results];
        let outcome = func.call(&mut w.store, args, &mut results);
        w.store.data_mut().callback = saved.0;
        w.store.data_mut().effective = saved.1;
        if self.fuel {
            self.fuel_used += fuel_before.saturating_sub(w.store.get_fuel().unwrap_or(0));
        }
        if let Some(Extern::Memory(m)) = w.instance.get_export(&mut w.store, "memory") {
            self.peak_memory = self.peak_memory.max(m.data_size(&w.store));
        }
        match outcome {
            Ok(()) => Ok(results.first().and_then(Val::i32)),
            Err(e) => {
                let world = lock(&self.world);
                let mut message = format!("{e:?}");
                for n in &world.abi_errors[notes_before..] {
                    message.push_str(&format!("\n  host note: {n}"));
                }
                for l in &world.logs[logs_before..] {
                    if l.level >= LogLevel::Error {
                        message.push_str(&format!("\n  module log: {}", l.message));
                    }
                }
                drop(world);
                w.crashed = Some(format!("trap in {export}"));
                Err(Error::Trap {
                    callback: export.to_owned(),
                    context: Ctx(ctx),
                    message,
                })
            }
        }
    }

    /// The root context of a worker.
    pub fn root(&self, worker: usize) -> Option<Ctx> {
        self.workers.get(worker).map(|w| Ctx(w.root))
    }

    /// Number of workers (VM instances).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Starts every VM (`proxy_on_vm_start`, first time only) and configures every root
    /// (`proxy_on_configure`) with `config`. `Ok(false)` when any of them returned false.
    pub fn configure(&mut self, config: impl AsRef<[u8]>) -> Result<bool, Error> {
        let config = config.as_ref().to_vec();
        let config_len = config.len() as u32;
        let vm_len = {
            let mut world = self.world();
            world.plugin_config = config;
            world.vm_config.len() as u32
        };
        let mut all = true;
        for worker in 0..self.workers.len() {
            let root = self.workers[worker].root;
            if !self.vm_started {
                let ok = self.invoke(
                    worker,
                    Callback::VmStart,
                    root,
                    "proxy_on_vm_start",
                    &[i(root), i(vm_len)],
                )?;
                all &= ok.unwrap_or(1) != 0;
            }
            let ok = self.invoke(
                worker,
                Callback::Configure,
                root,
                "proxy_on_configure",
                &[i(root), i(config_len)],
            )?;
            all &= ok.unwrap_or(1) != 0;
        }
        self.vm_started = true;
        self.pump()?;
        Ok(all)
    }
}
