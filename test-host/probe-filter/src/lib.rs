//! The probe: a test filter for dynedge-test-host (in the spirit of Kong's ngx_wasm_module
//! probe filters). The request header `x-probe` picks one operation; `x-probe-arg` is its
//! argument. Results come back as local replies, logs, shared data and metrics.
//!
//! Plugin configuration is `key=value` lines: `reject=1` refuses it, `tick_ms=N` sets a tick.
#![allow(clippy::panic)] // the `panic` operation panics on purpose

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { config: Rc::new(String::new()), vm_config: Rc::new(String::new()), queue: None })
    });
}}

#[link(wasm_import_module = "env")]
extern "C" {
    /// Not part of any ABI: calling it must be a clear error from the host.
    fn proxy_probe_made_up_call() -> u32;
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

struct ProbeRoot {
    config: Rc<String>,
    vm_config: Rc<String>,
    queue: Option<u32>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let vm = self.get_vm_configuration().unwrap_or_default();
        self.vm_config = Rc::new(String::from_utf8_lossy(&vm).into_owned());
        log(
            LogLevel::Info,
            &format!("vm started with {} bytes of VM configuration", vm.len()),
        );
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config).into_owned();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("reject", _)) => {
                    log(
                        LogLevel::Error,
                        "probe: configuration rejected on purpose (line `reject`)",
                    );
                    return false;
                }
                Some(("tick_ms", n)) => {
                    let ms = n.trim().parse().unwrap_or(0);
                    self.set_tick_period(Duration::from_millis(ms));
                }
                _ => {}
            }
        }
        self.queue = hostcalls::register_shared_queue("probe-queue").ok();
        self.config = Rc::new(text);
        true
    }

    fn on_tick(&mut self) {
        let (value, cas) = self.get_shared_data("ticks");
        let n: u64 = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
            + 1;
        let _ = self.set_shared_data("ticks", Some(n.to_string().as_bytes()), cas);
        log(LogLevel::Info, &format!("tick {n}"));
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            let text = String::from_utf8_lossy(&item).into_owned();
            log(LogLevel::Info, &format!("dequeued {text}"));
            let _ = self.set_shared_data("queue-last", Some(text.as_bytes()), None);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: context_id,
            config: self.config.clone(),
            vm_config: self.vm_config.clone(),
            op: String::new(),
            arg: String::new(),
            cas: None,
            value: 0,
            retries: Cell::new(0),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    config: Rc<String>,
    vm_config: Rc<String>,
    op: String,
    arg: String,
    cas: Option<u32>,
    value: u64,
    retries: Cell<u32>,
}

fn reply(ctx: &dyn HttpContext, status: u32, body: &str) -> Action {
    ctx.send_http_response(status, vec![("x-probe", "reply")], Some(body.as_bytes()));
    Action::Pause
}

fn read_counter(ctx: &dyn Context, key: &str) -> (u64, Option<u32>) {
    let (value, cas) = ctx.get_shared_data(key);
    let n = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (n, cas)
}

impl Probe {
    fn callout(&self, cluster: &str, with_authority: bool) -> Result<u32, Status> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", "/probe"),
            ("x-from", "probe"),
        ];
        if with_authority {
            headers.push((":authority", "backend.test"));
        }
        self.dispatch_http_call(
            cluster,
            headers,
            Some(b"ping"),
            vec![],
            Duration::from_millis(500),
        )
    }
}

impl Context for Probe {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        if num_headers == 0 {
            reply(self, 502, "callout failed");
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        match self.op.as_str() {
            "callout-continue" => {
                self.set_http_request_header("x-callout-status", Some(&status));
                self.resume_http_request();
            }
            "cas" | "cas-retry" => {
                let mut cas = self.cas;
                let mut next = self.value + 1;
                loop {
                    match self.set_shared_data(&self.arg, Some(next.to_string().as_bytes()), cas) {
                        Ok(()) => {
                            let retries = self.retries.get();
                            reply(self, 200, &format!("stored {next} after {retries} retries"));
                            return;
                        }
                        Err(Status::CasMismatch) if self.op == "cas-retry" => {
                            self.retries.set(self.retries.get() + 1);
                            let (n, c) = read_counter(self, &self.arg);
                            next = n + 1;
                            cas = c;
                        }
                        Err(e) => {
                            reply(self, 409, &format!("{e:?}"));
                            return;
                        }
                    }
                }
            }
            _ => {
                reply(self, 200, &format!("status={status} body={body}"));
            }
        }
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.op = self.get_http_request_header("x-probe").unwrap_or_default();
        self.arg = self
            .get_http_request_header("x-probe-arg")
            .unwrap_or_default();
        log(
            LogLevel::Debug,
            &format!("probe {} op {}", self.id, self.op),
        );
        match self.op.as_str() {
            "config" => reply(self, 200, &self.config.clone()),
            "vm-config" => reply(self, 200, &self.vm_config.clone()),
            "headers" => {
                let text: String = self
                    .get_http_request_headers()
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}\n"))
                    .collect();
                reply(self, 200, &text)
            }
            "mutate" => {
                self.add_http_request_header("x-probe-added", "yes");
                self.set_http_request_header("user-agent", Some("probe"));
                self.set_http_request_header("x-remove-me", None);
                Action::Continue
            }
            "body" if !end_of_stream => Action::Pause,
            "body-at-headers" => {
                let body = self.get_http_request_body(0, 100);
                reply(self, 200, &format!("{body:?}"))
            }
            "property" => {
                let path: Vec<&str> = self.arg.split('.').collect();
                match self.get_property(path) {
                    Some(v) => {
                        let text = match String::from_utf8(v.clone()) {
                            Ok(s) if v.len() != 8 => s,
                            _ => format!("{v:?}"),
                        };
                        reply(self, 200, &text)
                    }
                    None => reply(self, 404, "no such property"),
                }
            }
            "set-property" => {
                self.set_property(vec!["filter_state", "probe"], Some(b"stored"));
                let v = self
                    .get_property(vec!["filter_state", "probe"])
                    .unwrap_or_default();
                reply(self, 200, &String::from_utf8_lossy(&v))
            }
            "callout" | "callout-continue" => match self.callout(&self.arg.clone(), true) {
                Ok(_) => Action::Pause,
                Err(e) => reply(self, 500, &format!("dispatch refused: {e:?}")),
            },
            "callout-bad" => match self.callout("backend", false) {
                Ok(_) => Action::Pause,
                Err(e) => reply(self, 500, &format!("dispatch refused: {e:?}")),
            },
            "cas" | "cas-retry" => {
                let (n, cas) = read_counter(self, &self.arg);
                self.value = n;
                self.cas = cas;
                match self.callout("sync", true) {
                    Ok(_) => Action::Pause,
                    Err(e) => reply(self, 500, &format!("dispatch refused: {e:?}")),
                }
            }
            "shared-get" => {
                let (v, _) = self.get_shared_data(&self.arg);
                let text = v.map(|v| String::from_utf8_lossy(&v).into_owned());
                reply(self, 200, &text.unwrap_or_else(|| "missing".into()))
            }
            "queue" => match hostcalls::resolve_shared_queue("", "probe-queue") {
                Ok(Some(id)) => {
                    let r = self.enqueue_shared_queue(id, Some(self.arg.as_bytes()));
                    reply(self, 200, &format!("queued {r:?}"))
                }
                other => reply(self, 500, &format!("no queue: {other:?}")),
            },
            "metrics" => {
                let counter = hostcalls::define_metric(MetricType::Counter, "probe_requests");
                let gauge = hostcalls::define_metric(MetricType::Gauge, "probe_gauge");
                let hist = hostcalls::define_metric(MetricType::Histogram, "probe_latency");
                let (Ok(c), Ok(g), Ok(h)) = (counter, gauge, hist) else {
                    return reply(self, 500, "define_metric failed");
                };
                let _ = hostcalls::increment_metric(c, 1);
                let _ = hostcalls::record_metric(g, 42);
                let _ = hostcalls::record_metric(h, 7);
                let negative = hostcalls::increment_metric(c, -1);
                let text = format!(
                    "counter={:?} gauge={:?} negative={negative:?}",
                    hostcalls::get_metric(c),
                    hostcalls::get_metric(g)
                );
                reply(self, 200, &text)
            }
            "time" => {
                let proxy = self
                    .get_current_time()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let wasi = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                reply(self, 200, &format!("proxy={proxy} wasi={wasi}"))
            }
            "stdout" => {
                println!("probe says hello");
                eprintln!("probe complains");
                reply(self, 200, "printed")
            }
            "log" => {
                for level in [
                    LogLevel::Trace,
                    LogLevel::Debug,
                    LogLevel::Info,
                    LogLevel::Warn,
                    LogLevel::Error,
                    LogLevel::Critical,
                ] {
                    log(level, &format!("level {level:?}"));
                }
                reply(self, 200, "logged")
            }
            "panic" => panic!("probe panicked on purpose"),
            "unknown-call" => {
                let r = unsafe { proxy_probe_made_up_call() };
                reply(self, 200, &format!("made-up call returned {r}"))
            }
            "reset" => {
                self.reset_http_request();
                Action::Pause
            }
            "effective-context" => {
                let r = hostcalls::set_effective_context(999_999);
                reply(self, 200, &format!("{r:?}"))
            }
            "foreign" => {
                let r = hostcalls::call_foreign_function("nope", None);
                reply(self, 200, &format!("{r:?}"))
            }
            "local-twice" => {
                reply(self, 200, "first");
                reply(self, 200, "second")
            }
            "replace-headers" => {
                self.set_http_request_headers(vec![
                    (":method", "GET"),
                    (":path", "/replaced"),
                    ("x-only", "1"),
                ]);
                Action::Continue
            }
            "log-level" => {
                let level = hostcalls::get_log_level();
                let done = hostcalls::done();
                reply(self, 200, &format!("{level:?} {done:?}"))
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.op != "body" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let upper = body.to_ascii_uppercase();
        self.set_http_request_body(0, body_size, &upper);
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.op != "trailers" {
            return Action::Continue;
        }
        let text: String = self
            .get_http_request_trailers()
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        reply(self, 200, &text)
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.add_http_response_header("x-probe-response", "seen");
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        let mut new = b"rewritten:".to_vec();
        new.extend_from_slice(&body);
        self.set_http_response_body(0, body_size, &new);
        Action::Continue
    }

    fn on_log(&mut self) {
        log(
            LogLevel::Info,
            &format!("probe {} done ({})", self.id, self.op),
        );
    }
}
