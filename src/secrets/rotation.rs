//! The signing-secret rotation state machine, as a pure function:
//! `(state, command, now) → new state or a typed error`.
//!
//! ```text
//!               initiate                 complete
//!  [active A] ──────────► [A + pending B] ─────────► [active B, previous A until now+window]
//!      ▲                       │ cancel                     │ revert (until revert_until)
//!      │                       ▼                            ▼
//!      └────────────── [active A]                    [active A]   (B is destroyed)
//! ```
//!
//! The store loads the state inside a transaction that holds the merchant's lock, applies the
//! transition here, and writes the result; so the rules are tested without a database or a
//! clock, and concurrent requests cannot interleave.

use chrono::Duration;

use crate::clock::Timestamp;
use crate::ids::SecretId;

/// One secret's place in the state (its material stays in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub id: SecretId,
    pub created_at: Timestamp,
}

/// The pending secret, with an optional scheduled completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub slot: Slot,
    pub complete_at: Option<Timestamp>,
}

/// The secret replaced by the last completion, restorable until `revert_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub slot: Slot,
    pub revert_until: Timestamp,
}

/// The secrets of one merchant in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationState {
    pub active: Slot,
    pub pending: Option<Pending>,
    pub previous: Option<Previous>,
}

/// What an admin (or the scheduler) asks for. `S` is the secret an initiation brings: its
/// [`Slot`] for the state machine; the store receives the sealed secret itself and splits it
/// off with [`Command::split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<S = Slot> {
    /// Make `secret` pending; completes by itself at `complete_at` when given.
    Initiate {
        secret: S,
        complete_at: Option<Timestamp>,
    },
    /// Promote the pending secret.
    Complete,
    /// Complete only if the pending secret's `complete_at` has come (the scheduler's command).
    CompleteDue,
    /// Restore the previous secret, destroying the current one.
    Revert,
    /// Drop the pending secret.
    Cancel,
    /// Destroy a previous secret whose window has passed.
    Sweep,
}

impl<S> Command<S> {
    /// The command [`apply`] takes, the initiated secret described by `slot`, and that secret.
    pub fn split(self, slot: impl FnOnce(&S) -> Slot) -> (Command, Option<S>) {
        match self {
            Command::Initiate {
                secret,
                complete_at,
            } => (
                Command::Initiate {
                    secret: slot(&secret),
                    complete_at,
                },
                Some(secret),
            ),
            Command::Complete => (Command::Complete, None),
            Command::CompleteDue => (Command::CompleteDue, None),
            Command::Revert => (Command::Revert, None),
            Command::Cancel => (Command::Cancel, None),
            Command::Sweep => (Command::Sweep, None),
        }
    }
}

/// Why a command cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("a rotation is already in progress")]
    RotationInProgress,
    #[error("there is no pending secret")]
    NoPendingSecret,
    #[error("the pending secret is not due yet")]
    NotDue,
    #[error("there is no previous secret to revert to")]
    NothingToRevert,
    #[error("the revert window has expired")]
    RevertWindowExpired,
    #[error("complete_at must be in the future")]
    CompleteAtInPast,
}

impl RotationError {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            RotationError::RotationInProgress => "rotation_in_progress",
            RotationError::NoPendingSecret => "no_pending_secret",
            RotationError::NotDue => "not_due",
            RotationError::NothingToRevert => "nothing_to_revert",
            RotationError::RevertWindowExpired => "revert_window_expired",
            RotationError::CompleteAtInPast => "invalid_complete_at",
        }
    }
}

/// The result of a transition: the new state and the secrets it destroys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: RotationState,
    pub destroyed: Vec<SecretId>,
}

/// Whether a previous secret may still be restored at `now` (until `revert_until` inclusive).
pub fn revertible(previous: &Previous, now: Timestamp) -> bool {
    now <= previous.revert_until
}

/// Applies `command` at `now`. `revert_window` is how long a completed rotation stays
/// revertible.
pub fn apply(
    state: &RotationState,
    command: Command,
    now: Timestamp,
    revert_window: Duration,
) -> Result<Transition, RotationError> {
    let mut next = *state;
    let mut destroyed = Vec::new();
    match command {
        Command::Initiate {
            secret: new,
            complete_at,
        } => {
            if state.pending.is_some() {
                return Err(RotationError::RotationInProgress);
            }
            if complete_at.is_some_and(|at| at <= now) {
                return Err(RotationError::CompleteAtInPast);
            }
            next.pending = Some(Pending {
                slot: new,
                complete_at,
            });
        }
        Command::Complete | Command::CompleteDue => {
            let pending = state.pending.ok_or(RotationError::NoPendingSecret)?;
            if command == Command::CompleteDue && pending.complete_at.is_none_or(|at| at > now) {
                return Err(RotationError::NotDue);
            }
            // Revert goes back one step only: an older previous secret is destroyed.
            destroyed.extend(state.previous.map(|previous| previous.slot.id));
            next.previous = Some(Previous {
                slot: state.active,
                revert_until: now + revert_window,
            });
            next.active = pending.slot;
            next.pending = None;
        }
        Command::Revert => {
            if state.pending.is_some() {
                return Err(RotationError::RotationInProgress);
            }
            let previous = state.previous.ok_or(RotationError::NothingToRevert)?;
            if !revertible(&previous, now) {
                return Err(RotationError::RevertWindowExpired);
            }
            destroyed.push(state.active.id);
            next.active = previous.slot;
            next.previous = None;
        }
        Command::Cancel => {
            let pending = state.pending.ok_or(RotationError::NoPendingSecret)?;
            destroyed.push(pending.slot.id);
            next.pending = None;
        }
        Command::Sweep => match state.previous {
            Some(previous) if !revertible(&previous, now) => {
                destroyed.push(previous.slot.id);
                next.previous = None;
            }
            Some(_) => return Err(RotationError::NotDue),
            None => return Err(RotationError::NothingToRevert),
        },
    }
    Ok(Transition {
        state: next,
        destroyed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use std::collections::HashSet;

    const WINDOW: i64 = 48 * 3600;

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn slot(at: i64) -> Slot {
        Slot {
            id: SecretId::new(),
            created_at: t(at),
        }
    }

    fn start() -> RotationState {
        RotationState {
            active: slot(0),
            pending: None,
            previous: None,
        }
    }

    fn window() -> Duration {
        Duration::seconds(WINDOW)
    }

    #[test]
    fn initiate_complete_revert_round_trip() {
        let a = start();
        let b = slot(1);
        let pending = apply(
            &a,
            Command::Initiate {
                secret: b,
                complete_at: None,
            },
            t(1),
            window(),
        )
        .unwrap()
        .state;
        assert_eq!(
            apply(
                &pending,
                Command::Initiate {
                    secret: slot(2),
                    complete_at: None
                },
                t(2),
                window()
            )
            .unwrap_err(),
            RotationError::RotationInProgress
        );
        let done = apply(&pending, Command::Complete, t(10), window()).unwrap();
        assert_eq!(done.state.active, b);
        assert_eq!(done.state.previous.unwrap().revert_until, t(10 + WINDOW));
        let reverted = apply(&done.state, Command::Revert, t(10 + WINDOW), window()).unwrap();
        assert_eq!(
            reverted.state.active, a.active,
            "revert works at revert_until"
        );
        assert_eq!(reverted.destroyed, vec![b.id]);
        assert_eq!(
            apply(&done.state, Command::Revert, t(11 + WINDOW), window()).unwrap_err(),
            RotationError::RevertWindowExpired,
            "and fails one second after"
        );
    }

    #[test]
    fn errors_are_typed() {
        let a = start();
        assert_eq!(
            apply(&a, Command::Complete, t(1), window()).unwrap_err(),
            RotationError::NoPendingSecret
        );
        assert_eq!(
            apply(&a, Command::Cancel, t(1), window()).unwrap_err(),
            RotationError::NoPendingSecret
        );
        assert_eq!(
            apply(&a, Command::Revert, t(1), window()).unwrap_err(),
            RotationError::NothingToRevert
        );
        let past = Command::Initiate {
            secret: slot(1),
            complete_at: Some(t(0)),
        };
        assert_eq!(
            apply(&a, past, t(1), window()).unwrap_err(),
            RotationError::CompleteAtInPast
        );
        let scheduled = apply(
            &a,
            Command::Initiate {
                secret: slot(1),
                complete_at: Some(t(100)),
            },
            t(1),
            window(),
        )
        .unwrap()
        .state;
        assert_eq!(
            apply(&scheduled, Command::CompleteDue, t(99), window()).unwrap_err(),
            RotationError::NotDue
        );
        assert!(apply(&scheduled, Command::CompleteDue, t(100), window()).is_ok());
        let revert_while_pending = apply(&scheduled, Command::Revert, t(2), window()).unwrap_err();
        assert_eq!(revert_while_pending, RotationError::RotationInProgress);
    }

    #[test]
    fn a_second_completion_destroys_the_older_previous() {
        let a = start();
        let s1 = apply(
            &a,
            Command::Initiate {
                secret: slot(1),
                complete_at: None,
            },
            t(1),
            window(),
        )
        .unwrap()
        .state;
        let s2 = apply(&s1, Command::Complete, t(2), window()).unwrap().state;
        let s3 = apply(
            &s2,
            Command::Initiate {
                secret: slot(3),
                complete_at: None,
            },
            t(3),
            window(),
        )
        .unwrap()
        .state;
        let s4 = apply(&s3, Command::Complete, t(4), window()).unwrap();
        assert_eq!(s4.destroyed, vec![a.active.id]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Initiate(Option<i64>),
        Complete,
        CompleteDue,
        Revert,
        Cancel,
        Sweep,
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            proptest::option::of(-10i64..100_000).prop_map(Step::Initiate),
            Just(Step::Complete),
            Just(Step::CompleteDue),
            Just(Step::Revert),
            Just(Step::Cancel),
            Just(Step::Sweep),
            (0i64..2 * WINDOW).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// At most one active and one pending (by construction of the type), revert never
        /// after the window, and no destroyed secret ever comes back.
        #[test]
        fn invariants_hold_over_any_sequence(steps in proptest::collection::vec(step(), 1..60)) {
            let mut state = start();
            let mut now = 0i64;
            let mut destroyed: HashSet<SecretId> = HashSet::new();
            let mut ever_seen: HashSet<SecretId> = HashSet::from([state.active.id]);
            for step in steps {
                let command = match step {
                    Step::Wait(secs) => { now += secs; continue; }
                    Step::Initiate(offset) => {
                        let new = slot(now);
                        ever_seen.insert(new.id);
                        Command::Initiate { secret: new, complete_at: offset.map(|o| t(now + o)) }
                    }
                    Step::Complete => Command::Complete,
                    Step::CompleteDue => Command::CompleteDue,
                    Step::Revert => Command::Revert,
                    Step::Cancel => Command::Cancel,
                    Step::Sweep => Command::Sweep,
                };
                let before = state;
                match apply(&state, command, t(now), window()) {
                    Ok(transition) => {
                        if command == Command::Revert {
                            let previous = before.previous.expect("revert needs a previous");
                            prop_assert!(t(now) <= previous.revert_until, "revert after the window");
                        }
                        for id in &transition.destroyed {
                            prop_assert!(destroyed.insert(*id), "destroyed twice");
                        }
                        state = transition.state;
                    }
                    Err(_) => prop_assert_eq!(state, before),
                }
                let live = [Some(state.active.id), state.pending.map(|p| p.slot.id), state.previous.map(|p| p.slot.id)];
                let live: Vec<_> = live.into_iter().flatten().collect();
                let distinct: HashSet<_> = live.iter().collect();
                prop_assert_eq!(distinct.len(), live.len(), "one secret in two places");
                for id in live {
                    prop_assert!(!destroyed.contains(&id), "a destroyed secret came back");
                    prop_assert!(ever_seen.contains(&id));
                }
            }
        }
    }
}
