//! The state every VM instance (worker) of one host shares: clock, shared data, queues,
//! metrics, logs, contexts, pending callouts. Envoy keeps the same things process-wide.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::model::{Call, Headers, LocalResponse, LogLevel, LogLine, MetricKind, Token};

pub(crate) struct SharedEntry {
    pub value: Vec<u8>,
    pub cas: u32,
}

pub(crate) struct Queue {
    pub name: String,
    pub vm_id: String,
    pub owner: (usize, u32),
    pub items: VecDeque<Vec<u8>>,
}

pub(crate) struct MetricState {
    pub name: String,
    pub kind: MetricKind,
    pub value: u64,
    pub samples: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct Message {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// One HTTP stream (an HTTP context).
pub(crate) struct Stream {
    pub request: Message,
    pub response: Option<Message>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub local_response: Option<LocalResponse>,
    /// Every request callback has been delivered.
    pub request_delivered: bool,
    /// The body callback has run, so the body buffer exists.
    pub body_seen: bool,
    pub paused: bool,
    pub forwarded: bool,
    pub response_paused: bool,
    pub response_delivered: bool,
    pub reset: bool,
    pub finished: bool,
}

pub(crate) struct ContextState {
    pub worker: usize,
    /// 0 for a root context.
    pub root: u32,
    /// Tick period and next due time, in virtual nanoseconds (root contexts only).
    pub tick: Option<(u64, u64)>,
    pub stream: Option<Stream>,
}

pub(crate) enum Event {
    QueueReady {
        worker: usize,
        root: u32,
        queue: u32,
    },
}

/// A write by "another worker" injected just before the module's CAS write to a matching key,
/// as if it had landed between the module's read and its write (Envoy makes this race hard
/// to provoke).
/// `write(key, old_value) -> new_value`.
pub(crate) type InterferingWrite = Box<dyn FnMut(&str, &[u8]) -> Vec<u8> + Send>;

pub(crate) struct Interference {
    pub prefix: String,
    pub remaining: u32,
    pub write: InterferingWrite,
}

pub(crate) struct World {
    pub now_ns: u64,
    pub shared: BTreeMap<String, SharedEntry>,
    pub next_cas: u32,
    pub queues: Vec<Queue>,
    pub metrics: Vec<MetricState>,
    pub metric_ids: HashMap<String, u32>,
    pub logs: Vec<LogLine>,
    pub abi_errors: Vec<String>,
    pub contexts: BTreeMap<u32, ContextState>,
    pub calls: BTreeMap<u32, Call>,
    pub next_token: u32,
    pub next_context: u32,
    pub events: VecDeque<Event>,
    pub clusters: Option<BTreeSet<String>>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub plugin_properties: BTreeMap<String, Vec<u8>>,
    pub rng: u64,
    pub log_level: LogLevel,
    pub interference: Option<Interference>,
    pub cas_mismatches: u32,
}

/// 2026-01-01T00:00:00Z: the virtual clock's start, so tests see a plausible wall time.
pub(crate) const EPOCH_NS: u64 = 1_767_225_600 * 1_000_000_000;

impl World {
    pub fn new() -> World {
        let mut plugin_properties = BTreeMap::new();
        plugin_properties.insert("plugin_name".to_owned(), b"dynedge".to_vec());
        plugin_properties.insert("plugin_root_id".to_owned(), b"dynedge".to_vec());
        plugin_properties.insert("plugin_vm_id".to_owned(), b"dynedge".to_vec());
        plugin_properties.insert("node.id".to_owned(), b"test-host".to_vec());
        plugin_properties.insert("cluster_name".to_owned(), b"test-host".to_vec());
        World {
            now_ns: EPOCH_NS,
            shared: BTreeMap::new(),
            next_cas: 1,
            queues: Vec::new(),
            metrics: Vec::new(),
            metric_ids: HashMap::new(),
            logs: Vec::new(),
            abi_errors: Vec::new(),
            contexts: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_token: 1,
            next_context: 1,
            events: VecDeque::new(),
            clusters: None,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            plugin_properties,
            rng: 0x5eed_0fd1_ed9e,
            log_level: LogLevel::Trace,
            interference: None,
            cas_mismatches: 0,
        }
    }

    pub fn new_context(&mut self, worker: usize, root: u32, stream: Option<Stream>) -> u32 {
        let id = self.next_context;
        self.next_context += 1;
        self.contexts.insert(
            id,
            ContextState {
                worker,
                root,
                tick: None,
                stream,
            },
        );
        id
    }

    pub fn next_token(&mut self) -> Token {
        let t = self.next_token;
        self.next_token += 1;
        Token(t)
    }

    pub fn bump_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        // 0 means "no CAS" in the ABI, so skip it on wrap-around.
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }

    /// splitmix64: deterministic bytes for WASI `random_get`, seedable per host.
    pub fn random_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Applies a pending interference to `key` (called before a CAS write).
    pub fn interfere(&mut self, key: &str) {
        let Some(i) = self.interference.as_mut() else {
            return;
        };
        if i.remaining == 0 || !key.starts_with(&i.prefix) {
            return;
        }
        i.remaining -= 1;
        let old = self
            .shared
            .get(key)
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let value = (i.write)(key, &old);
        let cas = self.bump_cas();
        self.shared
            .insert(key.to_owned(), SharedEntry { value, cas });
    }

    pub fn note(&mut self, message: String) {
        self.abi_errors.push(message);
    }

    pub fn stream(&self, ctx: u32) -> Option<&Stream> {
        self.contexts.get(&ctx).and_then(|c| c.stream.as_ref())
    }

    pub fn stream_mut(&mut self, ctx: u32) -> Option<&mut Stream> {
        self.contexts.get_mut(&ctx).and_then(|c| c.stream.as_mut())
    }

    pub fn log(&mut self, line: LogLine) {
        self.logs.push(line);
    }
}

impl Stream {
    pub fn new(request: Message, properties: BTreeMap<String, Vec<u8>>) -> Stream {
        Stream {
            request,
            response: None,
            properties,
            local_response: None,
            request_delivered: false,
            body_seen: false,
            paused: false,
            forwarded: false,
            response_paused: false,
            response_delivered: false,
            reset: false,
            finished: false,
        }
    }

    /// The stream is over for the request path: replied, reset or forwarded.
    pub fn request_settled(&self) -> bool {
        self.local_response.is_some() || self.reset || self.forwarded
    }
}
