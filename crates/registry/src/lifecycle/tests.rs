use super::*;
use proptest::prelude::*;

fn img(d: &str, tags: &[&str], days_ago: i64) -> Image {
    Image {
        digest: d.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        pushed_at: NOW - days_ago * DAY_MS,
        protected: false,
    }
}

const NOW: i64 = 1_800_000_000_000;

fn digests(e: &[Expiry]) -> Vec<&str> {
    e.iter().map(|x| x.digest.as_str()).collect()
}

fn err(text: &str) -> String {
    parse_policy(text).unwrap_err().0
}

#[test]
fn validation_matches_ecr() {
    let ok = r#"{"rules":[{"rulePriority":1,"description":"d","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}},
            {"rulePriority":5,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},
            {"rulePriority":9,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100},"action":{"type":"expire"}}]}"#;
    let p = parse_policy(ok).unwrap();
    assert_eq!(
        p.rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        [1, 5, 9]
    );

    let rule = |prio: i64, sel: &str| {
        format!(r#"{{"rulePriority":{prio},"selection":{sel},"action":{{"type":"expire"}}}}"#)
    };
    let pol = |rules: &[String]| format!(r#"{{"rules":[{}]}}"#, rules.join(","));
    let count = r#""countType":"imageCountMoreThan","countNumber":1"#;
    let cases: Vec<(String, &str)> = vec![
            (pol(&[rule(1, &format!(r#"{{"tagStatus":"tagged",{count}}}"#))]), "rule with rulePriority 1: tagStatus \"tagged\" requires tagPrefixList or tagPatternList"),
            (pol(&[rule(2, &format!(r#"{{"tagStatus":"untagged","tagPrefixList":["a"],{count}}}"#))]), "rule with rulePriority 2: tagPrefixList and tagPatternList can only be used with tagStatus \"tagged\""),
            (pol(&[rule(3, &format!(r#"{{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["b"],{count}}}"#))]), "cannot both be specified"),
            (pol(&[rule(4, &format!(r#"{{"tagStatus":"tagged","tagPatternList":["*a*b*c*d*"],{count}}}"#))]), "rule with rulePriority 4: tag pattern \"*a*b*c*d*\" has 5 wildcards"),
            (pol(&[rule(1, &format!(r#"{{"tagStatus":"any",{count}}}"#)), rule(2, &format!(r#"{{"tagStatus":"untagged",{count}}}"#))]), "rule with rulePriority 1: a rule with tagStatus \"any\" must have the highest rulePriority"),
            (pol(&[rule(1, &format!(r#"{{"tagStatus":"untagged",{count}}}"#)), rule(2, &format!(r#"{{"tagStatus":"untagged",{count}}}"#))]), "only one rule may"),
            (pol(&[rule(7, &format!(r#"{{"tagStatus":"untagged",{count}}}"#)), rule(7, &format!(r#"{{"tagStatus":"tagged","tagPrefixList":["x"],{count}}}"#))]), "rulePriority 7 is used by more than one rule"),
            (pol(&[rule(1, r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1}"#)]), "rule with rulePriority 1: countType \"sinceImagePushed\" requires countUnit \"days\""),
            (pol(&[rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countUnit":"days","countNumber":1}"#)]), "countUnit cannot be used with countType \"imageCountMoreThan\""),
            (pol(&[rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0}"#)]), "rule with rulePriority 1: countNumber must be an integer of at least 1"),
            (pol(&[rule(1, r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"hours","countNumber":1}"#)]), "countUnit \"hours\" is invalid"),
            (pol(&[rule(1, r#"{"tagStatus":"sometimes","countType":"imageCountMoreThan","countNumber":1}"#)]), "tagStatus \"sometimes\" is invalid"),
            (pol(&[rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1,"extra":1}"#)]), "selection has an unknown field \"extra\""),
            (pol(&[rule(0, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#)]), "rules[0]: rulePriority must be an integer of at least 1"),
            (pol(&[rule(1, &format!(r#"{{"tagStatus":"tagged","tagPrefixList":[],{count}}}"#))]), "tagPrefixList must not be empty"),
            (r#"{"rules":[]}"#.to_owned(), "at least one rule"),
            ("[1]".to_owned(), "must be a JSON object"),
            (r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"transition"}}]}"#.to_owned(), "rule with rulePriority 1: action type \"transition\" is not supported"),
        ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "{text}\n  gave: {e}\n  want: {want}");
    }
}

#[test]
fn globs() {
    assert!(glob_match("prod*", "prod-1"));
    assert!(glob_match("*", ""));
    assert!(glob_match("*-rc*", "v1-rc2"));
    assert!(glob_match("a*b*c", "abc"));
    assert!(!glob_match("a*b*c", "acb"));
    assert!(!glob_match("prod", "prod-1"));
    assert!(glob_match("a*a", "aa"));
    assert!(!glob_match("a*a", "a"));
}

/// The example of ECR's documentation ("Filtering on multiple rules").
#[test]
fn ecr_multiple_rules_example() {
    let p = parse_policy(r#"{"rules":[
          {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["alpha"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
          {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPrefixList":["beta"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).unwrap();
    let images = [
        img("A", &["alpha-1", "beta-1"], 10),
        img("B", &["beta-2", "prod-1"], 9),
        img("C", &["alpha-2"], 8),
        img("D", &["beta-3"], 7),
        img("E", &["prod-2"], 6),
    ];
    let e = evaluate(&p, &images, NOW);
    assert_eq!(digests(&e), ["A", "B"]);
    assert_eq!(e[0].rule_priority, 1);
    assert_eq!(e[1].rule_priority, 2);
}

#[test]
fn higher_rules_protect_and_protected_images_survive() {
    let p = parse_policy(r#"{"rules":[
          {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":9999},"action":{"type":"expire"}},
          {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}"#).unwrap();
    let mut images = vec![
        img("old-prod", &["prod-1"], 100),
        img("old-dev", &["dev-1"], 100),
        img("old-untagged", &[], 40),
        img("new-dev", &["dev-2"], 1),
        img("running", &["dev-0"], 200),
    ];
    images[4].protected = true;
    assert_eq!(
        digests(&evaluate(&p, &images, NOW)),
        ["old-dev", "old-untagged"]
    );
    // The clock moves: 30 more days expire new-dev too.
    assert_eq!(
        digests(&evaluate(&p, &images, NOW + 30 * DAY_MS)),
        ["old-dev", "old-untagged", "new-dev"]
    );
}

#[test]
fn plan_cascades_to_children_and_referrers_and_respects_in_use() {
    let p = parse_policy(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).unwrap();
    let contents = RepoContents {
        manifests: vec![
            ("idx-old".into(), vec!["v1".into()], 1),
            ("child-old".into(), vec![], 1),
            ("shared".into(), vec![], 1),
            ("sig".into(), vec![], 2),
            ("idx-new".into(), vec!["v2".into()], 5),
            ("child-new".into(), vec![], 5),
            ("in-use".into(), vec!["v0".into()], 0),
        ],
        refs: vec![
            ("idx-old".into(), "child-old".into(), "manifest".into()),
            ("idx-old".into(), "shared".into(), "manifest".into()),
            ("idx-new".into(), "child-new".into(), "manifest".into()),
            ("idx-new".into(), "shared".into(), "manifest".into()),
            ("in-use".into(), "sha256:cfg".into(), "blob".into()),
        ],
        subjects: vec![("sig".into(), "idx-old".into())],
    };
    let in_use: HashSet<String> = ["sha256:cfg".to_owned()].into();
    let r = plan("r", &p, &contents, &in_use, NOW);
    assert_eq!(digests(&r.expired), ["idx-old"]);
    assert_eq!(r.also_deleted, ["child-old", "sig"]);
    assert_eq!(r.protected, ["in-use"]);
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    let rule = (
        0..3u8,
        prop::sample::select(vec!["a", "b", "v1", "prod", "x*", "*1"]),
        any::<bool>(),
        1..5u64,
    );
    prop::collection::vec(rule, 1..5).prop_map(|rs| {
        let mut rules: Vec<Rule> = Vec::new();
        let mut untagged = false;
        for (i, (status, tag, by_count, n)) in rs.into_iter().enumerate() {
            let tag_status = match status {
                0 => TagStatus::Tagged,
                1 if !untagged => {
                    untagged = true;
                    TagStatus::Untagged
                }
                _ => TagStatus::Tagged,
            };
            let (prefixes, patterns) = if tag.contains('*') {
                (vec![], vec![tag.to_owned()])
            } else {
                (vec![tag.to_owned()], vec![])
            };
            let tagged = tag_status == TagStatus::Tagged;
            rules.push(Rule {
                priority: i as i64 * 2 + 1,
                description: None,
                tag_status,
                prefixes: if tagged { prefixes } else { vec![] },
                patterns: if tagged { patterns } else { vec![] },
                count: if by_count {
                    Count::MoreThan(n)
                } else {
                    Count::SincePushedDays(n)
                },
            });
        }
        Policy { rules }
    })
}

fn arb_images() -> impl Strategy<Value = Vec<Image>> {
    let tag = prop::sample::select(vec!["a1", "b2", "v1", "prod-1", "x9", "latest"]);
    prop::collection::vec(
        (prop::collection::vec(tag, 0..3), 0..10i64, any::<bool>()),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (tags, days, protected))| Image {
                digest: format!("sha256:{i:04}"),
                tags: tags.into_iter().map(str::to_owned).collect(),
                pushed_at: NOW - days * DAY_MS - i as i64,
                protected,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn evaluation_invariants(policy in arb_policy(), images in arb_images(), later in 0..20i64) {
        let e = evaluate(&policy, &images, NOW);
        let by: HashMap<&str, &Image> = images.iter().map(|i| (i.digest.as_str(), i)).collect();
        let mut seen = HashSet::new();
        for x in &e {
            prop_assert!(seen.insert(x.digest.clone()), "expired twice");
            let im = by[x.digest.as_str()];
            prop_assert!(!im.protected, "a protected image expired");
            let rule = policy.rules.iter().find(|r| r.priority == x.rule_priority).unwrap();
            prop_assert!(rule.selects(im));
            // No higher-priority rule selected it.
            for r in policy.rules.iter().filter(|r| r.priority < x.rule_priority) {
                prop_assert!(!r.selects(im));
            }
            if let Count::SincePushedDays(d) = rule.count {
                prop_assert!(im.pushed_at < NOW - d as i64 * DAY_MS);
            }
        }
        // imageCountMoreThan n keeps at least the n newest images it selects.
        for r in &policy.rules {
            if let Count::MoreThan(n) = r.count {
                let mut sel: Vec<&Image> = images.iter().filter(|i| r.selects(i)).collect();
                sel.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then_with(|| a.digest.cmp(&b.digest)));
                for keep in sel.iter().take(n as usize) {
                    prop_assert!(!e.iter().any(|x| x.digest == keep.digest && x.rule_priority == r.priority));
                }
            }
        }
        // Oldest first.
        for w in e.windows(2) {
            prop_assert!(w[0].pushed_at <= w[1].pushed_at);
        }
        // Input order does not matter.
        let mut rev = images.clone();
        rev.reverse();
        prop_assert_eq!(&evaluate(&policy, &rev, NOW), &e);
        // With only age rules, a later clock expires a superset.
        if policy.rules.iter().all(|r| matches!(r.count, Count::SincePushedDays(_))) {
            let later_e: HashSet<String> = evaluate(&policy, &images, NOW + later * DAY_MS).into_iter().map(|x| x.digest).collect();
            for x in &e {
                prop_assert!(later_e.contains(&x.digest));
            }
        }
    }
}
