//! kalify-ai.
