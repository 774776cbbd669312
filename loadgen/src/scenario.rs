//! What a run does: the scenario (from the command line or a TOML file, same fields) and the
//! plan derived from it — every client, its role, its core, its client id and topic, and how
//! many subscribers each published message should reach.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use crate::stamp::STAMP_BYTES;
use crate::template::expand;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Conn,
    Pub,
    Sub,
    FanIn,
    FanOut,
    Pairs,
    Shared,
    Wildcard,
    Retained,
    Mixed,
}

/// Every knob of a run. A TOML scenario file holds these fields (any may be left out).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    /// 3 (3.1), 4 (3.1.1) or 5.
    pub mqtt_version: u8,
    /// Cores to run executors on, one executor per core.
    pub cpus: Vec<usize>,
    /// `conn`/`mixed`: clients; `pairs`: pairs.
    pub conns: usize,
    pub publishers: usize,
    pub subscribers: usize,
    /// `mixed`: the few consumers of all device messages.
    pub consumers: usize,
    /// Connections opened per second (0: as fast as they open).
    pub conn_rate: f64,
    /// Local addresses to bind before connecting, spread round-robin (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    pub keepalive_s: u16,
    pub clean: bool,
    pub session_expiry_s: u32,
    pub client_id: String,
    /// Topic template; empty means the scenario's own default.
    pub topic: String,
    pub qos: u8,
    pub payload_min_bytes: usize,
    pub payload_max_bytes: usize,
    /// Messages per second per publisher (0: not set).
    pub rate: f64,
    /// Messages per second over all publishers (0: not set). Neither set: as fast as possible.
    pub total_rate: f64,
    pub max_inflight: u16,
    /// Unpaced QoS 0 runs: most messages published but not yet delivered (0: automatic,
    /// 4 per publisher and at least 1000). Enough to keep a broker busy, few enough that
    /// latency is not just the loadgen's own queue.
    pub outstanding_max: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// After publishing stops, how long to wait for the last deliveries.
    pub drain_s: f64,
    /// Wall-clock instant (Unix ms) before which the run phase does not start (0: at once).
    /// Clients that finish setup early hold their connections until then, so several loadgen
    /// processes sharing one scenario all measure the same window, every client connected.
    pub hold_until_unix_ms: u64,
    pub retain: bool,
    /// `retained`: how many retained topics the storm subscribes over.
    pub retained_topics: usize,
    /// Pacing granularity: a publisher sleeps at least this long between batches.
    pub tick_us: u64,
    /// How long an idle executor polls before it sleeps, microseconds (0: sleep at once).
    /// A paced run at a modest rate otherwise sleeps and is woken for every message; each
    /// wake-up costs tens of microseconds of CPU on a VM and adds its jitter to the latency
    /// measured. Spinning keeps the loadgen's own timing out of the figures, at the price of
    /// its core.
    pub spin_us: u64,
    /// Test hook: subscriber 0 disconnects this many seconds into the run (0: never).
    pub drop_subscriber_after_s: f64,
    pub broker_pid: Option<u32>,
    /// Locked memory each executor asks for (the machine's memlock limit is small).
    pub io_memory_bytes: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            kind: Kind::Pairs,
            host: "127.0.0.1".into(),
            port: 1883,
            mqtt_version: 4,
            cpus: vec![0],
            conns: 100,
            publishers: 10,
            subscribers: 1,
            consumers: 2,
            conn_rate: 0.0,
            sources: Vec::new(),
            keepalive_s: 60,
            clean: true,
            session_expiry_s: 0,
            client_id: "culex-lg-%c-%i".into(),
            topic: String::new(),
            qos: 0,
            payload_min_bytes: 64,
            payload_max_bytes: 64,
            rate: 0.0,
            total_rate: 0.0,
            max_inflight: 100,
            outstanding_max: 0,
            duration_s: 10.0,
            warmup_s: 0.0,
            drain_s: 2.0,
            hold_until_unix_ms: 0,
            retain: false,
            retained_topics: 1000,
            tick_us: 1000,
            spin_us: 0,
            drop_subscriber_after_s: 0.0,
            broker_pid: None,
            io_memory_bytes: 512 * 1024,
        }
    }
}

/// What one client does.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Publishes on `topic`; `publisher_id` rides in every stamp.
    Publisher { publisher_id: u32, topic: String },
    /// Subscribes to `filter`; `track_order` is false where a subscriber sees only a share.
    Subscriber { filter: String, track_order: bool },
    /// Connects and holds the connection.
    Idle,
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub index: usize,
    pub core_slot: usize,
    pub client_id: String,
    pub role: Role,
}

/// Everything the engine needs, derived once from the scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: Vec<ClientPlan>,
    /// How many subscriber deliveries each published message should make.
    pub receivers_per_message: u64,
    pub publishers: usize,
    pub subscribers: usize,
    /// `retained`: retained messages set up before the storm (and cleared after).
    pub retained_topics: Vec<String>,
    pub rate_per_publisher: Option<f64>,
}

impl Scenario {
    /// Checks the fields against each other; the message says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.qos > 2 {
            return Err(format!("qos {} does not exist (0, 1 or 2)", self.qos));
        }
        if !matches!(self.mqtt_version, 3..=5) {
            return Err("mqtt-version must be 3 (3.1), 4 (3.1.1) or 5".into());
        }
        if self.payload_min_bytes < STAMP_BYTES {
            return Err(format!(
                "payload must be at least {STAMP_BYTES} bytes: the stamp (publisher, sequence, \
                 send times) rides in it"
            ));
        }
        if self.payload_max_bytes < self.payload_min_bytes {
            return Err("payload max is below payload min".into());
        }
        if self.cpus.is_empty() {
            return Err("cpus: give at least one core".into());
        }
        if self.max_inflight == 0 {
            return Err("max-inflight must be at least 1".into());
        }
        if self.duration_s <= 0.0 {
            return Err("duration must be positive".into());
        }
        Ok(())
    }

    /// The outstanding-message window for unpaced QoS 0 publishers of `publishers` clients.
    pub fn outstanding_window(&self, publishers: usize) -> u64 {
        if self.outstanding_max > 0 {
            self.outstanding_max
        } else {
            (publishers as u64 * 4).max(1000)
        }
    }

    pub fn protocol_version(&self) -> culex::protocol::ProtocolVersion {
        use culex::protocol::ProtocolVersion;
        match self.mqtt_version {
            3 => ProtocolVersion::V3_1,
            5 => ProtocolVersion::V5,
            _ => ProtocolVersion::V3_1_1,
        }
    }

    fn topic_or(&self, default: &str) -> String {
        if self.topic.is_empty() {
            default.to_string()
        } else {
            self.topic.clone()
        }
    }

    /// Lays out every client. Publishers and subscribers alternate over cores so each core
    /// carries both directions.
    pub fn plan(&self) -> Plan {
        let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
        let mut random = move || rng.u32(..);
        let cores = self.cpus.len();
        let (mut publishers, mut subscribers): (Vec<String>, Vec<(String, bool)>) =
            (vec![], vec![]);
        let mut idle = 0;
        let mut receivers = 1u64;
        let mut retained_topics = Vec::new();
        let p = self.publishers;
        let s = self.subscribers;
        match self.kind {
            Kind::Conn => idle = self.conns,
            Kind::Pub => {
                let t = self.topic_or("culex/pub/%i");
                publishers = (0..p)
                    .map(|i| expand(&t, i, i % cores, &mut random))
                    .collect();
                receivers = 0;
            }
            Kind::Sub => {
                let t = self.topic_or("culex/pub/#");
                subscribers = (0..s)
                    .map(|i| (expand(&t, i, i % cores, &mut random), true))
                    .collect();
                receivers = 0;
            }
            Kind::FanIn | Kind::FanOut => {
                let t = self.topic_or("culex/fan");
                let p = if self.kind == Kind::FanOut { 1 } else { p };
                publishers = vec![t.clone(); p];
                subscribers = vec![(t, true); s];
                receivers = s as u64;
            }
            Kind::Pairs => {
                let t = self.topic_or("culex/pair/%i");
                for i in 0..self.conns {
                    let topic = expand(&t, i, i % cores, &mut random);
                    publishers.push(topic.clone());
                    subscribers.push((topic, true));
                }
            }
            Kind::Shared => {
                let t = self.topic_or("culex/shared");
                publishers = vec![t.clone(); p];
                subscribers = vec![(format!("$share/culex-lg/{t}"), false); s];
            }
            Kind::Wildcard => {
                let t = self.topic_or("culex/wild/%i/data");
                publishers = (0..p)
                    .map(|i| expand(&t, i, i % cores, &mut random))
                    .collect();
                subscribers = (0..s)
                    .map(|i| {
                        let f = if i % 2 == 0 {
                            "culex/wild/+/data"
                        } else {
                            "culex/wild/#"
                        };
                        (f.to_string(), true)
                    })
                    .collect();
                receivers = s as u64;
            }
            Kind::Retained => {
                let t = self.topic_or("culex/retained/%i");
                retained_topics = (0..self.retained_topics)
                    .map(|i| expand(&t, i, 0, &mut random))
                    .collect();
                let prefix = t.split('%').next().unwrap_or("").trim_end_matches('/');
                let filter = format!("{}/#", if prefix.is_empty() { "culex" } else { prefix });
                subscribers = vec![(filter, false); s];
                receivers = 0;
            }
            Kind::Mixed => {
                let t = self.topic_or("culex/dev/%i");
                publishers = (0..self.conns)
                    .map(|i| expand(&t, i, i % cores, &mut random))
                    .collect();
                let prefix = t.split('%').next().unwrap_or("").trim_end_matches('/');
                subscribers = vec![(format!("{prefix}/#"), true); self.consumers];
                receivers = self.consumers as u64;
            }
        }
        let mut clients = Vec::new();
        let push = |role: Role, clients: &mut Vec<ClientPlan>, random: &mut dyn FnMut() -> u32| {
            let index = clients.len();
            let core_slot = index % cores;
            let mut r = || random();
            let client_id = expand(&self.client_id, index, self.cpus[core_slot], &mut r);
            clients.push(ClientPlan {
                index,
                core_slot,
                client_id,
                role,
            });
        };
        // Subscribers first: they connect and subscribe before any publisher starts.
        let n_subs = subscribers.len();
        for (filter, track_order) in subscribers {
            push(
                Role::Subscriber {
                    filter,
                    track_order,
                },
                &mut clients,
                &mut random,
            );
        }
        let n_pubs = publishers.len();
        for (i, topic) in publishers.into_iter().enumerate() {
            push(
                Role::Publisher {
                    publisher_id: i as u32,
                    topic,
                },
                &mut clients,
                &mut random,
            );
        }
        for _ in 0..idle {
            push(Role::Idle, &mut clients, &mut random);
        }
        let rate_per_publisher = if self.rate > 0.0 {
            Some(self.rate)
        } else if self.total_rate > 0.0 && n_pubs > 0 {
            Some(self.total_rate / n_pubs as f64)
        } else if self.kind == Kind::Mixed {
            Some(1.0) // devices report rarely; one message a second each unless told
        } else {
            None
        };
        Plan {
            clients,
            receivers_per_message: receivers,
            publishers: n_pubs,
            subscribers: n_subs,
            retained_topics,
            rate_per_publisher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_plan_has_distinct_topics_and_one_receiver() {
        let sc = Scenario {
            kind: Kind::Pairs,
            conns: 4,
            cpus: vec![0, 1],
            ..Default::default()
        };
        let plan = sc.plan();
        assert_eq!((plan.publishers, plan.subscribers), (4, 4));
        assert_eq!(plan.receivers_per_message, 1);
        let topics: std::collections::HashSet<_> = plan
            .clients
            .iter()
            .filter_map(|c| match &c.role {
                Role::Publisher { topic, .. } => Some(topic.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(topics.len(), 4);
        assert!(plan.clients.iter().any(|c| c.core_slot == 1));
        let ids: std::collections::HashSet<_> = plan.clients.iter().map(|c| &c.client_id).collect();
        assert_eq!(ids.len(), 8, "client ids must be unique");
    }

    #[test]
    fn fan_in_and_total_rate() {
        let sc = Scenario {
            kind: Kind::FanIn,
            publishers: 4,
            subscribers: 2,
            total_rate: 1000.0,
            ..Default::default()
        };
        let plan = sc.plan();
        assert_eq!(plan.receivers_per_message, 2);
        assert_eq!(plan.rate_per_publisher, Some(250.0));
        let sc = Scenario {
            kind: Kind::FanOut,
            publishers: 9,
            subscribers: 3,
            ..Default::default()
        };
        assert_eq!(sc.plan().publishers, 1);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let sc = Scenario {
            payload_min_bytes: 10,
            payload_max_bytes: 10,
            ..Default::default()
        };
        assert!(sc.validate().err().unwrap_or_default().contains("payload"));
        let sc = Scenario {
            qos: 3,
            ..Default::default()
        };
        assert!(sc.validate().is_err());
        assert!(Scenario::default().validate().is_ok());
    }

    #[test]
    fn shipped_scenario_files_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("scenarios/ ships with the crate") {
            let path = entry.expect("readable entry").path();
            let text = std::fs::read_to_string(&path).expect("readable file");
            let sc: Scenario = toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            sc.validate().unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert!(!sc.plan().clients.is_empty(), "{path:?} plans no clients");
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    fn toml_scenario_reads_the_same_fields() {
        let sc: Scenario =
            toml::from_str("kind = \"fan-in\"\npublishers = 50\nqos = 1\nrate = 100.0\n")
                .expect("valid scenario");
        assert_eq!(sc.kind, Kind::FanIn);
        assert_eq!(sc.publishers, 50);
        assert_eq!(sc.qos, 1);
        assert!(toml::from_str::<Scenario>("bogus = 1").is_err());
    }
}
