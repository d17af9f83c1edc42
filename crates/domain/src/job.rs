//! Processing jobs: what a job does and where it is.

crate::names! {
    /// What a job does with its input.
    pub enum JobKind {
        /// SPEC §7: every CSV of a file or folder split into one CSV per emission source.
        BarGrouping = "bar_grouping",
        /// A file uploaded to the ETX platform, then imported page by page.
        EsDataImport = "es_data_import",
        /// The organisation structure created from a CSV file, in an optional tenant.
        OrgStructure = "org_structure",
        /// A new tenant account on the platform (admins).
        CreateTenant = "create_tenant",
        /// The platform's scheme generation for the selected organisation.
        SchemeGeneration = "scheme_generation",
        /// The ETX version recorded on the platform (admins).
        SetVersion = "set_version",
    }
}

crate::names! {
    /// Where a job is. `Queued` waits for a worker; `Running` is held by one worker's lease;
    /// the last three are final. `Completed` only when every step succeeded.
    pub enum JobStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

crate::names! {
    /// One step of a job. `Interrupted`: its worker stopped before it ended (the job was then
    /// run again or failed).
    pub enum StepStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
}
