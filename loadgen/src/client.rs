//! One load client: connect (bound to its source address, paced by the ramp), then play its
//! role — publisher (open-loop schedule, batched writes, QoS 1/2 inflight window), subscriber
//! (large reads, stamp checks, acks), or idle holder — until its core says stop.

use bytes::{Bytes, BytesMut};
use culex::protocol::{FrameStatus, Packet, PacketId, ProtocolVersion, QoS, ReasonCode};
use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustc_hash::FxHashMap;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conn::Conn;
use crate::scenario::{ClientPlan, Role};
use crate::schedule::Schedule;
use crate::signal::{DROP, FLOW, PING, RUN, STOP};
use crate::stamp::Stamp;
use crate::track::SeqTracker;
use crate::wire::{self, AckKind, Acks, PublishTemplate};
use crate::worker::{subscribe_at_run, Core};

/// How long a connect or CONNACK may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes one publisher batch may encode before it is written.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A subscriber reads this much at once: hundreds of small messages per system call.
const SUBSCRIBER_READ_BYTES: usize = 256 * 1024;
/// A publisher held back by the outstanding limit looks again after this long when no
/// subscriber on its core wakes it first.
const FLOW_RECHECK: Duration = Duration::from_millis(2);

pub async fn run(core: Rc<Core>, plan: ClientPlan, slot: usize) {
    let mut ready = ReadyGuard {
        core: &core,
        done: false,
    };
    let mut pub_done = PublisherGuard {
        core: &core,
        done: !matches!(plan.role, Role::Publisher { .. }),
    };
    if core.scenario.conn_rate > 0.0 {
        let at_ns = (plan.index as f64 / core.scenario.conn_rate * 1e9) as u64;
        let now = core.now_ns();
        if at_ns > now {
            glommio::timer::sleep(Duration::from_nanos(at_ns - now)).await;
        }
    }
    let sc = &core.scenario;
    let qos = QoS::from_bits(sc.qos).unwrap_or(QoS::AtMostOnce);
    // A publisher's PUBLISH is encoded once, before connecting: a topic the codec refuses
    // fails the client with the reason instead of sending what a broker would reject.
    let template = match plan.role {
        Role::Publisher { ref topic, .. } => {
            let fixed_len = sc.payload_min_bytes;
            let (version, retain, max) = (sc.protocol_version(), sc.retain, sc.payload_max_bytes);
            match PublishTemplate::new(version, topic, qos, retain, fixed_len, max) {
                Ok(template) => Some(template),
                Err(reason) => {
                    core.stats.borrow_mut().fail_connect(reason);
                    return;
                }
            }
        }
        _ => None,
    };
    let start_ns = core.now_ns();
    let (stream, rbuf) = match connect(&core, &plan).await {
        Ok(ok) => ok,
        Err(reason) => {
            core.stats.borrow_mut().fail_connect(reason);
            return;
        }
    };
    {
        let mut stats = core.stats.borrow_mut();
        stats.connected_count += 1;
        stats
            .connect_latency
            .saturating_record(core.now_ns() - start_ns);
    }
    core.shared.open_count.fetch_add(1, Ordering::Relaxed);
    let ended_early = match (plan.role, template) {
        (Role::Publisher { publisher_id, .. }, Some(tpl)) => {
            ready.mark();
            if qos == QoS::AtMostOnce {
                publish_qos0(&core, stream, slot, publisher_id, tpl, &mut pub_done).await
            } else {
                let done = &mut pub_done;
                publish_acked(&core, stream, rbuf, slot, publisher_id, tpl, qos, done).await
            }
        }
        (Role::Publisher { .. }, None) => unreachable!("every publisher has its template"),
        (
            Role::Subscriber {
                ref filter,
                track_order,
            },
            _,
        ) => subscribe(&core, stream, rbuf, slot, filter, track_order, &mut ready).await,
        (Role::Idle, _) => {
            ready.mark();
            idle(&core, stream, rbuf, slot).await
        }
    };
    if ended_early.is_err() {
        core.stats.borrow_mut().dropped_count += 1;
    }
    core.shared.open_count.fetch_sub(1, Ordering::Relaxed);
}

/// Counts a client as past setup exactly once, whichever way it leaves.
struct ReadyGuard<'a> {
    core: &'a Core,
    done: bool,
}

impl ReadyGuard<'_> {
    fn mark(&mut self) {
        if !self.done {
            self.done = true;
            self.core.shared.ready_count.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for ReadyGuard<'_> {
    fn drop(&mut self) {
        self.mark();
    }
}

/// Counts a publisher as finished exactly once, so the drain never waits for a dead one.
struct PublisherGuard<'a> {
    core: &'a Core,
    done: bool,
}

impl PublisherGuard<'_> {
    fn mark(&mut self) {
        if !self.done {
            self.done = true;
            self.core
                .shared
                .publishers_done_count
                .fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for PublisherGuard<'_> {
    fn drop(&mut self) {
        self.mark();
    }
}

fn io_reason(stage: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => format!("{stage}: out of file descriptors"),
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => {
            format!("{stage}: out of ephemeral ports")
        }
        _ => format!("{stage}: {:?}", e.kind()),
    }
}

/// Received bytes not yet decoded, in `buf[start..end]`, framed by the codec's `check_frame`.
/// What comes once per message is read in place: a PUBLISH ([`wire::PublishView`]) and an
/// ack's packet id ([`wire::ack_packet_id`]). Any other packet is copied out and decoded by
/// `culex::protocol::decode_frame`.
///
/// A plain `Vec`, zeroed once: a `BytesMut` that the codec splits packets off would have its
/// room zeroed again before each read (`resize`), and a read needs initialised bytes.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    version: ProtocolVersion,
}

/// The codec's own limit (the spec's largest packet) bounds the buffer: a broker cannot make
/// it grow without end.
const MAX_PACKET_BYTES: u32 = culex::protocol::MAX_REMAINING_LENGTH as u32 + 5;

impl ReadBuf {
    fn new(capacity: usize, version: ProtocolVersion) -> ReadBuf {
        ReadBuf {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            version,
        }
    }

    /// Reads more; `Ok(0)` is the end of the stream.
    async fn fill(&mut self, stream: &mut (impl AsyncReadExt + Unpin)) -> io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            // Move the partial packet to the front; grow only for a packet larger than the
            // buffer (the codec's maximum packet size bounds that).
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The whole packet at the front, if there is one: (first byte, header length, frame).
    fn next_frame(&mut self) -> io::Result<Option<(u8, usize, usize)>> {
        let window = &self.buf[self.start..self.end];
        match culex::protocol::check_frame(window, MAX_PACKET_BYTES) {
            Ok(FrameStatus::NeedMore { .. }) => Ok(None),
            Ok(FrameStatus::Complete {
                first_byte,
                header_len_bytes,
                total_len_bytes,
            }) => Ok(Some((first_byte, header_len_bytes, total_len_bytes))),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}"))),
        }
    }

    /// The whole `len`-byte packet at the front, not consumed.
    fn front(&self, len: usize) -> &[u8] {
        &self.buf[self.start..self.start + len]
    }

    /// Decodes the `len`-byte packet at the front with the codec, consuming it.
    fn decode_front(&mut self, len: usize) -> io::Result<Packet> {
        let frame = Bytes::copy_from_slice(&self.buf[self.start..self.start + len]);
        self.start += len;
        culex::protocol::decode_frame(frame, Some(self.version))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))
    }

    /// The next whole packet, decoded by the codec and consumed from the buffer.
    fn next_packet(&mut self) -> io::Result<Option<Packet>> {
        match self.next_frame()? {
            Some((_, _, len)) => self.decode_front(len).map(Some),
            None => Ok(None),
        }
    }

    /// The next whole packet: a PUBLISH read in place, anything else decoded by the codec.
    fn next_received(&mut self) -> io::Result<Option<Received<'_>>> {
        let Some((first_byte, header_len, len)) = self.next_frame()? else {
            return Ok(None);
        };
        if first_byte >> 4 == 6 {
            // PUBREL, once per QoS 2 message: its id read in place, like a PUBLISH.
            let id = wire::ack_packet_id(self.front(len), header_len);
            self.start += len;
            return id
                .map(|id| Some(Received::PubRel(id)))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "PUBREL without id"));
        }
        if first_byte >> 4 != 3 {
            return Ok(Some(Received::Packet(Box::new(self.decode_front(len)?))));
        }
        let frame = &self.buf[self.start..self.start + len];
        self.start += len;
        wire::PublishView::parse(frame, header_len, self.version)
            .map(|view| Some(Received::Publish(view)))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed PUBLISH"))
    }

    /// Drops everything received so far.
    fn discard(&mut self) {
        self.start = self.end;
    }
}

/// What a subscriber receives: a PUBLISH borrowed from the read buffer, a PUBREL's packet id,
/// or any other packet as the codec decodes it.
enum Received<'a> {
    Publish(wire::PublishView<'a>),
    PubRel(PacketId),
    /// Boxed: a `Packet` is large and these (SUBACK, PINGRESP) are rare.
    Packet(Box<Packet>),
}

async fn with_timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    or(f, async {
        glommio::timer::sleep(limit).await;
        Err("timeout".to_string())
    })
    .await
}

async fn connect(core: &Core, plan: &ClientPlan) -> Result<(Conn, ReadBuf), String> {
    let sc = &core.scenario;
    let socket = Socket::new(
        Domain::for_address(core.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| io_reason("socket", &e))?;
    if !sc.sources.is_empty() {
        let source = sc.sources[plan.index % sc.sources.len()];
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| io_reason("bind", &e))?;
    }
    // Connect without blocking the executor; the CONNECT's write waits for the handshake
    // (see `Conn::register`).
    socket
        .set_nonblocking(true)
        .map_err(|e| io_reason("socket", &e))?;
    match socket.connect(&core.addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(io_reason("connect", &e)),
    }
    let _ = socket.set_nodelay(true);
    let readiness = core
        .readiness
        .as_ref()
        .ok_or("epoll: this core has no epoll instance")?;
    let mut stream = Conn::register(socket, readiness).map_err(|e| io_reason("epoll", &e))?;
    let mut out = BytesMut::with_capacity(64);
    wire::put_connect(
        &mut out,
        &wire::ConnectOptions {
            version: sc.protocol_version(),
            client_id: &plan.client_id,
            keepalive_s: sc.keepalive_s,
            clean: sc.clean,
            session_expiry_s: sc.session_expiry_s,
            receive_maximum: sc.max_inflight,
        },
    )?;
    let capacity = match plan.role {
        Role::Subscriber { .. } => SUBSCRIBER_READ_BYTES,
        Role::Publisher { .. } if sc.qos > 0 => 16 * 1024,
        _ => 256,
    };
    let mut rbuf = ReadBuf::new(capacity, sc.protocol_version());
    with_timeout(CONNECT_TIMEOUT, async {
        stream
            .write_all(&out)
            .await
            .map_err(|e| io_reason("connect", &e))?;
        loop {
            if let Some(packet) = rbuf.next_packet().map_err(|e| io_reason("CONNACK", &e))? {
                return match packet {
                    Packet::ConnAck(ack) if ack.reason_code == ReasonCode::Success => Ok(()),
                    Packet::ConnAck(ack) => {
                        Err(format!("refused: CONNACK code {}", ack.reason_code))
                    }
                    other => Err(format!("expected CONNACK, got {:?}", other.packet_type())),
                };
            }
            if rbuf
                .fill(&mut stream)
                .await
                .map_err(|e| io_reason("read CONNACK", &e))?
                == 0
            {
                return Err("closed before CONNACK".into());
            }
        }
    })
    .await?;
    Ok((stream, rbuf))
}

/// Waits for the run gate; `false` when told to stop first.
async fn wait_for_run(core: &Core, slot: usize) -> bool {
    loop {
        let flags = core.slots.wait(slot).await;
        if flags & STOP != 0 {
            return false;
        }
        if flags & RUN != 0 {
            return true;
        }
    }
}

/// What one publisher needs to stamp and pace its messages.
struct Pacer {
    schedule: Schedule,
    end_ns: u64,
    /// Messages the schedule holds before the end (paced schedules only).
    limit: Option<u64>,
    seq: u64,
    publisher_id: u32,
    rng: fastrand::Rng,
    tick: Duration,
}

impl Pacer {
    fn new(core: &Core, publisher_id: u32, rate: Option<f64>) -> Pacer {
        let sc = &core.scenario;
        let start = core.shared.run_start_ns.load(Ordering::Acquire);
        // Spread publishers over one interval by a low-discrepancy phase.
        let phase = (f64::from(publisher_id) * 0.618_033_988_75).fract();
        let schedule = Schedule::new(start, rate, phase);
        let end_ns = start + ((sc.warmup_s + sc.duration_s) * 1e9) as u64;
        Pacer {
            limit: schedule.count_before(end_ns),
            schedule,
            end_ns,
            seq: 0,
            publisher_id,
            rng: fastrand::Rng::with_seed(u64::from(publisher_id) + 1),
            tick: Duration::from_micros(sc.tick_us.max(1)),
        }
    }

    /// How many messages to send now (at most `cap`); `None` when the run is over for us.
    fn due(&self, now_ns: u64, cap: u64) -> Option<u64> {
        match (self.schedule.due_by(now_ns), self.limit) {
            (Some(due), Some(limit)) => {
                if self.seq >= limit {
                    return None;
                }
                Some(due.min(limit).saturating_sub(self.seq).min(cap))
            }
            _ => (now_ns < self.end_ns).then_some(cap),
        }
    }

    /// How long to sleep when nothing is due: until the next message, but at least a tick.
    fn idle_for(&self, now_ns: u64) -> Duration {
        let next = self.schedule.intended_ns(self.seq, now_ns);
        Duration::from_nanos(next.saturating_sub(now_ns)).max(self.tick)
    }

    fn payload_len(&mut self, sc: &crate::scenario::Scenario) -> usize {
        if sc.payload_max_bytes > sc.payload_min_bytes {
            self.rng.usize(sc.payload_min_bytes..=sc.payload_max_bytes)
        } else {
            sc.payload_min_bytes
        }
    }

    /// Encodes the next message from the publisher's template.
    fn encode(
        &mut self,
        core: &Core,
        out: &mut BytesMut,
        template: &mut PublishTemplate,
        packet_id: u16,
        now_ns: u64,
    ) {
        let sc = &core.scenario;
        let stamp = Stamp {
            publisher_id: self.publisher_id,
            seq: self.seq,
            intended_ns: self.schedule.intended_ns(self.seq, now_ns),
            sent_ns: now_ns,
        };
        let len = self.payload_len(sc);
        template.put(out, packet_id, len, |p| stamp.write(p));
        self.seq += 1;
    }
}

/// A QoS 0 publisher: nothing comes back, so the task only writes.
async fn publish_qos0(
    core: &Core,
    mut stream: Conn,
    slot: usize,
    publisher_id: u32,
    mut template: PublishTemplate,
    done: &mut PublisherGuard<'_>,
) -> Result<(), ()> {
    if !wait_for_run(core, slot).await {
        return Ok(());
    }
    let sc = &core.scenario;
    let mut pacer = Pacer::new(core, publisher_id, core.rate_per_publisher);
    let batch_max = (WRITE_BATCH_BYTES / template.max_len()).max(1) as u64;
    let mut out = BytesMut::with_capacity(WRITE_BATCH_BYTES + 1024);
    let keepalive_ns = u64::from(sc.keepalive_s) * 500_000_000;
    let mut last_write_ns = core.now_ns();
    let mut stopped = false;
    let result = loop {
        if core.slots.take(slot) & STOP != 0 {
            stopped = true;
            break Ok(());
        }
        let now = core.now_ns();
        let Some(mut n) = pacer.due(now, batch_max) else {
            break Ok(());
        };
        if pacer.schedule == Schedule::Max && core.receivers_per_message > 0 {
            let shared = &core.shared;
            let delivered =
                shared.unique_count.load(Ordering::Relaxed) / core.receivers_per_message;
            let outstanding = shared
                .sent_count
                .load(Ordering::Relaxed)
                .saturating_sub(delivered);
            n = n.min(core.outstanding_max.saturating_sub(outstanding));
            if n == 0 {
                core.flow_waiters.borrow_mut().push(slot);
                // With subscribers on this core, their deliveries wake us (and the control
                // task does every tick, should deliveries stop): no timer per wait.
                let flags = if core.local_subscribers {
                    core.slots.wait(slot).await
                } else {
                    or(core.slots.wait(slot), async {
                        glommio::timer::sleep(FLOW_RECHECK).await;
                        0
                    })
                    .await
                };
                if flags & STOP != 0 {
                    stopped = true;
                    break Ok(());
                }
                continue;
            }
        }
        if n == 0 {
            if keepalive_ns > 0 && now - last_write_ns > keepalive_ns {
                wire::put_pingreq(&mut out, sc.protocol_version());
            } else {
                let mut idle = pacer.idle_for(now);
                if keepalive_ns > 0 {
                    idle = idle.min(Duration::from_nanos(keepalive_ns));
                }
                glommio::timer::sleep(idle).await;
                continue;
            }
        }
        for _ in 0..n {
            pacer.encode(core, &mut out, &mut template, 0, now);
        }
        if stream.write_all(&out).await.is_err() {
            break Err(());
        }
        out.clear();
        last_write_ns = now;
        if n > 0 {
            core.stats.borrow_mut().sent_count += n;
            core.shared.sent_count.fetch_add(n, Ordering::Relaxed);
        }
    };
    done.mark();
    if result.is_ok() && !stopped {
        hold_until_stop(core, slot).await;
    }
    finish(&mut stream, sc.protocol_version()).await;
    result
}

/// Keeps a finished publisher connected until the run stops, so connections held at the end
/// counts every client that survived.
async fn hold_until_stop(core: &Core, slot: usize) {
    while core.slots.wait(slot).await & STOP == 0 {}
}

/// A QoS 1/2 publisher: one task that writes on the schedule, bounded by the inflight
/// window, and reads PUBACK / PUBREC / PUBCOMP while it waits. (A separate reader task on a
/// split stream woke only with the writer's next timer: acks looked one interval late.)
// The loop owns the socket, the window and the done-guard at once; a struct would only
// rename these arguments.
#[allow(clippy::too_many_arguments)]
async fn publish_acked(
    core: &Rc<Core>,
    mut stream: Conn,
    mut rbuf: ReadBuf,
    slot: usize,
    publisher_id: u32,
    mut template: PublishTemplate,
    qos: QoS,
    done: &mut PublisherGuard<'_>,
) -> Result<(), ()> {
    if !wait_for_run(core, slot).await {
        return Ok(());
    }
    let sc = &core.scenario;
    let window = usize::from(sc.max_inflight);
    let mut pacer = Pacer::new(core, publisher_id, core.rate_per_publisher);
    let mut out = BytesMut::with_capacity(WRITE_BATCH_BYTES + 1024);
    let acks = Acks::new(sc.protocol_version());
    let mut inflight: FxHashMap<u16, u64> = FxHashMap::default();
    let mut packet_id: u16 = 0;
    let mut publishing = true;
    let drain_until = pacer.end_ns + (sc.drain_s * 1e9) as u64;
    let keepalive_ns = u64::from(sc.keepalive_s) * 500_000_000;
    let mut last_write_ns = core.now_ns();
    enum Event {
        Read(io::Result<usize>),
        Timer,
    }
    let result = loop {
        let now = core.now_ns();
        if keepalive_ns > 0 && now - last_write_ns > keepalive_ns {
            // A rare publisher must still show the broker it is alive.
            wire::put_pingreq(&mut out, sc.protocol_version());
        }
        let room = window.saturating_sub(inflight.len()) as u64;
        let n = if publishing {
            pacer.due(now, room).unwrap_or_else(|| {
                publishing = false;
                0
            })
        } else {
            0
        };
        for _ in 0..n {
            packet_id = next_free_id(packet_id, &inflight);
            inflight.insert(packet_id, now);
            pacer.encode(core, &mut out, &mut template, packet_id, now);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break Err(());
            }
            out.clear();
            last_write_ns = now;
            if n > 0 {
                core.stats.borrow_mut().sent_count += n;
                core.shared.sent_count.fetch_add(n, Ordering::Relaxed);
            }
            continue;
        }
        if !publishing && (inflight.is_empty() || now > drain_until) {
            // Unacknowledged messages stay counted as sent: the report shows the gap.
            break Ok(());
        }
        let wait = if publishing && room > 0 {
            let idle = pacer.idle_for(now);
            if keepalive_ns > 0 {
                idle.min(Duration::from_nanos(keepalive_ns))
            } else {
                idle
            }
        } else {
            Duration::from_millis(10)
        };
        let event = or(async { Event::Read(rbuf.fill(&mut stream).await) }, async {
            glommio::timer::sleep(wait).await;
            Event::Timer
        })
        .await;
        match event {
            Event::Read(Ok(0)) | Event::Read(Err(_)) => break Err(()),
            Event::Read(Ok(_)) => {
                if take_acks(core, &mut rbuf, &mut inflight, &acks, &mut out, qos).is_err() {
                    break Err(());
                }
            }
            Event::Timer => {}
        }
    };
    done.mark();
    if result.is_ok() {
        hold_until_stop(core, slot).await;
        finish(&mut stream, sc.protocol_version()).await;
    }
    result
}

fn next_free_id(mut id: u16, used: &FxHashMap<u16, u64>) -> u16 {
    loop {
        id = id.wrapping_add(1).max(1);
        if !used.contains_key(&id) {
            return id;
        }
    }
}

/// Completes what the acknowledgements in `rbuf` complete; PUBRELs owed go into `out`.
/// `Err` when the broker sent something the codec refuses: the connection ends.
fn take_acks(
    core: &Core,
    rbuf: &mut ReadBuf,
    inflight: &mut FxHashMap<u16, u64>,
    acks: &Acks,
    out: &mut BytesMut,
    qos: QoS,
) -> io::Result<()> {
    let now = core.now_ns();
    let mut stats = core.stats.borrow_mut();
    while let Some((first_byte, header_len, len)) = rbuf.next_frame()? {
        let kind = first_byte >> 4;
        if !(4..=7).contains(&kind) {
            // Not an ack (PINGRESP, say): the codec checks it; nothing here needs it.
            rbuf.decode_front(len)?;
            continue;
        }
        let id = wire::ack_packet_id(rbuf.front(len), header_len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "ack without packet id"))?;
        rbuf.start += len;
        let completes = match kind {
            4 => qos == QoS::AtLeastOnce,
            5 => {
                acks.put(out, AckKind::PubRel, id);
                false
            }
            7 => true,
            _ => false,
        };
        if completes {
            if let Some(sent) = inflight.remove(&id.get()) {
                stats
                    .ack_latency
                    .saturating_record(now.saturating_sub(sent));
                stats.acked_count += 1;
            }
        }
    }
    Ok(())
}

/// What a subscriber has learned, kept apart from the socket so the read loop stays short.
struct Receiver {
    version: ProtocolVersion,
    tracker: SeqTracker,
    track_order: bool,
    subscribe_sent_ns: u64,
    subscribed: bool,
    retained_storm: bool,
    /// PUBACK/PUBREC/PUBCOMP as the codec writes them, copied per acknowledgement.
    ack_templates: Acks,
    acks: BytesMut,
}

impl Receiver {
    /// Handles every whole packet in the buffer; `Err` ends the connection.
    fn process(
        &mut self,
        core: &Core,
        rbuf: &mut ReadBuf,
        ready: &mut ReadyGuard<'_>,
    ) -> io::Result<()> {
        let now = core.now_ns();
        let measure_from = core.measure_from_ns();
        let (mut received, mut unique) = (0u64, 0u64);
        let mut stats = core.stats.borrow_mut();
        let mut interval = core.interval.borrow_mut();
        while let Some(packet) = rbuf.next_received()? {
            match packet {
                Received::Publish(publish) => {
                    if let Some(id) = publish.packet_id {
                        let kind = match publish.qos {
                            QoS::ExactlyOnce => AckKind::PubRec,
                            _ => AckKind::PubAck,
                        };
                        self.ack_templates.put(&mut self.acks, kind, id);
                    }
                    received += 1;
                    if publish.retain {
                        stats.retained_received_count += 1;
                    }
                    let Some(stamp) = Stamp::read(publish.payload) else {
                        stats.foreign_count += 1;
                        continue;
                    };
                    let verdict = if self.track_order {
                        self.tracker.observe(stamp.publisher_id, stamp.seq)
                    } else {
                        crate::track::Verdict {
                            fresh: true,
                            ..Default::default()
                        }
                    };
                    stats.duplicate_count += u64::from(verdict.duplicate);
                    stats.out_of_order_count += u64::from(verdict.out_of_order);
                    if !verdict.fresh {
                        continue;
                    }
                    unique += 1;
                    if self.retained_storm {
                        let since = now.saturating_sub(self.subscribe_sent_ns);
                        interval.latency.saturating_record(since);
                        interval.latency_uncorrected.saturating_record(since);
                    } else if stamp.intended_ns >= measure_from {
                        interval
                            .latency
                            .saturating_record(now.saturating_sub(stamp.intended_ns));
                        interval
                            .latency_uncorrected
                            .saturating_record(now.saturating_sub(stamp.sent_ns));
                    }
                }
                Received::PubRel(id) => {
                    self.ack_templates.put(&mut self.acks, AckKind::PubComp, id)
                }
                Received::Packet(packet) => self.on_packet(*packet, now, &mut stats, ready),
            }
        }
        stats.received_count += received;
        stats.unique_count += unique;
        stats.gaps_dropped_count = self.tracker.gaps_dropped_count;
        core.shared
            .received_count
            .fetch_add(received, Ordering::Relaxed);
        core.shared
            .unique_count
            .fetch_add(unique, Ordering::Relaxed);
        Ok(())
    }
}

impl Receiver {
    /// Anything but PUBLISH and PUBREL: the first SUBACK says subscribed.
    fn on_packet(
        &mut self,
        packet: Packet,
        now: u64,
        stats: &mut crate::report::CoreStats,
        ready: &mut ReadyGuard<'_>,
    ) {
        match packet {
            Packet::SubAck(suback) if !self.subscribed => {
                self.subscribed = true;
                match suback.reason_codes.first() {
                    Some(code) if !code.is_error() => {
                        stats.subscribed_count += 1;
                        stats
                            .subscribe_latency
                            .saturating_record(now.saturating_sub(self.subscribe_sent_ns));
                    }
                    _ => stats.subscribe_failed_count += 1,
                }
                ready.mark();
            }
            _ => {}
        }
    }
}

async fn subscribe(
    core: &Core,
    mut stream: Conn,
    mut rbuf: ReadBuf,
    slot: usize,
    filter: &str,
    track_order: bool,
    ready: &mut ReadyGuard<'_>,
) -> Result<(), ()> {
    let sc = &core.scenario;
    let qos = QoS::from_bits(sc.qos).unwrap_or(QoS::AtMostOnce);
    let mut rx = Receiver {
        version: sc.protocol_version(),
        tracker: SeqTracker::default(),
        track_order,
        subscribe_sent_ns: 0,
        subscribed: false,
        retained_storm: subscribe_at_run(sc),
        ack_templates: Acks::new(sc.protocol_version()),
        acks: BytesMut::with_capacity(4096),
    };
    let mut out = BytesMut::with_capacity(256);
    if rx.retained_storm {
        ready.mark();
        if !wait_for_run(core, slot).await {
            finish(&mut stream, rx.version).await;
            return Ok(());
        }
    }
    rx.subscribe_sent_ns = core.now_ns();
    let encoded = wire::put_subscribe(&mut out, rx.version, 1, filter, qos);
    if encoded.is_err() || stream.write_all(&out).await.is_err() {
        core.stats.borrow_mut().subscribe_failed_count += 1;
        return Err(());
    }
    enum Event {
        Read(io::Result<usize>),
        Flags(u8),
    }
    loop {
        let event = or(async { Event::Read(rbuf.fill(&mut stream).await) }, async {
            Event::Flags(core.slots.wait(slot).await)
        })
        .await;
        match event {
            Event::Read(Ok(0)) | Event::Read(Err(_)) => return Err(()),
            Event::Read(Ok(_)) => {
                if rx.process(core, &mut rbuf, ready).is_err() {
                    return Err(());
                }
                let waiters = std::mem::take(&mut *core.flow_waiters.borrow_mut());
                waiters.into_iter().for_each(|s| core.slots.raise(s, FLOW));
            }
            Event::Flags(flags) if flags & STOP != 0 => break,
            Event::Flags(flags) if flags & DROP != 0 => {
                // The injected crash: vanish without DISCONNECT, as a killed client would.
                return Err(());
            }
            Event::Flags(flags) => {
                if flags & PING != 0 {
                    wire::put_pingreq(&mut rx.acks, rx.version);
                }
            }
        }
        if !rx.acks.is_empty() {
            if stream.write_all(&rx.acks).await.is_err() {
                return Err(());
            }
            rx.acks.clear();
        }
    }
    finish(&mut stream, rx.version).await;
    Ok(())
}

/// Holds a connection: pings when its turn comes, notices when the broker goes away.
async fn idle(core: &Core, mut stream: Conn, mut rbuf: ReadBuf, slot: usize) -> Result<(), ()> {
    let version = core.scenario.protocol_version();
    let mut ping = BytesMut::with_capacity(2);
    wire::put_pingreq(&mut ping, version);
    loop {
        let flags = core.slots.wait(slot).await;
        if flags & STOP != 0 {
            break;
        }
        if flags & PING != 0 {
            if stream.write_all(&ping).await.is_err() {
                return Err(());
            }
            // The answer (or the close) comes back within a round trip; bounded so a stop
            // still gets through when a broker stalls.
            let pong = or(async { rbuf.fill(&mut stream).await.ok() }, async {
                glommio::timer::sleep(CONNECT_TIMEOUT).await;
                Some(1)
            })
            .await;
            if matches!(pong, None | Some(0)) {
                return Err(());
            }
            rbuf.discard();
        }
    }
    finish(&mut stream, version).await;
    Ok(())
}

/// Says goodbye properly so the broker does not publish a will or count an error.
async fn finish(stream: &mut Conn, version: ProtocolVersion) {
    let mut bye = BytesMut::with_capacity(2);
    wire::put_disconnect(&mut bye, version);
    let _ = stream.write_all(&bye).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Hands out a byte stream in chunks of the given sizes, as a socket might.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl futures_lite::AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = size.min(buf.len()).min(self.data.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    /// Every packet of a long stream comes out whole and in order, whatever the read sizes,
    /// through both the in-place PUBLISH path and the codec path, across buffer wraps.
    #[test]
    fn read_buffer_loses_nothing_across_wraps() {
        let version = ProtocolVersion::V5;
        let mut tpl =
            PublishTemplate::new(version, "t/1", QoS::ExactlyOnce, false, 64, 300).unwrap();
        let acks = Acks::new(version);
        let mut data = BytesMut::new();
        let count = 5000u16;
        for i in 1..=count {
            let len = 64 + usize::from(i % 7) * 30;
            tpl.put(&mut data, i, len, |p| {
                p[..2].copy_from_slice(&i.to_be_bytes())
            });
            acks.put(&mut data, AckKind::PubRel, PacketId::new(i).unwrap());
        }
        for sizes in [
            vec![1],
            vec![7, 300, 4096],
            vec![100_000],
            vec![333, 1, 65_536],
        ] {
            let mut stream = Chunked {
                data: data.to_vec(),
                at: 0,
                sizes,
                turn: 0,
            };
            let mut rbuf = ReadBuf::new(1024, version);
            let (mut publishes, mut rels) = (0u16, 0u16);
            futures_lite::future::block_on(async {
                while rbuf.fill(&mut stream).await.unwrap() > 0 {
                    while let Some(packet) = rbuf.next_received().unwrap() {
                        match packet {
                            Received::Publish(p) => {
                                publishes += 1;
                                assert_eq!(p.packet_id.map(|id| id.get()), Some(publishes));
                                assert_eq!(p.payload[..2], publishes.to_be_bytes());
                            }
                            Received::PubRel(id) => {
                                rels += 1;
                                assert_eq!(id.get(), rels);
                            }
                            Received::Packet(p) => panic!("{p:?}"),
                        }
                    }
                }
            });
            assert_eq!((publishes, rels), (count, count));
        }
    }
}
