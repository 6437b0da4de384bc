//! Request bodies and their fields: the JSON object, hostname, TTL and address fields, the
//! per-field error they answer with, and how `"auto"` and the zone's ranges resolve addresses.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::txt::{parse_txt_member, TxtMember};
use super::{Ctx, DEFAULT_TTL, TTL_RANGE};
use crate::addr::{self, AddrError};
use crate::config::{Config, Zone};
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
