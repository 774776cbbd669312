//! `culex-floor`: the floor under every broker's figures on this machine.
//!
//! Not a broker. It answers just enough MQTT 3.1.1/5.0 for the loadgen's `conn`, `pairs`,
//! `fan-in` and `fan-out` scenarios (CONNECT, SUBSCRIBE to exact topics, PUBLISH at QoS 0
//! and 1, PINGREQ, DISCONNECT) with no sessions, no validation, no limits and no state but
//! a topic → subscribers map. One thread, one level-triggered epoll, non-blocking sockets,
//! every reply of an event batch written with one `send` per connection: the kernel work a
//! broker cannot avoid for the loadgen's traffic, and almost nothing else.
//!
//! What it shows: the CPU per message or per connect, and the latency tail, that even a
//! broker doing nothing can reach on this kernel and VM. A target below that floor is out
//! of any broker's reach here. Run it exactly as a broker (`scripts/floor.sh` does).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use bytes::BytesMut;
use clap::Parser;
use culex::protocol::{
    check_frame, decode, AckProperties, FrameStatus, Packet, ProtocolVersion, QoS, ReasonCode,
    SubAck,
};

#[derive(Parser, Debug)]
#[command(about = "A do-nothing MQTT relay: the floor for the bench's figures (not a broker)")]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(short, long, default_value_t = 1883)]
    port: u16,
}

/// Bytes read per `recv`.
const READ_BYTES: usize = 64 * 1024;
/// A client whose unsent replies pass this is dropped: the floor keeps no unbounded queue.
const MAX_PENDING: usize = 8 << 20;
/// The listener's epoll token.
const LISTENER: u64 = u64::MAX;

struct Client {
    stream: TcpStream,
    /// Received bytes not yet a whole packet.
    input: Vec<u8>,
    /// Replies and forwarded publishes not yet sent.
    output: Vec<u8>,
    version: ProtocolVersion,
    /// Registered for EPOLLOUT (output left over from the last flush).
    waiting_out: bool,
    topics: Vec<Vec<u8>>,
}

struct Floor {
    epoll: i32,
    clients: HashMap<u64, Client>,
    subscribers: HashMap<Vec<u8>, Vec<u64>>,
    next_token: u64,
    /// Clients with output to send after this event batch.
    dirty: Vec<u64>,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    listener.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener: no `setsockopt` per client.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one` (an int, its size given) for the call.
    let set = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: epoll_create1 takes a flag and returns a new descriptor or -1.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut floor = Floor {
        epoll,
        clients: HashMap::new(),
        subscribers: HashMap::new(),
        next_token: 0,
        dirty: Vec::new(),
    };
    floor.watch(listener.as_raw_fd(), LISTENER, libc::EPOLL_CTL_ADD, false)?;
    eprintln!("culex-floor listening on 127.0.0.1:{}", args.port);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        // SAFETY: epoll_wait writes at most `events.len()` entries into `events`.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events[..n as usize] {
            let (mask, token) = (event.events, event.u64);
            if token == LISTENER {
                floor.accept_all(&listener);
            } else if mask & (libc::EPOLLOUT as u32) != 0 {
                floor.dirty.push(token);
            } else {
                floor.read(token, &mut buf);
            }
        }
        floor.flush();
    }
}

impl Floor {
    fn watch(&self, fd: i32, token: u64, op: i32, out: bool) -> io::Result<()> {
        let events = if out { libc::EPOLLOUT } else { libc::EPOLLIN };
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: epoll_ctl reads `event` for the call; both descriptors are open.
        if unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `accept4` straight to a non-blocking socket; TCP_NODELAY comes from the listener.
    fn accept_all(&mut self, listener: &TcpListener) {
        loop {
            // SAFETY: accept4 with null address pointers writes no memory; it returns a new
            // descriptor or -1.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {}
                    _ => eprintln!("accept: {e}"),
                }
                return;
            }
            // SAFETY: `fd` is a fresh socket nothing else owns.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            let token = self.next_token;
            self.next_token += 1;
            if self.watch(fd, token, libc::EPOLL_CTL_ADD, false).is_ok() {
                let client = Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    version: ProtocolVersion::V3_1_1,
                    waiting_out: false,
                    topics: Vec::new(),
                };
                self.clients.insert(token, client);
            }
        }
    }

    fn read(&mut self, token: u64, buf: &mut [u8]) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let n = match client.stream.read(buf) {
            Ok(0) => return self.close(token),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => return self.close(token),
        };
        let mut input = std::mem::take(&mut client.input);
        input.extend_from_slice(&buf[..n]);
        let mut at = 0;
        // Culex's own framing; a malformed header leaves the client waiting (the floor
        // does not judge its input).
        while let Ok(FrameStatus::Complete {
            first_byte,
            header_len_bytes,
            total_len_bytes,
        }) = check_frame(&input[at..], u32::MAX)
        {
            let packet = &input[at..at + total_len_bytes];
            if !self.handle(token, first_byte, &packet[header_len_bytes..], packet) {
                return self.close(token);
            }
            at += total_len_bytes;
        }
        input.drain(..at);
        if let Some(client) = self.clients.get_mut(&token) {
            client.input = input;
        }
    }

    /// One packet; false closes the client.
    fn handle(&mut self, token: u64, header: u8, body: &[u8], packet: &[u8]) -> bool {
        match header >> 4 {
            1 => {
                // CONNECT: the protocol name ("MQTT", or "MQIsdp" for 3.1), then the level.
                let level = match body.get(1) {
                    Some(6) => body.get(8),
                    _ => body.get(6),
                };
                let version = match level {
                    Some(5) => ProtocolVersion::V5,
                    Some(3) => ProtocolVersion::V3_1,
                    _ => ProtocolVersion::V3_1_1,
                };
                let connack: &[u8] = if version == ProtocolVersion::V5 {
                    &[0x20, 3, 0, 0, 0]
                } else {
                    &[0x20, 2, 0, 0]
                };
                self.reply(token, connack, |c| c.version = version)
            }
            8 => self.subscribe(token, packet),
            3 => self.publish(token, header, body, packet),
            4 => true, // PUBACK from a subscriber: nothing is in flight here.
            12 => self.reply(token, &[0xd0, 0], |_| ()),
            _ => false, // DISCONNECT, and everything the floor does not do.
        }
    }

    /// SUBSCRIBE through Culex's codec (not the hot path): exact topics, QoS 1 at most.
    fn subscribe(&mut self, token: u64, packet: &[u8]) -> bool {
        let Some(client) = self.clients.get_mut(&token) else {
            return false;
        };
        let version = client.version;
        let Ok(Some(Packet::Subscribe(subscribe))) =
            decode(&mut BytesMut::from(packet), Some(version), u32::MAX)
        else {
            return false;
        };
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        for (filter, options) in &subscribe.filters {
            let topic = filter.as_str().as_bytes().to_vec();
            client.topics.push(topic.clone());
            self.subscribers.entry(topic).or_default().push(token);
            reason_codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                _ => ReasonCode::GrantedQoS1,
            });
        }
        let suback = Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes,
        });
        let mut out = BytesMut::new();
        if suback.encode(version, &mut out).is_err() {
            return false;
        }
        self.reply(token, &out, |_| ())
    }

    fn publish(&mut self, token: u64, header: u8, body: &[u8], packet: &[u8]) -> bool {
        let qos = (header >> 1) & 3;
        if body.len() < 2 || qos > 1 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let Some(topic) = body.get(2..2 + len) else {
            return false;
        };
        let Some(from) = self.clients.get(&token).map(|c| c.version) else {
            return false;
        };
        if let Some(subscribers) = self.subscribers.get(topic) {
            for &to in subscribers {
                if let Some(sub) = self.clients.get_mut(&to) {
                    if sub.output.is_empty() {
                        self.dirty.push(to);
                    }
                    let v5 = |v| v == ProtocolVersion::V5;
                    if v5(sub.version) == v5(from) {
                        sub.output.extend_from_slice(packet);
                    } else if !convert(packet, from, sub.version, &mut sub.output) {
                        return false;
                    }
                }
            }
        }
        if qos == 1 {
            let Some(id) = body.get(2 + len..4 + len) else {
                return false;
            };
            return self.reply(token, &[0x40, 2, id[0], id[1]], |_| ());
        }
        true
    }

    fn reply(&mut self, token: u64, bytes: &[u8], update: impl FnOnce(&mut Client)) -> bool {
        let Some(client) = self.clients.get_mut(&token) else {
            return false;
        };
        update(client);
        if client.output.is_empty() {
            self.dirty.push(token);
        }
        client.output.extend_from_slice(bytes);
        true
    }

    /// One `send` per client with output; what the socket does not take waits for EPOLLOUT.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            let Some(client) = self.clients.get_mut(&token) else {
                continue;
            };
            if client.output.is_empty() {
                continue;
            }
            match client.stream.write(&client.output) {
                Ok(n) => {
                    client.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.close(token);
                    continue;
                }
            }
            let pending = client.output.len();
            let fd = client.stream.as_raw_fd();
            let want_out = pending > 0;
            if pending > MAX_PENDING {
                eprintln!("client {token}: {pending} bytes unsent; dropping it");
                self.close(token);
            } else if want_out != client.waiting_out {
                client.waiting_out = want_out;
                if self
                    .watch(fd, token, libc::EPOLL_CTL_MOD, want_out)
                    .is_err()
                {
                    self.close(token);
                }
            }
        }
        self.dirty = dirty;
    }

    fn close(&mut self, token: u64) {
        if let Some(client) = self.clients.remove(&token) {
            for topic in &client.topics {
                if let Some(subs) = self.subscribers.get_mut(topic) {
                    subs.retain(|&t| t != token);
                    if subs.is_empty() {
                        self.subscribers.remove(topic);
                    }
                }
            }
            let _ = (&client.stream).flush();
        }
    }
}

/// Appends `packet`, a PUBLISH in version `from`, to `out` in version `to` (5.0 has a
/// properties field that 3.x lacks), through Culex's codec: only clients of different
/// versions on one topic take this path. False if the packet is malformed.
fn convert(packet: &[u8], from: ProtocolVersion, to: ProtocolVersion, out: &mut Vec<u8>) -> bool {
    let Ok(Some(publish @ Packet::Publish(_))) =
        decode(&mut BytesMut::from(packet), Some(from), u32::MAX)
    else {
        return false;
    };
    let mut buf = BytesMut::new();
    if publish.encode(to, &mut buf).is_err() {
        return false;
    }
    out.extend_from_slice(&buf);
    true
}
