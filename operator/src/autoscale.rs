//! The autoscaler's decision, a pure function: observations in (what the
//! scheduler asks for this group, the replicas, how many workers are still
//! starting, the bounds and knobs, what was decided before, the time), a
//! decision out (the replicas to have, the direction, and a sentence for the
//! Event and the status). The controller gathers the inputs and carries the
//! decision out; nothing here touches the network or reads a clock.
//!
//! The rules, against the failure modes of other autoscalers:
//! - **Up at once**: a higher recommendation is taken on the next decision,
//!   unless the scale-up cooldown since the previous scale-up still runs.
//! - **Down slowly**: only to the highest recommendation seen during the
//!   stabilization window (Kubernetes HPA's rule), at most `scaleDownStep`
//!   workers per decision, and not within the scale-down cooldown after any
//!   scale. A brief lull therefore never retires workers, and a cluster does
//!   not oscillate between minimum and maximum.
//! - **Starting workers count**: the recommendation is compared with the
//!   replicas, which include pods not yet ready, so workers still starting
//!   are never asked for twice. While some are starting, a lower target is
//!   not trusted (the scheduler has not met them yet): no scale-down until
//!   they are up or a stabilization window has passed since the last scale.
//! - **Bounds** are per group (a DaskCluster's default group, each
//!   DaskWorkerGroup). Replicas set outside them by hand are brought back
//!   at once.
//! - **Scheduler unknown**: when the adaptive target cannot be read, hold.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::crd::AutoscalingSpec;

/// The knobs of one group, from its `autoscaling` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub minimum: u32,
    pub maximum: u32,
    pub stabilization: Duration,
    /// Workers removed per decision at most; 0: no limit.
    pub scale_down_step: u32,
    pub scale_up_cooldown: Duration,
    pub scale_down_cooldown: Duration,
}

fn seconds(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

impl Policy {
    pub fn from_spec(spec: &AutoscalingSpec) -> Policy {
        let minimum = u32::try_from(spec.minimum).unwrap_or(0);
        Policy {
            minimum,
            maximum: u32::try_from(spec.maximum).unwrap_or(0).max(minimum),
            stabilization: seconds(spec.scale_down_stabilization_seconds),
            scale_down_step: u32::try_from(spec.scale_down_step).unwrap_or(0),
            scale_up_cooldown: seconds(spec.scale_up_cooldown_seconds),
            scale_down_cooldown: seconds(spec.scale_down_cooldown_seconds),
        }
    }

    fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.minimum, self.maximum)
    }
}

/// What the scheduler asks for this group, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demand {
    pub workers: u32,
    pub reason: String,
}

/// What the controller observed for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub now: Instant,
    /// The group's replicas (spec): running, starting and yet to be made.
    pub replicas: u32,
    /// Of those, not ready yet (starting or yet to be made).
    pub starting: u32,
    /// `None`: the scheduler's adaptive target could not be read.
    pub demand: Option<Demand>,
}

/// What one group's autoscaler remembers between decisions (in memory: an
/// operator restart starts afresh, and then waits a full window before it
/// scales down).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Recommendations with their time, covering the stabilization window.
    recommendations: VecDeque<(Instant, u32)>,
    last_scale_up: Option<Instant>,
    /// The last change in either direction.
    last_scale: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Hold,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "Up",
            Direction::Down => "Down",
            Direction::Hold => "Hold",
        }
    }
}

/// What the rules decided, with a one-word kind for the Event's reason
/// (`ScaledUp`, `ScaledDown`, `AtTarget`, `ScaleDownDeferred`,
/// `ScaleUpCooldown`, `ScaleDownCooldown`, `WorkersStarting`,
/// `SchedulerUnavailable`) and a sentence for its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub replicas: u32,
    pub direction: Direction,
    pub kind: &'static str,
    pub reason: String,
}

impl Decision {
    fn hold(replicas: u32, kind: &'static str, reason: String) -> Decision {
        Decision { replicas, direction: Direction::Hold, kind, reason }
    }

    fn change(replicas: u32, direction: Direction, reason: String) -> Decision {
        let kind = if direction == Direction::Up { "ScaledUp" } else { "ScaledDown" };
        Decision { replicas, direction, kind, reason }
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0} s") } else { format!("{s:.1} s") }
}

/// Decides one group's replicas. `history` is the group's own, kept by the
/// caller; it is updated with this decision.
pub fn decide(policy: &Policy, obs: &Observation, history: &mut History) -> Decision {
    let now = obs.now;
    let current = obs.replicas;
    let bounds = format!("[{}, {}]", policy.minimum, policy.maximum);
    let changed = |history: &mut History, direction: Direction| {
        history.last_scale = Some(now);
        if direction == Direction::Up {
            history.last_scale_up = Some(now);
        }
    };

    // Replicas set outside the bounds (by hand, or the bounds changed).
    if current != policy.clamp(current) {
        let replicas = policy.clamp(current);
        let direction = if replicas > current { Direction::Up } else { Direction::Down };
        changed(history, direction);
        history.recommendations.clear();
        history.recommendations.push_back((now, replicas));
        let reason = format!("{current} workers is outside the autoscaling bounds {bounds}: {current} → {replicas}");
        return Decision::change(replicas, direction, reason);
    }

    let Some(demand) = &obs.demand else {
        return Decision::hold(
            current,
            "SchedulerUnavailable",
            format!("the scheduler's adaptive target is unavailable: holding {current} workers"),
        );
    };
    let recommendation = policy.clamp(demand.workers);
    let clamped = if recommendation == demand.workers { String::new() } else { format!(", within {bounds}") };

    // The window: the current replicas count as a recommendation made when
    // the history began, so a fresh operator waits a full window.
    if history.recommendations.is_empty() {
        history.recommendations.push_back((now, current));
    }
    history.recommendations.push_back((now, recommendation));
    // Keep one entry at or before the window's start: it was in force then.
    while history.recommendations.len() > 1
        && history.recommendations.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= policy.stabilization)
    {
        history.recommendations.pop_front();
    }

    if recommendation > current {
        if let Some(left) = history
            .last_scale_up
            .map(|t| policy.scale_up_cooldown.saturating_sub(now.duration_since(t)))
            .filter(|left| !left.is_zero())
        {
            return Decision::hold(
                current,
                "ScaleUpCooldown",
                format!(
                    "{}; scale-up {current} → {recommendation} waits for the scale-up cooldown ({} left)",
                    demand.reason,
                    secs(left)
                ),
            );
        }
        changed(history, Direction::Up);
        let reason = format!("{}; {current} → {recommendation} workers{clamped}", demand.reason);
        return Decision::change(recommendation, Direction::Up, reason);
    }
    if recommendation == current {
        return Decision::hold(current, "AtTarget", format!("{}; at {current} workers{clamped}", demand.reason));
    }

    // Down: the highest recommendation of the window.
    let stabilized = history.recommendations.iter().map(|(_, r)| *r).max().unwrap_or(recommendation);
    if stabilized >= current {
        return Decision::hold(
            current,
            "ScaleDownDeferred",
            format!(
                "{}; scale-down {current} → {recommendation} deferred: the {} stabilization window holds a recommendation of {stabilized}",
                demand.reason,
                secs(policy.stabilization)
            ),
        );
    }
    let recent_scale = history.last_scale.map(|t| now.duration_since(t));
    if obs.starting > 0 && recent_scale.is_some_and(|d| d < policy.stabilization) {
        return Decision::hold(
            current,
            "WorkersStarting",
            format!(
                "{}; scale-down {current} → {stabilized} deferred: {} workers are still starting",
                demand.reason, obs.starting
            ),
        );
    }
    if let Some(left) =
        recent_scale.map(|d| policy.scale_down_cooldown.saturating_sub(d)).filter(|left| !left.is_zero())
    {
        return Decision::hold(
            current,
            "ScaleDownCooldown",
            format!(
                "{}; scale-down {current} → {stabilized} waits for the scale-down cooldown ({} left)",
                demand.reason,
                secs(left)
            ),
        );
    }
    let step = if policy.scale_down_step == 0 { u32::MAX } else { policy.scale_down_step };
    let replicas = stabilized.max(current.saturating_sub(step));
    let stepped = if replicas > stabilized { format!(" (at most {step} at a time)") } else { String::new() };
    changed(history, Direction::Down);
    let reason = format!(
        "{}; {current} → {replicas} workers{stepped}{clamped}, after a {} stabilization window",
        demand.reason,
        secs(policy.stabilization)
    );
    Decision::change(replicas, Direction::Down, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            minimum: 1,
            maximum: 10,
            stabilization: Duration::from_secs(60),
            scale_down_step: 0,
            scale_up_cooldown: Duration::ZERO,
            scale_down_cooldown: Duration::ZERO,
        }
    }

    /// Drives one group through a sequence of (seconds, scheduler target)
    /// with pods that start at once; returns the replicas after each step.
    struct Sim {
        policy: Policy,
        history: History,
        t0: Instant,
        replicas: u32,
        starting: u32,
    }

    impl Sim {
        fn new(policy: Policy, replicas: u32) -> Sim {
            Sim { policy, history: History::default(), t0: Instant::now(), replicas, starting: 0 }
        }

        fn at(&mut self, second: u64, target: Option<u32>) -> Decision {
            let obs = Observation {
                now: self.t0 + Duration::from_secs(second),
                replicas: self.replicas,
                starting: self.starting,
                demand: target.map(|workers| Demand { workers, reason: format!("target {workers}") }),
            };
            let d = decide(&self.policy, &obs, &mut self.history);
            self.replicas = d.replicas;
            d
        }
    }

    #[test]
    fn scales_up_at_once_to_the_target_within_the_bounds() {
        let mut s = Sim::new(policy(), 1);
        let d = s.at(0, Some(4));
        assert_eq!((d.replicas, d.direction), (4, Direction::Up));
        assert_eq!(d.reason, "target 4; 1 → 4 workers");
        let d = s.at(1, Some(50));
        assert_eq!((d.replicas, d.direction), (10, Direction::Up));
        assert!(d.reason.ends_with("4 → 10 workers, within [1, 10]"), "{}", d.reason);
        let d = s.at(2, Some(12));
        assert_eq!((d.replicas, d.direction), (10, Direction::Hold));
    }

    #[test]
    fn scales_down_only_after_the_window_to_its_highest_recommendation() {
        let mut s = Sim::new(policy(), 1);
        s.at(0, Some(8));
        let d = s.at(10, Some(0));
        assert_eq!((d.replicas, d.direction), (8, Direction::Hold));
        assert!(
            d.reason.contains("deferred: the 60 s stabilization window holds a recommendation of 8"),
            "{}",
            d.reason
        );
        s.at(30, Some(3));
        assert_eq!(s.at(59, Some(0)).replicas, 8, "the 8 of second 0 is still in the window");
        // The 8 was in force until second 10 (when 1 replaced it): it
        // leaves the window at 70. The 3 of second 30 (until 59) has not.
        assert_eq!(s.at(69, Some(0)).replicas, 8);
        let d = s.at(70, Some(0));
        assert_eq!((d.replicas, d.direction), (3, Direction::Down));
        assert_eq!(s.at(118, Some(0)).replicas, 3);
        let d = s.at(120, Some(0));
        assert_eq!((d.replicas, d.direction), (1, Direction::Down), "minimum, never 0");
        assert!(d.reason.contains("3 → 1 workers, within [1, 10], after a 60 s stabilization window"), "{}", d.reason);
    }

    #[test]
    fn a_noisy_target_does_not_flap() {
        // A target that jumps between 1 and 6 every few seconds, for ten
        // minutes: one scale-up, no scale-down while the highs keep coming.
        let mut s = Sim::new(policy(), 1);
        let mut changes = 0;
        let mut previous = s.replicas;
        for second in 0..600u64 {
            let target = if (second / 7) % 2 == 0 { 6 } else { 1 };
            let d = s.at(second, Some(target));
            if d.replicas != previous {
                changes += 1;
                previous = d.replicas;
            }
        }
        assert_eq!(changes, 1, "the replicas changed {changes} times");
        assert_eq!(s.replicas, 6);
        // Once the highs stop, one step down after the window.
        for second in 600..700u64 {
            s.at(second, Some(1));
        }
        assert_eq!(s.replicas, 1);
    }

    #[test]
    fn the_step_limits_each_scale_down_and_the_cooldown_spaces_them() {
        let p = Policy {
            scale_down_step: 2,
            scale_down_cooldown: Duration::from_secs(10),
            stabilization: Duration::ZERO,
            ..policy()
        };
        let mut s = Sim::new(p, 7);
        let d = s.at(0, Some(1));
        assert_eq!((d.replicas, d.direction), (5, Direction::Down));
        assert!(d.reason.contains("7 → 5 workers (at most 2 at a time)"), "{}", d.reason);
        let d = s.at(5, Some(1));
        assert_eq!((d.replicas, d.direction), (5, Direction::Hold));
        assert!(d.reason.contains("waits for the scale-down cooldown (5 s left)"), "{}", d.reason);
        assert_eq!(s.at(10, Some(1)).replicas, 3);
        assert_eq!(s.at(20, Some(1)).replicas, 1);
    }

    #[test]
    fn up_and_down_cooldowns_are_separate() {
        let p = Policy {
            scale_up_cooldown: Duration::from_secs(30),
            scale_down_cooldown: Duration::from_secs(5),
            stabilization: Duration::ZERO,
            ..policy()
        };
        let mut s = Sim::new(p, 1);
        assert_eq!(s.at(0, Some(3)).replicas, 3);
        // A second scale-up waits for the up cooldown...
        let d = s.at(10, Some(6));
        assert_eq!((d.replicas, d.direction), (3, Direction::Hold));
        assert!(d.reason.contains("scale-up cooldown (20 s left)"), "{}", d.reason);
        assert_eq!(s.at(30, Some(6)).replicas, 6);
        // ...a scale-down only for the (shorter) down cooldown after it.
        assert_eq!(s.at(33, Some(1)).replicas, 6);
        assert_eq!(s.at(35, Some(1)).replicas, 1);
        // And a scale-up right after a scale-down is not held by the down cooldown.
        let p = Policy { scale_up_cooldown: Duration::ZERO, ..s.policy.clone() };
        s.policy = p;
        assert_eq!(s.at(36, Some(4)).replicas, 4);
    }

    #[test]
    fn starting_workers_count_toward_capacity() {
        let p = Policy { stabilization: Duration::from_secs(20), ..policy() };
        let mut s = Sim::new(p, 1);
        assert_eq!(s.at(0, Some(4)).replicas, 4);
        // Three pods are starting; the scheduler has not met them and still
        // asks for 4: nothing more is added (no double counting).
        s.starting = 3;
        let d = s.at(1, Some(4));
        assert_eq!((d.replicas, d.direction), (4, Direction::Hold));
        // The work ended before they came up: the target is 1, but a
        // scale-down waits for them (or for the window after the scale-up).
        for second in 2..19 {
            assert_eq!(s.at(second, Some(1)).replicas, 4, "second {second}");
        }
        // The window has passed with 1s only. Pods that still have not
        // started do not hold the cluster up forever.
        let d = s.at(40, Some(1));
        assert_eq!((d.replicas, d.direction), (1, Direction::Down));
    }

    #[test]
    fn starting_workers_hold_the_next_scale_down_until_they_are_up() {
        let p = Policy { stabilization: Duration::from_secs(10), scale_down_step: 3, ..policy() };
        let mut s = Sim::new(p, 8);
        assert_eq!(s.at(0, Some(1)).replicas, 8, "a fresh history waits a window");
        let d = s.at(11, Some(1));
        assert_eq!((d.replicas, d.direction), (5, Direction::Down));
        // Two workers are being replaced (say, they crashed): the group is
        // not settled, so the next step waits for them...
        s.starting = 2;
        let d = s.at(12, Some(1));
        assert_eq!((d.replicas, d.direction), (5, Direction::Hold));
        assert!(d.reason.contains("2 workers are still starting"), "{}", d.reason);
        // ...until they are up,
        s.starting = 0;
        assert_eq!(s.at(13, Some(1)).replicas, 2);
        // or a window after the last scale, so pods that never start do
        // not pin the cluster.
        s.starting = 1;
        assert_eq!(s.at(20, Some(1)).replicas, 2);
        assert_eq!(s.at(24, Some(1)).replicas, 1);
    }

    #[test]
    fn per_group_bounds() {
        // The same scheduler target, two groups with their own bounds.
        let small = Policy { minimum: 0, maximum: 2, ..policy() };
        let large = Policy { minimum: 3, maximum: 20, ..policy() };
        let mut a = Sim::new(small, 0);
        let mut b = Sim::new(large, 3);
        assert_eq!(a.at(0, Some(8)).replicas, 2);
        assert_eq!(b.at(0, Some(8)).replicas, 8);
        // Replicas set by hand outside the bounds are brought back at once.
        let mut c = Sim::new(Policy { minimum: 2, maximum: 4, ..policy() }, 9);
        let d = c.at(0, Some(9));
        assert_eq!((d.replicas, d.direction), (4, Direction::Down));
        assert!(d.reason.contains("outside the autoscaling bounds [2, 4]"), "{}", d.reason);
        let mut c = Sim::new(Policy { minimum: 2, maximum: 4, ..policy() }, 0);
        assert_eq!(c.at(0, None).replicas, 2);
    }

    #[test]
    fn an_unknown_target_holds() {
        let mut s = Sim::new(policy(), 5);
        let d = s.at(0, None);
        assert_eq!((d.replicas, d.direction), (5, Direction::Hold));
        assert!(d.reason.contains("unavailable"), "{}", d.reason);
    }

    #[test]
    fn a_fresh_history_waits_a_full_window_before_scaling_down() {
        // An operator restart: the replicas it finds count as a recommendation.
        let mut s = Sim::new(policy(), 6);
        assert_eq!(s.at(0, Some(1)).replicas, 6);
        assert_eq!(s.at(59, Some(1)).replicas, 6);
        assert_eq!(s.at(61, Some(1)).replicas, 1);
    }

    #[test]
    fn a_zero_window_scales_down_at_once() {
        let mut s = Sim::new(Policy { stabilization: Duration::ZERO, ..policy() }, 3);
        let d = s.at(0, Some(0));
        assert_eq!((d.replicas, d.direction), (1, Direction::Down));
    }
}
