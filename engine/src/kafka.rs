//! Kafka connection settings shared by the Kafka source, sinks and CLI tools: brokers, any
//! librdkafka property passed through (`-X key=value`, so TLS and SASL need no code), and topic
//! creation through the admin API (some brokers, tansu among them, do not auto-create topics).

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// How long the brokers have to answer the first metadata request of a run or tool.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Extra librdkafka properties, applied last (they win over inflight's defaults).
    pub properties: Vec<(String, String)>,
}

/// A Kafka operation that failed; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("kafka ({brokers}): {message}")]
pub struct KafkaError {
    /// The brokers asked.
    pub brokers: String,
    /// What went wrong.
    pub message: String,
}

impl KafkaConfig {
    /// Parses `-X key=value` arguments.
    pub fn parse_property(arg: &str) -> Result<(String, String), String> {
        match arg.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(format!("{arg:?} is not a librdkafka property of the form key=value")),
        }
    }

    /// A client configuration with the brokers, `defaults`, then the user's properties.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An error about these brokers.
    pub fn error(&self, message: impl Into<String>) -> KafkaError {
        KafkaError { brokers: self.brokers.clone(), message: message.into() }
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.client_config(&[]).create().map_err(|e| self.error(format!("cannot create an admin client: {e}")))
    }

    /// The names of the cluster's topics, asked within [`REACH_TIMEOUT`]: brokers that do not
    /// answer are an error at start, not a minute's hang in the first operation. (The metadata
    /// of all topics, not of one: asking for one makes brokers with auto-creation create it.)
    fn topic_names(&self, admin: &AdminClient<DefaultClientContext>) -> Result<Vec<String>, KafkaError> {
        let md = admin.inner().fetch_metadata(None, REACH_TIMEOUT).map_err(|e| {
            self.error(format!(
                "cannot reach the brokers within {} s (is Kafka running there?): {e}",
                REACH_TIMEOUT.as_secs()
            ))
        })?;
        let usable = md.topics().iter().filter(|t| t.error().is_none() && !t.partitions().is_empty());
        Ok(usable.map(|t| t.name().to_owned()).collect())
    }

    /// Fails unless `topic` exists, naming the topics that do and ending with `hint` (a typo'd
    /// input topic must not read nothing and succeed).
    pub fn require_topic(&self, topic: &str, hint: &str) -> Result<(), KafkaError> {
        let mut names = self.topic_names(&self.admin()?)?;
        if names.iter().any(|n| n == topic) {
            return Ok(());
        }
        names.retain(|n| !n.starts_with("__"));
        names.sort();
        let there = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        Err(self.error(format!("topic {topic:?} does not exist (topics there: {there}){hint}")))
    }

    /// Creates `topic` with `partitions` partitions unless it exists. An existing topic is seen in
    /// the metadata first, so clusters that deny topic creation to this client (ACLs, or brokers
    /// without the CreateTopics API) work with topics made beforehand.
    pub fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let admin = self.admin()?;
        if self.topic_names(&admin)?.iter().any(|n| n == topic) {
            return Ok(());
        }
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = futures_executor::block_on(admin.create_topics([&new], &opts))
            .map_err(|e| self.error(format!("creating topic {topic:?} failed: {e}")))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(self.error(format!("creating topic {t:?} failed: {code}")));
                }
            }
        }
        Ok(())
    }

    /// The number of partitions of `topic`, waiting up to `wait` for it to appear.
    pub fn partitions<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        wait: Duration,
    ) -> Result<i32, KafkaError> {
        let deadline = Instant::now() + wait;
        loop {
            let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => match md.topics().iter().find(|t| t.name() == topic) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        return Ok(t.partitions().len() as i32);
                    }
                    Some(t) => format!("topic {topic:?} is not available ({:?})", t.error()),
                    None => format!("topic {topic:?} does not exist"),
                },
                Err(e) => format!("cannot fetch metadata: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(self.error(last));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaConfig;

    #[test]
    fn properties_need_key_and_value() {
        assert_eq!(KafkaConfig::parse_property("linger.ms=5"), Ok(("linger.ms".into(), "5".into())));
        assert_eq!(KafkaConfig::parse_property("sasl.password=a=b"), Ok(("sasl.password".into(), "a=b".into())));
        assert!(KafkaConfig::parse_property("linger.ms").is_err());
        assert!(KafkaConfig::parse_property("=5").is_err());
    }

    #[test]
    fn a_partition_ends_where_the_broker_confirms_it_past_the_reported_end() {
        let mut ends = super::Ends::default();
        ends.add(0, 0, 3);
        ends.add(1, 5, 5);
        assert!(!ends.done(), "nothing confirmed yet");
        ends.eof(1);
        (0..3).for_each(|o| ends.read(0, o));
        assert!(!ends.done(), "partition 0 passed its reported end, unconfirmed");
        ends.eof(0);
        assert!(ends.done());
        // More records after the EOF (the reported end was short): not done until confirmed again.
        ends.read(0, 3);
        assert!(!ends.done());
        ends.eof(0);
        assert!(ends.done());
        // An EOF before the reported end (a stale answer) does not end the read.
        let mut early = super::Ends::default();
        early.add(0, 0, 10);
        early.read(0, 4);
        early.eof(0);
        assert!(!early.done());
    }
}

/// Commits offsets for a consumer group on a thread of its own, in the order given. A synchronous
/// commit waits as long as the broker takes (forever if it is gone), so it must not run on a
/// worker, and the end of a run waits for it with a timeout.
pub struct Committer {
    tx: Option<std::sync::mpsc::Sender<TopicPartitionList>>,
    done: std::sync::mpsc::Receiver<Option<String>>,
    brokers: String,
}

impl Committer {
    /// Starts a committer for `group`.
    pub fn start(config: &KafkaConfig, group: &str) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = config
            .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| config.error(format!("cannot create a consumer to commit offsets: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<TopicPartitionList>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let group = group.to_owned();
        std::thread::Builder::new()
            .name("inflight-commit".into())
            .spawn(move || {
                let mut last_error = None;
                for tpl in rx {
                    match consumer.commit(&tpl, CommitMode::Sync) {
                        Ok(()) => last_error = None,
                        Err(e) => {
                            tracing::warn!(group = %group, error = %e, "committing offsets failed");
                            last_error = Some(e.to_string());
                        }
                    }
                }
                let _ = done_tx.send(last_error);
            })
            .map_err(|e| config.error(format!("cannot start the commit thread: {e}")))?;
        Ok(Committer { tx: Some(tx), done, brokers: config.brokers.clone() })
    }

    /// Queues a commit.
    pub fn commit(&self, offsets: TopicPartitionList) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(offsets);
        }
    }

    /// Waits up to `timeout` for the queued commits; fails if the last one failed or timed out.
    pub fn finish(mut self, timeout: Duration) -> Result<(), KafkaError> {
        drop(self.tx.take());
        let error = |message: String| KafkaError { brokers: self.brokers.clone(), message };
        match self.done.recv_timeout(timeout) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(error(format!("committing offsets failed: {e}"))),
            Err(_) => Err(error(format!("committing offsets did not finish within {} s", timeout.as_secs()))),
        }
    }
}

/// Hands `record` to the producer, serving delivery reports while its local queue is full; any
/// other refusal (e.g. a record over `message.max.bytes`) is returned, not retried.
pub fn send_when_room<C, K, P>(
    producer: &rdkafka::producer::BaseProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), rdkafka::error::KafkaError>
where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// What `produce_lines` did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProduceReport {
    /// Records acknowledged by the broker.
    pub records: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub seconds: f64,
}

/// Sends each non-blank line of `input` as one record to `topic` (created if missing), optionally
/// keyed by a top-level JSON field and paced to `rate` records per second; waits for every
/// acknowledgement. This is the specification's producer (`inflight produce`).
pub fn produce_lines(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    input: impl std::io::BufRead,
    key_field: Option<&str>,
    rate: Option<f64>,
) -> Result<ProduceReport, KafkaError> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    config.ensure_topic(topic, partitions)?;
    let producer: BaseProducer = config
        .client_config(&crate::sink::KafkaOutput::DEFAULTS)
        .create()
        .map_err(|e| config.error(format!("cannot create a producer: {e}")))?;
    let start = Instant::now();
    let mut sent = 0u64;
    for line in input.lines() {
        let line = line.map_err(|e| config.error(format!("reading input: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(due - now);
            }
        }
        let key = key_field.and_then(|f| {
            serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| match &v[f] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
        });
        let mut record = BaseRecord::<str, str>::to(topic).payload(line.as_str());
        if let Some(k) = &key {
            record = record.key(k.as_str());
        }
        send_when_room(&producer, record).map_err(|e| config.error(format!("producing to {topic:?} failed: {e}")))?;
        sent += 1;
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).map_err(|e| config.error(format!("flushing to {topic:?} failed: {e}")))?;
    Ok(ProduceReport { records: sent, seconds: start.elapsed().as_secs_f64() })
}

/// The client context of consumers that read to the end of partitions: librdkafka's errors are
/// logged as rdkafka's default context logs them, except the partition EOFs such a read asks for
/// (`enable.partition.eof`): they also come as events, which the reader handles.
pub struct EndAware;

impl rdkafka::ClientContext for EndAware {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndAware {}

/// A consumer that may read to the end of partitions (see [`EndAware`]).
pub type EndAwareConsumer = BaseConsumer<EndAware>;

/// How far a bounded read of some partitions has come. A partition is read to its end once its
/// position passed the high watermark found at the start *and* the broker said, at that position,
/// that there is nothing more (librdkafka's partition EOF, which needs `enable.partition.eof`).
/// Both are needed: tansu 0.6 reports the high watermark as the last batch's base offset + 1, so
/// passing it does not mean everything is read, and a pause without records proves nothing on a
/// loaded machine.
#[derive(Default)]
pub struct Ends {
    /// Partition → (high watermark at the start, next offset to read, position at the last EOF).
    parts: std::collections::HashMap<i32, (i64, i64, Option<i64>)>,
}

impl Ends {
    /// A partition to read from `from` up to at least `high`.
    pub fn add(&mut self, partition: i32, from: i64, high: i64) {
        self.parts.insert(partition, (high, from, None));
    }

    /// A record of `partition` at `offset` was read.
    pub fn read(&mut self, partition: i32, offset: i64) {
        if let Some((_, next, _)) = self.parts.get_mut(&partition) {
            *next = (*next).max(offset + 1);
        }
    }

    /// The broker said `partition` has nothing after what was read.
    pub fn eof(&mut self, partition: i32) {
        if let Some((_, next, at)) = self.parts.get_mut(&partition) {
            *at = Some(*next);
        }
    }

    /// Every partition read to its end.
    pub fn done(&self) -> bool {
        self.parts.values().all(|(high, next, at)| next >= high && *at == Some(*next))
    }
}

/// Writes every record of `topic` from the start to the end offsets found when called (or on
/// and on with `follow`), one per line: the value, or with `meta` a JSON object with partition,
/// offset, key, headers and value. Returns the number of records written.
pub fn consume_to(
    config: &KafkaConfig,
    topic: &str,
    follow: bool,
    meta: bool,
    stop: &crate::signals::Stop,
    out: &mut impl std::io::Write,
) -> Result<u64, KafkaError> {
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: EndAwareConsumer = config
        .client_config(&[
            ("group.id", "inflight-consume"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", if follow { "false" } else { "true" }),
        ])
        .create_with_context(EndAware)
        .map_err(|e| config.error(format!("cannot create a consumer: {e}")))?;
    config.require_topic(topic, "")?;
    let count = config.partitions(&consumer, topic, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Ends::default();
    for p in 0..count {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| config.error(format!("reading offsets of {topic}/{p}: {e}")))?;
        tracing::debug!(topic, partition = p, low, high, "partition offsets");
        tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(|e| config.error(e.to_string()))?;
        ends.add(p, low, high);
    }
    consumer.assign(&tpl).map_err(|e| config.error(format!("assigning partitions: {e}")))?;
    let mut written = 0u64;
    let io = |e: std::io::Error| config.error(format!("writing output: {e}"));
    // A reader that has had enough (`consume | head`) ends the run quietly.
    let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    while !stop.requested() && (follow || !ends.done()) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => ends.eof(p),
            Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error (retrying)"),
            Some(Ok(m)) => {
                ends.read(m.partition(), m.offset());
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                let wrote = if meta {
                    let headers: serde_json::Map<String, serde_json::Value> = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let line = serde_json::json!({
                        "partition": m.partition(),
                        "offset": m.offset(),
                        "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        "headers": headers,
                        "value": value,
                    });
                    writeln!(out, "{line}")
                } else {
                    writeln!(out, "{value}")
                };
                match wrote {
                    Err(e) if closed(&e) => return Ok(written),
                    r => r.map_err(io)?,
                }
                written += 1;
            }
        }
    }
    match out.flush() {
        Err(e) if closed(&e) => Ok(written),
        r => r.map(|()| written).map_err(io),
    }
}
