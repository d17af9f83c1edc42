//! What a workspace entry may be called, and what its bytes are: names are checked and
//! normalised here, and a file's type is read from its first bytes, never taken from the client.

use crate::error::CoreError;
use unicode_normalization::UnicodeNormalization;

/// Longest name, in bytes (most file systems' limit).
const MAX_NAME_BYTES: usize = 255;

/// Names Windows refuses for a file whatever the extension; refused here too, so a workspace
/// can be downloaded onto any system.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// One path segment as stored: NFC-normalised, surrounding spaces removed; refused when empty,
/// `.` or `..`, too long, or holding a separator, a control character or a reserved name.
pub fn entry_name(raw: &str, field: &str) -> Result<String, CoreError> {
    let name: String = raw.nfc().collect::<String>().trim().to_string();
    let bad = |why: &str| Err(CoreError::field(field, why));
    if name.is_empty() || name == "." || name == ".." {
        return bad("must be a name, not empty, . or ..");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad("must be at most 255 bytes");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return bad("must not contain / or \\ or control characters");
    }
    let stem = name.split('.').next().unwrap_or("").trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return bad("is a name reserved by operating systems");
    }
    if name.ends_with('.') {
        return bad("must not end with a dot");
    }
    Ok(name)
}

/// A relative path as a browser sends it for a folder upload (`photos/2024/a.png`): its
/// checked segments, at most `max_depth` of them.
pub fn relative_path(raw: &str, max_depth: usize) -> Result<Vec<String>, CoreError> {
    let segments: Vec<&str> = raw.split(['/', '\\']).filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Err(CoreError::field("file", "needs a file name"));
    }
    if segments.len() > max_depth {
        return Err(CoreError::field(
            "file",
            &format!("the path is deeper than {max_depth} folders"),
        ));
    }
    segments.iter().map(|s| entry_name(s, "file")).collect()
}

/// The content type of a file, from its first bytes (and, for text, its extension). Markup
/// (HTML, SVG, XML) is stored as `text/plain`, so nothing uploaded is ever served as a page.
pub fn sniff(head: &[u8], name: &str) -> &'static str {
    const MAGIC: [(&[u8], &str); 7] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return t;
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    if !is_text(head) {
        return "application/octet-stream";
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        _ => "text/plain",
    }
}

/// UTF-8 without NUL bytes; a character cut at the end of `head` still counts.
fn is_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Types a browser may show in place (images and PDF, which render no script of ours); every
/// other file is downloaded as an attachment.
pub fn shown_inline(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "application/pdf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_dangerous_ones_refused() {
        assert_eq!(entry_name("  report.csv ", "name").unwrap(), "report.csv");
        // "é" as e + combining accent becomes the single composed character.
        assert_eq!(
            entry_name("cafe\u{301}.txt", "name").unwrap(),
            "caf\u{e9}.txt"
        );
        for bad in [
            "",
            " ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "x\u{0}y",
            "tab\there",
            "CON",
            "con.txt",
            "LPT1.csv",
            "ends.",
        ] {
            assert!(entry_name(bad, "name").is_err(), "{bad:?}");
        }
        assert!(entry_name(&"a".repeat(256), "name").is_err());
        assert!(entry_name(&"a".repeat(255), "name").is_ok());
        assert!(entry_name("console.log", "name").is_ok());
    }

    #[test]
    fn relative_paths_keep_their_folders_and_refuse_escapes() {
        assert_eq!(
            relative_path("data/2024/bar.csv", 32).unwrap(),
            ["data", "2024", "bar.csv"]
        );
        assert_eq!(relative_path("/a//b.csv", 32).unwrap(), ["a", "b.csv"]);
        assert_eq!(relative_path("a\\b.csv", 32).unwrap(), ["a", "b.csv"]);
        assert!(relative_path("../etc/passwd", 32).is_err());
        assert!(relative_path("a/./b", 32).is_err());
        assert!(relative_path("", 32).is_err());
        assert!(relative_path("a/b/c/d", 3).is_err());
    }

    #[test]
    fn types_come_from_the_bytes_not_the_name() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest", "x.csv"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7", "x.txt"), "application/pdf");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", "x"), "image/webp");
        assert_eq!(sniff(b"a,b\n1,2\n", "Data.CSV"), "text/csv");
        assert_eq!(sniff(b"{\"a\":1}", "x.json"), "application/json");
        assert_eq!(sniff(b"<svg onload=alert(1)>", "x.svg"), "text/plain");
        assert_eq!(sniff(b"<html><script>", "x.html"), "text/plain");
        assert_eq!(sniff(b"\x00\x01\x02", "x.csv"), "application/octet-stream");
        // A multi-byte character cut by the end of the sample is still text.
        assert_eq!(
            sniff("naïve".as_bytes().split_at(3).0, "x.txt"),
            "text/plain"
        );
        assert!(shown_inline("application/pdf") && !shown_inline("text/plain"));
    }
}
