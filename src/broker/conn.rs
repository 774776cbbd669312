//! One connection as the core sees it: its read and write buffers, where it stands in the
//! protocol, and the state MQTT ties to the connection rather than the session (keepalive,
//! inbound topic aliases, the client's limits, the will).

use std::time::Instant;

use bytes::BytesMut;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use std::num::NonZeroU16;

use crate::protocol::{Packet, ProtocolVersion, TopicName, Will};
use crate::session::{AliasError, InboundAliases, Keepalive, SessionKey};

use super::barrier::HeldReplies;
#[cfg(test)]
use super::barrier::HeldReply;
use super::fx_hash;
use super::ConnId;

/// An idle connection keeps no read buffer above this: allocate on data, shrink when idle.
const IDLE_READ_BUFFER_BYTES: usize = 4096;
/// A buffer this small is cheaper to allocate anew than to keep: splitting a packet or a
/// batch off it shares it (a second allocation), and an idle connection would keep both
/// for good (the CONNECT's read, the CONNACK's write) for a reuse worth a few bytes.
const SMALL_BUFFER_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; CONNECT must arrive before the keepalive deadline (set to the connect
    /// timeout until CONNECT is handled).
    AwaitingConnect,
    Connected,
    /// `Close` emitted; the last bytes wait for `take_outgoing`.
    Closing,
}

/// One per open connection, boxed in the shard's map: at 19,500 idle connections every
/// 16 B here is 300 KiB. Whatever few connections use lives behind `rare`, and the
/// fields are ordered so the struct fills mimalloc's 128-B size class with no spill.
#[derive(Debug)]
pub(super) struct Conn {
    pub read_buf: BytesMut,
    pub out: BytesMut,
    pub client: Option<SessionKey>,
    /// The keep-alive deadline; before CONNECT, the connect timeout.
    pub keepalive: Keepalive,
    /// Replies waiting for a barrier, and those queued behind them to keep their order.
    pub held: HeldReplies,
    rare: Option<Box<Rare>>,
    pub id: ConnId,
    /// The client's Maximum Packet Size (MQTT 5), or no limit.
    pub max_packet_bytes: u32,
    pub phase: Phase,
    pub version: Option<ProtocolVersion>,
    /// `Writable` emitted and `take_outgoing` not yet called.
    pub writable_signalled: bool,
}

/// The state only some connections have: a will, or MQTT 5 topic aliases in use. Allocated
/// when the first of them is set, freed when the will goes and no alias was set.
#[derive(Debug, Default)]
struct Rare {
    will: Option<Will>,
    /// `None` until the client's first PUBLISH carrying a Topic Alias.
    aliases: Option<InboundAliases>,
}

impl Conn {
    pub fn new(id: ConnId, connect_deadline: Instant) -> Conn {
        Conn {
            read_buf: BytesMut::new(),
            out: BytesMut::new(),
            client: None,
            keepalive: Keepalive::until(connect_deadline),
            held: HeldReplies::default(),
            rare: None,
            id,
            max_packet_bytes: u32::MAX,
            phase: Phase::AwaitingConnect,
            version: None,
            writable_signalled: false,
        }
    }

    pub fn has_will(&self) -> bool {
        self.rare.as_ref().is_some_and(|rare| rare.will.is_some())
    }

    pub fn set_will(&mut self, will: Option<Will>) {
        match (will, self.rare.as_deref_mut()) {
            (None, None) => {}
            (will, Some(rare)) => rare.will = will,
            (will, None) => {
                self.rare = Some(Box::new(Rare {
                    will,
                    aliases: None,
                }))
            }
        }
    }

    pub fn take_will(&mut self) -> Option<Will> {
        let rare = self.rare.as_deref_mut()?;
        let will = rare.will.take();
        if rare.aliases.is_none() {
            self.rare = None;
        }
        will
    }

    /// The topic of an MQTT 5 PUBLISH carrying `topic` (maybe empty) and `alias`, against
    /// the Topic Alias Maximum the broker announced, `alias_max`.
    pub fn resolve_topic(
        &mut self,
        topic: &TopicName,
        alias: Option<NonZeroU16>,
        alias_max: u16,
    ) -> Result<TopicName, AliasError> {
        if alias.is_none() {
            // No alias used: nothing to look up or remember, so nothing to allocate.
            return InboundAliases::new(alias_max).resolve(topic, None);
        }
        self.rare
            .get_or_insert_with(Box::default)
            .aliases
            .get_or_insert_with(|| InboundAliases::new(alias_max))
            .resolve(topic, alias)
    }

    pub fn is_v5(&self) -> bool {
        self.version.is_some_and(ProtocolVersion::is_v5)
    }

    /// Appends `packet`; true if the buffer went from empty to non-empty.
    pub fn write(&mut self, packet: &Packet) {
        let version = self.version.unwrap_or(ProtocolVersion::V3_1_1);
        if let Err(error) = packet.encode(version, &mut self.out) {
            // Only our own packets are encoded here; a failure is our bug, not the peer's.
            debug_assert!(false, "encoding {packet:?}: {error}");
            tracing::error!(conn = ?self.id, %error, "could not encode a packet");
        }
    }

    /// Writes `packet` where a held reply belonged (`at` bytes into `out`), before what was
    /// written after it, and moves the later held replies' places along.
    pub fn write_at(&mut self, at: usize, packet: &Packet) {
        debug_assert!(at <= self.out.len());
        let tail = self.out.split_off(at.min(self.out.len()));
        let before = self.out.len();
        self.write(packet);
        let written = self.out.len() - before;
        self.out.unsplit(tail);
        for reply in self.held.iter_mut() {
            reply.at += written;
        }
    }

    /// The bytes that may leave now: those before the first held reply's place.
    pub fn sendable_bytes(&self) -> usize {
        self.held.front().map_or(self.out.len(), |reply| reply.at)
    }

    /// Takes the bytes that may leave now.
    pub fn take_sendable(&mut self) -> BytesMut {
        let n = self.sendable_bytes();
        for reply in self.held.iter_mut() {
            reply.at -= n;
        }
        if n == self.out.len() && self.out.capacity() <= SMALL_BUFFER_BYTES {
            // All of a small buffer: hand it over whole rather than share it.
            return std::mem::take(&mut self.out);
        }
        self.out.split_to(n)
    }

    /// True once: when bytes may leave and `Writable` has not been emitted for them.
    pub fn needs_signal(&mut self) -> bool {
        if !self.writable_signalled && self.sendable_bytes() > 0 && self.phase != Phase::Closing {
            self.writable_signalled = true;
            return true;
        }
        false
    }

    pub fn release_idle_read_buffer(&mut self) {
        let capacity = self.read_buf.capacity();
        if self.read_buf.is_empty()
            && (capacity > IDLE_READ_BUFFER_BYTES || capacity <= SMALL_BUFFER_BYTES)
        {
            self.read_buf = BytesMut::new();
        }
    }
}

/// The shard's connections by id. A table of boxes that finds each by the id inside it:
/// 8 B a slot, where a map keyed by `ConnId` spent 16 (the id padded beside the box), and
/// a table has up to twice as many slots as entries.
#[derive(Debug, Default)]
pub(super) struct Conns(HashTable<Box<Conn>>);

impl Conns {
    pub fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.0.find(fx_hash(*id), |c| c.id == *id).map(|c| &**c)
    }

    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        self.0
            .find_mut(fx_hash(*id), |c| c.id == *id)
            .map(|c| &mut **c)
    }

    /// Adds `conn`, replacing (and returning) one with the same id.
    pub fn insert(&mut self, conn: Box<Conn>) -> Option<Box<Conn>> {
        match self
            .0
            .entry(fx_hash(conn.id), |c| c.id == conn.id, |c| fx_hash(c.id))
        {
            Entry::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), conn)),
            Entry::Vacant(slot) => {
                slot.insert(conn);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &ConnId) -> Option<Box<Conn>> {
        let slot = self.0.find_entry(fx_hash(*id), |c| c.id == *id).ok()?;
        Some(slot.remove().0)
    }

    pub fn values(&self) -> impl Iterator<Item = &Conn> {
        self.0.iter().map(|c| &**c)
    }

    pub fn keys(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.0.iter().map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINGRESP: [u8; 2] = [0xD0, 0x00];

    #[test]
    fn bytes_after_a_held_reply_wait_and_the_reply_lands_in_its_place() {
        let mut c = Conn::new(ConnId(1), Instant::now());
        c.phase = Phase::Connected;
        c.out.extend_from_slice(b"ab");
        c.held
            .push_back(HeldReply::new(Some(7), Packet::PingResp, Vec::new()));
        c.held.back_mut().expect("just pushed").at = c.out.len();
        c.out.extend_from_slice(b"cd");
        assert_eq!(c.sendable_bytes(), 2);
        assert!(c.needs_signal());
        assert_eq!(&c.take_sendable()[..], b"ab");
        c.writable_signalled = false;
        assert_eq!(
            c.held.front().expect("held").at,
            0,
            "the place moves with what left"
        );
        assert!(!c.needs_signal(), "nothing may leave before the held reply");
        assert!(c.take_sendable().is_empty());

        let reply = c.held.pop_front().expect("held");
        c.write_at(reply.at, &reply.packet);
        assert!(c.needs_signal());
        let out = c.take_sendable();
        assert_eq!(&out[..2], &PINGRESP);
        assert_eq!(&out[2..], b"cd");
    }

    /// Every connection holds one: rare state (the will, topic aliases, held replies)
    /// stays behind boxes, and 128 B is a mimalloc size class (129 B would cost 160).
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 128, "Conn: {size} bytes");
    }

    #[test]
    fn the_table_finds_each_connection_by_its_own_id() {
        let now = Instant::now();
        let mut conns = Conns::default();
        // Enough to make the table grow several times.
        for n in 0..500 {
            assert!(conns.insert(Box::new(Conn::new(ConnId(n), now))).is_none());
        }
        assert_eq!(conns.get(&ConnId(7)).map(|c| c.id), Some(ConnId(7)));
        assert!(conns.get(&ConnId(500)).is_none());
        conns.get_mut(&ConnId(9)).expect("present").max_packet_bytes = 9;
        assert_eq!(conns.get(&ConnId(9)).map(|c| c.max_packet_bytes), Some(9));
        let replaced = conns.insert(Box::new(Conn::new(ConnId(9), now)));
        assert_eq!(replaced.map(|c| c.max_packet_bytes), Some(9));
        assert_eq!(conns.remove(&ConnId(7)).map(|c| c.id), Some(ConnId(7)));
        assert!(conns.remove(&ConnId(7)).is_none());
        let mut ids: Vec<_> = conns.keys().collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 499);
        assert_eq!(conns.values().count(), 499);
        assert!(!ids.contains(&ConnId(7)));
    }

    #[test]
    fn rare_state_is_allocated_on_use_and_freed_with_the_will() {
        let mut c = Conn::new(ConnId(1), Instant::now());
        let topic = TopicName::parse("a/b").expect("valid");
        assert_eq!(c.resolve_topic(&topic, None, 5), Ok(topic.clone()));
        assert!(
            c.rare.is_none(),
            "a PUBLISH without an alias allocates nothing"
        );
        c.set_will(None);
        assert!(c.rare.is_none());
        c.set_will(Some(Will {
            topic: TopicName::parse("w").expect("valid"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: crate::protocol::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        }));
        assert!(c.has_will());
        assert!(c.take_will().is_some());
        assert!(c.rare.is_none(), "the will gone, the box goes too");

        let alias = NonZeroU16::new(1);
        assert_eq!(c.resolve_topic(&topic, alias, 5), Ok(topic.clone()));
        let empty = TopicName::empty_for_alias();
        assert_eq!(c.resolve_topic(&empty, alias, 5), Ok(topic.clone()));
        assert_eq!(
            c.resolve_topic(&topic, NonZeroU16::new(6), 5),
            Err(AliasError::Invalid)
        );
        assert!(c.take_will().is_none());
        assert_eq!(
            c.resolve_topic(&empty, alias, 5),
            Ok(topic),
            "aliases outlive the will"
        );
    }

    #[test]
    fn writing_at_a_place_moves_later_held_replies() {
        let mut c = Conn::new(ConnId(1), Instant::now());
        c.out.extend_from_slice(b"x");
        for _ in 0..2 {
            c.held
                .push_back(HeldReply::new(Some(1), Packet::PingResp, Vec::new()));
            c.held.back_mut().expect("just pushed").at = c.out.len();
            c.out.extend_from_slice(b"y");
        }
        let first = c.held.pop_front().expect("held");
        c.write_at(first.at, &first.packet);
        assert_eq!(c.held.front().expect("held").at, 2 + PINGRESP.len());
        assert_eq!(&c.out[..], &[b'x', 0xD0, 0x00, b'y', b'y'][..]);
    }
}
