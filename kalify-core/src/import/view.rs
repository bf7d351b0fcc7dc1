//! The store's records for the contact points of one chunk of rows, read
//! with two batched calls and kept current as the chunk's rows are written.

use std::collections::{HashMap, HashSet};

use crate::contact::ContactPoint;
use crate::error::Result;
use crate::id::{OrgId, ProspectId};
use crate::ports::Store;
use crate::prospect::Prospect;

/// The store's prospects and suppressions for the contact points of one chunk.
///
/// Each lookup returns what [`Store::find_prospect`] and
/// [`Store::is_suppressed`] would return at that point of the import,
/// provided no other writer changes the same prospects meanwhile. A contact
/// point whose owner the import itself may have changed is marked stale and
/// looked up again on its own.
#[derive(Default)]
pub(crate) struct StoreView {
    suppressed: HashSet<ContactPoint>,
    owners: HashMap<ContactPoint, ProspectId>,
    prospects: HashMap<ProspectId, Prospect>,
    stale: HashSet<ContactPoint>,
}

impl StoreView {
    /// Reads the suppressions and owners of `contacts` in `org`.
    pub(crate) async fn load(
        store: &dyn Store,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<Self> {
        if contacts.is_empty() {
            return Ok(StoreView::default());
        }
        let suppressed = store.suppressed_among(org, contacts).await?;
        let found = store.find_prospects_by_contacts(org, contacts).await?;
        let mut view = StoreView {
            suppressed,
            ..StoreView::default()
        };
        for (contact, prospect) in found {
            view.owners.insert(contact, prospect.id);
            view.prospects.entry(prospect.id).or_insert(prospect);
        }
        Ok(view)
    }

    pub(crate) fn is_suppressed(&self, contact: &ContactPoint) -> bool {
        self.suppressed.contains(contact)
    }

    /// Records contact points the import has just suppressed.
    pub(crate) fn add_suppressed(&mut self, contacts: impl IntoIterator<Item = ContactPoint>) {
        self.suppressed.extend(contacts);
    }

    /// Returns the stored prospect that has `contact`.
    pub(crate) async fn owner(
        &mut self,
        store: &dyn Store,
        org: OrgId,
        contact: &ContactPoint,
    ) -> Result<Option<Prospect>> {
        if self.stale.contains(contact) {
            let found = store.find_prospect(org, contact).await?;
            self.stale.remove(contact);
            if let Some(prospect) = &found {
                self.owners.insert(contact.clone(), prospect.id);
                self.prospects.insert(prospect.id, prospect.clone());
            } else {
                self.owners.remove(contact);
            }
            return Ok(found);
        }
        Ok(self
            .owners
            .get(contact)
            .and_then(|id| self.prospects.get(id))
            .cloned())
    }

    /// Records the prospect as written by the import.
    ///
    /// Its new contact points had no other owner, or the import would have
    /// dropped them from the row, so they now belong to it. A contact point
    /// it lost may belong to another prospect, so it is marked stale.
    pub(crate) fn updated(&mut self, prospect: Prospect) {
        let current = prospect.contact_points();
        if let Some(previous) = self.prospects.get(&prospect.id) {
            let lost: Vec<ContactPoint> = previous
                .contact_points()
                .into_iter()
                .filter(|contact| !current.contains(contact))
                .collect();
            for contact in lost {
                self.owners.remove(&contact);
                self.stale.insert(contact);
            }
        }
        for contact in current {
            self.stale.remove(&contact);
            self.owners.insert(contact, prospect.id);
        }
        self.prospects.insert(prospect.id, prospect);
    }

    /// Forgets a prospect whose stored version is unknown, so that its
    /// contact points are looked up again.
    pub(crate) fn forget(&mut self, id: ProspectId) {
        let Some(prospect) = self.prospects.remove(&id) else {
            return;
        };
        for contact in prospect.contact_points() {
            if self.owners.get(&contact) == Some(&id) {
                self.owners.remove(&contact);
                self.stale.insert(contact);
            }
        }
    }
}
