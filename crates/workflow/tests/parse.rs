//! The parser: the forms of each key, and bad input failing with `file:line:column`.

use serde_json::json;
use slipway_workflow::expr::EvalContext;
use slipway_workflow::filter::{PushEvent, matches};
use slipway_workflow::model::{Flag, StepAction};
use slipway_workflow::plan;
use slipway_workflow::{Workflow, parse_workflow};

fn ok(text: &str) -> Workflow {
    parse_workflow("w.yml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    parse_workflow("w.yml", text).unwrap_err().to_string()
}

const MIN_JOB: &str = "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n";

#[test]
fn the_three_forms_of_on() {
    let wf = ok(&format!("on: push\n{MIN_JOB}"));
    assert!(wf.on.push.is_some() && wf.on.workflow_dispatch.is_none());
    let wf = ok(&format!("on: [push, workflow_dispatch]\n{MIN_JOB}"));
    assert!(wf.on.push.is_some() && wf.on.workflow_dispatch.is_some());
    let wf = ok(&format!(
        "on:\n  push:\n    branches: main\n    paths-ignore: ['docs/**']\n  workflow_dispatch:\n    inputs:\n      level:\n        type: choice\n        options: [a, b]\n        default: a\n        required: true\n{MIN_JOB}"
    ));
    let push = wf.on.push.as_ref().unwrap();
    assert_eq!(push.branches.as_ref().unwrap().patterns[0].text, "main");
    assert!(push.paths.as_ref().unwrap().ignore);
    let input = &wf.on.workflow_dispatch.as_ref().unwrap().inputs[0];
    assert_eq!(
        (input.name.as_str(), input.kind.as_str()),
        ("level", "choice")
    );
    assert_eq!(input.options, ["a", "b"]);
    assert_eq!(input.default, Some(json!("a")));
    assert!(input.required);
}

#[test]
fn rejected_and_unknown_events() {
    let e = err(&format!("on: [push, pull_request_target]\n{MIN_JOB}"));
    assert!(
        e.starts_with(
            "w.yml:1:12: `on.pull_request_target` is not supported: it runs code from forks"
        ),
        "{e}"
    );
    let e = err(&format!(
        "on:\n  schedule:\n    - cron: '0 * * * *'\n{MIN_JOB}"
    ));
    assert!(
        e.starts_with("w.yml:2:3: `on.schedule` is not supported: scheduled runs"),
        "{e}"
    );
    let e = err(&format!("on:\n  release:\n{MIN_JOB}"));
    assert!(
        e.starts_with(
            "w.yml:2:3: `on.release` is not supported: only `push` and `workflow_dispatch`"
        ),
        "{e}"
    );
    let e = err(&format!("on:\n  push:\n    branch: [main]\n{MIN_JOB}"));
    assert!(
        e.starts_with(
            "w.yml:3:5: unknown key `branch` in `on.push`; allowed: branches, branches-ignore, tags"
        ),
        "{e}"
    );
    let e = err(&format!(
        "on:\n  push:\n    branches: [a]\n    branches-ignore: [b]\n{MIN_JOB}"
    ));
    assert!(
        e.starts_with("w.yml:4:5: `on.push` has both `branches` and `branches-ignore`"),
        "{e}"
    );
    let e = err(&format!(
        "on:\n  push:\n    tags-ignore: ['!v1']\n{MIN_JOB}"
    ));
    assert!(
        e.starts_with("w.yml:3:19: `on.push.tags-ignore`: `!v1`: negations belong in `tags`"),
        "{e}"
    );
    let e = err(MIN_JOB);
    assert!(e.starts_with("w.yml:1:1: missing `on:`"), "{e}");
}

#[test]
fn bad_input_is_placed() {
    // Malformed YAML.
    let e = err("on: push\njobs:\n  a: {runs-on: x\n");
    assert!(e.starts_with("w.yml:3:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    // Unknown uses.
    let e =
        err("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/cache@v4\n");
    assert!(e.starts_with("w.yml:6:15: `jobs.a.steps[0].uses`: `actions/cache@v4`: `actions/cache` is not a built-in action"), "{e}");
    // Unsupported key.
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    services:\n      db: {image: postgres}\n    steps:\n      - run: echo\n",
    );
    assert!(
        e.starts_with("w.yml:5:5: `jobs.a.services` is not supported: service containers"),
        "{e}"
    );
    // Unknown key, with what is allowed.
    let e = err("on: push\njobs:\n  a:\n    runs-on: x\n    step:\n      - run: echo\n");
    assert!(
        e.starts_with(
            "w.yml:5:5: unknown key `step` in `jobs.a`; allowed: name, needs, if, runs-on"
        ),
        "{e}"
    );
    let e = err("on: push\nname: x\nfoo: 1\njobs: {}\n");
    assert!(
        e.starts_with(
            "w.yml:3:1: unknown key `foo` in the workflow; allowed: name, run-name, on, env"
        ),
        "{e}"
    );
    // A cycle in needs, placed at the need that closes it.
    let e = err(
        "on: push\njobs:\n  a:\n    needs: c\n    runs-on: x\n    steps: [run: echo]\n  b:\n    needs: [a]\n    runs-on: x\n    steps: [run: echo]\n  c:\n    needs: [b]\n    runs-on: x\n    steps: [run: echo]\n",
    );
    assert!(
        e.starts_with("w.yml:8:13: `jobs.b.needs`: `a` makes a cycle (a → c → b → a)"),
        "{e}"
    );
    // Unknown need, and a job needing itself.
    let e =
        err("on: push\njobs:\n  a:\n    needs: [nope]\n    runs-on: x\n    steps: [run: echo]\n");
    assert!(
        e.starts_with("w.yml:4:13: `jobs.a.needs`: there is no job `nope` (jobs: a)"),
        "{e}"
    );
    let e = err("on: push\njobs:\n  a:\n    needs: a\n    runs-on: x\n    steps: [run: echo]\n");
    assert!(e.contains("cannot need itself"), "{e}");
    // Expression errors are found now, at the key.
    let e = err(
        "on: push\njobs:\n  a:\n    if: github.ref = 'x'\n    runs-on: x\n    steps: [run: echo]\n",
    );
    assert!(
        e.starts_with("w.yml:4:5: `jobs.a.if`: invalid expression `github.ref = 'x'`: unexpected character `=`"),
        "{e}"
    );
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ secret.X }}\n",
    );
    assert!(
        e.starts_with(
            "w.yml:6:14: `jobs.a.steps[0].run`: invalid expression `secret.X`: unknown context `secret`"
        ),
        "{e}"
    );
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ hashFiles('x') }}\n",
    );
    assert!(e.contains("hashFiles() is not supported"), "{e}");
}

#[test]
fn needs_references_name_needed_jobs() {
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: echo ${{ needs.c.outputs.x }}\n",
    );
    assert!(e.starts_with("w.yml:10:14: `jobs.b.steps[0].run`: `needs.c`: job `b` does not need `c`; add it to `jobs.b.needs`"), "{e}");
    let e = err(
        "on: push\nenv:\n  X: ${{ needs.a.result }}\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n",
    );
    assert!(
        e.starts_with("w.yml:3:6: `env.X`: the `needs` context exists only inside a job"),
        "{e}"
    );
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n  b:\n    if: needs['z'].result == 'success'\n    runs-on: x\n    steps: [run: echo]\n",
    );
    assert!(e.contains("job `b` does not need `z`"), "{e}");
    // `needs.*` and needed jobs are fine.
    ok(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n  b:\n    needs: [a]\n    if: contains(needs.*.result, 'failure') || needs.A.result\n    runs-on: x\n    steps: [run: echo]\n",
    );
}

#[test]
fn step_shapes() {
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n        uses: actions/checkout@v4\n",
    );
    assert!(
        e.starts_with("w.yml:7:9: `jobs.a.steps[0]` has both `run` and `uses`"),
        "{e}"
    );
    let e = err("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - name: nothing\n");
    assert!(
        e.starts_with("w.yml:6:9: `jobs.a.steps[0]` needs `run` (a script) or `uses`"),
        "{e}"
    );
    let e = err("on: push\njobs:\n  a:\n    uses: org/repo/.github/workflows/w.yml@main\n");
    assert!(
        e.starts_with("w.yml:4:5: `jobs.a.uses` is not supported: reusable workflows"),
        "{e}"
    );
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: s\n        run: a\n      - id: s\n        run: b\n",
    );
    assert!(
        e.starts_with("w.yml:8:13: `jobs.a.steps[1].id`: `s` is the id of an earlier step"),
        "{e}"
    );
    let e = err(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n        with: {x: 1}\n",
    );
    assert!(e.contains("`jobs.a.steps[0].with` goes with `uses`"), "{e}");
    let e = err("on: push\njobs:\n  a:\n    steps: [run: echo]\n");
    assert!(e.starts_with("w.yml:3:3: `jobs.a` needs `runs-on`"), "{e}");
}

#[test]
fn job_and_step_keys() {
    let wf = ok(r#"
name: all
on: push
permissions: read-all
env: {A: 1, B: "${{ github.sha }}"}
concurrency: deploy
defaults: {run: {shell: bash, working-directory: app}}
jobs:
  build:
    name: Build ${{ matrix.os }}
    runs-on: [self-hosted, "${{ matrix.os }}"]
    container:
      image: node:20
      env: {NODE_ENV: test}
      options: --cpus 2
    environment: {name: staging, url: "https://s.example"}
    timeout-minutes: 30
    continue-on-error: ${{ matrix.os == 'b' }}
    concurrency: {group: "b-${{ github.ref }}", cancel-in-progress: true}
    permissions: {contents: read}
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        os: [a, b]
    outputs: {v: "${{ steps.s.outputs.v }}"}
    defaults: {run: {shell: sh}}
    steps:
      - id: s
        name: Say
        run: echo hi
        shell: bash
        env: {X: y}
        if: always()
        working-directory: sub
        continue-on-error: true
        timeout-minutes: 1.5
      - uses: docker/build-push-action@v6
        with: {push: true, tags: "a:b"}
  later:
    needs: build
    runs-on: x
    container: alpine:3
    environment: prod
    steps: [run: echo]
"#);
    assert_eq!(wf.ignored.len(), 3, "{:?}", wf.ignored);
    assert!(wf.ignored[0].1.contains("`permissions` has no effect"));
    assert_eq!(wf.defaults.shell.as_deref(), Some("bash"));
    assert_eq!(
        wf.concurrency.as_ref().unwrap().group.as_literal().unwrap(),
        "deploy"
    );
    let b = wf.job("build").unwrap();
    assert_eq!(
        b.container.as_ref().unwrap().options.as_deref(),
        Some("--cpus 2")
    );
    assert_eq!(b.timeout_minutes, Some(30.0));
    assert!(matches!(b.continue_on_error, Flag::Expr(_)));
    let s = b.strategy.as_ref().unwrap();
    assert!(!s.fail_fast);
    assert_eq!(s.max_parallel, Some(2));
    assert_eq!(b.defaults.shell.as_deref(), Some("sh"));
    let step = &b.steps[0];
    assert!(step.condition.uses_status());
    assert_eq!(step.timeout_minutes, Some(1.5));
    assert!(matches!(&step.action, StepAction::Run { shell: Some(s), .. } if s == "bash"));
    let names: Vec<String> = plan::instances(b, &EvalContext::new())
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["Build a", "Build b"]);
    let later = wf.job("later").unwrap();
    assert_eq!(
        later
            .container
            .as_ref()
            .unwrap()
            .image
            .as_literal()
            .unwrap(),
        "alpine:3"
    );
    assert_eq!(
        later
            .environment
            .as_ref()
            .unwrap()
            .name
            .as_literal()
            .unwrap(),
        "prod"
    );
}

fn matrix_names(matrix: &str) -> Vec<String> {
    let wf = ok(&format!(
        "on: push\njobs:\n  test:\n    runs-on: x\n    strategy:\n      matrix:\n{matrix}    steps: [run: echo]\n"
    ));
    plan::instances(&wf.jobs[0], &EvalContext::new())
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

#[test]
fn matrix_expansion_as_github() {
    assert_eq!(
        matrix_names("        version: [1, 2]\n        os: [linux, mac]\n"),
        [
            "test (1, linux)",
            "test (1, mac)",
            "test (2, linux)",
            "test (2, mac)"
        ]
    );
    assert_eq!(
        matrix_names(
            "        version: [1, 2]\n        os: [linux, mac]\n        exclude:\n          - {version: 2, os: mac}\n"
        ),
        ["test (1, linux)", "test (1, mac)", "test (2, linux)"]
    );
    // GitHub's documented include example: `color: green` joins every combination, `shape:
    // circle` only those it does not overwrite, and the unmatched entries become new ones.
    let wf = ok(
        "on: push\njobs:\n  t:\n    runs-on: x\n    strategy:\n      matrix:\n        fruit: [apple, pear]\n        animal: [cat, dog]\n        include:\n          - color: green\n          - color: pink\n            animal: cat\n          - fruit: apple\n            shape: circle\n          - fruit: banana\n          - fruit: banana\n            animal: cat\n    steps: [run: echo]\n",
    );
    let got: Vec<serde_json::Value> = plan::instances(&wf.jobs[0], &EvalContext::new())
        .unwrap()
        .into_iter()
        .map(|i| i.matrix)
        .collect();
    assert_eq!(
        got,
        [
            json!({"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"}),
            json!({"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"}),
            json!({"fruit": "pear", "animal": "cat", "color": "pink"}),
            json!({"fruit": "pear", "animal": "dog", "color": "green"}),
            json!({"fruit": "banana"}),
            json!({"fruit": "banana", "animal": "cat"}),
        ]
    );
    // Only include: each entry is a job.
    assert_eq!(
        matrix_names("        include:\n          - {site: a}\n          - {site: b}\n"),
        ["test (a)", "test (b)"]
    );
    let e = err(
        "on: push\njobs:\n  t:\n    runs-on: x\n    strategy:\n      matrix: ${{ fromJSON(needs.a.outputs.m) }}\n    steps: [run: echo]\n",
    );
    assert!(e.starts_with("w.yml:6:15: `jobs.t.strategy.matrix`: a matrix computed by an expression is not supported"), "{e}");
    let big = "        a: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\n        b: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]\n";
    let e = err(&format!(
        "on: push\njobs:\n  t:\n    runs-on: x\n    strategy:\n      matrix:\n{big}    steps: [run: echo]\n"
    ));
    assert!(e.contains("makes 272 jobs; at most 256"), "{e}");
}

#[test]
fn push_filters() {
    let wf = ok(&format!(
        "on:\n  push:\n    branches: [main, 'releases/**', '!releases/**-alpha']\n    paths: ['src/**', '!src/docs/**']\n{MIN_JOB}"
    ));
    let push = |r: &str, paths: Option<&[&str]>| PushEvent {
        ref_: r.into(),
        changed_paths: paths.map(|p| p.iter().map(|s| s.to_string()).collect()),
    };
    assert!(matches(&wf, &push("refs/heads/main", Some(&["src/a.rs"]))));
    assert!(!matches(
        &wf,
        &push("refs/heads/main", Some(&["README.md"]))
    ));
    assert!(!matches(
        &wf,
        &push("refs/heads/main", Some(&["src/docs/x.md"]))
    ));
    assert!(matches(&wf, &push("refs/heads/main", None)));
    assert!(matches(
        &wf,
        &push("refs/heads/releases/1.0", Some(&["src/a"]))
    ));
    assert!(!matches(
        &wf,
        &push("refs/heads/releases/1.0-alpha", Some(&["src/a"]))
    ));
    // A branches filter alone does not fire on tags.
    assert!(!matches(&wf, &push("refs/tags/main", None)));
    // A tags filter alone does not fire on branches; paths do not apply to tags.
    let wf = ok(&format!(
        "on:\n  push:\n    tags: ['v*']\n    paths: [src/**]\n{MIN_JOB}"
    ));
    assert!(matches(&wf, &push("refs/tags/v1", Some(&["README.md"]))));
    assert!(!matches(&wf, &push("refs/heads/main", Some(&["src/a"]))));
    // Neither: both fire.
    let wf = ok(&format!("on: push\n{MIN_JOB}"));
    assert!(matches(&wf, &push("refs/tags/x", None)) && matches(&wf, &push("refs/heads/y", None)));
    // Ignore filters.
    let wf = ok(&format!(
        "on:\n  push:\n    branches-ignore: ['dependabot/**']\n    paths-ignore: ['**.md']\n{MIN_JOB}"
    ));
    assert!(!matches(&wf, &push("refs/heads/dependabot/x", None)));
    assert!(!matches(
        &wf,
        &push("refs/heads/main", Some(&["README.md", "docs/a.md"]))
    ));
    assert!(matches(
        &wf,
        &push("refs/heads/main", Some(&["README.md", "main.go"]))
    ));
    // workflow_dispatch only: no push starts it.
    let wf = ok(&format!("on: workflow_dispatch\n{MIN_JOB}"));
    assert!(!matches(&wf, &push("refs/heads/main", None)));
}

#[test]
fn skipping_follows_needs() {
    use plan::Outcome;
    use std::collections::HashMap;
    let wf = ok(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n  b:\n    needs: a\n    runs-on: x\n    steps: [run: echo]\n  c:\n    needs: b\n    runs-on: x\n    steps: [run: echo]\n  notify:\n    needs: c\n    if: failure()\n    runs-on: x\n    steps: [run: echo]\n  cleanup:\n    needs: c\n    if: always()\n    runs-on: x\n    steps: [run: echo]\n",
    );
    let cx = EvalContext::new();
    let results = |a: Outcome, b: Outcome, c: Outcome| {
        HashMap::from([
            ("a".to_owned(), a),
            ("b".to_owned(), b),
            ("c".to_owned(), c),
        ])
    };
    let all_ok = results(Outcome::Success, Outcome::Success, Outcome::Success);
    assert!(plan::should_run(&wf, "c", &all_ok, false, &cx).unwrap());
    assert!(!plan::should_run(&wf, "notify", &all_ok, false, &cx).unwrap());
    assert!(plan::should_run(&wf, "cleanup", &all_ok, false, &cx).unwrap());
    // `a` failed: b and c are skipped; `failure()` sees the ancestor's failure.
    let failed = results(Outcome::Failure, Outcome::Skipped, Outcome::Skipped);
    assert!(!plan::should_run(&wf, "b", &failed, false, &cx).unwrap());
    assert!(plan::should_run(&wf, "notify", &failed, false, &cx).unwrap());
    assert!(plan::should_run(&wf, "cleanup", &failed, false, &cx).unwrap());
    // Cancelled run: only always() runs.
    assert!(!plan::should_run(&wf, "b", &all_ok, true, &cx).unwrap());
    assert!(plan::should_run(&wf, "cleanup", &all_ok, true, &cx).unwrap());
    assert_eq!(plan::ancestors(&wf, "notify"), ["c", "b", "a"]);
    assert_eq!(
        Outcome::combine(&[Outcome::Success, Outcome::Failure]),
        Outcome::Failure
    );
    assert_eq!(
        Outcome::combine(&[Outcome::Skipped, Outcome::Skipped]),
        Outcome::Skipped
    );
}

#[test]
fn step_status_and_contexts() {
    use plan::{Outcome, StepRecord};
    use std::collections::BTreeMap;
    let done = [
        StepRecord {
            id: Some("a".into()),
            outcome: Outcome::Failure,
            conclusion: Outcome::Success, // continue-on-error
            outputs: BTreeMap::from([("x".into(), "1".into())]),
        },
        StepRecord {
            id: None,
            outcome: Outcome::Success,
            conclusion: Outcome::Success,
            outputs: BTreeMap::new(),
        },
    ];
    assert_eq!(
        plan::step_status(&done, false),
        slipway_workflow::expr::Status::Success
    );
    assert_eq!(
        plan::step_status(&done, true),
        slipway_workflow::expr::Status::Cancelled
    );
    let merged = plan::merge_outputs(&[
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "1".into())]),
        BTreeMap::from([("b".into(), "2".into())]),
    ]);
    assert_eq!(
        merged,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    assert_eq!(
        plan::steps_context(&done),
        json!({"a": {"outputs": {"x": "1"}, "outcome": "failure", "conclusion": "success"}})
    );
}
