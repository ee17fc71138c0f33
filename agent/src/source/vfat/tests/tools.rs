//! Images built by mkfs.vfat (dosfstools) and mmd/mcopy (mtools), then read back and
//! damaged. Skipped when a tool is missing, unless `CI` is set.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::*;

mod damage;

const META: &[u8] = br#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "vm1"}"#;
const NETWORK: &[u8] = br#"{"links": [], "networks": [], "services": []}"#;
const VENDOR2: &[u8] = br#"{"static": {}}"#;
const USER: &[u8] = b"#cloud-config\nhostname: vm1\n";
const OLD_META: &[u8] = br#"{"uuid": "old"}"#;
const BIG_LEN: usize = 200 * 1024;

fn big_data() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn skip(why: String) -> Option<Built> {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set: tests may not be skipped)");
    }
    eprintln!("skipping: {why}");
    None
}

/// A tool by name, also looked for in the sbin directories (mkfs.vfat often is there).
fn tool(name: &str) -> Option<PathBuf> {
    let on_path = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path {
        return Some(name.into());
    }
    ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

struct Built {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Built {
    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }
    fn open(&self) -> FatImage<fs::File> {
        FatImage::open(&self.path).unwrap()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.env("MTOOLS_SKIP_CHECK", "1").output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mkfs.vfat -C img KIB <args>`, then the config drive tree (unless `empty`).
fn build(kib: u64, args: &[&str], empty: bool) -> Option<Built> {
    let mut tools = Vec::new();
    for name in ["mkfs.vfat", "mmd", "mcopy"] {
        match tool(name) {
            Some(t) => tools.push(t),
            None => return skip(format!("{name} is not installed")),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("img.raw");
    run(Command::new(&tools[0])
        .args(args)
        .arg("-C")
        .arg(&path)
        .arg(kib.to_string()));
    if !empty {
        let img = path.to_str().unwrap();
        run(Command::new(&tools[1]).args([
            "-i",
            img,
            "::openstack",
            "::openstack/latest",
            "::openstack/2012-08-10",
        ]));
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        let files: [(&str, &[u8], &str); 7] = [
            ("meta_data.json", META, "::openstack/latest/"),
            ("network_data.json", NETWORK, "::openstack/latest/"),
            ("vendor_data2.json", VENDOR2, "::openstack/latest/"),
            ("user_data", USER, "::openstack/latest/"),
            ("big.bin", &big_data(), "::openstack/latest/"),
            (
                "old.json",
                OLD_META,
                "::openstack/2012-08-10/meta_data.json",
            ),
            ("README.TXT", b"config drive\n", "::"),
        ];
        for (name, data, dest) in files {
            fs::write(src.join(name), data).unwrap();
            run(Command::new(&tools[2])
                .args(["-i", img])
                .arg(src.join(name))
                .arg(dest));
        }
    }
    Some(Built { _tmp: tmp, path })
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

/// Lists the whole tree (bounded) and reads every file; errors are collected.
fn walk<R: Read + Seek>(img: &mut FatImage<R>) -> (Vec<String>, Vec<FatError>) {
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        if found.len() > 1000 {
            break;
        }
        match img.list(&dir) {
            Ok(entries) => {
                for e in entries {
                    let path = format!("{dir}/{}", e.name);
                    if e.is_dir {
                        todo.push(path.clone());
                    } else if let Err(err) = img.read_file(&path, 1 << 20) {
                        errors.push(err);
                    }
                    found.push(path);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    found.sort();
    (found, errors)
}

/// What every built image holds, whatever its FAT type.
fn check_tree<R: Read + Seek>(img: &mut FatImage<R>) {
    assert_eq!(names(&img.list("/").unwrap()), ["README.TXT", "openstack"]);
    assert_eq!(img.list("").unwrap(), img.list("/").unwrap());
    assert_eq!(
        names(&img.list("/openstack").unwrap()),
        ["2012-08-10", "latest"]
    );
    let latest = img.list("openstack/latest").unwrap();
    assert_eq!(
        names(&latest),
        [
            "big.bin",
            "meta_data.json",
            "network_data.json",
            "user_data",
            "vendor_data2.json"
        ]
    );
    assert_eq!(latest[0].size, BIG_LEN as u64);
    assert!(!latest[0].is_dir);
    let lat = "/openstack/latest";
    assert_eq!(
        img.read_file(&format!("{lat}/meta_data.json"), 4096)
            .unwrap(),
        META
    );
    assert_eq!(
        img.read_file(&format!("{lat}/network_data.json"), 4096)
            .unwrap(),
        NETWORK
    );
    assert_eq!(
        img.read_file(&format!("{lat}/vendor_data2.json"), 4096)
            .unwrap(),
        VENDOR2
    );
    assert_eq!(
        img.read_file(&format!("{lat}/user_data"), 4096).unwrap(),
        USER
    );
    assert_eq!(
        img.read_file(&format!("{lat}/big.bin"), 1 << 20).unwrap(),
        big_data()
    );
    assert_eq!(
        img.read_file("openstack/2012-08-10/meta_data.json", 4096)
            .unwrap(),
        OLD_META
    );
    // Case-insensitive, and the 8.3 alias works too.
    assert_eq!(
        img.read_file("/OPENSTACK/Latest/META_DATA.JSON", 4096)
            .unwrap(),
        META
    );
    assert_eq!(
        img.read_file("/openstack/latest/NETWOR~1.JSO", 4096)
            .unwrap(),
        NETWORK
    );
    assert_eq!(
        img.read_file("/readme.txt", 4096).unwrap(),
        b"config drive\n"
    );
    assert_eq!(
        img.stat("/openstack/latest/user_data").unwrap().size,
        USER.len() as u64
    );
    assert!(img.stat("/").unwrap().is_dir);
    assert!(img.stat("/openstack/latest").unwrap().is_dir);
    match img.read_file(&format!("{lat}/big.bin"), 1000) {
        Err(FatError::TooLarge { path, size, limit }) => {
            assert_eq!(
                (path.as_str(), size, limit),
                ("/openstack/latest/big.bin", BIG_LEN as u64, 1000)
            );
        }
        other => panic!("{:?}", other.map(|v| v.len())),
    }
    for (path, want) in [
        ("/nope", "no such file on the FAT file system: /nope"),
        (
            "/openstack",
            "no such file on the FAT file system: /openstack (is a directory)",
        ),
        (
            "/README.TXT/x",
            "no such file on the FAT file system: /README.TXT/x (/README.TXT is not a directory)",
        ),
    ] {
        assert_eq!(img.read_file(path, 100).unwrap_err().to_string(), want);
    }
    assert!(matches!(
        img.list("/README.TXT"),
        Err(FatError::NotFound(_))
    ));
    let (all, errors) = walk(img);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(all.len(), 10, "{all:?}");
}

#[test]
fn fat16_config_drive() {
    let Some(b) = build(65536, &["-n", "CONFIG-2"], false) else {
        return;
    };
    let mut img = b.open();
    assert_eq!(img.fat_type(), FatType::Fat16);
    assert_eq!(img.label(), "CONFIG-2");
    let file = fs::File::open(&b.path).unwrap();
    assert_eq!(read_label(file).unwrap().as_deref(), Some("CONFIG-2"));
    check_tree(&mut img);
}

#[test]
fn fat12_lowercase_label() {
    let Some(b) = build(1440, &["-F", "12", "-n", "config-2"], false) else {
        return;
    };
    let mut img = b.open();
    assert_eq!(img.fat_type(), FatType::Fat12);
    assert_eq!(img.label(), "config-2");
    check_tree(&mut img);
}

#[test]
fn fat32_config_drive() {
    let Some(b) = build(100 * 1024, &["-F", "32", "-n", "CONFIG-2"], false) else {
        return;
    };
    let mut img = b.open();
    assert_eq!(img.fat_type(), FatType::Fat32);
    assert_eq!(img.label(), "CONFIG-2");
    check_tree(&mut img);
}

/// Byte offsets of the 32-byte directory entries whose 8.3 name is `short`.
fn find_entries(bytes: &[u8], short: &[u8; 11]) -> Vec<usize> {
    (0..bytes.len() / 32)
        .map(|i| i * 32)
        .filter(|&at| &bytes[at..at + 11] == short)
        .collect()
}

fn label_of(bytes: &[u8]) -> (String, Option<String>) {
    let img = FatImage::new(Cursor::new(bytes)).unwrap();
    (
        img.label().to_owned(),
        read_label(Cursor::new(bytes)).unwrap(),
    )
}

#[test]
fn label_from_root_entry_or_boot_sector() {
    let Some(b) = build(65536, &["-n", "CONFIG-2"], true) else {
        return;
    };
    let mut bytes = b.bytes();
    // The root entry wins over the boot sector.
    bytes[43..54].copy_from_slice(b"OTHER      ");
    let want = ("CONFIG-2".to_owned(), Some("CONFIG-2".to_owned()));
    assert_eq!(label_of(&bytes), want);
    // Without it (deleted), the boot sector's.
    let at = find_entries(&bytes, b"CONFIG-2   ");
    assert_eq!(at.len(), 1, "{at:?}");
    bytes[at[0]] = 0xE5;
    assert_eq!(label_of(&bytes), ("OTHER".into(), Some("OTHER".into())));
    // "NO NAME" is none.
    bytes[43..54].copy_from_slice(b"NO NAME    ");
    assert_eq!(label_of(&bytes), (String::new(), Some(String::new())));

    let Some(plain) = build(65536, &[], true) else {
        return;
    };
    assert_eq!(
        label_of(&plain.bytes()),
        (String::new(), Some(String::new()))
    );
}

#[test]
fn nt_lowercase_flags() {
    let Some(b) = build(65536, &["-n", "CONFIG-2"], false) else {
        return;
    };
    let mut bytes = b.bytes();
    let at = find_entries(&bytes, b"README  TXT");
    assert_eq!(at.len(), 1);
    for (flags, want) in [
        (0x18, "readme.txt"),
        (0x08, "readme.TXT"),
        (0x10, "README.txt"),
    ] {
        bytes[at[0] + 12] = flags;
        let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
        let root = img.list("/").unwrap();
        assert!(names(&root).contains(&want), "{:?}", names(&root));
        assert_eq!(
            img.read_file("/README.TXT", 100).unwrap(),
            b"config drive\n"
        );
    }
}

#[test]
fn not_fat_images() {
    let Some(b) = build(65536, &[], true) else {
        return;
    };
    let zeros = vec![0u8; 1 << 20];
    assert_eq!(read_label(Cursor::new(&zeros)).unwrap(), None);
    assert!(matches!(
        FatImage::new(Cursor::new(&zeros)),
        Err(FatError::NotFat)
    ));
    // An ISO9660 image.
    let Some(xorriso) = tool("xorriso") else {
        skip("xorriso is not installed".into());
        return;
    };
    let iso = b.path.with_extension("iso");
    let tree = b.path.with_extension("d");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("meta_data.json"), META).unwrap();
    run(Command::new(xorriso)
        .args([
            "-as", "mkisofs", "-quiet", "-J", "-R", "-V", "config-2", "-o",
        ])
        .arg(&iso)
        .arg(&tree));
    assert_eq!(read_label(fs::File::open(&iso).unwrap()).unwrap(), None);
    assert!(matches!(FatImage::open(&iso), Err(FatError::NotFat)));
}
