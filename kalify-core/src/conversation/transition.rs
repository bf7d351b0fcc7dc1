//! The pure transition function of the conversation state machine.

use crate::conversation::state::{
    ConversationState, Effect, Event, NotificationKind, Policy, ReplyOutcome, ScoreBand,
    SendPurpose, Sender,
};
use crate::error::{Error, ErrorKind, Result};

use ConversationState as S;

/// The state a transition leads to and the effects to carry out, in order.
pub type Transition = (ConversationState, Vec<Effect>);

/// Applies `event` to a conversation in `state`.
///
/// The function is pure: it reads nothing but its arguments, so the engine
/// persists the new state and the effects together, and tests can explore it
/// exhaustively.
///
/// # Invariants
/// - Once in `OptedOut`, only an opt-in leads to a send.
/// - While in `HandedOff`, no effect is a send by the AI or a campaign.
///
/// # Errors
/// `InvalidTransition` when the event cannot happen in `state`, such as a
/// follow-up in `Qualified` or a member release of a conversation nobody holds.
pub fn transition(state: ConversationState, event: Event, policy: &Policy) -> Result<Transition> {
    match (state, event) {
        // Opt-out wins everywhere and is idempotent: a second STOP confirms nothing.
        (S::OptedOut, Event::OptOutReceived) => Ok((S::OptedOut, vec![])),
        (_, Event::OptOutReceived) => Ok((
            S::OptedOut,
            vec![
                Effect::Suppress,
                Effect::CancelFollowUps,
                send(SendPurpose::OptOutConfirmation, Sender::System),
                Effect::Notify(NotificationKind::OptedOut),
            ],
        )),

        (S::OptedOut, Event::OptInReceived) => Ok((
            S::Engaged,
            vec![
                Effect::Unsuppress,
                send(SendPurpose::OptInConfirmation, Sender::System),
            ],
        )),
        (state, Event::OptInReceived) => Ok((state, vec![])),

        // An opted-out person gets nothing back, not even help or a member's reply.
        (S::OptedOut, Event::ReplyAnalysed(_)) => Ok((S::OptedOut, vec![])),
        (S::OptedOut, Event::HelpRequested) => Ok((S::OptedOut, vec![])),
        (S::OptedOut, _) => Err(invalid(state, event)),

        (state, Event::HelpRequested) => Ok((state, vec![send(SendPurpose::Help, Sender::System)])),

        (S::New, Event::FollowUpDue { attempt: 0 }) => Ok((
            S::Contacted,
            vec![
                send(SendPurpose::Outreach { attempt: 0 }, Sender::Campaign),
                Effect::ScheduleFollowUp { attempt: 1 },
            ],
        )),
        (state, Event::FollowUpDue { attempt }) if state.awaits_follow_up() && attempt >= 1 => {
            if attempt > policy.max_follow_ups {
                // No follow-up is left to cancel, and the last step's
                // message may still wait in the outbox for the sending
                // hours: it must be delivered, not cancelled.
                return Ok((S::Unresponsive, vec![]));
            }
            Ok((
                state,
                vec![
                    send(SendPurpose::Outreach { attempt }, Sender::Campaign),
                    Effect::ScheduleFollowUp {
                        attempt: attempt + 1,
                    },
                ],
            ))
        }
        (_, Event::FollowUpDue { .. }) => Err(invalid(state, event)),

        (S::HandedOff, Event::ReplyAnalysed(_)) => Ok((
            S::HandedOff,
            vec![Effect::Notify(NotificationKind::ProspectReplied)],
        )),
        (S::HandedOff, Event::MemberReplied) => Ok((
            S::HandedOff,
            vec![send(SendPurpose::MemberMessage, Sender::Member)],
        )),
        (S::HandedOff, Event::Released) => Ok((S::Engaged, vec![])),
        (S::HandedOff, Event::MemberTookOver) => Ok((S::HandedOff, vec![])),
        (_, Event::Released) => Err(invalid(state, event)),
        (_, Event::MemberReplied) => Err(invalid(state, event)),

        (_, Event::MemberTookOver) => Ok((
            S::HandedOff,
            vec![
                Effect::CancelFollowUps,
                Effect::Notify(NotificationKind::HandoffRequested),
            ],
        )),
        (S::Closed, Event::ClosedByMember) => Ok((S::Closed, vec![])),
        (_, Event::ClosedByMember) => Ok((S::Closed, vec![Effect::CancelFollowUps])),

        (S::Disqualified | S::Closed, Event::ReplyAnalysed(_)) if policy.final_disqualification => {
            Ok((state, vec![]))
        }
        (_, Event::ReplyAnalysed(outcome)) => Ok(reply_transition(outcome, policy)),
    }
}

/// A reply in any state where the AI is in charge.
fn reply_transition(outcome: ReplyOutcome, policy: &Policy) -> Transition {
    if outcome.wants_human
        || (outcome.negative && policy.handoff_on_negative && !outcome.not_interested)
    {
        return handoff();
    }
    if outcome.disqualified {
        return (
            S::Disqualified,
            vec![
                Effect::CancelFollowUps,
                send(SendPurpose::Closing, Sender::Ai),
            ],
        );
    }
    if outcome.not_interested {
        return (
            S::Closed,
            vec![
                Effect::CancelFollowUps,
                send(SendPurpose::Closing, Sender::Ai),
            ],
        );
    }
    match outcome.band {
        ScoreBand::Qualified if policy.handoff_when_qualified => {
            let (state, mut effects) = handoff();
            effects.push(Effect::Notify(NotificationKind::HotLead));
            (state, effects)
        }
        ScoreBand::Qualified => (
            S::Qualified,
            vec![
                Effect::CancelFollowUps,
                send(SendPurpose::Qualified, Sender::Ai),
                Effect::Notify(NotificationKind::HotLead),
            ],
        ),
        band => {
            let state = if band == ScoreBand::Qualifying {
                S::Qualifying
            } else {
                S::Engaged
            };
            // A reply restarts the follow-up sequence: the nudge comes one
            // delay after the prospect's last message, not the first outreach.
            (
                state,
                vec![
                    Effect::CancelFollowUps,
                    send(SendPurpose::Reply, Sender::Ai),
                    Effect::ScheduleFollowUp { attempt: 1 },
                ],
            )
        }
    }
}

fn handoff() -> Transition {
    (
        S::HandedOff,
        vec![
            Effect::CancelFollowUps,
            send(SendPurpose::HandoffAck, Sender::System),
            Effect::Notify(NotificationKind::HandoffRequested),
        ],
    )
}

fn send(purpose: SendPurpose, sender: Sender) -> Effect {
    Effect::Send { purpose, sender }
}

fn invalid(state: ConversationState, event: Event) -> Error {
    Error::new(
        ErrorKind::InvalidTransition,
        format!("event {} is not allowed in state {state}", event.name()),
    )
    .with_context("state", state)
    .with_context("event", event.name())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    fn outcome_strategy() -> impl Strategy<Value = ReplyOutcome> {
        (
            prop_oneof![
                Just(ScoreBand::Qualified),
                Just(ScoreBand::Qualifying),
                Just(ScoreBand::Low)
            ],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(band, disqualified, wants_human, not_interested, negative)| ReplyOutcome {
                    band,
                    disqualified,
                    wants_human,
                    not_interested,
                    negative,
                },
            )
    }

    fn event_strategy() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u32..6).prop_map(|attempt| Event::FollowUpDue { attempt }),
            outcome_strategy().prop_map(Event::ReplyAnalysed),
            Just(Event::OptOutReceived),
            Just(Event::OptInReceived),
            Just(Event::HelpRequested),
            Just(Event::MemberTookOver),
            Just(Event::MemberReplied),
            Just(Event::Released),
            Just(Event::ClosedByMember),
        ]
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        (0u32..4, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(max, on_qualified, on_negative, final_disqualification)| {
                Policy::default()
                    .with_max_follow_ups(max)
                    .with_handoff_when_qualified(on_qualified)
                    .with_handoff_on_negative(on_negative)
                    .with_final_disqualification(final_disqualification)
            },
        )
    }

    fn sends(effects: &[Effect]) -> Vec<(SendPurpose, Sender)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { purpose, sender } => Some((*purpose, *sender)),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn nothing_sent_after_opt_out(events in prop::collection::vec(event_strategy(), 1..40), policy in policy_strategy()) {
            let mut state = ConversationState::OptedOut;
            for event in events {
                let Ok((next, effects)) = transition(state, event, &policy) else { continue };
                if state == ConversationState::OptedOut && event != Event::OptInReceived {
                    prop_assert!(sends(&effects).is_empty(), "{event:?} sent {effects:?} after opt-out");
                }
                state = next;
            }
        }

        #[test]
        fn ai_silent_while_handed_off(events in prop::collection::vec(event_strategy(), 1..40), policy in policy_strategy()) {
            let mut state = ConversationState::New;
            for event in events {
                let Ok((next, effects)) = transition(state, event, &policy) else { continue };
                if state == ConversationState::HandedOff || next == ConversationState::HandedOff {
                    for (purpose, sender) in sends(&effects) {
                        prop_assert!(
                            !matches!(sender, Sender::Ai | Sender::Campaign),
                            "{event:?} in {state} sent {purpose:?} as {sender:?}"
                        );
                    }
                }
                state = next;
            }
        }

        #[test]
        fn invalid_transition_changes_nothing(state in prop::sample::select(ConversationState::ALL.to_vec()), event in event_strategy(), policy in policy_strategy()) {
            match transition(state, event, &policy) {
                Ok(_) => {}
                Err(error) => {
                    prop_assert_eq!(error.kind(), ErrorKind::InvalidTransition);
                    // The function is pure, so an error leaves the caller's state as it
                    // was; the same call fails the same way.
                    prop_assert!(transition(state, event, &policy).is_err());
                }
            }
        }

        #[test]
        fn opt_out_always_reaches_opted_out(state in prop::sample::select(ConversationState::ALL.to_vec()), policy in policy_strategy()) {
            let (next, effects) = transition(state, Event::OptOutReceived, &policy).unwrap();
            prop_assert_eq!(next, ConversationState::OptedOut);
            if state != ConversationState::OptedOut {
                prop_assert!(effects.contains(&Effect::CancelFollowUps));
                prop_assert!(effects.contains(&Effect::Suppress));
                prop_assert_eq!(sends(&effects).len(), 1);
            }
        }
    }

    #[test]
    fn every_state_reachable_from_new() {
        let policy = Policy::default();
        let mut events = vec![
            Event::OptOutReceived,
            Event::OptInReceived,
            Event::HelpRequested,
            Event::MemberTookOver,
            Event::MemberReplied,
            Event::Released,
            Event::ClosedByMember,
        ];
        for attempt in 0..5 {
            events.push(Event::FollowUpDue { attempt });
        }
        for band in [ScoreBand::Qualified, ScoreBand::Qualifying, ScoreBand::Low] {
            for flags in 0..16u8 {
                events.push(Event::ReplyAnalysed(ReplyOutcome {
                    band,
                    disqualified: flags & 1 != 0,
                    wants_human: flags & 2 != 0,
                    not_interested: flags & 4 != 0,
                    negative: flags & 8 != 0,
                }));
            }
        }

        let mut seen = BTreeSet::from([ConversationState::New]);
        let mut queue = VecDeque::from([ConversationState::New]);
        while let Some(state) = queue.pop_front() {
            for event in &events {
                if let Ok((next, _)) = transition(state, *event, &policy)
                    && seen.insert(next)
                {
                    queue.push_back(next);
                }
            }
        }
        assert_eq!(seen, ConversationState::ALL.into_iter().collect());
    }

    #[test]
    fn follow_ups_end_in_unresponsive() {
        let policy = Policy::default().with_max_follow_ups(2);
        let (state, effects) =
            transition(S::New, Event::FollowUpDue { attempt: 0 }, &policy).unwrap();
        assert_eq!(state, S::Contacted);
        assert!(effects.contains(&Effect::ScheduleFollowUp { attempt: 1 }));
        let (state, _) = transition(state, Event::FollowUpDue { attempt: 1 }, &policy).unwrap();
        let (state, effects) =
            transition(state, Event::FollowUpDue { attempt: 2 }, &policy).unwrap();
        assert_eq!(state, S::Contacted);
        assert!(effects.contains(&Effect::ScheduleFollowUp { attempt: 3 }));
        let (state, effects) =
            transition(state, Event::FollowUpDue { attempt: 3 }, &policy).unwrap();
        assert_eq!(state, S::Unresponsive);
        assert!(sends(&effects).is_empty());
        assert!(
            !effects.contains(&Effect::CancelFollowUps),
            "the end of the sequence must not cancel the last step's pending message"
        );
    }

    #[test]
    fn follow_up_in_qualified_is_invalid() {
        let error = transition(
            S::Qualified,
            Event::FollowUpDue { attempt: 1 },
            &Policy::default(),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidTransition);
        assert!(error.to_string().contains("qualified"), "{error}");
    }

    #[test]
    fn final_disqualification_keeps_state() {
        let policy = Policy::default().with_final_disqualification(true);
        let outcome = ReplyOutcome {
            band: ScoreBand::Qualified,
            disqualified: false,
            wants_human: true,
            not_interested: false,
            negative: false,
        };
        for state in [S::Disqualified, S::Closed] {
            let (next, effects) =
                transition(state, Event::ReplyAnalysed(outcome), &policy).unwrap();
            assert_eq!(next, state);
            assert!(effects.is_empty(), "{effects:?}");
            let (next, _) =
                transition(state, Event::ReplyAnalysed(outcome), &Policy::default()).unwrap();
            assert_eq!(next, S::HandedOff);
            let (next, _) = transition(state, Event::OptOutReceived, &policy).unwrap();
            assert_eq!(next, S::OptedOut);
        }
    }

    #[test]
    fn second_opt_out_sends_nothing() {
        let (_, effects) =
            transition(S::OptedOut, Event::OptOutReceived, &Policy::default()).unwrap();
        assert!(effects.is_empty());
    }
}
