//! Fuzzing of the registry's request-path, reference and range parsers on stable Rust, with
//! proptest generators (issue 20). Targets are named `fuzz_registry_*`.
//!
//! - paths: arbitrary text never panics; every route built from a valid name and reference
//!   parses back to exactly that route (no route shadows another, whatever the name's
//!   components are called: `blobs`, `uploads`, `manifests`, `tags`, ...);
//! - references: arbitrary text never panics; a tag is accepted as the tag, a digest as the
//!   digest, and nothing else is accepted;
//! - `Range` and `Content-Range`: arbitrary values never panic; a range that is served lies
//!   inside the blob and matches what was asked.

use proptest::prelude::{Strategy, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest};

use super::*;
use crate::names::fuzz::{config, valid_digest, valid_name, valid_tag};

/// Names whose components look like the routes' own words.
fn tricky_name() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        3 => prop::sample::select(
            &["blobs", "uploads", "manifests", "tags", "list", "referrers", "v2", "token", "a"][..]
        )
        .prop_map(String::from),
        1 => valid_name(),
    ];
    prop::collection::vec(word, 1..5).prop_map(|w| w.join("/"))
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![valid_name(), tricky_name()]
}

fn upload_id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&b"0123456789abcdef"[..]), 32..33)
        .prop_map(|h| String::from_utf8(h).unwrap())
}

fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(
                &[
                    "/",
                    "v2",
                    "/v2/",
                    "blobs",
                    "uploads",
                    "manifests",
                    "tags",
                    "list",
                    "referrers",
                    "a",
                    ":",
                    "sha256:",
                    "",
                    "//",
                    "%2F",
                    "é"
                ][..],
            ),
            0..12,
        )
        .prop_map(|p| p.concat()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_registry_route_paths_arbitrary(path in path_text()) {
        if let Some(r) = Route::parse(&path) {
            prop_assert!(path.starts_with("/v2"));
            if let Some(name) = r.name() {
                // The name is a piece of the path.
                prop_assert!(path.contains(name));
            }
        }
    }

    #[test]
    fn fuzz_registry_routes_round_trip(
        name in any_name(),
        tag in valid_tag(),
        digest in valid_digest(),
        id in upload_id(),
    ) {
        prop_assert!(crate::names::validate_name(&name).is_ok(), "{:?}", name);
        let cases = [
            (format!("/v2/{name}/tags/list"), Route::Tags(&name)),
            (format!("/v2/{name}/manifests/{tag}"), Route::Manifest(&name, &tag)),
            (format!("/v2/{name}/manifests/{digest}"), Route::Manifest(&name, &digest)),
            (format!("/v2/{name}/blobs/{digest}"), Route::Blob(&name, &digest)),
            (format!("/v2/{name}/blobs/uploads/"), Route::Uploads(&name)),
            (format!("/v2/{name}/blobs/uploads"), Route::Uploads(&name)),
            (format!("/v2/{name}/blobs/uploads/{id}"), Route::Upload(&name, &id)),
            (format!("/v2/{name}/referrers/{digest}"), Route::Referrers(&name, &digest)),
        ];
        for (path, want) in cases {
            prop_assert_eq!(Route::parse(&path), Some(want), "{}", path);
        }
    }

    #[test]
    fn fuzz_registry_references(
        r in prop_oneof![
            any::<String>(),
            valid_tag(),
            valid_digest(),
            prop::collection::vec(prop::sample::select(&['a', '0', ':', 's', 'h', '2', '5', '6', '.', '-', '_', '@'][..]), 0..80)
                .prop_map(|c| c.into_iter().collect::<String>()),
        ],
    ) {
        match parse_reference(&r) {
            Ok(Reference::Tag(t)) => {
                prop_assert_eq!(&t, &r);
                prop_assert!(validate_tag(&r).is_ok() && !r.contains(':'));
            }
            Ok(Reference::Digest(d)) => prop_assert_eq!(d.to_string(), r),
            Err(e) => {
                prop_assert!(matches!(e.code, Code::TagInvalid | Code::DigestInvalid));
                prop_assert!(!e.message.is_empty());
                prop_assert!(validate_tag(&r).is_err() || r.contains(':'));
            }
        }
    }

    #[test]
    fn fuzz_registry_ranges(
        v in prop_oneof![
            any::<String>(),
            (prop::option::of(any::<u64>()), prop::option::of(any::<u64>()), prop::sample::select(&["bytes=", "bytes= ", "items=", " bytes=", "bytes "][..]))
                .prop_map(|(a, b, unit)| format!(
                    "{unit}{}-{}",
                    a.map(|a| a.to_string()).unwrap_or_default(),
                    b.map(|b| b.to_string()).unwrap_or_default()
                )),
            (0u64..200, 0u64..200).prop_map(|(a, b)| format!("bytes={a}-{b}")),
            (0u64..200).prop_map(|n| format!("bytes=-{n}")),
        ],
        size in prop_oneof![0u64..150, any::<u64>()],
    ) {
        if let Ok(Some((a, b))) = parse_range(&v, size) {
            prop_assert!(a <= b && b < size, "{v:?} of {size}: {a}-{b}");
        }
        // The same text as a chunk's Content-Range.
        let mut h = HeaderMap::new();
        if let Ok(hv) = HeaderValue::from_str(&v) {
            h.insert(header::CONTENT_RANGE, hv);
            if let Ok(Some((a, b))) = content_range(&h) {
                prop_assert!(a <= b);
            }
        }
    }
}
