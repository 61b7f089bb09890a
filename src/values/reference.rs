//! The tag and digest of an image reference (`registry:5000/team/app:1.2@sha256:…`), so a
//! key ending in `@tag` or `@digest` promotes that part alone and keeps the rest of the
//! reference byte for byte.

use std::ops::Range;

use super::key::Part;

/// The byte range of `part` in `reference`; None when the reference has no such part.
pub(super) fn range(reference: &str, part: Part) -> Option<Range<usize>> {
    let at = reference.find('@');
    let range = match part {
        Part::Whole => 0..reference.len(),
        Part::Digest => at? + 1..reference.len(),
        Part::Tag => {
            let named = &reference[..at.unwrap_or(reference.len())];
            // A `:` before the last `/` is a registry's port, not a tag.
            let last = named.rfind('/').map_or(0, |slash| slash + 1);
            last + named[last..].find(':')? + 1..named.len()
        }
    };
    (!range.is_empty()).then_some(range)
}

/// True when `value` may stand as `part` of a reference (the OCI distribution grammar).
pub(super) fn valid(value: &str, part: Part) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    match part {
        Part::Whole => true,
        Part::Tag => value.len() <= 128 && word(value) && !value.starts_with(['.', '-']),
        Part::Digest => value.split_once(':').is_some_and(|(algorithm, hex)| {
            word(algorithm)
                && !hex.is_empty()
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(reference: &str, part: Part) -> Option<&str> {
        range(reference, part).map(|r| &reference[r])
    }

    #[test]
    fn finds_the_tag_after_a_registry_port() {
        assert_eq!(part("registry:5000/team/app:1.2", Part::Tag), Some("1.2"));
        assert_eq!(part("app:v1", Part::Tag), Some("v1"));
        assert_eq!(part("registry:5000/app", Part::Tag), None);
        assert_eq!(part("app:", Part::Tag), None);
        assert_eq!(part("app:1.2@sha256:ab", Part::Tag), Some("1.2"));
    }

    #[test]
    fn finds_the_digest() {
        assert_eq!(part("app@sha256:abc", Part::Digest), Some("sha256:abc"));
        assert_eq!(
            part("r:1/app:1.2@sha256:abc", Part::Digest),
            Some("sha256:abc")
        );
        assert_eq!(part("app:1.2", Part::Digest), None);
    }

    #[test]
    fn accepts_only_tags_and_digests_as_registries_write_them() {
        for ok in ["1.2", "v1.2.3-rc_1", "latest"] {
            assert!(valid(ok, Part::Tag), "{ok}");
        }
        for bad in ["-1", ".1", "1/2", "1:2", "a b", "x@y"] {
            assert!(!valid(bad, Part::Tag), "{bad}");
        }
        assert!(valid("sha256:0123abcdef", Part::Digest));
        for bad in ["sha256", "sha256:", ":ab", "sha256:a/b"] {
            assert!(!valid(bad, Part::Digest), "{bad}");
        }
    }
}
