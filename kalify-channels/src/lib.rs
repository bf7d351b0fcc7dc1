//! kalify-channels.
