//! The deployments a commit ends, as the store reports them to its hook (what
//! `slipway_deployments_total` counts): each move from `IN_PROGRESS` to an outcome once,
//! whichever write made it, and nothing else. On SQLite and, when `SLIPWAY_TEST_POSTGRES`
//! is set, on PostgreSQL.

use std::sync::{Arc, Mutex};

use slipway_core::model::{DeploymentConfig, RolloutState, ServiceKey, ServiceKind};
use slipway_store::testing::{container, stores};
use slipway_store::{Batch, NewDeployment, Outcome, RevisionChoice, Store, Write};

fn new(id: &str, key: &ServiceKey, rollback_of: Option<&str>, now: i64) -> NewDeployment {
    NewDeployment {
        id: id.into(),
        key: key.clone(),
        kind: ServiceKind::BackendService,
        desired_count: 1,
        config: DeploymentConfig::default(),
        placement: Default::default(),
        revision: match rollback_of {
            Some(_) => RevisionChoice::Existing(1),
            None => RevisionChoice::Register {
                container: Box::new(container("a:1")),
                source: None,
                ecs: None,
            },
        },
        rollback_of: rollback_of.map(str::to_owned),
        now,
        service_version: 0,
        event: None,
    }
}

async fn deploy(s: &Store, mut n: NewDeployment) -> Outcome {
    n.service_version = s
        .get_service(&n.key)
        .await
        .unwrap()
        .map_or(0, |r| r.version);
    let out = s.commit(Batch::new().write(Write::Deploy(n))).await;
    out.unwrap().remove(0)
}

#[tokio::test]
async fn each_deployment_is_reported_ended_once_by_the_write_that_ended_it() {
    for (db, s) in stores().await {
        let seen: Arc<Mutex<Vec<(String, RolloutState)>>> = Arc::default();
        let log = seen.clone();
        s.on_deployment_ended(Arc::new(move |d| {
            log.lock().unwrap().push((d.id.clone(), d.state));
        }));
        let take = || std::mem::take(&mut *seen.lock().unwrap());
        let key = ServiceKey::new("shop", "default", "api");

        deploy(&s, new("d1", &key, None, 1)).await;
        assert_eq!(take(), [], "{db}: a new deployment ends nothing");
        let out = deploy(&s, new("d2", &key, None, 2)).await;
        assert_eq!(out.ended().len(), 1, "{db}");
        assert_eq!(take(), [("d1".to_owned(), RolloutState::Failed)], "{db}");

        // The controller's Finish: a write with the outcome.
        let mut d2 = s.get_deployment("d2").await.unwrap().unwrap();
        let stale = d2.clone();
        d2.state = RolloutState::Succeeded;
        d2.timeline.finished_at = Some(5_000);
        let out = s
            .commit(Batch::new().write(Write::Deployment(d2.clone())))
            .await
            .unwrap();
        d2.version = out[0].version();
        assert_eq!(take(), [("d2".to_owned(), RolloutState::Succeeded)], "{db}");
        // A later write of the ended deployment (a timeline mark) ends nothing again.
        d2.timeline.old_gone_at = Some(6_000);
        s.commit(Batch::new().write(Write::Deployment(d2.clone())))
            .await
            .unwrap();
        // Nor does a writer that lost the race (its compare-and-swap fails).
        let mut late = stale;
        late.state = RolloutState::Failed;
        assert!(
            s.commit(Batch::new().write(Write::Deployment(late)))
                .await
                .is_err()
        );
        assert_eq!(take(), [], "{db}");

        // A rollback ends the deployment it replaces as ROLLED_BACK.
        deploy(&s, new("d3", &key, None, 7)).await;
        deploy(&s, new("d4", &key, Some("d3"), 8)).await;
        assert_eq!(
            take(),
            [("d3".to_owned(), RolloutState::RolledBack)],
            "{db}"
        );
        // Rolling back a deployment that already ended (d2) does not end it twice; the
        // rollback in progress that it supersedes (d4) ends FAILED.
        deploy(&s, new("d5", &key, Some("d2"), 9)).await;
        assert_eq!(take(), [("d4".to_owned(), RolloutState::Failed)], "{db}");
        assert_eq!(
            s.get_deployment("d2").await.unwrap().unwrap().state,
            RolloutState::RolledBack,
            "{db}: the record still says so"
        );
    }
}
