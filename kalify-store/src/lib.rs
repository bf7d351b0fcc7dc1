//! kalify-store.
