//! Writing results to a Kafka topic: every worker produces its own records (no exchange), keyed so
//! one key stays in one partition, with headers, through an idempotent producer. Delivery reports
//! are counted; when the input ends the producer is flushed, and any record that could not be
//! delivered fails the run loudly instead of being dropped.

use super::LineSink;
use crate::Stream;
use crate::kafka::KafkaConfig;
use crate::runtime::RunContext;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

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
}

/// Counts delivery reports; keeps the first error.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct Context(Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.0.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Produces every record of `records` to the output topic from the worker that holds it.
pub fn produce(
    records: Stream<'_, KafkaRecord>,
    output: &KafkaOutput,
    ctx: &RunContext,
) -> LineSink {
    let sink = LineSink::default();
    let written = Rc::clone(&sink.written);
    let deliveries = Arc::new(Deliveries::default());
    let producer: Option<BaseProducer<Context>> = match output
        .kafka
        .client_config(&KafkaOutput::DEFAULTS)
        .create_with_context(Context(Arc::clone(&deliveries)))
    {
        Ok(p) => Some(p),
        Err(e) => {
            ctx.failures.report(
                output
                    .kafka
                    .error(format!("cannot create a producer: {e}"))
                    .to_string(),
            );
            None
        }
    };
    let topic = output.topic.clone();
    let failures = ctx.failures.clone();
    let mut producer = producer;
    let mut finished = false;
    records.sink(Pipeline, "KafkaSink", move |(input, frontier)| {
        let Some(p) = producer.as_ref() else {
            input.for_each(|_, _| {});
            return;
        };
        input.for_each(|_cap, data| {
            for r in data.drain(..) {
                send(p, &topic, &r);
                written.set(written.get() + 1);
            }
        });
        p.poll(Duration::ZERO);
        if frontier.is_empty() && !finished {
            finished = true;
            if let Err(e) = p.flush(Duration::from_secs(120)) {
                failures.report(format!("kafka: flushing topic {topic:?} failed: {e}"));
            }
            let failed = deliveries.failed.load(Ordering::Relaxed);
            if failed > 0 {
                let first = deliveries.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
                failures.report(format!("kafka: {failed} records could not be delivered to {topic:?} (first error: {first})"));
            }
            producer = None;
        }
    });
    sink
}

fn send(p: &BaseProducer<Context>, topic: &str, r: &KafkaRecord) {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut record = BaseRecord::to(topic)
        .payload(r.payload.as_bytes())
        .headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_bytes());
    }
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The local queue is full: serve delivery reports until there is room.
                record = back;
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                // Not retryable here (e.g. the record is too large): a delivery failure, counted.
                let ctx = p.context();
                ctx.0.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = ctx.0.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
                return;
            }
        }
    }
}
