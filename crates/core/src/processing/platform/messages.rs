//! The WebSocket messages: how each request is written and how an answer is read. Pure
//! functions, so the shapes are tested without a connection.
//!
//! # Requests
//!
//! Each request is one JSON text message, an object with one key naming the operation, whose
//! value carries the message id `mid` (unique within the session) and the operation's fields:
//!
//! ```text
//! {"UploadBase64Imp":{"mid":"3","fileName":"data.csv","content":"<base64>"}}
//! {"GetOrgs":{"mid":"4"}}
//! {"SetOrg":{"mid":"5","id":42}}
//! {"CreateOrgStructureFromCsv":{"mid":"6","data":"<csv>"}}
//! {"CreateTenantAccount":{"mid":"7","Name":"Acme","AutoCreateDatabase":true}}
//! {"SetVersion":{"mid":"8","etxVersion":"1.4","releaseDate":"2026-12-01","description":"…"}}
//! {"PyRequest":{"mid":"9","app":"etx_batch","value":{"Input":{"action":"es_data_importer",
//!     "data_file_path":"…","offset":0,"nrows":500,"tracking":true}}}}
//! {"PyRequest":{"mid":"10","app":"genie_scheme_coordinator_app","value":{"Input":{
//!     "action":"scheme_up_organization", …parameters}}}}
//! ```
//!
//! # Answers
//!
//! An answer is either wrapped the same way (`{"UploadBase64Imp":{"mid":"3","status":…}}`) or
//! flat (`{"mid":"3","status":…}`); its *body* is the wrapped object, or the message itself.
//! The body's `mid` (a string or a number; compared as text) names the request answered.
//! It succeeds when its `status` is `true`, the number 200, or the text `success` or `ok` in
//! any case; anything else, a missing `status` included, fails with the platform's message:
//! the body's `message` or `Message` when it is text, else its `error`.

use base64::Engine;
use serde_json::{Value, json};
use std::io::Read;

use super::PlatformError;

/// `{op: {"mid": mid, …fields}}` as text. `fields` is an object.
pub fn request(op: &str, mid: &str, fields: Value) -> String {
    let mut body = serde_json::Map::new();
    body.insert("mid".into(), Value::String(mid.into()));
    if let Value::Object(f) = fields {
        body.extend(f);
    }
    json!({ op: body }).to_string()
}

/// A `PyRequest` to `app` with `input` as `value.Input`.
pub fn py_request(mid: &str, app: &str, input: Value) -> String {
    request(
        "PyRequest",
        mid,
        json!({"app": app, "value": {"Input": input}}),
    )
}

/// The `Input` of one page of the ES data import.
pub fn es_import_input(data_file_path: &str, offset: u64, nrows: u64) -> Value {
    json!({
        "action": "es_data_importer",
        "data_file_path": data_file_path,
        "offset": offset,
        "nrows": nrows,
        "tracking": true,
    })
}

/// The `Input` of `scheme_up_organization`: the action plus the caller's parameters (an object;
/// its own `action`, if any, is overridden).
pub fn scheme_up_input(params: Value) -> Value {
    let mut input = match params {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    input.insert("action".into(), json!("scheme_up_organization"));
    Value::Object(input)
}

/// The message a fresh session receives first is the platform's `SetOrg` script message. The
/// client acknowledges it with `{"SetOrg":{"mid":<its mid>}}`, echoing the platform's `mid` (or
/// `fallback_mid` when it sent none); no answer to the acknowledgement is awaited.
pub fn set_org_ack(first: &Value, fallback_mid: &str) -> Result<String, String> {
    let body = first
        .get("SetOrg")
        .ok_or("the first message is not SetOrg")?;
    let mid = body
        .get("mid")
        .or_else(|| first.get("mid"))
        .and_then(mid_text)
        .unwrap_or_else(|| fallback_mid.to_string());
    Ok(json!({"SetOrg": {"mid": mid}}).to_string())
}

/// A message id as text: `"7"` and `7` are the same id.
pub fn mid_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The body of an answer: the wrapped object of a one-key message, or the message itself.
pub fn body(v: &Value) -> &Value {
    match v.as_object() {
        Some(m) if m.len() == 1 && !m.contains_key("mid") => match m.values().next() {
            Some(inner @ Value::Object(_)) => inner,
            _ => v,
        },
        _ => v,
    }
}

/// The request an answer belongs to.
pub fn answer_mid(v: &Value) -> Option<String> {
    body(v)
        .get("mid")
        .or_else(|| v.get("mid"))
        .and_then(mid_text)
}

pub fn is_success(status: &Value) -> bool {
    match status {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() == Some(200),
        Value::String(s) => {
            let s = s.trim();
            s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("ok")
        }
        _ => false,
    }
}

/// What the platform said about a failure, for the user.
pub fn platform_message(body: &Value) -> String {
    ["message", "Message", "error", "Error"]
        .iter()
        .find_map(|k| match body.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Object(o)) => o.get("message").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| "no message".into())
}

/// The answer's body when its status is success; the platform's message otherwise.
pub fn check_answer(what: &str, answer: &Value) -> Result<Value, PlatformError> {
    let b = body(answer);
    let status = b
        .get("status")
        .or_else(|| answer.get("status"))
        .unwrap_or(&Value::Null);
    if is_success(status) {
        Ok(b.clone())
    } else {
        let mut message = platform_message(b);
        if status.is_null() && message == "no message" {
            message = "the answer carries no status".into();
        }
        Err(PlatformError::Failed {
            what: what.into(),
            message,
        })
    }
}

fn protocol(what: &str, detail: impl Into<String>) -> PlatformError {
    PlatformError::Protocol {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Where an upload landed: the body's `Message.FilePath`.
pub fn uploaded_path(body: &Value) -> Result<String, PlatformError> {
    body.pointer("/Message/FilePath")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| protocol("UploadBase64Imp", "it has no Message.FilePath"))
}

/// What one page of the ES data import reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPage {
    /// Rows imported by this page.
    pub rows: u64,
    /// Rows in the whole file, when the platform says.
    pub total: Option<u64>,
    /// The platform says there is nothing after this page.
    pub done: bool,
}

/// Reads a page's answer. Assumed shape (the origin system's answer is not documented): the
/// body's `Message` (or, lacking it, the body) holds `rows`, the number of rows this page
/// imported, and optionally `total` (rows in the file) and `done` (no more pages). A page is
/// the last when `done` is true, when it imported fewer rows than were asked for, or when the
/// rows imported so far reach `total`.
pub fn import_page(body: &Value) -> Result<ImportPage, PlatformError> {
    let what = "the ES data import";
    let m = match body.get("Message") {
        Some(m @ Value::Object(_)) => m,
        _ => body,
    };
    let rows = m
        .get("rows")
        .and_then(Value::as_u64)
        .ok_or_else(|| protocol(what, "it does not say how many rows were imported (rows)"))?;
    Ok(ImportPage {
        rows,
        total: m.get("total").and_then(Value::as_u64),
        done: m.get("done").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The id of the organisation called `name` in a `GetOrgs` answer: the body's `Message` is the
/// list of organisations (`[{"id","name"},…]`), or an object holding it as `orgs`/`Orgs`. The
/// name must be equal (surrounding white space aside); none or several is an error.
pub fn org_id(body: &Value, name: &str) -> Result<Value, PlatformError> {
    let what = "GetOrgs";
    let m = body.get("Message").unwrap_or(&Value::Null);
    let list = m
        .as_array()
        .or_else(|| m.get("orgs").and_then(Value::as_array))
        .or_else(|| m.get("Orgs").and_then(Value::as_array))
        .or_else(|| body.get("orgs").and_then(Value::as_array))
        .ok_or_else(|| protocol(what, "it has no list of organisations (Message)"))?;
    let wanted = name.trim();
    let found: Vec<&Value> = list
        .iter()
        .filter(|o| o.get("name").and_then(Value::as_str).map(str::trim) == Some(wanted))
        .collect();
    match found.as_slice() {
        [] => Err(PlatformError::NotFound(format!(
            "the platform has no organisation named \"{wanted}\""
        ))),
        [one] => match one.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => Ok(id.clone()),
            _ => Err(protocol(
                what,
                format!("organisation \"{wanted}\" has no id"),
            )),
        },
        several => Err(PlatformError::Ambiguous(format!(
            "the platform has {} organisations named \"{wanted}\"",
            several.len()
        ))),
    }
}

/// Bytes read from the file per encoded chunk: a multiple of 3, so no chunk but the last is
/// padded and the chunks' encodings join into the encoding of the whole file.
const UPLOAD_CHUNK: usize = 3 * 64 * 1024;

/// `{"UploadBase64Imp":{"mid","fileName","content"}}` with the file's bytes encoded straight
/// into the message as they are read, chunk by chunk: the file is never held whole, and the
/// base64 text exists once, inside the message. Blocking: run it on a blocking thread.
pub fn upload_message(
    mid: &str,
    file_name: &str,
    path: &std::path::Path,
) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let head = format!(
        "{{\"UploadBase64Imp\":{{\"mid\":{},\"fileName\":{},\"content\":\"",
        Value::String(mid.into()),
        Value::String(file_name.into()),
    );
    let mut out = String::with_capacity(head.len() + len.div_ceil(3) * 4 + 3);
    out.push_str(&head);
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    loop {
        // Fill the whole chunk (reads may return less) so only the last one is padded.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        base64::engine::general_purpose::STANDARD.encode_string(&buf[..filled], &mut out);
        if filled < buf.len() {
            break;
        }
    }
    out.push_str("\"}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_mid_inside_the_operation() {
        let m: Value = serde_json::from_str(&request(
            "CreateTenantAccount",
            "7",
            json!({"Name": "Acme", "AutoCreateDatabase": true}),
        ))
        .unwrap();
        assert_eq!(
            m,
            json!({"CreateTenantAccount": {"mid": "7", "Name": "Acme", "AutoCreateDatabase": true}})
        );
        let p: Value = serde_json::from_str(&py_request(
            "9",
            "etx_batch",
            es_import_input("/in/a.csv", 500, 250),
        ))
        .unwrap();
        assert_eq!(
            p,
            json!({"PyRequest": {"mid": "9", "app": "etx_batch", "value": {"Input": {
                "action": "es_data_importer", "data_file_path": "/in/a.csv",
                "offset": 500, "nrows": 250, "tracking": true}}}})
        );
        assert_eq!(
            scheme_up_input(json!({"org": "Acme", "action": "other"})),
            json!({"org": "Acme", "action": "scheme_up_organization"})
        );
    }

    #[test]
    fn the_set_org_script_message_is_acknowledged_with_its_mid() {
        let ack = set_org_ack(&json!({"SetOrg": {"mid": 41, "script": "x"}}), "1").unwrap();
        assert_eq!(ack, r#"{"SetOrg":{"mid":"41"}}"#);
        let ack = set_org_ack(&json!({"SetOrg": {}}), "1").unwrap();
        assert_eq!(ack, r#"{"SetOrg":{"mid":"1"}}"#);
        assert!(set_org_ack(&json!({"Hello": {}}), "1").is_err());
    }

    #[test]
    fn answers_are_read_wrapped_or_flat() {
        let wrapped = json!({"GetOrgs": {"mid": 4, "status": "Success", "Message": []}});
        assert_eq!(answer_mid(&wrapped).as_deref(), Some("4"));
        assert!(check_answer("GetOrgs", &wrapped).is_ok());
        let flat = json!({"mid": "5", "status": true, "Message": {"FilePath": "/x"}});
        assert_eq!(answer_mid(&flat).as_deref(), Some("5"));
        assert_eq!(
            uploaded_path(&check_answer("UploadBase64Imp", &flat).unwrap()).unwrap(),
            "/x"
        );
    }

    #[test]
    fn a_status_other_than_success_fails_with_the_platform_message() {
        for status in [json!("ok"), json!("SUCCESS"), json!(true), json!(200)] {
            assert!(is_success(&status), "{status}");
        }
        for status in [
            json!("error"),
            json!(false),
            json!(500),
            json!(null),
            json!("succeeded"),
        ] {
            assert!(!is_success(&status), "{status}");
        }
        let e = check_answer(
            "SetVersion",
            &json!({"SetVersion": {"mid": "8", "status": "error", "message": "version exists"}}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the platform reported a failure for SetVersion: version exists"
        );
        let e = check_answer("GetOrgs", &json!({"GetOrgs": {"mid": "8"}})).unwrap_err();
        assert!(
            e.to_string().ends_with("the answer carries no status"),
            "{e}"
        );
    }

    #[test]
    fn organisations_are_found_by_exact_name() {
        let b = json!({"Message": [
            {"id": 1, "name": "Acme"}, {"id": 2, "name": "Acme Two"},
            {"id": 3, "name": "Twin"}, {"id": 4, "name": "Twin"}]});
        assert_eq!(org_id(&b, "Acme").unwrap(), json!(1));
        assert_eq!(org_id(&b, " Acme Two ").unwrap(), json!(2));
        assert!(matches!(org_id(&b, "Acm"), Err(PlatformError::NotFound(_))));
        assert!(matches!(
            org_id(&b, "Twin"),
            Err(PlatformError::Ambiguous(_))
        ));
        let nested = json!({"Message": {"orgs": [{"id": "o-9", "name": "Acme"}]}});
        assert_eq!(org_id(&nested, "Acme").unwrap(), json!("o-9"));
    }

    #[test]
    fn import_pages_say_how_many_rows_they_took() {
        let p = import_page(&json!({"Message": {"rows": 500, "total": 1200}})).unwrap();
        assert_eq!(
            p,
            ImportPage {
                rows: 500,
                total: Some(1200),
                done: false
            }
        );
        assert!(import_page(&json!({"rows": 3, "done": true})).unwrap().done);
        assert!(import_page(&json!({"Message": {}})).is_err());
    }

    #[test]
    fn an_upload_encodes_the_whole_file_in_chunks() {
        let dir = std::env::temp_dir().join(format!("etx-upload-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        // Lengths around the chunk size: one short of it, exact, one over, two chunks and a bit.
        for len in [
            0,
            1,
            UPLOAD_CHUNK - 1,
            UPLOAD_CHUNK,
            UPLOAD_CHUNK + 1,
            2 * UPLOAD_CHUNK + 2,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            let text = upload_message("3", "a \"b\".csv", &path).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["UploadBase64Imp"]["mid"], "3");
            assert_eq!(v["UploadBase64Imp"]["fileName"], "a \"b\".csv");
            let content = v["UploadBase64Imp"]["content"].as_str().unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(content)
                .unwrap();
            assert_eq!(decoded, bytes, "length {len}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
