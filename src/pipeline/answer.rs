//! Execute's answer, written here only: what the promotion did ([`fill`]) and what became of
//! the pull request ([`apply`]).

use crate::{
    forge::flow::Concluded,
    git::{PromotionOutcome, PromotionResult},
    outcome::{Outcome, PullRequestRef, RunReport},
    spec::{Plan, SourceRef, TargetRef},
};

/// Puts what the promotion did into the run's answer.
pub(super) fn fill(report: &mut RunReport, promoted: PromotionResult) {
    report.outcome = match promoted.outcome {
        PromotionOutcome::Promoted => Outcome::Promoted,
        PromotionOutcome::AlreadyPromoted => Outcome::AlreadyPromoted,
        PromotionOutcome::Superseded => Outcome::Superseded,
        PromotionOutcome::DryRun => Outcome::DryRun,
        // Pull-request mode: `apply` says which, once the forge has answered.
        PromotionOutcome::Proposed | PromotionOutcome::AlreadyProposed => Outcome::PrOpened,
    };
    report.version = Some(promoted.version);
    report.previous = Some(promoted.previous);
    report.commit = promoted.commit;
    report.signature = promoted.signature;
    report.source.commit = promoted.source_commit;
}

/// Puts what became of the pull request into the run's answer.
pub(super) fn apply(report: &mut RunReport, concluded: Concluded) {
    let pr = concluded.pull_request();
    report.pull_request = Some(PullRequestRef {
        url: pr.url.clone(),
        number: pr.number,
    });
    report.outcome = match concluded {
        Concluded::Opened(_) => Outcome::PrOpened,
        Concluded::Updated(_) => Outcome::PrUpdated,
        Concluded::AlreadyOpen(_) => Outcome::AlreadyPromoted,
        Concluded::Merged { commit, .. } => {
            report.commit = Some(commit);
            Outcome::Promoted
        }
    };
}

/// An answer of `plan`'s run `run` with `outcome` and nothing else yet.
pub(super) fn report_of(plan: &Plan, run: String, outcome: Outcome) -> RunReport {
    RunReport {
        run,
        outcome,
        version: None,
        previous: None,
        commit: None,
        signature: None,
        source: SourceRef {
            phase: plan.source.to_string(),
            commit: plan.commit.to_string(),
            path: plan
                .source_path
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
        },
        target: TargetRef {
            phase: plan.target.to_string(),
        },
        test: None,
        pull_request: None,
        duration_ms: 0,
    }
}
