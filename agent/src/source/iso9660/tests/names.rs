//! Rock Ridge and Joliet names in hand-built images.

use std::io::Cursor;

use super::super::*;
use super::builder::*;
use super::{names, one_line};

/// 16 PVD, 17 terminator, 20 root (SP skip `skip`), 21-22 data, 23 deep/, 24 data,
/// 25 continuation area, 26 relocated dir, 27 data.
pub(super) fn rock_ridge_image(skip: u8) -> Vec<u8> {
    let pad = vec![0xAA; usize::from(skip)];
    let su = |entries: &[&[u8]]| -> Vec<u8> { [&[pad.as_slice()][..], entries].concat().concat() };
    let area = [nm(0, b"continuation.txt"), px(0o100600)].concat();
    let mut iso = Iso::new();
    let dot = [sp(skip), entry(b"RR", &[0x89])].concat();
    let root = iso.dir(
        20,
        20,
        &dot,
        &[
            file(
                21,
                6,
                b"CONTEXT.SH;1",
                &su(&[&nm(0, b"context.sh"), &px(0o100644)]),
            ),
            file(
                22,
                4,
                b"INIT_SCR.SH;1",
                &su(&[
                    &nm(NM_CONT, b"Init-Script.With."),
                    &nm(0, b"Long_Name.sh"),
                    &px(0o100755),
                ]),
            ),
            dir(23, 2048, b"DEEP", &su(&[&nm(0, b"deep"), &px(0o40755)])),
            file(
                24,
                2,
                b"CE_FILE.TXT;1",
                &su(&[&nm(NM_CONT, b"from-"), &ce(25, 100, area.len() as u32)]),
            ),
            file(
                21,
                6,
                b"ST_TEST.TXT;1",
                &su(&[&entry(b"ST", &[]), &nm(0, b"ignored")]),
            ),
            dir(
                26,
                2048,
                b"RELOC",
                &su(&[&nm(0, b"reloc"), &entry(b"RE", &[])]),
            ),
            file(
                0,
                0,
                b"LINK",
                &su(&[&nm(0, b"link"), &entry(b"CL", &both32(26))]),
            ),
        ],
    );
    iso.put(21, 0, b"hello\n");
    iso.put(22, 0, b"init");
    iso.dir(
        23,
        20,
        &pad,
        &[file(24, 2, b"INNER.TXT;1", &su(&[&nm(0, b"inner.txt")]))],
    );
    iso.put(24, 0, b"ce");
    iso.put(25, 100, &area);
    iso.dir(
        26,
        20,
        &pad,
        &[file(27, 5, b"MOVED.TXT;1", &su(&[&nm(0, b"moved.txt")]))],
    );
    iso.put(27, 0, b"moved");
    iso.pvd("RR", 20, root);
    iso.terminator(17);
    iso.bytes
}

#[test]
fn rock_ridge_names() {
    for skip in [0, 3] {
        let mut iso = IsoImage::new(Cursor::new(rock_ridge_image(skip))).unwrap();
        assert_eq!(iso.name_source(), NameSource::RockRidge);
        let root = iso.list("/").unwrap();
        assert_eq!(
            names(&root),
            [
                "Init-Script.With.Long_Name.sh",
                "ST_TEST.TXT",
                "context.sh",
                "deep",
                "from-continuation.txt",
                "link"
            ],
            "skip {skip}"
        );
        assert_eq!(root[0].mode, Some(0o100755));
        assert_eq!(root[1].mode, None);
        assert_eq!(root[4].mode, Some(0o100600));
        assert!(root[5].is_dir, "CL placeholder is a directory");
        assert_eq!(iso.read_file("/context.sh", 10).unwrap(), b"hello\n");
        assert_eq!(
            iso.read_file("/Init-Script.With.Long_Name.sh", 10).unwrap(),
            b"init"
        );
        assert_eq!(iso.read_file("/deep/inner.txt", 10).unwrap(), b"ce");
        assert_eq!(iso.read_file("/from-continuation.txt", 10).unwrap(), b"ce");
        assert_eq!(iso.read_file("/link/moved.txt", 10).unwrap(), b"moved");
        // Rock Ridge names are exact: no ISO names, no case folding.
        for path in ["/CONTEXT.SH", "/Context.sh", "/reloc"] {
            assert!(
                matches!(iso.read_file(path, 10), Err(IsoError::NotFound(_))),
                "{path}"
            );
        }
    }
}

#[test]
fn rock_ridge_continuation_errors() {
    let build = |system_use: &[u8], extra: &dyn Fn(&mut Iso)| {
        let mut iso = Iso::new();
        let root = iso.dir(20, 20, &sp(0), &[file(21, 0, b"A.TXT;1", system_use)]);
        extra(&mut iso);
        iso.pvd("CE", 20, root);
        iso.terminator(17);
        IsoImage::new(Cursor::new(iso.bytes))
            .unwrap()
            .list("/")
            .map(|l| l[0].name.clone())
    };
    // A continuation area that continues into itself.
    let looping = |iso: &mut Iso| iso.put(25, 0, &[nm(NM_CONT, b"x"), ce(25, 0, 34)].concat());
    let err = build(&ce(25, 0, 34), &looping).unwrap_err();
    assert!(one_line(err).contains("more than 16 continuation areas"));
    let err = build(&ce(25, 2000, 100), &|_| {}).unwrap_err();
    assert!(one_line(err).contains("crosses a sector boundary"));
    let err = build(&ce(500, 0, 10), &|_| {}).unwrap_err();
    assert_eq!(
        one_line(err),
        "truncated image: Rock Ridge continuation area at sector 500 beyond end of image (21 sectors)"
    );
    let long = |iso: &mut Iso| iso.put(25, 0, &nm(NM_CONT, &[b'a'; 250]).repeat(5));
    let err = build(&ce(25, 0, 5 * 255), &long).unwrap_err();
    assert!(one_line(err).contains("longer than 1024 bytes"));
    let slash = nm(0, b"a/b");
    assert!(one_line(build(&slash, &|_| {}).unwrap_err()).contains("invalid file name \"a/b\""));
    // Inconsistent entries end the area; the ISO name remains.
    assert_eq!(
        build(&[b'N', b'M', 200, 1, 0, b'x'], &|_| {}).unwrap(),
        "A.TXT"
    );
    assert_eq!(build(&[b'N', b'M', 2], &|_| {}).unwrap(), "A.TXT");
}

#[test]
fn joliet_names() {
    let mut iso = Iso::new();
    let root = iso.dir(
        20,
        20,
        &[],
        &[
            file(21, 4, b"INIT_SCR.SH;1", &[]),
            dir(23, 2048, b"SUB", &[]),
        ],
    );
    let jroot = iso.dir(
        22,
        22,
        &[],
        &[
            file(21, 4, &ucs2("Init-Script.With.Long_Name.sh;1"), &[]),
            dir(24, 2048, &ucs2("sub dir"), &[]),
        ],
    );
    iso.dir(23, 20, &[], &[file(25, 3, b"FIL.TXT;1", &[])]);
    iso.dir(24, 22, &[], &[file(25, 3, &ucs2("fïlé €.txt;1"), &[])]);
    iso.put(21, 0, b"init");
    iso.put(25, 0, b"fil");
    iso.pvd("JOLIET", 20, root);
    iso.svd_joliet(17, 22, jroot);
    iso.terminator(18);
    let mut iso = IsoImage::new(Cursor::new(iso.bytes)).unwrap();
    assert_eq!(iso.name_source(), NameSource::Joliet);
    assert_eq!(iso.volume_id(), "JOLIET");
    assert_eq!(
        names(&iso.list("/").unwrap()),
        ["Init-Script.With.Long_Name.sh", "sub dir"]
    );
    assert_eq!(
        iso.read_file("/Init-Script.With.Long_Name.sh", 4).unwrap(),
        b"init"
    );
    assert_eq!(iso.read_file("/sub dir/fïlé €.txt", 4).unwrap(), b"fil");
    assert!(matches!(
        iso.read_file("/init-script.with.long_name.sh", 4),
        Err(IsoError::NotFound(_))
    ));
}
