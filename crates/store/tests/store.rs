//! The store test suite: every test runs on SQLite and, when `SLIPWAY_TEST_POSTGRES` is set
//! (always in CI), on PostgreSQL, through the one interface both implement.

use std::collections::BTreeSet;
use std::sync::Arc;

use slipway_core::model::{
    Deployment, DeploymentConfig, MAX_EVENTS, RolloutState, ServiceKey, ServiceKind, Task,
    TaskDefinition, TaskHealth, TaskStatus,
};
use slipway_store::testing::{container, shared_pairs, stores};
use slipway_store::{
    AccessKey, AuditEntry, Batch, ClusterRecord, NewDeployment, Notice, Outcome, RevisionChoice,
    Store, StoreError, Write, with_pending_audit,
};

fn new(id: &str, key: &ServiceKey, revision: RevisionChoice, now: i64) -> NewDeployment {
    NewDeployment {
        id: id.into(),
        key: key.clone(),
        kind: ServiceKind::BackendService,
        desired_count: 2,
        config: DeploymentConfig::default(),
        placement: Default::default(),
        revision,
        rollback_of: None,
        now,
        service_version: 0,
        event: Some(format!("deployment {id} started: revision {{revision}}.")),
    }
}

fn register(image: &str) -> RevisionChoice {
    RevisionChoice::Register {
        container: Box::new(container(image)),
        source: None,
        ecs: None,
    }
}

async fn deploy(s: &Store, new: NewDeployment) -> Result<Deployment, StoreError> {
    let out = s.commit(Batch::new().write(Write::Deploy(new))).await?;
    match out.into_iter().next() {
        Some(Outcome::Deployed { deployment, .. }) => Ok(*deployment),
        other => panic!("a deploy's outcome is its deployment, got {other:?}"),
    }
}

async fn service_version(s: &Store, key: &ServiceKey) -> u64 {
    s.get_service(key).await.unwrap().map_or(0, |r| r.version)
}

/// Deploys a new revision of `key` on top of whatever is there.
async fn deploy_next(s: &Store, id: &str, key: &ServiceKey, image: &str, now: i64) -> Deployment {
    let mut n = new(id, key, register(image), now);
    n.service_version = service_version(s, key).await;
    deploy(s, n).await.unwrap()
}

fn task(id: &str, key: &ServiceKey, deployment: &str, status: TaskStatus) -> Task {
    let mut t = Task::provisioning(id.into(), key.clone(), deployment.into(), 1, 1);
    t.last_status = status;
    t.desired_running = status != TaskStatus::Stopped;
    if status == TaskStatus::Running {
        t.health = TaskHealth::Healthy;
    }
    t
}

async fn put_task(s: &Store, t: &mut Task) {
    let out = s
        .commit(Batch::new().write(Write::Task(t.clone())))
        .await
        .unwrap();
    t.version = out[0].version();
}

#[tokio::test]
async fn secrets_keep_every_version() {
    for (db, s) in stores().await {
        let set = |name: &str, version: u32, value: &[u8], at: i64, expected: Option<u32>| {
            Batch::new().write(Write::Secret {
                name: name.into(),
                version,
                sealed: value.to_vec(),
                at,
                expected,
            })
        };
        assert_eq!(s.current_secret_version("shop/db").await.unwrap(), None);
        let v = |o: Vec<Outcome>| o[0].version();
        assert_eq!(
            v(s.commit(set("shop/db", 1, b"one", 1, Some(0)))
                .await
                .unwrap()),
            1
        );
        assert_eq!(
            v(s.commit(set("shop/db", 2, b"two", 2, None)).await.unwrap()),
            2
        );
        assert_eq!(
            v(s.commit(set("other", 1, b"x", 3, None)).await.unwrap()),
            1
        );
        // A writer that read version 1 loses to the one that wrote version 2.
        let err = s
            .commit(set("shop/db", 2, b"late", 4, Some(1)))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{db}: {err}");
        assert_eq!(
            s.get_secret("shop/db", None).await.unwrap(),
            Some((2, b"two".to_vec())),
            "{db}"
        );
        assert_eq!(
            s.get_secret("shop/db", Some(1)).await.unwrap(),
            Some((1, b"one".to_vec()))
        );
        let all = s.list_secrets().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[1].name.as_str(), all[1].version, all[1].versions),
            ("shop/db", 2, 2)
        );
        let del = |at| {
            Batch::new().write(Write::DeleteSecret {
                name: "shop/db".into(),
                at,
            })
        };
        assert_eq!(s.commit(del(4)).await.unwrap()[0], Outcome::Done(true));
        assert_eq!(s.commit(del(5)).await.unwrap()[0], Outcome::Done(false));
        assert_eq!(s.current_secret_version("shop/db").await.unwrap(), None);
        assert_eq!(s.get_secret("shop/db", None).await.unwrap(), None);
        // Pinned versions stay readable for the releases that use them.
        assert!(s.get_secret("shop/db", Some(2)).await.unwrap().is_some());
        // Set again: numbering continues, never reusing a version.
        assert_eq!(
            v(s.commit(set("shop/db", 3, b"three", 6, Some(0)))
                .await
                .unwrap()),
            3
        );
        assert_eq!(s.list_secrets().await.unwrap().len(), 2, "{db}");
        // A value sealed for a version that is not the next one is refused (it would not
        // open as the version it would become), and nothing is written.
        for wrong in [1, 3, 5] {
            let err = s
                .commit(set("shop/db", wrong, b"wrong", 7, None))
                .await
                .unwrap_err();
            assert!(err.is_conflict(), "{db}: version {wrong}: {err}");
        }
        assert_eq!(s.current_secret_version("shop/db").await.unwrap(), Some(3));
        let all: Vec<u32> = s
            .secret_versions("shop/db")
            .await
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(all, [1, 2, 3], "{db}");
        // Re-sealing replaces a version's value only while it is the one read.
        let reseal = |old: &[u8], sealed: &[u8]| {
            Batch::new().write(Write::ResealSecret {
                name: "shop/db".into(),
                version: 1,
                old: old.to_vec(),
                sealed: sealed.to_vec(),
            })
        };
        assert_eq!(
            s.commit(reseal(b"stale", b"resealed")).await.unwrap()[0],
            Outcome::Done(false),
            "{db}"
        );
        assert_eq!(
            s.commit(reseal(b"one", b"resealed")).await.unwrap()[0],
            Outcome::Done(true),
            "{db}"
        );
        assert_eq!(
            s.get_secret("shop/db", Some(1)).await.unwrap(),
            Some((1, b"resealed".to_vec())),
            "{db}"
        );
        // Other versions are untouched.
        assert_eq!(
            s.get_secret("shop/db", Some(2)).await.unwrap(),
            Some((2, b"two".to_vec())),
            "{db}"
        );
    }
}

#[tokio::test]
async fn task_definitions_and_access_keys_are_versioned() {
    for (db, s) in stores().await {
        let td = |image: &str| TaskDefinition {
            family: "web".into(),
            revision: 0,
            container: container(image),
            created_at: 5,
            source: None,
            ecs: Some("{}".into()),
            deregistered_at: None,
            version: 0,
        };
        let register = async |image: &str| match s
            .commit(Batch::new().write(Write::TaskDefinition(Box::new(td(image)))))
            .await
            .unwrap()
            .pop()
        {
            Some(Outcome::TaskDefinition(td)) => *td,
            other => panic!("{other:?}"),
        };
        assert_eq!(register("a:1").await.revision, 1);
        let mut two = register("a:2").await;
        assert_eq!((two.revision, two.version), (2, 1));
        let stale = two.clone();
        two.deregistered_at = Some(9);
        s.commit(Batch::new().write(Write::TaskDefinition(Box::new(two.clone()))))
            .await
            .unwrap();
        let err = s
            .commit(Batch::new().write(Write::TaskDefinition(Box::new(stale))))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{db}: {err}");
        let all = s.list_task_definitions().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[1].deregistered_at, all[1].version), (Some(9), 2));
        // Revisions are never reused.
        assert_eq!(register("a:3").await.revision, 3);

        let mut k = AccessKey {
            id: "AKIA1".into(),
            secret: "s".into(),
            sealed: None,
            name: Some("ci".into()),
            read_only: true,
            created_at: 1,
            revoked_at: None,
            owner: None,
            version: 0,
        };
        let put = async |k: &AccessKey| {
            s.commit(Batch::new().write(Write::AccessKey(k.clone())))
                .await
                .map(|o| o[0].version())
        };
        k.version = put(&k).await.unwrap();
        assert!(
            put(&AccessKey {
                version: 0,
                ..k.clone()
            })
            .await
            .unwrap_err()
            .is_conflict()
        );
        k.revoked_at = Some(2);
        k.version = put(&k).await.unwrap();
        assert_eq!(k.version, 2);
        assert_eq!(s.get_access_key("AKIA1").await.unwrap(), Some(k.clone()));
        assert_eq!(s.list_access_keys().await.unwrap(), vec![k]);
        assert!(s.get_access_key("nope").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn deployments_register_revisions_and_supersede() {
    for (db, s) in stores().await {
        let key = ServiceKey::new("shop", "default", "api");
        let d1 = deploy_next(&s, "d1", &key, "a:1", 1).await;
        assert_eq!((d1.revision, d1.version), (1, 1));
        let d2 = deploy_next(&s, "d2", &key, "a:2", 2).await;
        assert_eq!(d2.revision, 2);
        let d1 = s.get_deployment("d1").await.unwrap().unwrap();
        assert_eq!(d1.state, RolloutState::Failed);
        assert_eq!(d1.version, 2, "{db}: superseding is a write");
        assert!(d1.reason.unwrap().contains("superseded by deployment d2"));
        let svc = s.get_service(&key).await.unwrap().unwrap();
        assert_eq!((svc.revision, svc.version), (2, 2));
        assert_eq!(
            s.latest_task_definition(&key.family())
                .await
                .unwrap()
                .unwrap()
                .container
                .image,
            "a:2"
        );
        let events = s.list_events(&key, 10).await.unwrap();
        assert_eq!(events[0].message, "deployment d2 started: revision 2.");
        assert_eq!(
            events[0].version, 2,
            "{db}: the event carries the service's version"
        );

        let mut rb = new("d3", &key, RevisionChoice::Existing(1), 3);
        rb.rollback_of = Some("d2".into());
        rb.service_version = svc.version;
        let d3 = deploy(&s, rb).await.unwrap();
        assert_eq!(d3.rollback_of.as_deref(), Some("d2"));
        let d2 = s.get_deployment("d2").await.unwrap().unwrap();
        assert_eq!(d2.state, RolloutState::RolledBack);
        assert_eq!(d2.rolled_back_by.as_deref(), Some("d3"));
        let list = s.list_deployments(&key, 10).await.unwrap();
        assert_eq!(
            list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["d3", "d2", "d1"],
            "{db}"
        );
    }
}

/// A deploy from a stale read of the service changes nothing at all: no revision is
/// registered, no deployment superseded or added, no event written.
#[tokio::test]
async fn a_stale_deploy_is_refused_whole() {
    for (db, s) in stores().await {
        let key = ServiceKey::new("shop", "default", "api");
        deploy_next(&s, "d1", &key, "a:1", 1).await;
        let read = s.get_service(&key).await.unwrap().unwrap();
        // Another writer scales in between.
        let mut scaled = read.clone();
        scaled.desired_count = 7;
        s.commit(Batch::new().write(Write::Service(scaled)))
            .await
            .unwrap();

        let mut late = new("d2", &key, register("a:2"), 2);
        late.service_version = read.version;
        let err = deploy(&s, late).await.unwrap_err();
        let StoreError::Conflict(c) = err else {
            panic!("{db}: a conflict, got {err}")
        };
        assert_eq!((c.expected, c.found), (1, 2), "{db}");
        assert_eq!(c.record, "service shop/default/api");
        assert_eq!(s.list_task_definitions().await.unwrap().len(), 1, "{db}");
        let deps = s.list_deployments(&key, 10).await.unwrap();
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0].state, RolloutState::InProgress);
        assert_eq!(s.list_events(&key, 10).await.unwrap().len(), 1);
        let now = s.get_service(&key).await.unwrap().unwrap();
        assert_eq!((now.desired_count, now.revision), (7, 1));
    }
}

/// A batch is all or nothing: a conflict on its last write undoes its first ones.
#[tokio::test]
async fn a_batch_is_one_transaction() {
    for (db, s) in stores().await {
        let key = ServiceKey::new("shop", "default", "api");
        deploy_next(&s, "d1", &key, "a:1", 1).await;
        let svc = s.get_service(&key).await.unwrap().unwrap();
        let mut t = task("t1", &key, "d1", TaskStatus::Running);
        put_task(&s, &mut t).await;
        let mut stale = t.clone();
        t.health = TaskHealth::Unhealthy;
        put_task(&s, &mut t).await;

        let mut scaled = svc.clone();
        scaled.desired_count = 9;
        stale.desired_running = false;
        let err = s
            .commit(
                Batch::new()
                    .write(Write::Service(scaled))
                    .event(&key, 5, "desired count changed")
                    .write(Write::Task(stale)),
            )
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{db}: {err}");
        let now = s.get_service(&key).await.unwrap().unwrap();
        assert_eq!((now.desired_count, now.version), (2, svc.version), "{db}");
        assert_eq!(s.list_events(&key, 10).await.unwrap().len(), 1, "{db}");
        assert!(s.get_task("t1").await.unwrap().unwrap().desired_running);
    }
}

#[tokio::test]
async fn services_are_removed_only_at_the_version_read() {
    for (db, s) in stores().await {
        let key = ServiceKey::new("shop", "default", "api");
        deploy_next(&s, "d1", &key, "a:1", 1).await;
        let mut svc = s.get_service(&key).await.unwrap().unwrap();
        svc.deleting = true;
        let read = svc.version + 1;
        s.commit(Batch::new().write(Write::Service(svc)))
            .await
            .unwrap();
        // A deploy lands between the controller's read and its removal.
        deploy_next(&s, "d2", &key, "a:2", 2).await;
        let err = s
            .commit(Batch::new().write(Write::RemoveService {
                key: key.clone(),
                version: read,
            }))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{db}");
        let svc = s.get_service(&key).await.unwrap().unwrap();
        assert!(!svc.deleting, "{db}: the deploy revived it");
        s.commit(Batch::new().write(Write::RemoveService {
            key: key.clone(),
            version: svc.version,
        }))
        .await
        .unwrap();
        assert!(s.get_service(&key).await.unwrap().is_none());
        assert!(
            s.list_deployments(&key, 10).await.unwrap().is_empty(),
            "{db}"
        );
    }
}

#[tokio::test]
async fn service_views_batch_several_services() {
    for (db, s) in stores().await {
        let a = ServiceKey::new("shop", "default", "a");
        let b = ServiceKey::new("shop", "default", "b");
        let other = ServiceKey::new("shop", "prod", "a");
        for (i, key) in [&a, &b, &other].into_iter().enumerate() {
            let id = format!("d{i}");
            deploy_next(&s, &id, key, "x:1", i as i64).await;
            let mut again = new(
                &format!("{id}b"),
                key,
                RevisionChoice::Existing(1),
                10 + i as i64,
            );
            again.service_version = service_version(&s, key).await;
            deploy(&s, again).await.unwrap();
            for (at, m) in [(1, "first"), (2, "second"), (3, "third")] {
                s.commit(Batch::new().event(key, at, m)).await.unwrap();
            }
        }
        for t in [
            task("t1", &a, "d0b", TaskStatus::Running),
            task("t2", &a, "d0b", TaskStatus::Running),
            task("t3", &a, "d0", TaskStatus::Pending),
            task("t4", &a, "d0", TaskStatus::Stopped),
            task("t5", &other, "d2", TaskStatus::Running),
        ] {
            put_task(&s, &mut t.clone()).await;
        }

        let names = ["b".to_owned(), "a".to_owned(), "missing".to_owned()];
        let v = s
            .service_views("shop", "default", &names, 1, 2)
            .await
            .unwrap();
        assert_eq!(v.len(), 2, "{db}");
        assert_eq!(v[0].record.key, a);
        assert_eq!(v[1].record.key, b);
        assert_eq!(v[0].deployments.len(), 1, "newest deployment only");
        assert_eq!(v[0].deployments[0].id, "d0b");
        let msgs: Vec<&str> = v[0].events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["third", "second"]);
        let mut counts: Vec<(String, TaskStatus, u32)> = v[0]
            .tasks
            .iter()
            .map(|t| (t.deployment_id.clone(), t.last_status, t.count))
            .collect();
        counts.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            counts,
            [
                ("d0".to_owned(), TaskStatus::Pending, 1),
                ("d0b".to_owned(), TaskStatus::Running, 2)
            ],
            "{db}: stopped tasks are not counted"
        );
        assert!(v[0].tasks.iter().all(|t| t.desired_running));
        assert!(v[1].tasks.is_empty());

        let tds = s
            .get_task_definitions(&[(a.family(), 1), (b.family(), 1), (b.family(), 9)])
            .await
            .unwrap();
        assert_eq!(tds.len(), 2);

        let mut standalone = task(
            "s1",
            &ServiceKey::standalone("shop", "default"),
            "x",
            TaskStatus::Running,
        );
        put_task(&s, &mut standalone).await;
        assert_eq!(s.live_standalone_tasks().await.unwrap().len(), 1);
        standalone.last_status = TaskStatus::Stopped;
        put_task(&s, &mut standalone).await;
        assert!(s.live_standalone_tasks().await.unwrap().is_empty(), "{db}");
    }
}

/// The read caches never answer with what a finished write changed: after every kind of
/// write, the cached reads equal reads straight from the database.
#[tokio::test]
async fn cached_reads_follow_every_write() {
    for (db, s) in stores().await {
        let a = ServiceKey::new("shop", "default", "a");
        let names = ["a".to_owned(), "b".to_owned()];
        let tds = [(a.family(), 1), (a.family(), 2)];
        let check = async |step: &str| {
            // Twice: the first read may fill the cache, the second is answered from it.
            for _ in 0..2 {
                let cached = s
                    .service_views("shop", "default", &names, 10, 100)
                    .await
                    .unwrap();
                let fresh = s
                    .uncached_service_views("shop", "default", &names, 10, 100)
                    .await
                    .unwrap();
                assert_eq!(cached, fresh, "{db}: service views after {step}");
                let cached = s.get_task_definitions(&tds).await.unwrap();
                let fresh = s.list_task_definitions().await.unwrap();
                assert_eq!(cached, fresh, "{db}: task definitions after {step}");
                assert_eq!(
                    s.get_meta("k").await.unwrap(),
                    s.uncached_meta("k").await.unwrap(),
                    "{db}: meta after {step}"
                );
            }
        };
        check("nothing").await;
        deploy_next(&s, "d1", &a, "x:1", 1).await;
        check("deploy").await;
        let mut t = task("t1", &a, "d1", TaskStatus::Running);
        put_task(&s, &mut t).await;
        check("task").await;
        s.commit(Batch::new().event(&a, 2, "started"))
            .await
            .unwrap();
        check("event").await;
        let mut d = s.get_deployment("d1").await.unwrap().unwrap();
        d.state = RolloutState::Succeeded;
        s.commit(Batch::new().write(Write::Deployment(d)))
            .await
            .unwrap();
        check("deployment").await;
        let mut rec = s.get_service(&a).await.unwrap().unwrap();
        rec.desired_count = 5;
        s.commit(Batch::new().write(Write::Service(rec)))
            .await
            .unwrap();
        check("service").await;
        let mut td = s
            .get_task_definition(&a.family(), 1)
            .await
            .unwrap()
            .unwrap();
        td.deregistered_at = Some(3);
        s.commit(Batch::new().write(Write::TaskDefinition(Box::new(td.clone()))))
            .await
            .unwrap();
        check("deregistration").await;
        td.version = 0;
        s.commit(Batch::new().write(Write::TaskDefinition(Box::new(td))))
            .await
            .unwrap();
        check("registration").await;
        s.set_meta("k", "v").await.unwrap();
        check("meta").await;
        let v = service_version(&s, &a).await;
        s.commit(Batch::new().write(Write::RemoveService {
            key: a.clone(),
            version: v,
        }))
        .await
        .unwrap();
        check("removal").await;
        assert!(
            s.service_views("shop", "default", &names, 10, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// Another server's commits reach this one's caches and controller (PostgreSQL: through
/// LISTEN/NOTIFY; two SQLite stores on one file share no notices, so only PostgreSQL is
/// asked for them).
#[tokio::test]
async fn other_servers_commits_are_noticed() {
    let dir = tempfile::tempdir().unwrap();
    for (db, a, b) in shared_pairs(dir.path()).await {
        let key = ServiceKey::new("shop", "default", "api");
        deploy_next(&a, "d1", &key, "x:1", 1).await;
        // B caches the view.
        let names = ["api".to_owned()];
        let seen = b
            .service_views("shop", "default", &names, 1, 1)
            .await
            .unwrap();
        assert_eq!(seen[0].record.desired_count, 2);
        let mut sub_a = a.subscribe();
        let mut sub_b = b.subscribe();
        let mut rec = a.get_service(&key).await.unwrap().unwrap();
        rec.desired_count = 4;
        a.commit(Batch::new().write(Write::Service(rec)).notify(&key))
            .await
            .unwrap();
        // The committing store notices at once.
        assert_eq!(sub_a.recv().await.unwrap(), Notice::Service(key.clone()));
        if db == "postgres" {
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), sub_b.recv())
                .await
                .expect("the other server hears of the commit")
                .unwrap();
            assert_eq!(got, Notice::Service(key.clone()));
            // ...and its cache no longer answers with what it read before.
            let now = b
                .service_views("shop", "default", &names, 1, 1)
                .await
                .unwrap();
            assert_eq!(now[0].record.desired_count, 4);
        }
    }
}

#[tokio::test]
async fn events_are_bounded_newest_first_and_say_what_changed() {
    for (db, s) in stores().await {
        let key = ServiceKey::new("shop", "default", "api");
        for i in 0..(MAX_EVENTS + 20) {
            s.commit(Batch::new().event(&key, i, format!("event {i}")))
                .await
                .unwrap();
        }
        let ev = s.list_events(&key, 1000).await.unwrap();
        assert_eq!(ev.len() as i64, MAX_EVENTS, "{db}");
        assert_eq!(ev[0].message, format!("event {}", MAX_EVENTS + 19));

        let svc = ServiceKey::new("shop", "default", "web");
        deploy_next(&s, "d1", &svc, "x:1", 1).await;
        let read = s.get_service(&svc).await.unwrap().unwrap();
        deploy_next(&s, "d2", &svc, "x:2", 2).await;
        // What the controller reports at a version is not a change.
        s.commit(Batch::new().event(&svc, 3, "has started 2 tasks."))
            .await
            .unwrap();
        let mut rec = s.get_service(&svc).await.unwrap().unwrap();
        rec.desired_count = 3;
        s.commit(Batch::new().write(Write::Service(rec)).event(
            &svc,
            3,
            "desired count changed from 2 to 3.",
        ))
        .await
        .unwrap();
        let since: Vec<String> = s
            .events_since(&svc, read.version)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            since,
            [
                "deployment d2 started: revision 2.",
                "desired count changed from 2 to 3."
            ],
            "{db}"
        );
    }
}

#[tokio::test]
async fn clusters_are_records() {
    for (db, s) in stores().await {
        let put = |c: ClusterRecord| s.commit(Batch::new().write(Write::Cluster(c)));
        let c = ClusterRecord {
            name: "prod".into(),
            created_at: 1,
            version: 0,
        };
        put(c.clone()).await.unwrap();
        // A second create of the same name loses.
        assert!(put(c).await.unwrap_err().is_conflict(), "{db}");
        let got = s.get_cluster("prod").await.unwrap().unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(s.list_clusters().await.unwrap().len(), 1);
        let rm = |version| {
            s.commit(Batch::new().write(Write::RemoveCluster {
                name: "prod".into(),
                version,
            }))
        };
        assert!(rm(7).await.unwrap_err().is_conflict());
        rm(1).await.unwrap();
        assert!(s.list_clusters().await.unwrap().is_empty(), "{db}");
    }
}

/// An audit entry is readable as soon as its commit returns, and (changing nothing anyone
/// caches) leaves the generation alone; in a batch with a real change it is that change's
/// commit, which moves the generation as any change does.
#[tokio::test]
async fn audit_entries_are_visible_at_once_and_leave_the_caches_alone() {
    let entry = |n: u32| AuditEntry {
        seq: 0,
        at: 1_000 + i64::from(n),
        identity: "ci".into(),
        source: "127.0.0.1".into(),
        face: "native".into(),
        operation: format!("POST /op{n}"),
        target: "/x".into(),
        status: 200,
        outcome: "ok".into(),
    };
    for (db, s) in stores().await {
        let g = s.generation();
        s.commit(Batch::new().write(Write::Audit(entry(1))))
            .await
            .unwrap();
        assert_eq!(
            s.generation(),
            g,
            "{db}: an audit entry moved the generation"
        );
        let listed = s.list_audit(0, 0, None, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{db}");
        assert_eq!(listed[0].operation, "POST /op1", "{db}");
        s.commit(
            Batch::new()
                .write(Write::Audit(entry(2)))
                .write(Write::Meta {
                    key: "k".into(),
                    value: "v".into(),
                }),
        )
        .await
        .unwrap();
        assert!(s.generation() > g, "{db}: a change with its entry moves it");
        assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v"), "{db}");
        // Several writers at once: every entry is there, in one order.
        let mut writers = tokio::task::JoinSet::new();
        for n in 3..23 {
            let (s, e) = (s.clone(), entry(n));
            writers.spawn(async move { s.commit(Batch::new().write(Write::Audit(e))).await });
        }
        while let Some(r) = writers.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(
            s.list_audit(0, 0, None, 100).await.unwrap().len(),
            22,
            "{db}"
        );
    }
}

/// Inside `with_pending_audit`, the call's first change carries the entry (the outcomes
/// returned are the change's only); a commit that fails leaves it pending for the next; a
/// call without a change leaves it pending for the face to write.
#[tokio::test]
async fn a_calls_audit_entry_rides_with_its_first_change() {
    let entry = |op: &str| AuditEntry {
        seq: 0,
        at: 1_000,
        identity: "ci".into(),
        source: "127.0.0.1".into(),
        face: "native".into(),
        operation: op.into(),
        target: "/x".into(),
        status: 0,
        outcome: "ok".into(),
    };
    for (db, s) in stores().await {
        let meta = |v: &str| {
            Batch::new().write(Write::Meta {
                key: "k".into(),
                value: v.into(),
            })
        };
        // Two changes: the first carries the entry, once.
        let (outs, recorded) = with_pending_audit(entry("PUT /a"), async {
            let a = s.commit(meta("1")).await.unwrap();
            let b = s.commit(meta("2")).await.unwrap();
            (a.len(), b.len())
        })
        .await;
        assert!(recorded, "{db}");
        assert_eq!(outs, (1, 1), "{db}: the entry's outcome is not returned");
        let log = s.list_audit(0, 0, None, 10).await.unwrap();
        assert_eq!(log.len(), 1, "{db}: {log:?}");
        assert_eq!(log[0].operation, "PUT /a");
        // A failed commit (a stale cluster version) puts it back; the next change takes it.
        let (_, recorded) = with_pending_audit(entry("PUT /b"), async {
            let stale = Batch::new().write(Write::RemoveCluster {
                name: "missing".into(),
                version: 9,
            });
            assert!(s.commit(stale).await.is_err());
            assert_eq!(s.list_audit(0, 0, None, 10).await.unwrap().len(), 1);
            s.commit(meta("3")).await.unwrap();
        })
        .await;
        assert!(recorded, "{db}");
        let log = s.list_audit(0, 0, None, 10).await.unwrap();
        assert_eq!(log.len(), 2, "{db}: {log:?}");
        assert_eq!(log[1].operation, "PUT /b");
        // No change: still pending at the end.
        let (_, recorded) = with_pending_audit(entry("PUT /c"), async {
            s.get_meta("k").await.unwrap();
        })
        .await;
        assert!(!recorded, "{db}");
        assert_eq!(s.list_audit(0, 0, None, 10).await.unwrap().len(), 2, "{db}");
    }
}

#[tokio::test]
async fn elb_objects_are_records_with_unique_names() {
    use slipway_core::elb::{ElbObject, LoadBalancer};
    use slipway_store::ElbRecord;
    for (db, s) in stores().await {
        let lb = |id: &str| ElbRecord {
            object: ElbObject::LoadBalancer(LoadBalancer {
                name: "web".into(),
                id: id.into(),
                scheme: "internet-facing".into(),
                created_at: 1,
            }),
            version: 0,
        };
        s.commit(Batch::new().write(Write::Elb(lb("a1"))))
            .await
            .unwrap();
        // Another load balancer with the same name loses, as does a second create.
        for again in [lb("b2"), lb("a1")] {
            let e = s.commit(Batch::new().write(Write::Elb(again))).await;
            assert!(e.unwrap_err().is_conflict(), "{db}");
        }
        let got = s.get_elb("loadbalancer/app/web/a1").await.unwrap().unwrap();
        assert_eq!((got.version, &got.object), (1, &lb("a1").object));
        assert_eq!(s.list_elb("load_balancer").await.unwrap().len(), 1, "{db}");
        assert!(s.list_elb("target_group").await.unwrap().is_empty());
        // Updated at its version only.
        s.commit(Batch::new().write(Write::Elb(got.clone())))
            .await
            .unwrap();
        assert!(
            s.commit(Batch::new().write(Write::Elb(got)))
                .await
                .unwrap_err()
                .is_conflict()
        );
        let rm = |version| {
            s.commit(Batch::new().write(Write::RemoveElb {
                resource: "loadbalancer/app/web/a1".into(),
                version,
            }))
        };
        assert!(rm(1).await.unwrap_err().is_conflict(), "{db}");
        rm(2).await.unwrap();
        assert!(
            s.list_elb("load_balancer").await.unwrap().is_empty(),
            "{db}"
        );
    }
}

#[tokio::test]
async fn meta_init_keeps_the_first_value() {
    for (db, s) in stores().await {
        assert_eq!(s.init_meta("cluster_id", "a").await.unwrap(), "a");
        assert_eq!(s.init_meta("cluster_id", "b").await.unwrap(), "a", "{db}");
        s.set_meta("k", "v1").await.unwrap();
        s.set_meta("k", "v2").await.unwrap();
        assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v2"));
        assert_eq!(s.get_meta("missing").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_sqlite_file_persists_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A path with characters a URL would escape.
    let sub = dir.path().join("a dir#1?x%20");
    std::fs::create_dir_all(&sub).unwrap();
    let path = sub.join("state.db");
    {
        let s = Store::open_sqlite(&path).await.unwrap();
        s.set_meta("k", "v").await.unwrap();
    }
    assert!(path.exists(), "the database is the file named");
    {
        let s = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v"));
        sqlx_insert_future_migration(&s).await;
    }
    let err = Store::open_sqlite(&path).await.unwrap_err();
    assert!(
        err.to_string().contains("newer than this Slipway knows"),
        "{err}"
    );
}

async fn sqlx_insert_future_migration(s: &Store) {
    s.debug_execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', TRUE, x'00', 0)",
    )
    .await
    .unwrap();
}

/// Many writers racing on one record through compare-and-swap with retries: no update is
/// lost (each writer's increments all land).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    for (db, a, b) in shared_pairs(dir.path()).await {
        let key = ServiceKey::new("shop", "default", "api");
        deploy_next(&a, "d1", &key, "x:1", 1).await;
        let mut rec = a.get_service(&key).await.unwrap().unwrap();
        rec.desired_count = 0;
        a.commit(Batch::new().write(Write::Service(rec)))
            .await
            .unwrap();
        let stores = Arc::new([a.clone(), b.clone()]);
        let mut handles = Vec::new();
        for w in 0..8 {
            let stores = stores.clone();
            let key = key.clone();
            handles.push(tokio::spawn(async move {
                let s = &stores[w % 2];
                let mut conflicts = 0u32;
                for _ in 0..10 {
                    loop {
                        let mut rec = s.get_service(&key).await.unwrap().unwrap();
                        rec.desired_count += 1;
                        match s
                            .commit(Batch::new().write(Write::Service(rec)).event(
                                &key,
                                0,
                                format!("writer {w}"),
                            ))
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for h in handles {
            conflicts += h.await.unwrap();
        }
        let rec = b.get_service(&key).await.unwrap().unwrap();
        assert_eq!(rec.desired_count, 80, "{db}: no increment lost");
        let events = a.list_events(&key, 100).await.unwrap();
        assert_eq!(
            events.len(),
            81,
            "{db}: one event per accepted write, and the deploy's"
        );
        let versions: BTreeSet<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions.len(), 81, "{db}: each event saw its own version");
        eprintln!("{db}: {conflicts} conflicts were retried");
    }
}

/// With PostgreSQL one of two servers leads; when its session ends the other takes over.
#[tokio::test]
async fn one_server_leads_and_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    for (db, a, b) in shared_pairs(dir.path()).await {
        assert!(a.try_lead("a").await.unwrap(), "{db}");
        if db == "sqlite" {
            // One server per data directory: it always leads.
            continue;
        }
        assert!(!b.try_lead("b").await.unwrap(), "the lock is held");
        assert!(
            a.try_lead("a").await.unwrap(),
            "the leader stays the leader"
        );
        assert_eq!(b.leader().await.unwrap().as_deref(), Some("a"));
        a.resign().await;
        assert!(b.try_lead("b").await.unwrap(), "the standby takes over");
        assert_eq!(a.leader().await.unwrap().as_deref(), Some("b"));
        assert!(!a.try_lead("a").await.unwrap());
    }
}

/// A leader whose database session dies (the database restarted, the network broke, an
/// operator ended it) steps down at its next check, and the standby takes over.
#[tokio::test]
async fn a_leader_that_loses_its_session_steps_down() {
    let dir = tempfile::tempdir().unwrap();
    for (db, a, b) in shared_pairs(dir.path()).await {
        if db != "postgres" {
            continue;
        }
        assert!(a.try_lead("a").await.unwrap());
        assert!(!b.try_lead("b").await.unwrap());
        let ended = b
            .debug_execute(
                // With a timeout, it returns once the backend has exited (so its advisory
                // lock is released); without one, it only sends the signal.
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'slipway-server:a'",
            )
            .await
            .unwrap();
        assert_eq!(ended, 1, "the leader's session was found and ended");
        // The check fails (an error) or finds the lock gone: either way A no longer leads.
        assert!(!a.try_lead("a").await.unwrap_or(false));
        assert!(b.try_lead("b").await.unwrap(), "the standby takes over");
        assert_eq!(a.leader().await.unwrap().as_deref(), Some("b"));
    }
}

/// Batches committed at the same moment (SQLite commits them as one group): each is all or
/// nothing on its own; the stale ones change nothing and the others all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_are_each_all_or_nothing() {
    for (db, s) in stores().await {
        let mut keys = Vec::new();
        for i in 0..16 {
            let key = ServiceKey::new("shop", "default", format!("s{i}"));
            deploy_next(&s, &format!("d{i}"), &key, "x:1", 1).await;
            keys.push(key);
        }
        let mut handles = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let s = s.clone();
            let key = key.clone();
            handles.push(tokio::spawn(async move {
                let mut rec = s.get_service(&key).await.unwrap().unwrap();
                rec.desired_count = 5;
                // Every other batch carries a stale write after its good ones.
                let mut batch = Batch::new()
                    .write(Write::Service(rec.clone()))
                    .event(&key, 2, "scaled");
                if i % 2 == 1 {
                    let mut stale = rec;
                    stale.version -= 1;
                    batch = batch.write(Write::Service(stale));
                }
                s.commit(batch).await
            }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            let r = h.await.unwrap();
            let rec = s.get_service(&keys[i]).await.unwrap().unwrap();
            let events = s.list_events(&keys[i], 10).await.unwrap().len();
            if i % 2 == 1 {
                assert!(r.unwrap_err().is_conflict(), "{db}: batch {i}");
                assert_eq!(
                    (rec.desired_count, events),
                    (2, 1),
                    "{db}: batch {i} undone"
                );
            } else {
                r.unwrap();
                assert_eq!(
                    (rec.desired_count, events),
                    (5, 2),
                    "{db}: batch {i} landed"
                );
            }
        }
    }
}

#[tokio::test]
async fn committed_batches_announce_the_services_they_touched() {
    for (db, s) in stores().await {
        let mut changes = s.changes();
        let a = ServiceKey::new("shop", "prod", "web");
        let b = ServiceKey::new("shop", "prod", "api");
        let mut t = Task::provisioning("t1".into(), a.clone(), "d1".into(), 1, 1);
        s.commit(
            Batch::new()
                .write(Write::Task(t.clone()))
                .write(Write::Event {
                    key: b.clone(),
                    at: 1,
                    message: "hello".into(),
                })
                .write(Write::Event {
                    key: a.clone(),
                    at: 1,
                    message: "again".into(),
                }),
        )
        .await
        .unwrap();
        assert_eq!(
            &*changes.recv().await.unwrap(),
            &[a.clone(), b.clone()],
            "{db}"
        );
        // A batch that touches no service, and a failed one, announce nothing.
        s.commit(Batch::new().write(Write::Meta {
            key: "k".into(),
            value: "v".into(),
        }))
        .await
        .unwrap();
        t.version = 99;
        assert!(s.commit(Batch::new().write(Write::Task(t))).await.is_err());
        s.commit(Batch::new().write(Write::Event {
            key: b.clone(),
            at: 2,
            message: "last".into(),
        }))
        .await
        .unwrap();
        assert_eq!(
            &*changes.recv().await.unwrap(),
            &[b],
            "{db}: only the last batch"
        );
    }
}

fn push(app: &str, delivery: &str, after: &str, at: i64) -> slipway_store::PushRecord {
    slipway_store::PushRecord {
        id: slipway_store::random_id(8),
        app: app.into(),
        source: "github".into(),
        delivery: delivery.into(),
        git_ref: "refs/heads/main".into(),
        before: "0".repeat(40),
        after: after.into(),
        pusher: "octocat".into(),
        repository: Some("https://example.com/o/r.git".into()),
        paths: vec!["src/a.rs".into()],
        paths_truncated: false,
        at,
    }
}

/// A delivery id is recorded once per app, on every backend and across two servers of one
/// database; the list is the app's, newest first.
#[tokio::test]
async fn push_events_are_recorded_once_per_delivery() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, a, b) in shared_pairs(dir.path()).await {
        let first = push("shop", "d-1", &"a".repeat(40), 1000);
        let out = a
            .commit(Batch::new().write(Write::Push(first.clone())))
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::Done(true)], "{backend}");
        // The same delivery again, on the other server: nothing new.
        let again = push("shop", "d-1", &"b".repeat(40), 2000);
        let out = b
            .commit(Batch::new().write(Write::Push(again)))
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::Done(false)], "{backend}");
        // The same delivery id for another app is another event.
        let other = push("blog", "d-1", &"c".repeat(40), 1500);
        b.commit(Batch::new().write(Write::Push(other)))
            .await
            .unwrap();
        let newer = push("shop", "d-2", &"d".repeat(40), 3000);
        a.commit(Batch::new().write(Write::Push(newer.clone())))
            .await
            .unwrap();
        let listed = b.list_pushes("shop", 10).await.unwrap();
        assert_eq!(listed, vec![newer, first.clone()], "{backend}");
        assert_eq!(b.list_pushes("shop", 1).await.unwrap().len(), 1);
        assert_eq!(a.list_pushes("blog", 10).await.unwrap().len(), 1);
        assert!(a.list_pushes("none", 10).await.unwrap().is_empty());
    }
}
