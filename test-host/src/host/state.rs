//! The shared world as a test sees it: the clock and ticks, shared data, queues, metrics,
//! logs and resource use.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{i, Host};
use crate::abi::Callback;
use crate::model::{Error, LogLevel, LogLine, Metric};
use crate::world::Event;

impl Host {
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

    /// Calls the module has made into the host so far (proxy-wasm and WASI), every worker.
    pub fn host_calls(&self) -> u64 {
        self.workers.iter().map(|w| w.store.data().host_calls).sum()
    }

    /// Fuel consumed so far by every callback (needs `Builder::fuel(true)`).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }
}
