//! Clients we did not write: mosquitto_pub/mosquitto_sub in MQTT 3.1, 3.1.1 and 5, and
//! rumqttc (3.1.1 and 5), against 1, 2 and 4 shards (4 is more than this machine's
//! cores), with publisher and subscriber placed on different shards.
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{run_tool, Broker, Tool, WAIT};

/// mosquitto_sub waits for one message on a topic while mosquitto_pub publishes until it
/// arrives (the subscription may not be in place at the first publish).
fn mosquitto_pair(broker: &Broker, version: &str, qos: &str) {
    let port = broker.port.to_string();
    let topic = format!("interop/{version}/q{qos}");
    let sub_id = broker.client_on(&format!("sub{version}"), 0);
    let pub_id = broker.client_on(&format!("pub{version}"), broker.shards - 1);
    let sub = Tool::spawn(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-q",
            qos,
            "-i",
            &sub_id,
            "-t",
            &topic,
            "-C",
            "1",
            "-W",
            "5",
        ],
    );
    let deadline = Instant::now() + WAIT;
    let mut sub = sub;
    loop {
        let out = run_tool(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-q",
                qos,
                "-i",
                &pub_id,
                "-t",
                &topic,
                "-m",
                "hello from mosquitto_pub",
            ],
        );
        assert!(out.status.success(), "mosquitto_pub -V {version}: {out:?}");
        let exited = sub
            .0
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("waitpid");
        if exited.is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sub.output(),
        "hello from mosquitto_pub\n",
        "-V {version} -q {qos}"
    );
}

#[test]
fn mosquitto_clients_all_versions_one_shard() {
    let broker = Broker::start(1);
    for version in ["31", "311", "5"] {
        mosquitto_pair(&broker, version, "1");
    }
}

#[test]
fn mosquitto_clients_all_versions_across_two_shards() {
    let broker = Broker::start(2);
    for version in ["31", "311", "5"] {
        for qos in ["0", "2"] {
            mosquitto_pair(&broker, version, qos);
        }
    }
}

#[test]
fn mosquitto_clients_across_four_shards() {
    let broker = Broker::start(4);
    for version in ["311", "5"] {
        mosquitto_pair(&broker, version, "1");
    }
}

/// A newcomer's first session: a retained QoS 2 message from `mosquitto_pub -V 5 -q 2 -r`
/// is what `mosquitto_sub -t '#' -v` prints, and nothing under `$SYS` matches `#`.
#[test]
fn newcomer_retained_then_hash_subscription() {
    let broker = Broker::start(2);
    let port = broker.port.to_string();
    let out = run_tool(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-q",
            "2",
            "-r",
            "-t",
            "greeting/hello",
            "-m",
            "world",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = run_tool(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "#",
            "-v",
            "-C",
            "1",
            "-W",
            "3",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "greeting/hello world\n"
    );
}

/// What a rumqttc subscriber's event loop reports to the test.
enum Seen {
    SubAck,
    Payload(u32),
}

/// The next report, without blocking the runtime the event loops run on (tokio's own
/// channels need a feature the workspace does not enable).
async fn next_seen(seen: &std::sync::mpsc::Receiver<Seen>) -> Seen {
    loop {
        match seen.try_recv() {
            Ok(report) => return report,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(e) => panic!("the subscriber's loop ended: {e}"),
        }
    }
}

fn payload_number(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().expect("4-byte payloads"))
}

/// Each event loop runs in its own task: `EventLoop::poll` is not cancel-safe, so it must
/// not sit in a `select!`. The subscriber's loop reports SUBACK and payloads.
fn rumqttc_v311_pair(broker: &Broker) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sub_opts = MqttOptions::new(broker.client_on("rsub", 0), "127.0.0.1", broker.port);
        sub_opts.set_keep_alive(Duration::from_secs(30));
        let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 100);
        let pub_opts = MqttOptions::new(
            broker.client_on("rpub", broker.shards - 1),
            "127.0.0.1",
            broker.port,
        );
        let (publisher, mut pub_loop) = AsyncClient::new(pub_opts, 100);
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let sub_task = tokio::spawn(async move {
            loop {
                let report = match sub_loop.poll().await.expect("subscriber stays connected") {
                    Event::Incoming(Packet::SubAck(_)) => Seen::SubAck,
                    Event::Incoming(Packet::Publish(p)) => {
                        Seen::Payload(payload_number(&p.payload))
                    }
                    _ => continue,
                };
                if seen_tx.send(report).is_err() {
                    return;
                }
            }
        });
        let pub_task = tokio::spawn(async move {
            loop {
                pub_loop.poll().await.expect("publisher stays connected");
            }
        });
        sub.subscribe("rumq/+/v311", QoS::AtLeastOnce)
            .await
            .unwrap();
        let received = tokio::time::timeout(WAIT, async {
            assert!(matches!(next_seen(&seen).await, Seen::SubAck));
            // SUBACK comes from the subscriber's shard; the route reaches the publisher's
            // shard by mesh a little later (the routing replica is eventually consistent).
            tokio::time::sleep(Duration::from_millis(100)).await;
            for i in 0..50u32 {
                publisher
                    .publish(
                        "rumq/x/v311",
                        QoS::AtLeastOnce,
                        false,
                        i.to_be_bytes().to_vec(),
                    )
                    .await
                    .unwrap();
            }
            let mut got = Vec::new();
            while got.len() < 50 {
                if let Seen::Payload(n) = next_seen(&seen).await {
                    got.push(n);
                }
            }
            got
        })
        .await
        .expect("50 QoS 1 messages arrive in time");
        assert_eq!(received, (0..50).collect::<Vec<u32>>());
        sub_task.abort();
        pub_task.abort();
    });
}

fn rumqttc_v5_pair(broker: &Broker) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sub_opts = MqttOptions::new(broker.client_on("r5sub", 0), "127.0.0.1", broker.port);
        let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 100);
        let pub_opts = MqttOptions::new(
            broker.client_on("r5pub", broker.shards - 1),
            "127.0.0.1",
            broker.port,
        );
        let (publisher, mut pub_loop) = AsyncClient::new(pub_opts, 100);
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let sub_task = tokio::spawn(async move {
            loop {
                let report = match sub_loop.poll().await.expect("subscriber stays connected") {
                    Event::Incoming(Packet::SubAck(_)) => Seen::SubAck,
                    Event::Incoming(Packet::Publish(p)) => {
                        Seen::Payload(payload_number(&p.payload))
                    }
                    _ => continue,
                };
                if seen_tx.send(report).is_err() {
                    return;
                }
            }
        });
        let pub_task = tokio::spawn(async move {
            loop {
                pub_loop.poll().await.expect("publisher stays connected");
            }
        });
        sub.subscribe("rumq/v5/#", QoS::ExactlyOnce).await.unwrap();
        let received = tokio::time::timeout(WAIT, async {
            assert!(matches!(next_seen(&seen).await, Seen::SubAck));
            // SUBACK comes from the subscriber's shard; the route reaches the publisher's
            // shard by mesh a little later (the routing replica is eventually consistent).
            tokio::time::sleep(Duration::from_millis(100)).await;
            for i in 0..20u32 {
                publisher
                    .publish(
                        "rumq/v5/a",
                        QoS::ExactlyOnce,
                        false,
                        i.to_be_bytes().to_vec(),
                    )
                    .await
                    .unwrap();
            }
            let mut got = Vec::new();
            while got.len() < 20 {
                if let Seen::Payload(n) = next_seen(&seen).await {
                    got.push(n);
                }
            }
            got
        })
        .await
        .expect("20 QoS 2 messages arrive in time");
        assert_eq!(received, (0..20).collect::<Vec<u32>>());
        sub_task.abort();
        pub_task.abort();
    });
}

#[test]
fn rumqttc_v311_and_v5_across_shards() {
    for shards in [1, 2, 4] {
        let broker = Broker::start(shards);
        rumqttc_v311_pair(&broker);
        rumqttc_v5_pair(&broker);
    }
}
