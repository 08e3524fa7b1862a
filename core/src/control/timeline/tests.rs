use serde_json::json;

use super::*;
use crate::config::Progression;
use crate::control::history::NewEntry;
use crate::control::progress::{Progress, ProgressState};
use StageKind::{Published, Step, Weight as Set};
use StageState::*;

/// A history of (kind, canary, weight, by), one entry a second from t = 1 s.
fn history(entries: &[(&str, Option<&str>, Option<u64>, &str)]) -> History {
    let mut h = History::default();
    for (i, (kind, canary, weight, by)) in entries.iter().enumerate() {
        let canary = canary.map(|c| Version::parse(c).unwrap());
        h.push(
            NewEntry {
                kind,
                canary: canary.as_ref(),
                weight: weight.map(|w| Weight::new(w).unwrap()),
                by,
                reason: format!("{kind} #{i}"),
                counts: None,
            },
            (i as f64 + 1.0) * 1000.0,
        );
    }
    h
}

fn rollout(steps: &[u64], step: usize, state: ProgressState) -> Progress {
    let plan = Progression::from_value(json!({"steps": steps, "bake_secs": 10})).unwrap();
    let mut p = Progress::start(Version::parse("1.1.0").unwrap(), plan, 0.0);
    p.step = step;
    p.state = state;
    p.reason = (state != ProgressState::Running).then(|| state.as_str().to_owned());
    p
}

/// (kind, step, weight, state, started, ended): a stage in short.
type Short = (StageKind, Option<usize>, Option<u8>, StageState, bool, bool);
/// (name, history, progress, canary, the stages expected).
type Case = (
    &'static str,
    History,
    Option<Progress>,
    &'static str,
    Vec<Short>,
);

fn short(s: &Stage) -> Short {
    (
        s.kind,
        s.step,
        s.weight.map(Weight::percent),
        s.state,
        s.started_ms.is_some(),
        s.ended_ms.is_some(),
    )
}

#[test]
fn a_release_timeline_from_the_history() {
    use ProgressState as P;
    let c = Some("1.1.0");
    let cases: Vec<Case> = vec![
        (
            "a rollout cut at its second step (from the rollout's start, not the publish)",
            history(&[
                ("publish", c, Some(0), "operator"),
                ("rollout_started", c, Some(10), "operator"),
                ("step_advance", c, Some(50), "rollout"),
                ("rollback", c, Some(0), "rollout"),
            ]),
            Some(rollout(&[10, 50, 100], 1, P::RolledBack)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Passed, true, true),
                (Step, Some(2), Some(50), Cut, true, true),
                (Step, Some(3), Some(100), NotReached, false, false),
            ],
        ),
        (
            "a rollout baking its second step",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("step_advance", c, Some(50), "rollout"),
            ]),
            Some(rollout(&[10, 50, 100], 1, P::Running)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Passed, true, true),
                (Step, Some(2), Some(50), Running, true, false),
                (Step, Some(3), Some(100), Pending, false, false),
            ],
        ),
        (
            "waiting for evidence",
            history(&[("rollout_started", c, Some(10), "operator")]),
            Some(rollout(&[10, 50], 0, P::WaitingForEvidence)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), WaitingForEvidence, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
        (
            "awaiting approval, then approved: the gated step",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("step_advance", c, Some(50), "rollout"),
                ("awaiting_approval", c, None, "rollout"),
                ("approved", c, Some(100), "alice"),
            ]),
            Some(rollout(&[10, 50, 100], 2, P::Running)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Passed, true, true),
                (Step, Some(2), Some(50), Passed, true, true),
                (Step, Some(3), Some(100), Running, true, false),
            ],
        ),
        (
            "awaiting approval now",
            history(&[
                ("rollout_started", c, Some(50), "operator"),
                ("awaiting_approval", c, None, "rollout"),
            ]),
            Some(rollout(&[50, 100], 0, P::AwaitingApproval)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(50), AwaitingApproval, true, false),
                (Step, Some(2), Some(100), Pending, false, false),
            ],
        ),
        (
            "frozen now",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("frozen", c, None, "rollout"),
            ]),
            Some(rollout(&[10, 50], 0, P::Frozen)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Frozen, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
        (
            "paused, then resumed: the step again",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("rollout_paused", c, None, "operator"),
                ("rollout_resumed", c, Some(10), "operator"),
            ]),
            Some(rollout(&[10, 50], 0, P::Running)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Paused, true, true),
                (Step, Some(1), Some(10), Running, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
        (
            "paused now",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("rollout_paused", c, None, "rollout"),
            ]),
            Some(rollout(&[10, 50], 0, P::Paused)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Paused, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
        (
            "done, then promoted (the canary is gone from the config)",
            history(&[
                ("rollout_started", c, Some(50), "operator"),
                ("step_advance", c, Some(100), "rollout"),
                ("rollout_done", c, Some(100), "rollout"),
                ("promote", None, Some(0), "operator"),
            ]),
            Some(rollout(&[50, 100], 1, P::Done)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(50), Passed, true, true),
                (Step, Some(2), Some(100), Passed, true, true),
            ],
        ),
        (
            "a weight set by hand, cut automatically",
            history(&[
                ("publish", c, Some(0), "operator"),
                ("set_weight", c, Some(30), "operator"),
                ("rollback", c, Some(0), "auto"),
            ]),
            None,
            "1.1.0",
            vec![
                (Published, None, Some(0), Ended, true, true),
                (Set, None, Some(30), Cut, true, true),
            ],
        ),
        (
            "a rollout paused by a weight set by hand",
            history(&[
                ("rollout_started", c, Some(10), "operator"),
                ("set_weight", c, Some(30), "operator"),
            ]),
            Some(rollout(&[10, 50], 0, P::Paused)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Ended, true, true),
                (Set, None, Some(30), Serving, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
        (
            "a history that lost the rollout's start",
            history(&[
                ("step_advance", c, Some(50), "rollout"),
                ("rollback", c, Some(0), "operator"),
            ]),
            Some(rollout(&[10, 50, 100], 1, P::RolledBack)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Passed, false, true),
                (Step, Some(2), Some(50), Cut, true, true),
                (Step, Some(3), Some(100), NotReached, false, false),
            ],
        ),
        (
            "the previous canary's stages are not the new one's",
            history(&[
                ("set_weight", c, Some(50), "operator"),
                ("rollback", c, Some(0), "auto"),
                ("publish", Some("1.2.0"), Some(0), "operator"),
            ]),
            None,
            "1.2.0",
            vec![(Published, None, Some(0), Dark, true, false)],
        ),
        (
            "writes to KV: published there, then weights (another field alone is no stage)",
            history(&[
                ("kv_adopted", c, Some(0), "kv"),
                ("kv_adopted", c, Some(10), "kv"),
                ("kv_adopted", c, Some(10), "kv"),
                ("kv_adopted", c, Some(40), "kv"),
            ]),
            None,
            "1.1.0",
            vec![
                (Published, None, Some(0), Ended, true, true),
                (Set, None, Some(10), Ended, true, true),
                (Set, None, Some(40), Serving, true, false),
            ],
        ),
        (
            "nothing in the history: the rollout's current step",
            History::default(),
            Some(rollout(&[10, 50], 0, P::Running)),
            "1.1.0",
            vec![
                (Step, Some(1), Some(10), Running, true, false),
                (Step, Some(2), Some(50), Pending, false, false),
            ],
        ),
    ];
    for (name, history, progress, canary, expected) in cases {
        let canary = Version::parse(canary).unwrap();
        let stages = timeline(&canary, progress.as_ref(), &history);
        let got: Vec<Short> = stages.iter().map(short).collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn a_stage_says_who_started_and_ended_it_when_and_why() {
    let c = Some("1.1.0");
    let h = history(&[
        ("rollout_started", c, Some(10), "alice"),
        ("step_advance", c, Some(50), "rollout"),
        ("rollback", c, Some(0), "auto"),
    ]);
    let p = rollout(&[10, 50, 100], 1, ProgressState::RolledBack);
    let stages = timeline(&p.canary, Some(&p), &h);
    let first = &stages[0];
    assert_eq!(first.started_ms, Some(1000.0));
    assert_eq!(first.started_by.as_deref(), Some("alice"));
    assert_eq!(first.ended_ms, Some(2000.0));
    assert_eq!(first.ended_by.as_deref(), Some("rollout"));
    assert_eq!(
        first.reason.as_deref(),
        Some("step_advance #1"),
        "the pass's words"
    );
    let cut = &stages[1];
    assert_eq!(cut.ended_ms, Some(3000.0));
    assert_eq!(cut.ended_by.as_deref(), Some("auto"));
    assert_eq!(
        cut.reason.as_deref(),
        Some("rollback #2"),
        "the cut's words"
    );
    // Paused stages keep the pause's reason when they are resumed.
    let h = history(&[
        ("rollout_started", c, Some(10), "alice"),
        ("rollout_paused", c, None, "bob"),
        ("rollout_resumed", c, Some(10), "carol"),
    ]);
    let p = rollout(&[10, 50], 0, ProgressState::Running);
    let stages = timeline(&p.canary, Some(&p), &h);
    assert_eq!(stages[0].reason.as_deref(), Some("rollout_paused #1"));
    assert_eq!(stages[0].ended_by.as_deref(), Some("carol"));
    assert_eq!(stages[1].started_by.as_deref(), Some("carol"));
    assert_eq!(stages[1].reason, None);
}
