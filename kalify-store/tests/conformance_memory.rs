//! Runs the store conformance suite against [`MemoryStore`].

use std::sync::Arc;

use kalify_core::ports::Store;
use kalify_store::MemoryStore;

kalify_core::store_conformance!(memory, || async { MemoryStore::new() });

// The forwarding impls of `Store` for `Arc` and `Box` must pass the suite too.
kalify_core::store_conformance!(memory_arc_dyn, || async {
    Arc::new(MemoryStore::new()) as Arc<dyn Store>
});
kalify_core::store_conformance!(memory_box_dyn, || async {
    Box::new(MemoryStore::new()) as Box<dyn Store>
});
