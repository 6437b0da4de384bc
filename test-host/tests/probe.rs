//! The host's own tests: the probe filter (`test-host/probe-filter`) exercises each ABI call.
//! Canned callout answers here are fakes of an upstream, named `fake_*`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use dynedge_test_host::{Answer, Error, Host, LogLevel, LogSource, Outcome, Request, Response};

fn probe(op: &str) -> Request {
    Request::get("/probe").header("x-probe", op)
}

fn host_with(config: &str, workers: usize) -> Host {
    let mut host = Host::builder(common::probe_wasm())
        .workers(workers)
        .vm_config("vm=1")
        .build()
        .expect("probe loads");
    assert!(host.configure(config).expect("configure runs"));
    host
}

fn host() -> Host {
    host_with("mode=test", 1)
}

fn reply_of(host: &mut Host, req: Request) -> (u32, String) {
    let ctx = host.request(req).expect("request runs");
    let reply = host.local_response(ctx).expect("a local reply");
    (reply.status, reply.text())
}

fn has_note(host: &Host, needle: &str) -> bool {
    host.abi_errors().iter().any(|n| n.contains(needle))
}

// ---- lifecycle and configuration ----------------------------------------------------------

#[test]
fn configuration_buffer_reaches_on_configure() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("config")),
        (200, "mode=test".into())
    );
    assert!(host.abi_errors().is_empty(), "{:?}", host.abi_errors());
}

#[test]
fn vm_configuration_reaches_on_vm_start() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("vm-config")),
        (200, "vm=1".into())
    );
}

#[test]
fn rejected_configuration_makes_configure_return_false_with_the_reason_logged() {
    let mut host = Host::load(common::probe_wasm()).unwrap();
    assert!(!host.configure("reject=1").unwrap());
    assert!(
        host.logged("configuration rejected on purpose"),
        "{}",
        host.log_text()
    );
}

#[test]
fn missing_wasm_file_is_a_load_error_naming_the_path() {
    let err = Host::load("/nonexistent/filter.wasm")
        .err()
        .expect("load fails");
    assert!(
        matches!(&err, Error::Load(m) if m.contains("/nonexistent/filter.wasm")),
        "{err}"
    );
}

#[test]
fn module_without_the_abi_0_2_1_export_is_refused_at_load() {
    let path = std::env::temp_dir().join(format!("empty-{}.wasm", std::process::id()));
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = Host::load(&path).err().expect("load fails");
    std::fs::remove_file(&path).ok();
    assert!(
        matches!(&err, Error::Load(m) if m.contains("proxy_abi_version_0_2_1")),
        "{err}"
    );
}

// ---- headers, bodies, trailers -------------------------------------------------------------

#[test]
fn request_headers_include_pseudo_headers_in_order() {
    let mut host = host();
    let (status, text) = reply_of(&mut host, probe("headers").header("X-Custom", "1"));
    assert_eq!(status, 200);
    assert_eq!(
        text,
        ":method: GET\n:path: /probe\n:authority: localhost\n:scheme: http\nx-probe: headers\nx-custom: 1\n"
    );
}

#[test]
fn header_mutations_reach_the_upstream_request() {
    let mut host = host();
    let ctx = host
        .request(
            probe("mutate")
                .header("user-agent", "curl")
                .header("x-remove-me", "1"),
        )
        .unwrap();
    let Outcome::Forwarded(up) = host.outcome(ctx) else {
        panic!("not forwarded: {:?}", host.outcome(ctx))
    };
    assert_eq!(up.header("x-probe-added"), Some("yes"));
    assert_eq!(up.header("user-agent"), Some("probe"));
    assert_eq!(up.header("x-remove-me"), None);
}

#[test]
fn body_is_buffered_until_end_of_stream_and_rewritten_upstream() {
    let mut host = host();
    let ctx = host
        .request(
            Request::post("/probe")
                .header("x-probe", "body")
                .body("hello"),
        )
        .unwrap();
    assert_eq!(host.forwarded(ctx).map(|f| f.body), Some(b"HELLO".to_vec()));
}

#[test]
fn replacing_the_whole_header_map_reaches_the_upstream_request() {
    let mut host = host();
    let ctx = host.request(probe("replace-headers")).unwrap();
    let up = host.forwarded(ctx).expect("forwarded");
    assert_eq!(
        up.headers,
        vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), "/replaced".to_owned()),
            ("x-only".to_owned(), "1".to_owned())
        ]
    );
}

#[test]
fn log_level_is_the_hosts_and_proxy_done_is_accepted() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("log-level")).1,
        "Ok(Trace) Ok(())"
    );
    host.set_log_level(LogLevel::Warn);
    assert_eq!(reply_of(&mut host, probe("log-level")).1, "Ok(Warn) Ok(())");
}

#[test]
fn request_body_read_in_the_headers_callback_is_refused_and_noted() {
    let mut host = host();
    let (_, text) = reply_of(&mut host, probe("body-at-headers").body("x"));
    assert_eq!(text, "None");
    assert!(
        has_note(
            &host,
            "proxy_get_buffer_bytes: the request body is readable only"
        ),
        "{:?}",
        host.abi_errors()
    );
}

#[test]
fn trailers_are_delivered_after_the_body() {
    let mut host = host();
    let req = Request::post("/probe")
        .header("x-probe", "trailers")
        .body("b")
        .trailer("grpc-status", "0");
    assert_eq!(reply_of(&mut host, req), (200, "grpc-status: 0\n".into()));
}

#[test]
fn upstream_response_passes_the_response_callbacks() {
    let mut host = host();
    let ctx = host.request(probe("none")).unwrap();
    host.respond(
        ctx,
        Response::status(200)
            .header("content-type", "text/plain")
            .body("up"),
    )
    .unwrap();
    let down = host.downstream_response(ctx).expect("response delivered");
    assert_eq!(down.header_value("x-probe-response"), Some("seen"));
    assert_eq!(down.body, b"rewritten:up");
}

#[test]
fn reset_stream_is_reported_as_reset() {
    let mut host = host();
    let ctx = host.request(probe("reset")).unwrap();
    assert_eq!(host.outcome(ctx), Outcome::Reset);
}

#[test]
fn finishing_a_stream_runs_on_log_and_cancels_its_callouts() {
    let mut host = host();
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "backend"))
        .unwrap();
    assert_eq!(host.pending_calls(ctx).len(), 1);
    host.finish(ctx).unwrap();
    assert!(host.pending_calls(ctx).is_empty());
    assert!(
        host.logged(&format!("probe {} done (callout)", ctx.0)),
        "{}",
        host.log_text()
    );
}

// ---- properties ----------------------------------------------------------------------------

#[test]
fn properties_describe_the_downstream_connection() {
    const CASES: &[(&str, bool, u32, &str)] = &[
        ("source.address", false, 200, "192.0.2.1:5555"),
        ("request.scheme", false, 200, "http"),
        ("request.scheme", true, 200, "https"),
        ("connection.tls_version", true, 200, "TLSv1.3"),
        ("connection.tls_version", false, 404, "no such property"),
        ("request.path", false, 200, "/probe"),
        ("source.port", false, 200, "[179, 21, 0, 0, 0, 0, 0, 0]"),
        ("plugin_name", false, 200, "dynedge"),
        ("no.such.thing", false, 404, "no such property"),
    ];
    let mut host = host();
    for (path, tls, status, want) in CASES {
        let mut req = probe("property")
            .header("x-probe-arg", path)
            .peer("192.0.2.1:5555");
        if *tls {
            req = req.tls("TLSv1.3");
        }
        assert_eq!(
            reply_of(&mut host, req),
            (*status, (*want).to_owned()),
            "{path} tls={tls}"
        );
    }
}

#[test]
fn property_set_by_the_filter_reads_back() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("set-property")),
        (200, "stored".into())
    );
}

// ---- callouts ------------------------------------------------------------------------------

#[test]
fn callout_is_pending_until_answered_and_its_response_reaches_the_filter() {
    let mut host = host();
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "backend"))
        .unwrap();
    assert_eq!(host.outcome(ctx), Outcome::Paused);
    let calls = host.pending_calls(ctx);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.cluster.as_str(), call.method(), call.path()),
        ("backend", "POST", "/probe")
    );
    assert_eq!((call.text().as_str(), call.timeout_ms), ("ping", 500));
    assert_eq!(call.header("x-from"), Some("probe"));
    // fake upstream answer
    host.answer(call.token, 201, &[("content-type", "text/plain")], "pong")
        .unwrap();
    assert_eq!(
        host.local_response(ctx).map(|r| r.text()),
        Some("status=201 body=pong".into())
    );
    assert!(host.pending_calls(ctx).is_empty());
}

#[test]
fn failed_callout_is_delivered_with_zero_headers() {
    let mut host = host();
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "backend"))
        .unwrap();
    let token = host.pending_calls(ctx)[0].token;
    host.fail(token).unwrap();
    assert_eq!(
        host.local_response(ctx).map(|r| (r.status, r.text())),
        Some((502, "callout failed".into()))
    );
}

#[test]
fn callout_times_out_when_the_virtual_clock_passes_its_deadline() {
    let mut host = host();
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "backend"))
        .unwrap();
    host.advance_clock(Duration::from_millis(499)).unwrap();
    assert_eq!(host.outcome(ctx), Outcome::Paused);
    host.advance_clock(Duration::from_millis(1)).unwrap();
    assert_eq!(host.local_response(ctx).map(|r| r.status), Some(502));
}

#[test]
fn callout_without_authority_is_refused_with_bad_argument() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("callout-bad")),
        (500, "dispatch refused: BadArgument".into())
    );
    assert!(
        has_note(&host, "proxy_http_call: headers lack required :authority"),
        "{:?}",
        host.abi_errors()
    );
}

#[test]
fn callout_to_an_undeclared_cluster_is_refused_when_clusters_are_declared() {
    let mut host = Host::builder(common::probe_wasm())
        .clusters(&["backend"])
        .build()
        .unwrap();
    assert!(host.configure("").unwrap());
    let (status, _) = reply_of(
        &mut host,
        probe("callout").header("x-probe-arg", "elsewhere"),
    );
    assert_eq!(status, 500);
    assert!(has_note(&host, "unknown cluster \"elsewhere\""));
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "backend"))
        .unwrap();
    assert_eq!(host.pending_calls(ctx).len(), 1);
}

#[test]
fn resuming_after_a_callout_forwards_the_request() {
    let mut host = host();
    let ctx = host
        .request(probe("callout-continue").header("x-probe-arg", "backend"))
        .unwrap();
    let token = host.pending_calls(ctx)[0].token;
    host.answer(token, 204, &[], "").unwrap();
    let up = host.forwarded(ctx).expect("forwarded");
    assert_eq!(up.header("x-callout-status"), Some("204"));
}

#[test]
fn responder_answers_callouts_as_they_are_dispatched() {
    let mut host = host();
    host.respond_with(|call| match call.cluster.as_str() {
        "backend" => Answer::respond(200, &[], "fake-auto"),
        _ => Answer::Hold,
    })
    .unwrap();
    assert_eq!(
        reply_of(&mut host, probe("callout").header("x-probe-arg", "backend")),
        (200, "status=200 body=fake-auto".into())
    );
    let ctx = host
        .request(probe("callout").header("x-probe-arg", "other"))
        .unwrap();
    assert_eq!(host.pending_calls(ctx).len(), 1, "held calls stay pending");
}

/// A one-shot HTTP/1.1 server on a port the kernel picks (a fake upstream, over real TCP).
fn fake_upstream(reply: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"ping") {
            let n = sock.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        sock.write_all(reply).unwrap();
        got
    });
    (addr, handle)
}

#[test]
fn callouts_can_be_forwarded_to_a_real_http_server() {
    let (addr, server) = fake_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nreal");
    let mut host = host();
    host.forward_to(&[("backend", &addr)]).unwrap();
    let (status, text) = reply_of(&mut host, probe("callout").header("x-probe-arg", "backend"));
    let request = String::from_utf8(server.join().unwrap()).unwrap();
    assert_eq!((status, text.as_str()), (200, "status=200 body=real"));
    assert!(request.starts_with("POST /probe HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains("host: backend.test\r\n") && request.contains("x-from: probe\r\n"),
        "{request}"
    );
}

#[test]
fn forwarded_callout_to_a_closed_port_fails_like_envoy() {
    let mut host = host();
    host.forward_to(&[("backend", "127.0.0.1:23999")]).unwrap();
    assert_eq!(
        reply_of(&mut host, probe("callout").header("x-probe-arg", "backend")),
        (502, "callout failed".into())
    );
}

// ---- shared data, CAS, queues --------------------------------------------------------------

#[test]
fn cas_conflict_between_two_workers_is_reported_to_the_later_writer() {
    let mut host = host_with("", 2);
    // An absent key has no CAS (writes to it are unconditional), so seed it.
    host.set_shared_data("counter", "0");
    let a = host
        .request(probe("cas").header("x-probe-arg", "counter"))
        .unwrap();
    let b = host
        .request(probe("cas").header("x-probe-arg", "counter").worker(1))
        .unwrap();
    let (ta, tb) = (
        host.pending_calls(a)[0].token,
        host.pending_calls(b)[0].token,
    );
    host.answer(ta, 200, &[], "").unwrap();
    host.answer(tb, 200, &[], "").unwrap();
    assert_eq!(
        host.local_response(a).map(|r| r.text()),
        Some("stored 1 after 0 retries".into())
    );
    assert_eq!(
        host.local_response(b).map(|r| (r.status, r.text())),
        Some((409, "CasMismatch".into()))
    );
    assert_eq!(host.shared_value("counter"), Some(b"1".to_vec()));
}

#[test]
fn cas_retry_between_two_workers_loses_no_increment() {
    let mut host = host_with("", 2);
    host.set_shared_data("counter", "0");
    let a = host
        .request(probe("cas-retry").header("x-probe-arg", "counter"))
        .unwrap();
    let b = host
        .request(
            probe("cas-retry")
                .header("x-probe-arg", "counter")
                .worker(1),
        )
        .unwrap();
    let (ta, tb) = (
        host.pending_calls(a)[0].token,
        host.pending_calls(b)[0].token,
    );
    host.answer(tb, 200, &[], "").unwrap();
    host.answer(ta, 200, &[], "").unwrap();
    assert_eq!(
        host.local_response(a).map(|r| r.text()),
        Some("stored 2 after 1 retries".into())
    );
    assert_eq!(host.shared_value("counter"), Some(b"2".to_vec()));
}

#[test]
fn shared_data_written_by_the_test_is_read_by_the_filter() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("shared-get").header("x-probe-arg", "k")).1,
        "missing"
    );
    host.set_shared_data("k", "v");
    assert_eq!(
        reply_of(&mut host, probe("shared-get").header("x-probe-arg", "k")).1,
        "v"
    );
}

#[test]
fn queue_item_enqueued_by_a_stream_is_delivered_to_the_registering_root() {
    let mut host = host_with("", 2);
    let (_, text) = reply_of(
        &mut host,
        probe("queue").header("x-probe-arg", "hello").worker(1),
    );
    assert_eq!(text, "queued Ok(())");
    assert!(host.logged("dequeued hello"), "{}", host.log_text());
    host.enqueue("probe-queue", "from-test").unwrap();
    assert_eq!(host.shared_value("queue-last"), Some(b"from-test".to_vec()));
    assert!(host.queue_items("probe-queue").is_empty());
}

// ---- clock and ticks -----------------------------------------------------------------------

#[test]
fn ticks_fire_only_when_the_virtual_clock_reaches_them() {
    let mut host = host_with("tick_ms=1000", 1);
    assert_eq!(host.tick_period(0), Some(Duration::from_secs(1)));
    host.advance_clock(Duration::from_millis(999)).unwrap();
    assert_eq!(host.shared_value("ticks"), None);
    host.advance_clock(Duration::from_millis(1)).unwrap();
    assert_eq!(host.shared_value("ticks"), Some(b"1".to_vec()));
    host.advance_clock(Duration::from_secs(3)).unwrap();
    assert_eq!(host.shared_value("ticks"), Some(b"4".to_vec()));
}

#[test]
fn every_worker_root_ticks() {
    let mut host = host_with("tick_ms=100", 3);
    host.advance_clock(Duration::from_millis(100)).unwrap();
    assert_eq!(host.shared_value("ticks"), Some(b"3".to_vec()));
}

#[test]
fn abi_time_and_wasi_time_both_read_the_virtual_clock() {
    let mut host = host();
    host.advance_clock(Duration::from_secs(5)).unwrap();
    let now = host.now_ns();
    assert_eq!(
        reply_of(&mut host, probe("time")).1,
        format!("proxy={now} wasi={now}")
    );
}

// ---- metrics and logs ----------------------------------------------------------------------

#[test]
fn metrics_are_defined_incremented_recorded_and_read() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("metrics")).1,
        "counter=Ok(1) gauge=Ok(42) negative=Err(BadArgument)"
    );
    assert_eq!(host.metric("probe_requests"), Some(1));
    assert_eq!(host.metric("probe_gauge"), Some(42));
    let hist = host
        .metrics()
        .into_iter()
        .find(|m| m.name == "probe_latency")
        .unwrap();
    assert_eq!(hist.samples, vec![7]);
    assert!(has_note(
        &host,
        "counter probe_requests cannot be decremented"
    ));
    reply_of(&mut host, probe("metrics"));
    assert_eq!(
        host.metric("probe_requests"),
        Some(2),
        "same name, same metric"
    );
}

#[test]
fn stdout_and_stderr_are_captured_as_log_lines() {
    let mut host = host();
    reply_of(&mut host, probe("stdout"));
    let logs = host.logs();
    assert!(logs
        .iter()
        .any(|l| l.source == LogSource::Stdout && l.message == "probe says hello"));
    assert!(logs
        .iter()
        .any(|l| l.source == LogSource::Stderr && l.message == "probe complains"));
}

#[test]
fn every_log_level_is_captured() {
    let mut host = host();
    reply_of(&mut host, probe("log"));
    let levels: Vec<LogLevel> = host
        .logs()
        .into_iter()
        .filter(|l| l.message.starts_with("level "))
        .map(|l| l.level)
        .collect();
    use LogLevel::*;
    assert_eq!(levels, vec![Trace, Debug, Info, Warn, Error, Critical]);
}

// ---- misuse is loud ------------------------------------------------------------------------

#[test]
fn panic_is_a_trap_naming_the_callback_and_carrying_the_panic_message() {
    let mut host = host();
    let err = host.request(probe("panic")).expect_err("trap");
    let Error::Trap {
        callback, message, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(callback, "proxy_on_request_headers");
    assert!(message.contains("probe panicked on purpose"), "{message}");
    let again = host.request(probe("config")).expect_err("worker crashed");
    assert!(again.to_string().contains("crashed earlier"), "{again}");
}

#[test]
fn unknown_import_is_an_error_naming_the_call() {
    let mut host = host();
    let err = host.request(probe("unknown-call")).expect_err("trap");
    assert!(
        err.to_string()
            .contains("env.proxy_probe_made_up_call: unknown host call"),
        "{err}"
    );
}

#[test]
fn second_local_response_is_an_error_naming_the_call() {
    let mut host = host();
    let err = host.request(probe("local-twice")).expect_err("trap");
    assert!(
        err.to_string()
            .contains("proxy_send_local_response: this stream already sent a local response"),
        "{err}"
    );
}

#[test]
fn effective_context_of_an_unknown_id_is_bad_argument() {
    let mut host = host();
    assert_eq!(
        reply_of(&mut host, probe("effective-context")).1,
        "Err(BadArgument)"
    );
    assert!(has_note(
        &host,
        "proxy_set_effective_context: no context 999999"
    ));
}

#[test]
fn foreign_function_is_not_found() {
    let mut host = host();
    assert_eq!(reply_of(&mut host, probe("foreign")).1, "Err(NotFound)");
    assert!(has_note(&host, "no foreign function \"nope\""));
}
