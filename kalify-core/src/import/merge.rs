//! Merging an imported row into a prospect that already exists.

use crate::Timestamp;
use crate::prospect::Prospect;

use super::MergePolicy;
use super::row::ParsedRow;

/// Applies `row` to `existing` under `policy` and returns whether anything changed.
///
/// Under every policy but [`MergePolicy::Skip`], tags are added to the
/// existing ones and a consent is added for each channel that has no active
/// consent yet. The locale changes only under [`MergePolicy::Overwrite`]
/// and only when the row gives one. Status, score, owner, restriction and
/// objection are never touched.
pub(crate) fn merge_into(
    existing: &mut Prospect,
    row: &ParsedRow,
    policy: MergePolicy,
    now: Timestamp,
) -> bool {
    if policy == MergePolicy::Skip {
        return false;
    }
    let overwrite = policy == MergePolicy::Overwrite;
    let incoming = &row.prospect;
    let mut changed = false;

    changed |= merge_option(&mut existing.first_name, &incoming.first_name, overwrite);
    changed |= merge_option(&mut existing.last_name, &incoming.last_name, overwrite);
    changed |= merge_option(&mut existing.company, &incoming.company, overwrite);
    changed |= merge_option(&mut existing.job_title, &incoming.job_title, overwrite);
    changed |= merge_option(&mut existing.phone, &incoming.phone, overwrite);
    changed |= merge_option(&mut existing.email, &incoming.email, overwrite);
    changed |= merge_option(&mut existing.messenger, &incoming.messenger, overwrite);
    changed |= merge_option(&mut existing.time_zone, &incoming.time_zone, overwrite);
    changed |= merge_option(&mut existing.source, &incoming.source, overwrite);

    if overwrite && row.locale_given && existing.locale != incoming.locale {
        existing.locale = incoming.locale;
        changed = true;
    }

    for tag in &incoming.tags {
        if !existing.tags.contains(tag) {
            existing.tags.push(tag.clone());
            changed = true;
        }
    }

    for (name, value) in &incoming.custom_fields {
        let replace = match existing.custom_fields.get(name) {
            None => true,
            Some(current) => overwrite && current != value,
        };
        if replace {
            existing.custom_fields.insert(name.clone(), value.clone());
            changed = true;
        }
    }

    for consent in &incoming.consents {
        let covered = existing
            .consents
            .iter()
            .any(|current| current.channel == consent.channel && current.is_active());
        if !covered {
            existing.consents.push(consent.clone());
            changed = true;
        }
    }

    if changed {
        existing.updated_at = now;
    }
    changed
}

/// Sets `target` from `incoming` when it is empty, or when `overwrite` is
/// set and the values differ. Returns whether `target` changed.
fn merge_option<T: Clone + PartialEq>(
    target: &mut Option<T>,
    incoming: &Option<T>,
    overwrite: bool,
) -> bool {
    let Some(value) = incoming else {
        return false;
    };
    let replace = match target {
        None => true,
        Some(current) => overwrite && current != value,
    };
    if replace {
        *target = Some(value.clone());
    }
    replace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::{ChannelKind, EmailAddress};
    use crate::id::OrgId;
    use crate::prospect::{Consent, ConsentBasis, CustomValue, Locale};

    fn row(prospect: Prospect) -> ParsedRow {
        ParsedRow {
            prospect,
            locale_given: true,
            opt_outs: Vec::new(),
            contact_columns: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn pair() -> (Prospect, ParsedRow) {
        let now = chrono::Utc::now();
        let org = OrgId::new();
        let mut existing = Prospect::new(org, now);
        existing.first_name = Some("Jean".into());
        existing.email = Some(EmailAddress::parse("jean@example.fr").unwrap());
        existing
            .custom_fields
            .insert("Budget".into(), CustomValue::Number(10.0));
        let mut incoming = Prospect::new(org, now);
        incoming.first_name = Some("Jeannot".into());
        incoming.last_name = Some("Dupont".into());
        incoming.locale = Locale::Fr;
        incoming.tags = vec!["salon".into()];
        incoming
            .custom_fields
            .insert("Budget".into(), CustomValue::Number(20.0));
        incoming.consents.push(Consent {
            channel: ChannelKind::Email,
            basis: ConsentBasis::Consent,
            collected_at: now,
            source: "form".into(),
            wording_version: None,
            withdrawn_at: None,
        });
        (existing, row(incoming))
    }

    #[test]
    fn skip_changes_nothing() {
        let (mut existing, row) = pair();
        let before = existing.clone();
        assert!(!merge_into(
            &mut existing,
            &row,
            MergePolicy::Skip,
            chrono::Utc::now()
        ));
        assert_eq!(existing, before);
    }

    #[test]
    fn fill_empty_keeps_existing_values() {
        let (mut existing, row) = pair();
        assert!(merge_into(
            &mut existing,
            &row,
            MergePolicy::FillEmpty,
            chrono::Utc::now()
        ));
        assert_eq!(existing.first_name.as_deref(), Some("Jean"));
        assert_eq!(existing.last_name.as_deref(), Some("Dupont"));
        assert_eq!(existing.custom_fields["Budget"], CustomValue::Number(10.0));
        assert_eq!(existing.locale, Locale::En);
        assert_eq!(existing.tags, vec!["salon".to_owned()]);
        assert_eq!(existing.consents.len(), 1);
    }

    #[test]
    fn overwrite_replaces_values() {
        let (mut existing, row) = pair();
        assert!(merge_into(
            &mut existing,
            &row,
            MergePolicy::Overwrite,
            chrono::Utc::now()
        ));
        assert_eq!(existing.first_name.as_deref(), Some("Jeannot"));
        assert_eq!(existing.custom_fields["Budget"], CustomValue::Number(20.0));
        assert_eq!(existing.locale, Locale::Fr);
        assert_eq!(
            existing.email.as_ref().map(EmailAddress::as_str),
            Some("jean@example.fr")
        );
    }

    #[test]
    fn second_merge_is_a_no_op() {
        let (mut existing, row) = pair();
        merge_into(
            &mut existing,
            &row,
            MergePolicy::FillEmpty,
            chrono::Utc::now(),
        );
        assert!(!merge_into(
            &mut existing,
            &row,
            MergePolicy::FillEmpty,
            chrono::Utc::now()
        ));
        merge_into(
            &mut existing,
            &row,
            MergePolicy::Overwrite,
            chrono::Utc::now(),
        );
        assert!(!merge_into(
            &mut existing,
            &row,
            MergePolicy::Overwrite,
            chrono::Utc::now()
        ));
    }
}
