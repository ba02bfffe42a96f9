//! Leader election on a `coordination.k8s.io` Lease, so that two operator
//! replicas are safe: only the holder runs the controllers (and so writes).
//!
//! The same protocol as client-go's leaderelection: the holder renews
//! `renewTime` every retry period; a candidate takes the Lease over when the
//! record has not changed for a whole lease duration, measured on its own
//! clock (so clock skew between machines does not matter). Writes use the
//! Lease's resourceVersion, so two candidates cannot both win a round. A
//! holder that cannot renew within the renew deadline stops leading; on
//! shutdown it releases the Lease so a standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tracing::{info, warn};

/// Settings of the election; the defaults are client-go's.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    /// This process's name in `holderIdentity`: unique per replica.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            lease_name: "rask-operator".into(),
            namespace: "default".into(),
            identity: "rask-operator".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one round of the election does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free, released or expired: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Wait,
}

/// Decides one round from the Lease's holder and how long the record has
/// been seen unchanged (on this process's clock).
pub fn decide(holder: Option<Option<&str>>, me: &str, unchanged_for: Duration, lease_duration: Duration) -> Decision {
    match holder {
        None => Decision::Create,
        Some(Some(h)) if h == me => Decision::Renew,
        Some(None) | Some(Some("")) => Decision::TakeOver,
        Some(Some(_)) if unchanged_for >= lease_duration => Decision::TakeOver,
        Some(Some(_)) => Decision::Wait,
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election until `shutdown` resolves, publishing whether this
/// process leads on `leading`. Releases the Lease on the way out if held.
pub async fn run_election(
    api: Api<Lease>,
    config: LeaderConfig,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_seen: Option<(Option<String>, Option<String>)> = None;
    let mut last_change = Instant::now();
    let mut last_renewed = Instant::now();
    let mut ticker = tokio::time::interval(config.retry_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let won = match api.get_opt(&config.lease_name).await {
            Err(e) => {
                warn!(error = %e, "reading the leader Lease failed");
                None
            }
            Ok(lease) => {
                let spec = lease.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
                let seen = (spec.holder_identity.clone(), spec.renew_time.as_ref().map(|t| t.0.to_string()));
                if last_seen.as_ref() != Some(&seen) {
                    last_seen = Some(seen);
                    last_change = Instant::now();
                }
                let duration = spec
                    .lease_duration_seconds
                    .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
                    .unwrap_or(config.lease_duration);
                let holder = lease.as_ref().map(|_| spec.holder_identity.as_deref());
                match decide(holder, &config.identity, last_change.elapsed(), duration) {
                    Decision::Wait => Some(false),
                    Decision::Create => Some(create(&api, &config).await),
                    decision @ (Decision::Renew | Decision::TakeOver) => {
                        let lease = lease.unwrap_or_default();
                        Some(write(&api, &config, lease, decision == Decision::TakeOver).await)
                    }
                }
            }
        };
        let was_leading = *leading.borrow();
        let is_leading = match won {
            Some(true) => {
                last_renewed = Instant::now();
                true
            }
            Some(false) => false,
            // Could not reach the API server: keep leading until the deadline.
            None => was_leading && last_renewed.elapsed() < config.renew_deadline,
        };
        if is_leading != was_leading {
            if is_leading {
                info!(identity = %config.identity, lease = %config.lease_name, "became the leader");
            } else {
                warn!(identity = %config.identity, lease = %config.lease_name, "no longer the leader");
            }
            let _ = leading.send(is_leading);
        }
    }
    if *leading.borrow() {
        release(&api, &config).await;
        let _ = leading.send(false);
    }
}

async fn create(api: &Api<Lease>, config: &LeaderConfig) -> bool {
    let lease = Lease {
        metadata: ObjectMeta { name: Some(config.lease_name.clone()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    api.create(&PostParams::default(), &lease).await.is_ok()
}

/// Renews or takes over; the resourceVersion in `lease` makes a concurrent
/// writer lose with a conflict instead of both winning.
async fn write(api: &Api<Lease>, config: &LeaderConfig, mut lease: Lease, take_over: bool) -> bool {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if take_over {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(config.identity.clone());
    spec.lease_duration_seconds = Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(15));
    spec.renew_time = Some(now());
    match api.replace(&config.lease_name, &PostParams::default(), &lease).await {
        Ok(_) => true,
        Err(e) => {
            if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                warn!(error = %e, "writing the leader Lease failed");
            }
            false
        }
    }
}

/// Gives the Lease up so a standby replica takes over without waiting.
async fn release(api: &Api<Lease>, config: &LeaderConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&config.lease_name).await {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        match api.replace(&config.lease_name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %config.lease_name, "released the leader Lease"),
            Err(e) => warn!(error = %e, "releasing the leader Lease failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_rounds() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", Duration::ZERO, d), Decision::Create);
        assert_eq!(decide(Some(Some("a")), "a", Duration::from_secs(100), d), Decision::Renew);
        assert_eq!(decide(Some(Some("b")), "a", Duration::from_secs(3), d), Decision::Wait);
        assert_eq!(decide(Some(Some("b")), "a", Duration::from_secs(15), d), Decision::TakeOver);
        assert_eq!(decide(Some(None), "a", Duration::ZERO, d), Decision::TakeOver);
        assert_eq!(decide(Some(Some("")), "a", Duration::ZERO, d), Decision::TakeOver);
    }
}
