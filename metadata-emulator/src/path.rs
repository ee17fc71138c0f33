//! Request paths: `//` collapsed, a trailing `/` noted, dot segments refused, and the result
//! sorted into the few places EC2 serves (the version list, a version, the token endpoint).
//!
//! Nothing is percent-decoded: no metadata name holds a `%`, so an encoded path simply names
//! nothing (404), and `%2e%2e` can never become `..`.

/// Metadata versions listed at `/`, oldest first, as a current EC2 instance lists them. Every one
/// serves the same tree.
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "latest",
];

/// More segments than any metadata path has (the deepest is 7).
pub const MAX_SEGMENTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    #[error("the path has more than {MAX_SEGMENTS} segments")]
    TooDeep,
}

/// A normalised path: its non-empty segments, and whether it ended in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normal<'a> {
    pub segments: Vec<&'a str>,
    pub trailing_slash: bool,
}

pub fn normalise(path: &str) -> Result<Normal<'_>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(PathError::DotSegment);
        }
        if segments.len() == MAX_SEGMENTS {
            return Err(PathError::TooDeep);
        }
        segments.push(seg);
    }
    Ok(Normal {
        segments,
        trailing_slash: path.len() > 1 && path.ends_with('/'),
    })
}

/// Where a normalised path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/`: the version list.
    Versions,
    /// `/<version>` without a slash: EC2 answers 200 with an empty body.
    VersionBare,
    /// `/latest/api/token`.
    Token,
    /// `/<version>/api/token` for a version other than `latest` (PUT: 403, as EC2).
    VersionedToken,
    /// `/<version>/<rest…>`; an empty `rest` is the version's own listing.
    Data(Vec<&'a str>),
    NotFound,
}

pub fn route<'a>(n: &Normal<'a>) -> Route<'a> {
    let Some((version, rest)) = n.segments.split_first() else {
        return Route::Versions;
    };
    if !VERSIONS.contains(version) {
        return Route::NotFound;
    }
    match rest {
        [] if !n.trailing_slash => Route::VersionBare,
        ["api", "token"] if *version == "latest" => Route::Token,
        ["api", "token"] => Route::VersionedToken,
        _ => Route::Data(rest.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<&str> {
        normalise(p).unwrap().segments
    }

    #[test]
    fn collapses_slashes_and_notes_the_trailing_one() {
        assert_eq!(
            segs("/latest//meta-data/ramdisk-id"),
            ["latest", "meta-data", "ramdisk-id"]
        );
        assert_eq!(segs("//latest///meta-data//"), ["latest", "meta-data"]);
        assert!(normalise("/latest/meta-data/").unwrap().trailing_slash);
        assert!(!normalise("/latest/meta-data").unwrap().trailing_slash);
        assert!(!normalise("/").unwrap().trailing_slash);
        assert_eq!(segs("/"), Vec::<&str>::new());
    }

    #[test]
    fn refuses_dot_segments_relative_and_deep_paths() {
        for p in ["/latest/../x", "/latest/./meta-data", "/..", "/a/b/.."] {
            assert_eq!(normalise(p), Err(PathError::DotSegment), "{p}");
        }
        assert_eq!(normalise("latest"), Err(PathError::NotAbsolute));
        assert_eq!(normalise("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalise(&"/a".repeat(17)), Err(PathError::TooDeep));
        assert!(normalise(&"/a".repeat(16)).is_ok());
        // Encoded dots stay literal names, which match nothing.
        assert_eq!(segs("/latest/%2e%2e/x"), ["latest", "%2e%2e", "x"]);
        assert_eq!(segs("/latest/..x"), ["latest", "..x"]);
    }

    #[test]
    fn routes() {
        let r = |p: &'static str| route(&normalise(p).unwrap());
        assert_eq!(r("/"), Route::Versions);
        assert_eq!(r("/latest"), Route::VersionBare);
        assert_eq!(r("/2009-04-04"), Route::VersionBare);
        assert_eq!(r("/latest/"), Route::Data(vec![]));
        assert_eq!(r("/latest/api/token"), Route::Token);
        assert_eq!(r("//latest//api//token/"), Route::Token);
        assert_eq!(r("/2021-03-23/api/token"), Route::VersionedToken);
        assert_eq!(
            r("/2016-09-02/meta-data/instance-id"),
            Route::Data(vec!["meta-data", "instance-id"])
        );
        assert_eq!(r("/2099-01-01/meta-data"), Route::NotFound);
        assert_eq!(r("/meta-data"), Route::NotFound);
    }

    #[test]
    fn versions_are_ordered_oldest_first_with_latest_last() {
        assert_eq!(VERSIONS.first(), Some(&"1.0"));
        assert_eq!(VERSIONS.last(), Some(&"latest"));
        let dated = &VERSIONS[1..VERSIONS.len() - 1];
        assert!(dated.windows(2).all(|w| w[0] < w[1]));
        for v in [
            "2009-04-04",
            "2016-09-02",
            "2018-09-24",
            "2019-10-01",
            "2021-03-23",
        ] {
            assert!(VERSIONS.contains(&v), "{v}: a client pins it");
        }
    }
}
