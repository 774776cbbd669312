//! A deterministic in-memory network of `ShardCore`s for the core's tests: mesh messages are
//! delivered between cores in order, hand-offs re-open the connection on the target core,
//! and "sockets" write encoded packets into `received` and decode what `take_outgoing`
//! returns. Time moves only by `advance`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use culex::broker::{ConnId, CoreConfig, MeshMessage, Output, ShardCore, ShardId};
use culex::limits::Limits;
use culex::protocol::{
    decode, Ack, ClientId, Connect, ConnectProperties, Disconnect, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscribeProperties, SubscriptionOptions,
    TopicFilter, TopicName, Unsubscribe, Will,
};
use culex::router::home_shard;

pub const V3: ProtocolVersion = ProtocolVersion::V3_1;
pub const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub type Version = ProtocolVersion;

/// A client's end of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sock(usize);

struct SockState {
    shard: usize,
    conn: ConnId,
    version: ProtocolVersion,
    inbound: BytesMut,
    closed: bool,
    /// A slow reader: `Writable` is noted but the bytes are not taken.
    stalled: bool,
    writable_pending: bool,
    /// Packets decoded but not yet handed to the test.
    backlog: Vec<Packet>,
}

pub struct Net {
    pub cores: Vec<ShardCore>,
    pub now: Instant,
    socks: Vec<SockState>,
    by_conn: HashMap<(usize, ConnId), usize>,
    next_conn: u32,
    mesh: VecDeque<(usize, usize, MeshMessage)>,
    /// Every mesh message delivered, by kind, for assertions on the mesh protocol.
    pub mesh_log: Vec<(usize, usize, String)>,
    /// While set, `pump` performs outputs but leaves mesh messages queued: tests deliver
    /// them step by step with `deliver_mesh`.
    pub hold_mesh: bool,
}

impl Net {
    pub fn new(shards: u16) -> Net {
        Net::with_config(shards, CoreConfig::default())
    }

    pub fn with_limits(shards: u16, limits: Limits) -> Net {
        Net::with_config(
            shards,
            CoreConfig {
                limits,
                ..CoreConfig::default()
            },
        )
    }

    pub fn with_config(shards: u16, config: CoreConfig) -> Net {
        Net {
            cores: (0..shards)
                .map(|s| ShardCore::new(ShardId(s), shards, config.clone()))
                .collect(),
            now: Instant::now(),
            socks: Vec::new(),
            by_conn: HashMap::new(),
            next_conn: 1,
            mesh: VecDeque::new(),
            mesh_log: Vec::new(),
            hold_mesh: false,
        }
    }

    /// A client id whose home is `shard`.
    pub fn id_on(&self, shard: usize, prefix: &str) -> String {
        (0..)
            .map(|n| format!("{prefix}-{n}"))
            .find(|id| home_shard(id, self.cores.len() as u16).0 as usize == shard)
            .expect("some id hashes to every shard")
    }

    /// Opens a connection accepted by shard `shard`, without sending anything.
    pub fn open(&mut self, shard: usize, version: ProtocolVersion) -> Sock {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.cores[shard].connection_opened(conn, self.now);
        self.socks.push(SockState {
            shard,
            conn,
            version,
            inbound: BytesMut::new(),
            closed: false,
            stalled: false,
            writable_pending: false,
            backlog: Vec::new(),
        });
        let sock = self.socks.len() - 1;
        self.by_conn.insert((shard, conn), sock);
        Sock(sock)
    }

    /// Opens a connection on `shard` and sends `connect`; returns the socket and CONNACK.
    pub fn connect_on(&mut self, shard: usize, connect: Connect) -> (Sock, Packet) {
        let sock = self.open(shard, connect.protocol_version);
        self.send(sock, &Packet::Connect(Box::new(connect)));
        let mut packets = self.recv(sock);
        assert!(!packets.is_empty(), "a CONNACK");
        let connack = packets.remove(0);
        self.socks[sock.0].backlog = packets;
        (sock, connack)
    }

    /// Connects `id` (v5 or v3) with clean start, on its home shard's opposite where
    /// possible, and checks the CONNACK succeeded.
    pub fn client(&mut self, version: ProtocolVersion, id: &str) -> Sock {
        let accept = (home_shard(id, self.cores.len() as u16).0 as usize + 1) % self.cores.len();
        let (sock, connack) = self.connect_on(accept, connect(version, id, true));
        match connack {
            Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        sock
    }

    pub fn shard_of(&self, sock: Sock) -> usize {
        self.socks[sock.0].shard
    }

    pub fn send(&mut self, sock: Sock, packet: &Packet) {
        let mut buf = BytesMut::new();
        packet
            .encode(self.socks[sock.0].version, &mut buf)
            .expect("test packets encode");
        self.send_raw(sock, &buf);
    }

    pub fn send_raw(&mut self, sock: Sock, bytes: &[u8]) {
        let s = &self.socks[sock.0];
        assert!(!s.closed, "sending on a closed socket");
        let (shard, conn) = (s.shard, s.conn);
        self.cores[shard].received(conn, bytes, self.now);
        self.pump();
    }

    /// Decodes everything received so far.
    pub fn recv(&mut self, sock: Sock) -> Vec<Packet> {
        let s = &mut self.socks[sock.0];
        let mut packets = std::mem::take(&mut s.backlog);
        while let Some(packet) = decode(&mut s.inbound, Some(s.version), u32::MAX)
            .expect("the broker sends valid packets")
        {
            packets.push(packet);
        }
        packets
    }

    /// The raw bytes received so far (consumed).
    pub fn recv_raw(&mut self, sock: Sock) -> Vec<u8> {
        self.socks[sock.0].inbound.split().to_vec()
    }

    /// The client stops reading: the core's buffer for it fills.
    pub fn stall(&mut self, sock: Sock) {
        self.socks[sock.0].stalled = true;
    }

    /// The client reads again: what was pending is taken, as the shard would after a write.
    pub fn unstall(&mut self, sock: Sock) {
        let s = &mut self.socks[sock.0];
        s.stalled = false;
        if std::mem::take(&mut s.writable_pending) {
            let (shard, conn) = (s.shard, s.conn);
            let bytes = self.cores[shard].take_outgoing(conn);
            self.socks[sock.0].inbound.extend_from_slice(&bytes);
            self.cores[shard].recycle(bytes);
            self.pump();
        }
    }

    pub fn is_closed(&self, sock: Sock) -> bool {
        self.socks[sock.0].closed
    }

    /// The client's socket breaks.
    pub fn lose(&mut self, sock: Sock) {
        let s = &mut self.socks[sock.0];
        s.closed = true;
        let (shard, conn) = (s.shard, s.conn);
        self.cores[shard].connection_lost(conn, self.now);
        self.pump();
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        for core in &mut self.cores {
            core.tick(self.now);
        }
        self.pump();
    }

    pub fn shutdown(&mut self, shard: usize) {
        self.cores[shard].shutdown(self.now);
        self.pump();
    }

    /// Runs outputs and mesh messages until everything is quiet.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for shard in 0..self.cores.len() {
                while let Some(output) = self.cores[shard].poll_output() {
                    progressed = true;
                    self.perform(shard, output);
                }
            }
            if self.hold_mesh {
                if !progressed {
                    return;
                }
                continue;
            }
            if let Some((from, to, msg)) = self.mesh.pop_front() {
                progressed = true;
                self.deliver(from, to, msg);
            }
            if !progressed {
                return;
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: MeshMessage) {
        self.mesh_log.push((from, to, mesh_kind(&msg)));
        self.cores[to].mesh_received(ShardId(from as u16), msg, self.now);
    }

    /// The queued mesh messages as (from, to, kind), oldest first.
    pub fn queued_mesh(&self) -> Vec<(usize, usize, String)> {
        self.mesh
            .iter()
            .map(|(from, to, msg)| (*from, *to, mesh_kind(msg)))
            .collect()
    }

    /// With `hold_mesh` set: delivers the oldest queued message for which `select(from, to,
    /// kind)` holds, keeping each pair's order (a message is never delivered before an
    /// older one of its pair), then performs the outputs. False if none was deliverable.
    pub fn deliver_mesh(&mut self, select: impl Fn(usize, usize, &str) -> bool) -> bool {
        let mut blocked = Vec::new();
        let found = self.mesh.iter().position(|(from, to, msg)| {
            if blocked.contains(&(*from, *to)) {
                return false;
            }
            if select(*from, *to, &mesh_kind(msg)) {
                return true;
            }
            blocked.push((*from, *to));
            false
        });
        let Some(at) = found else {
            return false;
        };
        let (from, to, msg) = self.mesh.remove(at).expect("position is in range");
        self.deliver(from, to, msg);
        self.pump();
        true
    }

    /// Delivers selected messages (and what they cause, if also selected) until none is
    /// left; returns how many.
    pub fn deliver_mesh_all(&mut self, select: impl Fn(usize, usize, &str) -> bool) -> usize {
        let mut count = 0;
        while self.deliver_mesh(&select) {
            count += 1;
        }
        count
    }

    /// Stops holding the mesh and delivers everything queued.
    pub fn release_mesh(&mut self) {
        self.hold_mesh = false;
        self.pump();
    }

    fn perform(&mut self, shard: usize, output: Output) {
        match output {
            Output::Writable { conn } => {
                let sock = self.by_conn[&(shard, conn)];
                if self.socks[sock].stalled {
                    self.socks[sock].writable_pending = true;
                    return;
                }
                let bytes = self.cores[shard].take_outgoing(conn);
                self.socks[sock].inbound.extend_from_slice(&bytes);
                // Written: given back, as the shard does, so every test runs the pool.
                self.cores[shard].recycle(bytes);
            }
            Output::Close { conn } => {
                let bytes = self.cores[shard].take_outgoing(conn);
                let sock = self.by_conn[&(shard, conn)];
                self.socks[sock].inbound.extend_from_slice(&bytes);
                self.socks[sock].closed = true;
            }
            Output::HandOff { conn, to, received } => {
                let sock = self.by_conn.remove(&(shard, conn)).expect("known conn");
                let to = to.0 as usize;
                let new_conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.socks[sock].shard = to;
                self.socks[sock].conn = new_conn;
                self.by_conn.insert((to, new_conn), sock);
                self.cores[to].connection_opened(new_conn, self.now);
                self.cores[to].received(new_conn, &received, self.now);
            }
            Output::Mesh { to, msg } => self.mesh.push_back((shard, to.0 as usize, msg)),
        }
    }

    pub fn mesh_count(&self, kind: &str) -> usize {
        self.mesh_log.iter().filter(|(_, _, k)| k == kind).count()
    }

    // Conveniences that send one packet and return what came back.

    pub fn subscribe(&mut self, sock: Sock, filter: &str, qos: QoS) -> Vec<Packet> {
        self.send(sock, &subscribe(1, &[(filter, options(qos))], None));
        self.recv(sock)
    }

    pub fn publish(&mut self, sock: Sock, topic: &str, qos: QoS, payload: &'static [u8]) {
        let id = (qos != QoS::AtMostOnce).then(|| pid(100));
        self.send(sock, &Packet::Publish(publish(topic, qos, id, payload)));
    }
}

/// A mesh message's variant name, e.g. `Route`.
pub fn mesh_kind(msg: &MeshMessage) -> String {
    let kind = format!("{msg:?}");
    kind.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

pub fn connect(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: clean,
        keep_alive_s: 60,
        client_id: ClientId::new(id).expect("valid id"),
        will: None,
        user_name: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn will(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: TopicName::parse(topic).expect("valid topic"),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: Default::default(),
    }
}

pub fn publish(topic: &str, qos: QoS, id: Option<PacketId>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::parse(topic).expect("valid topic"),
        packet_id: id,
        properties: Default::default(),
        payload: Bytes::from_static(payload),
    }
}

pub fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

pub fn subscribe(
    id: u16,
    filters: &[(&str, SubscriptionOptions)],
    subscription_id: Option<u32>,
) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: SubscribeProperties {
            subscription_identifier: subscription_id.and_then(NonZeroU32::new),
            user_properties: Vec::new(),
        },
        filters: filters
            .iter()
            .map(|(f, o)| (TopicFilter::parse(*f).expect("valid filter"), *o))
            .collect(),
    })
}

pub fn unsubscribe(id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| TopicFilter::parse(*f).expect("valid filter"))
            .collect(),
    })
}

pub fn disconnect(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect::new(reason))
}

pub fn ack(id: PacketId) -> Ack {
    Ack::success(id)
}

/// The PUBLISH packets among `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The payloads of the PUBLISH packets among `packets`, as strings.
pub fn payloads(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

pub fn connack_code(packet: &Packet) -> ReasonCode {
    match packet {
        Packet::ConnAck(ack) => ack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

pub fn disconnect_code(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}
