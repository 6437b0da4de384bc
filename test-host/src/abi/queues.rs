//! Shared queues.

use wasmtime::{Linker, Result};

use super::memory::{hand_over, read, read_str, write_u32};
use super::{note, VmState, C, EMPTY, NOT_FOUND, OK};
use crate::world::{Event, Queue};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        proxy_enqueue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        proxy_dequeue_shared_queue,
    )?;
    Ok(())
}

fn proxy_register_shared_queue(mut c: C<'_>, np: i32, nl: i32, ret: i32) -> Result<i32> {
    const CALL: &str = "proxy_register_shared_queue";
    let name = read_str(&mut c, CALL, "the queue name", np, nl)?;
    let (worker, ctx) = (c.data().worker, c.data().effective);
    let id = {
        let mut world = c.data().world();
        let root = match world.contexts.get(&ctx) {
            Some(s) if s.root != 0 => s.root,
            _ => ctx,
        };
        match world
            .queues
            .iter()
            .position(|q| q.name == name && q.vm_id == "dynedge")
        {
            Some(i) => {
                world.queues[i].owner = (worker, root);
                i + 1
            }
            None => {
                world.queues.push(Queue {
                    name,
                    vm_id: "dynedge".into(),
                    owner: (worker, root),
                    items: Default::default(),
                });
                world.queues.len()
            }
        }
    };
    write_u32(&mut c, CALL, ret, id as u32)?;
    Ok(OK)
}

fn proxy_resolve_shared_queue(
    mut c: C<'_>,
    vp: i32,
    vl: i32,
    np: i32,
    nl: i32,
    ret: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_resolve_shared_queue";
    let vm = read_str(&mut c, CALL, "the VM id", vp, vl)?;
    let name = read_str(&mut c, CALL, "the queue name", np, nl)?;
    let vm = if vm.is_empty() {
        "dynedge".to_owned()
    } else {
        vm
    };
    let id = c
        .data()
        .world()
        .queues
        .iter()
        .position(|q| q.name == name && q.vm_id == vm);
    match id {
        Some(i) => {
            write_u32(&mut c, CALL, ret, i as u32 + 1)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

fn proxy_enqueue_shared_queue(mut c: C<'_>, id: i32, vp: i32, vl: i32) -> Result<i32> {
    const CALL: &str = "proxy_enqueue_shared_queue";
    let value = read(&mut c, CALL, vp, vl)?;
    let found = {
        let mut world = c.data().world();
        let idx = (id as u32 as usize).wrapping_sub(1);
        match world.queues.get_mut(idx) {
            Some(q) => {
                q.items.push_back(value);
                let (worker, root) = q.owner;
                world.events.push_back(Event::QueueReady {
                    worker,
                    root,
                    queue: id as u32,
                });
                true
            }
            None => false,
        }
    };
    if found {
        Ok(OK)
    } else {
        Ok(note(
            &mut c,
            CALL,
            NOT_FOUND,
            &format!("no shared queue {id}"),
        ))
    }
}

fn proxy_dequeue_shared_queue(mut c: C<'_>, id: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    const CALL: &str = "proxy_dequeue_shared_queue";
    let item = {
        let mut world = c.data().world();
        let idx = (id as u32 as usize).wrapping_sub(1);
        world.queues.get_mut(idx).map(|q| q.items.pop_front())
    };
    match item {
        None => Ok(note(
            &mut c,
            CALL,
            NOT_FOUND,
            &format!("no shared queue {id}"),
        )),
        Some(None) => Ok(EMPTY),
        Some(Some(bytes)) => {
            hand_over(&mut c, CALL, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        }
    }
}
