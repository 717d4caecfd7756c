//! The cluster sharding recipe of `docs/cluster.md`, run as written: each marked code block
//! is executed by bash with the scheduler's variables (Slurm's job array, Kubernetes'
//! indexed job) set by hand, once per part, then the merge block; the merged set must
//! equal a single `cvrl-shard build` of the same videos.

use cvrl_e2e::{root, run, sample_videos, target_dir, tempdir, text};
use cvrl_formats::ShardSet;
use std::path::Path;
use std::process::Command;

const PARTS: u32 = 3;

/// The code block after `<!-- run: NAME -->` in docs/cluster.md.
fn recipe(name: &str) -> String {
    let doc = std::fs::read_to_string(root().join("docs/cluster.md")).expect("docs/cluster.md");
    let marker = format!("<!-- run: {name} -->");
    let after = doc.split_once(&marker).unwrap_or_else(|| panic!("no {marker}")).1;
    let block = after.split_once("```sh\n").expect("a sh block after the marker").1;
    block.split_once("```").expect("a closed block").0.to_owned()
}

/// Runs `script` with bash, the built binaries first on PATH and `vars` set.
fn run_recipe(script: &str, vars: &[(&str, String)]) {
    let path = format!("{}:{}", target_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script]).env("PATH", path);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run bash");
    assert!(o.status.success(), "{script}\n{}", text(&o));
}

/// Every video of the set with its frame count and checksum, in the set's order.
fn contents(dir: &Path) -> Vec<(String, u32, u32)> {
    let set = ShardSet::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    set.videos().iter().map(|v| (v.video_id.clone(), v.num_frames, v.checksum)).collect()
}

#[test]
fn the_documented_job_array_and_indexed_job_lines_build_the_same_set_as_one_build() {
    let videos = sample_videos().join("videos");
    let whole = tempdir();
    let o = run("cvrl-shard", &[&"build", &videos, &whole.path(), &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = contents(whole.path());
    assert!(expected.len() > PARTS as usize, "every part should get videos");

    type Vars = fn(u32) -> Vec<(&'static str, String)>;
    let schedulers: [(&str, Vars); 2] = [
        ("slurm", |i| {
            vec![
                ("SLURM_ARRAY_TASK_ID", i.to_string()),
                ("SLURM_ARRAY_TASK_COUNT", PARTS.to_string()),
            ]
        }),
        ("kubernetes", |i| {
            vec![("JOB_COMPLETION_INDEX", i.to_string()), ("PARTS", PARTS.to_string())]
        }),
    ];
    for (scheduler, vars_of) in schedulers {
        let shards = tempdir();
        let common = [
            ("VIDEOS", videos.display().to_string()),
            ("SHARDS", shards.path().display().to_string()),
        ];
        for i in 0..PARTS {
            let mut vars = common.to_vec();
            vars.extend(vars_of(i));
            run_recipe(&recipe(scheduler), &vars);
        }
        run_recipe(&recipe("merge"), &common);
        assert_eq!(contents(shards.path()), expected, "{scheduler}");
        assert!(shards.path().join("index.parquet").is_file(), "{scheduler}: merged index");
    }
}
