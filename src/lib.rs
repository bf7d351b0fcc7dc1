//! kalify qualifies sales leads by talking to them.
pub use kalify_core::*;
