//! Twilio's request signature: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the auth
//! token, of the full URL Twilio requested (query string as sent) followed by every POST parameter
//! sorted by name, each name followed by its value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio sends for this request; the stand-in signs its webhooks with it.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Checks a received signature in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published_vector() -> (String, Vec<(String, String)>) {
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        ("https://mycompany.com/myapp.php?foo=1&bar=2".to_owned(), params)
    }

    #[test]
    fn twilios_published_example_signs_and_verifies() {
        let (url, params) = published_vector();
        assert_eq!(sign("12345", &url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify("12345", &url, &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let (url, mut params) = published_vector();
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("12346", &url, &params, good), "other token");
        assert!(
            !verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &params, good),
            "other URL"
        );
        params[2].1 = "1235".into();
        assert!(!verify("12345", &url, &params, good), "changed parameter");
        assert!(!verify("12345", &url, &published_vector().1, "not base64!"), "garbage");
        assert!(!verify("12345", &url, &published_vector().1, ""), "empty");
    }
}
