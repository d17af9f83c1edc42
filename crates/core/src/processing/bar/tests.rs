use super::*;
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh scratch directory under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("etx-bar-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn input(&self, bytes: &[u8]) -> PathBuf {
        let p = self.0.join("in.csv");
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn out(&self) -> PathBuf {
        self.0.join("out")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_with(input: &[u8], options: &BarOptions) -> (Scratch, Result<BarSummary, BarError>) {
    let s = Scratch::new();
    let p = s.input(input);
    let r = group_bar_csv(&p, &s.out(), options, &mut |_| {}, &|| false);
    (s, r)
}

fn run(input: &[u8]) -> (Scratch, BarSummary) {
    let (s, r) = run_with(input, &BarOptions::default());
    (s, r.unwrap())
}

fn manifest(s: &Scratch) -> Vec<ManifestEntry> {
    read_manifest(&s.out())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn file_text(s: &Scratch, name: &str) -> String {
    std::fs::read_to_string(s.out().join(name)).unwrap()
}

/// (key, body text) of every group, in manifest order.
fn groups(s: &Scratch) -> Vec<(String, String)> {
    manifest(s)
        .into_iter()
        .map(|e| (e.key, file_text(s, &e.file)))
        .collect()
}

fn keys(s: &Scratch) -> Vec<String> {
    manifest(s).into_iter().map(|e| e.key).collect()
}

#[test]
fn groups_by_org_and_source_dropping_the_key_columns() {
    let (s, sum) = run(b"orgFullName,emissionSourceName,value\nA,S1,1\nB,S2,2\nA,S1,3\n");
    assert_eq!((sum.rows_read, sum.rows_dropped, sum.groups), (3, 0, 2));
    assert_eq!(
        groups(&s),
        vec![
            ("A : S1".into(), "value\n1\n3\n".into()),
            ("B : S2".into(), "value\n2\n".into()),
        ]
    );
    let m = manifest(&s);
    assert_eq!(m[0].rows, 2);
    assert_eq!(m[0].file, "00001-A_S1.csv");
    assert_eq!(m[1].file, "00002-B_S2.csv");
    assert_eq!(sum.manifest, s.out().join("manifest.csv"));
    let text = std::fs::read_to_string(&sum.manifest).unwrap();
    assert_eq!(
        text,
        "key,file,rows\nA : S1,00001-A_S1.csv,2\nB : S2,00002-B_S2.csv,1\n"
    );
    // The spill directory is gone; only group files and the manifest remain.
    assert_eq!(std::fs::read_dir(s.out()).unwrap().count(), 3);
}

#[test]
fn key_columns_may_be_anywhere_and_other_columns_keep_their_order() {
    let (s, _) = run(b"a,emissionSourceName,b,orgFullName,c\n1,S,2,O,3\n");
    assert_eq!(groups(&s), vec![("O : S".into(), "a,b,c\n1,2,3\n".into())]);
}

#[test]
fn a_bom_is_skipped() {
    let (s, sum) = run(b"\xEF\xBB\xBForgFullName,emissionSourceName,v\nA,S,1\n");
    assert_eq!(sum.groups, 1);
    assert_eq!(groups(&s), vec![("A : S".into(), "v\n1\n".into())]);
}

#[test]
fn crlf_lf_and_mixed_line_ends_are_read_and_written_as_lf() {
    let (s, sum) = run(b"orgFullName,emissionSourceName,v\r\nA,S,1\r\nA,S,2\nA,S,3\r\n");
    assert_eq!(sum.rows_read, 3);
    assert_eq!(groups(&s), vec![("A : S".into(), "v\n1\n2\n3\n".into())]);
}

#[test]
fn quoted_commas_quotes_and_line_breaks_survive() {
    let input = "orgFullName,emissionSourceName,comment,n\n\
                 \"Acme, Inc\",\"S \"\"1\"\"\",\"checked, ok\",1\n\
                 \"Acme, Inc\",\"S \"\"1\"\"\",\"line one\r\nline two\",2\n\
                 \"Acme, Inc\",\"S \"\"1\"\"\",\"say \"\"hi\"\"\",3\n";
    let (s, sum) = run(input.as_bytes());
    assert_eq!(sum.rows_read, 3);
    let g = groups(&s);
    assert_eq!(g[0].0, "Acme, Inc : S \"1\"");
    assert_eq!(
        g[0].1,
        "comment,n\n\"checked, ok\",1\n\"line one\r\nline two\",2\n\"say \"\"hi\"\"\",3\n"
    );
    // Read back through an RFC 4180 reader, the cells are the input's.
    let mut r = csv::Reader::from_reader(g[0].1.as_bytes());
    let cells: Vec<Vec<String>> = r
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(cells[1][0], "line one\r\nline two");
    assert_eq!(cells[2][0], "say \"hi\"");
    // The manifest quotes the key.
    let m = std::fs::read_to_string(&sum.manifest).unwrap();
    assert!(m.contains("\"Acme, Inc : S \"\"1\"\"\""), "{m}");
}

#[test]
fn cell_text_is_never_reinterpreted() {
    let input = b"orgFullName,emissionSourceName,a,b,c,d,e,f\n\
                  A,S,0878036,658.480,1e5,TRUE,,  \n\
                  A,S, x ,NaN,-0,00,null,\"\"\n";
    let (s, _) = run(input);
    assert_eq!(
        groups(&s)[0].1,
        "a,b,c,d,e,f\n0878036,658.480,1e5,TRUE,,  \n x ,NaN,-0,00,null,\n"
    );
}

#[test]
fn missing_key_columns_are_named() {
    let (_, r) = run_with(b"org,emissionSourceName\nA,S\n", &BarOptions::default());
    let e = r.unwrap_err();
    assert!(matches!(e, BarError::MissingColumns(ref m) if m == &["orgFullName"]));
    assert_eq!(e.to_string(), "missing required column(s): orgFullName");
    let (_, r) = run_with(b"a,b\n1,2\n", &BarOptions::default());
    assert_eq!(
        r.unwrap_err().to_string(),
        "missing required column(s): orgFullName, emissionSourceName"
    );
    // Header names are exact: no case folding, no trimming.
    let (_, r) = run_with(
        b"orgfullname, emissionSourceName\nA,S\n",
        &BarOptions::default(),
    );
    assert!(matches!(r.unwrap_err(), BarError::MissingColumns(m) if m.len() == 2));
}

#[test]
fn an_empty_file_has_no_header() {
    let (_, r) = run_with(b"", &BarOptions::default());
    assert!(matches!(r.unwrap_err(), BarError::NoHeader));
}

#[test]
fn a_key_column_given_twice_is_refused() {
    let (_, r) = run_with(
        b"orgFullName,emissionSourceName,orgFullName\nA,S,B\n",
        &BarOptions::default(),
    );
    assert!(matches!(
        r.unwrap_err(),
        BarError::Malformed { line: 1, .. }
    ));
}

#[test]
fn rows_without_a_key_are_dropped_and_counted() {
    let input = b"orgFullName,emissionSourceName,v\n\
                  A,S,1\n\
                  ,S,2\n\
                  A,,3\n\
                  \"  \",S,4\n\
                  A,\"\t\",5\n\
                  ,,6\n\
                  A,S,7\n\
                  \" A\",S,8\n";
    let (s, sum) = run(input);
    assert_eq!((sum.rows_read, sum.rows_dropped, sum.groups), (8, 5, 2));
    // Whitespace is not trimmed from keys that have other text: " A" is its own group.
    assert_eq!(
        groups(&s),
        vec![
            (" A : S".into(), "v\n8\n".into()),
            ("A : S".into(), "v\n1\n7\n".into()),
        ]
    );
}

#[test]
fn groups_are_in_byte_order_and_rows_in_file_order() {
    let input = b"orgFullName,emissionSourceName,n\n\
                  a,Source 1,1\nB,Source 1,2\nB,Source 10,3\nB,Source 2,4\n\
                  B,Source 1,5\n\xC3\x89cole,S,6\nZ,S,7\na,Source 1,8\n";
    let (s, _) = run(input);
    assert_eq!(
        keys(&s),
        vec![
            "B : Source 1",
            "B : Source 10",
            "B : Source 2",
            "Z : S",
            "a : Source 1",
            "\u{c9}cole : S",
        ]
    );
    assert_eq!(groups(&s)[0].1, "n\n2\n5\n");
    assert_eq!(groups(&s)[4].1, "n\n1\n8\n");
}

#[test]
fn a_row_with_another_cell_count_fails_naming_its_line() {
    let input = b"orgFullName,emissionSourceName,v\nA,S,1\n\"x\ny\",S,2\nA,S\n";
    let (s, r) = run_with(input, &BarOptions::default());
    let e = r.unwrap_err();
    assert!(matches!(e, BarError::Malformed { line: 5, .. }), "{e}");
    assert_eq!(e.to_string(), "line 5: 2 cells where the header has 3");
    // Nothing was published: no manifest, no group file.
    let left: Vec<_> = std::fs::read_dir(s.out()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn invalid_utf8_fails_naming_its_line() {
    let (_, r) = run_with(
        b"orgFullName,emissionSourceName,v\nA,S,1\nA,S,\xFF\n",
        &BarOptions::default(),
    );
    assert!(matches!(
        r.unwrap_err(),
        BarError::Malformed { line: 3, .. }
    ));
}

#[test]
fn the_output_directory_must_be_empty() {
    let s = Scratch::new();
    let p = s.input(b"orgFullName,emissionSourceName\nA,S\n");
    std::fs::create_dir_all(s.out()).unwrap();
    std::fs::write(s.out().join("old.csv"), "x").unwrap();
    let r = group_bar_csv(&p, &s.out(), &BarOptions::default(), &mut |_| {}, &|| false);
    assert!(matches!(r.unwrap_err(), BarError::OutputNotEmpty(_)));
}

#[test]
fn only_key_columns_give_files_with_no_cells() {
    let (s, sum) = run(b"orgFullName,emissionSourceName\nA,S\nA,S\n");
    assert_eq!(sum.groups, 1);
    assert_eq!(manifest(&s)[0].rows, 2);
}

#[test]
fn a_single_empty_cell_is_written_quoted() {
    let (s, _) = run(b"orgFullName,emissionSourceName,v\nA,S,\nA,S,x\n");
    assert_eq!(groups(&s)[0].1, "v\n\"\"\nx\n");
}

#[test]
fn file_names_are_sanitised_bounded_and_unique() {
    assert_eq!(
        file_name(1, 5, "Acme : Plant 1 : Source 0001"),
        "00001-Acme_Plant_1_Source_0001.csv"
    );
    assert_eq!(
        file_name(2, 5, "../etc/passwd : x"),
        "00002-etc_passwd_x.csv"
    );
    assert_eq!(
        file_name(3, 5, "a\\b\0c\nd\u{7f}e : f"),
        "00003-a_b_c_d_e_f.csv"
    );
    assert_eq!(file_name(4, 5, " : "), "00004-group.csv");
    assert_eq!(file_name(5, 5, ".hidden : ."), "00005-hidden.csv");
    assert_eq!(
        file_name(6, 5, "Zürich : Kessel"),
        "00006-Zürich_Kessel.csv"
    );
    assert_eq!(file_name(123456, 5, "x : y"), "123456-x_y.csv");
    let long = file_name(7, 5, &format!("{} : {}", "é".repeat(100), "z"));
    assert!(long.len() <= 5 + 1 + 80 + 4, "{long}");
    assert!(long.is_char_boundary(long.len() - 4));

    // Keys that sanitise alike still get distinct files, numbered in key order.
    let (s, sum) = run(b"orgFullName,emissionSourceName,v\na/b,c,1\na:b,c,2\na b,c,3\n");
    assert_eq!(sum.groups, 3);
    let m = manifest(&s);
    let files: Vec<_> = m.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(
        files,
        ["00001-a_b_c.csv", "00002-a_b_c.csv", "00003-a_b_c.csv"]
    );
    assert_eq!(m[0].key, "a b : c");
    assert_eq!(file_text(&s, "00002-a_b_c.csv"), "v\n1\n");
}

#[test]
fn many_runs_and_merge_rounds_give_the_same_groups() {
    // 20,000 distinct keys with a tiny sort buffer: hundreds of runs, so the merge goes in rounds
    // and never has more than FAN_IN run files open; one group file is open at a time.
    let mut input = String::from("orgFullName,emissionSourceName,row\n");
    let mut expected: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    let mut x = 12345u32;
    for row in 0..60_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let k = (x >> 8) % 20_000;
        let (org, src) = (format!("Org {}", k % 97), format!("Source {k}"));
        input.push_str(&format!("{org},{src},{row}\n"));
        expected
            .entry(format!("{org} : {src}"))
            .or_default()
            .push(row);
    }
    let options = BarOptions {
        run_bytes: 16 * 1024,
        ..BarOptions::default()
    };
    let s = Scratch::new();
    let p = s.input(input.as_bytes());
    // Open descriptors of the whole test process, sampled as groups are written: other tests
    // running alongside add a few, 20,000 group files would add 20,000.
    let fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let mut most_fds = 0;
    let sum = group_bar_csv(
        &p,
        &s.out(),
        &options,
        &mut |_| most_fds = most_fds.max(fds()),
        &|| false,
    )
    .unwrap();
    assert!(most_fds < 1_000, "{most_fds} descriptors open");
    assert_eq!(sum.groups as usize, expected.len());
    assert!(expected.len() > 19_000);
    let m = manifest(&s);
    assert_eq!(m.len(), expected.len());
    for (e, (key, rows)) in m.iter().zip(&expected) {
        assert_eq!(&e.key, key);
        assert_eq!(e.rows as usize, rows.len());
    }
    // A sample of group bodies, in file order.
    for (e, (_, rows)) in m.iter().zip(&expected).step_by(997) {
        let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(file_text(&s, &e.file), format!("row\n{body}"));
    }
    // File names sort like the keys.
    let names: Vec<_> = m.iter().map(|e| e.file.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn progress_is_reported_and_cancellation_stops_the_work() {
    let mut input = String::from("orgFullName,emissionSourceName,v\n");
    for i in 0..50_000 {
        input.push_str(&format!("O,S{},{i}\n", i % 300));
    }
    let s = Scratch::new();
    let p = s.input(input.as_bytes());
    let mut seen = Vec::new();
    let sum = group_bar_csv(
        &p,
        &s.out(),
        &BarOptions::default(),
        &mut |p| seen.push(p),
        &|| false,
    )
    .unwrap();
    assert_eq!(sum.groups, 300);
    let total = input.len() as u64;
    assert!(seen.contains(&Progress::Reading {
        bytes: total,
        total
    }));
    assert_eq!(
        seen.last(),
        Some(&Progress::Writing {
            rows: 50_000,
            total: 50_000
        })
    );

    // Cancelled while reading.
    let s2 = Scratch::new();
    let p2 = s2.input(input.as_bytes());
    let r = group_bar_csv(&p2, &s2.out(), &BarOptions::default(), &mut |_| {}, &|| {
        true
    });
    assert!(matches!(r.unwrap_err(), BarError::Cancelled));
    assert!(!s2.out().join(MANIFEST).exists());
    assert!(!s2.out().join(".bar-spill").exists());

    // Cancelled while writing the groups: the polls while reading say no, a later one yes.
    let s3 = Scratch::new();
    let p3 = s3.input(input.as_bytes());
    let polls = Cell::new(0);
    let cancel = || {
        polls.set(polls.get() + 1);
        polls.get() > 10
    };
    let r = group_bar_csv(&p3, &s3.out(), &BarOptions::default(), &mut |_| {}, &cancel);
    assert!(matches!(r.unwrap_err(), BarError::Cancelled));
    assert!(!s3.out().join(MANIFEST).exists());
}

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        "[a-c]{1,2}",
        "[ a,\"\r\n0-9]{0,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The groups together hold exactly the input rows that have a key, each group's rows in
    /// file order, whatever the quoting, blanks and run size.
    #[test]
    fn groups_partition_the_kept_rows_in_file_order(
        rows in prop::collection::vec((cell(), cell(), cell(), cell()), 0..40),
        run_bytes in 1usize..4000,
        direct_keys in prop_oneof![Just(0usize), 0usize..4, Just(1024)],
    ) {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        w.write_record(["v1", "orgFullName", "emissionSourceName", "v2"]).unwrap();
        let mut expected: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut dropped = 0;
        for (org, src, a, b) in &rows {
            w.write_record([a, org, src, b]).unwrap();
            if org.trim().is_empty() || src.trim().is_empty() {
                dropped += 1;
            } else {
                expected.entry(format!("{org} : {src}")).or_default().push((a.clone(), b.clone()));
            }
        }
        let input = w.into_inner().unwrap();
        let (s, r) = run_with(&input, &BarOptions { run_bytes, direct_keys });
        let sum = r.unwrap();
        prop_assert_eq!(sum.rows_read as usize, rows.len());
        prop_assert_eq!(sum.rows_dropped, dropped);
        let m = manifest(&s);
        prop_assert_eq!(m.len(), expected.len());
        for (e, (key, want)) in m.iter().zip(&expected) {
            prop_assert_eq!(&e.key, key);
            let mut r = csv::Reader::from_path(s.out().join(&e.file)).unwrap();
            let got: Vec<(String, String)> = r
                .records()
                .map(|r| { let r = r.unwrap(); (r[0].to_owned(), r[1].to_owned()) })
                .collect();
            prop_assert_eq!(&got, want);
        }
    }
}

/// Every file of an output directory (name and bytes), to compare two groupings byte for byte.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// A file of `rows` rows over `keys` keys in a scrambled order, with quoted cells and blanks.
fn scrambled_input(rows: u32, keys: u32) -> String {
    let mut input = String::from("v1,orgFullName,emissionSourceName,v2\n");
    let mut x = 987_654_321u32;
    for row in 0..rows {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let k = (x >> 8) % keys;
        let note = match row % 7 {
            0 => "\"a, b\"".to_string(),
            1 => String::new(),
            2 => "\"say \"\"x\"\"\"".to_string(),
            _ => format!("n{row}"),
        };
        let org = if row % 101 == 0 {
            " ".to_string()
        } else {
            format!("Org {}", k % 13)
        };
        input.push_str(&format!("{row},{org},Source {k},{note}\n"));
    }
    input
}

#[test]
fn direct_and_sorted_groups_give_identical_output() {
    // Few keys, many keys, keys past the direct limit, and tiny budgets forcing spills: the
    // output directory is the same byte for byte whichever path each group took.
    for (rows, keys) in [(5_000, 7), (20_000, 3_000)] {
        let input = scrambled_input(rows, keys);
        let (base, sum) = run_with(
            input.as_bytes(),
            &BarOptions {
                run_bytes: 32 * 1024 * 1024,
                direct_keys: 0,
            },
        );
        let sum = sum.unwrap();
        assert!(sum.rows_dropped > 0);
        let want = snapshot(&base.out());
        assert_eq!(want.len() as u64, sum.groups + 1);
        for (run_bytes, direct_keys) in [
            (32 * 1024 * 1024, 1024),
            (32 * 1024 * 1024, 5),
            (16 * 1024, 1024),
            (16 * 1024, 3),
            (4 * 1024, 0),
            (2 * 1024 * 1024, 1),
        ] {
            let options = BarOptions {
                run_bytes,
                direct_keys,
            };
            let (s, r) = run_with(input.as_bytes(), &options);
            assert_eq!(
                r.unwrap(),
                BarSummary {
                    manifest: s.out().join(MANIFEST),
                    ..sum.clone()
                }
            );
            assert!(
                snapshot(&s.out()) == want,
                "{rows} rows over {keys} keys differ with {options:?}"
            );
        }
    }
}

#[test]
fn keys_after_the_direct_limit_are_merged_in_key_order() {
    // "m" and "z" come first and are written directly; the others go through the sort, and
    // the numbering interleaves them all in key order.
    let input = b"orgFullName,emissionSourceName,n\n\
                  m,S,1\nz,S,2\na,S,3\nm,S,4\nn,S,5\nzz,S,6\nz,S,7\na,S,8\nb,S,9\n";
    let (s, r) = run_with(
        input,
        &BarOptions {
            run_bytes: 1024,
            direct_keys: 2,
        },
    );
    assert_eq!(r.unwrap().groups, 6);
    assert_eq!(
        std::fs::read_to_string(s.out().join(MANIFEST)).unwrap(),
        "key,file,rows\na : S,00001-a_S.csv,2\nb : S,00002-b_S.csv,1\n\
         m : S,00003-m_S.csv,2\nn : S,00004-n_S.csv,1\nz : S,00005-z_S.csv,2\n\
         zz : S,00006-zz_S.csv,1\n"
    );
    assert_eq!(file_text(&s, "00003-m_S.csv"), "n\n1\n4\n");
    assert_eq!(file_text(&s, "00005-z_S.csv"), "n\n2\n7\n");
    assert_eq!(file_text(&s, "00001-a_S.csv"), "n\n3\n8\n");
    assert_eq!(std::fs::read_dir(s.out()).unwrap().count(), 7);
}

#[test]
fn a_direct_group_larger_than_its_buffer_is_written_in_chunks() {
    // One key with many rows and a tiny budget: its buffer is written out many times (and a
    // row longer than the buffer on its own), the header once, the rows in file order.
    let mut input = String::from("orgFullName,emissionSourceName,v\n");
    let mut want = String::from("v\n");
    for i in 0..5_000 {
        let v = if i == 777 {
            format!("\"{}\"", "x,".repeat(4_000))
        } else {
            i.to_string()
        };
        input.push_str(&format!("O,S,{v}\n"));
        want.push_str(&format!("{v}\n"));
    }
    let (s, r) = run_with(
        input.as_bytes(),
        &BarOptions {
            run_bytes: 2048,
            direct_keys: 1,
        },
    );
    assert_eq!(r.unwrap().groups, 1);
    assert_eq!(groups(&s), vec![("O : S".into(), want)]);
}

#[test]
fn a_failure_after_direct_groups_were_written_leaves_no_output() {
    // Enough rows that direct buffers were written out before the bad line.
    let mut input = String::from("orgFullName,emissionSourceName,v\n");
    for i in 0..20_000 {
        input.push_str(&format!("O,S{},{i}\n", i % 5));
    }
    input.push_str("O,S1\n");
    let (s, r) = run_with(
        input.as_bytes(),
        &BarOptions {
            run_bytes: 64 * 1024,
            direct_keys: 1024,
        },
    );
    assert!(matches!(
        r.unwrap_err(),
        BarError::Malformed { line: 20_002, .. }
    ));
    let left: Vec<_> = std::fs::read_dir(s.out()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Every record of `bytes` as the grouping's reader reads it, the input arriving `step` bytes per
/// read (so records cross buffer refills): (line, cells).
fn records_read_by(bytes: &[u8], step: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
    struct Trickle<'a>(&'a [u8], usize);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut source = parse::CsvSource::new(Trickle(bytes, step)).unwrap();
    let mut out = Vec::new();
    while let Some(r) = source.next().ok().flatten() {
        out.push((r.line, r.iter().map(<[u8]>::to_vec).collect()));
    }
    out
}

/// The records the csv crate reads from `bytes`.
fn csv_crate_records(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    r.byte_records()
        .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The reader's shortcut for plain lines and its quoted path together read exactly the
    /// records the csv crate reads: line ends (CR, LF, CRLF), blank lines, quotes anywhere.
    #[test]
    fn the_reader_reads_what_the_csv_crate_reads(
        bytes in prop_oneof![
            prop::collection::vec(
                prop::sample::select(vec![b'a', b'b', b',', b'"', b'\r', b'\n', b' ', 0xC3, 0xA9]),
                0..120,
            ),
            // Mostly plain text: long lines across the reader's 64-byte blocks.
            prop::collection::vec(
                prop_oneof![
                    30 => prop::sample::select(b"abcdefgh,,,".to_vec()),
                    1 => prop::sample::select(vec![b'"', b'\r', b'\n', b'\n', 0xC3]),
                ],
                0..700,
            ),
        ],
        step in prop_oneof![Just(1usize), 1usize..8, Just(1 << 20)],
    ) {
        let ours: Vec<_> = records_read_by(&bytes, step).into_iter().map(|(_, c)| c).collect();
        prop_assert_eq!(ours, csv_crate_records(&bytes));
    }
}

#[test]
fn records_are_numbered_by_the_line_they_start_on() {
    let input = b"a,b\n\n\"x\ny\",z\r\nplain,row\r\n\r\nlast,\"q\"";
    for step in [1, 3, 1 << 20] {
        let lines: Vec<u64> = records_read_by(input, step).iter().map(|r| r.0).collect();
        assert_eq!(lines, [1, 3, 5, 7], "step {step}");
    }
}

#[test]
fn rows_longer_than_the_read_buffer_are_read_and_a_huge_one_is_refused() {
    let long = "x".repeat(1 << 20);
    let input = format!("orgFullName,emissionSourceName,v\nA,S,{long}\nA,S,\"{long}\"\n");
    let (s, sum) = run(input.as_bytes());
    assert_eq!(sum.rows_read, 2);
    assert_eq!(groups(&s)[0].1, format!("v\n{long}\n{long}\n"));

    let huge = "y".repeat(parse::MAX_RECORD + 1);
    for row in [format!("A,S,{huge}"), format!("A,S,\"{huge}\"")] {
        let input = format!("orgFullName,emissionSourceName,v\nA,S,1\n{row}\n");
        let (_, r) = run_with(input.as_bytes(), &BarOptions::default());
        let e = r.unwrap_err();
        assert!(matches!(e, BarError::Malformed { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("longer than 16 MiB"), "{e}");
    }
}
