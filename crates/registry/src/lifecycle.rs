//! Lifecycle policies in Amazon ECR's JSON format.
//!
//! ```json
//! {"rules": [{"rulePriority": 1, "description": "keep 10 prod images",
//!             "selection": {"tagStatus": "tagged", "tagPatternList": ["prod*"],
//!                           "countType": "imageCountMoreThan", "countNumber": 10},
//!             "action": {"type": "expire"}}]}
//! ```
//!
//! * [`parse_policy`] validates as ECR does: unique positive `rulePriority`; `tagStatus`
//!   `tagged` needs exactly one of `tagPrefixList` / `tagPatternList` (non-empty, at most 4
//!   `*` per pattern), `untagged` and `any` take neither; at most one `untagged` rule; at
//!   most one `any` rule and it has the highest priority; `countType` `imageCountMoreThan`
//!   (no `countUnit`) or `sinceImagePushed` (`countUnit: days`); `countNumber` ≥ 1;
//!   `action.type` `expire`; no unknown fields. Errors name the rule.
//! * [`evaluate`] is pure (the clock is an argument): rules run in ascending priority; each
//!   selects its images (newest push first) — a `tagPrefixList` / `tagPatternList` matches
//!   when **every** entry matches **some** tag of the image — and marks those beyond
//!   `countNumber`, or pushed more than `countNumber` days ago. An image selected by a
//!   higher-priority rule is never expired by a later one (later rules still count it, as
//!   ECR does), so each image is expired by at most one rule.
//! * **Safety rule** (Slipway's, not ECR's): an image that a running task or the last
//!   successful release of a service uses is never expired; it still counts for its rules.
//! * An "image" is a top-level manifest: untagged children of an index, and untagged
//!   referrers (signatures, SBOMs) whose subject is in the repository, follow their parent:
//!   they are deleted with it when nothing retained still refers to them.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Registry;
use crate::error::RegistryError;

/// Largest policy text ECR accepts.
pub const MAX_POLICY_CHARS: usize = 30_720;
/// Most `*` wildcards ECR accepts in one tag pattern.
pub const MAX_WILDCARDS: usize = 4;
const DAY_MS: i64 = 86_400_000;

/// What the server's running tasks and last successful releases use: image references
/// (`repo@sha256:...`) or image ids / digests (`sha256:...`).
#[async_trait]
pub trait InUse: Send + Sync + 'static {
    async fn images_in_use(&self) -> Result<Vec<String>, String>;
}

/// An invalid policy; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lifecycle policy: {0}")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Count {
    /// `imageCountMoreThan`: keep the N most recently pushed.
    MoreThan(u64),
    /// `sinceImagePushed` in days.
    SincePushedDays(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub priority: i64,
    pub description: Option<String>,
    pub tag_status: TagStatus,
    pub prefixes: Vec<String>,
    pub patterns: Vec<String>,
    pub count: Count,
}

/// A validated policy, rules in ascending priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

fn check_keys(
    obj: &serde_json::Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> Result<(), String> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "{what} has an unknown field {k:?} (allowed: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn string_list(
    sel: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, String> {
    let Some(v) = sel.get(key) else {
        return Ok(None);
    };
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{key} must be an array of strings"))?;
    if arr.is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    let mut out = Vec::new();
    for x in arr {
        let s = x
            .as_str()
            .ok_or_else(|| format!("{key} must be an array of strings"))?;
        if s.is_empty() {
            return Err(format!("{key} must not contain an empty string"));
        }
        out.push(s.to_owned());
    }
    Ok(Some(out))
}

fn parse_rule(i: usize, v: &Value) -> Result<Rule, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError(format!("rules[{i}] must be an object")))?;
    let priority = match obj.get("rulePriority") {
        Some(p) => p.as_i64().filter(|p| *p >= 1).ok_or_else(|| {
            PolicyError(format!(
                "rules[{i}]: rulePriority must be an integer of at least 1, got {p}"
            ))
        })?,
        None => return Err(PolicyError(format!("rules[{i}]: rulePriority is required"))),
    };
    let named = |m: String| PolicyError(format!("rule with rulePriority {priority}: {m}"));
    check_keys(
        obj,
        &["rulePriority", "description", "selection", "action"],
        "the rule",
    )
    .map_err(named)?;
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(named("description must be a string".into())),
    };
    let action = obj
        .get("action")
        .and_then(Value::as_object)
        .ok_or_else(|| named("action is required and must be an object".into()))?;
    check_keys(action, &["type"], "action").map_err(named)?;
    match action.get("type").and_then(Value::as_str) {
        Some("expire") => {}
        Some(t) => {
            return Err(named(format!(
                "action type {t:?} is not supported; the only action type is \"expire\""
            )));
        }
        None => return Err(named("action.type is required (\"expire\")".into())),
    }
    let sel = obj
        .get("selection")
        .and_then(Value::as_object)
        .ok_or_else(|| named("selection is required and must be an object".into()))?;
    check_keys(
        sel,
        &[
            "tagStatus",
            "tagPrefixList",
            "tagPatternList",
            "countType",
            "countUnit",
            "countNumber",
        ],
        "selection",
    )
    .map_err(named)?;
    let tag_status = match sel.get("tagStatus").and_then(Value::as_str) {
        Some("tagged") => TagStatus::Tagged,
        Some("untagged") => TagStatus::Untagged,
        Some("any") => TagStatus::Any,
        Some(s) => {
            return Err(named(format!(
                "tagStatus {s:?} is invalid; use \"tagged\", \"untagged\" or \"any\""
            )));
        }
        None => return Err(named("selection.tagStatus is required".into())),
    };
    let prefixes = string_list(sel, "tagPrefixList").map_err(named)?;
    let patterns = string_list(sel, "tagPatternList").map_err(named)?;
    match tag_status {
        TagStatus::Tagged => match (&prefixes, &patterns) {
            (None, None) => {
                return Err(named(
                    "tagStatus \"tagged\" requires tagPrefixList or tagPatternList".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(named(
                    "tagPrefixList and tagPatternList cannot both be specified".into(),
                ));
            }
            _ => {}
        },
        TagStatus::Untagged | TagStatus::Any => {
            if prefixes.is_some() || patterns.is_some() {
                let s = if tag_status == TagStatus::Any {
                    "any"
                } else {
                    "untagged"
                };
                return Err(named(format!(
                    "tagPrefixList and tagPatternList can only be used with tagStatus \"tagged\", not \"{s}\""
                )));
            }
        }
    }
    for p in patterns.iter().flatten() {
        let n = p.matches('*').count();
        if n > MAX_WILDCARDS {
            return Err(named(format!(
                "tag pattern {p:?} has {n} wildcards; at most {MAX_WILDCARDS} are allowed"
            )));
        }
    }
    let number = match sel.get("countNumber") {
        Some(n) => n.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            named(format!(
                "countNumber must be an integer of at least 1, got {n}"
            ))
        })?,
        None => return Err(named("selection.countNumber is required".into())),
    };
    let unit = sel.get("countUnit");
    let count = match sel.get("countType").and_then(Value::as_str) {
        Some("imageCountMoreThan") => {
            if unit.is_some() {
                return Err(named(
                    "countUnit cannot be used with countType \"imageCountMoreThan\"".into(),
                ));
            }
            Count::MoreThan(number)
        }
        Some("sinceImagePushed") => {
            match unit.and_then(Value::as_str) {
                Some("days") => {}
                Some(u) => {
                    return Err(named(format!(
                        "countUnit {u:?} is invalid; the only unit is \"days\""
                    )));
                }
                None => {
                    return Err(named(
                        "countType \"sinceImagePushed\" requires countUnit \"days\"".into(),
                    ));
                }
            }
            Count::SincePushedDays(number)
        }
        Some(t @ ("sinceImagePulled" | "sinceImageTransitioned")) => {
            return Err(named(format!(
                "countType {t:?} is not supported; use \"imageCountMoreThan\" or \"sinceImagePushed\""
            )));
        }
        Some(t) => {
            return Err(named(format!(
                "countType {t:?} is invalid; use \"imageCountMoreThan\" or \"sinceImagePushed\""
            )));
        }
        None => return Err(named("selection.countType is required".into())),
    };
    Ok(Rule {
        priority,
        description,
        tag_status,
        prefixes: prefixes.unwrap_or_default(),
        patterns: patterns.unwrap_or_default(),
        count,
    })
}

/// Parses and validates a policy's JSON text.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    if text.chars().count() > MAX_POLICY_CHARS {
        return Err(PolicyError(format!(
            "the policy text is longer than {MAX_POLICY_CHARS} characters"
        )));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError("the policy must be a JSON object with \"rules\"".into()))?;
    check_keys(obj, &["rules"], "the policy").map_err(PolicyError)?;
    let rules = obj
        .get("rules")
        .and_then(Value::as_array)
        .ok_or_else(|| PolicyError("\"rules\" is required and must be an array".into()))?;
    if rules.is_empty() {
        return Err(PolicyError(
            "\"rules\" must contain at least one rule".into(),
        ));
    }
    let mut parsed = rules
        .iter()
        .enumerate()
        .map(|(i, r)| parse_rule(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort_by_key(|r| r.priority);
    for w in parsed.windows(2) {
        if w[0].priority == w[1].priority {
            return Err(PolicyError(format!(
                "rulePriority {} is used by more than one rule; priorities must be unique",
                w[0].priority
            )));
        }
    }
    let untagged: Vec<i64> = parsed
        .iter()
        .filter(|r| r.tag_status == TagStatus::Untagged)
        .map(|r| r.priority)
        .collect();
    if untagged.len() > 1 {
        return Err(PolicyError(format!(
            "rules with rulePriority {untagged:?} all select untagged images; only one rule may"
        )));
    }
    let any: Vec<i64> = parsed
        .iter()
        .filter(|r| r.tag_status == TagStatus::Any)
        .map(|r| r.priority)
        .collect();
    if any.len() > 1 {
        return Err(PolicyError(format!(
            "rules with rulePriority {any:?} all have tagStatus \"any\"; only one rule may"
        )));
    }
    let highest = parsed.last().map_or(0, |r| r.priority);
    if let Some(&p) = any.first()
        && p != highest
    {
        return Err(PolicyError(format!(
            "rule with rulePriority {p}: a rule with tagStatus \"any\" must have the highest rulePriority ({highest} is higher)"
        )));
    }
    Ok(Policy { rules: parsed })
}

/// `*` matches any run of characters (also empty); everything else is literal.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// An image as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    /// Unix ms.
    pub pushed_at: i64,
    /// In use by a running task or a last successful release: never expired.
    pub protected: bool,
}

/// An image a rule expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: i64,
    pub rule_priority: i64,
}

impl Rule {
    /// Whether the rule's tag selection matches the image.
    pub fn selects(&self, img: &Image) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => img.tags.is_empty(),
            TagStatus::Tagged => {
                !img.tags.is_empty()
                    && self
                        .prefixes
                        .iter()
                        .all(|p| img.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self
                        .patterns
                        .iter()
                        .all(|p| img.tags.iter().any(|t| glob_match(p, t)))
            }
        }
    }
}

/// The images a policy expires at `now_ms`, oldest first. Pure: same input, same answer.
pub fn evaluate(policy: &Policy, images: &[Image], now_ms: i64) -> Vec<Expiry> {
    let mut claimed: HashSet<usize> = HashSet::new();
    let mut expired: Vec<(usize, i64)> = Vec::new();
    let mut order: Vec<usize> = (0..images.len()).collect();
    // Newest first; ties broken by digest so the answer does not depend on input order.
    order.sort_by(|&a, &b| {
        images[b]
            .pushed_at
            .cmp(&images[a].pushed_at)
            .then_with(|| images[a].digest.cmp(&images[b].digest))
    });
    for rule in &policy.rules {
        let selected: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| rule.selects(&images[i]))
            .collect();
        let marked: Vec<usize> = match rule.count {
            Count::MoreThan(n) => selected
                .iter()
                .copied()
                .skip(usize::try_from(n).unwrap_or(usize::MAX))
                .collect(),
            Count::SincePushedDays(d) => {
                let cutoff = now_ms.saturating_sub(
                    i64::try_from(d)
                        .unwrap_or(i64::MAX / DAY_MS)
                        .saturating_mul(DAY_MS),
                );
                selected
                    .iter()
                    .copied()
                    .filter(|&i| images[i].pushed_at < cutoff)
                    .collect()
            }
        };
        for i in marked {
            if !claimed.contains(&i) && !images[i].protected {
                expired.push((i, rule.priority));
            }
        }
        claimed.extend(selected);
    }
    expired.sort_by(|a, b| {
        images[a.0]
            .pushed_at
            .cmp(&images[b.0].pushed_at)
            .then_with(|| images[a.0].digest.cmp(&images[b.0].digest))
    });
    expired
        .into_iter()
        .map(|(i, p)| Expiry {
            digest: images[i].digest.clone(),
            tags: images[i].tags.clone(),
            pushed_at: images[i].pushed_at,
            rule_priority: p,
        })
        .collect()
}

/// A repository's manifests as lifecycle sees them.
#[derive(Debug, Clone, Default)]
pub struct RepoContents {
    /// (digest, tags, pushed_at) of every manifest.
    pub manifests: Vec<(String, Vec<String>, i64)>,
    /// (manifest, child, kind) references.
    pub refs: Vec<(String, String, String)>,
    /// (manifest, subject).
    pub subjects: Vec<(String, String)>,
}

/// What applying a policy to a repository deletes (or, in a preview, would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleReport {
    pub repository: String,
    pub dry_run: bool,
    /// Images expired by a rule, oldest first.
    pub expired: Vec<Expiry>,
    /// Untagged index children and referrers deleted with them.
    pub also_deleted: Vec<String>,
    /// Images kept only by the safety rule (in use by a task or a last good release).
    pub protected: Vec<String>,
}

/// A preview kept for a repository: the policy previewed and what it would expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub policy_text: String,
    pub report: LifecycleReport,
}

/// A map lock; a panic elsewhere while holding it leaves a usable map.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The plan for one repository: pure, given its contents, what is in use and the clock.
pub fn plan(
    repository: &str,
    policy: &Policy,
    contents: &RepoContents,
    in_use: &HashSet<String>,
    now_ms: i64,
) -> LifecycleReport {
    let present: HashSet<&str> = contents.manifests.iter().map(|m| m.0.as_str()).collect();
    let tagged: HashSet<&str> = contents
        .manifests
        .iter()
        .filter(|m| !m.1.is_empty())
        .map(|m| m.0.as_str())
        .collect();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut blobs: HashMap<&str, Vec<&str>> = HashMap::new();
    for (m, c, kind) in &contents.refs {
        if kind == "manifest" {
            children.entry(m).or_default().push(c);
        } else {
            blobs.entry(m).or_default().push(c);
        }
    }
    let is_child: HashSet<&str> = children.values().flatten().copied().collect();
    let is_referrer: HashSet<&str> = contents
        .subjects
        .iter()
        .filter(|(_, s)| present.contains(s.as_str()))
        .map(|(m, _)| m.as_str())
        .collect();
    // A manifest is used if it, its config, or (for an index) a child is in use.
    let uses = |d: &str| -> bool {
        let direct = |d: &str| {
            in_use.contains(d)
                || blobs
                    .get(d)
                    .is_some_and(|b| b.iter().any(|x| in_use.contains(*x)))
        };
        direct(d) || children.get(d).is_some_and(|c| c.iter().any(|x| direct(x)))
    };
    let images: Vec<Image> = contents
        .manifests
        .iter()
        .filter(|(d, tags, _)| {
            !tags.is_empty() || !(is_child.contains(d.as_str()) || is_referrer.contains(d.as_str()))
        })
        .map(|(d, tags, at)| Image {
            digest: d.clone(),
            tags: tags.clone(),
            pushed_at: *at,
            protected: uses(d),
        })
        .collect();
    let expired = evaluate(policy, &images, now_ms);
    let protected: Vec<String> = {
        let unprotected: Vec<Image> = images
            .iter()
            .map(|i| Image {
                protected: false,
                ..i.clone()
            })
            .collect();
        let would: HashSet<String> = evaluate(policy, &unprotected, now_ms)
            .into_iter()
            .map(|e| e.digest)
            .collect();
        images
            .iter()
            .filter(|i| i.protected && would.contains(&i.digest))
            .map(|i| i.digest.clone())
            .collect()
    };
    // Cascade: children and referrers of deleted manifests that nothing retained needs.
    let mut deleted: BTreeSet<String> = expired.iter().map(|e| e.digest.clone()).collect();
    let mut also = BTreeSet::new();
    loop {
        let mut grew = false;
        for (d, tags, _) in &contents.manifests {
            if deleted.contains(d) || !tags.is_empty() || tagged.contains(d.as_str()) || uses(d) {
                continue;
            }
            let parents: Vec<&str> = children
                .iter()
                .filter(|(_, c)| c.contains(&d.as_str()))
                .map(|(p, _)| *p)
                .collect();
            let subject = contents
                .subjects
                .iter()
                .find(|(m, _)| m == d)
                .map(|(_, s)| s.as_str())
                .filter(|s| present.contains(s));
            let orphaned_child =
                !parents.is_empty() && parents.iter().all(|p| deleted.contains(*p));
            let orphaned_referrer = subject.is_some_and(|s| deleted.contains(s));
            if orphaned_child || orphaned_referrer {
                deleted.insert(d.clone());
                also.insert(d.clone());
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    LifecycleReport {
        repository: repository.to_owned(),
        dry_run: true,
        expired,
        also_deleted: also.into_iter().collect(),
        protected,
    }
}

/// The digest part of an in-use reference (`repo@sha256:x` or `sha256:x`).
fn in_use_digest(s: &str) -> Option<&str> {
    let d = s.rsplit_once('@').map_or(s, |(_, d)| d);
    d.contains(':').then_some(d)
}

impl Registry {
    /// Stores a validated policy (or removes it with `None`); `Ok(false)` if there is no
    /// such repository.
    pub async fn set_lifecycle_policy(
        &self,
        repo: &str,
        text: Option<&str>,
    ) -> Result<Result<bool, PolicyError>, RegistryError> {
        if let Some(t) = text
            && let Err(e) = parse_policy(t)
        {
            return Ok(Err(e));
        }
        Ok(Ok(self.inner.db.set_lifecycle_policy(repo, text).await?))
    }

    pub async fn lifecycle_policy(&self, repo: &str) -> Result<Option<String>, RegistryError> {
        self.inner.db.lifecycle_policy(repo).await
    }

    async fn in_use_set(&self) -> Result<HashSet<String>, RegistryError> {
        let Some(src) = &self.inner.in_use else {
            return Ok(HashSet::new());
        };
        let list = src.images_in_use().await.map_err(|e| {
            RegistryError::Corrupt(format!(
                "cannot tell which images are in use ({e}); nothing expired"
            ))
        })?;
        Ok(list
            .iter()
            .filter_map(|s| in_use_digest(s))
            .map(str::to_owned)
            .collect())
    }

    async fn contents(&self, repo: &str) -> Result<RepoContents, RegistryError> {
        let manifests = self
            .inner
            .db
            .manifests_with_tags(repo)
            .await?
            .into_iter()
            .map(|(m, tags)| (m.digest, tags, m.pushed_at))
            .collect();
        Ok(RepoContents {
            manifests,
            refs: self.inner.db.repo_refs(repo).await?,
            subjects: self.inner.db.repo_subjects(repo).await?,
        })
    }

    /// The plan of `policy` for a repository at `now_ms` (nothing deleted).
    async fn plan_now(
        &self,
        repo: &str,
        policy: &Policy,
        now_ms: i64,
    ) -> Result<LifecycleReport, RegistryError> {
        let in_use = self.in_use_set().await?;
        let contents = self.contents(repo).await?;
        Ok(plan(repo, policy, &contents, &in_use, now_ms))
    }

    /// Applies (or with `dry_run`, previews) a repository's policy at `now_ms`. `None` when
    /// the repository has no policy.
    pub async fn apply_lifecycle(
        &self,
        repo: &str,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<Option<LifecycleReport>, RegistryError> {
        let Some(text) = self.inner.db.lifecycle_policy(repo).await? else {
            return Ok(None);
        };
        let policy = parse_policy(&text).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let mut report = self.plan_now(repo, &policy, now_ms).await?;
        report.dry_run = dry_run;
        if !dry_run {
            for d in report
                .expired
                .iter()
                .map(|e| &e.digest)
                .chain(report.also_deleted.iter())
            {
                self.inner.db.delete_manifest(repo, d).await?;
            }
            lock(&self.inner.lifecycle_evaluated).insert(repo.to_owned(), now_ms);
            if !report.expired.is_empty() {
                tracing::info!(
                    repository = repo,
                    expired = report.expired.len(),
                    also_deleted = report.also_deleted.len(),
                    "lifecycle policy expired images"
                );
            }
        }
        Ok(Some(report))
    }

    /// When this process last applied the repository's policy (unix ms), if it did.
    pub fn lifecycle_evaluated_at(&self, repo: &str) -> Option<i64> {
        lock(&self.inner.lifecycle_evaluated).get(repo).copied()
    }

    /// Previews `text` (or, without it, the stored policy) on a repository at `now_ms`
    /// without deleting anything, and keeps the result as the repository's last preview
    /// ([`Registry::lifecycle_preview`]). `Ok(Ok(None))` when there is no policy to preview.
    pub async fn start_lifecycle_preview(
        &self,
        repo: &str,
        text: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<Option<Preview>, PolicyError>, RegistryError> {
        let text = match text {
            Some(t) => t.to_owned(),
            None => match self.inner.db.lifecycle_policy(repo).await? {
                Some(t) => t,
                None => return Ok(Ok(None)),
            },
        };
        let policy = match parse_policy(&text) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let report = self.plan_now(repo, &policy, now_ms).await?;
        let preview = Preview {
            policy_text: text,
            report,
        };
        lock(&self.inner.lifecycle_previews).insert(repo.to_owned(), preview.clone());
        Ok(Ok(Some(preview)))
    }

    /// The repository's last preview started with [`Registry::start_lifecycle_preview`].
    pub fn lifecycle_preview(&self, repo: &str) -> Option<Preview> {
        lock(&self.inner.lifecycle_previews).get(repo).cloned()
    }

    /// Drops what is kept in memory about a deleted repository's lifecycle.
    pub(crate) fn forget_lifecycle_state(&self, repo: &str) {
        lock(&self.inner.lifecycle_previews).remove(repo);
        lock(&self.inner.lifecycle_evaluated).remove(repo);
    }

    /// Applies every repository's policy now.
    pub async fn apply_lifecycle_all(&self) -> Result<Vec<LifecycleReport>, RegistryError> {
        let mut out = Vec::new();
        for r in self.inner.db.list_repos(None, -1).await? {
            if let Some(rep) = self
                .apply_lifecycle(&r.name, false, crate::db::now_ms())
                .await?
            {
                out.push(rep);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
