//! `lsoftmax ptx --sass-listing`: the SASS report on a given `cuobjdump -sass` listing (the
//! hand-written fixtures of the loop finder), which needs no nightly, ptxas or cuobjdump;
//! and its argument errors. The full `ptx --sass` on the shipping PTX needs those tools and
//! runs in CI (`.ci/run`).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lsoftmax");
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tools/ptx-tools/src/sass/fixtures/loops.sass"
);

#[test]
fn listing_report_is_labelled_static_and_saved_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rows.json");
    let o = Command::new(BIN)
        .args(["ptx", "--sass-listing", &format!("sm_80={FIXTURES}")])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("static count; bound = static model, A100"),
        "{out}"
    );
    assert!(out.contains("Not a timing"), "{out}");
    let flat = out.lines().find(|l| l.contains("flat_stage")).unwrap();
    // 4 k-steps, 34 instructions, 16 FFMA, density 0.471, bound 0.80 (shared).
    let cols: Vec<&str> = flat.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["flat_stage", "4", "34", "16", "0.471"],
        "{flat}"
    );
    assert!(flat.contains("0.80 (shared)"), "{flat}");
    let straight = out.lines().find(|l| l.contains("straight_line")).unwrap();
    assert!(straight.contains("no FFMA loop"), "{straight}");
    let refused = out.lines().find(|l| l.contains("nested_tie")).unwrap();
    assert!(
        refused.contains("refused: ambiguous main loop"),
        "{refused}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = saved["sass"]["sm_80"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0]["kernel"], "flat_stage");
    assert_eq!(rows[0]["main_loop"]["stage"]["instructions"], 34);
    assert_eq!(rows[4]["kernel"], "versioned_loops");
    assert_eq!(rows[4]["main_loop"]["other_versions"][0]["instructions"], 8);
    assert_eq!(rows[5]["kernel"], "nested_tie");
    assert_eq!(rows[5]["status"], "refused");
}

#[test]
fn bad_sass_arguments_are_usage_errors_naming_the_value() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let o = run(&["ptx", "--sass-listing", "sm_80=/nonexistent/x.sass"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.sass"));

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.sass");
    std::fs::write(&empty, "not a listing\n").unwrap();
    let o = run(&[
        "ptx",
        "--sass-listing",
        &format!("sm_80={}", empty.display()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cuobjdump -sass"));

    let o = run(&["ptx", "--sass", "--shape", "1,2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("N,D,C"));

    let o = run(&["ptx", "--sass-listing", "volta=x.sass"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"volta\""));
}
