//! What a dialect makes of a request, and the shape of the reply a job's outcomes become. The
//! dialects build these; `dialects/mod.rs` renders a [`Render`], so this names no dialect logic.

use super::apertodns::Render as ApertoRender;
use super::dyndns2::settings::StatusMode;
use crate::exchange::Outcome;
use crate::job::Job;

/// What a dialect makes of a request: an immediate reply, or an update job and the shape of
/// the reply its outcomes become.
pub enum Start {
    Reply(Outcome),
    Job(Box<Job>, Render),
}

/// The shape of a finished update job's reply, with what the shape needs. The dialect that
/// parsed the request chooses it; [`Render::render`] turns the hosts' outcomes into the reply.
pub enum Render {
    /// `good 192.0.2.1` lines (text) or the JSON form.
    Dyndns2 { mode: StatusMode, json: bool },
    /// An operator-defined endpoint's DynDNS2-style reply.
    Custom { mode: StatusMode, json: bool },
    /// `/update-by-path`, `/update-by-query`, `/delete-by-path`.
    PathQuery { delete: bool, json: bool },
    /// dynv6's `addresses updated`/`unchanged` for a zone (and its prefix, if one was set).
    Dynv6 {
        zone: String,
        prefix: Option<String>,
        json: bool,
    },
    /// acme-dns `/update`: the TXT value echoed.
    AcmeDns { txt: String },
    /// lego httpreq `present`/`cleanup`.
    HttpReq,
    /// The ApertoDNS API's JSON envelopes.
    Aperto(ApertoRender),
}
