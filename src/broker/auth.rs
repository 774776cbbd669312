//! The one authorization call every CONNECT, SUBSCRIBE and PUBLISH passes through. Today:
//! allow everything, except that with `allow_anonymous = false` a CONNECT without a user
//! name is refused (CONNACK 0x05 in 3.x, 0x87 in 5.0). Password files and ACLs plug in here.

use crate::protocol::{Connect, ReasonCode, TopicFilter, TopicName};

/// What a client asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Connect(&'a Connect),
    Subscribe {
        client_id: &'a str,
        filter: &'a TopicFilter,
    },
    Publish {
        client_id: &'a str,
        topic: &'a TopicName,
    },
}

#[derive(Debug, Clone)]
pub struct Authorizer {
    allow_anonymous: bool,
}

impl Authorizer {
    pub fn new(allow_anonymous: bool) -> Authorizer {
        Authorizer { allow_anonymous }
    }

    /// Whether `authorize` can refuse a PUBLISH; while it cannot, the caller may skip
    /// looking up what `Access::Publish` names. Must turn true with any publish rule.
    pub fn checks_publish(&self) -> bool {
        false
    }

    /// `Err(reason)`: refuse with this MQTT 5 reason (the caller maps it for 3.x).
    pub fn authorize(&self, access: Access<'_>) -> Result<(), ReasonCode> {
        match access {
            Access::Connect(connect) if !self.allow_anonymous && connect.user_name.is_none() => {
                Err(ReasonCode::NotAuthorized)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientId, ProtocolVersion};

    fn connect(user_name: Option<&str>) -> Connect {
        Connect {
            protocol_version: ProtocolVersion::V5,
            clean_start: true,
            keep_alive_s: 0,
            client_id: ClientId::default(),
            will: None,
            user_name: user_name.map(Into::into),
            password: None,
            properties: Default::default(),
        }
    }

    #[test]
    fn anonymous_connects_are_refused_only_when_not_allowed() {
        let strict = Authorizer::new(false);
        assert_eq!(
            strict.authorize(Access::Connect(&connect(None))),
            Err(ReasonCode::NotAuthorized)
        );
        assert_eq!(
            strict.authorize(Access::Connect(&connect(Some("u")))),
            Ok(())
        );
        assert_eq!(
            Authorizer::new(true).authorize(Access::Connect(&connect(None))),
            Ok(())
        );
        let topic = TopicName::parse("t").expect("valid");
        // The broker skips the session lookup for a PUBLISH while this says no refusal
        // can come: it must hold for every authorizer that says so.
        for authorizer in [&strict, &Authorizer::new(true)] {
            if !authorizer.checks_publish() {
                assert_eq!(
                    authorizer.authorize(Access::Publish {
                        client_id: "any",
                        topic: &topic
                    }),
                    Ok(())
                );
            }
        }
        assert_eq!(
            strict.authorize(Access::Publish {
                client_id: "",
                topic: &topic
            }),
            Ok(())
        );
    }
}
