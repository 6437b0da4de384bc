//! Every audit line the core logs is one JSON object with exactly the fields, and the types,
//! that docs/logs.md documents for its event. The tables are read from the document itself.
// Test support: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;

use dynedge_core::testing::{
    body, get, json_body, request, status, Driver, Fault, RequestExt, TOKEN,
};
use serde_json::{json, Value};

const HOME: &str = "home.dyn.example.test";
const DOC: &str = include_str!("../../../docs/logs.md");

/// event → (field → documented type), from the `### \`event\`` tables of docs/logs.md.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut event = None;
    for line in DOC.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            event = Some(h.trim().trim_matches('`').to_string());
            continue;
        }
        let Some(ev) = &event else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `field` | type | meaning |
        if cells.len() >= 4 && cells[1].starts_with('`') {
            let field = cells[1].trim_matches('`').to_string();
            out.entry(ev.clone())
                .or_default()
                .insert(field, cells[2].to_string());
        }
    }
    out
}

fn has_type(v: &Value, ty: &str) -> bool {
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    match ty {
        "integer" => v.is_u64(),
        "string" => v.is_string(),
        "string or null" => v.is_string() || v.is_null(),
        "array of strings" => strings(v),
        "array of strings or null" => strings(v) || v.is_null(),
        other => panic!("docs/logs.md names an unknown type {other:?}"),
    }
}

/// What is wrong with one line against the documentation (empty: nothing).
fn problems(line: &str, doc: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    if line.contains('\n') {
        return vec!["spans several lines".into()];
    }
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    let Some(obj) = v.as_object() else {
        return vec!["not a JSON object".into()];
    };
    let event = obj.get("event").and_then(Value::as_str).unwrap_or("");
    let Some(fields) = doc.get(event) else {
        return vec![format!("event {event:?} is not documented")];
    };
    let mut out = Vec::new();
    for (name, ty) in fields {
        match obj.get(name) {
            None => out.push(format!("documented field {name} is missing")),
            Some(value) if !has_type(value, ty) => {
                out.push(format!("{name} = {value} is not {ty}"))
            }
            Some(_) => {}
        }
    }
    for name in obj.keys() {
        if !fields.contains_key(name) {
            out.push(format!("field {name} is not documented"));
        }
    }
    out
}

/// Updates of every kind the demo configuration serves, and the lines they logged.
fn lines_of_every_kind() -> Vec<String> {
    let mut d = Driver::demo();
    let update = |q: &str| get(&format!("/nic/update?{q}")).from("192.0.2.200");
    let runs = [
        // DynDNS2: good, nochg, a token as the password, a host not owned, a backend failure.
        update(&format!("hostname={HOME}&myip=192.0.2.1")).basic("demo", "demo-password"),
        update(&format!("hostname={HOME}&myip=192.0.2.1")).basic("demo", "demo-password"),
        update(&format!("hostname={HOME}&myip=192.0.2.2")).basic("demo", TOKEN),
        update("hostname=neighbour.dyn.example.test&myip=192.0.2.3").basic("demo", "demo-password"),
        // ApertoDNS JSON, dynv6, httpreq.
        request(
            "POST",
            "/.well-known/apertodns/v1/update",
            &json!({"hostname": HOME, "ipv4": "192.0.2.4"}).to_string(),
        )
        .bearer(TOKEN)
        .from("192.0.2.200"),
        get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.5"
        ))
        .from("192.0.2.200"),
        request(
            "POST",
            "/httpreq/present",
            &json!({"fqdn": format!("_acme-challenge.{HOME}."),
                    "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"})
            .to_string(),
        )
        .basic("demo", "demo-password"),
    ];
    for req in runs {
        let o = d.run(req);
        assert!(status(&o) < 500, "{}", body(&o));
    }
    // acme-dns: a registration, then an update with its credentials.
    let reg = json_body(&d.run(request("POST", "/acme-dns/register", "").from("192.0.2.200")));
    let o = d.run(
        request(
            "POST",
            "/acme-dns/update",
            &json!({"subdomain": reg["subdomain"],
                    "txt": "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"})
            .to_string(),
        )
        .header("X-Api-User", reg["username"].as_str().unwrap())
        .header("X-Api-Key", reg["password"].as_str().unwrap()),
    );
    assert_eq!(status(&o), 200, "{}", body(&o));
    // A token used outside its allowed subnets: refused, with a line saying which rule.
    let o = d.run(
        request(
            "POST",
            "/api/tokens",
            &json!({"allowed_subnets": ["198.51.100.0/24"]}).to_string(),
        )
        .bearer(TOKEN),
    );
    let limited = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
    let o = d.run(update(&format!("hostname={HOME}&myip=192.0.2.8")).basic("demo", &limited));
    assert_eq!(body(&o).trim_end(), "badauth");
    // The backend unreachable: the line carries the error.
    d.pdns.fault = Fault::Unreachable;
    d.run(update(&format!("hostname={HOME}&myip=192.0.2.9")).basic("demo", "demo-password"));
    d.log.clone()
}

#[test]
fn every_audit_line_has_exactly_the_documented_fields_and_types() {
    let doc = documented();
    assert_eq!(
        doc.keys().collect::<Vec<_>>(),
        [
            "acme-dns.register",
            "dynedge.token_refused",
            "dynedge.update"
        ]
    );
    let lines = lines_of_every_kind();
    let mut seen = BTreeMap::<String, usize>::new();
    for line in &lines {
        let p = problems(line, &doc);
        assert!(p.is_empty(), "{line}\n{p:#?}");
        let v: Value = serde_json::from_str(line).unwrap();
        *seen
            .entry(v["event"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    // Every documented event and the kinds of update above each logged.
    assert_eq!(seen.len(), doc.len(), "{lines:#?}");
    let values = |field: &str| -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()[field].clone())
            .collect()
    };
    for dialect in ["dyndns2", "apertodns", "dynv6", "httpreq", "acme-dns"] {
        assert!(
            values("dialect").contains(&json!(dialect)),
            "no {dialect} line: {lines:#?}"
        );
    }
    for result in ["good", "nochg", "nohost", "dnserr"] {
        assert!(
            values("result").contains(&json!(result)),
            "no {result} line: {lines:#?}"
        );
    }
    assert!(values("token_id").contains(&json!("demo-all")));
    assert!(values("error").iter().any(Value::is_string));
    assert!(values("user_agent").contains(&json!("dynedge-test/1")));
    let acme_user = |u: &Value| u.as_str().is_some_and(|u| u.starts_with("acme-dns:"));
    assert!(values("user").iter().any(acme_user), "{lines:#?}");
    // No secret of the demo configuration in any line.
    for secret in [
        "demo-password",
        TOKEN,
        "dynedge-demo-pdns-key",
        "$argon2id$",
    ] {
        assert!(lines.iter().all(|l| !l.contains(secret)), "{secret} logged");
    }
}

#[test]
fn the_check_refuses_lines_that_differ_from_the_documentation() {
    let doc = documented();
    let good = lines_of_every_kind()
        .into_iter()
        .find(|l| l.contains("\"dynedge.update\""))
        .unwrap();
    assert!(problems(&good, &doc).is_empty());
    let mut v: Value = serde_json::from_str(&good).unwrap();
    let edits: [(&str, Value); 4] = [
        ("password", json!("x")),
        ("ts_ms", json!("1700000000000")),
        ("old", json!(null)),
        ("event", json!("dynedge.other")),
    ];
    for (field, value) in edits {
        let mut bad = v.clone();
        bad[field] = value;
        assert!(
            !problems(&bad.to_string(), &doc).is_empty(),
            "{field} not caught"
        );
    }
    v.as_object_mut().unwrap().remove("user");
    assert!(
        !problems(&v.to_string(), &doc).is_empty(),
        "missing field not caught"
    );
    assert!(!problems("{\"event\":\n\"dynedge.update\"}", &doc).is_empty());
}
