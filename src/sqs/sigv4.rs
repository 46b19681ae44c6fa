//! AWS Signature Version 4 for the few SQS calls the broker makes
//! (docs/sqs.md): a `POST /` whose headers and body are all signed.
//!
//! Written here on RustCrypto's `hmac` and `sha2` (both build for wasm32)
//! rather than pulling in the AWS SDK; tested against AWS's published
//! vectors (the SigV4 test suite's `get-vanilla` and `post-vanilla`, and the
//! worked example of the S3 documentation).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// An access key: the id is sent, the secret only signs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in a test failure.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One request to sign. `headers` are every header to sign except `host`
/// and `x-amz-date` (added here), names in lower case.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The path, already URI-encoded (`/` for every SQS call here).
    pub path: &'a str,
    /// The canonical query string (sorted, encoded); empty here.
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// Where and when: `amz_date` is `YYYYMMDDTHHMMSSZ` in UTC.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub amz_date: &'a str,
}

/// Lower-case hex of SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The canonical request: method, path, query, the signed headers sorted by
/// name with their values trimmed, the list of their names, the payload hash.
pub fn canonical_request(req: &Request<'_>, amz_date: &str) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.push(("host".into(), req.host.to_string()));
    headers.push(("x-amz-date".into(), amz_date.to_string()));
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut canonical = format!("{}\n{}\n{}\n", req.method, req.path, req.query);
    for (k, v) in &headers {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(&sha256_hex(req.payload));
    (canonical, signed)
}

/// The `Authorization` header for `req`.
pub fn authorization(req: &Request<'_>, scope: Scope<'_>, creds: &Credentials) -> String {
    let (canonical, signed) = canonical_request(req, scope.amz_date);
    let day = scope.amz_date.get(..8).unwrap_or_default();
    let credential_scope = format!("{day}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [scope.region, scope.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = crate::hex::encode(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed}, Signature={signature}",
        creds.access_key_id
    )
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in milliseconds.
pub fn amz_date(unix_ms: u64) -> String {
    crate::metrics::utc::format_utc(unix_ms / 1000)
        .replace(['-', ':'], "")
        .replace(' ', "T")
        + "Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    const SUITE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
        amz_date: "20150830T123600Z",
    };

    fn vanilla(method: &str) -> Request<'_> {
        Request {
            method,
            host: "example.amazonaws.com",
            path: "/",
            query: "",
            headers: &[],
            payload: b"",
        }
    }

    #[test]
    fn get_vanilla_from_the_sigv4_test_suite() {
        let (canonical, _) = canonical_request(&vanilla("GET"), SUITE.amz_date);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization(&vanilla("GET"), SUITE, &suite()),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla_from_the_sigv4_test_suite() {
        assert!(authorization(&vanilla("POST"), SUITE, &suite()).ends_with(
            "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        ));
    }

    #[test]
    fn the_s3_documentations_get_object_example() {
        let empty = sha256_hex(b"");
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: "",
            headers: &[("range", "bytes=0-9"), ("x-amz-content-sha256", &empty)],
            payload: b"",
        };
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let scope = Scope {
            region: "us-east-1",
            service: "s3",
            amz_date: "20130524T000000Z",
        };
        assert_eq!(
            authorization(&req, scope, &creds),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_are_basic_iso_8601_in_utc() {
        assert_eq!(amz_date(1_440_938_160_000), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }

    #[test]
    fn the_secret_is_never_printed() {
        assert!(!format!("{:?}", suite()).contains("EXAMPLEKEY"));
    }
}
