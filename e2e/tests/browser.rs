//! The web UI driven in headless Chromium: what a person does on a first visit, with real form
//! submission, cookies, redirects, file upload and image loading.

use etx_e2e::{App, Browser, TempDir};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

const USERNAME: &str = "browser_user";
const EMAIL: &str = "browser_user@example.com";
const PASSWORD: &str = "Str0ng-Passphrase";
const HOME_SCREENSHOT: &str = "/tmp/etx-home.png";

fn png(w: u32, h: u32) -> Vec<u8> {
    // A gradient rather than a flat colour, so a broken re-encode cannot pass as a blank image.
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 160]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// Registers `username` (mail `username@example.com`) through the form, terms accepted, and
/// lands on home.
async fn register(app: &App, b: &Browser, username: &str) {
    b.goto(&app.url("/register")).await;
    b.fill("#username", username).await;
    b.fill("#email", &format!("{username}@example.com")).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm_password", PASSWORD).await;
    b.click("input[name=terms]").await;
    b.click("form[action='/register'] button[type=submit]")
        .await;
    b.wait_for_path("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_avatar_logout_in_chromium() {
    let started = Instant::now();
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());

    // Register through the form, terms box included.
    b.goto(&app.url("/register")).await;
    b.fill("#username", USERNAME).await;
    b.fill("#email", EMAIL).await;
    // The meter asks the server's estimate: repeats are very weak whatever their length.
    b.fill("#password", "aaaaaaaaaaaa").await;
    let said = b
        .wait_for_js(
            "const t = document.getElementById('password-strength-text').textContent; \
             return t.startsWith('Very weak') ? t : null;",
            "the meter to rate a repeated letter",
        )
        .await;
    assert!(
        said.as_str().unwrap_or_default().contains("not accepted"),
        "{said}"
    );
    b.fill("#password", PASSWORD).await;
    b.wait_for_js(
        "const t = document.getElementById('password-strength-text').textContent; \
         return /^(Strong|Very strong)$/.test(t) ? t : null;",
        "the meter to rate the real password",
    )
    .await;
    b.fill("#confirm_password", PASSWORD).await;
    b.click("input[name=terms]").await;
    assert!(
        b.find("input[name=terms]")
            .await
            .is_selected()
            .await
            .unwrap(),
        "terms checkbox is ticked"
    );
    b.click("form[action='/register'] button[type=submit]")
        .await;

    // Home page: who, role, level and XP progress.
    b.wait_for_path("/").await;
    assert_eq!(b.text("#profile-title").await, USERNAME);
    assert_eq!(b.text(".badge[class*='role-']").await, "user");
    let level: u32 = b.text("#level").await.parse().expect("level is a number");
    assert!(level >= 1, "level {level}");
    let max: f64 = b
        .attr("progress#xp", "max")
        .await
        .expect("progress has a max")
        .parse()
        .expect("numeric max");
    assert!(max > 0.0, "XP progress max {max}");
    assert!(b.find("progress#xp").await.is_displayed().await.unwrap());
    assert!(b.text(".menu.account summary").await.contains(USERNAME));
    b.screenshot(Path::new(HOME_SCREENSHOT)).await;

    // Log out, then back in through the login form.
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;
    b.fill("#login", USERNAME).await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/login'] button[type=submit]").await;
    b.wait_for_path("/").await;
    assert_eq!(b.text("#profile-title").await, USERNAME);

    // Avatar upload through the file input; the browser must be able to load the result.
    b.goto(&app.url("/profile")).await;
    b.wait_for_path("/profile").await;
    assert!(
        !b.exists("#avatar-img").await,
        "a new account has no avatar yet"
    );
    let files = TempDir::new("etx-e2e-upload");
    let avatar = files.path().join("avatar.png");
    std::fs::write(&avatar, png(48, 48)).expect("write avatar file");
    b.find("#avatar-file")
        .await
        .send_keys(avatar.to_str().expect("utf-8 temp path"))
        .await
        .expect("choose the avatar file");
    b.click("form[action='/profile/avatar'] button[type=submit]")
        .await;
    b.wait_for_path("/profile?msg=avatar").await;
    assert!(
        b.text(".notice").await.contains("avatar was updated"),
        "upload notice"
    );
    let width = b
        .wait_for_js(
            "const i = document.getElementById('avatar-img'); \
             return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : null;",
            "avatar image loads",
        )
        .await;
    assert!(width.as_u64().unwrap_or(0) > 0, "naturalWidth {width}");

    // After logging out the profile is out of reach.
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;
    b.goto(&app.url("/profile")).await;
    b.wait_for_path("/login").await;
    assert!(b.exists("form[action='/login']").await);

    // Installed as an app: the service worker holds the static files and the offline page,
    // never a page or an API answer seen during the journey.
    let cached = b
        .wait_for_js(
            "if (!window.swCached) { window.swCached = 'pending'; \
               navigator.serviceWorker.ready \
                 .then(() => caches.keys()) \
                 .then(ks => Promise.all(ks.map(k => caches.open(k).then(c => c.keys())))) \
                 .then(rs => { window.swCached = [...new Set(rs.flat().map(r => new URL(r.url).pathname))].sort().join(' '); }); } \
             return window.swCached === 'pending' ? null : window.swCached;",
            "the service worker to be ready",
        )
        .await;
    assert_eq!(
        cached.as_str().unwrap_or_default(),
        "/offline /static/app.css /static/app.js /static/favicon.svg"
    );

    b.close().await;
    eprintln!("browser journey took {:?}", started.elapsed());
}

/// A code from `oathtool` (not our TOTP code), `offset` 30-second steps from now.
fn totp(secret: &str, offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = std::process::Command::new("oathtool")
        .args([
            "--totp",
            "-b",
            secret,
            "-N",
            &format!("@{}", now + offset * 30),
        ])
        .output()
        .expect("oathtool is installed (Debian package oathtool)");
    assert!(out.status.success(), "oathtool: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_set_up_and_sign_in_in_chromium() {
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    register(&app, &b, "second_factor").await;

    // Set-up: the QR code is drawn on the page and the key is there for typing by hand.
    b.click("nav a[href='/security']").await;
    b.wait_for_path("/security").await;
    b.click("form[action='/security/2fa/setup'] button[type=submit]")
        .await;
    let qr_width = b
        .wait_for_js(
            "const s = document.querySelector('#tfa-qr svg'); \
             return s ? s.getBoundingClientRect().width : null;",
            "QR code rendered",
        )
        .await;
    assert!(
        qr_width.as_f64().unwrap_or(0.0) >= 150.0,
        "QR width {qr_width}"
    );
    b.screenshot(Path::new("/tmp/etx-2fa-setup.png")).await;
    let secret = b
        .wait_for_js(
            "return document.getElementById('tfa-secret').textContent;",
            "secret shown",
        )
        .await;
    let secret = secret.as_str().unwrap().to_string();
    b.fill("#tfa-code", &totp(&secret, 0)).await;
    b.click("form[action='/security/2fa/verify'] button[type=submit]")
        .await;
    let codes = b
        .wait_for_js(
            "const l = document.querySelectorAll('#backup-codes li code'); \
             return l.length ? Array.from(l).map(c => c.textContent) : null;",
            "backup codes shown",
        )
        .await;
    assert_eq!(codes.as_array().map(Vec::len), Some(10));
    assert!(b.text("#tfa-status").await.starts_with("On"));

    // Log out; logging in now asks for a code before any session exists.
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;
    b.fill("#login", "second_factor").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/login'] button[type=submit]").await;
    b.wait_for_js(
        "return document.querySelector(\"form[action='/login/2fa']\") !== null;",
        "code step",
    )
    .await;
    b.fill("#code", &totp(&secret, 1)).await;
    b.click("form[action='/login/2fa'] button[type=submit]")
        .await;
    b.wait_for_path("/").await;
    assert_eq!(b.text("#profile-title").await, "second_factor");

    // The markets page follows the price stream without a reload.
    b.click("nav a[href='/markets']").await;
    b.wait_for_path("/markets").await;
    assert!(b.text("#feed-source").await.contains("Simulated"));
    let first = b.text("[data-price='BTC']").await;
    b.wait_for_js(
        &format!(
            "return document.querySelector(\"[data-price='BTC']\").textContent !== {first:?};"
        ),
        "the BTC price updates live",
    )
    .await;
    // A live feed is not stale, and the 24 h figures keep up with the price.
    assert!(
        !b.visible("[data-stale-badge]").await,
        "the Stale badge shows on a live feed"
    );
    b.wait_for_js(
        "const v = s => Number(document.querySelector(s).textContent.replace(/,/g, '')); \
         const p = v(\"[data-price='BTC']\"), hi = v(\"[data-high='BTC']\"), lo = v(\"[data-low='BTC']\"); \
         return hi >= p && lo <= p;",
        "the 24 h high and low to contain the live price",
    )
    .await;
    // Thousands separators and the same two decimals on every tick, live or not.
    let live = b.text("[data-price='BTC']").await;
    assert!(
        regex_like_price(&live),
        "BTC reads like 97,234.50, got {live:?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_received_shows_up_on_the_open_wallet_page() {
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    register(&app, &b, "receiver").await;
    b.click("nav a[href='/wallet']").await;
    b.wait_for_path("/wallet").await;
    assert_eq!(b.text("[data-asset='USD']").await, "0.00");

    // Someone else sends money while the page is open.
    let s = &app.state;
    let admin = etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "boss@example.com",
        "boss",
        "Adm1n-Passphrase",
    )
    .await
    .expect("admin");
    let receiver = s.db.user_by_login("receiver").await.unwrap().unwrap();
    s.db.execute(
        "UPDATE users SET is_verified = TRUE WHERE id = $1",
        [receiver.id.clone().into()],
    )
    .await
    .unwrap();
    // An admin never adjusts their own balance: another one funds the sender.
    let treasurer = etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "treasurer@example.com",
        "treasurer",
        "Adm1n-Passphrase",
    )
    .await
    .expect("second admin");
    let out = etx_core::wallet::adjust(
        s,
        &treasurer,
        "fund-admin",
        &serde_json::value::to_raw_value(
            &json!({"user_id": admin.id, "currency": "USD", "amount": "50.00", "reason": "float"}),
        )
        .unwrap(),
    )
    .await
    .expect("fund the sender");
    assert_eq!(out.status, etx_core::ledger::Taken::Completed);
    let out = etx_core::wallet::transfer_p2p(
        s,
        &admin,
        "live-1",
        &serde_json::value::to_raw_value(
            &json!({"recipient": "receiver", "amount": "12.34", "currency": "USD"}),
        )
        .unwrap(),
    )
    .await
    .expect("transfer");
    assert_eq!(out.status, etx_core::ledger::Taken::Completed);

    b.wait_for_js(
        "return document.querySelector(\"[data-asset='USD']\").textContent === '12.34';",
        "the balance updates without a reload",
    )
    .await;
    let toast = b
        .wait_for_js(
            "const t = document.querySelector('#live-toasts .toast'); return t ? t.textContent : null;",
            "a toast tells who sent it",
        )
        .await;
    assert_eq!(toast, "Received 12.34 USD from boss.");
    // The bell counts it; its page lists it, and marking all read clears the count.
    b.wait_for_js(
        "return document.querySelector('[data-unread]').textContent === '1';",
        "the bell to count the new notification",
    )
    .await;
    b.click("nav a.bell").await;
    b.wait_for_path("/notifications").await;
    assert!(b.text("#inbox").await.contains("You received 12.34 USD"));
    b.assert_accessible("the notifications page").await;
    b.click("form[action='/notifications/read'] button").await;
    b.wait_for_js(
        "return location.search === '?msg=all-read' ? true : null;",
        "all marked read",
    )
    .await;
    assert!(
        !b.visible("[data-unread]").await,
        "no count once all are read"
    );

    // On the home page, money arriving updates the total and the recent activity in place.
    b.goto(&app.url("/")).await;
    assert_eq!(b.text("[data-worth-total]").await, "$12.34");
    let out = etx_core::wallet::transfer_p2p(
        s,
        &admin,
        "live-3",
        &serde_json::value::to_raw_value(
            &json!({"recipient": "receiver", "amount": "20.00", "currency": "USD", "note": "rent share"}),
        )
        .unwrap(),
    )
    .await
    .expect("second transfer");
    assert_eq!(out.status, etx_core::ledger::Taken::Completed);
    b.wait_for_js(
        "const t = document.querySelector('[data-worth-total]'); \
         const r = document.getElementById('home-recent-card'); \
         return t.textContent === '$32.34' && r.textContent.includes('rent share') ? true : null;",
        "the total and recent activity to follow the transfer without a reload",
    )
    .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_then_withdraw_with_staff_approval_in_chromium() {
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    let s = &app.state;
    etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "treasurer@example.com",
        "treasurer",
        "Adm1n-Passphrase",
    )
    .await
    .expect("admin");
    register(&app, &b, "depositor").await;

    // Deposit $100 paid in USDT; the sandbox payment goes through the signed webhook.
    b.click("nav a[href='/deposit']").await;
    b.wait_for_path("/deposit").await;
    b.fill("#amount", "100").await;
    b.wait_for_js(
        "document.getElementById('pay_currency').value = 'USDT'; return true;",
        "choose USDT",
    )
    .await;
    b.click("form[action='/deposit'] button[type=submit]").await;
    b.wait_for_js(
        "return location.pathname.startsWith('/deposit/DEP-') ? true : null;",
        "the order page opens",
    )
    .await;
    assert!(b.exists("#deposit-qr svg").await, "a QR code to pay with");
    assert_eq!(
        b.attr("#deposit-status", "data-status").await.as_deref(),
        Some("waiting")
    );
    let address = b.text("#pay-address").await;
    assert!(
        address.starts_with("0x") && address.len() == 42,
        "{address}"
    );
    assert!(
        !b.exists("meta[http-equiv=refresh]").await,
        "no timed reload"
    );
    // The provider reports progress while the page stays open: it shows it by itself.
    let sent = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const f = document.querySelector('input[name=status][value=confirming]').form; \
             fetch(f.action, { method: 'POST', body: new URLSearchParams(new FormData(f)), \
               credentials: 'same-origin', redirect: 'manual' }) \
               .then(() => done(true), e => done(String(e)));",
            vec![],
        )
        .await
        .expect("report progress");
    assert_eq!(sent, json!(true));
    b.wait_for_js(
        "return document.getElementById('deposit-status').getAttribute('data-status') \
           === 'confirming' ? true : null;",
        "the order page to show the new status by itself",
    )
    .await;
    b.click("#simulate-finished").await;
    b.wait_for_js(
        "return location.search === '?msg=paid' ? true : null;",
        "back on the order after the payment",
    )
    .await;
    assert_eq!(
        b.attr("#deposit-status", "data-status").await.as_deref(),
        Some("finished")
    );
    assert_eq!(
        b.attr("#deposit-credit", "data-credit").await.as_deref(),
        Some("credited")
    );
    b.click("nav a[href='/wallet']").await;
    b.wait_for_path("/wallet").await;
    let usdt: f64 = b.text("[data-asset='USDT']").await.parse().unwrap();
    assert!(
        (99.0..=101.0).contains(&usdt),
        "about $100 of USDT, got {usdt}"
    );

    // Withdraw 20 USDT: the fee (the 1 USDT minimum) and total are shown before confirming.
    b.click("nav a[href='/withdraw']").await;
    b.wait_for_path("/withdraw").await;
    let chosen = b
        .wait_for_js(
            "return document.getElementById('currency').value;",
            "the asset chosen",
        )
        .await;
    assert_eq!(
        chosen,
        json!("USDT"),
        "the asset the user holds comes first"
    );
    let label = b
        .wait_for_js(
            "return document.querySelector(\"#currency option[value='USDT']\").textContent;",
            "the USDT option",
        )
        .await;
    assert!(label.as_str().unwrap().contains("available"), "{label}");
    // "Max" fills in the most that can leave with its fee, less than what is held.
    b.click("#withdraw-max").await;
    let max = b
        .wait_for_js(
            "const v = document.getElementById('amount').value; return v ? v : null;",
            "the maximum filled in",
        )
        .await;
    let max: f64 = max.as_str().unwrap().parse().unwrap();
    assert!(
        (90.0..100.0).contains(&max),
        "about $100 held, less the fee: {max}"
    );
    b.fill("#amount", "20").await;
    b.wait_for_js(
        "document.getElementById('currency').value = 'USDT'; return true;",
        "choose USDT",
    )
    .await;
    b.fill("#address", "0x742d35Cc6634C0532925a3b844Bc454e4438f44e")
        .await;
    b.click("form[action='/withdraw/review'] button[type=submit]")
        .await;
    b.wait_for_js(
        "return document.getElementById('confirm-withdrawal') ? true : null;",
        "the confirmation step",
    )
    .await;
    assert_eq!(b.text("#quote-fee").await, "1.000000 USDT");
    assert_eq!(b.text("#quote-total").await, "21.000000 USDT");
    b.click("#confirm-withdrawal").await;
    b.wait_for_path("/withdraw?msg=withdrawal-requested").await;
    assert!(b.text("#withdrawals tbody tr").await.contains("pending"));
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;

    // Staff approve it and record the payout.
    b.fill("#login", "treasurer").await;
    b.fill("#password", "Adm1n-Passphrase").await;
    b.click("form[action='/login'] button[type=submit]").await;
    b.wait_for_path("/").await;
    b.click("nav a[href='/admin/withdrawals']").await;
    b.wait_for_path("/admin/withdrawals").await;
    b.click("#queue form[action$='/approve'] button").await;
    b.wait_for_path("/admin/withdrawals?msg=decided").await;
    assert!(b.text("#queue tbody tr").await.contains("processing"));
    b.fill("#queue input[name=tx_hash]", "0xfeedbeef").await;
    b.click("#queue form[action$='/complete'] button").await;
    // The answer comes back to the same address as the approval's: wait for the page that
    // no longer offers to complete it.
    b.wait_for_js(
        "return document.readyState === 'complete' \
         && !document.querySelector(\"#queue form[action$='/complete']\");",
        "the completed withdrawal leaves the processing queue",
    )
    .await;
    b.goto(&app.url("/admin/withdrawals?status=completed"))
        .await;
    let row = b.text("#queue tbody tr").await;
    assert!(
        row.contains("completed") && row.contains("0xfeedbeef"),
        "{row}"
    );
    assert!(s.db.verify_ledger().await.unwrap().is_empty());
    b.close().await;
}

const NORTH_CSV: &str =
    "orgFullName,emissionSourceName,value\nAcme,Boiler 1,10\nAcme,Boiler 2,20\n";
const SOUTH_CSV: &str = "emissionSourceName,orgFullName,value\nS1,Org B,1\nS1,Org B,2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_then_a_bar_grouping_runs_live_in_chromium() {
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    register(&app, &b, "grouper").await;
    b.click("nav a[href='/files']").await;
    b.wait_for_path("/files").await;
    assert!(b.text("main").await.contains("This folder is empty."));

    // Several files at once through the multi-file input (one path per line).
    let disk = TempDir::new("etx-e2e-workspace");
    let loose: Vec<String> = ["east.csv", "west.csv"]
        .iter()
        .map(|name| {
            let p = disk.path().join(name);
            std::fs::write(&p, NORTH_CSV).expect("write a CSV file");
            p.to_str().expect("utf-8 temp path").to_string()
        })
        .collect();
    b.find("#files")
        .await
        .send_keys(&loose.join("\n"))
        .await
        .expect("choose two files");
    b.click("form[action^='/files/upload'] button[type=submit]")
        .await;
    b.wait_for_path("/files?msg=uploaded").await;
    let listing = b.text("table").await;
    assert!(
        listing.contains("east.csv") && listing.contains("west.csv"),
        "{listing}"
    );

    // A whole folder through the folder picker: chromedriver takes a directory's path for a
    // `webkitdirectory` input, and the files arrive with their paths inside it.
    let reports = disk.path().join("reports");
    std::fs::create_dir_all(reports.join("2024")).expect("create the folder");
    std::fs::write(reports.join("north.csv"), NORTH_CSV).expect("write north.csv");
    std::fs::write(reports.join("2024").join("south.csv"), SOUTH_CSV).expect("write south.csv");
    b.find("#folder")
        .await
        .send_keys(reports.to_str().expect("utf-8 temp path"))
        .await
        .expect("choose a folder");
    b.click("form[action^='/files/upload'] button[type=submit]")
        .await;
    b.wait_for_path("/files?msg=uploaded").await;
    let listing = b.text("table").await;
    assert!(listing.contains("reports/"), "{listing}");
    b.assert_accessible("the files page").await;

    // Group the folder's BAR data: the job page opens and follows the job live, then shows
    // its final steps.
    b.click("button[aria-label='Group BAR data of reports']")
        .await;
    b.wait_for_js(
        "return /^\\/jobs\\/[^/]+$/.test(location.pathname) ? true : null;",
        "the job page opens",
    )
    .await;
    assert_eq!(b.text("h1").await, "BAR grouping of reports");
    b.wait_for_js(
        "const s = document.querySelector('[data-job-status]'); \
         return s && s.textContent === 'completed';",
        "the job completes",
    )
    .await;
    let steps = b
        .wait_for_js(
            "const rows = document.querySelectorAll('table.data tbody tr'); \
             if (rows.length !== 2) return null; \
             return Array.from(rows).map(r => r.textContent.replace(/\\s+/g, ' ').trim());",
            "the page shows the finished steps",
        )
        .await;
    let steps: Vec<String> = serde_json::from_value(steps).unwrap();
    for s in &steps {
        assert!(s.contains("succeeded") && s.contains("manifest.csv"), "{s}");
    }
    assert!(steps[0].contains("2024/south.csv"), "{steps:?}");
    assert!(steps[1].contains("north.csv"), "{steps:?}");
    assert!(
        b.text("[data-job-message]")
            .await
            .contains("2 files grouped into 3 groups")
    );
    assert!(
        !b.exists("form[action$='/cancel']").await,
        "an ended job has no cancel"
    );
    b.assert_accessible("a job page").await;
    // The rest of the journey in the dark theme (the choice is kept across pages).
    b.click("#theme-toggle").await;
    b.wait_for_js(
        "return document.documentElement.getAttribute('data-theme') === 'dark';",
        "the dark theme is on",
    )
    .await;
    b.assert_accessible("a job page, dark theme").await;

    // The output folder holds one folder per input file.
    b.click("a[href^='/files?folder=']").await;
    b.wait_for_js(
        "return location.pathname === '/files' && location.search.startsWith('?folder=') ? true : null;",
        "the output folder opens",
    )
    .await;
    assert!(b.text("nav.crumbs").await.contains("reports BAR groups"));
    let out = b.text("table").await;
    assert!(out.contains("north/"), "{out}");

    // The jobs list shows it finished.
    b.click("nav a[href='/jobs']").await;
    b.wait_for_path("/jobs").await;
    let row = b.text("tr[data-job]").await;
    assert!(
        row.contains("reports") && row.contains("completed"),
        "{row}"
    );
    assert_eq!(
        b.attr("tr[data-job] progress", "value").await.as_deref(),
        Some("100")
    );
    b.assert_accessible("the jobs page").await;

    // The ETX platform settings page: a refused form, then a save that shows only "set".
    b.click("nav a[href='/etx']").await;
    b.wait_for_path("/etx").await;
    b.assert_accessible("the empty platform page").await;
    b.fill("#http_uri", "https://platform.example.com").await;
    b.fill("#ws_uri", "wss://platform.example.com/ws").await;
    b.fill("#etx_email", "ops@example.com").await;
    b.fill("#etx_password", "Platform-Secret-1").await;
    b.fill("#ds_key", "key with spaces").await;
    b.click("form[action='/etx'] button[type=submit]").await;
    b.wait_for_js(
        "return document.querySelector('[role=alert]') ? true : null;",
        "the refused form is shown again",
    )
    .await;
    assert!(b.text("main").await.contains("printable ASCII"));
    for secret in ["#etx_password", "#ds_key"] {
        let typed = b
            .find(secret)
            .await
            .prop("value")
            .await
            .expect("field value");
        assert_eq!(typed.as_deref(), Some(""), "{secret} starts empty again");
    }
    b.assert_accessible("the platform page with errors").await;
    b.fill("#etx_password", "Platform-Secret-1").await;
    b.fill("#ds_key", "DS-KEY-1").await;
    b.click("form[action='/etx'] button[type=submit]").await;
    b.wait_for_path("/etx?msg=etx-saved").await;
    assert_eq!(b.text("#etx-password").await, "set");
    assert_eq!(b.text("#etx-ds-key").await, "set");
    let source = b.client.source().await.expect("page source");
    assert!(!source.contains("Platform-Secret-1") && !source.contains("DS-KEY-1"));
    b.assert_accessible("the platform page").await;
    b.close().await;
}

/// A feed price, in US cents, as if the feed had just ticked it.
fn tick(app: &App, symbol: &str, cents: i64) {
    app.state.market.apply(&[etx_core::market::Tick {
        symbol: symbol.into(),
        price: cents * 1_000_000,
        at: etx_db::now_micros(),
    }]);
}

/// Quotes a market order on /trade and confirms it.
async fn market_order(app: &App, b: &Browser, side: &str, base: &str, quote: &str, amount: &str) {
    b.goto(&app.url("/trade")).await;
    b.select("#m-side", side).await;
    b.select("#m-base", base).await;
    b.select("#m-quote", quote).await;
    b.fill("#m-amount", amount).await;
    b.click("form[action='/trade/quote'] button[type=submit]")
        .await;
    b.wait_for_js(
        "return document.getElementById('confirm-order') ? true : null;",
        "the quote to confirm",
    )
    .await;
    b.click("#confirm-order").await;
    b.wait_for_path("/trade?msg=order-filled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_trade_watch_the_portfolio_and_level_up_in_chromium() {
    // The simulated feed stands still: prices move only when the test ticks them.
    let (app, b) = tokio::join!(
        App::spawn_with(|c| {
            c.market.tick_ms = 60_000;
            c.trading.sync_ms = 50;
        }),
        Browser::launch()
    );
    tick(&app, "USDT", 100);
    tick(&app, "BTC", 6_000_000);
    register(&app, &b, "trader").await;

    // Deposit $1,000 paid in USDT through the sandbox's signed webhook.
    b.goto(&app.url("/deposit")).await;
    b.fill("#amount", "1000").await;
    b.select("#pay_currency", "USDT").await;
    b.click("form[action='/deposit'] button[type=submit]").await;
    b.wait_for_js(
        "return location.pathname.startsWith('/deposit/DEP-') ? true : null;",
        "the order page opens",
    )
    .await;
    b.click("#simulate-finished").await;
    b.wait_for_js(
        "return location.search === '?msg=paid' ? true : null;",
        "the payment is credited",
    )
    .await;

    // Convert most of it to dollars, then buy BTC with USD at the quoted price.
    market_order(&app, &b, "sell", "USDT", "USD", "900").await;
    market_order(&app, &b, "buy", "BTC", "USD", "0.01").await;
    b.assert_accessible("the trade page").await;

    // A limit sell above the market rests in the open orders.
    b.select("#r-type", "limit").await;
    b.select("#r-side", "sell").await;
    b.select("#r-base", "BTC").await;
    b.select("#r-quote", "USD").await;
    b.fill("#r-amount", "0.005").await;
    b.fill("#r-price", "63000").await;
    b.click("form[action='/trade/order'] button[type=submit]")
        .await;
    b.wait_for_path("/trade?msg=order-placed").await;
    assert!(b.text("#open-orders tbody").await.contains("limit sell"));

    // An alert for when BTC reaches 62,000.
    b.goto(&app.url("/alerts")).await;
    b.select("#a-asset", "BTC").await;
    b.select("#a-kind", "above").await;
    b.fill("#a-price", "62000").await;
    b.click("form[action='/alerts'] button[type=submit]").await;
    b.wait_for_path("/alerts?msg=alert-created").await;
    assert!(b.text("#alerts tbody").await.contains("above 62000.00 USD"));
    b.assert_accessible("the alerts page").await;

    // BTC rises to 64,000 while the page is open: the alert arrives live and the limit sell
    // fills (its bid, 63,840, is above 63,000).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tick(&app, "BTC", 6_400_000);
    let toast = b
        .wait_for_js(
            "const t = [...document.querySelectorAll('#live-toasts .toast')]\
               .find(t => t.textContent.includes('price alert')); return t ? t.textContent : null;",
            "the alert's notification",
        )
        .await;
    assert_eq!(toast, "BTC price alert");
    b.reload_until(
        &app.url("/trade"),
        "const r = document.querySelector('#order-history [data-order-status]'); \
         return r && r.textContent === 'filled' && !document.getElementById('open-orders');",
        "the limit sell to fill",
    )
    .await;

    // The portfolio: the BTC left, its cost, a realised gain from the sale, an unrealised one.
    b.goto(&app.url("/portfolio")).await;
    let btc = b.text("#holdings [data-holding='BTC']").await;
    assert!(btc.contains("0.00500000"), "{btc}");
    let realised = b.text("#portfolio-realised").await;
    assert!(
        !realised.starts_with('-') && realised != "0.00",
        "a gain: {realised}"
    );
    assert!(b.exists("svg.chart path").await);
    b.assert_accessible("the portfolio page").await;

    // First deposit (50), first trade (50) and three fills: level 2, with its badges.
    b.reload_until(
        &app.url("/"),
        "return document.getElementById('level').textContent === '2';",
        "level 2",
    )
    .await;
    let badges = b.text(".achievements").await;
    assert!(
        badges.contains("✓ First deposit") && badges.contains("✓ First trade"),
        "{badges}"
    );
    assert!(app.state.db.verify_ledger().await.unwrap().is_empty());
    b.close().await;
}

/// Every page a user and a staff member can open, signed in.
const PAGES: &[&str] = &[
    "/",
    "/markets",
    "/markets/BTC",
    "/trade",
    "/portfolio",
    "/alerts",
    "/wallet",
    "/deposit",
    "/withdraw",
    "/transactions",
    "/files",
    "/jobs",
    "/etx",
    "/profile",
    "/security",
    "/profile/sessions",
    "/notifications",
    "/leaderboard",
    "/admin/users",
    "/admin/stats",
    "/admin/broadcast",
    "/admin/withdrawals",
    "/admin/aml",
    "/admin/trading",
    "/admin/audit",
    "/admin/mail",
    "/terms",
    "/no-such-page",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_and_the_menu_folds_behind_a_button() {
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    let s = &app.state;
    etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "chief@example.com",
        "chief",
        "Adm1n-Passphrase",
    )
    .await
    .expect("admin");
    b.goto(&app.url("/login")).await;
    b.fill("#login", "chief").await;
    b.fill("#password", "Adm1n-Passphrase").await;
    b.click("form[action='/login'] button[type=submit]").await;
    b.wait_for_path("/").await;

    // On a desktop the menus sit in one row: a staff member's header fits 1,280 px. Every
    // page is photographed at both sizes for a person to look over.
    let shots = screenshot_dir();
    for path in PAGES {
        b.goto(&app.url(path)).await;
        b.assert_reflows(&format!("{path} at 1280 px")).await;
        b.assert_accessible(&format!("{path} at 1280 px")).await;
        b.screenshot(&shots.join(shot_name(path, 1280))).await;
    }
    let header_height = b
        .wait_for_js(
            "return document.querySelector('.topbar').getBoundingClientRect().height;",
            "the header's height",
        )
        .await;
    assert!(
        header_height.as_f64().unwrap() < 80.0,
        "the header wraps at 1280 px: {header_height} px high"
    );

    // At 320 px nothing is wider than the screen.
    b.set_viewport(320, 800).await;
    for path in PAGES {
        b.goto(&app.url(path)).await;
        b.assert_reflows(&format!("{path} at 320 px")).await;
        b.assert_accessible(&format!("{path} at 320 px")).await;
    }
    // Phones as people hold them: 390 × 844.
    b.set_viewport(390, 844).await;
    for path in PAGES {
        b.goto(&app.url(path)).await;
        b.screenshot(&shots.join(shot_name(path, 390))).await;
    }
    b.set_viewport(320, 800).await;

    // In the dark theme too.
    b.client
        .execute(
            "localStorage.setItem('etx-theme', 'dark'); return true;",
            vec![],
        )
        .await
        .expect("choose the dark theme");
    for path in PAGES {
        b.goto(&app.url(path)).await;
        b.assert_accessible(&format!("{path} at 320 px, dark"))
            .await;
    }
    b.client
        .execute("localStorage.removeItem('etx-theme'); return true;", vec![])
        .await
        .expect("back to the light theme");

    // The navigation folds behind Menu; the button opens it and says so.
    b.goto(&app.url("/")).await;
    assert!(
        !b.visible("nav a[href='/markets']").await,
        "the menu starts folded"
    );
    assert_eq!(
        b.attr("#menu-toggle", "aria-expanded").await.as_deref(),
        Some("false")
    );
    b.click("#menu-toggle").await;
    assert_eq!(
        b.attr("#menu-toggle", "aria-expanded").await.as_deref(),
        Some("true")
    );
    b.click("nav a[href='/admin/audit']").await;
    b.wait_for_path("/admin/audit").await;
    b.assert_accessible("the audit page at 320 px").await;
    // A user's page, opened from the list.
    b.goto(&app.url("/admin/users")).await;
    b.click("#users a").await;
    b.wait_for_js(
        "return location.pathname.startsWith('/admin/users/') ? true : null;",
        "a user's page",
    )
    .await;
    b.assert_reflows("a user's page at 320 px").await;
    b.assert_accessible("a user's page at 320 px").await;

    // Signed out, the pages a visitor sees.
    b.click("#menu-toggle").await;
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;
    for path in [
        "/login",
        "/register",
        "/forgot-password",
        "/terms",
        "/offline",
        "/no-such-page",
    ] {
        b.goto(&app.url(path)).await;
        b.assert_reflows(&format!("{path} signed out at 320 px"))
            .await;
        b.assert_accessible(&format!("{path} signed out at 320 px"))
            .await;
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_money_by_keyboard_alone_goes_through_a_confirmation_in_chromium() {
    use fantoccini::key::Key;
    let (app, b) = tokio::join!(App::spawn(), Browser::launch());
    let s = &app.state;
    let treasurer = etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "treasurer@example.com",
        "treasurer",
        "Adm1n-Passphrase",
    )
    .await
    .expect("admin");
    etx_core::accounts::create_admin(
        &s.db,
        &s.hasher,
        "friend@example.com",
        "friend",
        "Adm1n-Passphrase",
    )
    .await
    .expect("recipient");
    register(&app, &b, "keyboarder").await;
    let me =
        s.db.user_by_login("keyboarder")
            .await
            .unwrap()
            .expect("registered");
    etx_core::wallet::adjust(
        s,
        &treasurer,
        "fund-keyboarder",
        &serde_json::value::to_raw_value(
            &json!({"user_id": me.id, "currency": "USD", "amount": "50.00", "reason": "float"}),
        )
        .unwrap(),
    )
    .await
    .expect("fund the sender");

    // The form, typed and submitted with Enter.
    b.goto(&app.url("/wallet")).await;
    assert!(
        b.tab_to("#recipient").await,
        "focus is visible on the recipient field"
    );
    b.fill("#recipient", "friend").await;
    b.fill("#amount", "12.34").await;
    b.press(Key::Enter).await;
    b.wait_for_js(
        "return document.getElementById('transfer-review') ? true : null;",
        "the review of the transfer",
    )
    .await;
    assert!(b.text("h2").await.contains("Send 12.34 USD to friend?"));
    b.assert_accessible("the transfer review").await;
    // Tab to the Send button and press Enter.
    assert!(
        b.tab_to("#confirm-transfer").await,
        "focus is visible on the Send button"
    );
    b.press(Key::Enter).await;
    b.wait_for_js(
        "return location.search === '?msg=sent' ? true : null;",
        "the transfer is sent",
    )
    .await;
    assert_eq!(b.text("[data-asset='USD']").await, "37.66");

    // Signing in by keyboard: Tab to each field, type, Enter.
    b.click("form[action='/logout'] button[type=submit]").await;
    b.wait_for_path("/login").await;
    assert!(
        b.tab_to("#login").await,
        "focus is visible on the login field"
    );
    b.fill("#login", "treasurer").await;
    assert!(
        b.tab_to("#password").await,
        "focus is visible on the password"
    );
    b.fill("#password", "Adm1n-Passphrase").await;
    b.press(Key::Enter).await;
    b.wait_for_path("/").await;

    // A staff action by keyboard: suspend the account, with a reason.
    b.goto(&app.url(&format!("/admin/users/{}", me.id))).await;
    assert!(b.tab_to("#action").await, "focus is visible on the action");
    b.find("#action")
        .await
        .send_keys("Suspend")
        .await
        .expect("choose by typing");
    assert!(b.tab_to("#reason").await, "focus is visible on the reason");
    b.fill("#reason", "card reported stolen").await;
    assert!(
        b.tab_to("form[action^='/admin/users/'] button[type=submit]")
            .await,
        "focus is visible on Apply"
    );
    b.press(Key::Enter).await;
    b.wait_for_js(
        "return location.search.startsWith('?msg=') ? location.search : null;",
        "the change to be applied",
    )
    .await;
    let suspended = s.db.user_by_login("keyboarder").await.unwrap().unwrap();
    assert!(!suspended.is_active, "the account is suspended");
    b.close().await;
}

/// `d{1,3}(,ddd)+.dd`: a price of a thousand dollars or more as the pages write it.
fn regex_like_price(text: &str) -> bool {
    let Some((int, frac)) = text.split_once('.') else {
        return false;
    };
    let groups: Vec<&str> = int.split(',').collect();
    frac.len() == 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && groups.len() >= 2
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the page screenshots go: the build's own scratch directory under the target dir
/// (`target/tmp/screenshots`), kept after the run for a person to look through.
fn screenshot_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// `/admin/users` at 390 px → `admin-users-390.png`.
fn shot_name(path: &str, width: u32) -> String {
    let name = path.trim_matches('/').replace('/', "-");
    let name = if name.is_empty() { "home".into() } else { name };
    format!("{name}-{width}.png")
}
