//! Concurrent writers through the application layer, on SQLite and PostgreSQL: random
//! scale, deploy, rollback and restart intents against one service from several tasks at
//! once. Afterwards no update is lost and none is invented: the service's revision is its
//! newest deployment's, its count is the last accepted scale's, every accepted deployment
//! exists, and the events are exactly the accepted intents'.
//!
//! The engine here resolves image names to fixed digests without Docker (a stand-in for
//! `DockerRuntime`, whose use cases the integration tests run against the real engine).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use slipway_app::testing::FixedImages;
use slipway_app::{App, DeployOutcome, ErrorKind};
use slipway_core::model::{DeploymentConfig, RolloutState, ServiceKey, ServiceKind, ServiceSpec};
use slipway_store::secrets::SecretBox;
use slipway_store::testing::{container, stores};
use slipway_store::{Batch, Store, Write};

/// Resolves every image name to a digest derived from it.
fn app(store: Store) -> App {
    App::new(
        store,
        Arc::new(FixedImages),
        SecretBox::from_key(&[7u8; 32]).unwrap(),
        "test",
    )
}

fn key() -> ServiceKey {
    ServiceKey::new("shop", "default", "api")
}

/// A spec without a count: a deploy keeps the count a scale set.
fn spec(image: &str) -> ServiceSpec {
    ServiceSpec {
        key: key(),
        kind: ServiceKind::BackendService,
        desired_count: None,
        container: container(image),
        deployment: DeploymentConfig::default(),
        placement: Default::default(),
    }
}

#[derive(Debug, Clone)]
enum Intent {
    Scale(u32),
    Deploy(u8),
    Rollback,
    Restart,
}

fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        3 => (0u32..20).prop_map(Intent::Scale),
        2 => (0u8..3).prop_map(Intent::Deploy),
        1 => Just(Intent::Rollback),
        1 => Just(Intent::Restart),
    ]
}

/// What an accepted intent did: the service version it produced, the event it must have
/// written, and (scale) the count it set or (others) the deployment it started.
#[derive(Debug, Clone)]
struct Accepted {
    version: u64,
    event: String,
    count: Option<u32>,
    deployment: Option<String>,
}

async fn apply(app: &App, i: &Intent) -> Option<Accepted> {
    let k = key();
    let r = match i {
        Intent::Scale(n) => app.scale(&k, *n, None).await.map(|r| {
            // A scale to the count in force changes nothing (no version, no event).
            let (before, after) = r
                .message
                .trim_start_matches("desired count ")
                .split_once(" → ")?;
            Some(Accepted {
                version: r.version,
                event: format!("(service api) desired count changed from {before} to {after}."),
                count: Some(*n),
                deployment: None,
            })
        }),
        Intent::Deploy(v) => app
            .deploy(&[spec(&format!("hello:v{v}"))], false, &BTreeMap::new())
            .await
            .map(|r| {
                let r = &r[0];
                (r.outcome == DeployOutcome::Deploying).then(|| {
                    let id = r.deployment_id.clone().unwrap();
                    Accepted {
                        version: r.version,
                        event: format!(
                            "(service api) deployment {id} started: revision {}.",
                            r.revision
                        ),
                        count: None,
                        deployment: Some(id),
                    }
                })
            }),
        Intent::Rollback => app.rollback(&k, Some(1), None).await.map(|r| {
            let id = r.deployment_id.clone().unwrap();
            Some(Accepted {
                version: r.version,
                event: format!("(service api) rollback to revision 1 started: deployment {id}."),
                count: None,
                deployment: Some(id),
            })
        }),
        Intent::Restart => app.restart(&k, None).await.map(|r| {
            let id = r.deployment_id.clone().unwrap();
            let rev = r.message.trim_start_matches("restarting with revision ");
            Some(Accepted {
                version: r.version,
                event: format!("(service api) forced new deployment {id} (revision {rev})."),
                count: None,
                deployment: Some(id),
            })
        }),
    };
    match r {
        Ok(a) => a,
        // Only a race lost so many times in a row that the caller is told to retry may
        // refuse an intent; that intent then changed nothing.
        Err(e) => {
            assert_eq!(e.code, "VERSION_CONFLICT", "{e}");
            None
        }
    }
}

async fn run_case(db: &str, store: Store, writers: Vec<Vec<Intent>>) {
    let first = app(store.clone());
    let r = first
        .deploy(&[spec("hello:v0")], false, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!((r[0].revision, r[0].version), (1, 1));
    let mut handles = Vec::new();
    for intents in writers {
        // Each writer its own App over the same store, as several API requests are.
        let app = app(store.clone());
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in &intents {
                done.extend(apply(&app, i).await);
            }
            done
        }));
    }
    let mut accepted: Vec<Accepted> = Vec::new();
    for h in handles {
        accepted.extend(h.await.unwrap());
    }
    let svc = store.get_service(&key()).await.unwrap().unwrap();

    // No lost update, no phantom: every accepted intent moved the version by exactly one.
    let mut versions: Vec<u64> = accepted.iter().map(|a| a.version).collect();
    versions.sort_unstable();
    let expected: Vec<u64> = (2..2 + accepted.len() as u64).collect();
    assert_eq!(
        versions, expected,
        "{db}: each accepted intent is one version"
    );
    assert_eq!(svc.version, 1 + accepted.len() as u64, "{db}");

    // The count is the last accepted scale's (deploys here carry no count).
    let last_scale = accepted
        .iter()
        .filter(|a| a.count.is_some())
        .max_by_key(|a| a.version)
        .and_then(|a| a.count);
    assert_eq!(svc.desired_count, last_scale.unwrap_or(1), "{db}");

    // The revision is the newest deployment's; no accepted deployment is lost; the newest
    // is the one in progress and every other was superseded.
    let deps = store.list_deployments(&key(), 100).await.unwrap();
    assert_eq!(svc.revision, deps[0].revision, "{db}");
    let newest_accepted = accepted
        .iter()
        .filter(|a| a.deployment.is_some())
        .max_by_key(|a| a.version);
    if let Some(a) = newest_accepted {
        assert_eq!(a.deployment.as_ref(), Some(&deps[0].id), "{db}");
    }
    for a in &accepted {
        if let Some(id) = &a.deployment {
            assert!(
                deps.iter().any(|d| &d.id == id),
                "{db}: deployment {id} lost"
            );
        }
    }
    assert_eq!(deps[0].state, RolloutState::InProgress, "{db}");
    for d in &deps[1..] {
        assert_eq!(d.state, RolloutState::Failed, "{db}: {d:?}");
        assert!(
            d.reason
                .as_deref()
                .unwrap_or("")
                .starts_with("superseded by")
        );
    }
    let created: Vec<i64> = deps.iter().map(|d| d.created_at).collect();
    assert!(
        created.windows(2).all(|w| w[0] > w[1]),
        "{db}: deployments are ordered as they committed: {created:?}"
    );
    assert_eq!(
        deps.len(),
        1 + accepted.iter().filter(|a| a.deployment.is_some()).count(),
        "{db}: no phantom deployment"
    );

    // The events are exactly the accepted intents' (and the first deploy's).
    let mut events: Vec<String> = store
        .list_events(&key(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    events.sort();
    let mut wanted: Vec<String> = accepted.iter().map(|a| a.event.clone()).collect();
    wanted.push(format!(
        "(service api) deployment {} started: revision 1.",
        r[0].deployment_id.clone().unwrap()
    ));
    wanted.sort();
    assert_eq!(events, wanted, "{db}: events are the accepted intents'");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn concurrent_intents_lose_nothing(
        writers in proptest::collection::vec(proptest::collection::vec(intent(), 1..7), 2..9)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (db, store) in stores().await {
                run_case(db, store, writers.clone()).await;
            }
        });
    }
}

/// A caller that names the version it read is refused when the service moved on, and told
/// what changed; nothing is written.
#[tokio::test]
async fn an_expected_version_that_moved_on_is_a_conflict_with_what_changed() {
    for (db, store) in stores().await {
        let app = app(store.clone());
        app.deploy(&[spec("hello:v0")], false, &BTreeMap::new())
            .await
            .unwrap();
        let read = store.get_service(&key()).await.unwrap().unwrap();
        let d = app
            .deploy(&[spec("hello:v1")], false, &BTreeMap::new())
            .await
            .unwrap();
        let err = app.scale(&key(), 5, Some(read.version)).await.unwrap_err();
        assert_eq!(
            (err.kind, err.code),
            (ErrorKind::Conflict, "VERSION_CONFLICT")
        );
        assert_eq!(err.current_version, Some(d[0].version), "{db}");
        assert!(
            err.message.contains(&format!(
                "deployment {} started: revision 2",
                d[0].deployment_id.as_deref().unwrap()
            )),
            "{db}: {}",
            err.message
        );
        let now = store.get_service(&key()).await.unwrap().unwrap();
        assert_eq!((now.desired_count, now.version), (1, d[0].version), "{db}");
        // With the version it now reads, the same scale goes through.
        let ok = app.scale(&key(), 5, Some(now.version)).await.unwrap();
        assert_eq!(ok.version, now.version + 1);
        // A multi-service deploy naming a stale version changes nothing.
        let mut expect = BTreeMap::new();
        expect.insert("api".to_owned(), read.version);
        let err = app
            .deploy(&[spec("hello:v2")], false, &expect)
            .await
            .unwrap_err();
        assert_eq!(err.code, "VERSION_CONFLICT", "{db}");
        assert_eq!(store.list_deployments(&key(), 10).await.unwrap().len(), 2);
    }
}

/// A secret written before versions were bound (sealed for its name alone) still opens;
/// `seal_legacy_secrets` (which the server runs when it starts) re-seals it bound to its
/// version, so it no longer opens as any other version; the next write is bound too.
#[tokio::test]
async fn a_legacy_secret_is_resealed_with_its_version_at_start() {
    for (db, store) in stores().await {
        let app = app(store.clone());
        let legacy = slipway_store::secrets::legacy_seal(&[7u8; 32], "shop/db", b"old", [3; 12]);
        store
            .commit(Batch::new().write(Write::Secret {
                name: "shop/db".into(),
                version: 1,
                sealed: legacy.clone(),
                at: 1,
                expected: Some(0),
            }))
            .await
            .unwrap();
        let sb = SecretBox::from_key(&[7u8; 32]).unwrap();
        let opened = sb.open("shop/db", 1, &legacy).unwrap();
        assert!(opened.legacy, "{db}");
        // A legacy value is not bound to its version: it opens as version 2 as well.
        assert!(sb.open("shop/db", 2, &legacy).is_ok(), "{db}");

        assert_eq!(app.seal_legacy_secrets().await.unwrap(), 1, "{db}");
        assert_eq!(app.seal_legacy_secrets().await.unwrap(), 0, "{db}: once");
        assert_eq!(
            app.set_secret("shop/db", "new", None).await.unwrap(),
            2,
            "{db}"
        );
        let rows = store.secret_versions("shop/db").await.unwrap();
        assert_eq!(rows.len(), 2, "{db}");
        for (version, value) in [(1, "old"), (2, "new")] {
            let sealed = &rows[version as usize - 1].1;
            let opened = sb.open("shop/db", version, sealed).unwrap();
            assert_eq!(opened.value, value.as_bytes(), "{db}: version {version}");
            assert!(!opened.legacy, "{db}: version {version} is re-sealed");
            let other = 3 - version;
            assert!(
                sb.open("shop/db", other, sealed).is_err(),
                "{db}: version {version}'s value opens as version {other}"
            );
        }
    }
}

/// Access-key secrets are stored sealed and bound to their key's id; the plaintext is
/// shown once and recovered only in memory; keys stored in clear before are sealed at
/// start; a revoked identity's keys are revoked with it.
#[tokio::test]
async fn access_key_secrets_are_sealed_and_bound_to_their_key() {
    for (db, store) in stores().await {
        let app = app(store.clone());
        let made = app
            .create_access_key(Some("ci".into()), false, None)
            .await
            .unwrap();
        assert!(
            !made.secret.is_empty(),
            "{db}: the creator sees the secret once"
        );
        let stored = store.get_access_key(&made.id).await.unwrap().unwrap();
        assert!(stored.secret.is_empty(), "{db}: no plaintext in the row");
        let sealed = stored.sealed.clone().unwrap();
        assert!(!sealed.contains(&made.secret) && !sealed.contains(&hex_of(&made.secret)));
        let mut opened = stored.clone();
        app.open_access_key(&mut opened).unwrap();
        assert_eq!(opened.secret, made.secret, "{db}");
        // Moved to another key, the sealed secret does not open.
        let other = app.create_access_key(None, true, None).await.unwrap();
        let mut swapped = store.get_access_key(&other.id).await.unwrap().unwrap();
        swapped.sealed = Some(sealed);
        assert!(app.open_access_key(&mut swapped).is_err(), "{db}");

        // A key written in clear (before sealing) is sealed at the next start.
        let legacy = slipway_store::AccessKey {
            id: "AKIALEGACY".into(),
            secret: "legacy-secret-in-clear".into(),
            sealed: None,
            name: None,
            read_only: false,
            created_at: 1,
            revoked_at: None,
            owner: None,
            version: 0,
        };
        store
            .commit(Batch::new().write(Write::AccessKey(legacy)))
            .await
            .unwrap();
        assert_eq!(app.seal_legacy_access_keys().await.unwrap(), 1, "{db}");
        let mut k = store.get_access_key("AKIALEGACY").await.unwrap().unwrap();
        assert!(k.secret.is_empty() && k.sealed.is_some(), "{db}");
        app.open_access_key(&mut k).unwrap();
        assert_eq!(k.secret, "legacy-secret-in-clear", "{db}");
        assert_eq!(app.seal_legacy_access_keys().await.unwrap(), 0, "{db}");

        // An identity's key acts as it and dies with it.
        app.create_identity(
            "ci-shop",
            slipway_core::access::Role::Deployer,
            vec!["shop".into()],
            vec![],
        )
        .await
        .unwrap();
        let owned = app
            .create_access_key(None, false, Some("ci-shop".into()))
            .await
            .unwrap();
        let who = app.key_identity(&owned).await.unwrap().unwrap();
        assert_eq!(who.name, "ci-shop", "{db}");
        assert_eq!(who.apps, ["shop"], "{db}");
        app.revoke_identity("ci-shop").await.unwrap();
        let after = store.get_access_key(&owned.id).await.unwrap().unwrap();
        assert!(after.revoked_at.is_some(), "{db}");
        assert!(app.key_identity(&after).await.unwrap().is_none(), "{db}");
        assert!(
            app.identity(&format!("key:{}", owned.id))
                .await
                .unwrap()
                .is_none(),
            "{db}"
        );
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
