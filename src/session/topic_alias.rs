//! Inbound topic aliases (MQTT 5): the topic each alias a client set stands for on this
//! connection. An alias of 0 or above the maximum the broker announced is invalid (0x94);
//! an alias used before it was set, or an empty topic without an alias, is a protocol error.

use std::num::NonZeroU16;

use crate::protocol::{ReasonCode, TopicName};

/// Why an inbound PUBLISH's topic could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// Alias beyond the Topic Alias Maximum: DISCONNECT 0x94.
    Invalid,
    /// Empty topic with an alias never set, or with no alias: DISCONNECT 0x82.
    Unknown,
}

impl AliasError {
    pub fn reason_code(self) -> ReasonCode {
        match self {
            AliasError::Invalid => ReasonCode::TopicAliasInvalid,
            AliasError::Unknown => ReasonCode::ProtocolError,
        }
    }
}

#[derive(Debug, Default)]
pub struct InboundAliases {
    max: u16,
    topics: Vec<Option<TopicName>>,
}

impl InboundAliases {
    pub fn new(max: u16) -> InboundAliases {
        InboundAliases {
            max,
            topics: Vec::new(),
        }
    }

    /// The topic of a PUBLISH carrying `topic` (maybe empty) and `alias`.
    pub fn resolve(
        &mut self,
        topic: &TopicName,
        alias: Option<NonZeroU16>,
    ) -> Result<TopicName, AliasError> {
        let Some(alias) = alias else {
            return if topic.is_empty() {
                Err(AliasError::Unknown)
            } else {
                Ok(topic.clone())
            };
        };
        if alias.get() > self.max {
            return Err(AliasError::Invalid);
        }
        let slot = usize::from(alias.get() - 1);
        if topic.is_empty() {
            return self
                .topics
                .get(slot)
                .and_then(Clone::clone)
                .ok_or(AliasError::Unknown);
        }
        if self.topics.len() <= slot {
            self.topics.resize(slot + 1, None);
        }
        self.topics[slot] = Some(topic.clone());
        Ok(topic.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(n: u16) -> Option<NonZeroU16> {
        NonZeroU16::new(n)
    }

    #[test]
    fn set_then_use_then_replace() {
        let mut a = InboundAliases::new(2);
        let t1 = TopicName::parse("a/b").expect("valid");
        let t2 = TopicName::parse("c").expect("valid");
        let empty = TopicName::empty_for_alias();
        assert_eq!(a.resolve(&empty, alias(1)), Err(AliasError::Unknown));
        assert_eq!(a.resolve(&t1, alias(1)), Ok(t1.clone()));
        assert_eq!(a.resolve(&empty, alias(1)), Ok(t1.clone()));
        assert_eq!(a.resolve(&t2, alias(1)), Ok(t2.clone()));
        assert_eq!(a.resolve(&empty, alias(1)), Ok(t2));
        assert_eq!(a.resolve(&empty, None), Err(AliasError::Unknown));
    }

    #[test]
    fn above_maximum_is_invalid() {
        let mut a = InboundAliases::new(2);
        let t = TopicName::parse("x").expect("valid");
        assert_eq!(a.resolve(&t, alias(3)), Err(AliasError::Invalid));
        assert_eq!(
            InboundAliases::new(0).resolve(&t, alias(1)),
            Err(AliasError::Invalid)
        );
        assert_eq!(AliasError::Invalid.reason_code().code(), 0x94);
    }
}
