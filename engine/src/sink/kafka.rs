//! Writing results to a Kafka topic: every worker produces its own records (no exchange), keyed so
//! one key stays in one partition, with headers, through an idempotent producer. Delivery reports
//! are counted; when the input ends the producer is flushed, and any record that could not be
//! delivered fails the run loudly instead of being dropped.

use super::LineSink;
use crate::Stream;
use crate::kafka::{KafkaConfig, send_when_room};
use crate::runtime::RunContext;
use crate::time::Millis;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::{Operator, OperatorInfo};

/// A Kafka output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOutput {
    /// Connection.
    pub kafka: KafkaConfig,
    /// Topic to write.
    pub topic: String,
    /// Partitions to create the topic with if it is missing.
    pub partitions: i32,
}

impl KafkaOutput {
    /// Producer settings for throughput with safety: idempotence on, lz4, batches of up to 1 MB
    /// lingering 5 ms; any of them can be overridden with `-X`.
    pub const DEFAULTS: [(&'static str, &'static str); 5] = [
        ("enable.idempotence", "true"),
        ("compression.type", "lz4"),
        ("linger.ms", "5"),
        ("batch.size", "1000000"),
        ("queue.buffering.max.messages", "1000000"),
    ];
}

/// One record for Kafka.
#[derive(Clone, Debug)]
pub struct KafkaRecord {
    /// Partitioning key.
    pub key: Option<String>,
    /// JSON value.
    pub payload: String,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// Deterministic id, sent as the `id` header (a restore reads it back to skip what is there).
    pub id: Option<String>,
}

/// Delivery reports as the producer's callbacks hand them over: (time of the record, success),
/// plus the first error for the message.
#[derive(Default)]
struct Deliveries {
    reports: Mutex<Vec<(Millis, bool)>>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    fn fail(&self, e: &KafkaError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

struct Context(Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    /// The timely time of the record, to know when every record of a time is acknowledged.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, time: usize) {
        if let Err((e, _)) = result {
            self.0.fail(e);
        }
        if let Ok(mut r) = self.0.reports.lock() {
            r.push((time as Millis, result.is_ok()));
        }
    }
}

/// Produces every record of `records` to the output topic from the worker that holds it. The
/// returned stream carries no data: its frontier is the *durable* frontier, because the sink holds
/// a capability for every time until the broker has acknowledged all of that time's records. A
/// probe on it tells sources which outputs are safe (offset commits, flow control).
pub fn produce<'s>(
    records: Stream<'s, KafkaRecord>,
    output: &KafkaOutput,
    ctx: &RunContext,
) -> (LineSink, Stream<'s, ()>) {
    let sink = LineSink::default();
    let written = Rc::clone(&sink.written);
    let deliveries = Arc::new(Deliveries::default());
    let mut producer: Option<BaseProducer<Context>> = match output
        .kafka
        .client_config(&KafkaOutput::DEFAULTS)
        .create_with_context(Context(Arc::clone(&deliveries)))
    {
        Ok(p) => Some(p),
        Err(e) => {
            ctx.failures.report(output.kafka.error(format!("cannot create a producer: {e}")).to_string());
            None
        }
    };
    let topic = output.topic.clone();
    let failures = ctx.failures.clone();
    let scope = records.scope();
    let durable = records.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        "KafkaSink",
        move |_cap, info: OperatorInfo| {
            let activator = scope.activator_for(info.address);
            // Times with records handed to the producer and not yet acknowledged.
            let mut pending: BTreeMap<Millis, (Capability<Millis>, u64)> = BTreeMap::new();
            let mut reports = Vec::new();
            move |(input, frontier), output| {
                let Some(p) = producer.as_ref() else {
                    input.for_each(|_, _| {});
                    return;
                };
                input.for_each_stamp(|cap, data| {
                    let (Some(time), Some(held)) = (cap.least().copied(), cap.retain_least(output.output_index()))
                    else {
                        return;
                    };
                    let slot = pending.entry(time).or_insert((held, 0));
                    for batch in data {
                        for r in batch.drain(..) {
                            if send(p, &topic, &r, time) {
                                slot.1 += 1;
                            }
                            written.set(written.get() + 1);
                        }
                    }
                });
                p.poll(Duration::ZERO);
                if let Ok(mut r) = deliveries.reports.lock() {
                    std::mem::swap(&mut *r, &mut reports);
                }
                for (time, _ok) in reports.drain(..) {
                    if let Some(slot) = pending.get_mut(&time) {
                        slot.1 = slot.1.saturating_sub(1);
                    }
                }
                pending.retain(|_, (_, outstanding)| *outstanding > 0);
                if !pending.is_empty() {
                    activator.activate_after(Duration::from_millis(1));
                } else if frontier.is_empty() {
                    let failed = deliveries.failed.load(Ordering::Relaxed);
                    if failed > 0 {
                        let first = deliveries.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
                        failures.report(format!(
                            "kafka: {failed} records could not be delivered to {topic:?} (first error: {first})"
                        ));
                    }
                    producer = None;
                }
            }
        },
    );
    (sink, durable)
}

/// Hands one record to the producer; false if it could not even be queued (counted as failed).
fn send(p: &BaseProducer<Context>, topic: &str, r: &KafkaRecord, time: Millis) -> bool {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
    for (k, v) in &r.headers {
        headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
    }
    if let Some(id) = &r.id {
        headers = headers.insert(Header { key: ID_HEADER, value: Some(id.as_bytes()) });
    }
    let mut record = BaseRecord::with_opaque_to(topic, time as usize).payload(r.payload.as_bytes()).headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_bytes());
    }
    match send_when_room(p, record) {
        Ok(()) => true,
        Err(e) => {
            // Not retryable here (e.g. the record is too large): a delivery failure, counted.
            p.context().0.fail(&e);
            false
        }
    }
}

/// The header that carries a record's id.
pub const ID_HEADER: &str = "id";

/// The ids of the records in `from`'s partitions up to their end (read from the start of each
/// partition that grew after the given offsets): what a run stopped after a checkpoint already
/// wrote. The deterministic engine produces the same records
/// again on restore, and these are not sent twice.
pub fn written_ids(
    kafka: &KafkaConfig,
    from: &[(String, i32, i64)],
) -> Result<std::collections::HashSet<String>, crate::kafka::KafkaError> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let mut ids = std::collections::HashSet::new();
    if from.is_empty() {
        return Ok(ids);
    }
    let consumer: crate::kafka::EndAwareConsumer = kafka
        .client_config(&[
            ("group.id", "inflight-read-back"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
        ])
        .create_with_context(crate::kafka::EndAware)
        .map_err(|e| kafka.error(format!("cannot create a consumer: {e}")))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = crate::kafka::Ends::default();
    let mut any = false;
    for (topic, partition, offset) in from {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(10))
            .map_err(|e| kafka.error(format!("reading end offsets of {topic}/{partition}: {e}")))?;
        if high > *offset {
            // From the log's start, not from `offset`: tansu 0.6 answers a fetch starting inside a
            // batch with the next batch, and ids it skipped would be sent twice. Ids from before
            // the checkpoint are harmless (the restored run never produces them again).
            tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(low))
                .map_err(|e| kafka.error(e.to_string()))?;
            ends.add(*partition, low, high);
            any = true;
        }
    }
    if !any {
        return Ok(ids);
    }
    consumer.assign(&tpl).map_err(|e| kafka.error(format!("assigning partitions: {e}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.done() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                ends.read(m.partition(), m.offset());
                let id = m.headers().and_then(|h| h.iter().find(|h| h.key == ID_HEADER).and_then(|h| h.value));
                if let Some(id) = id.and_then(|v| std::str::from_utf8(v).ok()) {
                    ids.insert(id.to_owned());
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => ends.eof(p),
            Some(Err(e)) => tracing::debug!(error = %e, "reading back the output topic"),
            None => {}
        }
    }
    if !ends.done() {
        return Err(kafka.error("reading back the output topic after a restore did not reach its end within 60 s"));
    }
    Ok(ids)
}
