//! `Host`: loads a proxy-wasm module into one or more wasmtime instances (workers) that share
//! one world, and drives it the way Envoy would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Extern, ExternType, Instance, Linker, Module, Store, Val};

use crate::abi::{self, Callback, VmState};
use crate::model::{
    Answer, Call, Ctx, Error, Forwarded, Headers, LocalResponse, LogLevel, LogLine, Metric,
    Outcome, Request, Response, Token,
};
use crate::world::{Event, Message, Stream, World};

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
                },
            );
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

    /// Sends a downstream request through the filter: context creation, request headers, body
    /// (if any), trailers (if any), stopping early if the filter replies or resets. Then
    /// answers callouts with the responder, if one is set.
    pub fn request(&mut self, req: Request) -> Result<Ctx, Error> {
        let worker = req.worker;
        let Some(root) = self.workers.get(worker).map(|w| w.root) else {
            return Err(Error::Usage(format!(
                "request on worker {worker}, but the host has {} worker(s)",
                self.workers.len()
            )));
        };
        let properties = request_properties(&req);
        let n_headers = req.headers.len() as u32;
        let (body_len, n_trailers) = (req.body.len() as u32, req.trailers.len() as u32);
        let id = {
            let mut world = self.world();
            let id = world.next_context;
            let mut props = properties;
            props
                .entry("request.id".into())
                .or_insert_with(|| format!("test-host-{id}").into_bytes());
            props
                .entry("connection_id".into())
                .or_insert_with(|| u64::from(id).to_le_bytes().to_vec());
            let stream = Stream::new(
                Message {
                    headers: req.headers,
                    body: req.body,
                    trailers: req.trailers,
                },
                props,
            );
            world.new_context(worker, root, Some(stream))
        };
        self.invoke(
            worker,
            Callback::ContextCreate,
            id,
            "proxy_on_context_create",
            &[i(id), i(root)],
        )?;
        let eos = body_len == 0 && n_trailers == 0;
        let a = self.invoke(
            worker,
            Callback::RequestHeaders,
            id,
            "proxy_on_request_headers",
            &[i(id), i(n_headers), i(eos as u32)],
        )?;
        self.after_request_callback(id, a, "proxy_on_request_headers");
        if body_len > 0 && !self.settled(id) {
            if let Some(s) = self.world().stream_mut(id) {
                s.body_seen = true;
            }
            let a = self.invoke(
                worker,
                Callback::RequestBody,
                id,
                "proxy_on_request_body",
                &[i(id), i(body_len), i((n_trailers == 0) as u32)],
            )?;
            self.after_request_callback(id, a, "proxy_on_request_body");
        }
        if n_trailers > 0 && !self.settled(id) {
            let a = self.invoke(
                worker,
                Callback::RequestTrailers,
                id,
                "proxy_on_request_trailers",
                &[i(id), i(n_trailers)],
            )?;
            self.after_request_callback(id, a, "proxy_on_request_trailers");
        }
        if let Some(s) = self.world().stream_mut(id) {
            s.request_delivered = true;
            if !s.paused && s.local_response.is_none() && !s.reset {
                s.forwarded = true;
            }
        }
        self.pump()?;
        Ok(Ctx(id))
    }

    fn settled(&self, ctx: u32) -> bool {
        self.world().stream(ctx).is_none_or(Stream::request_settled)
    }

    fn after_request_callback(&mut self, ctx: u32, action: Option<i32>, callback: &str) {
        let mut world = self.world();
        let paused = match action {
            None | Some(0) => false,
            Some(1) => true,
            Some(other) => {
                world.note(format!(
                    "{callback}: returned action {other}, which ABI 0.2.1 does not define (treated as Pause)"
                ));
                true
            }
        };
        if let Some(s) = world.stream_mut(ctx) {
            if s.local_response.is_none() {
                s.paused = paused;
            }
        }
    }

    /// Delivers an upstream response to a forwarded stream (response headers, body, trailers).
    pub fn respond(&mut self, ctx: Ctx, response: Response) -> Result<(), Error> {
        let worker = {
            let mut world = self.world();
            let worker = world.contexts.get(&ctx.0).map(|c| c.worker);
            match (worker, world.stream_mut(ctx.0)) {
                (Some(w), Some(s)) if s.forwarded => {
                    s.response = Some(Message {
                        headers: response.headers.clone(),
                        body: response.body.clone(),
                        trailers: response.trailers.clone(),
                    });
                    w
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "{ctx} was not forwarded upstream, so it cannot get an upstream response"
                    )))
                }
            }
        };
        let id = ctx.0;
        let (nh, nb, nt) = (
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        );
        let a = self.invoke(
            worker,
            Callback::ResponseHeaders,
            id,
            "proxy_on_response_headers",
            &[i(id), i(nh), i((nb == 0 && nt == 0) as u32)],
        )?;
        self.set_response_paused(id, a);
        if nb > 0 {
            let a = self.invoke(
                worker,
                Callback::ResponseBody,
                id,
                "proxy_on_response_body",
                &[i(id), i(nb), i((nt == 0) as u32)],
            )?;
            self.set_response_paused(id, a);
        }
        if nt > 0 {
            let a = self.invoke(
                worker,
                Callback::ResponseTrailers,
                id,
                "proxy_on_response_trailers",
                &[i(id), i(nt)],
            )?;
            self.set_response_paused(id, a);
        }
        if let Some(s) = self.world().stream_mut(id) {
            if !s.response_paused {
                s.response_delivered = true;
            }
        }
        self.pump()
    }

    fn set_response_paused(&mut self, ctx: u32, action: Option<i32>) {
        if let Some(s) = self.world().stream_mut(ctx) {
            s.response_paused = action.unwrap_or(0) != 0;
        }
    }

    /// The upstream response as the downstream client gets it (after the filter's changes),
    /// once the filter let it through.
    pub fn downstream_response(&self, ctx: Ctx) -> Option<Response> {
        let world = self.world();
        let s = world.stream(ctx.0)?;
        if !(s.response_delivered || (s.response.is_some() && !s.response_paused)) {
            return None;
        }
        s.response.as_ref().map(|m| Response {
            headers: m.headers.clone(),
            body: m.body.clone(),
            trailers: m.trailers.clone(),
        })
    }

    /// Ends the stream as Envoy does: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    /// Pending callouts of the stream are cancelled.
    pub fn finish(&mut self, ctx: Ctx) -> Result<(), Error> {
        let worker = self
            .world()
            .contexts
            .get(&ctx.0)
            .filter(|c| c.root != 0)
            .map(|c| c.worker)
            .ok_or_else(|| Error::Usage(format!("{ctx} is not a stream")))?;
        for (cb, name) in [
            (Callback::Log, "proxy_on_log"),
            (Callback::Done, "proxy_on_done"),
            (Callback::Delete, "proxy_on_delete"),
        ] {
            self.invoke(worker, cb, ctx.0, name, &[i(ctx.0)])?;
        }
        let mut world = self.world();
        world.calls.retain(|_, c| c.context != ctx);
        if let Some(s) = world.stream_mut(ctx.0) {
            s.finished = true;
        }
        Ok(())
    }

    /// Where the stream stands.
    pub fn outcome(&self, ctx: Ctx) -> Outcome {
        let world = self.world();
        match world.stream(ctx.0) {
            None => Outcome::Paused,
            Some(s) => {
                if let Some(r) = &s.local_response {
                    Outcome::Replied(r.clone())
                } else if s.reset {
                    Outcome::Reset
                } else if s.forwarded {
                    Outcome::Forwarded(Forwarded {
                        headers: s.request.headers.clone(),
                        body: s.request.body.clone(),
                        trailers: s.request.trailers.clone(),
                    })
                } else {
                    Outcome::Paused
                }
            }
        }
    }

    /// The local reply the filter sent on this stream, if any.
    pub fn local_response(&self, ctx: Ctx) -> Option<LocalResponse> {
        self.world().stream(ctx.0)?.local_response.clone()
    }

    /// The request as forwarded upstream, if the filter let it through.
    pub fn forwarded(&self, ctx: Ctx) -> Option<Forwarded> {
        match self.outcome(ctx) {
            Outcome::Forwarded(f) => Some(f),
            _ => None,
        }
    }

    /// Callouts dispatched by this context and not answered yet, oldest first.
    pub fn pending_calls(&self, ctx: Ctx) -> Vec<Call> {
        self.world()
            .calls
            .values()
            .filter(|c| c.context == ctx)
            .cloned()
            .collect()
    }

    /// Every pending callout, oldest first.
    pub fn all_pending_calls(&self) -> Vec<Call> {
        self.world().calls.values().cloned().collect()
    }

    /// Answers a callout: `proxy_on_http_call_response` with `:status` and these headers/body.
    pub fn answer(
        &mut self,
        token: Token,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        self.answer_with(token, Answer::respond(status, headers, body))
    }

    /// Fails a callout: `proxy_on_http_call_response` with `num_headers = 0`, as Envoy does on
    /// timeout, reset or connection failure.
    pub fn fail(&mut self, token: Token) -> Result<(), Error> {
        self.answer_with(token, Answer::Fail)
    }

    /// Answers a callout with an [`Answer`] (`Hold` does nothing).
    pub fn answer_with(&mut self, token: Token, answer: Answer) -> Result<(), Error> {
        match answer {
            Answer::Hold => {
                self.held.insert(token.0);
                Ok(())
            }
            Answer::Fail => self.deliver(token, None),
            Answer::Respond {
                status,
                headers,
                body,
            } => {
                let mut all: Headers = vec![(":status".into(), status.to_string())];
                all.extend(headers);
                self.deliver(
                    token,
                    Some(Message {
                        headers: all,
                        body,
                        trailers: Vec::new(),
                    }),
                )
            }
        }
    }

    fn deliver(&mut self, token: Token, response: Option<Message>) -> Result<(), Error> {
        let call = self
            .world()
            .calls
            .remove(&token.0)
            .ok_or_else(|| Error::Usage(format!("{token} is not pending")))?;
        self.held.remove(&token.0);
        let (nh, nb, nt) = response.as_ref().map_or((0, 0, 0), |m| {
            (
                m.headers.len() as u32,
                m.body.len() as u32,
                m.trailers.len() as u32,
            )
        });
        if let Some(w) = self.workers.get_mut(call.worker) {
            w.store.data_mut().call_response = response;
        }
        let result = self.invoke(
            call.worker,
            Callback::HttpCallResponse,
            call.context.0,
            "proxy_on_http_call_response",
            &[i(call.context.0), i(token.0), i(nh), i(nb), i(nt)],
        );
        if let Some(w) = self.workers.get_mut(call.worker) {
            w.store.data_mut().call_response = None;
        }
        result?;
        self.pump()
    }

    /// Answers every callout as it is dispatched (from now on, and those pending now).
    /// `Answer::Hold` leaves a call pending. Canned answers are fakes: name them so in tests.
    pub fn respond_with(
        &mut self,
        responder: impl FnMut(&Call) -> Answer + Send + 'static,
    ) -> Result<(), Error> {
        self.responder = Some(Box::new(responder));
        self.pump()
    }

    /// Forwards every callout to a real HTTP/1.1 server: `cluster name -> "host:port"`.
    /// Calls to other clusters fail (as Envoy fails a call to an unknown cluster's upstream).
    pub fn forward_to(&mut self, upstreams: &[(&str, &str)]) -> Result<(), Error> {
        let map: BTreeMap<String, String> = upstreams
            .iter()
            .map(|(c, a)| ((*c).to_owned(), (*a).to_owned()))
            .collect();
        self.respond_with(move |call| match map.get(&call.cluster) {
            Some(addr) => crate::forward::forward(addr, call),
            None => Answer::Fail,
        })
    }

    /// Stops answering callouts automatically.
    pub fn stop_responding(&mut self) {
        self.responder = None;
    }

    /// Runs deferred work until quiet: queue-ready notifications, then the responder.
    fn pump(&mut self) -> Result<(), Error> {
        loop {
            let event = self.world().events.pop_front();
            if let Some(Event::QueueReady {
                worker,
                root,
                queue,
            }) = event
            {
                self.invoke(
                    worker,
                    Callback::QueueReady,
                    root,
                    "proxy_on_queue_ready",
                    &[i(root), i(queue)],
                )?;
                continue;
            }
            if self.responder.is_none() {
                return Ok(());
            }
            let next = {
                let world = self.world();
                world
                    .calls
                    .values()
                    .find(|c| !self.held.contains(&c.token.0))
                    .cloned()
            };
            let Some(call) = next else { return Ok(()) };
            let mut responder = self.responder.take();
            let answer = responder.as_mut().map_or(Answer::Hold, |r| r(&call));
            if self.responder.is_none() {
                self.responder = responder;
            }
            if answer == Answer::Hold {
                self.held.insert(call.token.0);
            } else {
                self.answer_with(call.token, answer)?;
            }
        }
    }

    /// Virtual time, nanoseconds since the Unix epoch (starts at 2026-01-01T00:00:00Z).
    pub fn now_ns(&self) -> u64 {
        self.world().now_ns
    }

    /// Moves the virtual clock forward, firing due ticks (`proxy_on_tick`) and timing out due
    /// callouts (`proxy_on_http_call_response` with 0 headers) in time order.
    pub fn advance_clock(&mut self, by: Duration) -> Result<(), Error> {
        let target = self
            .now_ns()
            .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
        loop {
            let (timeout, tick) = {
                let world = self.world();
                let timeout = world.calls.values().map(|c| (c.deadline_ns, c.token)).min();
                let tick = world
                    .contexts
                    .iter()
                    .filter_map(|(id, c)| c.tick.map(|(_, due)| (due, *id, c.worker)))
                    .min();
                (timeout, tick)
            };
            match (timeout, tick) {
                (Some((due, token)), t)
                    if due <= target && t.is_none_or(|(td, _, _)| due <= td) =>
                {
                    self.world().now_ns = due;
                    self.deliver(token, None)?;
                }
                (_, Some((due, root, worker))) if due <= target => {
                    {
                        let mut world = self.world();
                        world.now_ns = due;
                        if let Some(c) = world.contexts.get_mut(&root) {
                            c.tick = c.tick.map(|(p, _)| (p, due + p));
                        }
                    }
                    self.invoke(worker, Callback::Tick, root, "proxy_on_tick", &[i(root)])?;
                    self.pump()?;
                }
                _ => break,
            }
        }
        self.world().now_ns = target;
        Ok(())
    }

    /// The tick period a worker's root context asked for, if any.
    pub fn tick_period(&self, worker: usize) -> Option<Duration> {
        let root = self.workers.get(worker)?.root;
        let world = self.world();
        world
            .contexts
            .get(&root)?
            .tick
            .map(|(p, _)| Duration::from_nanos(p))
    }

    /// Shared data: key -> (value, cas).
    pub fn shared_data(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        self.world()
            .shared
            .iter()
            .map(|(k, e)| (k.clone(), (e.value.clone(), e.cas)))
            .collect()
    }

    /// One shared-data value.
    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.world().shared.get(key).map(|e| e.value.clone())
    }

    /// Writes shared data from the outside (as another plugin would); bumps the CAS.
    pub fn set_shared_data(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        let mut world = self.world();
        let cas = world.bump_cas();
        world.shared.insert(
            key.to_owned(),
            crate::world::SharedEntry {
                value: value.into(),
                cas,
            },
        );
    }

    /// Removes a shared-data key (as an expiry outside the filter would).
    pub fn remove_shared_data(&mut self, key: &str) {
        self.world().shared.remove(key);
    }

    /// Simulates another worker writing a key between the module's read and its CAS write:
    /// the next `times` CAS writes (cas != 0) to a key starting with `prefix` are preceded by
    /// a write of `write(key, old_value)` with a new CAS, so they fail with `CasMismatch`.
    pub fn interfere(
        &mut self,
        prefix: &str,
        times: u32,
        write: impl FnMut(&str, &[u8]) -> Vec<u8> + Send + 'static,
    ) {
        self.world().interference = Some(crate::world::Interference {
            prefix: prefix.to_owned(),
            remaining: times,
            write: Box::new(write),
        });
    }

    /// How many `proxy_set_shared_data` calls were refused with `CasMismatch`.
    pub fn cas_mismatches(&self) -> u32 {
        self.world().cas_mismatches
    }

    /// Items waiting in a shared queue.
    pub fn queue_items(&self, name: &str) -> Vec<Vec<u8>> {
        self.world()
            .queues
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.items.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Enqueues an item into a queue the module registered, and notifies its owner.
    pub fn enqueue(&mut self, name: &str, item: impl Into<Vec<u8>>) -> Result<(), Error> {
        {
            let mut world = self.world();
            let Some(idx) = world.queues.iter().position(|q| q.name == name) else {
                return Err(Error::Usage(format!("no shared queue named {name:?}")));
            };
            world.queues[idx].items.push_back(item.into());
            let (worker, root) = world.queues[idx].owner;
            world.events.push_back(Event::QueueReady {
                worker,
                root,
                queue: idx as u32 + 1,
            });
        }
        self.pump()
    }

    /// Every metric the module defined.
    pub fn metrics(&self) -> Vec<Metric> {
        self.world()
            .metrics
            .iter()
            .map(|m| Metric {
                name: m.name.clone(),
                kind: m.kind,
                value: m.value,
                samples: m.samples.clone(),
            })
            .collect()
    }

    /// A metric's value (counter/gauge; sample count for a histogram).
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.world()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every captured log line (proxy_log, stdout, stderr), in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.world().logs.clone()
    }

    /// All log messages, one per line (handy in assertion messages).
    pub fn log_text(&self) -> String {
        self.world()
            .logs
            .iter()
            .map(|l| format!("[{:?}] {}", l.level, l.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether some log message contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.world().logs.iter().any(|l| l.message.contains(needle))
    }

    /// The level `proxy_get_log_level` reports (default Trace: everything is captured).
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.world().log_level = level;
    }

    /// ABI misuses the host refused, each naming the call (empty for a well-behaved filter).
    pub fn abi_errors(&self) -> Vec<String> {
        self.world().abi_errors.clone()
    }

    /// Largest linear memory seen across workers, in bytes.
    pub fn peak_memory_bytes(&self) -> usize {
        self.peak_memory
    }

    /// Fuel consumed so far by every callback (needs `Builder::fuel(true)`).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }
}

/// Properties Envoy exposes for a stream, derived from the request.
fn request_properties(req: &Request) -> BTreeMap<String, Vec<u8>> {
    let mut p = BTreeMap::new();
    let h = |n: &str| crate::model::find(&req.headers, n).unwrap_or("").to_owned();
    p.insert("source.address".to_owned(), req.peer.clone().into_bytes());
    if let Some(port) = req
        .peer
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<i64>().ok())
    {
        p.insert("source.port".to_owned(), port.to_le_bytes().to_vec());
    }
    p.insert(
        "destination.address".to_owned(),
        b"127.0.0.1:10000".to_vec(),
    );
    p.insert(
        "destination.port".to_owned(),
        10000i64.to_le_bytes().to_vec(),
    );
    let path = h(":path");
    p.insert(
        "request.url_path".to_owned(),
        path.split('?').next().unwrap_or("").as_bytes().to_vec(),
    );
    p.insert("request.path".to_owned(), path.into_bytes());
    p.insert("request.method".to_owned(), h(":method").into_bytes());
    p.insert("request.host".to_owned(), h(":authority").into_bytes());
    p.insert("request.scheme".to_owned(), h(":scheme").into_bytes());
    p.insert("request.protocol".to_owned(), b"HTTP/1.1".to_vec());
    if let Some(v) = &req.tls_version {
        p.insert("connection.tls_version".to_owned(), v.clone().into_bytes());
        p.insert("connection.mtls".to_owned(), vec![0]);
    }
    for (k, v) in &req.properties {
        p.insert(k.clone(), v.clone());
    }
    p
}
