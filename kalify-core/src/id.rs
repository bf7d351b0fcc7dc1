//! UUIDv7 identifiers. Version 7 ids sort by creation time, which keeps
//! B-tree indexes append-mostly and gives a stable default order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $label:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Creates a new time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                Uuid::parse_str(text).map($name).map_err(|error| {
                    Error::invalid_input(format!(
                        concat!("invalid ", $label, " {:?}: expected a UUID"),
                        text
                    ))
                    .with_source(error)
                })
            }
        }
    };
}

define_id!(
    /// Identifies a tenant. Every store call is scoped by it.
    OrgId, "OrgId"
);
define_id!(
    /// Identifies a prospect within an org.
    ProspectId, "ProspectId"
);
define_id!(
    /// Identifies a conversation (one per prospect and campaign).
    ConversationId, "ConversationId"
);
define_id!(
    /// Identifies a message, inbound or outbound.
    MessageId, "MessageId"
);
define_id!(
    /// Identifies a campaign.
    CampaignId, "CampaignId"
);
define_id!(
    /// Identifies a team member.
    MemberId, "MemberId"
);
define_id!(
    /// Identifies a scheduled job.
    JobId, "JobId"
);
define_id!(
    /// Identifies an outbox entry (one send intent).
    OutboxId, "OutboxId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let first = ProspectId::new();
        let second = ProspectId::new();
        assert!(first < second);
    }

    #[test]
    fn parse_rejects_garbage() {
        let error = "not-a-uuid".parse::<OrgId>().unwrap_err();
        assert!(error.to_string().contains("not-a-uuid"));
    }
}
