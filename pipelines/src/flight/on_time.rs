//! Repeated ON_TIME statuses. An ON_TIME lets every connection on its flight hold, clears the
//! actions the flight's earlier statuses left open and gives back the holds they placed. When the
//! flight's previous status that concerns bookings (delayed, cancelled, diverted, on time) was
//! ON_TIME too and no reference change came in between, the second one finds nothing to do: what it
//! would clear only a status of the same flight can open, and its cases would meet the same
//! schedule and bookings. It is not fanned out to every booking of the flight again (the seat
//! allocator still hears of it as an update), which was most of the work of a day's on-time
//! statuses. Any schedule or booking change (a connecting flight deleted or moved, a
//! booking's itinerary changed) makes the next ON_TIME of every flight count again.

// Cases are boxed on purpose (see rules.rs): they move through exchanges and sorts.
#![allow(clippy::vec_box)]

use super::event::FlightStatus;
use super::rules::Case;
use super::seats::earliest;
use inflight_engine::checkpoint::encode;
use inflight_engine::{Key, Millis, State, Stream, key_hash};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

/// Records of one time: its capability, the status cases, whether a reference change came.
type Pending = (Capability<Millis>, Vec<Box<Case>>, bool);

/// What a worker saves: a flight's last ON_TIME, the time of the last change applied, a change
/// still waiting for its time.
#[derive(Serialize, Deserialize)]
enum Saved<K> {
    OnTime(K, Millis),
    Changed(Millis),
    Waiting(Millis),
}

/// Drops repeated ON_TIMEs from `cases` (the status cases that fan out to bookings, at their event
/// time, on the worker of their flight); `changes` carries the times of reference changes. Per
/// flight in event-time order (then source position), changes of a time before its statuses, so at
/// any parallelism. Saved in `state`: per flight the time of its last ON_TIME (while no other
/// status came after it), the time of the last change, and changes still waiting for their time
/// (a source sends a batch at its earliest time, before a checkpoint its changes may be past).
pub fn drop_repeated<'s>(
    cases: Stream<'s, Box<Case>>,
    changes: Stream<'s, Millis>,
    mut state: State,
) -> Stream<'s, Box<Case>> {
    #[allow(clippy::borrowed_box)] // the exchange's records are the boxes themselves
    let by_flight = Exchange::new(|c: &Box<Case>| key_hash(&c.event.flight_id));
    let (worker, peers) = (cases.scope().index() as u64, cases.scope().peers() as u64);
    cases.binary_frontier(changes.broadcast(), by_flight, Pipeline, "RepeatedOnTime", move |cap, _info| {
        let mut on_time: FxHashMap<Key, Millis> = FxHashMap::default();
        let mut changed: Option<Millis> = None;
        let mut pending: BTreeMap<Millis, Pending> = BTreeMap::new();
        for saved in state.restore_all::<Saved<Key>>() {
            match saved {
                Saved::OnTime(k, t) if key_hash(&k) % peers == worker => {
                    on_time.insert(k, t);
                }
                Saved::OnTime(..) => {}
                Saved::Changed(t) => changed = changed.max(Some(t)),
                Saved::Waiting(t) => pending.entry(t).or_insert_with(|| (cap.delayed(&t), Vec::new(), false)).2 = true,
            }
        }
        move |(input, frontier), (change, change_frontier), output| {
            input.for_each_stamp(|cap, data| {
                let Some(held) = cap.retain_least(output.output_index()) else { return };
                let at = pending.entry(*held.time()).or_insert_with(|| (held, Vec::new(), false));
                for batch in data {
                    at.1.append(batch);
                }
            });
            change.for_each_stamp(|cap, data| {
                if let Some(t) = cap.least() {
                    state.applied(*t);
                }
                let Some(held) = cap.retain_least(output.output_index()) else { return };
                for time in data.flat_map(|batch| batch.drain(..)) {
                    let time = time.max(*held.time());
                    pending.entry(time).or_insert_with(|| (held.delayed(&time), Vec::new(), false)).2 = true;
                }
            });
            while let Some(entry) = pending.first_entry() {
                let time = *entry.key();
                if frontier.less_equal(&time) || change_frontier.less_equal(&time) {
                    break;
                }
                let (cap, mut cases, any_change) = entry.remove();
                state.applied(time);
                if any_change {
                    changed = Some(time);
                }
                cases.sort_by_key(|c| c.pos);
                cases.retain(|case| {
                    let flight = &case.event.flight_id;
                    match case.event.status {
                        FlightStatus::OnTime => {
                            // Fanned out unless the last ON_TIME came after (or with) the last change.
                            let last = on_time.insert(flight.clone(), time);
                            last.is_none_or(|last| changed.is_some_and(|c| c > last))
                        }
                        FlightStatus::Delayed | FlightStatus::Cancelled | FlightStatus::Diverted => {
                            on_time.remove(flight);
                            true
                        }
                        _ => true,
                    }
                });
                if !cases.is_empty() {
                    output.session(&cap).give_container(&mut cases);
                }
            }
            if state.saved() {
                let at = earliest(frontier.frontier().first(), change_frontier.frontier().first());
                state.offer(at, |_| {
                    let mut saved: Vec<Saved<&Key>> = on_time.iter().map(|(k, t)| Saved::OnTime(k, *t)).collect();
                    saved.extend(changed.map(Saved::Changed));
                    saved.extend(pending.iter().filter(|(_, p)| p.2).map(|(t, _)| Saved::Waiting(*t)));
                    encode(&saved)
                });
            }
        }
    })
}
