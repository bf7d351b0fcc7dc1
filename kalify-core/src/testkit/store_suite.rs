//! The conformance suite of [`Store`]: one public function per case.
//!
//! Run every case against a backend with [`store_conformance!`](crate::store_conformance),
//! which stamps out one test per case and builds a new store for each.
//!
//! # Isolation
//! Each case creates its own org ids, so most cases could share a store.
//! The claim cases cannot: `claim_jobs` and `claim_outbox` work across orgs,
//! so they need a store that contains no other due job or outbox entry.
//!
//! # Behaviour fixed here beyond the trait docs
//! - `insert_prospects` and `insert_conversation` store the version they are given.
//! - `insert_conversation` treats "no campaign" as one campaign: a prospect has
//!   at most one conversation without a campaign. A missing prospect is `NotFound`.
//! - `insert_inbound` rejects outbound messages with `InvalidInput`, returns
//!   `NotFound` when the conversation does not exist, and `Duplicate` for a
//!   message id that exists.
//! - `commit_turn` rejects with `InvalidInput` any record whose org differs
//!   from the conversation's, writes the prospect with its version plus one,
//!   and sets the message of every outbox entry it cancels to `Cancelled`.
//! - A claim increments `attempts`, and the returned record counts the claim.
//! - `finish_job` and `finish_outbox` return `NotFound` for an unknown id.
//!   Only `OutboxOutcome::Sent` changes an entry that is no longer pending,
//!   because the provider did accept the message.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::contact::ContactPoint;
use crate::conversation::{Conversation, ConversationState, DeliveryStatus, Direction, Message};
use crate::error::{ErrorKind, Result};
use crate::id::{
    CampaignId, ConversationId, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
};
use crate::ports::{
    CancelScope, InsertOutcome, Job, JobOutcome, ListOptions, OutboxEntry, OutboxOutcome, Role,
    Store, TurnCommit,
};
use crate::prospect::{Prospect, Version};
use crate::testkit::fakes::{self, time};

const LEASE: Duration = Duration::from_secs(60);

/// Returns the value of `result`, or panics naming `operation` and the error.
fn ok<T>(result: Result<T>, operation: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{operation} failed: {error}"),
    }
}

/// Returns the error kind of `result`, or panics naming `operation` when it succeeded.
fn error_kind<T>(result: Result<T>, operation: &str) -> ErrorKind {
    match result {
        Ok(_) => panic!("{operation} succeeded, expected an error"),
        Err(error) => error.kind(),
    }
}

/// Runs `futures` concurrently on the current task and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures
        .into_iter()
        .map(|future| Some(Box::pin(future)))
        .collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Inserts a full prospect of `org` and a conversation of it in a new campaign.
async fn seed(store: &dyn Store, org: OrgId) -> (Prospect, Conversation) {
    let prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );
    let conversation = fakes::conversation(&prospect, Some(CampaignId::new()));
    let created = ok(
        store.insert_conversation(&conversation, &[]).await,
        "insert_conversation",
    );
    assert!(
        created,
        "insert_conversation must create the first conversation of a prospect"
    );
    (prospect, conversation)
}

/// Inserts one more conversation of `prospect` in a new campaign.
async fn seed_conversation(store: &dyn Store, prospect: &Prospect) -> Conversation {
    let conversation = fakes::conversation(prospect, Some(CampaignId::new()));
    let created = ok(
        store.insert_conversation(&conversation, &[]).await,
        "insert_conversation",
    );
    assert!(
        created,
        "insert_conversation must create a conversation in a new campaign"
    );
    conversation
}

/// Re-reads `conversation`, so that the next turn carries its stored version.
async fn reload(store: &dyn Store, conversation: &Conversation) -> Conversation {
    ok(
        store
            .get_conversation(conversation.org_id, conversation.id)
            .await,
        "get_conversation",
    )
}

/// Commits a turn on `conversation` that writes one outbound message and its
/// outbox entry due at `at`, and returns both.
async fn commit_outbound(
    store: &dyn Store,
    conversation: &Conversation,
    at: crate::Timestamp,
) -> (Message, OutboxEntry) {
    let current = reload(store, conversation).await;
    let message = fakes::outbound(&current, at);
    let entry = fakes::outbox_entry(
        &message,
        ContactPoint::Email(fakes::email(fakes::next_number())),
    );
    let mut turn = TurnCommit::new(current);
    turn.messages.push(message.clone());
    turn.outbox.push(entry.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");
    (message, entry)
}

/// Returns the ids of the jobs of `org` that a claim far in the future finds pending.
async fn claimable_jobs(store: &dyn Store, org: OrgId) -> Vec<JobId> {
    let claimed = ok(
        store
            .claim_jobs(time(1_000_000), 10_000, LEASE, "probe")
            .await,
        "claim_jobs",
    );
    claimed
        .into_iter()
        .filter(|job| job.org_id == org)
        .map(|job| job.id)
        .collect()
}

/// Returns the ids of the outbox entries of `org` that a claim far in the future finds pending.
async fn claimable_outbox(store: &dyn Store, org: OrgId) -> Vec<OutboxId> {
    let claimed = ok(
        store
            .claim_outbox(time(1_000_000), 10_000, LEASE, "probe")
            .await,
        "claim_outbox",
    );
    claimed
        .into_iter()
        .filter(|entry| entry.org_id == org)
        .map(|entry| entry.id)
        .collect()
}

/// Returns the stored status of message `id` of `conversation`.
async fn message_status(
    store: &dyn Store,
    conversation: &Conversation,
    id: MessageId,
) -> DeliveryStatus {
    let messages = ok(
        store
            .list_messages(conversation.org_id, conversation.id)
            .await,
        "list_messages",
    );
    match messages.iter().find(|message| message.id == id) {
        Some(message) => message.status,
        None => panic!("message {id} is missing from list_messages"),
    }
}

/// Checks that a prospect with every field set reads back equal, field by field.
pub async fn prospect_roundtrip(store: &dyn Store) {
    let org = fakes::org();
    let full = fakes::prospect(org);
    let minimal = fakes::minimal_prospect(org);
    ok(
        store
            .insert_prospects(&[full.clone(), minimal.clone()])
            .await,
        "insert_prospects",
    );

    let read = ok(store.get_prospect(org, full.id).await, "get_prospect");
    assert_eq!(read.id, full.id, "id must survive a roundtrip");
    assert_eq!(read.org_id, org, "org_id must survive a roundtrip");
    assert_eq!(
        read.first_name, full.first_name,
        "first_name must survive a roundtrip"
    );
    assert_eq!(
        read.last_name, full.last_name,
        "last_name must survive a roundtrip"
    );
    assert_eq!(
        read.company, full.company,
        "company must survive a roundtrip"
    );
    assert_eq!(
        read.job_title, full.job_title,
        "job_title must survive a roundtrip"
    );
    assert_eq!(read.phone, full.phone, "phone must survive a roundtrip");
    assert_eq!(read.email, full.email, "email must survive a roundtrip");
    assert_eq!(
        read.messenger, full.messenger,
        "messenger must survive a roundtrip"
    );
    assert_eq!(read.locale, full.locale, "locale must survive a roundtrip");
    assert_eq!(
        read.time_zone, full.time_zone,
        "time_zone must survive a roundtrip"
    );
    assert_eq!(read.source, full.source, "source must survive a roundtrip");
    assert_eq!(read.tags, full.tags, "tags must keep their order");
    assert_eq!(
        read.custom_fields, full.custom_fields,
        "custom fields must keep their types and values"
    );
    assert_eq!(read.status, full.status, "status must survive a roundtrip");
    assert_eq!(
        read.score, full.score,
        "the score and its breakdown must survive a roundtrip"
    );
    assert_eq!(read.owner, full.owner, "owner must survive a roundtrip");
    assert_eq!(
        read.consents, full.consents,
        "consents must survive a roundtrip, withdrawals included"
    );
    assert_eq!(
        read.restricted, full.restricted,
        "restricted must survive a roundtrip"
    );
    assert_eq!(
        read.objected, full.objected,
        "objected must survive a roundtrip"
    );
    assert_eq!(
        read.created_at, full.created_at,
        "created_at must keep its nanoseconds"
    );
    assert_eq!(
        read.updated_at, full.updated_at,
        "updated_at must keep its nanoseconds"
    );
    assert_eq!(
        read.version, full.version,
        "insert_prospects must store the version it is given"
    );
    assert!(
        read == full,
        "get_prospect must return the prospect as inserted"
    );

    let read_minimal = ok(store.get_prospect(org, minimal.id).await, "get_prospect");
    assert!(
        read_minimal == minimal,
        "a prospect with empty optional fields must read back equal"
    );

    let mut flags = fakes::minimal_prospect(org);
    flags.restricted = true;
    flags.objected = true;
    ok(
        store.insert_prospects(std::slice::from_ref(&flags)).await,
        "insert_prospects",
    );
    let read_flags = ok(store.get_prospect(org, flags.id).await, "get_prospect");
    assert!(
        read_flags.restricted,
        "restricted = true must survive a roundtrip"
    );
    assert!(
        read_flags.objected,
        "objected = true must survive a roundtrip"
    );
}

/// Checks that reading or updating a missing prospect is `NotFound`.
pub async fn prospect_missing_is_not_found(store: &dyn Store) {
    let org = fakes::org();

    let kind = error_kind(
        store.get_prospect(org, ProspectId::new()).await,
        "get_prospect of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_prospect of a missing id must be NotFound"
    );

    let missing = fakes::prospect(org);
    let kind = error_kind(
        store.update_prospect(&missing).await,
        "update_prospect of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "update_prospect of a missing id must be NotFound"
    );
}

/// Checks that inserting an existing id is `Conflict` and writes nothing of the batch.
pub async fn prospect_insert_existing_id_conflicts(store: &dyn Store) {
    let org = fakes::org();
    let first = fakes::prospect(org);
    ok(
        store.insert_prospects(std::slice::from_ref(&first)).await,
        "insert_prospects",
    );

    let fresh = fakes::prospect(org);
    let mut again = first.clone();
    again.company = Some("Changed SARL".into());
    let kind = error_kind(
        store.insert_prospects(&[fresh.clone(), again]).await,
        "insert_prospects of an existing id",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "insert_prospects of an existing id must be Conflict"
    );

    let kind = error_kind(store.get_prospect(org, fresh.id).await, "get_prospect");
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "a failed insert_prospects must write no prospect of its batch"
    );
    let stored = ok(store.get_prospect(org, first.id).await, "get_prospect");
    assert_eq!(
        stored.company, first.company,
        "a failed insert_prospects must not change the existing prospect"
    );

    let twice = fakes::prospect(org);
    let kind = error_kind(
        store
            .insert_prospects(&[twice.clone(), twice.clone()])
            .await,
        "insert_prospects with one id twice",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "a batch that repeats an id must be Conflict"
    );
    let kind = error_kind(store.get_prospect(org, twice.id).await, "get_prospect");
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "a batch that repeats an id must write nothing"
    );
}

/// Checks that `update_prospect` writes the change and returns the next version.
pub async fn prospect_update_bumps_version(store: &dyn Store) {
    let org = fakes::org();
    let mut prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );

    prospect.company = Some("Globex".into());
    prospect
        .custom_fields
        .insert("seats".into(), crate::prospect::CustomValue::Number(40.0));
    prospect.status = ConversationState::Qualified;
    prospect.email = Some(fakes::email(fakes::next_number()));
    prospect.updated_at = time(30);
    let version = ok(store.update_prospect(&prospect).await, "update_prospect");
    assert_eq!(
        version,
        Version(1),
        "update_prospect must return the stored version plus one"
    );

    let stored = ok(store.get_prospect(org, prospect.id).await, "get_prospect");
    assert_eq!(
        stored.version,
        Version(1),
        "update_prospect must store the new version"
    );
    assert_eq!(
        stored.company, prospect.company,
        "update_prospect must write changed fields"
    );
    assert_eq!(
        stored.custom_fields, prospect.custom_fields,
        "update_prospect must write custom fields"
    );
    assert_eq!(
        stored.status,
        ConversationState::Qualified,
        "update_prospect must write the status"
    );
    assert_eq!(
        stored.email, prospect.email,
        "update_prospect must write a changed contact point"
    );

    let found = ok(
        store
            .find_prospect(org, &ContactPoint::Email(fakes::email(0)))
            .await,
        "find_prospect",
    );
    assert!(found.is_none(), "an unused address must find nothing");
    let new_email = prospect.email.clone().map(ContactPoint::Email);
    if let Some(contact) = new_email {
        let found = ok(store.find_prospect(org, &contact).await, "find_prospect");
        assert_eq!(
            found.map(|p| p.id),
            Some(prospect.id),
            "find_prospect must use the updated address"
        );
    }

    let mut next = stored;
    next.job_title = Some("CEO".into());
    let version = ok(store.update_prospect(&next).await, "update_prospect");
    assert_eq!(version, Version(2), "a second update must return version 2");
}

/// Checks that an update carrying a stale version is `Conflict` and writes nothing.
pub async fn prospect_update_stale_version_conflicts(store: &dyn Store) {
    let org = fakes::org();
    let original = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&original))
            .await,
        "insert_prospects",
    );

    let mut first = original.clone();
    first.company = Some("First writer".into());
    ok(store.update_prospect(&first).await, "update_prospect");

    let mut stale = original.clone();
    stale.company = Some("Stale writer".into());
    let kind = error_kind(
        store.update_prospect(&stale).await,
        "update_prospect with a stale version",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "update_prospect with a stale version must be Conflict"
    );

    let stored = ok(store.get_prospect(org, original.id).await, "get_prospect");
    assert_eq!(
        stored.company.as_deref(),
        Some("First writer"),
        "a conflicting update must write nothing"
    );
    assert_eq!(
        stored.version,
        Version(1),
        "a conflicting update must not change the version"
    );

    let mut ahead = stored.clone();
    ahead.version = Version(7);
    let kind = error_kind(
        store.update_prospect(&ahead).await,
        "update_prospect with a future version",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "update_prospect with a version ahead of the store must be Conflict"
    );
}

/// Checks that of concurrent updates from the same version exactly one wins.
pub async fn prospect_concurrent_updates_one_winner(store: &dyn Store) {
    let org = fakes::org();
    let original = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&original))
            .await,
        "insert_prospects",
    );

    let writers: Vec<Prospect> = (0..8)
        .map(|index| {
            let mut copy = original.clone();
            copy.company = Some(format!("writer {index}"));
            copy
        })
        .collect();
    let results = join_all(
        writers
            .iter()
            .map(|writer| store.update_prospect(writer))
            .collect(),
    )
    .await;

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| result.is_ok())
        .map(|(index, _)| index)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 8 concurrent updates must succeed, got {}",
        winners.len()
    );
    for result in &results {
        match result {
            Ok(version) => assert_eq!(
                *version,
                Version(1),
                "the winning update must return version 1"
            ),
            Err(error) => assert_eq!(
                error.kind(),
                ErrorKind::Conflict,
                "a losing update must be Conflict: {error}"
            ),
        }
    }

    let stored = ok(store.get_prospect(org, original.id).await, "get_prospect");
    let expected = winners.first().map(|index| format!("writer {index}"));
    assert_eq!(
        stored.company, expected,
        "the stored prospect must be the winner's"
    );
    assert_eq!(
        stored.version,
        Version(1),
        "concurrent updates must leave version 1"
    );
}

/// Checks that `find_prospect` finds by phone, e-mail and Messenger id, within the org only.
pub async fn find_prospect_by_contact_point(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    let other = fakes::prospect(org);
    ok(
        store
            .insert_prospects(&[prospect.clone(), other.clone()])
            .await,
        "insert_prospects",
    );

    for contact in prospect.contact_points() {
        let found = ok(store.find_prospect(org, &contact).await, "find_prospect");
        assert_eq!(
            found.as_ref().map(|p| p.id),
            Some(prospect.id),
            "find_prospect by {} must return the prospect with that contact point",
            contact.channel()
        );
        if let Some(found) = found {
            assert!(
                found == prospect,
                "find_prospect must return the whole prospect"
            );
        }

        let elsewhere = ok(
            store.find_prospect(fakes::org(), &contact).await,
            "find_prospect in another org",
        );
        assert!(
            elsewhere.is_none(),
            "find_prospect by {} must not see another org",
            contact.channel()
        );
    }
    assert_eq!(
        prospect.contact_points().len(),
        3,
        "the fake prospect must have three contact points"
    );

    let unknown = [
        ContactPoint::Phone(fakes::phone(fakes::next_number())),
        ContactPoint::Email(fakes::email(fakes::next_number())),
        ContactPoint::Messenger(fakes::messenger(fakes::next_number())),
    ];
    for contact in unknown {
        let found = ok(store.find_prospect(org, &contact).await, "find_prospect");
        assert!(
            found.is_none(),
            "find_prospect by an unused {} must return None",
            contact.channel()
        );
    }
}

/// Checks that `find_prospects_by_contacts` returns what `find_prospect`
/// returns for each contact point, including the oldest of two prospects
/// sharing one, and nothing for unknown ones or another org's.
pub async fn find_prospects_by_contacts_matches_single_lookups(store: &dyn Store) {
    let org = fakes::org();
    let first = fakes::prospect(org);
    let other = fakes::prospect(org);
    let mut sharing = fakes::prospect(org);
    sharing.phone = first.phone.clone();
    ok(
        store
            .insert_prospects(&[first.clone(), other.clone(), sharing.clone()])
            .await,
        "insert_prospects",
    );
    let foreign = fakes::prospect(fakes::org());
    ok(
        store.insert_prospects(std::slice::from_ref(&foreign)).await,
        "insert_prospects in another org",
    );

    let unknown = ContactPoint::Email(fakes::email(fakes::next_number()));
    let mut contacts: Vec<ContactPoint> = first.contact_points();
    contacts.extend(other.contact_points());
    contacts.extend(foreign.contact_points());
    contacts.push(unknown.clone());
    contacts.push(first.contact_points()[0].clone());

    let found = ok(
        store.find_prospects_by_contacts(org, &contacts).await,
        "find_prospects_by_contacts",
    );
    for contact in &contacts {
        let single = ok(store.find_prospect(org, contact).await, "find_prospect");
        assert_eq!(
            found.get(contact).map(|prospect| prospect.id),
            single.as_ref().map(|prospect| prospect.id),
            "find_prospects_by_contacts must agree with find_prospect for a {}",
            contact.channel()
        );
    }
    let shared = ContactPoint::Phone(first.phone.clone().expect("the fake prospect has a phone"));
    let expected = if first.id < sharing.id {
        first.id
    } else {
        sharing.id
    };
    assert_eq!(
        found.get(&shared).map(|prospect| prospect.id),
        Some(expected),
        "a shared phone must give the oldest prospect"
    );
    assert!(
        !found.contains_key(&unknown),
        "an unknown contact point must be absent"
    );
    for contact in foreign.contact_points() {
        assert!(
            !found.contains_key(&contact),
            "another org's {} must be absent",
            contact.channel()
        );
    }
    if let Some(prospect) = found.get(&other.contact_points()[1]) {
        assert!(
            *prospect == other,
            "find_prospects_by_contacts must return the whole prospect"
        );
    }
    let none = ok(
        store.find_prospects_by_contacts(org, &[]).await,
        "find_prospects_by_contacts of nothing",
    );
    assert!(none.is_empty(), "no contact point must find nothing");
}

/// Checks that `suppressed_among` returns exactly the suppressed contact
/// points of the org, as `is_suppressed` returns them one by one.
pub async fn suppressed_among_matches_single_checks(store: &dyn Store) {
    let org = fakes::org();
    let phone = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    let email = ContactPoint::Email(fakes::email(fakes::next_number()));
    let psid = ContactPoint::Messenger(fakes::messenger(fakes::next_number()));
    let foreign = ContactPoint::Email(fakes::email(fakes::next_number()));
    let entries = vec![
        fakes::suppression(org, phone.clone(), time(1)),
        fakes::suppression(org, email.clone(), time(1)),
        fakes::suppression(fakes::org(), foreign.clone(), time(1)),
    ];
    ok(store.suppress(&entries).await, "suppress");

    let contacts = [
        phone.clone(),
        email.clone(),
        psid.clone(),
        foreign.clone(),
        phone.clone(),
    ];
    let suppressed = ok(
        store.suppressed_among(org, &contacts).await,
        "suppressed_among",
    );
    for contact in &contacts {
        let single = ok(store.is_suppressed(org, contact).await, "is_suppressed");
        assert_eq!(
            suppressed.contains(contact),
            single,
            "suppressed_among must agree with is_suppressed for a {}",
            contact.channel()
        );
    }
    assert_eq!(
        suppressed.len(),
        2,
        "the phone and the address are suppressed, once each"
    );
    let none = ok(
        store.suppressed_among(org, &[]).await,
        "suppressed_among of nothing",
    );
    assert!(none.is_empty(), "no contact point must find nothing");
}

/// Checks `list_prospects` order, `after` and `limit`.
pub async fn list_prospects_order_after_limit(store: &dyn Store) {
    let org = fakes::org();
    let prospects: Vec<Prospect> = (0..5).map(|_| fakes::minimal_prospect(org)).collect();
    let mut ids: Vec<ProspectId> = prospects.iter().map(|p| p.id).collect();
    ids.sort();
    let reversed: Vec<Prospect> = prospects.into_iter().rev().collect();
    ok(store.insert_prospects(&reversed).await, "insert_prospects");
    ok(
        store
            .insert_prospects(&[fakes::minimal_prospect(fakes::org())])
            .await,
        "insert_prospects in another org",
    );

    let list = |options: ListOptions| async move {
        let listed = ok(store.list_prospects(org, options).await, "list_prospects");
        listed.into_iter().map(|p| p.id).collect::<Vec<_>>()
    };

    assert_eq!(
        list(ListOptions::default()).await,
        ids,
        "list_prospects must return every prospect of the org in id order"
    );
    assert_eq!(
        list(ListOptions {
            after: ids.get(1).copied(),
            limit: 0
        })
        .await,
        ids[2..].to_vec(),
        "list_prospects must start strictly after `after`"
    );
    assert_eq!(
        list(ListOptions {
            after: None,
            limit: 2
        })
        .await,
        ids[..2].to_vec(),
        "list_prospects must return at most `limit` prospects"
    );
    assert_eq!(
        list(ListOptions {
            after: ids.get(1).copied(),
            limit: 2
        })
        .await,
        ids[2..4].to_vec(),
        "list_prospects must apply `after` and `limit` together"
    );
    assert!(
        list(ListOptions {
            after: ids.last().copied(),
            limit: 0
        })
        .await
        .is_empty(),
        "list_prospects after the last id must be empty"
    );
}

/// Checks that a campaign reads back equal and `put_campaign` replaces it.
pub async fn campaign_put_get(store: &dyn Store) {
    let org = fakes::org();
    let mut campaign = fakes::campaign(org);
    ok(store.put_campaign(&campaign).await, "put_campaign");
    let read = ok(store.get_campaign(org, campaign.id).await, "get_campaign");
    assert_eq!(
        read, campaign,
        "get_campaign must return the campaign as put"
    );

    campaign.name = "Renamed".into();
    campaign.status = crate::campaign::CampaignStatus::Paused;
    campaign.steps.truncate(1);
    ok(store.put_campaign(&campaign).await, "put_campaign");
    let read = ok(store.get_campaign(org, campaign.id).await, "get_campaign");
    assert_eq!(
        read, campaign,
        "put_campaign must replace an existing campaign"
    );

    let kind = error_kind(
        store.get_campaign(org, CampaignId::new()).await,
        "get_campaign of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_campaign of a missing id must be NotFound"
    );
}

/// Checks that `insert_conversation` creates one conversation per (org,
/// prospect, campaign), with its jobs, and reports whether it created it.
pub async fn conversation_insert_idempotent(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );
    let campaign = Some(CampaignId::new());

    let conversation = fakes::conversation(&prospect, campaign);
    let first_job = fakes::job(&conversation, 0, time(10));
    let created = ok(
        store
            .insert_conversation(&conversation, std::slice::from_ref(&first_job))
            .await,
        "insert_conversation",
    );
    assert!(created, "the first insert_conversation must return true");
    let read = ok(
        store.get_conversation(org, conversation.id).await,
        "get_conversation",
    );
    assert_eq!(
        read, conversation,
        "get_conversation must return every field as inserted"
    );
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![first_job.clone()],
        "insert_conversation must insert its jobs"
    );

    let duplicate = fakes::conversation(&prospect, campaign);
    let second_job = fakes::job(&duplicate, 0, time(20));
    let created = ok(
        store
            .insert_conversation(&duplicate, std::slice::from_ref(&second_job))
            .await,
        "insert_conversation",
    );
    assert!(
        !created,
        "a second conversation in the same campaign must return false"
    );
    let kind = error_kind(
        store.get_conversation(org, duplicate.id).await,
        "get_conversation",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "a duplicate conversation must not be written"
    );
    let jobs = ok(store.pending_jobs(org, duplicate.id).await, "pending_jobs");
    assert!(
        jobs.is_empty(),
        "the jobs of a duplicate conversation must not be written"
    );
    let created = ok(
        store.insert_conversation(&conversation, &[]).await,
        "insert_conversation",
    );
    assert!(
        !created,
        "inserting the same conversation again must return false"
    );

    let other_campaign = fakes::conversation(&prospect, Some(CampaignId::new()));
    let created = ok(
        store.insert_conversation(&other_campaign, &[]).await,
        "insert_conversation",
    );
    assert!(
        created,
        "a conversation in another campaign must be created"
    );

    let without_campaign = fakes::conversation(&prospect, None);
    let created = ok(
        store.insert_conversation(&without_campaign, &[]).await,
        "insert_conversation",
    );
    assert!(
        created,
        "the first conversation without a campaign must be created"
    );
    let again_without = fakes::conversation(&prospect, None);
    let created = ok(
        store.insert_conversation(&again_without, &[]).await,
        "insert_conversation",
    );
    assert!(
        !created,
        "a second conversation without a campaign must return false"
    );

    let conversations = ok(
        store.conversations_of(org, prospect.id).await,
        "conversations_of",
    );
    assert_eq!(
        conversations.len(),
        3,
        "the prospect must have three conversations"
    );
}

/// Checks that `insert_conversation` for a missing prospect is `NotFound`.
pub async fn conversation_insert_requires_prospect(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    let conversation = fakes::conversation(&prospect, Some(CampaignId::new()));

    let kind = error_kind(
        store.insert_conversation(&conversation, &[]).await,
        "insert_conversation",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "insert_conversation for a missing prospect must be NotFound"
    );
    let kind = error_kind(
        store.get_conversation(org, conversation.id).await,
        "get_conversation",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "a rejected conversation must not be written"
    );
}

/// Checks that `conversations_of` lists the most recently updated first.
pub async fn conversations_of_order(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );

    let mut older = fakes::conversation(&prospect, Some(CampaignId::new()));
    older.updated_at = time(10);
    let mut newer = fakes::conversation(&prospect, Some(CampaignId::new()));
    newer.updated_at = time(20);
    let mut middle = fakes::conversation(&prospect, Some(CampaignId::new()));
    middle.updated_at = time(15);
    for conversation in [&older, &newer, &middle] {
        ok(
            store.insert_conversation(conversation, &[]).await,
            "insert_conversation",
        );
    }

    let listed: Vec<ConversationId> = ok(
        store.conversations_of(org, prospect.id).await,
        "conversations_of",
    )
    .into_iter()
    .map(|c| c.id)
    .collect();
    assert_eq!(
        listed,
        vec![newer.id, middle.id, older.id],
        "conversations_of must list the most recently updated first"
    );

    let other = ok(
        store.conversations_of(org, ProspectId::new()).await,
        "conversations_of",
    );
    assert!(
        other.is_empty(),
        "conversations_of a prospect without conversations must be empty"
    );
}

/// Checks that every read method hides other orgs' records, and that
/// writes naming another org find nothing.
pub async fn tenancy_hides_other_orgs(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let campaign = fakes::campaign(org);
    ok(store.put_campaign(&campaign).await, "put_campaign");
    let member = fakes::member(org);
    ok(store.put_member(&member).await, "put_member");
    let inbound = fakes::inbound(&conversation, "SM-tenancy", time(3));
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let job = fakes::job(&conversation, 1, time(10));
    let mut turn = TurnCommit::new(conversation.clone());
    let message = fakes::outbound(&conversation, time(4));
    let entry = fakes::outbox_entry(
        &message,
        ContactPoint::Email(fakes::email(fakes::next_number())),
    );
    let phone = prospect.phone.clone().map(ContactPoint::Phone);
    turn.messages.push(message);
    turn.outbox.push(entry.clone());
    turn.jobs.push(job.clone());
    turn.audit
        .push(fakes::audit(&conversation, "transition", time(4)));
    if let Some(phone) = &phone {
        turn.suppress
            .push(fakes::suppression(org, phone.clone(), time(4)));
    }
    ok(store.commit_turn(&turn).await, "commit_turn");

    let stranger = fakes::org();

    let kind = error_kind(
        store.get_prospect(stranger, prospect.id).await,
        "get_prospect from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_prospect must not see another org's prospect"
    );
    let kind = error_kind(
        store.get_campaign(stranger, campaign.id).await,
        "get_campaign from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_campaign must not see another org's campaign"
    );
    let kind = error_kind(
        store.get_conversation(stranger, conversation.id).await,
        "get_conversation from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_conversation must not see another org's conversation"
    );
    let kind = error_kind(
        store.get_member(stranger, member.id).await,
        "get_member from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_member must not see another org's member"
    );

    for contact in prospect.contact_points() {
        let found = ok(
            store.find_prospect(stranger, &contact).await,
            "find_prospect",
        );
        assert!(
            found.is_none(),
            "find_prospect must not see another org's {}",
            contact.channel()
        );
    }
    let listed = ok(
        store.list_prospects(stranger, ListOptions::default()).await,
        "list_prospects",
    );
    assert!(
        listed.is_empty(),
        "list_prospects must not list another org's prospects"
    );
    let listed = ok(
        store.conversations_of(stranger, prospect.id).await,
        "conversations_of",
    );
    assert!(
        listed.is_empty(),
        "conversations_of must not list another org's conversations"
    );
    let listed = ok(
        store.list_messages(stranger, conversation.id).await,
        "list_messages",
    );
    assert!(
        listed.is_empty(),
        "list_messages must not list another org's messages"
    );
    let listed = ok(
        store.pending_inbound(stranger, conversation.id).await,
        "pending_inbound",
    );
    assert!(
        listed.is_empty(),
        "pending_inbound must not list another org's messages"
    );
    let listed = ok(
        store.pending_jobs(stranger, conversation.id).await,
        "pending_jobs",
    );
    assert!(
        listed.is_empty(),
        "pending_jobs must not list another org's jobs"
    );
    let listed = ok(store.audit_of(stranger, prospect.id).await, "audit_of");
    assert!(
        listed.is_empty(),
        "audit_of must not list another org's events"
    );
    let listed = ok(store.list_members(stranger).await, "list_members");
    assert!(
        listed.is_empty(),
        "list_members must not list another org's members"
    );
    if let Some(phone) = &phone {
        let suppressed = ok(store.is_suppressed(stranger, phone).await, "is_suppressed");
        assert!(
            !suppressed,
            "is_suppressed must not see another org's suppression list"
        );
    }

    let mut foreign = prospect.clone();
    foreign.org_id = stranger;
    foreign.company = Some("Intruder".into());
    let kind = error_kind(
        store.update_prospect(&foreign).await,
        "update_prospect from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "update_prospect must not reach another org's prospect"
    );
    let kind = error_kind(
        store.finish_job(stranger, job.id, JobOutcome::Done).await,
        "finish_job from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "finish_job must not reach another org's job"
    );
    let outcome = OutboxOutcome::Failed("test".into());
    let kind = error_kind(
        store.finish_outbox(stranger, entry.id, outcome).await,
        "finish_outbox from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "finish_outbox must not reach another org's entry"
    );
    let mut foreign_conversation = reload(store, &conversation).await;
    foreign_conversation.org_id = stranger;
    let kind = error_kind(
        store
            .commit_turn(&TurnCommit::new(foreign_conversation))
            .await,
        "commit_turn from another org",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "commit_turn must not reach another org's conversation"
    );

    let stored = ok(store.get_prospect(org, prospect.id).await, "get_prospect");
    assert_eq!(
        stored.company, prospect.company,
        "a write from another org must not change the prospect"
    );
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs.len(),
        1,
        "a write from another org must not finish the job"
    );
    let status = message_status(store, &conversation, entry.message_id).await;
    assert_eq!(
        status,
        DeliveryStatus::Pending,
        "a write from another org must not finish the outbox entry"
    );
    let stored = reload(store, &conversation).await;
    assert_eq!(
        stored.version,
        Version(1),
        "a commit from another org must not change the conversation"
    );
}

/// Checks `insert_inbound` de-duplication on (org, provider, provider message id).
pub async fn inbound_insert_dedupes(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;

    let first = fakes::inbound(&conversation, "SM-1", time(3));
    let outcome = ok(store.insert_inbound(&first).await, "insert_inbound");
    assert_eq!(
        outcome,
        InsertOutcome::Inserted,
        "a new inbound message must be Inserted"
    );
    let outcome = ok(store.insert_inbound(&first).await, "insert_inbound");
    assert_eq!(
        outcome,
        InsertOutcome::Duplicate,
        "the same message again must be Duplicate"
    );

    let replay = fakes::inbound(&conversation, "SM-1", time(4));
    let outcome = ok(store.insert_inbound(&replay).await, "insert_inbound");
    assert_eq!(
        outcome,
        InsertOutcome::Duplicate,
        "a new id with the same provider message id must be Duplicate"
    );

    let mut other_provider = fakes::inbound(&conversation, "SM-1", time(5));
    other_provider.provider = Some("vonage".into());
    let outcome = ok(
        store.insert_inbound(&other_provider).await,
        "insert_inbound",
    );
    assert_eq!(
        outcome,
        InsertOutcome::Inserted,
        "the same provider message id from another provider must be Inserted"
    );

    let other_org = fakes::org();
    let (_, other_conversation) = seed(store, other_org).await;
    let same_id_elsewhere = fakes::inbound(&other_conversation, "SM-1", time(3));
    let outcome = ok(
        store.insert_inbound(&same_id_elsewhere).await,
        "insert_inbound",
    );
    assert_eq!(
        outcome,
        InsertOutcome::Inserted,
        "the same provider message id in another org must be Inserted"
    );

    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![first.id, other_provider.id],
        "duplicates must not be written"
    );
    assert!(
        messages.first() == Some(&first),
        "an inbound message must read back equal"
    );

    let outbound = fakes::outbound(&conversation, time(6));
    let kind = error_kind(
        store.insert_inbound(&outbound).await,
        "insert_inbound of an outbound message",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "insert_inbound of an outbound message must be InvalidInput"
    );

    let mut orphan = fakes::inbound(&conversation, "SM-orphan", time(7));
    orphan.conversation_id = ConversationId::new();
    let kind = error_kind(
        store.insert_inbound(&orphan).await,
        "insert_inbound for a missing conversation",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "insert_inbound for a missing conversation must be NotFound"
    );
}

/// Checks that 10 concurrent inserts of one provider message store it once.
pub async fn inbound_concurrent_duplicates_insert_once(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;

    let copies: Vec<Message> = (0..10)
        .map(|_| fakes::inbound(&conversation, "SM-race", time(3)))
        .collect();
    let outcomes = join_all(
        copies
            .iter()
            .map(|message| store.insert_inbound(message))
            .collect(),
    )
    .await;

    let mut inserted = 0;
    for outcome in outcomes {
        match ok(outcome, "insert_inbound") {
            InsertOutcome::Inserted => inserted += 1,
            InsertOutcome::Duplicate => {}
        }
    }
    assert_eq!(
        inserted, 1,
        "exactly one of 10 concurrent identical inserts must be Inserted"
    );
    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    assert_eq!(
        messages.len(),
        1,
        "10 concurrent identical inserts must store one message"
    );
}

/// Checks that `pending_inbound` lists unprocessed inbound messages, oldest first.
pub async fn pending_inbound_order(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;

    let middle = fakes::inbound(&conversation, "SM-b", time(20));
    let oldest = fakes::inbound(&conversation, "SM-a", time(10));
    let newest = fakes::inbound(&conversation, "SM-c", time(30));
    for message in [&middle, &oldest, &newest] {
        ok(store.insert_inbound(message).await, "insert_inbound");
    }
    let (outbound, _) = commit_outbound(store, &conversation, time(15)).await;

    let pending: Vec<MessageId> = ok(
        store.pending_inbound(org, conversation.id).await,
        "pending_inbound",
    )
    .into_iter()
    .map(|m| m.id)
    .collect();
    assert_eq!(
        pending,
        vec![oldest.id, middle.id, newest.id],
        "pending_inbound must list inbound messages oldest first"
    );

    let all: Vec<MessageId> = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    )
    .into_iter()
    .map(|m| m.id)
    .collect();
    assert_eq!(
        all,
        vec![oldest.id, outbound.id, middle.id, newest.id],
        "list_messages must list every message oldest first"
    );

    let mut turn = TurnCommit::new(reload(store, &conversation).await);
    turn.processed_inbound = vec![oldest.id];
    ok(store.commit_turn(&turn).await, "commit_turn");
    let pending: Vec<MessageId> = ok(
        store.pending_inbound(org, conversation.id).await,
        "pending_inbound",
    )
    .into_iter()
    .map(|m| m.id)
    .collect();
    assert_eq!(
        pending,
        vec![middle.id, newest.id],
        "pending_inbound must skip processed messages"
    );
}

/// Checks that `commit_turn` writes every part of a turn.
pub async fn commit_turn_writes_everything(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let inbound = fakes::inbound(&conversation, "SM-turn", time(3));
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let scheduled = fakes::job(&conversation, 1, time(4));
    let mut seed_turn = TurnCommit::new(conversation.clone());
    seed_turn.jobs.push(scheduled.clone());
    ok(store.commit_turn(&seed_turn).await, "commit_turn");
    let claimed = ok(
        store.claim_jobs(time(5), 10, LEASE, "worker-a").await,
        "claim_jobs",
    );
    assert_eq!(claimed.len(), 1, "the scheduled job must be claimable");

    let mut after = reload(store, &conversation).await;
    after.state = ConversationState::Qualifying;
    after.facts = fakes::facts(inbound.id);
    after.attempts_sent = 2;
    after.updated_at = time(6);
    after.last_inbound_at = Some(time(3));
    let mut changed_prospect = prospect.clone();
    changed_prospect.status = ConversationState::Qualifying;
    changed_prospect.updated_at = time(6);
    let reply = fakes::outbound(&after, time(6));
    let entry = fakes::outbox_entry(
        &reply,
        ContactPoint::Email(fakes::email(fakes::next_number())),
    );
    let follow_up = fakes::job(&after, 2, time(60));
    let opted_out = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    let first_event = fakes::audit(&after, "reply_analysed", time(6));
    let second_event = fakes::audit(&after, "transition", time(6));

    let mut turn = TurnCommit::new(after.clone());
    turn.prospect = Some(changed_prospect.clone());
    turn.messages.push(reply.clone());
    turn.processed_inbound.push(inbound.id);
    turn.outbox.push(entry.clone());
    turn.jobs.push(follow_up.clone());
    turn.completed_job = Some(scheduled.id);
    turn.suppress
        .push(fakes::suppression(org, opted_out.clone(), time(6)));
    turn.audit = vec![first_event.clone(), second_event.clone()];
    let version = ok(store.commit_turn(&turn).await, "commit_turn");
    assert_eq!(
        version,
        Version(2),
        "commit_turn must return the conversation version plus one"
    );

    let stored = reload(store, &conversation).await;
    let mut expected = after.clone();
    expected.version = Version(2);
    assert_eq!(
        stored, expected,
        "commit_turn must write the conversation with its new version"
    );

    let stored_prospect = ok(store.get_prospect(org, prospect.id).await, "get_prospect");
    assert_eq!(
        stored_prospect.version,
        Version(1),
        "commit_turn must write the prospect with its version plus one"
    );
    assert_eq!(
        stored_prospect.status,
        ConversationState::Qualifying,
        "commit_turn must write the prospect's changes"
    );

    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    assert_eq!(
        messages.len(),
        2,
        "the conversation must hold the inbound message and the reply"
    );
    let stored_reply = messages.iter().find(|m| m.id == reply.id);
    assert!(
        stored_reply == Some(&reply),
        "commit_turn must write the outbound message as given"
    );
    let stored_inbound = messages.iter().find(|m| m.id == inbound.id);
    assert_eq!(
        stored_inbound.map(|m| m.processed),
        Some(true),
        "commit_turn must mark processed inbound messages"
    );
    let pending = ok(
        store.pending_inbound(org, conversation.id).await,
        "pending_inbound",
    );
    assert!(
        pending.is_empty(),
        "no inbound message must be pending after the turn"
    );

    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![follow_up.clone()],
        "commit_turn must complete `completed_job` and schedule the new job"
    );
    let claimable = claimable_jobs(store, org).await;
    assert_eq!(
        claimable,
        vec![follow_up.id],
        "a completed job must never be claimed again"
    );

    let outbox = ok(
        store.claim_outbox(time(7), 10, LEASE, "worker-a").await,
        "claim_outbox",
    );
    assert_eq!(outbox.len(), 1, "commit_turn must write the outbox entry");
    if let Some(claimed) = outbox.first() {
        let mut expected_entry = entry.clone();
        expected_entry.attempts = 1;
        expected_entry.first_attempt_at = Some(time(7));
        assert!(
            *claimed == expected_entry,
            "the outbox entry must read back equal, with one attempt and the claim's time"
        );
        assert_eq!(
            claimed.to, entry.to,
            "the outbox recipient must read back equal"
        );
        assert_eq!(
            claimed.text, entry.text,
            "the outbox text must read back equal"
        );
    }

    let suppressed = ok(store.is_suppressed(org, &opted_out).await, "is_suppressed");
    assert!(suppressed, "commit_turn must write suppressions");

    let audit = ok(store.audit_of(org, prospect.id).await, "audit_of");
    assert_eq!(
        audit,
        vec![first_event, second_event],
        "commit_turn must write audit events in order"
    );

    let mut lift = TurnCommit::new(reload(store, &conversation).await);
    lift.unsuppress.push(opted_out.clone());
    let version = ok(store.commit_turn(&lift).await, "commit_turn");
    assert_eq!(version, Version(3), "a second commit must return version 3");
    let suppressed = ok(store.is_suppressed(org, &opted_out).await, "is_suppressed");
    assert!(
        !suppressed,
        "commit_turn must lift `unsuppress` contact points"
    );
}

/// Checks that a turn with a stale conversation version is `Conflict` and writes nothing.
pub async fn commit_turn_conversation_conflict_writes_nothing(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let inbound = fakes::inbound(&conversation, "SM-stale", time(3));
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let existing_job = fakes::job(&conversation, 1, time(10));
    let mut first = TurnCommit::new(conversation.clone());
    first.jobs.push(existing_job.clone());
    ok(store.commit_turn(&first).await, "commit_turn");

    assert_turn_conflict_writes_nothing(
        store,
        &prospect,
        &conversation,
        &inbound,
        &existing_job,
        false,
    )
    .await;
}

/// Checks that a turn with `create_conversation` inserts the conversation
/// with the turn's records, and that a second conversation of the same
/// prospect and campaign is `Conflict` and writes nothing.
pub async fn commit_turn_creates_conversation(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );
    let conversation = fakes::conversation(&prospect, None);
    let mut turn = TurnCommit::new(conversation.clone());
    turn.create_conversation = true;
    turn.messages
        .push(fakes::inbound(&conversation, "SM-first", time(3)));
    turn.messages.push(fakes::outbound(&conversation, time(4)));
    let version = ok(store.commit_turn(&turn).await, "commit_turn");
    assert_eq!(
        version,
        conversation.version.next(),
        "a created conversation must get the turn's new version"
    );
    let stored = ok(
        store.get_conversation(org, conversation.id).await,
        "get_conversation",
    );
    assert_eq!(
        stored.version, version,
        "the stored version must be the new one"
    );
    let listed = ok(
        store.conversations_of(org, prospect.id).await,
        "conversations_of",
    );
    assert_eq!(
        listed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![conversation.id],
        "the created conversation must be listed for its prospect"
    );
    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    assert_eq!(messages.len(), 2, "the turn's messages must be written");

    // Another conversation of the same prospect without a campaign.
    let rival = fakes::conversation(&prospect, None);
    let mut second = TurnCommit::new(rival.clone());
    second.create_conversation = true;
    second
        .messages
        .push(fakes::inbound(&rival, "SM-rival", time(5)));
    let error = store
        .commit_turn(&second)
        .await
        .err()
        .map(|error| error.kind());
    assert_eq!(
        error,
        Some(ErrorKind::Conflict),
        "a second conversation for the same prospect and campaign must conflict"
    );
    assert!(
        store.get_conversation(org, rival.id).await.is_err(),
        "a conflicting turn must not create its conversation"
    );
    let listed = ok(
        store.conversations_of(org, prospect.id).await,
        "conversations_of",
    );
    assert_eq!(listed.len(), 1, "a conflicting turn must write nothing");

    // The same id again.
    let mut again = TurnCommit::new(conversation.clone());
    again.create_conversation = true;
    let error = store
        .commit_turn(&again)
        .await
        .err()
        .map(|error| error.kind());
    assert_eq!(
        error,
        Some(ErrorKind::Conflict),
        "creating an existing conversation must conflict"
    );
}

/// Checks that a turn with a stale prospect version is `Conflict` and writes nothing.
pub async fn commit_turn_prospect_conflict_writes_nothing(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let inbound = fakes::inbound(&conversation, "SM-stale", time(3));
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let existing_job = fakes::job(&conversation, 1, time(10));
    let mut first = TurnCommit::new(conversation.clone());
    first.jobs.push(existing_job.clone());
    ok(store.commit_turn(&first).await, "commit_turn");
    let mut moved = prospect.clone();
    moved.company = Some("Moved on".into());
    ok(store.update_prospect(&moved).await, "update_prospect");

    assert_turn_conflict_writes_nothing(
        store,
        &prospect,
        &conversation,
        &inbound,
        &existing_job,
        true,
    )
    .await;
}

/// Commits a full turn that must conflict, either on the conversation
/// version (still 0 while the store has 1) or on the prospect version, and
/// checks that no part of it was written.
async fn assert_turn_conflict_writes_nothing(
    store: &dyn Store,
    prospect: &Prospect,
    conversation: &Conversation,
    inbound: &Message,
    existing_job: &Job,
    stale_prospect: bool,
) {
    let org = conversation.org_id;
    let before_conversation = reload(store, conversation).await;
    let before_prospect = ok(store.get_prospect(org, prospect.id).await, "get_prospect");

    let mut turn_conversation = if stale_prospect {
        before_conversation.clone()
    } else {
        conversation.clone()
    };
    turn_conversation.state = ConversationState::OptedOut;
    let mut turn_prospect = prospect.clone();
    turn_prospect.objected = true;
    let reply = fakes::outbound(conversation, time(6));
    let entry = fakes::outbox_entry(
        &reply,
        ContactPoint::Email(fakes::email(fakes::next_number())),
    );
    let contact = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    let mut turn = TurnCommit::new(turn_conversation);
    turn.prospect = Some(turn_prospect);
    turn.messages.push(reply.clone());
    turn.processed_inbound.push(inbound.id);
    turn.cancel = CancelScope::Prospect;
    turn.outbox.push(entry);
    turn.jobs.push(fakes::job(conversation, 5, time(20)));
    turn.completed_job = Some(existing_job.id);
    turn.suppress
        .push(fakes::suppression(org, contact.clone(), time(6)));
    turn.audit
        .push(fakes::audit(conversation, "transition", time(6)));

    let kind = error_kind(
        store.commit_turn(&turn).await,
        "commit_turn with a stale version",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "commit_turn with a stale version must be Conflict"
    );

    let after_conversation = reload(store, conversation).await;
    assert_eq!(
        after_conversation, before_conversation,
        "a conflicting turn must not change the conversation"
    );
    let after_prospect = ok(store.get_prospect(org, prospect.id).await, "get_prospect");
    assert!(
        after_prospect == before_prospect,
        "a conflicting turn must not change the prospect"
    );
    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    assert_eq!(
        messages.len(),
        1,
        "a conflicting turn must write no message"
    );
    let pending = ok(
        store.pending_inbound(org, conversation.id).await,
        "pending_inbound",
    );
    assert_eq!(
        pending.len(),
        1,
        "a conflicting turn must not mark inbound messages processed"
    );
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![existing_job.clone()],
        "a conflicting turn must not schedule, cancel or complete jobs"
    );
    let outbox = claimable_outbox(store, org).await;
    assert!(
        outbox.is_empty(),
        "a conflicting turn must write no outbox entry"
    );
    let suppressed = ok(store.is_suppressed(org, &contact).await, "is_suppressed");
    assert!(!suppressed, "a conflicting turn must write no suppression");
    let audit = ok(store.audit_of(org, prospect.id).await, "audit_of");
    assert!(
        audit.is_empty(),
        "a conflicting turn must write no audit event"
    );
}

/// Checks that a turn whose records name another org is `InvalidInput` and writes nothing.
pub async fn commit_turn_rejects_other_org_records(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let stranger = fakes::org();

    let mut job = fakes::job(&conversation, 1, time(10));
    job.org_id = stranger;
    let mut with_job = TurnCommit::new(conversation.clone());
    with_job.jobs.push(job);
    let kind = error_kind(
        store.commit_turn(&with_job).await,
        "commit_turn with another org's job",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "a job of another org must be InvalidInput"
    );

    let mut message = fakes::outbound(&conversation, time(5));
    message.org_id = stranger;
    let mut with_message = TurnCommit::new(conversation.clone());
    with_message.messages.push(message);
    let kind = error_kind(
        store.commit_turn(&with_message).await,
        "commit_turn with another org's message",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "a message of another org must be InvalidInput"
    );

    let mut foreign_prospect = prospect.clone();
    foreign_prospect.org_id = stranger;
    let mut with_prospect = TurnCommit::new(conversation.clone());
    with_prospect.prospect = Some(foreign_prospect);
    let kind = error_kind(
        store.commit_turn(&with_prospect).await,
        "commit_turn with another org's prospect",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "a prospect of another org must be InvalidInput"
    );

    let mut with_suppression = TurnCommit::new(conversation.clone());
    let contact = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    with_suppression
        .suppress
        .push(fakes::suppression(stranger, contact.clone(), time(5)));
    let kind = error_kind(
        store.commit_turn(&with_suppression).await,
        "commit_turn with another org's suppression",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "a suppression of another org must be InvalidInput"
    );
    let suppressed = ok(
        store.is_suppressed(stranger, &contact).await,
        "is_suppressed",
    );
    assert!(!suppressed, "a rejected turn must write no suppression");

    let mut event = fakes::audit(&conversation, "transition", time(5));
    event.org_id = stranger;
    let mut with_audit = TurnCommit::new(conversation.clone());
    with_audit.audit.push(event);
    let kind = error_kind(
        store.commit_turn(&with_audit).await,
        "commit_turn with another org's audit event",
    );
    assert_eq!(
        kind,
        ErrorKind::InvalidInput,
        "an audit event of another org must be InvalidInput"
    );

    let stored = reload(store, &conversation).await;
    assert_eq!(
        stored.version,
        Version(0),
        "rejected turns must not change the conversation"
    );
}

/// Sets up a prospect with two conversations, each with a pending job and
/// a pending outbox entry, and a second prospect with the same.
struct CancelFixture {
    org: OrgId,
    first: Conversation,
    second: Conversation,
    neighbour: Conversation,
    first_job: Job,
    second_job: Job,
    neighbour_job: Job,
    first_entry: OutboxEntry,
    second_entry: OutboxEntry,
    neighbour_entry: OutboxEntry,
}

/// Commits a pending job due at `time(30)` and a pending outbox entry due at
/// `time(8)` for `conversation`, and returns both.
async fn schedule_job_and_entry(
    store: &dyn Store,
    conversation: &Conversation,
) -> (Job, OutboxEntry) {
    let job = fakes::job(conversation, 1, time(30));
    let mut turn = TurnCommit::new(reload(store, conversation).await);
    turn.jobs.push(job.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");
    let (_, entry) = commit_outbound(store, conversation, time(8)).await;
    (job, entry)
}

async fn cancel_fixture(store: &dyn Store) -> CancelFixture {
    let org = fakes::org();
    let (prospect, first) = seed(store, org).await;
    let second = seed_conversation(store, &prospect).await;
    let (_, neighbour) = seed(store, org).await;

    let (first_job, first_entry) = schedule_job_and_entry(store, &first).await;
    let (second_job, second_entry) = schedule_job_and_entry(store, &second).await;
    let (neighbour_job, neighbour_entry) = schedule_job_and_entry(store, &neighbour).await;
    CancelFixture {
        org,
        first,
        second,
        neighbour,
        first_job,
        second_job,
        neighbour_job,
        first_entry,
        second_entry,
        neighbour_entry,
    }
}

/// Commits a turn on the fixture's first conversation that cancels `scope`
/// and writes a new job and outbox entry, and returns those two.
async fn commit_cancel(
    store: &dyn Store,
    fixture: &CancelFixture,
    scope: CancelScope,
) -> (Job, OutboxEntry) {
    let current = reload(store, &fixture.first).await;
    let job = fakes::job(&current, 2, time(40));
    let message = fakes::outbound(&current, time(9));
    let entry = fakes::outbox_entry(
        &message,
        ContactPoint::Email(fakes::email(fakes::next_number())),
    );
    let mut turn = TurnCommit::new(current);
    turn.cancel = scope;
    turn.jobs.push(job.clone());
    turn.messages.push(message);
    turn.outbox.push(entry.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");
    (job, entry)
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// Checks that `CancelScope::Conversation` cancels that conversation's
/// pending jobs and outbox entries, but not those of the same commit.
pub async fn commit_turn_cancels_conversation_scope(store: &dyn Store) {
    let fixture = cancel_fixture(store).await;
    let (new_job, new_entry) = commit_cancel(store, &fixture, CancelScope::Conversation).await;
    let org = fixture.org;

    let first_jobs: Vec<JobId> = ok(
        store.pending_jobs(org, fixture.first.id).await,
        "pending_jobs",
    )
    .into_iter()
    .map(|j| j.id)
    .collect();
    assert_eq!(
        first_jobs,
        vec![new_job.id],
        "the conversation's old job must be cancelled, the new one kept"
    );
    let second_jobs: Vec<JobId> = ok(
        store.pending_jobs(org, fixture.second.id).await,
        "pending_jobs",
    )
    .into_iter()
    .map(|j| j.id)
    .collect();
    assert_eq!(
        second_jobs,
        vec![fixture.second_job.id],
        "another conversation's job must stay pending"
    );

    let status = message_status(store, &fixture.first, fixture.first_entry.message_id).await;
    assert_eq!(
        status,
        DeliveryStatus::Cancelled,
        "a cancelled outbox entry must cancel its message"
    );
    let status = message_status(store, &fixture.second, fixture.second_entry.message_id).await;
    assert_eq!(
        status,
        DeliveryStatus::Pending,
        "another conversation's message must stay pending"
    );

    let jobs = sorted(claimable_jobs(store, org).await);
    let expected = sorted(vec![
        new_job.id,
        fixture.second_job.id,
        fixture.neighbour_job.id,
    ]);
    assert_eq!(
        jobs, expected,
        "only the conversation's old job must be cancelled"
    );
    assert!(
        !jobs.contains(&fixture.first_job.id),
        "a cancelled job must never be claimed"
    );
    let entries = sorted(claimable_outbox(store, org).await);
    let expected = sorted(vec![
        new_entry.id,
        fixture.second_entry.id,
        fixture.neighbour_entry.id,
    ]);
    assert_eq!(
        entries, expected,
        "only the conversation's old outbox entry must be cancelled"
    );
}

/// Checks that `CancelScope::Prospect` cancels the prospect's pending jobs
/// and outbox entries in every conversation, but not those of the same
/// commit or of other prospects.
pub async fn commit_turn_cancels_prospect_scope(store: &dyn Store) {
    let fixture = cancel_fixture(store).await;
    let (new_job, new_entry) = commit_cancel(store, &fixture, CancelScope::Prospect).await;
    let org = fixture.org;

    let first_jobs: Vec<JobId> = ok(
        store.pending_jobs(org, fixture.first.id).await,
        "pending_jobs",
    )
    .into_iter()
    .map(|j| j.id)
    .collect();
    assert_eq!(
        first_jobs,
        vec![new_job.id],
        "the turn's conversation must keep only the new job"
    );
    let second_jobs = ok(
        store.pending_jobs(org, fixture.second.id).await,
        "pending_jobs",
    );
    assert!(
        second_jobs.is_empty(),
        "the prospect's other conversation must have no pending job"
    );
    let neighbour_jobs: Vec<JobId> = ok(
        store.pending_jobs(org, fixture.neighbour.id).await,
        "pending_jobs",
    )
    .into_iter()
    .map(|j| j.id)
    .collect();
    assert_eq!(
        neighbour_jobs,
        vec![fixture.neighbour_job.id],
        "another prospect's job must stay pending"
    );

    for (conversation, entry) in [
        (&fixture.first, &fixture.first_entry),
        (&fixture.second, &fixture.second_entry),
    ] {
        let status = message_status(store, conversation, entry.message_id).await;
        assert_eq!(
            status,
            DeliveryStatus::Cancelled,
            "every pending message of the prospect must be cancelled"
        );
    }
    let status = message_status(store, &fixture.first, new_entry.message_id).await;
    assert_eq!(
        status,
        DeliveryStatus::Pending,
        "the message written by the cancelling turn must stay pending"
    );
    let status = message_status(
        store,
        &fixture.neighbour,
        fixture.neighbour_entry.message_id,
    )
    .await;
    assert_eq!(
        status,
        DeliveryStatus::Pending,
        "another prospect's message must stay pending"
    );

    let jobs = sorted(claimable_jobs(store, org).await);
    assert_eq!(
        jobs,
        sorted(vec![new_job.id, fixture.neighbour_job.id]),
        "only the new and the other prospect's jobs remain"
    );
    let entries = sorted(claimable_outbox(store, org).await);
    assert_eq!(
        entries,
        sorted(vec![new_entry.id, fixture.neighbour_entry.id]),
        "only the new and the other prospect's entries remain"
    );
}

/// Checks that a dedupe key schedules one job per org.
pub async fn job_dedupe_key_unique_per_org(store: &dyn Store) {
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await,
        "insert_prospects",
    );
    let conversation = fakes::conversation(&prospect, Some(CampaignId::new()));
    let job = fakes::job(&conversation, 1, time(10));
    ok(
        store
            .insert_conversation(
                &conversation,
                &[job.clone(), fakes::job(&conversation, 1, time(11))],
            )
            .await,
        "insert_conversation",
    );
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![job.clone()],
        "two jobs with one dedupe key in one call must schedule one"
    );

    let mut again = fakes::job(&conversation, 1, time(20));
    again.id = JobId::new();
    assert_eq!(
        again.dedupe_key, job.dedupe_key,
        "the fake job must repeat the dedupe key"
    );
    let mut turn = TurnCommit::new(conversation.clone());
    turn.jobs.push(again.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![job.clone()],
        "scheduling an existing dedupe key must keep the existing job"
    );

    ok(
        store.finish_job(org, job.id, JobOutcome::Done).await,
        "finish_job",
    );
    let mut turn = TurnCommit::new(reload(store, &conversation).await);
    turn.jobs.push(again);
    ok(store.commit_turn(&turn).await, "commit_turn");
    let jobs = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert!(
        jobs.is_empty(),
        "the dedupe key of a finished job must still block a new job"
    );

    let other_org = fakes::org();
    let other_prospect = fakes::prospect(other_org);
    ok(
        store
            .insert_prospects(std::slice::from_ref(&other_prospect))
            .await,
        "insert_prospects",
    );
    let other_conversation = fakes::conversation(&other_prospect, Some(CampaignId::new()));
    let mut other_job = fakes::job(&other_conversation, 1, time(10));
    other_job.dedupe_key = job.dedupe_key.clone();
    let created = ok(
        store
            .insert_conversation(&other_conversation, std::slice::from_ref(&other_job))
            .await,
        "insert_conversation",
    );
    assert!(created, "the other org's conversation must be created");
    let jobs = ok(
        store.pending_jobs(other_org, other_conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        jobs,
        vec![other_job],
        "a dedupe key used by another org must not block this org"
    );
}

/// Checks that `claim_jobs` takes due jobs oldest first, up to `limit`.
pub async fn claim_jobs_due_order_and_limit(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let (_, other) = seed(store, fakes::org()).await;
    let middle = fakes::job(&conversation, 1, time(20));
    let later = fakes::job(&conversation, 2, time(100));
    let oldest = fakes::job(&other, 1, time(10));
    let newest_due = fakes::job(&conversation, 3, time(30));
    for (target, job) in [
        (&conversation, &middle),
        (&conversation, &later),
        (&other, &oldest),
        (&conversation, &newest_due),
    ] {
        let mut turn = TurnCommit::new(reload(store, target).await);
        turn.jobs.push(job.clone());
        ok(store.commit_turn(&turn).await, "commit_turn");
    }

    let none = ok(
        store.claim_jobs(time(5), 10, LEASE, "worker-a").await,
        "claim_jobs",
    );
    assert!(none.is_empty(), "no job is due before its due time");
    let none = ok(
        store.claim_jobs(time(50), 0, LEASE, "worker-a").await,
        "claim_jobs",
    );
    assert!(none.is_empty(), "a claim with limit 0 must claim nothing");

    let first = ok(
        store.claim_jobs(time(30), 2, LEASE, "worker-a").await,
        "claim_jobs",
    );
    let ids: Vec<JobId> = first.iter().map(|job| job.id).collect();
    assert_eq!(
        ids,
        vec![oldest.id, middle.id],
        "claim_jobs must take the oldest due jobs first, across orgs"
    );
    for job in &first {
        assert_eq!(
            job.attempts, 1,
            "a claimed job must count its claim in `attempts`"
        );
    }
    let mut expected = oldest.clone();
    expected.attempts = 1;
    assert_eq!(
        first.first(),
        Some(&expected),
        "a claimed job must read back equal apart from attempts"
    );

    let second = ok(
        store.claim_jobs(time(30), 10, LEASE, "worker-b").await,
        "claim_jobs",
    );
    let ids: Vec<JobId> = second.iter().map(|job| job.id).collect();
    assert_eq!(
        ids,
        vec![newest_due.id],
        "a second claim must take only the remaining due job, due at or before now"
    );
}

/// Checks that a claimed job stays invisible until its lease expires, then
/// is claimed again with one more attempt.
pub async fn claim_jobs_lease_expiry(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let job = fakes::job(&conversation, 1, time(10));
    let mut turn = TurnCommit::new(conversation.clone());
    turn.jobs.push(job.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");

    let claimed = ok(
        store.claim_jobs(time(10), 10, LEASE, "worker-a").await,
        "claim_jobs",
    );
    assert_eq!(claimed.len(), 1, "the due job must be claimed");

    let lease_end = time(10) + chrono::Duration::seconds(60);
    let during = ok(
        store
            .claim_jobs(
                lease_end - chrono::Duration::seconds(1),
                10,
                LEASE,
                "worker-b",
            )
            .await,
        "claim_jobs",
    );
    assert!(
        during.is_empty(),
        "a leased job must be invisible to other claims"
    );
    let pending = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(pending.len(), 1, "a leased job is still pending");

    let after = ok(
        store.claim_jobs(lease_end, 10, LEASE, "worker-b").await,
        "claim_jobs",
    );
    let ids: Vec<JobId> = after.iter().map(|job| job.id).collect();
    assert_eq!(
        ids,
        vec![job.id],
        "a job whose lease expired must be claimable again"
    );
    assert_eq!(
        after.first().map(|job| job.attempts),
        Some(2),
        "a second claim must make attempts 2"
    );
}

/// Checks that done and cancelled jobs are never claimed.
pub async fn claim_jobs_skips_finished(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let done = fakes::job(&conversation, 1, time(10));
    let cancelled = fakes::job(&conversation, 2, time(11));
    let unclaimed = fakes::job(&conversation, 3, time(12));
    let mut turn = TurnCommit::new(conversation.clone());
    turn.jobs = vec![done.clone(), cancelled.clone(), unclaimed.clone()];
    ok(store.commit_turn(&turn).await, "commit_turn");

    let claimed = ok(
        store.claim_jobs(time(11), 10, LEASE, "worker-a").await,
        "claim_jobs",
    );
    assert_eq!(claimed.len(), 2, "the two due jobs must be claimed");
    ok(
        store.finish_job(org, done.id, JobOutcome::Done).await,
        "finish_job",
    );
    ok(
        store
            .finish_job(org, cancelled.id, JobOutcome::Cancelled)
            .await,
        "finish_job",
    );
    ok(
        store
            .finish_job(org, unclaimed.id, JobOutcome::Cancelled)
            .await,
        "finish_job",
    );

    let later = ok(
        store.claim_jobs(time(1_000), 10, LEASE, "worker-b").await,
        "claim_jobs",
    );
    assert!(
        later.is_empty(),
        "done and cancelled jobs must never be claimed, even after their lease"
    );
    let pending = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert!(
        pending.is_empty(),
        "done and cancelled jobs are not pending"
    );

    ok(
        store
            .finish_job(org, done.id, JobOutcome::RetryAt(time(20)))
            .await,
        "finish_job",
    );
    let pending = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert!(
        pending.is_empty(),
        "finishing a done job again must not make it pending"
    );

    let kind = error_kind(
        store.finish_job(org, JobId::new(), JobOutcome::Done).await,
        "finish_job of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "finish_job of a missing id must be NotFound"
    );
}

/// Checks that `JobOutcome::RetryAt` makes the job pending again at the new time.
pub async fn finish_job_retry_at_reschedules(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let job = fakes::job(&conversation, 1, time(10));
    let mut turn = TurnCommit::new(conversation.clone());
    turn.jobs.push(job.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");

    let long_lease = Duration::from_secs(3_600);
    let claimed = ok(
        store.claim_jobs(time(10), 10, long_lease, "worker-a").await,
        "claim_jobs",
    );
    assert_eq!(claimed.len(), 1, "the due job must be claimed");
    ok(
        store
            .finish_job(org, job.id, JobOutcome::RetryAt(time(50)))
            .await,
        "finish_job",
    );

    let pending = ok(
        store.pending_jobs(org, conversation.id).await,
        "pending_jobs",
    );
    assert_eq!(
        pending.first().map(|job| job.due_at),
        Some(time(50)),
        "RetryAt must set the new due time"
    );

    let early = ok(
        store.claim_jobs(time(49), 10, LEASE, "worker-b").await,
        "claim_jobs",
    );
    assert!(
        early.is_empty(),
        "a rescheduled job must not be claimed before its new time"
    );
    let due = ok(
        store.claim_jobs(time(50), 10, LEASE, "worker-b").await,
        "claim_jobs",
    );
    let ids: Vec<JobId> = due.iter().map(|job| job.id).collect();
    assert_eq!(
        ids,
        vec![job.id],
        "RetryAt must release the lease, so the job is claimable at its new time"
    );
    assert_eq!(
        due.first().map(|job| job.attempts),
        Some(2),
        "the retried claim must make attempts 2"
    );
}

/// Checks `claim_outbox` due order, limit and lease.
pub async fn claim_outbox_due_order_and_lease(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let (_, second) = commit_outbound(store, &conversation, time(20)).await;
    let (_, first) = commit_outbound(store, &conversation, time(10)).await;
    let (_, later) = commit_outbound(store, &conversation, time(100)).await;

    let none = ok(
        store.claim_outbox(time(5), 10, LEASE, "worker-a").await,
        "claim_outbox",
    );
    assert!(
        none.is_empty(),
        "no entry is due before its next attempt time"
    );

    let claimed = ok(
        store.claim_outbox(time(30), 1, LEASE, "worker-a").await,
        "claim_outbox",
    );
    let ids: Vec<OutboxId> = claimed.iter().map(|entry| entry.id).collect();
    assert_eq!(
        ids,
        vec![first.id],
        "claim_outbox must take the oldest due entry first, up to `limit`"
    );
    assert_eq!(
        claimed.first().map(|entry| entry.attempts),
        Some(1),
        "a claim must count in `attempts`"
    );

    let next = ok(
        store.claim_outbox(time(30), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    let ids: Vec<OutboxId> = next.iter().map(|entry| entry.id).collect();
    assert_eq!(
        ids,
        vec![second.id],
        "a leased entry must be invisible; the entry due later must wait"
    );

    let lease_end = time(30) + chrono::Duration::seconds(60);
    let during = ok(
        store
            .claim_outbox(
                lease_end - chrono::Duration::seconds(1),
                10,
                LEASE,
                "worker-c",
            )
            .await,
        "claim_outbox",
    );
    assert!(
        during.is_empty(),
        "leased entries must stay invisible until the lease ends"
    );
    let after = ok(
        store.claim_outbox(lease_end, 10, LEASE, "worker-c").await,
        "claim_outbox",
    );
    let ids: Vec<OutboxId> = after.iter().map(|entry| entry.id).collect();
    assert_eq!(
        ids,
        vec![first.id, second.id],
        "entries whose lease expired must be claimable again, oldest first"
    );
    assert!(
        after.iter().all(|entry| entry.attempts == 2),
        "a second claim must make attempts 2"
    );
    assert!(
        !ids.contains(&later.id),
        "an entry due later must not be claimed"
    );
}

/// Checks that `finish_outbox` sets the entry's and the message's status.
pub async fn finish_outbox_sets_message_status(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let (sent_message, sent) = commit_outbound(store, &conversation, time(10)).await;
    let (failed_message, failed) = commit_outbound(store, &conversation, time(11)).await;
    let (cancelled_message, cancelled) = commit_outbound(store, &conversation, time(12)).await;
    let claimed = ok(
        store.claim_outbox(time(12), 10, LEASE, "worker-a").await,
        "claim_outbox",
    );
    assert_eq!(claimed.len(), 3, "the three due entries must be claimed");

    let outcome = OutboxOutcome::Sent {
        provider: "twilio".into(),
        provider_message_id: "SM-out-1".into(),
    };
    ok(
        store.finish_outbox(org, sent.id, outcome).await,
        "finish_outbox",
    );
    ok(
        store
            .finish_outbox(
                org,
                failed.id,
                OutboxOutcome::Failed("invalid recipient".into()),
            )
            .await,
        "finish_outbox",
    );
    ok(
        store
            .finish_outbox(
                org,
                cancelled.id,
                OutboxOutcome::Cancelled("opted out".into()),
            )
            .await,
        "finish_outbox",
    );

    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    let find = |id: MessageId| messages.iter().find(|message| message.id == id);
    let stored_sent = find(sent_message.id);
    assert_eq!(
        stored_sent.map(|m| m.status),
        Some(DeliveryStatus::Sent),
        "Sent must set the message status to Sent"
    );
    assert_eq!(
        stored_sent.and_then(|m| m.provider.clone()).as_deref(),
        Some("twilio"),
        "Sent must record the provider"
    );
    assert_eq!(
        stored_sent
            .and_then(|m| m.provider_message_id.clone())
            .as_deref(),
        Some("SM-out-1"),
        "Sent must record the provider message id"
    );
    assert_eq!(
        stored_sent.map(|m| m.direction),
        Some(Direction::Outbound),
        "the message must stay outbound"
    );
    assert_eq!(
        find(failed_message.id).map(|m| m.status),
        Some(DeliveryStatus::Failed),
        "Failed must set the message status to Failed"
    );
    assert_eq!(
        find(cancelled_message.id).map(|m| m.status),
        Some(DeliveryStatus::Cancelled),
        "Cancelled must set the message status to Cancelled"
    );

    let later = ok(
        store.claim_outbox(time(1_000), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    assert!(
        later.is_empty(),
        "finished entries must never be claimed again"
    );

    ok(
        store
            .finish_outbox(org, failed.id, OutboxOutcome::RetryAt(time(20)))
            .await,
        "finish_outbox",
    );
    let later = ok(
        store.claim_outbox(time(1_000), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    assert!(later.is_empty(), "RetryAt must not revive a failed entry");

    let kind = error_kind(
        store
            .finish_outbox(org, OutboxId::new(), OutboxOutcome::Failed("test".into()))
            .await,
        "finish_outbox of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "finish_outbox of a missing id must be NotFound"
    );
}

/// Checks that `OutboxOutcome::RetryAt` makes the entry due again at the new time.
pub async fn finish_outbox_retry_at_reschedules(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let (message, entry) = commit_outbound(store, &conversation, time(10)).await;
    let long_lease = Duration::from_secs(3_600);
    let claimed = ok(
        store
            .claim_outbox(time(10), 10, long_lease, "worker-a")
            .await,
        "claim_outbox",
    );
    assert_eq!(claimed.len(), 1, "the due entry must be claimed");

    ok(
        store
            .finish_outbox(org, entry.id, OutboxOutcome::RetryAt(time(40)))
            .await,
        "finish_outbox",
    );
    let status = message_status(store, &conversation, message.id).await;
    assert_eq!(
        status,
        DeliveryStatus::Pending,
        "RetryAt must leave the message pending"
    );

    let early = ok(
        store.claim_outbox(time(39), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    assert!(
        early.is_empty(),
        "a rescheduled entry must not be claimed before its new time"
    );
    let due = ok(
        store.claim_outbox(time(40), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    assert_eq!(
        due.len(),
        1,
        "RetryAt must release the lease, so the entry is claimable at its new time"
    );
    if let Some(claimed) = due.first() {
        assert_eq!(
            claimed.id, entry.id,
            "the rescheduled entry must be claimed"
        );
        assert_eq!(
            claimed.next_attempt_at,
            time(40),
            "the entry must carry its new attempt time"
        );
        assert_eq!(
            claimed.attempts, 2,
            "the retried claim must make attempts 2"
        );
    }
}

/// Checks the unconfirmed mark and `first_attempt_at` of outbox claims. An
/// entry whose lease expired without a finish is claimed again as
/// unconfirmed. `Unconfirmed` marks an entry, a later `RetryAt` keeps the
/// mark, and a recorded retry alone does not set it. The first claim's
/// time is kept as `first_attempt_at`.
pub async fn outbox_unconfirmed_after_expired_lease(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let (_, abandoned) = commit_outbound(store, &conversation, time(10)).await;
    let (_, retried) = commit_outbound(store, &conversation, time(10)).await;
    let (_, unknown) = commit_outbound(store, &conversation, time(10)).await;

    let first = ok(
        store.claim_outbox(time(10), 10, LEASE, "worker-a").await,
        "claim_outbox",
    );
    assert_eq!(first.len(), 3, "the three due entries must be claimed");
    assert!(
        first.iter().all(|entry| !entry.unconfirmed),
        "a first claim must not be unconfirmed"
    );
    assert!(
        first
            .iter()
            .all(|entry| entry.first_attempt_at == Some(time(10))),
        "a first claim must record its time as first_attempt_at"
    );
    // `abandoned` is left leased, as by a worker that stopped mid-send.
    ok(
        store
            .finish_outbox(org, retried.id, OutboxOutcome::RetryAt(time(12)))
            .await,
        "finish_outbox",
    );
    ok(
        store
            .finish_outbox(org, unknown.id, OutboxOutcome::Unconfirmed(time(12)))
            .await,
        "finish_outbox",
    );

    // The lease of one minute has ended at time(11).
    let again = ok(
        store.claim_outbox(time(12), 10, LEASE, "worker-b").await,
        "claim_outbox",
    );
    let flag = |id: OutboxId| {
        again
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry.unconfirmed)
    };
    assert_eq!(again.len(), 3, "the three entries must be claimable again");
    assert!(
        again
            .iter()
            .all(|entry| entry.first_attempt_at == Some(time(10))),
        "a later claim must keep the first claim's time"
    );
    assert_eq!(
        flag(abandoned.id),
        Some(true),
        "an entry whose lease expired without a finish must come back unconfirmed"
    );
    assert_eq!(
        flag(retried.id),
        Some(false),
        "an entry finished with RetryAt must not be unconfirmed"
    );
    assert_eq!(
        flag(unknown.id),
        Some(true),
        "an entry finished with Unconfirmed must come back unconfirmed"
    );

    ok(
        store
            .finish_outbox(org, abandoned.id, OutboxOutcome::RetryAt(time(13)))
            .await,
        "finish_outbox",
    );
    let third = ok(
        store.claim_outbox(time(13), 10, LEASE, "worker-c").await,
        "claim_outbox",
    );
    let kept = third
        .iter()
        .find(|entry| entry.id == abandoned.id)
        .map(|entry| entry.unconfirmed);
    assert_eq!(
        kept,
        Some(true),
        "RetryAt must keep an entry unconfirmed until a send is recorded"
    );
}

/// Checks that suppressions are idempotent and per org.
pub async fn suppression_idempotent_per_org(store: &dyn Store) {
    let org = fakes::org();
    let phone = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    let email = ContactPoint::Email(fakes::email(fakes::next_number()));
    let psid = ContactPoint::Messenger(fakes::messenger(fakes::next_number()));

    for contact in [&phone, &email, &psid] {
        let suppressed = ok(store.is_suppressed(org, contact).await, "is_suppressed");
        assert!(
            !suppressed,
            "a new {} must not be suppressed",
            contact.channel()
        );
    }

    let entries = vec![
        fakes::suppression(org, phone.clone(), time(1)),
        fakes::suppression(org, email.clone(), time(1)),
    ];
    ok(store.suppress(&entries).await, "suppress");
    ok(store.suppress(&entries).await, "suppress again");
    let mut bounce = fakes::suppression(org, email.clone(), time(2));
    bounce.reason = "bounce".into();
    ok(
        store.suppress(&[bounce]).await,
        "suppress with another reason",
    );

    assert!(
        ok(store.is_suppressed(org, &phone).await, "is_suppressed"),
        "a suppressed phone must be suppressed"
    );
    assert!(
        ok(store.is_suppressed(org, &email).await, "is_suppressed"),
        "a suppressed address must be suppressed"
    );
    assert!(
        !ok(store.is_suppressed(org, &psid).await, "is_suppressed"),
        "an unlisted PSID must not be suppressed"
    );
    assert!(
        !ok(
            store.is_suppressed(fakes::org(), &phone).await,
            "is_suppressed"
        ),
        "a suppression must apply to its org only"
    );

    let (_, conversation) = seed(store, org).await;
    let mut turn = TurnCommit::new(conversation.clone());
    turn.unsuppress.push(phone.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");
    assert!(
        !ok(store.is_suppressed(org, &phone).await, "is_suppressed"),
        "unsuppress must lift the phone"
    );
    assert!(
        ok(store.is_suppressed(org, &email).await, "is_suppressed"),
        "unsuppress must lift only what it names"
    );
}

/// Checks that `audit_of` lists a prospect's events oldest first, in insertion order for equal times.
pub async fn audit_of_order(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let (_, neighbour) = seed(store, org).await;

    let late = fakes::audit(&conversation, "late", time(10));
    let early = fakes::audit(&conversation, "early", time(5));
    let late_second = fakes::audit(&conversation, "late-second", time(10));
    let mut unrelated = fakes::audit(&conversation, "org-wide", time(1));
    unrelated.prospect_id = None;
    let mut turn = TurnCommit::new(conversation.clone());
    turn.audit = vec![late.clone(), early.clone(), late_second.clone(), unrelated];
    ok(store.commit_turn(&turn).await, "commit_turn");
    let mut other_turn = TurnCommit::new(neighbour.clone());
    other_turn
        .audit
        .push(fakes::audit(&neighbour, "other", time(2)));
    ok(store.commit_turn(&other_turn).await, "commit_turn");

    let mut member_event = fakes::audit(&conversation, "member", time(7));
    member_event.actor = crate::ports::Actor::Member(MemberId::new());
    let mut turn = TurnCommit::new(reload(store, &conversation).await);
    turn.audit.push(member_event.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");

    let events = ok(store.audit_of(org, prospect.id).await, "audit_of");
    assert_eq!(
        events,
        vec![early, member_event, late, late_second],
        "audit_of must list the prospect's events oldest first, in insertion order for equal times"
    );
}

/// Checks that members read back equal, `put_member` replaces, and `list_members` lists the org's.
pub async fn members_put_get_list(store: &dyn Store) {
    let org = fakes::org();
    let mut first = fakes::member(org);
    let second = fakes::member(org);
    ok(store.put_member(&first).await, "put_member");
    ok(store.put_member(&second).await, "put_member");
    ok(
        store.put_member(&fakes::member(fakes::org())).await,
        "put_member in another org",
    );

    let read = ok(store.get_member(org, first.id).await, "get_member");
    assert!(read == first, "get_member must return the member as put");
    assert_eq!(
        read.email, first.email,
        "the member's address must survive a roundtrip"
    );
    assert_eq!(
        read.name, first.name,
        "the member's name must survive a roundtrip"
    );

    first.role = Role::Owner;
    first.available = false;
    ok(store.put_member(&first).await, "put_member");
    let read = ok(store.get_member(org, first.id).await, "get_member");
    assert_eq!(read.role, Role::Owner, "put_member must replace the role");
    assert!(!read.available, "put_member must replace availability");

    let mut listed: Vec<MemberId> = ok(store.list_members(org).await, "list_members")
        .into_iter()
        .map(|m| m.id)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        sorted(vec![first.id, second.id]),
        "list_members must list exactly the org's members"
    );

    let kind = error_kind(
        store.get_member(org, MemberId::new()).await,
        "get_member of a missing id",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "get_member of a missing id must be NotFound"
    );
}

/// Checks that `Debug` of the store shows none of the data it holds.
pub async fn debug_omits_stored_data(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let inbound = fakes::inbound(&conversation, "SM-debug", time(3));
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let member = fakes::member(org);
    ok(store.put_member(&member).await, "put_member");

    let debug = format!("{store:?}");
    let mut secrets: Vec<String> = prospect
        .contact_points()
        .iter()
        .map(|contact| contact.key().to_owned())
        .collect();
    secrets.extend(prospect.first_name.clone());
    secrets.extend(prospect.last_name.clone());
    secrets.push(inbound.text.clone());
    secrets.push(member.email.as_str().to_owned());
    for secret in secrets {
        assert!(
            !debug.contains(&secret),
            "Debug of the store must not show stored data; found a stored value in {debug:?}"
        );
    }
    assert!(
        debug.len() < 1_000,
        "Debug of the store must stay short, got {} bytes",
        debug.len()
    );
}

// ------------------------------------------------------------ data subjects

fn exchange(conversation: &Conversation, at: crate::Timestamp) -> crate::ports::ModelExchange {
    crate::ports::ModelExchange {
        org_id: conversation.org_id,
        prospect_id: conversation.prospect_id,
        conversation_id: conversation.id,
        model: "rules".into(),
        operation: "analyse".into(),
        request: r#"{"new_messages":["Notre budget est de 30k€"]}"#.into(),
        response: r#"{"intent":"gives_info"}"#.into(),
        at,
    }
}

/// Seeds a prospect with one record of every kind that names it: an
/// inbound and an outbound message, an outbox entry, a job, an audit event,
/// a model exchange. Returns the prospect and its conversation.
async fn seed_everything(store: &dyn Store, org: OrgId) -> (Prospect, Conversation) {
    let (prospect, conversation) = seed(store, org).await;
    let inbound = fakes::inbound(
        &conversation,
        &format!("SM{}", fakes::next_number()),
        time(1),
    );
    ok(store.insert_inbound(&inbound).await, "insert_inbound");
    let (_, _) = commit_outbound(store, &conversation, time(2)).await;
    let mut turn = TurnCommit::new(reload(store, &conversation).await);
    turn.jobs.push(fakes::job(&conversation, 1, time(60)));
    turn.audit
        .push(fakes::audit(&conversation, "transition", time(3)));
    turn.model_exchanges.push(exchange(&conversation, time(3)));
    ok(store.commit_turn(&turn).await, "commit_turn");
    (prospect, conversation)
}

/// Checks that `erase_prospect` deletes every row about the prospect, keeps
/// its contact points suppressed, keeps its requests, and touches no other prospect.
pub async fn erase_prospect_leaves_no_row_behind(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed_everything(store, org).await;
    let (neighbour, neighbour_conversation) = seed_everything(store, org).await;
    let request = crate::gdpr::SubjectRequest::open(
        org,
        prospect.id,
        crate::gdpr::RequestKind::Erasure,
        crate::ports::Actor::System,
        time(4),
    );
    ok(
        store.put_subject_request(&request).await,
        "put_subject_request",
    );

    let suppress: Vec<_> = prospect
        .contact_points()
        .into_iter()
        .map(|contact| fakes::suppression(org, contact, time(5)))
        .collect();
    assert_eq!(
        suppress.len(),
        3,
        "the fake prospect has a phone, an address and a PSID"
    );
    let report = ok(
        store.erase_prospect(org, prospect.id, &suppress).await,
        "erase_prospect",
    );
    for (table, at_least) in [
        ("prospects", 1),
        ("conversations", 1),
        ("messages", 2),
        ("outbox", 1),
        ("jobs", 1),
        ("audit_events", 1),
        ("model_exchanges", 1),
    ] {
        let deleted = report.deleted.get(table).copied().unwrap_or(0);
        assert!(
            deleted >= at_least,
            "erase_prospect must report {at_least} or more {table} rows deleted, reported {deleted}"
        );
    }

    assert_eq!(
        error_kind(store.get_prospect(org, prospect.id).await, "get_prospect"),
        ErrorKind::NotFound
    );
    assert_eq!(
        error_kind(
            store.get_conversation(org, conversation.id).await,
            "get_conversation"
        ),
        ErrorKind::NotFound
    );
    assert!(
        ok(
            store.conversations_of(org, prospect.id).await,
            "conversations_of"
        )
        .is_empty(),
        "no conversation may remain"
    );
    assert!(
        ok(
            store.list_messages(org, conversation.id).await,
            "list_messages"
        )
        .is_empty(),
        "no message may remain"
    );
    assert!(
        ok(
            store.pending_jobs(org, conversation.id).await,
            "pending_jobs"
        )
        .is_empty(),
        "no job may remain"
    );
    assert!(
        ok(store.audit_of(org, prospect.id).await, "audit_of").is_empty(),
        "no audit event may remain"
    );
    assert!(
        ok(
            store.model_exchanges_of(org, prospect.id).await,
            "model_exchanges_of"
        )
        .is_empty(),
        "no model exchange may remain"
    );
    let jobs = ok(
        store
            .claim_jobs(time(1_000_000), 10_000, LEASE, "probe")
            .await,
        "claim_jobs",
    );
    assert!(
        jobs.iter().all(|job| job.prospect_id != prospect.id),
        "no job of the erased prospect may be claimable"
    );
    let entries = ok(
        store
            .claim_outbox(time(1_000_000), 10_000, LEASE, "probe")
            .await,
        "claim_outbox",
    );
    assert!(
        entries.iter().all(|entry| entry.prospect_id != prospect.id),
        "no outbox entry of the erased prospect may be claimable"
    );
    for contact in prospect.contact_points() {
        assert!(
            ok(store.find_prospect(org, &contact).await, "find_prospect").is_none(),
            "the erased {} must find no one",
            contact.channel()
        );
        assert!(
            ok(store.is_suppressed(org, &contact).await, "is_suppressed"),
            "the erased {} must stay suppressed",
            contact.channel()
        );
    }
    let requests = ok(
        store.list_subject_requests(org).await,
        "list_subject_requests",
    );
    assert_eq!(
        requests,
        vec![request],
        "the erasure request record must be kept"
    );

    assert_eq!(
        ok(store.get_prospect(org, neighbour.id).await, "get_prospect").id,
        neighbour.id
    );
    assert_eq!(
        ok(
            store.list_messages(org, neighbour_conversation.id).await,
            "list_messages"
        )
        .len(),
        2,
        "the neighbour keeps its messages"
    );
    assert_eq!(
        ok(store.audit_of(org, neighbour.id).await, "audit_of").len(),
        1,
        "the neighbour keeps its audit"
    );
    assert_eq!(
        ok(
            store.model_exchanges_of(org, neighbour.id).await,
            "model_exchanges_of"
        )
        .len(),
        1
    );

    assert_eq!(
        error_kind(
            store.erase_prospect(org, prospect.id, &[]).await,
            "erase_prospect again"
        ),
        ErrorKind::NotFound,
        "erasing an erased prospect must be NotFound"
    );
    assert_eq!(
        error_kind(
            store.erase_prospect(fakes::org(), neighbour.id, &[]).await,
            "erase_prospect in another org"
        ),
        ErrorKind::NotFound,
        "another org's prospect must be NotFound"
    );
}

/// Checks that model exchanges written with a turn read back equal, oldest first, per prospect.
pub async fn model_exchanges_roundtrip(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let first = exchange(&conversation, time(1));
    let mut second = exchange(&conversation, time(2));
    second.operation = "write_reply".into();
    second.response = "model refused: the request was unclear".into();
    let mut turn = TurnCommit::new(conversation.clone());
    turn.model_exchanges = vec![first.clone(), second.clone()];
    ok(store.commit_turn(&turn).await, "commit_turn");
    assert_eq!(
        ok(
            store.model_exchanges_of(org, prospect.id).await,
            "model_exchanges_of"
        ),
        vec![first, second]
    );
    assert!(
        ok(
            store.model_exchanges_of(fakes::org(), prospect.id).await,
            "model_exchanges_of"
        )
        .is_empty(),
        "another org sees none"
    );
}

/// Checks `append_audit` outside a turn.
pub async fn append_audit_outside_turn(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed(store, org).await;
    let mut event = fakes::audit(&conversation, "rectification", time(3));
    event.conversation_id = None;
    ok(
        store.append_audit(std::slice::from_ref(&event)).await,
        "append_audit",
    );
    assert_eq!(
        ok(store.audit_of(org, prospect.id).await, "audit_of"),
        vec![event]
    );
}

/// Checks that requests read back equal, are replaced by id, listed per org,
/// and that only open ones due before the cut-off are listed as open.
pub async fn subject_requests_put_list_open(store: &dyn Store) {
    use crate::gdpr::{RequestKind, SubjectRequest};
    let org = fakes::org();
    let other = fakes::org();
    let prospect = ProspectId::new();
    let mut access = SubjectRequest::open(
        org,
        prospect,
        RequestKind::Access,
        crate::ports::Actor::System,
        time(0),
    );
    let objection = SubjectRequest::open(
        org,
        prospect,
        RequestKind::Objection,
        crate::ports::Actor::Member(MemberId::new()),
        time(10),
    );
    let foreign = SubjectRequest::open(
        other,
        ProspectId::new(),
        RequestKind::Erasure,
        crate::ports::Actor::Prospect,
        time(5),
    );
    for request in [&access, &objection, &foreign] {
        ok(
            store.put_subject_request(request).await,
            "put_subject_request",
        );
    }
    assert_eq!(
        ok(
            store.list_subject_requests(org).await,
            "list_subject_requests"
        ),
        vec![access.clone(), objection.clone()]
    );

    let far = time(60 * 24 * 60);
    let open = ok(
        store.open_subject_requests(far, 10).await,
        "open_subject_requests",
    );
    assert_eq!(
        open,
        vec![access.clone(), foreign.clone(), objection.clone()],
        "open requests across orgs, soonest due first"
    );
    let open = ok(
        store.open_subject_requests(far, 1).await,
        "open_subject_requests",
    );
    assert_eq!(open.len(), 1, "the limit applies");
    assert!(
        ok(
            store.open_subject_requests(access.due_at, 10).await,
            "open_subject_requests"
        )
        .is_empty(),
        "the cut-off is exclusive"
    );

    access.complete(time(20), "export produced");
    ok(
        store.put_subject_request(&access).await,
        "put_subject_request again",
    );
    let listed = ok(
        store.list_subject_requests(org).await,
        "list_subject_requests",
    );
    assert_eq!(
        listed[0], access,
        "put_subject_request must replace the request with the same id"
    );
    assert_eq!(listed.len(), 2);
    let open = ok(
        store.open_subject_requests(far, 10).await,
        "open_subject_requests",
    );
    assert!(!open.contains(&access), "a completed request is not open");
}

/// Checks that `expired_prospects` finds prospects collected and silent
/// since before the cut-off, across orgs, and no others.
pub async fn expired_prospects_by_collection_and_last_message(store: &dyn Store) {
    let org = fakes::org();
    let mut silent = fakes::prospect(org);
    silent.created_at = time(-10_000);
    let mut answered = fakes::prospect(org);
    answered.created_at = time(-10_000);
    let mut answered_long_ago = fakes::prospect(org);
    answered_long_ago.created_at = time(-10_000);
    let recent = fakes::prospect(org);
    let mut elsewhere = fakes::prospect(fakes::org());
    elsewhere.created_at = time(-10_000);
    ok(
        store
            .insert_prospects(&[
                silent.clone(),
                answered.clone(),
                answered_long_ago.clone(),
                recent.clone(),
                elsewhere.clone(),
            ])
            .await,
        "insert_prospects",
    );

    let conversation = fakes::conversation(&answered, None);
    ok(
        store.insert_conversation(&conversation, &[]).await,
        "insert_conversation",
    );
    ok(
        store
            .insert_inbound(&fakes::inbound(&conversation, "late-reply", time(-10)))
            .await,
        "insert_inbound",
    );
    let old_conversation = fakes::conversation(&answered_long_ago, None);
    ok(
        store.insert_conversation(&old_conversation, &[]).await,
        "insert_conversation",
    );
    ok(
        store
            .insert_inbound(&fakes::inbound(
                &old_conversation,
                "old-reply",
                time(-9_000),
            ))
            .await,
        "insert_inbound",
    );

    let mut expired = ok(
        store.expired_prospects(time(-100), 100).await,
        "expired_prospects",
    );
    expired.sort();
    let mut expected = vec![
        (org, silent.id),
        (org, answered_long_ago.id),
        (elsewhere.org_id, elsewhere.id),
    ];
    expected.sort();
    assert_eq!(
        expired, expected,
        "silent prospects collected before the cut-off, in every org"
    );
    assert_eq!(
        ok(
            store.expired_prospects(time(-100), 1).await,
            "expired_prospects"
        )
        .len(),
        1,
        "the limit applies"
    );
}

/// Checks that `purge_messages` deletes messages before the cut-off with their outbox entries, and keeps later ones.
pub async fn purge_messages_before(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    ok(
        store
            .insert_inbound(&fakes::inbound(&conversation, "old", time(-500)))
            .await,
        "insert_inbound",
    );
    ok(
        store
            .insert_inbound(&fakes::inbound(&conversation, "new", time(10)))
            .await,
        "insert_inbound",
    );
    let (old_outbound, old_entry) = commit_outbound(store, &conversation, time(-400)).await;
    let (new_outbound, _) = commit_outbound(store, &conversation, time(20)).await;

    let deleted = ok(store.purge_messages(time(0), 100).await, "purge_messages");
    assert_eq!(
        deleted, 2,
        "the two messages before the cut-off are deleted"
    );
    let kept: Vec<MessageId> = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    )
    .iter()
    .map(|m| m.id)
    .collect();
    assert_eq!(kept.len(), 2);
    assert!(!kept.contains(&old_outbound.id) && kept.contains(&new_outbound.id));
    let entries = ok(
        store
            .claim_outbox(time(1_000_000), 100, LEASE, "probe")
            .await,
        "claim_outbox",
    );
    assert!(
        entries.iter().all(|entry| entry.id != old_entry.id),
        "the old message's outbox entry goes with it"
    );
    assert_eq!(
        ok(
            store.purge_messages(time(0), 100).await,
            "purge_messages again"
        ),
        0
    );
}

/// Checks that `delete_org` deletes every row of the org, its suppression
/// list included, and nothing of another org.
pub async fn delete_org_removes_every_row(store: &dyn Store) {
    let org = fakes::org();
    let (prospect, conversation) = seed_everything(store, org).await;
    let campaign = fakes::campaign(org);
    ok(store.put_campaign(&campaign).await, "put_campaign");
    ok(store.put_member(&fakes::member(org)).await, "put_member");
    let contact = prospect.contact_points().remove(0);
    ok(
        store
            .suppress(&[fakes::suppression(org, contact.clone(), time(1))])
            .await,
        "suppress",
    );
    let request = crate::gdpr::SubjectRequest::open(
        org,
        prospect.id,
        crate::gdpr::RequestKind::Access,
        crate::ports::Actor::System,
        time(1),
    );
    ok(
        store.put_subject_request(&request).await,
        "put_subject_request",
    );

    let other = fakes::org();
    let (other_prospect, _) = seed_everything(store, other).await;
    ok(
        store
            .suppress(&[fakes::suppression(other, contact.clone(), time(1))])
            .await,
        "suppress",
    );

    let report = ok(store.delete_org(org).await, "delete_org");
    assert!(
        report.total() >= 10,
        "delete_org must report the rows it deleted, reported {}",
        report.total()
    );
    assert!(
        ok(
            store.list_prospects(org, ListOptions::default()).await,
            "list_prospects"
        )
        .is_empty()
    );
    assert_eq!(
        error_kind(
            store.get_conversation(org, conversation.id).await,
            "get_conversation"
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        error_kind(store.get_campaign(org, campaign.id).await, "get_campaign"),
        ErrorKind::NotFound
    );
    assert!(ok(store.list_members(org).await, "list_members").is_empty());
    assert!(
        ok(
            store.list_subject_requests(org).await,
            "list_subject_requests"
        )
        .is_empty()
    );
    assert!(ok(store.audit_of(org, prospect.id).await, "audit_of").is_empty());
    assert!(
        !ok(store.is_suppressed(org, &contact).await, "is_suppressed"),
        "the org's suppression list goes with it"
    );

    assert_eq!(
        ok(
            store.get_prospect(other, other_prospect.id).await,
            "get_prospect"
        )
        .id,
        other_prospect.id
    );
    assert!(
        ok(store.is_suppressed(other, &contact).await, "is_suppressed"),
        "another org keeps its suppression list"
    );
}

/// Checks that `delete_member` removes the member of its org only, and that an unknown one is `NotFound`.
pub async fn delete_member_removes_it(store: &dyn Store) {
    let org = fakes::org();
    let first = fakes::member(org);
    let second = fakes::member(org);
    ok(store.put_member(&first).await, "put_member");
    ok(store.put_member(&second).await, "put_member");
    assert_eq!(
        error_kind(
            store.delete_member(fakes::org(), first.id).await,
            "delete_member in another org"
        ),
        ErrorKind::NotFound,
        "another org's member must be NotFound"
    );
    ok(store.delete_member(org, first.id).await, "delete_member");
    assert_eq!(
        error_kind(store.get_member(org, first.id).await, "get_member"),
        ErrorKind::NotFound
    );
    let left: Vec<MemberId> = ok(store.list_members(org).await, "list_members")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![second.id], "only the deleted member goes");
    assert_eq!(
        error_kind(
            store.delete_member(org, first.id).await,
            "delete_member again"
        ),
        ErrorKind::NotFound
    );
}

/// Checks that a turn completing a job that is no longer pending fails with
/// `Conflict` and writes nothing, so that two workers holding the same job
/// after a lease expiry cannot both send its message.
pub async fn commit_turn_finished_job_conflicts(store: &dyn Store) {
    let org = fakes::org();
    let (_, conversation) = seed(store, org).await;
    let job = fakes::job(&conversation, 1, time(0));
    let mut turn = TurnCommit::new(conversation.clone());
    turn.jobs.push(job.clone());
    ok(store.commit_turn(&turn).await, "commit_turn");

    let mut first = TurnCommit::new(reload(store, &conversation).await);
    first.completed_job = Some(job.id);
    ok(
        store.commit_turn(&first).await,
        "commit_turn completing the job",
    );

    let current = reload(store, &conversation).await;
    let mut second = TurnCommit::new(current.clone());
    second.completed_job = Some(job.id);
    let message = fakes::outbound(&current, time(5));
    second.messages.push(message.clone());
    assert_eq!(
        error_kind(
            store.commit_turn(&second).await,
            "commit_turn completing a finished job"
        ),
        ErrorKind::Conflict,
        "completing a job that is no longer pending must conflict"
    );
    let messages = ok(
        store.list_messages(org, conversation.id).await,
        "list_messages",
    );
    assert!(
        messages.iter().all(|stored| stored.id != message.id),
        "a rejected turn writes nothing"
    );
    assert_eq!(
        reload(store, &conversation).await.version,
        current.version,
        "a rejected turn keeps the version"
    );
}
