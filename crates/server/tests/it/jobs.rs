//! Processing jobs through the API: BAR grouping of a folder end to end (steps, output files,
//! live `job_update` events), partial failure, cancel and retry, privacy, and the claims that
//! keep a job on one worker at a time, on whichever database the suite runs against.

use crate::files::id_of;
use crate::realtime::Recorder;
use crate::support::*;
use etx_db::jobs::{Claim, ClaimRules};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const NORTH: &str = "orgFullName,emissionSourceName,value,flag\r\n\
Acme,Boiler 10,658.480,\r\n\
Acme,Boiler 1,0878036,TRUE\r\n\
 ,Boiler 1,1e5,x\r\n\
Acme,Boiler 1,\"a,b\",\"say \"\"hi\"\"\"\r\n";

const SOUTH: &str = "\u{feff}emissionSourceName,orgFullName,v\nS,Org B, 1 \nS,Org A,2\n";

impl TestApp {
    pub(crate) async fn start_job(
        &self,
        u: &TestUser,
        kind: &str,
        input: &str,
    ) -> reqwest::Response {
        self.post(
            "/api/jobs",
            json!({"kind": kind, "input_id": input}),
            Some(&u.token),
        )
        .await
    }

    pub(crate) async fn job(&self, u: &TestUser, id: &str) -> Value {
        let r = self.get(&format!("/api/jobs/{id}"), Some(&u.token)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// The job once it has ended (or `status` is reached), waiting up to 60 s.
    pub(crate) async fn job_when(
        &self,
        u: &TestUser,
        id: &str,
        done: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let j = self.job(u, id).await;
            if done(j["job"]["status"].as_str().unwrap()) {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job did not get there: {j}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn ended_job(&self, u: &TestUser, id: &str) -> Value {
        self.job_when(u, id, |s| matches!(s, "completed" | "failed" | "cancelled"))
            .await
    }

    pub(crate) async fn text_of(&self, u: &TestUser, file_id: &str) -> String {
        let r = self
            .get(&format!("/api/files/{file_id}/download"), Some(&u.token))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn bar_grouping_of_a_folder_writes_each_group_and_reports_live() {
    let app = TestApp::spawn().await;
    let u = app.register("grouper").await;
    let r = app
        .upload(
            &u,
            None,
            &[
                ("reports/north.csv", NORTH.as_bytes()),
                ("reports/2024/south.csv", SOUTH.as_bytes()),
                ("reports/notes.txt", b"not a csv"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let reports = id_of(&app.listing(&u, None).await, "reports");
    let mut events = Recorder::start(&app.base, Some(&u.token)).await;

    let r = app.start_job(&u, "bar_grouping", &reports).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    assert_eq!(job["input_name"], "reports");
    let id = str_of(&job, "id").to_string();

    let done = app.ended_job(&u, &id).await;
    let j = &done["job"];
    assert_eq!(j["status"], "completed", "{done}");
    assert_eq!(j["progress"], 100);
    assert_eq!(j["message"], "2 files grouped into 4 groups");
    assert_eq!(j["attempts"], 1);
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "the text file is not a step: {done}");
    assert_eq!(steps[0]["input"], "2024/south.csv");
    assert_eq!(steps[1]["input"], "north.csv");
    for s in steps {
        assert_eq!(s["status"], "succeeded");
        assert!(s["duration_ms"].as_i64().unwrap() >= 0);
        assert_eq!(s["error"], Value::Null);
    }
    assert_eq!(steps[1]["detail"]["rows_read"], 4);
    assert_eq!(steps[1]["detail"]["rows_dropped"], 1);
    assert_eq!(steps[1]["detail"]["groups"], 2);
    assert_eq!(steps[0]["detail"]["groups"], 2);

    // The output sits next to the input, one folder per file.
    let top = app.listing(&u, None).await;
    let out = id_of(&top, "reports BAR groups");
    assert_eq!(j["output_id"], out.as_str());
    let north = id_of(&app.listing(&u, Some(&out)).await, "north");
    let manifest_id = str_of(&steps[1]["detail"], "manifest_id").to_string();
    let manifest = app.text_of(&u, &manifest_id).await;
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines[0], "key,file,rows");
    assert!(lines[1].starts_with("Acme : Boiler 1,"), "{manifest}");
    assert!(lines[1].ends_with(",2"), "{manifest}");
    assert!(lines[2].starts_with("Acme : Boiler 10,"), "{manifest}");
    let group_file = lines[1].split(',').nth(1).unwrap();
    let group = app
        .text_of(&u, &id_of(&app.listing(&u, Some(&north)).await, group_file))
        .await;
    // Key columns gone, every other cell's text as it was, rows in file order.
    assert_eq!(
        group,
        "value,flag\n0878036,TRUE\n\"a,b\",\"say \"\"hi\"\"\"\n"
    );

    // The owner heard the job start and end.
    let seen = events
        .wait_for(
            "job_update",
            |d| d["id"] == id.as_str() && d["status"] == "completed",
            Duration::from_secs(10),
        )
        .await;
    assert!(seen.is_some(), "no completed job_update");
    assert!(
        events
            .wait_for(
                "job_update",
                |d| d["id"] == id.as_str() && d["status"] == "running",
                Duration::from_secs(1),
            )
            .await
            .is_some()
    );
    let list: Value = app
        .get("/api/jobs", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_file_without_the_key_columns_fails_alone_and_the_job_says_which() {
    let app = TestApp::spawn().await;
    let u = app.register("partial").await;
    app.upload(
        &u,
        None,
        &[
            ("batch/good.csv", NORTH.as_bytes()),
            ("batch/bad.csv", b"orgFullName,value\nAcme,1\n"),
        ],
    )
    .await;
    let batch = id_of(&app.listing(&u, None).await, "batch");
    let job: Value = app
        .start_job(&u, "bar_grouping", &batch)
        .await
        .json()
        .await
        .unwrap();
    let done = app.ended_job(&u, str_of(&job, "id")).await;
    assert_eq!(
        done["job"]["status"], "failed",
        "never success with a failed step"
    );
    assert_eq!(
        done["job"]["message"],
        "1 of 2 files failed: bad.csv: missing required column(s): emissionSourceName"
    );
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps[0]["input"], "bad.csv");
    assert_eq!(steps[0]["status"], "failed");
    assert_eq!(
        steps[0]["error"],
        "missing required column(s): emissionSourceName"
    );
    assert_eq!(steps[1]["status"], "succeeded");
    // The good file's groups are there.
    let out = id_of(&app.listing(&u, None).await, "batch BAR groups");
    let good = id_of(&app.listing(&u, Some(&out)).await, "good");
    assert_eq!(
        crate::files::names(&app.listing(&u, Some(&good)).await).len(),
        3
    );

    // Fix the file and run the job again: a new job on the same input.
    let r = app
        .post(
            &format!("/api/jobs/{}/retry", str_of(&job, "id")),
            json!({}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["retry_of"], job["id"]);
    // Retried once: a second retry of the same job (a double click) starts nothing.
    let r = app
        .post(
            &format!("/api/jobs/{}/retry", str_of(&job, "id")),
            json!({}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let done = app.ended_job(&u, str_of(&again, "id")).await;
    assert_eq!(done["job"]["status"], "failed");
    // A second run writes a new folder beside the first.
    id_of(&app.listing(&u, None).await, "batch BAR groups (2)");
    // A completed job cannot be retried; a job that ended cannot be cancelled.
    let (status, code, _) = error_code(
        app.post(
            &format!("/api/jobs/{}/cancel", str_of(&again, "id")),
            json!({}),
            Some(&u.token),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "CONFLICT"));
}

#[tokio::test]
async fn bad_job_requests_are_refused_and_other_users_jobs_do_not_exist() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let u = app.register("owner").await;
    let other = app.register("other").await;
    app.upload(
        &u,
        None,
        &[("a.csv", NORTH.as_bytes()), ("pic.png", &png(2, 2))],
    )
    .await;
    let top = app.listing(&u, None).await;
    let (csv, pic) = (id_of(&top, "a.csv"), id_of(&top, "pic.png"));

    for (body, field) in [
        (json!({"kind": "shred", "input_id": csv}), "kind"),
        (json!({"kind": "bar_grouping", "input_id": pic}), "input_id"),
        (
            json!({"kind": "bar_grouping", "input_id": "nope"}),
            "input_id",
        ),
    ] {
        let (status, _, b) = error_code(app.post("/api/jobs", body, Some(&u.token)).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["error"]["fields"][field].is_string(), "{b}");
    }
    // Someone else's file is not an input of yours.
    let (status, _, _) = error_code(app.start_job(&other, "bar_grouping", &csv).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);

    // No worker here: the job waits, and a cancel ends it at once.
    let job: Value = app
        .start_job(&u, "bar_grouping", &csv)
        .await
        .json()
        .await
        .unwrap();
    let id = str_of(&job, "id");
    let r = app
        .get(&format!("/api/jobs/{id}"), Some(&other.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for path in [
        format!("/api/jobs/{id}/cancel"),
        format!("/api/jobs/{id}/retry"),
    ] {
        let r = app.post(&path, json!({}), Some(&other.token)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let list: Value = app
        .get("/api/jobs", Some(&other.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"], json!([]));
    let (status, _, _) = error_code(
        app.post(&format!("/api/jobs/{id}/retry"), json!({}), Some(&u.token))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a waiting job is not retried");

    let r = app
        .post(&format!("/api/jobs/{id}/cancel"), json!({}), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(app.job(&u, id).await["steps"], json!([]));

    // The unfinished-job limit, also for requests sent at once for the last place.
    let limit = app.state.config.jobs.per_user_unfinished;
    for _ in 1..limit {
        assert_eq!(
            app.start_job(&u, "bar_grouping", &csv).await.status(),
            StatusCode::CREATED
        );
    }
    let tries = (0..4).map(|_| async { app.start_job(&u, "bar_grouping", &csv).await.status() });
    let statuses = futures_util::future::join_all(tries).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    let (status, code, _) = error_code(app.start_job(&u, "bar_grouping", &csv).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED")
    );
}

/// A CSV of `rows` rows over 50 sources.
fn big_csv(rows: usize) -> Vec<u8> {
    let mut s = String::from("orgFullName,emissionSourceName,period,value\n");
    for i in 0..rows {
        s.push_str(&format!(
            "Org {},Source {},2024-{:02},{}.{:03}\n",
            i % 7,
            i % 50,
            i % 12 + 1,
            i,
            i % 1000
        ));
    }
    s.into_bytes()
}

#[tokio::test]
async fn a_running_job_stops_when_cancelled_and_keeps_nothing_half_stored() {
    let app = TestApp::spawn().await;
    let u = app.register("canceller").await;
    // About 2.5 s of grouping in a debug build: the cancel lands well before the end.
    app.upload(&u, None, &[("big.csv", &big_csv(1_000_000))])
        .await;
    let big = id_of(&app.listing(&u, None).await, "big.csv");
    let job: Value = app
        .start_job(&u, "bar_grouping", &big)
        .await
        .json()
        .await
        .unwrap();
    let id = str_of(&job, "id");
    app.job_when(&u, id, |s| s != "queued").await;
    // Cancel once the grouping step runs (a job cancelled before its first step has none).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.job(&u, id).await["steps"][0]["status"] != "running" {
        assert!(tokio::time::Instant::now() < deadline, "the step never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = app
        .post(&format!("/api/jobs/{id}/cancel"), json!({}), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let asked: Value = r.json().await.unwrap();
    assert_eq!(asked["status"], "running");
    assert_eq!(asked["cancel_requested"], true);
    let done = app.ended_job(&u, id).await;
    assert_eq!(done["job"]["status"], "cancelled", "{done}");
    assert_eq!(done["job"]["message"], "cancelled after 0 of 1 files");
    assert_eq!(done["steps"][0]["status"], "cancelled");
    let out = id_of(&app.listing(&u, None).await, "big BAR groups");
    assert_eq!(app.listing(&u, Some(&out)).await["entries"], json!([]));
    // No scratch files are left behind.
    let tmp = app.data_dir.join("tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn claims_give_each_job_to_one_worker_within_the_per_user_limit() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let a = app.register("ann").await;
    let b = app.register("bob").await;
    for u in [&a, &b] {
        app.upload(u, None, &[("in.csv", NORTH.as_bytes())]).await;
    }
    let input_a = id_of(&app.listing(&a, None).await, "in.csv");
    let input_b = id_of(&app.listing(&b, None).await, "in.csv");
    let mut ids = Vec::new();
    for (u, input) in [
        (&a, &input_a),
        (&a, &input_a),
        (&a, &input_a),
        (&b, &input_b),
        (&b, &input_b),
    ] {
        let j: Value = app
            .start_job(u, "bar_grouping", input)
            .await
            .json()
            .await
            .unwrap();
        ids.push(str_of(&j, "id").to_string());
    }
    let db = app.state.db.clone();
    let workers: Vec<String> = (0..8).map(|i| format!("test-worker-{i}")).collect();
    let claims = futures_util::future::join_all(workers.iter().map(|w| {
        let db = db.clone();
        async move {
            db.claim_job(&ClaimRules {
                worker: w,
                lease_micros: 60_000_000,
                per_user: 1,
                max_attempts: 3,
            })
            .await
            .unwrap()
        }
    }))
    .await;
    let claimed: Vec<_> = claims.into_iter().filter_map(|c| c.job).collect();
    // One job of each owner, each the owner's oldest, each to one worker.
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    let mut owners: Vec<_> = claimed.iter().map(|j| j.owner_id.clone()).collect();
    owners.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(owners, expected);
    assert!(claimed.iter().all(|j| j.id == ids[0] || j.id == ids[3]));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
            .await,
        2
    );

    // Ann's worker dies: once its lease ends another worker takes the job over, and the
    // first can no longer write to it.
    let first = claimed.iter().find(|j| j.owner_id == a.id).unwrap();
    let dead = first.worker.clone().unwrap();
    app.exec(&format!(
        "UPDATE jobs SET lease_until = 1 WHERE id = '{}'",
        first.id
    ))
    .await;
    let rules = ClaimRules {
        worker: "test-worker-new",
        lease_micros: 60_000_000,
        per_user: 1,
        max_attempts: 3,
    };
    let again = db.claim_job(&rules).await.unwrap().job;
    let again = again.expect("the dead worker's job is claimable again");
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(
        db.renew_job(&first.id, &dead, 60_000_000, 10, "x")
            .await
            .unwrap(),
        None
    );
    let late = db
        .finish_job(
            db.conn(),
            &first.id,
            &dead,
            etx_domain::JobStatus::Completed,
            "done",
            None,
        )
        .await
        .unwrap();
    assert!(
        late.is_none(),
        "a worker that lost its lease changes nothing"
    );
    assert_eq!(
        db.renew_job(&first.id, "test-worker-new", 60_000_000, 10, "x")
            .await
            .unwrap(),
        Some(false)
    );

    // A job whose workers keep dying fails instead of running forever.
    app.exec(&format!(
        "UPDATE jobs SET lease_until = 1, attempts = 3 WHERE id = '{}'",
        first.id
    ))
    .await;
    let Claim { job, abandoned } = db.claim_job(&rules).await.unwrap();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].id, first.id);
    assert_eq!(abandoned[0].status, "failed");
    assert!(
        abandoned[0].message.contains("3 times"),
        "{}",
        abandoned[0].message
    );
    // Its slot is free again: Ann's next job starts.
    assert_eq!(job.expect("the next job is claimed").id, ids[1]);
}

#[tokio::test]
async fn a_job_whose_worker_died_is_run_again_from_the_start() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let u = app.register("phoenix").await;
    app.upload(&u, None, &[("in.csv", NORTH.as_bytes())]).await;
    let input = id_of(&app.listing(&u, None).await, "in.csv");
    let job: Value = app
        .start_job(&u, "bar_grouping", &input)
        .await
        .json()
        .await
        .unwrap();
    let id = str_of(&job, "id").to_string();
    // A worker of another instance took it, wrote part of its output and died.
    let db = app.state.db.clone();
    let rules = ClaimRules {
        worker: "gone",
        lease_micros: 1,
        per_user: 2,
        max_attempts: 3,
    };
    assert!(db.claim_job(&rules).await.unwrap().job.is_some());
    let half = app
        .post(
            "/api/files/folders",
            json!({"name": "in BAR groups"}),
            Some(&u.token),
        )
        .await;
    let half: Value = half.json().await.unwrap();
    app.exec(&format!(
        "UPDATE jobs SET output_id = '{}' WHERE id = '{id}'",
        str_of(&half, "id")
    ))
    .await;
    app.exec(&format!(
        "INSERT INTO job_steps (job_id, seq, attempt, name, input, status, detail, error, started_at, finished_at) \
         VALUES ('{id}', 1, 1, 'group', 'in.csv', 'running', '{{}}', NULL, 1, NULL)"
    ))
    .await;

    // This instance's worker finds it once the lease has ended.
    let again = TestApp::start({
        let mut c = app.state.config.clone();
        c.jobs.workers = 1;
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    let done = again.ended_job(&u, &id).await;
    assert_eq!(done["job"]["status"], "completed", "{done}");
    assert_eq!(done["job"]["attempts"], 2);
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "interrupted");
    assert_eq!(steps[0]["attempt"], 1);
    assert_eq!(steps[1]["status"], "succeeded");
    assert_eq!(steps[1]["attempt"], 2);
    // The half-written output was replaced, not kept beside the new one.
    let names = crate::files::names(&app.listing(&u, None).await);
    assert_eq!(names, vec!["in BAR groups", "in.csv"]);
    assert_ne!(done["job"]["output_id"], half["id"]);
}

#[tokio::test]
async fn a_job_queued_by_someone_suspended_since_does_not_run() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let u = app.register("mallory").await;
    app.upload(&u, None, &[("in.csv", NORTH.as_bytes())]).await;
    let input = id_of(&app.listing(&u, None).await, "in.csv");
    let job: Value = app
        .start_job(&u, "bar_grouping", &input)
        .await
        .json()
        .await
        .unwrap();
    let id = str_of(&job, "id").to_string();
    app.exec(&format!(
        "UPDATE users SET is_active = FALSE WHERE id = '{}'",
        u.id
    ))
    .await;
    // A worker takes it up: it fails, and writes nothing.
    let worker = TestApp::start({
        let mut c = app.state.config.clone();
        c.jobs.workers = 1;
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    let start = std::time::Instant::now();
    let status = loop {
        let s = app
            .count(&format!(
                "SELECT CAST(CASE status WHEN 'failed' THEN 1 WHEN 'completed' THEN 2 ELSE 0 END \
                 AS BIGINT) FROM jobs WHERE id = '{id}'"
            ))
            .await;
        if s != 0 {
            break s;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, 1, "failed, not completed");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM files WHERE owner_id = '{}'",
            u.id
        ))
        .await,
        1,
        "only the input"
    );
    drop(worker);
}
