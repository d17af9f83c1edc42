//! What the audit trail records: every state-changing action has one name here.

crate::names! {
    /// An audit record's action, stored as its dotted name.
    pub enum AuditAction {
        Register = "auth.register",
        Login = "auth.login",
        LoginFailed = "auth.login_failed",
        LoginChallenge = "auth.login_challenge",
        Refresh = "auth.refresh",
        Logout = "auth.logout",
        SessionRevoke = "auth.session_revoke",
        PasswordChange = "auth.password_change",
        PasswordCheckFailed = "auth.password_check_failed",
        PasswordResetRequested = "auth.password_reset_requested",
        PasswordReset = "auth.password_reset",
        VerificationSent = "auth.verification_sent",
        EmailVerified = "auth.email_verified",
        TwoFactorSetup = "auth.2fa_setup",
        TwoFactorEnable = "auth.2fa_enable",
        TwoFactorDisable = "auth.2fa_disable",
        TwoFactorFailed = "auth.2fa_failed",
        TwoFactorBackupCodes = "auth.2fa_backup_codes",
        ProfileUpdate = "user.profile_update",
        AvatarSet = "user.avatar_set",
        AvatarRemove = "user.avatar_remove",
        AdminUpdate = "user.admin_update",
        UserDelete = "user.delete",
        NotificationRead = "notification.read",
        Announcement = "realtime.announcement",
        Transfer = "transfer.p2p",
        OrderPlace = "order.place",
        OrderCancel = "order.cancel",
        TradingSettings = "trading.settings",
        AlertCreate = "alert.create",
        AlertUpdate = "alert.update",
        AlertDelete = "alert.delete",
        Adjust = "wallet.adjust",
        AdjustRequest = "wallet.adjust.request",
        AdjustApprove = "wallet.adjust.approve",
        AdjustReject = "wallet.adjust.reject",
        DepositCreate = "deposit.create",
        DepositCredit = "deposit.credit",
        DepositSimulate = "deposit.simulate",
        DepositSuspense = "deposit.suspense",
        SuspenseCredit = "suspense.credit",
        SuspenseRefund = "suspense.refund",
        WithdrawalRequest = "withdrawal.request",
        WithdrawalCancel = "withdrawal.cancel",
        WithdrawalApprove = "withdrawal.approve",
        WithdrawalReject = "withdrawal.reject",
        WithdrawalComplete = "withdrawal.complete",
        AmlRelease = "aml.release",
        AmlReject = "aml.reject",
        FilesUpload = "files.upload",
        FolderCreate = "files.folder_create",
        FileUpdate = "files.update",
        FileDelete = "files.delete",
        FilesInfected = "files.infected",
        FilesStaffRead = "files.staff_read",
        FilesStaffDownload = "files.staff_download",
        JobStart = "jobs.start",
        JobCancel = "jobs.cancel",
        JobRetry = "jobs.retry",
        EtxConfigUpdate = "etx.config_update",
        EtxConfigDelete = "etx.config_delete",
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;
    use std::collections::HashSet;

    #[test]
    fn every_action_has_its_own_dotted_name_that_reads_back() {
        let mut seen = HashSet::new();
        for a in AuditAction::ALL {
            let name = a.as_str();
            assert!(seen.insert(name), "{name} used twice");
            assert!(
                name.contains('.') && name == name.to_ascii_lowercase(),
                "{name}"
            );
            assert_eq!(AuditAction::parse(name), Some(*a));
            assert_eq!(a.to_string(), name);
        }
        assert_eq!(AuditAction::parse("auth.LOGIN"), None);
    }
}
