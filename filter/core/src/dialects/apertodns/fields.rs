//! Request bodies and their fields: the JSON object, hostname, TTL and address fields, the
//! per-field error they answer with, how `"auto"` and the zone's ranges resolve addresses, and
//! the ACME TXT names and values (the `txt` member of `/update` and the TXT endpoints).

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::{Ctx, DEFAULT_TTL, TTL_RANGE};
use crate::addr::{self, AddrError};
use crate::config::{Config, Zone};
use crate::dialects::acme::{self, TXT_PREFIX};
use crate::names::Fqdn;
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;

pub(super) fn body_object(req: &Request, ctx: &Ctx) -> Result<Map<String, Value>, Reply> {
    let v: Value = serde_json::from_slice(&req.body).map_err(|_| {
        ctx.error(
            400,
            ErrorCode::InvalidJson,
            "Request body is not valid JSON",
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ctx.validation(
            "body",
            ErrorCode::InvalidType,
            "Request body must be a JSON object",
            other,
        )),
    }
}

/// An address field: absent, `null`, `"auto"`, or a literal (Protocol rules: address fields).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrField {
    Absent,
    Null,
    Auto,
    Literal(IpAddr),
}

/// A refused request or bulk item, renderable as a whole reply or as a bulk `error` member.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldError {
    status: u16,
    code: ErrorCode,
    message: String,
    /// For `validation_error`: (field, per-field code, provided value).
    field: Option<(&'static str, ErrorCode, Value)>,
}

impl FieldError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> FieldError {
        FieldError::status(400, code, message)
    }
    pub(super) fn status(status: u16, code: ErrorCode, message: impl Into<String>) -> FieldError {
        FieldError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub(super) fn validation(
        field: &'static str,
        fcode: ErrorCode,
        message: impl Into<String>,
        provided: Value,
    ) -> FieldError {
        FieldError {
            status: 400,
            code: ErrorCode::ValidationError,
            message: message.into(),
            field: Some((field, fcode, provided)),
        }
    }
    pub(super) fn reply(&self, ctx: &Ctx) -> Reply {
        match &self.field {
            Some((f, c, p)) => ctx.validation(f, *c, &self.message, p.clone()),
            None => ctx.error(self.status, self.code, &self.message),
        }
    }
    pub(super) fn item_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

fn hostname_field(obj: &Map<String, Value>) -> Result<Fqdn, FieldError> {
    match obj.get("hostname") {
        None | Some(Value::Null) => Err(FieldError::validation(
            "hostname",
            ErrorCode::Required,
            "hostname is required",
            Value::Null,
        )),
        Some(Value::String(h)) => Fqdn::parse(h).map_err(|e| {
            FieldError::new(
                ErrorCode::InvalidHostname,
                format!("Invalid hostname format: {e}"),
            )
        }),
        Some(other) => Err(FieldError::validation(
            "hostname",
            ErrorCode::InvalidType,
            "hostname must be a string",
            other.clone(),
        )),
    }
}

pub(super) fn ttl_field(v: Option<&Value>, default: u32) -> Result<u32, FieldError> {
    let bad = || {
        FieldError::new(
            ErrorCode::InvalidTtl,
            "TTL must be between 60 and 86400 seconds",
        )
    };
    match v {
        None => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| TTL_RANGE.contains(t))
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn addr_field(v: Option<&Value>, name: &'static str, v6: bool) -> Result<AddrField, FieldError> {
    match v {
        None => Ok(AddrField::Absent),
        Some(Value::Null) => Ok(AddrField::Null),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(AddrField::Auto),
        Some(Value::String(s)) => {
            let ip = if v6 {
                addr::parse_v6(s).map(IpAddr::V6)
            } else {
                addr::parse_v4(s).map(IpAddr::V4)
            };
            ip.map(AddrField::Literal).map_err(|e: AddrError| {
                let shown: String = s.chars().take(64).collect();
                FieldError::new(ErrorCode::InvalidIp, format!("{name}: '{shown}' {e}"))
            })
        }
        Some(other) => Err(FieldError::validation(
            name,
            ErrorCode::InvalidType,
            format!("{name} must be a string, \"auto\" or null"),
            other.clone(),
        )),
    }
}

fn policy_check(zone: &Zone, name: &'static str, ip: IpAddr) -> Result<(), FieldError> {
    zone.policy.check(ip).map_err(|e| {
        FieldError::new(
            ErrorCode::InvalidIp,
            format!("{name}: '{ip}' {e}; only public addresses are accepted"),
        )
    })
}

/// A parsed update item (one `/update` body or one bulk entry).
pub(super) struct UpdateItem {
    pub(super) hostname: Fqdn,
    pub(super) ttl: u32,
    ipv4: AddrField,
    ipv6: AddrField,
    pub(super) txt: Option<TxtMember>,
}

pub(super) fn parse_item(
    obj: &Map<String, Value>,
    defaults: Option<&Map<String, Value>>,
    allow_txt: bool,
) -> Result<UpdateItem, FieldError> {
    let field = |k: &str| obj.get(k).or_else(|| defaults.and_then(|d| d.get(k)));
    let hostname = hostname_field(obj)?;
    let ttl = ttl_field(field("ttl"), DEFAULT_TTL)?;
    let ipv4 = addr_field(field("ipv4"), "ipv4", false)?;
    let ipv6 = addr_field(field("ipv6"), "ipv6", true)?;
    let txt = match obj.get("txt").filter(|_| allow_txt) {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => Some(parse_txt_member(t, &hostname)?),
        Some(other) => {
            return Err(FieldError::validation(
                "txt",
                ErrorCode::InvalidType,
                "txt must be an object",
                other.clone(),
            ))
        }
    };
    Ok(UpdateItem {
        hostname,
        ttl,
        ipv4,
        ipv6,
        txt,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AddrOp {
    Leave,
    Delete,
    Set(IpAddr),
}

/// What to do with each family after `"auto"` and the zone's ranges.
pub(super) struct Resolved {
    pub(super) v4: AddrOp,
    pub(super) v6: AddrOp,
}

pub(super) fn resolve(
    cfg: &Config,
    req: &Request,
    zone: &Zone,
    item: &UpdateItem,
) -> Result<Resolved, FieldError> {
    let client = req.client_ip(&cfg.trusted_proxies);
    let lit = |f: &AddrField, name: &'static str| -> Result<AddrOp, FieldError> {
        Ok(match f {
            AddrField::Absent | AddrField::Auto => AddrOp::Leave,
            AddrField::Null => AddrOp::Delete,
            AddrField::Literal(ip) => {
                policy_check(zone, name, *ip)?;
                AddrOp::Set(*ip)
            }
        })
    };
    let mut v4 = lit(&item.ipv4, "ipv4")?;
    let mut v6 = lit(&item.ipv6, "ipv6")?;
    if item.ipv4 == AddrField::Auto {
        match client {
            Some(ip @ IpAddr::V4(_)) => {
                policy_check(zone, "ipv4", ip)?;
                v4 = AddrOp::Set(ip);
            }
            _ => {
                return Err(FieldError::new(
                    ErrorCode::Ipv4AutoFailed,
                    "Cannot auto-detect IPv4: your connection uses IPv6. Specify an explicit IPv4 address.",
                ))
            }
        }
    }
    if item.ipv6 == AddrField::Auto {
        match client {
            Some(ip @ IpAddr::V6(_)) => {
                policy_check(zone, "ipv6", ip)?;
                v6 = AddrOp::Set(ip);
            }
            // Protocol rules, address fields: ignored when IPv4 is also asked for, else an error.
            _ if item.ipv4 != AddrField::Absent => {}
            _ => {
                return Err(FieldError::new(
                    ErrorCode::Ipv6AutoFailed,
                    "Cannot auto-detect IPv6: your connection uses IPv4. Specify an explicit IPv6 address.",
                ))
            }
        }
    }
    Ok(Resolved { v4, v6 })
}

// ------------------------------------------------------------------ ACME TXT names and values

/// The TXT member the official client sends inside `/update` (Protocol rules: ACME names).
pub(super) struct TxtMember {
    pub(super) name: Fqdn,
    /// The host under `_acme-challenge.`, whose ownership the write needs.
    pub(super) host: Fqdn,
    pub(super) value: Option<String>,
    pub(super) delete: bool,
}

pub(super) fn parse_txt_member(
    t: &Map<String, Value>,
    hostname: &Fqdn,
) -> Result<TxtMember, FieldError> {
    let label = match t.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        other => {
            return Err(FieldError::validation(
                "txt.name",
                ErrorCode::Required,
                "txt.name is required (e.g. \"_acme-challenge\")",
                other.cloned().unwrap_or(Value::Null),
            ))
        }
    };
    let action = t.get("action").and_then(Value::as_str).unwrap_or("set");
    let value = match t.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(FieldError::validation(
                "txt.value",
                ErrorCode::InvalidType,
                "txt.value must be a string",
                other.clone(),
            ))
        }
    };
    let delete = match action {
        "set" => false,
        "delete" => true,
        _ => {
            return Err(FieldError::validation(
                "txt.action",
                ErrorCode::InvalidValue,
                "txt.action must be \"set\" or \"delete\"",
                json!(action),
            ))
        }
    };
    let (name, host) = txt_name(&format!("{label}.{hostname}"))?;
    if !delete && value.is_none() {
        return Err(FieldError::validation(
            "txt.value",
            ErrorCode::Required,
            "txt.value is required to set a TXT record",
            Value::Null,
        ));
    }
    if let Some(v) = &value {
        txt_value_check(v)?;
    }
    Ok(TxtMember {
        name,
        host,
        value,
        delete,
    })
}

/// `_acme-challenge.` + a hostname (Protocol rules: ACME names): (the TXT owner name, the host under it).
pub(super) fn txt_name(input: &str) -> Result<(Fqdn, Fqdn), FieldError> {
    let lower = input.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix(TXT_PREFIX) else {
        return Err(FieldError::new(
            ErrorCode::TxtInvalidName,
            "TXT name must start with _acme-challenge.",
        ));
    };
    let bad = |e: crate::names::NameError| {
        FieldError::new(
            ErrorCode::InvalidHostname,
            format!("Invalid hostname format: {e}"),
        )
    };
    let host = Fqdn::parse(rest).map_err(bad)?;
    let full = acme::challenge_name(&host).map_err(bad)?;
    Ok((full, host))
}

pub(super) fn txt_value_check(v: &str) -> Result<(), FieldError> {
    if v.chars().count() > 255 {
        return Err(FieldError::new(
            ErrorCode::TxtValueTooLong,
            "TXT value must be at most 255 characters",
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::validation(
            "value",
            ErrorCode::InvalidFormat,
            "TXT value must not contain control characters",
            Value::Null,
        ));
    }
    Ok(())
}
