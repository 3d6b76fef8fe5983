//! The upload lifecycle as an explicit state machine.
//!
//! Each upload moves `awaiting_upload -> processing -> ready | failed`. Provider events arrive at
//! least once and in any order, so a transition the machine does not allow is an error the
//! handlers turn into an acknowledged no-op — never a regression of state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of one upload (the `pending` one, or the upload behind `current` once ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Intake answered with an upload target; no bytes seen yet.
    AwaitingUpload,
    /// The provider has the file and is transcoding it.
    Processing,
    /// Renditions are playable.
    Ready,
    /// The upload or transcode failed; the reason is kept with the upload.
    Failed,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 4] = [
        UploadStatus::AwaitingUpload,
        UploadStatus::Processing,
        UploadStatus::Ready,
        UploadStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::AwaitingUpload => "awaiting_upload",
            UploadStatus::Processing => "processing",
            UploadStatus::Ready => "ready",
            UploadStatus::Failed => "failed",
        }
    }

    /// Ready and failed end an upload; only a new upload (a new upload id) starts over.
    pub fn is_terminal(self) -> bool {
        matches!(self, UploadStatus::Ready | UploadStatus::Failed)
    }

    /// The whole transition table. `awaiting_upload -> ready|failed` is legal because the
    /// provider's intermediate events may arrive late or never; `processing -> processing`
    /// carries progress updates.
    pub fn can_become(self, next: UploadStatus) -> bool {
        use UploadStatus::*;
        matches!(
            (self, next),
            (AwaitingUpload, Processing)
                | (AwaitingUpload, Ready)
                | (AwaitingUpload, Failed)
                | (Processing, Processing)
                | (Processing, Ready)
                | (Processing, Failed)
        )
    }

    /// Checked transition.
    pub fn transition(self, next: UploadStatus) -> Result<UploadStatus, TransitionError> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition the lifecycle does not allow (for example `ready -> processing` from a late
/// progress event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal upload transition {from} -> {to}")]
pub struct TransitionError {
    pub from: UploadStatus,
    pub to: UploadStatus,
}

#[cfg(test)]
mod tests {
    use super::UploadStatus::*;
    use super::*;

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        let legal = [
            (AwaitingUpload, Processing),
            (AwaitingUpload, Ready),
            (AwaitingUpload, Failed),
            (Processing, Processing),
            (Processing, Ready),
            (Processing, Failed),
        ];
        for from in UploadStatus::ALL {
            for to in UploadStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
                match from.transition(to) {
                    Ok(s) => assert!(expected && s == to),
                    Err(e) => assert!(!expected && e == TransitionError { from, to }),
                }
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for s in [Ready, Failed] {
            assert!(s.is_terminal());
            assert!(UploadStatus::ALL.iter().all(|t| !s.can_become(*t)));
        }
    }

    #[test]
    fn serializes_as_the_api_strings() {
        assert_eq!(
            serde_json::to_string(&AwaitingUpload).unwrap(),
            "\"awaiting_upload\""
        );
        assert!(serde_json::from_str::<UploadStatus>("\"done\"").is_err());
    }
}
