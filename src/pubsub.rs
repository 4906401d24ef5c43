//! Publish/subscribe: the registry of who listens to which channel or pattern, and each
//! subscribed connection's outbox.
//!
//! It exists so that Redis Sentinel can monitor ratelimitd: Sentinels find each other by
//! publishing "hello" messages on `__sentinel__:hello` through every monitored node and reading
//! them back from a subscribed connection (docs/OPERATIONS.md, "Sentinel"). It is a complete,
//! small pub/sub nonetheless, with Redis's reply shapes, for any client that wants one.
//!
//! ```text
//!  PUBLISH ─► PubSub (one mutex; held only to look up and send) ─► subscriber's outbox
//!                                                     (an mpsc whose bytes are counted)
//!  subscriber's connection loop: select { socket read, outbox.recv() } ─► write the frames
//! ```
//!
//! A connection that never subscribes has no outbox and pays nothing: the connection loop's
//! extra `select!` branch is a pending future. A subscriber that does not read its messages
//! fills its outbox and is disconnected once it holds more than the pubsub class of
//! `client-output-buffer-limit` allows (src/bounds.rs; 32 MB at once, or 8 MB for a minute,
//! as in Redis), so a stuck client cannot make the daemon hold unbounded memory.

use crate::bounds::{ClientBounds, OutputClass, Queued};
use crate::clients::ClientHandle;
use bytes::{Bytes, BytesMut};
use ratelimitd_protocol::parse::glob_match;
use ratelimitd_protocol::{compose, ProtoVersion, Reply};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::mpsc;

/// Bytes a message is counted for beyond its channel, pattern and payload: the `Arc`, the
/// queue's slot and the frame's headers, so that a flood of empty messages is bounded too.
const MESSAGE_OVERHEAD: u64 = 64;

/// One published message, shared by every subscriber that receives it.
#[derive(Debug)]
pub struct Message {
    /// The pattern that matched (PSUBSCRIBE), or None for a channel subscription.
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    /// What the message counts for against its subscriber's output limit.
    fn weight(&self) -> u64 {
        let pattern = self.pattern.as_ref().map_or(0, Bytes::len);
        (pattern + self.channel.len() + self.payload.len()) as u64 + MESSAGE_OVERHEAD
    }
}

/// Where a subscriber's messages go.
#[derive(Clone)]
struct Outbox {
    handle: Arc<ClientHandle>,
    tx: mpsc::UnboundedSender<Arc<Message>>,
    queued: Arc<Queued>,
}

impl Outbox {
    /// Queue a message; over the output limit, the client stopped reading: it is
    /// disconnected and the message is not queued.
    fn deliver(&self, msg: &Arc<Message>, bounds: &ClientBounds, now: Instant) -> bool {
        if self.handle.killed.load(Ordering::Relaxed) {
            return false;
        }
        let weight = msg.weight();
        if self
            .queued
            .add(weight, bounds.output_limit(OutputClass::Pubsub), now)
        {
            self.queued.sent(weight);
            tracing::warn!(
                "client {} ({}) holds {} bytes of pub/sub messages, over its \
                 client-output-buffer-limit; disconnecting it",
                self.handle.id,
                self.handle.addr,
                self.queued.bytes()
            );
            bounds.disconnected.output.fetch_add(1, Ordering::Relaxed);
            self.handle.kill();
            return false;
        }
        if self.tx.send(msg.clone()).is_err() {
            self.queued.sent(weight);
            return false;
        }
        true
    }
}

#[derive(Default)]
struct Registry {
    channels: HashMap<Bytes, Vec<Outbox>>,
    patterns: Vec<(Bytes, Outbox)>,
}

/// Every subscription of the process (one per daemon, in `Shared`).
pub struct PubSub {
    inner: Mutex<Registry>,
    /// The pubsub class's output limit, read at every delivery.
    bounds: Arc<ClientBounds>,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PubSub {
    pub fn new(bounds: Arc<ClientBounds>) -> PubSub {
        PubSub {
            inner: Mutex::default(),
            bounds,
        }
    }

    /// PUBLISH: deliver to every channel and pattern subscriber; the number that received it.
    pub fn publish(&self, channel: Bytes, payload: Bytes) -> usize {
        let reg = lock(&self.inner);
        let now = Instant::now();
        let mut n = 0;
        if let Some(subs) = reg.channels.get(&channel) {
            let msg = Arc::new(Message {
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
            });
            n += subs
                .iter()
                .filter(|o| o.deliver(&msg, &self.bounds, now))
                .count();
        }
        for (pattern, outbox) in &reg.patterns {
            if glob_match(pattern, &channel) {
                let msg = Arc::new(Message {
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
                n += outbox.deliver(&msg, &self.bounds, now) as usize;
            }
        }
        n
    }

    fn add_channel(&self, channel: &Bytes, outbox: Outbox) {
        lock(&self.inner)
            .channels
            .entry(channel.clone())
            .or_default()
            .push(outbox);
    }

    fn remove_channel(&self, channel: &Bytes, client: u64) {
        let mut reg = lock(&self.inner);
        if let Some(subs) = reg.channels.get_mut(channel) {
            subs.retain(|o| o.handle.id != client);
            if subs.is_empty() {
                reg.channels.remove(channel);
            }
        }
    }

    fn add_pattern(&self, pattern: &Bytes, outbox: Outbox) {
        lock(&self.inner).patterns.push((pattern.clone(), outbox));
    }

    fn remove_pattern(&self, pattern: &Bytes, client: u64) {
        lock(&self.inner)
            .patterns
            .retain(|(p, o)| !(o.handle.id == client && p == pattern));
    }

    /// PUBSUB NUMPAT.
    pub fn pattern_count(&self) -> usize {
        lock(&self.inner).patterns.len()
    }

    /// PUBSUB CHANNELS [pattern]: channels with at least one subscriber.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        lock(&self.inner)
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
            .cloned()
            .collect()
    }

    /// PUBSUB NUMSUB: subscribers of one channel.
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        lock(&self.inner)
            .channels
            .get(channel)
            .map(Vec::len)
            .unwrap_or(0)
    }
}

/// A connection's side of pub/sub, created by its first (P)SUBSCRIBE and kept until it closes.
pub struct Subscriber {
    handle: Arc<ClientHandle>,
    tx: mpsc::UnboundedSender<Arc<Message>>,
    /// The outbox; the connection loop waits on it ([`Subscriber::recv`]) alongside the socket.
    rx: mpsc::UnboundedReceiver<Arc<Message>>,
    /// Bytes waiting in the outbox, shared with every [`Outbox`] of this subscriber.
    queued: Arc<Queued>,
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
    /// Frames a pub/sub command produced (one per channel, as Redis sends them), written by
    /// the connection in place of the command's reply.
    pub frames: BytesMut,
    /// The last command answered through `frames`: the connection must not compose its reply.
    pub replied: bool,
}

/// Subscribe, unsubscribe, or the two pattern forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Psubscribe => "psubscribe",
            Kind::Punsubscribe => "punsubscribe",
        }
    }
}

impl Subscriber {
    pub fn new(handle: Arc<ClientHandle>) -> Subscriber {
        let (tx, rx) = mpsc::unbounded_channel();
        Subscriber {
            handle,
            tx,
            rx,
            queued: Arc::default(),
            channels: Vec::new(),
            patterns: Vec::new(),
            frames: BytesMut::new(),
            replied: false,
        }
    }

    /// Channels plus patterns (the count every confirmation carries).
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    fn outbox(&self) -> Outbox {
        Outbox {
            handle: self.handle.clone(),
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }

    fn publish_counts(&self) {
        self.handle
            .sub
            .store(self.channels.len() as u32, Ordering::Relaxed);
        self.handle
            .psub
            .store(self.patterns.len() as u32, Ordering::Relaxed);
    }

    /// Apply one (P)(UN)SUBSCRIBE with its arguments, writing one confirmation per name.
    /// Unsubscribing with no names means from all of them (and with none, one confirmation
    /// with a null name, as Redis answers).
    pub fn apply(&mut self, reg: &PubSub, kind: Kind, names: &[Bytes], proto: ProtoVersion) {
        let confirm = |s: &mut Subscriber, name: Option<&Bytes>| {
            let count = s.count() as i64;
            frame(
                &mut s.frames,
                proto,
                &[
                    Reply::bulk(kind.word()),
                    name.map(|n| Reply::Bulk(n.clone())).unwrap_or(Reply::Null),
                    Reply::Integer(count),
                ],
            );
        };
        match kind {
            Kind::Subscribe => {
                for name in names {
                    if !self.channels.contains(name) {
                        self.channels.push(name.clone());
                        reg.add_channel(name, self.outbox());
                    }
                    confirm(self, Some(name));
                }
            }
            Kind::Psubscribe => {
                for name in names {
                    if !self.patterns.contains(name) {
                        self.patterns.push(name.clone());
                        reg.add_pattern(name, self.outbox());
                    }
                    confirm(self, Some(name));
                }
            }
            Kind::Unsubscribe | Kind::Punsubscribe => {
                let pattern = kind == Kind::Punsubscribe;
                let targets: Vec<Bytes> = if names.is_empty() {
                    if pattern {
                        self.patterns.clone()
                    } else {
                        self.channels.clone()
                    }
                } else {
                    names.to_vec()
                };
                if targets.is_empty() {
                    confirm(self, None);
                }
                for name in &targets {
                    let list = if pattern {
                        &mut self.patterns
                    } else {
                        &mut self.channels
                    };
                    if let Some(i) = list.iter().position(|c| c == name) {
                        list.remove(i);
                        if pattern {
                            reg.remove_pattern(name, self.handle.id);
                        } else {
                            reg.remove_channel(name, self.handle.id);
                        }
                    }
                    confirm(self, Some(name));
                }
            }
        }
        self.publish_counts();
        self.replied = true;
    }

    /// Drop every subscription (the connection is closing).
    pub fn clear(&mut self, reg: &PubSub) {
        for c in self.channels.drain(..) {
            reg.remove_channel(&c, self.handle.id);
        }
        for p in self.patterns.drain(..) {
            reg.remove_pattern(&p, self.handle.id);
        }
        self.publish_counts();
    }

    /// Write every message already waiting in the outbox (used after each command, so a
    /// RESP3 client that publishes to itself gets the message before PUBLISH's count, as in
    /// Redis).
    pub fn drain_ready(&mut self, proto: ProtoVersion, out: &mut BytesMut) {
        while let Ok(msg) = self.rx.try_recv() {
            self.queued.sent(msg.weight());
            message_frame(&msg, proto, out);
        }
    }

    /// The next message of the outbox, once there is one.
    pub async fn recv(&mut self) -> Option<Arc<Message>> {
        let msg = self.rx.recv().await?;
        self.queued.sent(msg.weight());
        Some(msg)
    }
}

/// One message as Redis sends it: `message channel payload` or `pmessage pattern channel
/// payload`, bulk strings, as an array (RESP2) or a push (RESP3).
pub fn message_frame(msg: &Message, proto: ProtoVersion, out: &mut BytesMut) {
    match &msg.pattern {
        None => frame(
            out,
            proto,
            &[
                Reply::bulk("message"),
                Reply::Bulk(msg.channel.clone()),
                Reply::Bulk(msg.payload.clone()),
            ],
        ),
        Some(p) => frame(
            out,
            proto,
            &[
                Reply::bulk("pmessage"),
                Reply::Bulk(p.clone()),
                Reply::Bulk(msg.channel.clone()),
                Reply::Bulk(msg.payload.clone()),
            ],
        ),
    }
}

/// An out-of-band frame: `*n` in RESP2, the push type `>n` in RESP3 (which the protocol
/// crate's `Reply` does not model, since only pub/sub sends it).
pub fn frame(out: &mut BytesMut, proto: ProtoVersion, items: &[Reply]) {
    let mark = if proto == ProtoVersion::Resp3 {
        '>'
    } else {
        '*'
    };
    out.extend_from_slice(format!("{mark}{}\r\n", items.len()).as_bytes());
    for item in items {
        compose(item, proto, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: u64) -> Arc<ClientHandle> {
        crate::clients::ClientRegistry::default().register(
            std::net::SocketAddr::from(([127, 0, 0, 1], 1000 + id as u16)),
            None,
        )
    }

    #[test]
    fn frames_are_redis_shapes() {
        let mut out = BytesMut::new();
        let msg = Message {
            pattern: None,
            channel: Bytes::from_static(b"ch"),
            payload: Bytes::from_static(b"hi"),
        };
        message_frame(&msg, ProtoVersion::Resp2, &mut out);
        assert_eq!(&out[..], b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        out.clear();
        message_frame(&msg, ProtoVersion::Resp3, &mut out);
        assert_eq!(&out[..], b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn publish_reaches_channel_and_pattern_subscribers_and_unsubscribe_stops_it() {
        let reg = PubSub::new(Arc::new(ClientBounds::new(0, 0)));
        let mut a = Subscriber::new(handle(1));
        let mut b = Subscriber::new(handle(2));
        a.apply(
            &reg,
            Kind::Subscribe,
            &[Bytes::from_static(b"__sentinel__:hello")],
            ProtoVersion::Resp2,
        );
        assert_eq!(
            &a.frames[..],
            b"*3\r\n$9\r\nsubscribe\r\n$18\r\n__sentinel__:hello\r\n:1\r\n"
        );
        b.apply(
            &reg,
            Kind::Psubscribe,
            &[Bytes::from_static(b"__sentinel__:*")],
            ProtoVersion::Resp2,
        );
        let n = reg.publish(
            Bytes::from_static(b"__sentinel__:hello"),
            Bytes::from_static(b"x"),
        );
        assert_eq!(n, 2);
        assert!(a.rx.try_recv().is_ok());
        let m = b.rx.try_recv().expect("pmessage");
        assert_eq!(m.pattern.as_deref(), Some(&b"__sentinel__:*"[..]));
        a.frames.clear();
        a.apply(&reg, Kind::Unsubscribe, &[], ProtoVersion::Resp2);
        assert_eq!(
            &a.frames[..],
            b"*3\r\n$11\r\nunsubscribe\r\n$18\r\n__sentinel__:hello\r\n:0\r\n"
        );
        a.frames.clear();
        a.apply(&reg, Kind::Unsubscribe, &[], ProtoVersion::Resp2);
        assert_eq!(&a.frames[..], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        b.clear(&reg);
        assert_eq!(
            reg.publish(Bytes::from_static(b"__sentinel__:hello"), Bytes::new()),
            0
        );
    }

    #[test]
    fn a_subscriber_over_its_output_limit_is_killed_and_reading_frees_its_bytes() {
        let bounds = Arc::new(ClientBounds::new(0, 0));
        bounds.set_output_limits("pubsub 1kb 0 0").unwrap();
        let reg = PubSub::new(bounds.clone());
        let mut a = Subscriber::new(handle(1));
        a.apply(
            &reg,
            Kind::Subscribe,
            &[Bytes::from_static(b"c")],
            ProtoVersion::Resp2,
        );
        let payload = Bytes::from(vec![b'x'; 250]);
        // Three messages fit (3 x 315 bytes), and reading them frees their bytes.
        for _ in 0..2 {
            assert_eq!(reg.publish(Bytes::from_static(b"c"), payload.clone()), 1);
        }
        let mut out = BytesMut::new();
        a.drain_ready(ProtoVersion::Resp2, &mut out);
        assert_eq!(a.queued.bytes(), 0);
        for _ in 0..3 {
            assert_eq!(reg.publish(Bytes::from_static(b"c"), payload.clone()), 1);
        }
        assert!(!a.handle.killed.load(Ordering::Relaxed));
        // The fourth does not: the client is told to go and the message is not queued.
        assert_eq!(reg.publish(Bytes::from_static(b"c"), payload.clone()), 0);
        assert!(a.handle.killed.load(Ordering::Relaxed));
        assert_eq!(bounds.disconnected.output.load(Ordering::Relaxed), 1);
        assert_eq!(a.queued.bytes(), 3 * 315);
    }
}
