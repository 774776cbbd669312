//! The one authorization call every CONNECT, SUBSCRIBE and PUBLISH passes through. Today:
//! allow everything, except that with `allow_anonymous = false` a CONNECT without a user
//! name is refused (CONNACK 0x05 in 3.x, 0x87 in 5.0). Password files and ACLs plug in here.

use crate::protocol::{ClientId, Connect, ReasonCode, TopicFilter, TopicName};

/// What a client asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Connect(&'a Connect),
    Subscribe {
        client_id: &'a ClientId,
        filter: &'a TopicFilter,
    },
    Publish {
        client_id: &'a ClientId,
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
