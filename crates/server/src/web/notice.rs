//! The one-line notice a page shows after a redirect (`?msg=saved`).

use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    pub msg: Option<String>,
}

/// Fixed notices chosen by key, so nothing from the URL is ever echoed into the page.
pub fn notice(q: &NoticeQuery) -> Option<&'static str> {
    match q.msg.as_deref()? {
        "welcome" => Some("Welcome to ETX Processor! Your account is ready."),
        "saved" => Some("Your profile was saved."),
        "avatar" => Some("Your avatar was updated."),
        "avatar-removed" => Some("Your avatar was removed."),
        "password" => Some("Your password was changed. Other sessions were signed out."),
        "logged-out" => Some("You have been logged out."),
        "sent" => Some("Money sent."),
        "withdrawal-requested" => Some("Withdrawal requested. Staff will review it shortly."),
        "withdrawal-held" => Some("Withdrawal requested and held for a compliance review."),
        "withdrawal-cancelled" => {
            Some("Withdrawal cancelled; the amount and fee are back in your wallet.")
        }
        "paid" => Some("Payment notification sent through the sandbox webhook."),
        "decided" => Some("Decision recorded."),
        "session-ended" => Some("That session was signed out."),
        "reset" => Some("Your password was changed. Log in with the new one."),
        "uploaded" => Some("Uploaded."),
        "folder-created" => Some("Folder created."),
        "deleted" => Some("Deleted."),
        "job-started" => Some("Job started. Progress updates here as it runs."),
        "job-cancel" => Some("Cancel requested."),
        "etx-saved" => Some("Your ETX platform settings were saved."),
        "etx-removed" => Some("Your ETX platform settings were removed."),
        "order-filled" => Some("Order filled."),
        "order-placed" => Some("Order placed. It fills when the price reaches it."),
        "order-cancelled" => Some("Order cancelled; what it held is back in your wallet."),
        "order-ended" => Some("That order had already ended."),
        "all-read" => Some("All notifications are marked read."),
        "announced" => Some("Sent to everyone connected."),
        "user-updated" => Some("The account was changed."),
        "user-signed-out" => Some("The account was signed out of every session."),
        "user-deleted" => Some("The account was deleted."),
        "alert-created" => Some("Alert created."),
        "alert-updated" => Some("Alert updated."),
        "saved-pair" => Some("Pair settings saved."),
        _ => None,
    }
}
