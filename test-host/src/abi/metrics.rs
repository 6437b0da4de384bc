//! Metrics: counters, gauges and histograms.

use wasmtime::{Linker, Result};

use super::memory::{read_str, write_u32, write_u64};
use super::{note, VmState, BAD_ARGUMENT, C, NOT_FOUND, OK};
use crate::model::MetricKind;

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_define_metric", proxy_define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", proxy_increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", proxy_record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", proxy_get_metric)?;
    Ok(())
}

fn proxy_define_metric(mut c: C<'_>, t: i32, np: i32, nl: i32, ret: i32) -> Result<i32> {
    const CALL: &str = "proxy_define_metric";
    let name = read_str(&mut c, CALL, "the metric name", np, nl)?;
    let kind = match t {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        _ => {
            return Ok(note(
                &mut c,
                CALL,
                BAD_ARGUMENT,
                &format!("metric type {t} does not exist"),
            ))
        }
    };
    let id = {
        let mut world = c.data().world();
        match world.metric_ids.get(&name).copied() {
            Some(id) => {
                let existing = world.metrics[id as usize - 1].kind;
                if existing != kind {
                    drop(world);
                    return Ok(note(
                        &mut c,
                        CALL,
                        BAD_ARGUMENT,
                        &format!("metric {name} already defined as a {existing:?}"),
                    ));
                }
                id
            }
            None => {
                world.metrics.push(crate::world::MetricState {
                    name: name.clone(),
                    kind,
                    value: 0,
                    samples: Vec::new(),
                });
                let id = world.metrics.len() as u32;
                world.metric_ids.insert(name, id);
                id
            }
        }
    };
    write_u32(&mut c, CALL, ret, id)?;
    Ok(OK)
}

fn proxy_increment_metric(mut c: C<'_>, id: i32, offset: i64) -> Result<i32> {
    const CALL: &str = "proxy_increment_metric";
    let why = {
        let mut world = c.data().world();
        match world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
            None => Some((NOT_FOUND, format!("no metric {id}"))),
            Some(m) => match m.kind {
                MetricKind::Counter if offset < 0 => Some((
                    BAD_ARGUMENT,
                    format!("counter {} cannot be decremented ({offset})", m.name),
                )),
                MetricKind::Histogram => Some((
                    BAD_ARGUMENT,
                    format!("histogram {} takes proxy_record_metric", m.name),
                )),
                _ => {
                    m.value = m.value.wrapping_add_signed(offset);
                    None
                }
            },
        }
    };
    match why {
        None => Ok(OK),
        Some((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_record_metric(mut c: C<'_>, id: i32, value: i64) -> Result<i32> {
    const CALL: &str = "proxy_record_metric";
    let value = value as u64;
    let ok = {
        let mut world = c.data().world();
        match world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
            None => false,
            Some(m) => {
                match m.kind {
                    MetricKind::Counter => m.value = m.value.wrapping_add(value),
                    MetricKind::Gauge => m.value = value,
                    MetricKind::Histogram => {
                        m.samples.push(value);
                        m.value = m.samples.len() as u64;
                    }
                }
                true
            }
        }
    };
    if ok {
        Ok(OK)
    } else {
        Ok(note(&mut c, CALL, NOT_FOUND, &format!("no metric {id}")))
    }
}

fn proxy_get_metric(mut c: C<'_>, id: i32, ret: i32) -> Result<i32> {
    const CALL: &str = "proxy_get_metric";
    let got = {
        let world = c.data().world();
        match world.metrics.get((id as u32 as usize).wrapping_sub(1)) {
            None => Err((NOT_FOUND, format!("no metric {id}"))),
            Some(m) if m.kind == MetricKind::Histogram => Err((
                BAD_ARGUMENT,
                format!("histogram {} has no single value", m.name),
            )),
            Some(m) => Ok(m.value),
        }
    };
    match got {
        Ok(v) => {
            write_u64(&mut c, CALL, ret, v)?;
            Ok(OK)
        }
        Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}
