//! The will: published when a connection ends without a normal DISCONNECT (or with
//! DISCONNECT 0x04), after the MQTT 5 Will Delay Interval, or earlier if the session ends
//! first [MQTT-3.1.3-9]; cancelled if the client reconnects to the session in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::{Publish, PublishProperties, Will};

use super::{Message, SessionKey};

/// A will waiting for its delay to pass.
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub session: SessionKey,
    pub will: Will,
    pub due: Instant,
}

/// When a will of `delay_s` is due for a connection lost at `now` whose session lasts
/// `session_expiry_s` more: the earlier of the two.
pub fn will_due_at(delay_s: u32, session_expiry_s: u32, now: Instant) -> Instant {
    now + Duration::from_secs(u64::from(delay_s.min(session_expiry_s)))
}

/// The message a will publishes, at `now` (its expiry counts from publication).
pub fn will_message(will: &Will, now: Instant) -> Arc<Message> {
    let p = &will.properties;
    let properties = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval_s: p.message_expiry_interval_s,
        topic_alias: None,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type.clone(),
    };
    Arc::new(Message {
        publish: Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.clone(),
            packet_id: None,
            properties: properties.into(),
            payload: will.payload.clone(),
        },
        expires_at: Message::expiry_from(p.message_expiry_interval_s, now),
        origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{QoS, TopicName, WillProperties};
    use bytes::Bytes;

    #[test]
    fn due_is_the_earlier_of_delay_and_session_end() {
        let t = Instant::now();
        assert_eq!(will_due_at(10, 100, t), t + Duration::from_secs(10));
        assert_eq!(will_due_at(10, 3, t), t + Duration::from_secs(3));
        assert_eq!(will_due_at(0, 3, t), t);
    }

    #[test]
    fn will_message_carries_the_will_properties() {
        let t = Instant::now();
        let will = Will {
            topic: TopicName::parse("w").expect("valid"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                message_expiry_interval_s: Some(9),
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        };
        let m = will_message(&will, t);
        assert_eq!(m.publish.qos, QoS::AtLeastOnce);
        assert!(m.publish.retain);
        assert_eq!(
            m.publish.properties.content_type.as_deref(),
            Some("text/plain")
        );
        assert_eq!(m.expires_at, Some(t + Duration::from_secs(9)));
    }
}
