//! Reconcile planning as pure functions: the spec and the observed state in,
//! the actions out. No client, no clock of its own, no sockets: the
//! controllers gather the inputs, call these, and carry out what comes back.
//! That keeps every decision (which worker leaves, how a rollout advances,
//! when a scale-down waits for the scheduler) unit tested.
//!
//! Workers are plain pods, not a Deployment: the operator must decide
//! exactly which worker leaves, and must retire it through the scheduler
//! before its pod goes. A Deployment would pick its own victims.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::JobPhase;

/// What a worker pod's status says, reduced to what the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn parse(phase: Option<&str>) -> PodPhase {
        match phase {
            None | Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            Some(_) => PodPhase::Unknown,
        }
    }

    fn ended(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// One worker pod as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod {
    pub name: String,
    /// The hash of the pod template it was made from (`rask.dev/revision`).
    pub revision: String,
    pub phase: PodPhase,
    pub ready: bool,
    /// Marked for retirement (`rask.dev/retiring`) by an earlier reconcile.
    pub retiring: bool,
    /// Has a deletionTimestamp: already on its way out.
    pub terminating: bool,
}

/// The desired state of one worker group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTarget {
    /// Pod names are `<prefix>-<index>`.
    pub name_prefix: String,
    pub replicas: u32,
    pub revision: String,
    /// Workers replaced at a time during a rollout.
    pub max_surge: u32,
}

/// Counts for the status and the scale subresource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Worker pods not leaving.
    pub replicas: u32,
    pub ready: u32,
    /// Of those, made from the current template.
    pub updated: u32,
}

/// What to do with one worker group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerPlan {
    /// Names of new pods to create.
    pub create: Vec<String>,
    /// Pods that must leave, most expendable first; [`route_removals`]
    /// decides which are retired through the scheduler.
    pub leaving: Vec<ObservedPod>,
    pub counts: GroupCounts,
    /// Some pods are from an older template.
    pub rolling: bool,
}

impl WorkerPlan {
    /// The counts once the planned pods are created: they are not ready
    /// yet, and they are made from the current template.
    pub fn counts_after_creation(&self) -> GroupCounts {
        let created = u32::try_from(self.create.len()).unwrap_or(u32::MAX);
        GroupCounts {
            replicas: self.counts.replicas.saturating_add(created),
            ready: self.counts.ready,
            updated: self.counts.updated.saturating_add(created),
        }
    }
}

/// Plans one worker group: which pods to create and which must leave.
///
/// - Ended pods (Failed, Succeeded) leave and are replaced.
/// - Pods already marked retiring stay leaving until they are gone.
/// - A rollout is a surge: up to `max_surge` new pods beyond `replicas`, and
///   a ready old pod leaves only while the ready count stays at `replicas`.
/// - Scale-down removes the most expendable pods: not yet running, then not
///   ready, then the highest index.
///
/// New pods take the lowest free indices, skipping names in `held`: pods
/// of other objects under the same prefix.
pub fn plan_workers(target: &GroupTarget, pods: &[ObservedPod], held: &[String]) -> WorkerPlan {
    let mut plan = WorkerPlan::default();
    let mut live: Vec<&ObservedPod> = Vec::new();
    for pod in pods {
        if pod.terminating {
            continue;
        }
        if pod.phase.ended() || pod.retiring {
            plan.leaving.push(pod.clone());
        } else {
            live.push(pod);
        }
    }
    let want = target.replicas as usize;
    let (mut current, mut outdated): (Vec<&ObservedPod>, Vec<&ObservedPod>) =
        live.iter().partition(|p| p.revision == target.revision);
    current.sort_by(|a, b| removal_order(a, b));
    outdated.sort_by(|a, b| removal_order(a, b));
    plan.rolling = !outdated.is_empty();
    plan.counts = GroupCounts {
        replicas: live.len() as u32,
        ready: live.iter().filter(|p| p.ready).count() as u32,
        updated: current.len() as u32,
    };

    // Removals. Excess pods of the current template first (a scale-down).
    let mut removed: Vec<&ObservedPod> = Vec::new();
    if current.len() > want {
        removed.extend(current.iter().take(current.len() - want));
    }
    // Old pods: those not serving go at once; ready ones only while the ready
    // count stays at the desired number (no unavailability during a rollout),
    // or when there are more of them than the desired number (a scale-down).
    let mut available = live.iter().filter(|p| p.ready && !removed.iter().any(|r| r.name == p.name)).count();
    let current_kept = current.len().min(want);
    for (i, pod) in outdated.iter().enumerate() {
        let old_kept = outdated.len() - i;
        let over = current_kept + old_kept > want + target.max_surge as usize;
        if !pod.ready || over || available > want {
            if pod.ready {
                available -= 1;
            }
            removed.push(pod);
        }
    }
    plan.leaving.extend(removed.iter().map(|p| (*p).clone()));

    // Creations: the missing current pods, within the surge allowance.
    let remaining = live.len() - removed.len();
    let allowed_total = if plan.rolling { want + target.max_surge as usize } else { want };
    let missing_current = want.saturating_sub(current.len().min(want));
    let n_create = missing_current.min(allowed_total.saturating_sub(remaining));
    let taken: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).chain(held.iter().map(String::as_str)).collect();
    let mut index = 0usize;
    while plan.create.len() < n_create {
        let name = format!("{}-{index}", target.name_prefix);
        if !taken.contains(name.as_str()) {
            plan.create.push(name);
        }
        index += 1;
    }
    plan
}

/// The pod's index from its `<prefix>-<index>` name.
fn index_of(name: &str) -> u64 {
    name.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// Most expendable first: not running, then not ready, then highest index.
fn removal_order(a: &ObservedPod, b: &ObservedPod) -> std::cmp::Ordering {
    let rank = |p: &ObservedPod| (p.phase == PodPhase::Running, p.ready, std::cmp::Reverse(index_of(&p.name)));
    rank(a).cmp(&rank(b))
}

/// What the scheduler says about its workers, or why it could not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedulerView {
    Reachable { workers: BTreeSet<String> },
    Unreachable { reason: String },
}

/// How each leaving pod goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removals {
    /// Registered workers: `retire_workers` first, their pods deleted after.
    pub retire: Vec<String>,
    /// Hold no data (never started, ended, or unknown to the scheduler):
    /// deleted at once.
    pub delete: Vec<String>,
    /// Might hold data, but the scheduler cannot be asked to retire them:
    /// kept, and a condition says why.
    pub blocked: Vec<String>,
}

/// Whether routing these pods needs the scheduler's worker list.
pub fn needs_scheduler(leaving: &[ObservedPod]) -> bool {
    leaving.iter().any(|p| !matches!(p.phase, PodPhase::Pending | PodPhase::Succeeded | PodPhase::Failed))
}

/// Splits leaving pods into retire, delete at once, and blocked. A pod that
/// may hold data is never deleted without the scheduler having retired it.
pub fn route_removals(leaving: &[ObservedPod], scheduler: Option<&SchedulerView>) -> Removals {
    let mut out = Removals::default();
    for pod in leaving {
        if matches!(pod.phase, PodPhase::Pending | PodPhase::Succeeded | PodPhase::Failed) {
            out.delete.push(pod.name.clone());
            continue;
        }
        match scheduler {
            Some(SchedulerView::Reachable { workers }) if workers.contains(&pod.name) => {
                out.retire.push(pod.name.clone())
            }
            Some(SchedulerView::Reachable { .. }) => out.delete.push(pod.name.clone()),
            Some(SchedulerView::Unreachable { .. }) | None => out.blocked.push(pod.name.clone()),
        }
    }
    out
}

/// A `metav1.Condition`, keeping the previous transition time when the
/// status did not change (so `kubectl describe` shows since when).
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The cluster's one-word summary for `kubectl get`.
pub fn cluster_phase(scheduler_ready: bool, desired: u32, counts: GroupCounts, rolling: bool) -> &'static str {
    if !scheduler_ready {
        "Pending"
    } else if rolling {
        "Updating"
    } else if counts.replicas != desired || counts.ready != desired {
        "Scaling"
    } else {
        "Running"
    }
}

/// What a DaskJob's children say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobObserved {
    pub cluster_exists: bool,
    pub scheduler_ready: bool,
    pub runner_exists: bool,
    /// The runner Job's Complete condition is True.
    pub runner_succeeded: bool,
    /// The runner Job's Failed condition is True (backoffLimit or deadline).
    pub runner_failed: bool,
}

/// What to do for a DaskJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobPlan {
    pub phase: JobPhase,
    pub apply_cluster: bool,
    pub create_runner: bool,
    pub delete_cluster: bool,
}

/// The DaskJob lifecycle: cluster first, the runner once the scheduler is
/// ready, and the cluster torn down when the runner has ended. A finished
/// job stays finished.
pub fn plan_job(previous: Option<JobPhase>, observed: JobObserved) -> JobPlan {
    let finished = match previous {
        Some(p) if p.is_finished() => Some(p),
        _ if observed.runner_failed => Some(JobPhase::Failed),
        _ if observed.runner_succeeded => Some(JobPhase::Succeeded),
        _ => None,
    };
    if let Some(phase) = finished {
        return JobPlan { phase, apply_cluster: false, create_runner: false, delete_cluster: observed.cluster_exists };
    }
    let phase = if observed.runner_exists {
        JobPhase::Running
    } else if observed.scheduler_ready {
        JobPhase::ClusterReady
    } else {
        JobPhase::Pending
    };
    // The runner starts once the scheduler is ready; once made it is left alone.
    let create_runner = !observed.runner_exists && observed.scheduler_ready;
    JobPlan {
        phase: if create_runner { JobPhase::Running } else { phase },
        apply_cluster: true,
        create_runner,
        delete_cluster: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, revision: &str, phase: PodPhase, ready: bool) -> ObservedPod {
        ObservedPod { name: name.into(), revision: revision.into(), phase, ready, retiring: false, terminating: false }
    }
    fn ready(name: &str, revision: &str) -> ObservedPod {
        pod(name, revision, PodPhase::Running, true)
    }
    fn target(replicas: u32, revision: &str) -> GroupTarget {
        GroupTarget { name_prefix: "c-worker".into(), replicas, revision: revision.into(), max_surge: 1 }
    }
    fn names(pods: &[ObservedPod]) -> Vec<&str> {
        pods.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn creates_the_missing_workers_with_the_lowest_free_indices() {
        let plan = plan_workers(&target(3, "a"), &[ready("c-worker-1", "a")], &[]);
        assert_eq!(plan.create, ["c-worker-0", "c-worker-2"]);
        assert!(plan.leaving.is_empty());
        assert_eq!(plan.counts, GroupCounts { replicas: 1, ready: 1, updated: 1 });
    }

    #[test]
    fn names_other_objects_hold_are_skipped() {
        // Cluster `a` with group `b-default` and cluster `a-b` share the
        // prefix `a-b-default-worker`: each skips the other's pods.
        let held = ["c-worker-0".to_string(), "c-worker-2".to_string()];
        let plan = plan_workers(&target(3, "a"), &[ready("c-worker-1", "a")], &held);
        assert_eq!(plan.create, ["c-worker-3", "c-worker-4"]);
    }

    #[test]
    fn counts_after_creation_include_the_new_pods_as_not_ready() {
        let plan = plan_workers(&target(3, "a"), &[ready("c-worker-1", "a")], &[]);
        assert_eq!(plan.counts_after_creation(), GroupCounts { replicas: 3, ready: 1, updated: 3 });
        let converged = plan_workers(&target(1, "a"), &[ready("c-worker-0", "a")], &[]);
        assert_eq!(converged.counts_after_creation(), converged.counts);
        // A rollout's surge pod counts as updated, the old ones stay counted.
        let rolling = plan_workers(&target(1, "new"), &[ready("c-worker-0", "old")], &[]);
        assert_eq!(rolling.counts_after_creation(), GroupCounts { replicas: 2, ready: 1, updated: 1 });
    }

    #[test]
    fn converged_group_does_nothing() {
        let pods = [ready("c-worker-0", "a"), ready("c-worker-1", "a")];
        let plan = plan_workers(&target(2, "a"), &pods, &[]);
        assert_eq!(
            plan,
            WorkerPlan { counts: GroupCounts { replicas: 2, ready: 2, updated: 2 }, ..Default::default() }
        );
    }

    #[test]
    fn scale_down_picks_not_ready_then_highest_index() {
        let pods = [
            ready("c-worker-0", "a"),
            ready("c-worker-1", "a"),
            pod("c-worker-2", "a", PodPhase::Running, false),
            ready("c-worker-3", "a"),
            pod("c-worker-4", "a", PodPhase::Pending, false),
        ];
        let plan = plan_workers(&target(2, "a"), &pods, &[]);
        assert_eq!(names(&plan.leaving), ["c-worker-4", "c-worker-2", "c-worker-3"]);
        assert!(plan.create.is_empty());
    }

    #[test]
    fn ended_and_retiring_pods_leave_and_are_replaced_under_fresh_names() {
        let mut retiring = ready("c-worker-1", "a");
        retiring.retiring = true;
        let mut terminating = ready("c-worker-2", "a");
        terminating.terminating = true;
        let pods = [pod("c-worker-0", "a", PodPhase::Failed, false), retiring, terminating];
        let plan = plan_workers(&target(2, "a"), &pods, &[]);
        assert_eq!(names(&plan.leaving), ["c-worker-0", "c-worker-1"]);
        // Names held by pods still present are not reused.
        assert_eq!(plan.create, ["c-worker-3", "c-worker-4"]);
    }

    #[test]
    fn rollout_surges_one_then_retires_one_old_worker_per_ready_new_one() {
        let t = target(3, "new");
        let old = [ready("c-worker-0", "old"), ready("c-worker-1", "old"), ready("c-worker-2", "old")];
        // Step 1: one new pod beyond the desired three; nobody leaves yet.
        let plan = plan_workers(&t, &old, &[]);
        assert_eq!(plan.create, ["c-worker-3"]);
        assert!(plan.leaving.is_empty());
        assert!(plan.rolling);
        // Step 2: the new pod exists but is not ready: wait.
        let mut pods = old.to_vec();
        pods.push(pod("c-worker-3", "new", PodPhase::Running, false));
        let plan = plan_workers(&t, &pods, &[]);
        assert!(plan.create.is_empty() && plan.leaving.is_empty(), "{plan:?}");
        // Step 3: it is ready: one old worker leaves (the highest index),
        // and the next new one starts in its place (its name is still taken).
        pods[3].ready = true;
        let plan = plan_workers(&t, &pods, &[]);
        assert_eq!(names(&plan.leaving), ["c-worker-2"]);
        assert_eq!(plan.create, ["c-worker-4"]);
        // Step 4: the old one has gone, the new one is not ready yet: wait.
        pods.remove(2);
        pods.push(pod("c-worker-4", "new", PodPhase::Pending, false));
        let plan = plan_workers(&t, &pods, &[]);
        assert!(plan.create.is_empty() && plan.leaving.is_empty(), "{plan:?}");
    }

    #[test]
    fn rollout_converges_to_all_new_workers() {
        let t = GroupTarget { max_surge: 2, ..target(5, "new") };
        let mut pods: Vec<ObservedPod> = (0..5).map(|i| ready(&format!("c-worker-{i}"), "old")).collect();
        for _round in 0..20 {
            let plan = plan_workers(&t, &pods, &[]);
            // Never fewer than the desired number of ready workers.
            let ready_after = pods.iter().filter(|p| p.ready && !plan.leaving.iter().any(|l| l.name == p.name)).count();
            assert!(ready_after >= 5, "availability dropped to {ready_after}: {plan:?}");
            assert!(plan.leaving.len() <= 2 && plan.create.len() <= 2, "more than maxSurge at a time: {plan:?}");
            pods.retain(|p| !plan.leaving.iter().any(|l| l.name == p.name));
            pods.extend(plan.create.iter().map(|n| ready(n, "new")));
        }
        assert_eq!(pods.len(), 5);
        assert!(pods.iter().all(|p| p.revision == "new"));
    }

    #[test]
    fn old_pods_that_are_not_ready_are_replaced_at_once() {
        let pods =
            [pod("c-worker-0", "old", PodPhase::Pending, false), pod("c-worker-1", "old", PodPhase::Pending, false)];
        let plan = plan_workers(&target(2, "new"), &pods, &[]);
        assert_eq!(names(&plan.leaving), ["c-worker-1", "c-worker-0"]);
        assert_eq!(plan.create, ["c-worker-2", "c-worker-3"]);
    }

    #[test]
    fn scale_down_during_rollout_removes_old_workers_first() {
        let pods = [ready("c-worker-0", "old"), ready("c-worker-1", "old"), ready("c-worker-2", "new")];
        let plan = plan_workers(&target(1, "new"), &pods, &[]);
        assert_eq!(names(&plan.leaving), ["c-worker-1", "c-worker-0"]);
        assert!(plan.create.is_empty());
    }

    #[test]
    fn busy_workers_are_retired_through_the_scheduler_and_never_deleted_blind() {
        let leaving = [
            ready("w-0", "a"),
            ready("w-1", "a"),
            pod("w-2", "a", PodPhase::Pending, false),
            pod("w-3", "a", PodPhase::Failed, false),
        ];
        assert!(needs_scheduler(&leaving));
        let known = SchedulerView::Reachable { workers: ["w-0".to_string()].into() };
        let r = route_removals(&leaving, Some(&known));
        assert_eq!(r.retire, ["w-0"]);
        assert_eq!(r.delete, ["w-1", "w-2", "w-3"]);
        assert!(r.blocked.is_empty());

        let down = SchedulerView::Unreachable { reason: "connection refused".into() };
        let r = route_removals(&leaving, Some(&down));
        assert!(r.retire.is_empty());
        assert_eq!(r.delete, ["w-2", "w-3"]);
        assert_eq!(r.blocked, ["w-0", "w-1"]);
        assert!(!needs_scheduler(&leaving[2..]));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1).expect("time"));
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(2).expect("time"));
        let c1 = condition(&[], "SchedulerReady", true, "Ready", "up", Some(1), &t1);
        let c2 = condition(std::slice::from_ref(&c1), "SchedulerReady", true, "Ready", "up", Some(2), &t2);
        assert_eq!(c2.last_transition_time, t1);
        let c3 = condition(&[c2], "SchedulerReady", false, "NotReady", "down", Some(2), &t2);
        assert_eq!(c3.last_transition_time, t2);
        assert_eq!(c3.status, "False");
    }

    #[test]
    fn phases() {
        let c = |replicas, ready| GroupCounts { replicas, ready, updated: replicas };
        assert_eq!(cluster_phase(false, 2, c(2, 2), false), "Pending");
        assert_eq!(cluster_phase(true, 2, c(2, 2), true), "Updating");
        assert_eq!(cluster_phase(true, 3, c(2, 2), false), "Scaling");
        assert_eq!(cluster_phase(true, 2, c(2, 2), false), "Running");
    }

    #[test]
    fn job_lifecycle() {
        let o = JobObserved::default();
        let p = plan_job(None, o);
        assert_eq!((p.phase, p.apply_cluster, p.create_runner), (JobPhase::Pending, true, false));
        let o = JobObserved { cluster_exists: true, scheduler_ready: true, ..o };
        let p = plan_job(Some(JobPhase::Pending), o);
        assert_eq!((p.phase, p.create_runner), (JobPhase::Running, true));
        let o = JobObserved { runner_exists: true, ..o };
        let p = plan_job(Some(JobPhase::Running), o);
        assert_eq!((p.phase, p.create_runner, p.delete_cluster), (JobPhase::Running, false, false));
        let done = JobObserved { runner_succeeded: true, ..o };
        let p = plan_job(Some(JobPhase::Running), done);
        assert_eq!((p.phase, p.delete_cluster, p.apply_cluster), (JobPhase::Succeeded, true, false));
        let failed = JobObserved { runner_failed: true, ..o };
        assert_eq!(plan_job(Some(JobPhase::Running), failed).phase, JobPhase::Failed);
        // Finished stays finished, even if the runner Job is later removed by its TTL.
        let gone = JobObserved::default();
        let p = plan_job(Some(JobPhase::Succeeded), gone);
        assert_eq!(
            (p.phase, p.apply_cluster, p.create_runner, p.delete_cluster),
            (JobPhase::Succeeded, false, false, false)
        );
    }
}
