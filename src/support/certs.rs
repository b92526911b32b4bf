//! Certificates in a PEM bundle (a CA bundle such as the one the system's TLS
//! clients trust), taken as text: what they say is never parsed, only which
//! ones there are.

use std::collections::HashSet;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// One certificate, by its base64 body without line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Certificate(String);

impl Certificate {
    /// The certificate in PEM, its body in lines of 64 characters, ending
    /// with a line break.
    pub fn pem(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + self.0.len() / 64 + 60);
        out.push_str(BEGIN);
        out.push('\n');
        for line in self.0.as_bytes().chunks(64) {
            // The body is ASCII (checked when read).
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
        out
    }
}

/// The `CERTIFICATE` blocks of a PEM bundle, in its order, each once.
/// Comments, other kinds of block (`TRUSTED CERTIFICATE`, keys) and blocks
/// whose body is not base64 are left out.
pub fn certificates(bundle: &[u8]) -> Vec<Certificate> {
    let text = String::from_utf8_lossy(bundle);
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == BEGIN {
            body = Some(String::new());
        } else if line == END {
            if let Some(body) = body.take() {
                if !body.is_empty() && seen.insert(body.clone()) {
                    found.push(Certificate(body));
                }
            }
        } else if let Some(text) = body.as_mut() {
            if line.bytes().all(is_base64) {
                text.push_str(line);
            } else {
                // A header line or a stray block: not a certificate we can pass on.
                body = None;
            }
        }
    }
    found
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// The certificates of `bundle` that `other` does not hold.
pub fn missing_from<'a>(bundle: &'a [Certificate], other: &[Certificate]) -> Vec<&'a Certificate> {
    let other: HashSet<&Certificate> = other.iter().collect();
    bundle.iter().filter(|c| !other.contains(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &str) -> String {
        format!("{BEGIN}\n{body}\n{END}\n")
    }

    #[test]
    fn blocks_are_read_in_order_once_without_comments() {
        let long = "A".repeat(64) + "\n" + &"B".repeat(10);
        let bundle = format!(
            "# ACME Root\n{}\n{}Bag Attributes: x\n{}{}-----BEGIN TRUSTED CERTIFICATE-----\nQUJD\n\
             -----END TRUSTED CERTIFICATE-----\n{BEGIN}\nProc-Type: 4,ENCRYPTED\nQUJD\n{END}\n",
            block(&long),
            block("QUJD"),
            block("REVG"),
            // A repeat, with Windows line ends.
            block("QUJD").replace('\n', "\r\n"),
        );
        let found = certificates(bundle.as_bytes());
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].pem(), block(&long), "re-wrapped at 64");
        assert_eq!(found[1].pem(), block("QUJD"));
        assert_eq!(found[2].pem(), block("REVG"));
        assert!(certificates(b"no certificates here\n").is_empty());
        assert!(certificates(&[0xff, 0xfe, b'\n']).is_empty());
    }

    #[test]
    fn the_certificates_another_bundle_lacks() {
        let host =
            certificates(format!("{}{}{}", block("QQ=="), block("Qg=="), block("Qw==")).as_bytes());
        let image = certificates(format!("{}{}", block("Qw=="), block("QQ==")).as_bytes());
        let missing = missing_from(&host, &image);
        assert_eq!(missing, vec![&host[1]]);
        assert!(missing_from(&image, &host).is_empty());
    }
}
