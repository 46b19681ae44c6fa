//! N's third rendezvous channel, Amazon SQS (docs/sqs.md): the pure part.
//!
//! A censored client drops its offer (a 1.0 client message) into the
//! broker's queue with a `ClientID` message attribute and reads the broker's
//! reply from a queue of its own, `snowflake-client-<ClientID>`. The broker
//! long-polls its queue, runs each offer through the normal client logic,
//! creates the client's queue, sends the reply there and deletes the
//! message; it also deletes client queues idle for more than 2 minutes.
//!
//! This module builds and signs the SQS calls (AWS's JSON protocol), reads
//! their replies and decides what to do with each message; the Durable
//! Object in `src/worker/sqs.rs` only sends them.

pub mod sigv4;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sigv4::{Credentials, Scope};

/// Client queues are named this, then the client's id.
pub const CLIENT_QUEUE_PREFIX: &str = "snowflake-client-";
/// As N: 10 messages per receive.
pub const MAX_MESSAGES: u32 = 10;
/// How long one receive waits for a message (SQS allows up to 20 s; N 15).
pub const WAIT_SECONDS: u32 = 15;
/// The broker's queue keeps an offer 5 minutes at most, as N creates it.
pub const RETENTION_SECONDS: u32 = 300;
/// Client queues unchanged this long are deleted, as N does.
pub const CLIENT_QUEUE_IDLE_MS: u64 = 120_000;
/// How often client queues are swept, as N.
pub const CLEANUP_EVERY_MS: u64 = 30_000;
/// A queue name is at most 80 characters.
const MAX_QUEUE_NAME: usize = 80;

/// Where the broker's queue is and how to reach the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The queue's URL, as the calls name it.
    pub url: String,
    /// The queue's name (the last path segment).
    pub name: String,
    /// The API endpoint calls are posted to (`https://sqs.<region>.amazonaws.com`
    /// unless `SQS_ENDPOINT` says otherwise), without a trailing `/`.
    pub endpoint: String,
    pub region: String,
}

impl Queue {
    /// `SQS_QUEUE_URL` (and `SQS_ENDPOINT`, if set). The region comes from
    /// the URL's host, `sqs.<region>.amazonaws.com` (or the older
    /// `<region>.queue.amazonaws.com`).
    pub fn parse(url: &str, endpoint: Option<&str>) -> Result<Queue, String> {
        let url = url.trim();
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?} is not an https:// queue URL"))?;
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?} has no /<account>/<queue name> path"))?;
        let region = host
            .strip_prefix("sqs.")
            .and_then(|h| h.strip_suffix(".amazonaws.com"))
            .or_else(|| host.strip_suffix(".queue.amazonaws.com"))
            .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .ok_or_else(|| {
                format!("{host:?} is not an SQS host (sqs.<region>.amazonaws.com), so it names no region")
            })?;
        let mut segments = path.split('/');
        let (account, name) = match (segments.next(), segments.next(), segments.next()) {
            (Some(a), Some(n), None) => (a, n),
            _ => {
                return Err(format!(
                    "{url:?} is not https://<host>/<account>/<queue name>"
                ))
            }
        };
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{account:?} is not an AWS account number"));
        }
        if !is_queue_name(name) {
            return Err(format!(
                "{name:?} is not a queue name (1-80 letters, digits, - or _)"
            ));
        }
        let endpoint = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            None => format!("https://{host}"),
            Some(e) if e.starts_with("https://") || e.starts_with("http://") => {
                e.trim_end_matches('/').to_string()
            }
            Some(e) => return Err(format!("SQS_ENDPOINT {e:?} is not an http(s):// URL")),
        };
        Ok(Queue {
            url: url.to_string(),
            name: name.to_string(),
            endpoint,
            region: region.to_string(),
        })
    }

    /// The `Host` of the endpoint, as it is signed.
    pub fn endpoint_host(&self) -> &str {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }
}

fn is_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One SQS call: its operation and its JSON input.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub operation: &'static str,
    pub input: Value,
}

impl Call {
    /// Creates the queue if it is missing (SQS returns the existing one's URL).
    pub fn create_queue(name: &str, retention_seconds: Option<u32>) -> Call {
        let mut input = json!({ "QueueName": name });
        if let (Some(s), Some(map)) = (retention_seconds, input.as_object_mut()) {
            map.insert(
                "Attributes".into(),
                json!({ "MessageRetentionPeriod": s.to_string() }),
            );
        }
        Call {
            operation: "CreateQueue",
            input,
        }
    }

    pub fn receive(queue_url: &str, wait_seconds: u32) -> Call {
        Call {
            operation: "ReceiveMessage",
            input: json!({
                "QueueUrl": queue_url,
                "MaxNumberOfMessages": MAX_MESSAGES,
                "WaitTimeSeconds": wait_seconds,
                "MessageAttributeNames": ["All"],
            }),
        }
    }

    pub fn send(queue_url: &str, body: &str) -> Call {
        Call {
            operation: "SendMessage",
            input: json!({ "QueueUrl": queue_url, "MessageBody": body }),
        }
    }

    pub fn delete_message(queue_url: &str, receipt_handle: &str) -> Call {
        Call {
            operation: "DeleteMessage",
            input: json!({ "QueueUrl": queue_url, "ReceiptHandle": receipt_handle }),
        }
    }

    pub fn list_client_queues(next_token: Option<&str>) -> Call {
        let mut input = json!({ "QueueNamePrefix": CLIENT_QUEUE_PREFIX, "MaxResults": 1000 });
        if let (Some(t), Some(map)) = (next_token, input.as_object_mut()) {
            map.insert("NextToken".into(), json!(t));
        }
        Call {
            operation: "ListQueues",
            input,
        }
    }

    pub fn last_modified(queue_url: &str) -> Call {
        Call {
            operation: "GetQueueAttributes",
            input: json!({ "QueueUrl": queue_url, "AttributeNames": ["LastModifiedTimestamp"] }),
        }
    }

    pub fn delete_queue(queue_url: &str) -> Call {
        Call {
            operation: "DeleteQueue",
            input: json!({ "QueueUrl": queue_url }),
        }
    }

    /// The signed HTTP request for this call at `now_ms`.
    pub fn signed(&self, queue: &Queue, creds: &Credentials, now_ms: u64) -> HttpRequest {
        let body = self.input.to_string();
        let target = format!("AmazonSQS.{}", self.operation);
        let amz_date = sigv4::amz_date(now_ms);
        let headers = [
            ("content-type", JSON_CONTENT_TYPE),
            ("x-amz-target", target.as_str()),
        ];
        let request = sigv4::Request {
            method: "POST",
            host: queue.endpoint_host(),
            path: "/",
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
        };
        let scope = Scope {
            region: &queue.region,
            service: "sqs",
            amz_date: &amz_date,
        };
        let authorization = sigv4::authorization(&request, scope, creds);
        HttpRequest {
            url: format!("{}/", queue.endpoint),
            headers: vec![
                ("Content-Type", JSON_CONTENT_TYPE.to_string()),
                ("X-Amz-Target", target),
                ("X-Amz-Date", amz_date),
                ("Authorization", authorization),
            ],
            body,
        }
    }
}

/// AWS's JSON protocol, version 1.0 (what SQS speaks since 2023).
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Why a call failed, from SQS's error reply (or the transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsError {
    /// SQS's error type without its namespace (`QueueDoesNotExist`,
    /// `InvalidClientTokenId`, `SignatureDoesNotMatch`…), or `http <status>`.
    pub code: String,
    pub message: String,
}

impl SqsError {
    /// The credentials were refused: nothing will work until they are fixed.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code.as_str(),
            "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAccessKeyId"
                | "MissingAuthenticationToken"
                | "IncompleteSignature"
        )
    }
}

impl std::fmt::Display for SqsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Reads a reply: the JSON output on 2xx, else SQS's error.
pub fn read_reply(status: u16, body: &str) -> Result<Value, SqsError> {
    let value: Option<Value> = serde_json::from_str(body).ok();
    if (200..300).contains(&status) {
        return Ok(value.unwrap_or(Value::Null));
    }
    let field = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(name).or_else(|| v.get(name.to_ascii_lowercase())))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // JSON errors name a `__type`; some (refused signatures among them) come
    // in the older XML form, `<Code>…</Code><Message>…</Message>`.
    let code = field("__type")
        .map(|t| t.rsplit('#').next().unwrap_or_default().to_string())
        .or_else(|| xml_element(body, "Code"))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("http {status}"));
    let message = field("Message")
        .or_else(|| xml_element(body, "Message"))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(SqsError { code, message })
}

/// The text of the first `<name>…</name>` in an XML error.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let rest = body.get(start..)?;
    let end = rest.find(&format!("</{name}>"))?;
    rest.get(..end).map(|t| t.trim().to_string())
}

/// `QueueUrl` of a `CreateQueue` reply.
pub fn queue_url_of(output: &Value) -> Option<String> {
    output
        .get("QueueUrl")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// One received message, as SQS sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    #[serde(default)]
    pub receipt_handle: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub message_attributes: Option<serde_json::Map<String, Value>>,
}

/// The messages of a `ReceiveMessage` reply; an entry that is not even a
/// message is left out (there is nothing to delete it by).
pub fn messages_of(output: &Value) -> Vec<Message> {
    output
        .get("Messages")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| serde_json::from_value::<Message>(m.clone()).ok())
                .filter(|m| !m.receipt_handle.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A `ListQueues` reply: the queue URLs and the token of the next page.
pub fn queue_urls_of(output: &Value) -> (Vec<String>, Option<String>) {
    let urls = output
        .get("QueueUrls")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let next = output
        .get("NextToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    (urls, next)
}

/// `LastModifiedTimestamp` (Unix seconds) of a `GetQueueAttributes` reply.
/// AWS sends whole seconds; SQS-compatible servers may add a fraction.
pub fn last_modified_of(output: &Value) -> Option<u64> {
    let text = output
        .get("Attributes")?
        .get("LastModifiedTimestamp")?
        .as_str()?
        .trim();
    let whole = text.split_once('.').map_or(text, |(w, _)| w);
    whole.parse().ok()
}

/// A message that can be answered: the client's id and its 1.0 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub client_id: String,
    pub body: String,
}

impl Incoming {
    /// The client's answer queue.
    pub fn queue_name(&self) -> String {
        format!("{CLIENT_QUEUE_PREFIX}{}", self.client_id)
    }
}

/// Why a message is deleted unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    NoClientId,
    BadClientId,
    NoBody,
    TooLong,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NoClientId => "no ClientID string attribute",
            Malformed::BadClientId => "ClientID is not a valid queue name suffix",
            Malformed::NoBody => "no body",
            Malformed::TooLong => "body over 100000 bytes",
        }
    }
}

/// What a message is: an offer to answer, or one to delete as it is.
pub fn decode(message: &Message) -> Result<Incoming, Malformed> {
    let id = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("ClientID"))
        .and_then(|a| a.get("StringValue"))
        .and_then(Value::as_str)
        .ok_or(Malformed::NoClientId)?;
    let name_room = MAX_QUEUE_NAME - CLIENT_QUEUE_PREFIX.len();
    if id.len() > name_room || !is_queue_name(id) {
        return Err(Malformed::BadClientId);
    }
    let body = message.body.as_deref().ok_or(Malformed::NoBody)?;
    if body.len() > crate::protocol::READ_LIMIT {
        return Err(Malformed::TooLong);
    }
    Ok(Incoming {
        client_id: id.to_string(),
        body: body.to_string(),
    })
}

/// Whether a client queue last changed at `last_modified_s` has been idle
/// longer than `idle_ms` ([`CLIENT_QUEUE_IDLE_MS`]) at `now_ms`.
pub fn is_idle(last_modified_s: u64, idle_ms: u64, now_ms: u64) -> bool {
    last_modified_s.saturating_mul(1000).saturating_add(idle_ms) < now_ms
}

/// Whether a listed URL is a client queue (ListQueues matches by prefix,
/// but a URL is checked again before anything is deleted).
pub fn is_client_queue(url: &str) -> bool {
    url.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(CLIENT_QUEUE_PREFIX) && is_queue_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue {
        Queue::parse(
            "https://sqs.us-east-1.amazonaws.com/123456789012/snowflake-broker",
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_region_and_endpoint_come_from_the_queue_url() {
        let q = queue();
        assert_eq!(q.region, "us-east-1");
        assert_eq!(q.name, "snowflake-broker");
        assert_eq!(q.endpoint, "https://sqs.us-east-1.amazonaws.com");
        assert_eq!(q.endpoint_host(), "sqs.us-east-1.amazonaws.com");
        let legacy = Queue::parse("https://eu-west-3.queue.amazonaws.com/1/q", None).unwrap();
        assert_eq!(legacy.region, "eu-west-3");
        let local = Queue::parse(
            "https://sqs.us-east-1.amazonaws.com/123456789012/snowflake-broker",
            Some("http://127.0.0.1:5000/"),
        )
        .unwrap();
        assert_eq!(local.endpoint, "http://127.0.0.1:5000");
        assert_eq!(local.endpoint_host(), "127.0.0.1:5000");
        for bad in [
            "http://sqs.us-east-1.amazonaws.com/1/q",
            "https://example.com/1/q",
            "https://sqs.us-east-1.amazonaws.com/q",
            "https://sqs.us-east-1.amazonaws.com/acct/q",
            "https://sqs.us-east-1.amazonaws.com/1/q/x",
            "https://sqs.us-east-1.amazonaws.com/1/bad.name",
            "snowflake-broker",
        ] {
            assert!(Queue::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Queue::parse(&queue().url, Some("ftp://x")).is_err());
    }

    #[test]
    fn calls_are_signed_json_posts() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let call = Call::receive(&queue().url, WAIT_SECONDS);
        let req = call.signed(&queue(), &creds, 1_440_938_160_000);
        assert_eq!(req.url, "https://sqs.us-east-1.amazonaws.com/");
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["MaxNumberOfMessages"], 10);
        assert_eq!(body["WaitTimeSeconds"], 15);
        assert_eq!(body["MessageAttributeNames"], json!(["All"]));
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("X-Amz-Target").as_deref(),
            Some("AmazonSQS.ReceiveMessage")
        );
        assert_eq!(header("X-Amz-Date").as_deref(), Some("20150830T123600Z"));
        let auth = header("Authorization").unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ), "{auth}");
        // The signature covers the body: another body, another signature.
        let other = Call::receive(&queue().url, 1).signed(&queue(), &creds, 1_440_938_160_000);
        assert_ne!(other.headers[3], req.headers[3]);
        let create = Call::create_queue("snowflake-broker", Some(RETENTION_SECONDS));
        assert_eq!(
            create.input,
            json!({"QueueName": "snowflake-broker", "Attributes": {"MessageRetentionPeriod": "300"}})
        );
    }

    #[test]
    fn replies_and_errors_are_read() {
        assert_eq!(
            read_reply(200, r#"{"QueueUrl":"https://q/1/x"}"#).map(|v| queue_url_of(&v)),
            Ok(Some("https://q/1/x".to_string()))
        );
        let e = read_reply(
            400,
            r#"{"__type":"com.amazon.coral.service#InvalidClientTokenId","message":"The security token included in the request is invalid."}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidClientTokenId");
        assert!(e.is_auth());
        let e = read_reply(
            400,
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no"}"#,
        )
        .unwrap_err();
        assert_eq!((e.code.as_str(), e.is_auth()), ("QueueDoesNotExist", false));
        let xml = r#"<?xml version="1.0"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></Errors></ErrorResponse>"#;
        let e = read_reply(403, xml).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.is_auth()),
            (
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
                true
            )
        );
        let e = read_reply(503, "<html>busy</html>").unwrap_err();
        assert_eq!(e.code, "http 503");
        let (urls, next) = queue_urls_of(&json!({"QueueUrls": ["a", "b"], "NextToken": "t"}));
        assert_eq!((urls.len(), next.as_deref()), (2, Some("t")));
        assert_eq!(
            last_modified_of(&json!({"Attributes": {"LastModifiedTimestamp": "1700000000"}})),
            Some(1_700_000_000)
        );
        assert_eq!(
            last_modified_of(
                &json!({"Attributes": {"LastModifiedTimestamp": "1796321480.694901"}})
            ),
            Some(1_796_321_480)
        );
        assert_eq!(
            last_modified_of(&json!({"Attributes": {"LastModifiedTimestamp": "-1"}})),
            None
        );
    }

    fn message(attrs: Value, body: Option<&str>) -> Message {
        serde_json::from_value(json!({
            "MessageId": "m",
            "ReceiptHandle": "r",
            "Body": body,
            "MessageAttributes": attrs,
        }))
        .unwrap()
    }

    #[test]
    fn a_message_is_an_offer_or_malformed() {
        let ok = message(
            json!({"ClientID": {"StringValue": "0123abcd4567ef89", "DataType": "String"}}),
            Some("1.0\n{}"),
        );
        let incoming = decode(&ok).unwrap();
        assert_eq!(incoming.queue_name(), "snowflake-client-0123abcd4567ef89");
        assert_eq!(
            decode(&message(json!({}), Some("x"))),
            Err(Malformed::NoClientId)
        );
        assert_eq!(
            decode(&message(
                json!({"ClientID": {"BinaryValue": "AA==", "DataType": "Binary"}}),
                Some("x")
            )),
            Err(Malformed::NoClientId)
        );
        for bad in ["", "a/b", "../x", &"a".repeat(64)] {
            let m = message(
                json!({"ClientID": {"StringValue": bad, "DataType": "String"}}),
                Some("x"),
            );
            assert_eq!(decode(&m), Err(Malformed::BadClientId), "{bad:?}");
        }
        let id = json!({"ClientID": {"StringValue": "c", "DataType": "String"}});
        assert_eq!(decode(&message(id.clone(), None)), Err(Malformed::NoBody));
        let long = "x".repeat(100_001);
        assert_eq!(decode(&message(id, Some(&long))), Err(Malformed::TooLong));
        // Entries without a receipt handle cannot be deleted, so are not messages.
        let listed = messages_of(&json!({"Messages": [{"Body": "x"}, {"ReceiptHandle": "r2"}, 5]}));
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn client_queues_idle_two_minutes_are_deleted() {
        let now = 1_700_000_200_000;
        assert!(is_idle(1_700_000_079, CLIENT_QUEUE_IDLE_MS, now));
        assert!(!is_idle(1_700_000_080, CLIENT_QUEUE_IDLE_MS, now));
        assert!(is_client_queue("https://sqs.x/1/snowflake-client-ab12"));
        assert!(!is_client_queue("https://sqs.x/1/snowflake-broker"));
        assert!(!is_client_queue("https://sqs.x/1/snowflake-client-a.b"));
    }
}
