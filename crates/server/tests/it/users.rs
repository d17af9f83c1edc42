//! Staff user management, public profiles, recipient search and the last-admin rule.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn staff_list_users_with_search_filter_sort_and_paging() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("boss", "admin").await;
    let moderator = app.user_with_role("mod_mary", "moderator").await;
    let user = app.register("zed").await;
    for n in ["anna", "andy", "bert"] {
        app.register(n).await;
    }
    let list = |q: &str, t: &str| {
        let q = q.to_string();
        let t = t.to_string();
        let app = &app;
        async move { app.get(&format!("/api/users{q}"), Some(&t)).await }
    };
    let b: Value = list("?q=an&sort=username&order=asc", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = b["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["andy", "anna"]);
    assert_eq!(b["total"], 2);
    let b: Value = list("?role=moderator", &moderator.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["total"], 1);
    assert_eq!(b["users"][0]["username"], "mod_mary");
    let b: Value = list("?limit=2&skip=2&sort=username&order=asc", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (b["total"].as_i64(), b["skip"].as_i64(), b["limit"].as_i64()),
        (Some(6), Some(2), Some(2))
    );
    assert_eq!(b["users"][0]["username"], "bert");
    let b: Value = list("?status=verified", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["total"], 2);
    // A LIKE wildcard in the search is literal.
    let b: Value = list("?q=%25", &admin.token).await.json().await.unwrap();
    assert_eq!(b["total"], 0);
    for bad in [
        "?limit=0",
        "?limit=101",
        "?skip=-1",
        "?sort=password_hash",
        "?role=root",
        "?status=x",
        "?limit=abc",
    ] {
        let (s, c, _) = error_code(list(bad, &admin.token).await).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    assert_eq!(list("", &user.token).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/users", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn other_users_see_a_public_profile_and_cannot_change_anyone() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("boss", "admin").await;
    let moderator = app.user_with_role("modest", "moderator").await;
    let a = app.register("amy").await;
    let b = app.register("ben").await;
    let full: Value = app
        .get(&format!("/api/users/{}", a.id), Some(&a.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(full["email"], "amy@example.com");
    let public: Value = app
        .get(&format!("/api/users/{}", a.id), Some(&b.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["username"], "amy");
    assert!(public.get("email").is_none(), "{public}");
    let staff: Value = app
        .get(&format!("/api/users/{}", a.id), Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(staff["email"], "amy@example.com");
    // Changing or deleting someone else: 404 for users, 403 for moderators; nothing changes.
    let path = format!("/api/users/{}", a.id);
    assert_eq!(
        app.put(&path, json!({"role": "admin"}), Some(&b.token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, Some(&b.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put(&path, json!({"role": "admin"}), Some(&moderator.token))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&path, Some(&moderator.token)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put(&path, json!({"role": "admin"}), Some(&a.token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let still: Value = app
        .get(&path, Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["role"], "user");
    // Unknown ids and non-UUIDs are 404, never 500.
    for id in [
        "00000000-0000-7000-8000-000000000000",
        "not-a-uuid",
        "1%27%20OR%201=1",
    ] {
        assert_eq!(
            app.get(&format!("/api/users/{id}"), Some(&admin.token))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    // Admin changes: role, verified; refuses unknown fields and bad roles.
    let r = app
        .put(
            &path,
            json!({"role": "moderator", "is_verified": true}),
            Some(&admin.token),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["role"].as_str(), v["is_verified"].as_bool()),
        (Some("moderator"), Some(true))
    );
    assert_eq!(
        error_code(app.put(&path, json!({"exp": 5}), Some(&admin.token)).await)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        error_code(
            app.put(&path, json!({"role": "root"}), Some(&admin.token))
                .await
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.delete(&path, Some(&admin.token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&path, Some(&admin.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&a.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_suspended_or_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("only_admin", "admin").await;
    let path = format!("/api/users/{}", admin.id);
    for body in [json!({"role": "user"}), json!({"is_active": false})] {
        let (s, c, _) = error_code(app.put(&path, body, Some(&admin.token)).await).await;
        assert_eq!((s, c.as_str()), (StatusCode::CONFLICT, "CONFLICT"));
    }
    assert_eq!(
        app.delete(&path, Some(&admin.token)).await.status(),
        StatusCode::CONFLICT
    );
    let me: Value = app
        .get("/api/auth/me", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["role"].as_str(), me["is_active"].as_bool()),
        (Some("admin"), Some(true))
    );
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let a = app.user_with_role(&format!("adm_a{round}"), "admin").await;
        let b = app.user_with_role(&format!("adm_b{round}"), "admin").await;
        // Leave exactly these two as the active admins.
        app.state
            .db
            .execute(
                "UPDATE users SET role = 'user' WHERE role = 'admin' AND id <> $1 AND id <> $2",
                [a.id.clone().into(), b.id.clone().into()],
            )
            .await
            .unwrap();
        let (path_a, path_b) = (
            format!("/api/users/{}", a.id),
            format!("/api/users/{}", b.id),
        );
        let (ra, rb) = tokio::join!(
            app.put(&path_b, json!({"role": "user"}), Some(&a.token)),
            app.put(&path_a, json!({"role": "user"}), Some(&b.token)),
        );
        let statuses = [ra.status(), rb.status()];
        assert_eq!(
            app.count("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active = TRUE")
                .await,
            1,
            "{statuses:?}"
        );
        assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    }
}

#[tokio::test]
async fn recipient_search_finds_verified_active_users_only() {
    let app = TestApp::spawn().await;
    let me = app.register("searcher").await;
    let v = app.register("victor").await;
    app.verify(&v).await;
    let _unverified = app.register("vince").await;
    let s = app.register("valerie").await;
    app.verify(&s).await;
    app.state
        .db
        .execute(
            "UPDATE users SET is_active = FALSE WHERE id = $1",
            [s.id.clone().into()],
        )
        .await
        .unwrap();
    let b: Value = app
        .get("/api/users/search?q=vi", Some(&me.token))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = b["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["victor"]);
    assert!(b["users"][0].get("email").is_none());
    // Email matches only exactly, so addresses cannot be discovered by prefix.
    let b: Value = app
        .get("/api/users/search?q=victor%40example.com", Some(&me.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["users"].as_array().unwrap().len(), 1);
    let b: Value = app
        .get("/api/users/search?q=victor%40exa", Some(&me.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["users"].as_array().unwrap().len(), 0);
    assert_eq!(
        app.get("/api/users/search?q=v", Some(&me.token))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/api/users/search", Some(&me.token)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let lb: Value = app
        .get("/api/leaderboard", Some(&me.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(lb["users"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn first_start_bootstraps_an_admin_once() {
    let app = TestApp::spawn_with(|c| {
        c.bootstrap.admin_email = Some("root@example.com".into());
        c.bootstrap.admin_username = Some("root".into());
        c.bootstrap.admin_password = Some("Bootstrap-Passw0rd".into());
    })
    .await;
    let r = app.login("root", "Bootstrap-Passw0rd").await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["user"]["role"], "admin");
    assert_eq!(b["user"]["is_verified"], true);
    // A restart with the same settings does not create a second admin or fail.
    let mut config = test_config(app.data_dir.clone());
    config.database_url = app.state.config.database_url.clone();
    config.bootstrap = app.state.config.bootstrap.clone();
    let again = TestApp::start(config).await;
    assert_eq!(
        again
            .count("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .await,
        1
    );
}
